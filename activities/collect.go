package activities

import (
	"context"
	"fmt"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uptrace/bun"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/workflows"
)

// defaultMaxBatches applies when the caller leaves MaxBatches zero.
const defaultMaxBatches = 100

// errTypeInvalidInput marks input no retry can fix.
const errTypeInvalidInput = "InvalidInput"

// CollectRollups rolls raw request logs up into rollup_minute. Without a
// window it collects pending ingest batches; with From/To it recomputes every
// minute of the window from the raw rows.
func (a *Activities) CollectRollups(ctx context.Context, in workflows.CollectRollupsInput) (workflows.CollectRollupsResult, error) {
	if in.From != nil || in.To != nil {
		if err := workflows.ValidateWindow(in.From, in.To); err != nil {
			return workflows.CollectRollupsResult{}, err
		}
		return a.recomputeWindow(ctx, *in.From, *in.To)
	}
	if in.MaxBatches < 0 {
		return workflows.CollectRollupsResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("max_batches %d is negative", in.MaxBatches), errTypeInvalidInput, nil)
	}
	if in.MaxBatches == 0 {
		in.MaxBatches = defaultMaxBatches
	}
	return a.collectPending(ctx, in.MaxBatches)
}

// collectPending takes pending batches in transactions of up to maxBatches
// until none are left or the time budget is spent; More then tells the
// workflow to call again. Each transaction commits on its own, so a retry
// after a failure only redoes the chunk that failed.
func (a *Activities) collectPending(ctx context.Context, maxBatches int) (workflows.CollectRollupsResult, error) {
	var total workflows.CollectRollupsResult
	start := a.now()
	for {
		r, err := a.collectBatches(ctx, maxBatches)
		if err != nil {
			return workflows.CollectRollupsResult{}, err
		}
		addResult(&total, r)
		activity.RecordHeartbeat(ctx, total)
		if r.Batches < maxBatches {
			return total, nil
		}
		if a.now().Sub(start) >= a.collectBudget() {
			backlog, err := db.PendingIngest(ctx, a.DB.Bun)
			if err != nil {
				return workflows.CollectRollupsResult{}, err
			}
			total.More = backlog.Batches > 0
			return total, nil
		}
	}
}

// collectBatches is one transaction: the batches, their minutes' rollups and
// the collected marks commit together, so a batch is marked collected only
// with its rows rolled up, and a failure leaves it pending for the retry.
func (a *Activities) collectBatches(ctx context.Context, maxBatches int) (workflows.CollectRollupsResult, error) {
	var res workflows.CollectRollupsResult
	err := a.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		batches, err := db.PendingBatches(ctx, tx, maxBatches)
		if err != nil || len(batches) == 0 {
			return err
		}
		ids := make([]int64, len(batches))
		var minutes []time.Time
		for i, b := range batches {
			ids[i] = b.ID
			minutes = append(minutes, b.Minutes...)
			res.Events += b.Events
		}
		done, err := db.RecomputeMinutes(ctx, tx, minutes, heartbeat(ctx))
		if err != nil {
			return err
		}
		res.Batches, res.Minutes, res.Rows = len(batches), done.Minutes, done.Rows
		return db.MarkBatchesCollected(ctx, tx, ids, a.now())
	})
	if err != nil {
		return workflows.CollectRollupsResult{}, fmt.Errorf("collect batches: %w", db.MapError(err))
	}
	return res, nil
}

// recomputeWindow recomputes [from, to) one transaction per chunk of
// minutes, so the rollup lock is never held for long and the scheduled
// collector keeps up while a long window runs. Events counts the raw rows
// rolled up.
func (a *Activities) recomputeWindow(ctx context.Context, from, to time.Time) (workflows.CollectRollupsResult, error) {
	var res workflows.CollectRollupsResult
	oldest, ok, err := db.OldestRawMinute(ctx, a.DB.Bun)
	if err != nil || !ok {
		return res, err
	}
	for chunk := range slices.Chunk(minutesIn(from, to, oldest), db.RecomputeChunkMinutes) {
		var done db.Recomputed
		err := a.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var err error
			done, err = db.RecomputeMinutes(ctx, tx, chunk, heartbeat(ctx))
			return err
		})
		if err != nil {
			return workflows.CollectRollupsResult{}, fmt.Errorf("recompute window: %w", db.MapError(err))
		}
		res.Minutes += done.Minutes
		res.Rows += done.Rows
		res.Events += done.Requests
		activity.RecordHeartbeat(ctx, res)
	}
	return res, nil
}

// minutesIn lists the UTC minutes overlapping [from, to), starting no earlier
// than oldest: older minutes have lost their raw rows to retention and
// keep the rollups they have.
func minutesIn(from, to, oldest time.Time) []time.Time {
	m := from.UTC().Truncate(time.Minute)
	if m.Before(oldest) {
		m = oldest
	}
	var out []time.Time
	for ; m.Before(to); m = m.Add(time.Minute) {
		out = append(out, m)
	}
	return out
}

func heartbeat(ctx context.Context) func(db.Recomputed) {
	return func(p db.Recomputed) { activity.RecordHeartbeat(ctx, p) }
}

func addResult(total *workflows.CollectRollupsResult, r workflows.CollectRollupsResult) {
	total.Batches += r.Batches
	total.Minutes += r.Minutes
	total.Events += r.Events
	total.Rows += r.Rows
}

// RecordProcessMetrics stores this process's vital signs for in.Minute. The
// row belongs to the worker that ran the activity; a retry overwrites it.
func (a *Activities) RecordProcessMetrics(ctx context.Context, in workflows.RecordProcessMetricsInput) error {
	if in.Minute.IsZero() {
		return temporal.NewNonRetryableApplicationError("minute is required", errTypeInvalidInput, nil)
	}
	backlog, err := db.PendingIngest(ctx, a.DB.Bun)
	if err != nil {
		return err
	}
	m, err := sampleProcess()
	if err != nil {
		return err
	}
	pool := a.DB.Pool.Stat()
	m.Minute = in.Minute.UTC().Truncate(time.Minute)
	m.Instance = a.instance()
	m.DBConnsTotal = int(pool.TotalConns())
	m.DBConnsInUse = int(pool.AcquiredConns())
	m.DBConnsIdle = int(pool.IdleConns())
	m.IngestQueueBatches = backlog.Batches
	m.IngestQueueEvents = backlog.Events
	return db.UpsertProcessMetrics(ctx, a.DB.Bun, &m)
}

// sampleProcess reads CPU, memory and goroutines. runtime/metrics, unlike
// runtime.ReadMemStats, does not stop the world.
func sampleProcess() (db.ProcessMetrics, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return db.ProcessMetrics{}, fmt.Errorf("getrusage: %w", err)
	}
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(samples)
	rss, err := residentBytes()
	if err != nil {
		// Without procfs (not Linux), memory the Go runtime holds from the OS
		// is the closest measure at hand.
		rss = int64(samples[2].Value.Uint64() - samples[3].Value.Uint64())
	}
	return db.ProcessMetrics{
		CPUSeconds: float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9,
		RSSBytes:   rss,
		HeapBytes:  int64(samples[0].Value.Uint64()),
		Goroutines: int(samples[1].Value.Uint64()),
	}, nil
}

// residentBytes reads the resident set size from /proc/self/statm, whose
// second field counts resident pages.
func residentBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0, fmt.Errorf("parse /proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/self/statm: %w", err)
	}
	return pages * int64(os.Getpagesize()), nil
}
