package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ErrTypeInvalidWindow is the ApplicationError type of a malformed collect
// window; it never succeeds on retry.
const ErrTypeInvalidWindow = "InvalidWindow"

const (
	// collectMaxCalls bounds one run's CollectRollups calls (each up to the
	// activity's ~40 s budget); a bigger backlog is left to the next
	// scheduled run, which keeps every run's history short.
	collectMaxCalls = 10
	// collectMaxBatches bounds one collection transaction.
	collectMaxBatches = 100
	// windowSlice bounds one window activity call, so a retry redoes at most
	// a day and a month-long window shows its progress in the history.
	windowSlice = 24 * time.Hour
)

// Collect is the per-minute collection workflow (SPEC §4): it records the
// worker's process metrics, then rolls pending ingest batches up, looping
// while a backlog remains. With a window in the input it instead recomputes
// every minute of [From, To) from the raw rows.
func Collect(ctx workflow.Context, in CollectInput) (CollectResult, error) {
	return collect(ctx, in)
}

func collect(ctx workflow.Context, in CollectInput) (CollectResult, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrJob.ValueSet(CollectWorkflowName)); err != nil {
		return CollectResult{}, fmt.Errorf("upsert search attributes: %w", err)
	}
	if in.From != nil || in.To != nil {
		return recomputeWindow(ctx, in.From, in.To)
	}
	recordProcessMetrics(ctx)
	return collectPending(ctx)
}

// ValidateWindow checks a collect window: both ends or neither, From before
// To. The error is a non-retryable ApplicationError of type
// ErrTypeInvalidWindow.
func ValidateWindow(from, to *time.Time) error {
	switch {
	case from == nil && to == nil:
		return nil
	case from == nil || to == nil:
		return temporal.NewNonRetryableApplicationError("collect window needs both from and to", ErrTypeInvalidWindow, nil)
	case !from.Before(*to):
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("collect window from %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339)),
			ErrTypeInvalidWindow, nil)
	}
	return nil
}

// recordProcessMetrics is best effort: a missing minute of process metrics
// must not cost a minute of rollups, so failure is logged, not returned.
func recordProcessMetrics(ctx workflow.Context) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Second,
			MaximumAttempts:    3,
		},
	})
	in := RecordProcessMetricsInput{Minute: workflow.Now(ctx).UTC().Truncate(time.Minute)}
	if err := workflow.ExecuteActivity(ctx, ActivityRecordProcessMetrics, in).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("Recording process metrics failed; collecting anyway", "error", err)
	}
}

func collectPending(ctx workflow.Context) (CollectResult, error) {
	// 5 min: the activity's 40 s budget plus one transaction that started
	// just before the budget ran out.
	ctx = workflow.WithActivityOptions(ctx, collectActivityOptions(5*time.Minute))
	var res CollectResult
	for range collectMaxCalls {
		r, err := collectRollups(ctx, CollectRollupsInput{MaxBatches: collectMaxBatches})
		if err != nil {
			return CollectResult{}, err
		}
		addRollups(&res, r)
		res.Backlog = r.More
		if !r.More {
			break
		}
	}
	if res.Backlog {
		workflow.GetLogger(ctx).Warn("Collection stopped with batches left; the next run continues", "calls", collectMaxCalls)
	}
	return res, nil
}

func recomputeWindow(ctx workflow.Context, from, to *time.Time) (CollectResult, error) {
	if err := ValidateWindow(from, to); err != nil {
		return CollectResult{}, err
	}
	// 30 min covers a day of raw rows at SPEC §5's 10 M rows/day many times
	// over; the heartbeat timeout catches a stuck call long before.
	ctx = workflow.WithActivityOptions(ctx, collectActivityOptions(30*time.Minute))
	var res CollectResult
	// Slices start on whole minutes so no minute is recomputed by two calls.
	for start := from.UTC().Truncate(time.Minute); start.Before(*to); start = start.Add(windowSlice) {
		sliceFrom, sliceTo := start, earlier(start.Add(windowSlice), *to)
		r, err := collectRollups(ctx, CollectRollupsInput{From: &sliceFrom, To: &sliceTo})
		if err != nil {
			return CollectResult{}, err
		}
		addRollups(&res, r)
	}
	return res, nil
}

func collectActivityOptions(startToClose time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: startToClose,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    5,
		},
	}
}

func collectRollups(ctx workflow.Context, in CollectRollupsInput) (CollectRollupsResult, error) {
	var r CollectRollupsResult
	if err := workflow.ExecuteActivity(ctx, ActivityCollectRollups, in).Get(ctx, &r); err != nil {
		return CollectRollupsResult{}, fmt.Errorf("%s: %w", ActivityCollectRollups, err)
	}
	return r, nil
}

func addRollups(res *CollectResult, r CollectRollupsResult) {
	res.Batches += r.Batches
	res.Minutes += r.Minutes
	res.Events += r.Events
	res.Rows += r.Rows
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
