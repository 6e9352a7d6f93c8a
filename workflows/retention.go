package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ErrTypeRetentionIncomplete is the error type of a retention run in which
// a task failed; the others still ran, and its details carry the
// RetentionResult.
const ErrTypeRetentionIncomplete = "RetentionIncomplete"

// Retention enforces the retention policies (SPEC §7): it creates the
// request_logs partitions of today and the next PartitionsAhead days, then
// for each data class drops expired request-log days as whole partitions,
// deletes other classes' expired rows in batches, and trims request logs to
// their maximum row count. One failing task does not stop the others.
func Retention(ctx workflow.Context, in RetentionInput) (RetentionResult, error) {
	return retention(ctx, in)
}

func retention(ctx workflow.Context, in RetentionInput) (RetentionResult, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrJob.ValueSet(RetentionWorkflowName)); err != nil {
		return RetentionResult{}, fmt.Errorf("upsert search attributes: %w", err)
	}
	asOf := workflow.Now(ctx)
	if in.AsOf != nil {
		asOf = *in.AsOf
	}
	today := utcDay(asOf)
	var res RetentionResult

	short := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumAttempts: 5},
	})
	var ensured EnsurePartitionsResult
	err := workflow.ExecuteActivity(short, ActivityEnsurePartitions,
		EnsurePartitionsInput{From: today.Format(time.DateOnly), Days: PartitionsAhead + 1}).Get(ctx, &ensured)
	if err != nil {
		res.Failed = append(res.Failed, fmt.Sprintf("%s: %v", ActivityEnsurePartitions, err))
	}
	res.PartitionsEnsured = len(ensured.Partitions)

	var plan RetentionPlan
	if err := workflow.ExecuteActivity(short, ActivityRetentionPlan).Get(ctx, &plan); err != nil {
		return res, fmt.Errorf("%s: %w", ActivityRetentionPlan, err)
	}
	// Deleting a month of rows in 10k batches takes a while; the heartbeat
	// timeout, not this bound, notices a dead worker, and the retry resumes
	// from the last heartbeat.
	long := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 3 * time.Hour,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    5 * time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    5 * time.Minute,
			MaximumAttempts:    5,
		},
	})
	run := func(activity string, in RetentionTaskInput) {
		var r RetentionTaskResult
		if err := workflow.ExecuteActivity(long, activity, in).Get(ctx, &r); err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("%s %s: %v", activity, in.Class, err))
			return
		}
		res.Tasks = append(res.Tasks, r)
	}
	for _, p := range plan.Policies {
		if p.KeepDays != nil {
			in := RetentionTaskInput{Class: p.Class, Cutoff: today.AddDate(0, 0, -*p.KeepDays)}
			if p.Partitioned {
				run(ActivityDropExpiredPartitions, in)
			} else {
				run(ActivityPurgeExpired, in)
			}
		}
		if p.MaxRows != nil && p.Partitioned {
			run(ActivityTrimRequestLogs, RetentionTaskInput{Class: p.Class, MaxRows: *p.MaxRows})
		}
	}
	if len(res.Failed) > 0 {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%d retention tasks failed: %v", len(res.Failed), res.Failed), ErrTypeRetentionIncomplete, nil, res)
	}
	return res, nil
}
