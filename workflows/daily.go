package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ErrTypeBackfillIncomplete is the error type of a backfill in which some
// days failed; its details carry the DailyBackfillProgress.
const ErrTypeBackfillIncomplete = "BackfillIncomplete"

// searchAttrScheduledStart is set by Temporal on every scheduled run.
var searchAttrScheduledStart = temporal.NewSearchAttributeKeyTime("TemporalScheduledStartTime")

// Daily aggregates one UTC day into daily_stats (SPEC §6). A scheduled run
// (no day in the input) makes sure the coming days' request_logs
// partitions exist, then aggregates the day before its scheduled time and
// re-aggregates the day before that (folding in events that arrived up to a
// day late), each as a child workflow daily/<day>, so every aggregation of
// a day is found under the same id in the Temporal UI, whoever started it.
func Daily(ctx workflow.Context, in DailyInput) (DailyResult, error) {
	if in.Day == "" {
		return dailyScheduled(ctx)
	}
	return daily(ctx, in)
}

func dailyScheduled(ctx workflow.Context) (DailyResult, error) {
	days := scheduledDays(ctx)
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrJob.ValueSet(DailyWorkflowName), SearchAttrDay.ValueSet(days[len(days)-1])); err != nil {
		return DailyResult{}, fmt.Errorf("upsert search attributes: %w", err)
	}
	ensurePartitionsAhead(ctx)
	var res DailyResult
	for _, day := range days {
		err := workflow.ExecuteChildWorkflow(dailyChild(ctx, day), DailyWorkflowName, DailyInput{Day: day}).Get(ctx, &res)
		if err != nil {
			return DailyResult{}, fmt.Errorf("%s: %w", DailyWorkflowID(day), err)
		}
	}
	return res, nil
}

// dailyChild starts the child aggregating day, as the scheduled run and
// the backfill do.
func dailyChild(ctx workflow.Context, day string) workflow.Context {
	return workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: DailyWorkflowID(day),
		// A day may be aggregated again: a late refold, a backfill.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowRunTimeout:    2 * time.Hour,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			SearchAttrJob.ValueSet(DailyWorkflowName), SearchAttrDay.ValueSet(day)),
	})
}

// daily aggregates the one day of in.
func daily(ctx workflow.Context, in DailyInput) (DailyResult, error) {
	if _, err := ParseDay("day", in.Day); err != nil {
		return DailyResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrJob.ValueSet(DailyWorkflowName), SearchAttrDay.ValueSet(in.Day)); err != nil {
		return DailyResult{}, fmt.Errorf("upsert search attributes: %w", err)
	}
	// 30 min covers a 5 M-row day many times over (docs/benchmarks.md); the
	// heartbeat timeout catches a stuck worker long before.
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    5 * time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    2 * time.Minute,
			MaximumAttempts:    5,
		},
	})
	var res DailyResult
	if err := workflow.ExecuteActivity(actx, ActivityAggregateDay, AggregateDayInput{Day: in.Day}).Get(ctx, &res); err != nil {
		return DailyResult{}, fmt.Errorf("%s %s: %w", ActivityAggregateDay, in.Day, err)
	}
	return res, nil
}

// scheduledDays are the two days before the scheduled time (the start
// time when started by hand).
func scheduledDays(ctx workflow.Context) []string {
	at, ok := workflow.GetTypedSearchAttributes(ctx).GetTime(searchAttrScheduledStart)
	if !ok {
		at = workflow.Now(ctx)
	}
	yesterday := utcDay(at).AddDate(0, 0, -1)
	return []string{yesterday.AddDate(0, 0, -1).Format(time.DateOnly), yesterday.Format(time.DateOnly)}
}

// ensurePartitionsAhead creates today's and the next PartitionsAhead days'
// partitions. Best effort in the daily run: ingestion creates a missing
// partition itself, and the retention run does this too.
func ensurePartitionsAhead(ctx workflow.Context) int {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	in := EnsurePartitionsInput{From: utcDay(workflow.Now(ctx)).Format(time.DateOnly), Days: PartitionsAhead + 1}
	var res EnsurePartitionsResult
	if err := workflow.ExecuteActivity(ctx, ActivityEnsurePartitions, in).Get(ctx, &res); err != nil {
		workflow.GetLogger(ctx).Warn("Creating request_logs partitions ahead failed", "error", err)
		return 0
	}
	return len(res.Partitions)
}

// DailyBackfill aggregates every day of [From, To] as one child Daily
// workflow per day (ID daily/<day>), at most Concurrency at a time. The
// progress query and the OpsflowDaysDone search attribute show how far it
// got; days that fail are listed and fail the backfill once every day ran.
func DailyBackfill(ctx workflow.Context, in DailyBackfillInput) (DailyBackfillProgress, error) {
	return dailyBackfill(ctx, in)
}

func dailyBackfill(ctx workflow.Context, in DailyBackfillInput) (DailyBackfillProgress, error) {
	days, err := BackfillDays(in.From, in.To)
	if err == nil && (in.Concurrency < 0 || in.Concurrency > MaxBackfillConcurrency) {
		err = fmt.Errorf("concurrency must be from 1 to %d", MaxBackfillConcurrency)
	}
	if err != nil {
		return DailyBackfillProgress{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	concurrency := in.Concurrency
	if concurrency == 0 {
		concurrency = DefaultBackfillConcurrency
	}
	progress := DailyBackfillProgress{From: in.From, To: in.To, Total: len(days)}
	if err := workflow.SetQueryHandler(ctx, QueryBackfillProgress, func() (DailyBackfillProgress, error) {
		return progress, nil
	}); err != nil {
		return progress, fmt.Errorf("set progress query: %w", err)
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrJob.ValueSet(DailyBackfillWorkflowName), SearchAttrDaysDone.ValueSet(0)); err != nil {
		return progress, fmt.Errorf("upsert search attributes: %w", err)
	}

	selector := workflow.NewSelector(ctx)
	next := 0
	startNext := func() {
		day := days[next]
		next++
		progress.Running++
		selector.AddFuture(workflow.ExecuteChildWorkflow(dailyChild(ctx, day), DailyWorkflowName, DailyInput{Day: day}), func(f workflow.Future) {
			progress.Running--
			var r DailyResult
			if err := f.Get(ctx, &r); err != nil {
				progress.Failed++
				progress.FailedDays = append(progress.FailedDays, day)
				workflow.GetLogger(ctx).Error("Backfill day failed", "day", day, "error", err)
				return
			}
			progress.Done++
			progress.Requests += r.Requests
			if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrDaysDone.ValueSet(int64(progress.Done))); err != nil {
				workflow.GetLogger(ctx).Warn("Upserting backfill progress failed", "error", err)
			}
		})
	}
	for progress.Done+progress.Failed < progress.Total {
		for next < len(days) && progress.Running < concurrency {
			startNext()
		}
		selector.Select(ctx)
	}
	if progress.Failed > 0 {
		return progress, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%d of %d days failed: %v", progress.Failed, progress.Total, progress.FailedDays),
			ErrTypeBackfillIncomplete, nil, progress)
	}
	return progress, nil
}

// utcDay is the UTC midnight starting t's UTC day.
func utcDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
