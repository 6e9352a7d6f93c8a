package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/workflows"
)

// maxPartitionsAhead bounds one EnsureRequestLogPartitions call.
const maxPartitionsAhead = 31

// AggregateDailyStats replaces daily_stats of one UTC day with rows
// computed from the day's raw request logs. Re-running it gives identical
// rows. It heartbeats while streaming the day.
func (a *Activities) AggregateDailyStats(ctx context.Context, in workflows.AggregateDayInput) (workflows.DailyResult, error) {
	day, err := workflows.ParseDay("day", in.Day)
	if err != nil {
		return workflows.DailyResult{}, temporal.NewNonRetryableApplicationError(err.Error(), errTypeInvalidInput, nil)
	}
	started := a.now()
	rows, err := db.AggregateDay(ctx, a.DB, day, func(n int64) { activity.RecordHeartbeat(ctx, n) })
	if err != nil {
		return workflows.DailyResult{}, err
	}
	if err := db.ReplaceDailyStats(ctx, a.DB, day, rows); err != nil {
		return workflows.DailyResult{}, err
	}
	res := workflows.DailyResult{Day: in.Day, Rows: len(rows)}
	for i := range rows {
		res.Requests += rows[i].Requests
	}
	activity.GetLogger(ctx).Info("Daily stats aggregated", "day", in.Day, "rows", res.Rows,
		"requests", res.Requests, "duration", a.now().Sub(started))
	return res, nil
}

// EnsureRequestLogPartitions creates the request_logs partitions of Days
// days from From, so ingestion finds them in place. Creating an existing
// partition is a no-op.
func (a *Activities) EnsureRequestLogPartitions(ctx context.Context, in workflows.EnsurePartitionsInput) (workflows.EnsurePartitionsResult, error) {
	from, err := workflows.ParseDay("from", in.From)
	if err == nil && (in.Days < 1 || in.Days > maxPartitionsAhead) {
		err = fmt.Errorf("days must be from 1 to %d", maxPartitionsAhead)
	}
	if err != nil {
		return workflows.EnsurePartitionsResult{}, temporal.NewNonRetryableApplicationError(err.Error(), errTypeInvalidInput, nil)
	}
	var res workflows.EnsurePartitionsResult
	for i := range in.Days {
		name, err := db.EnsureRequestLogPartition(ctx, a.DB.Bun, from.Add(time.Duration(i)*24*time.Hour))
		if err != nil {
			return workflows.EnsurePartitionsResult{}, err
		}
		res.Partitions = append(res.Partitions, name)
	}
	return res, nil
}
