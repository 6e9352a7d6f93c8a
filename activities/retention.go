package activities

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/workflows"
)

// defaultRetentionBatch bounds one retention DELETE when the input leaves
// BatchSize zero: big enough to move millions of rows an hour, small enough
// that each statement's locks and WAL stay short.
const defaultRetentionBatch = 10_000

// RetentionPlan reads every data class's policy.
func (a *Activities) RetentionPlan(ctx context.Context) (workflows.RetentionPlan, error) {
	ps, err := db.ListRetentionPolicies(ctx, a.DB.Bun)
	if err != nil {
		return workflows.RetentionPlan{}, err
	}
	plan := workflows.RetentionPlan{Policies: make([]workflows.RetentionPolicy, len(ps))}
	for i, p := range ps {
		c, _ := db.RetentionClassByName(p.Class)
		plan.Policies[i] = workflows.RetentionPolicy{Class: p.Class, Partitioned: c.Partitioned, KeepDays: p.KeepDays, MaxRows: p.MaxRows}
	}
	return plan, nil
}

// DropExpiredPartitions drops every request_logs day partition wholly
// before the cutoff.
func (a *Activities) DropExpiredPartitions(ctx context.Context, in workflows.RetentionTaskInput) (workflows.RetentionTaskResult, error) {
	c, err := retentionClass(in, true)
	if err != nil {
		return workflows.RetentionTaskResult{}, err
	}
	return a.retentionTask(ctx, c, workflows.RetentionDropPartitions, func(p *workflows.RetentionProgress) error {
		p.Cutoff = in.Cutoff
		return a.dropPartitionsBefore(ctx, p, in.Cutoff)
	})
}

// PurgeExpired deletes a class's rows older than the cutoff in bounded
// batches, heartbeating the count.
func (a *Activities) PurgeExpired(ctx context.Context, in workflows.RetentionTaskInput) (workflows.RetentionTaskResult, error) {
	c, err := retentionClass(in, false)
	if err != nil {
		return workflows.RetentionTaskResult{}, err
	}
	batch := batchSize(in)
	return a.retentionTask(ctx, c, workflows.RetentionDeleteExpired, func(p *workflows.RetentionProgress) error {
		p.Cutoff = in.Cutoff
		for {
			n, err := db.DeleteExpiredBatch(ctx, a.DB.Bun, c, in.Cutoff, batch)
			if err != nil {
				return err
			}
			p.Rows += n
			activity.RecordHeartbeat(ctx, *p)
			// Only an empty batch ends the trim: a short one can also mean a
			// killed attempt's DELETE, still running when this retry began,
			// took some of the rows this batch would have taken.
			if n == 0 {
				return nil
			}
		}
	})
}

// TrimRequestLogs deletes the oldest request logs beyond MaxRows. Its first
// attempt fixes the cutoff: the timestamp of the MaxRows-th newest row, so
// every row from it on is kept (rows sharing that exact timestamp too,
// which may keep a few rows over the cap rather than lose one that should
// stay). Older rows go: whole partitions first, then the boundary day's
// oldest rows in batches. Every step heartbeats the cutoff and the position
// reached; an attempt after a crash resumes from them, neither recounting
// nor revisiting what is gone, and keeps the first attempt's cutoff even
// though rows arrived since.
func (a *Activities) TrimRequestLogs(ctx context.Context, in workflows.RetentionTaskInput) (workflows.RetentionTaskResult, error) {
	c, err := retentionClass(in, true)
	if err == nil && in.MaxRows < db.MinMaxRows {
		err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("max_rows must be at least %d", db.MinMaxRows), errTypeInvalidInput, nil)
	}
	if err != nil {
		return workflows.RetentionTaskResult{}, err
	}
	batch := batchSize(in)
	return a.retentionTask(ctx, c, workflows.RetentionTrimMaxRows, func(p *workflows.RetentionProgress) error {
		if !p.Planned {
			cutoff, err := a.trimCutoff(ctx, p, in.MaxRows)
			if err != nil {
				return err
			}
			p.Planned, p.Cutoff = true, cutoff
			activity.RecordHeartbeat(ctx, *p)
		}
		if p.Cutoff.IsZero() {
			return nil // within the cap
		}
		if err := a.dropPartitionsBefore(ctx, p, p.Cutoff); err != nil {
			return err
		}
		boundary := db.Partition{Name: db.PartitionName(p.Cutoff), Day: db.TruncateDay(p.Cutoff)}
		if boundary.Day.Equal(p.Cutoff) {
			return nil // the cutoff is a midnight: whole partitions were all
		}
		from := p.Position
		if from.IsZero() {
			from = boundary.Day
		}
		for {
			n, last, err := db.DeleteOldestBatch(ctx, a.DB.Bun, boundary, from, p.Cutoff, batch)
			if err != nil {
				return err
			}
			p.Rows += n
			if n > 0 {
				p.Position, from = last, last
			}
			activity.RecordHeartbeat(ctx, *p)
			// Only an empty batch ends the trim: a short one can also mean a
			// killed attempt's DELETE, still running when this retry began,
			// took some of the rows this batch would have taken.
			if n == 0 {
				return nil
			}
		}
	})
}

// trimCutoff finds the timestamp of the maxRows-th newest row, counting
// partitions newest first; zero when the table holds no more than maxRows.
func (a *Activities) trimCutoff(ctx context.Context, p *workflows.RetentionProgress, maxRows int64) (time.Time, error) {
	parts, err := db.RequestLogPartitions(ctx, a.DB.Bun)
	if err != nil {
		return time.Time{}, err
	}
	var newer int64
	for _, part := range slices.Backward(parts) {
		n, err := db.PartitionRows(ctx, a.DB.Bun, part)
		if err != nil {
			return time.Time{}, err
		}
		activity.RecordHeartbeat(ctx, *p)
		if newer+n <= maxRows {
			newer += n
			continue
		}
		if newer == maxRows {
			return part.End(), nil // this day and everything older goes
		}
		return db.NthNewestTS(ctx, a.DB.Bun, part, maxRows-newer)
	}
	return time.Time{}, nil
}

// dropPartitionsBefore drops the partitions ending at or before cutoff,
// recording each in p as it goes.
func (a *Activities) dropPartitionsBefore(ctx context.Context, p *workflows.RetentionProgress, cutoff time.Time) error {
	parts, err := db.RequestLogPartitions(ctx, a.DB.Bun)
	if err != nil {
		return err
	}
	for _, part := range parts {
		if part.End().After(cutoff) {
			break
		}
		if err := db.DropRequestLogPartition(ctx, a.DB, part.Name); err != nil {
			return err
		}
		if !slices.Contains(p.Partitions, part.Name) {
			p.Partitions = append(p.Partitions, part.Name)
		}
		activity.RecordHeartbeat(ctx, *p)
	}
	return nil
}

// retentionTask runs one retention task resumably: body works on the
// progress of the previous attempt (from its heartbeat), and the outcome
// is recorded in retention_runs once. An attempt finding the row recorded
// (its predecessor's completion was lost) returns the recorded outcome.
func (a *Activities) retentionTask(ctx context.Context, c db.RetentionClass, action string, body func(*workflows.RetentionProgress) error) (workflows.RetentionTaskResult, error) {
	var p workflows.RetentionProgress
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &p); err != nil {
			return workflows.RetentionTaskResult{}, fmt.Errorf("read retention progress: %w", err)
		}
		activity.GetLogger(ctx).Info("Resuming retention task", "class", c.Name, "action", action,
			"rows", p.Rows, "partitions", len(p.Partitions), "position", p.Position)
	}
	if p.StartedAt.IsZero() {
		p.StartedAt = a.now().UTC()
	}
	res := func() workflows.RetentionTaskResult {
		return workflows.RetentionTaskResult{Class: c.Name, Table: c.Table, Action: action, Rows: p.Rows,
			Partitions: p.Partitions, DurationMs: a.now().Sub(p.StartedAt).Milliseconds()}
	}
	if p.Recorded {
		return res(), nil
	}
	if err := body(&p); err != nil {
		return workflows.RetentionTaskResult{}, err
	}
	out := res()
	info := activity.GetInfo(ctx)
	run := &db.RetentionRun{
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		Class: c.Name, Table: c.Table, Action: action, RowsRemoved: out.Rows, PartitionsRemoved: out.Partitions,
		StartedAt: p.StartedAt, DurationMs: out.DurationMs,
	}
	if !p.Cutoff.IsZero() {
		run.Cutoff = &p.Cutoff
	}
	if err := db.RecordRetentionRun(ctx, a.DB.Bun, run); err != nil {
		return workflows.RetentionTaskResult{}, err
	}
	p.Recorded = true
	activity.RecordHeartbeat(ctx, p)
	return out, nil
}

// retentionClass checks a task's class and that it suits the action.
func retentionClass(in workflows.RetentionTaskInput, partitioned bool) (db.RetentionClass, error) {
	c, ok := db.RetentionClassByName(in.Class)
	switch {
	case !ok:
		return c, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown retention class %q", in.Class), errTypeInvalidInput, nil)
	case c.Partitioned != partitioned:
		return c, temporal.NewNonRetryableApplicationError(fmt.Sprintf("class %q does not take this task", in.Class), errTypeInvalidInput, nil)
	case in.BatchSize < 0:
		return c, temporal.NewNonRetryableApplicationError("batch_size must not be negative", errTypeInvalidInput, nil)
	}
	return c, nil
}

func batchSize(in workflows.RetentionTaskInput) int {
	if in.BatchSize == 0 {
		return defaultRetentionBatch
	}
	return in.BatchSize
}
