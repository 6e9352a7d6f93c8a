package testenv_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/worker"
	"github.com/opsflow/opsflow/workflows"
)

const trimWorkflowName = "trim-e2e"

// trimWorkflow runs only the max-rows trim, with a heartbeat timeout short
// enough for a test (the retention workflow's is 2 minutes).
func trimWorkflow(ctx workflow.Context, in workflows.RetentionTaskInput) (workflows.RetentionTaskResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    3 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumAttempts: 5},
	})
	var r workflows.RetentionTaskResult
	err := workflow.ExecuteActivity(ctx, workflows.ActivityTrimRequestLogs, in).Get(ctx, &r)
	return r, err
}

// TestTrimResumesAfterWorkerStops stops the worker running a max-rows trim
// while its fourth DELETE batch waits on a row lock, then starts another
// worker. The retry resumes from the heartbeat the first attempt left on
// the server: it keeps that attempt's cutoff although newer rows arrived
// (starting over would cut 200 rows deeper), continues at its position, and
// the rows left are exactly the newest 1500 of before plus the new ones.
func TestTrimResumesAfterWorkerStops(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	tc := testenv.TemporalClient(t)
	queue := "trim-" + uuid.NewString()
	today := db.TruncateDay(time.Now())
	store := db.NewRequestLogStore(d)
	insertDay := func(day time.Time, n int, step time.Duration) {
		logs := make([]db.RequestLog, n)
		for i := range logs {
			logs[i] = db.RequestLog{TS: day.Add(time.Duration(i) * step), RequestID: fmt.Sprintf("%s-%04d", day.Format("0102"), i),
				Provider: "openai", StatusCode: 200, LatencyMs: 10}
		}
		_, err := store.Insert(ctx, db.IngestBatch{Owner: "test", RequestHash: []byte{3}, Logs: logs})
		require.NoError(t, err)
	}
	for off := -3; off < 0; off++ {
		insertDay(today.AddDate(0, 0, off), 1000, time.Minute)
	}
	ids := func(query string, args ...any) []string {
		var out []string
		require.NoError(t, d.Bun.NewRaw(query, args...).Scan(ctx, &out))
		slices.Sort(out)
		return out
	}
	keep := ids("SELECT request_id FROM request_logs ORDER BY ts DESC LIMIT 1500")
	boundary := db.PartitionName(today.AddDate(0, 0, -2))
	lockWaiters := func() int {
		var n int
		require.NoError(t, d.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
		return n
	}

	lockTx, err := d.Pool.Begin(ctx)
	require.NoError(t, err)
	defer lockTx.Rollback(ctx) //nolint:errcheck
	_, err = lockTx.Exec(ctx, `SELECT 1 FROM `+boundary+` WHERE ctid IN (
		SELECT ctid FROM `+boundary+` ORDER BY ts OFFSET 300 LIMIT 10) FOR UPDATE`)
	require.NoError(t, err)

	startWorker := func() func() {
		w := worker.New(tc, queue, &activities.Activities{DB: d})
		w.RegisterWorkflowWithOptions(trimWorkflow, workflow.RegisterOptions{Name: trimWorkflowName})
		require.NoError(t, w.Start())
		return w.Stop
	}
	stopFirst := startWorker()
	in := workflows.RetentionTaskInput{Class: "request_logs", MaxRows: 1500, BatchSize: 100}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: trimWorkflowName + "/" + uuid.NewString(), TaskQueue: queue},
		trimWorkflowName, in)
	require.NoError(t, err)

	// Wait until the server holds the heartbeat of three deleted batches
	// and the fourth waits on the lock.
	require.Eventually(t, func() bool {
		desc, err := tc.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
		require.NoError(t, err)
		for _, a := range desc.GetPendingActivities() {
			var p workflows.RetentionProgress
			if a.GetHeartbeatDetails() != nil &&
				converter.GetDefaultDataConverter().FromPayloads(a.GetHeartbeatDetails(), &p) == nil && p.Rows == 300 {
				return lockWaiters() > 0
			}
		}
		return false
	}, time.Minute, 50*time.Millisecond, "the first attempt heartbeats 300 rows and blocks")

	stopFirst()
	require.Eventually(t, func() bool { return lockWaiters() == 0 }, time.Minute, 20*time.Millisecond,
		"the stopped worker's DELETE is cancelled")
	left := ids("SELECT request_id FROM request_logs")
	assert.Len(t, left, 3000-1000-300, "the oldest day dropped, three batches deleted, the fourth rolled back")
	// Traffic continues while no worker runs.
	insertDay(today, 200, time.Second)
	newer := ids("SELECT request_id FROM request_logs WHERE ts >= ?", today)
	require.NoError(t, lockTx.Rollback(ctx))

	stopSecond := startWorker()
	defer stopSecond()
	var res workflows.RetentionTaskResult
	require.NoError(t, run.Get(ctx, &res))

	assert.Equal(t, int64(500), res.Rows, "300 rows by the first attempt, 200 by the resumed one")
	assert.Equal(t, []string{db.PartitionName(today.AddDate(0, 0, -3))}, res.Partitions)
	want := append(slices.Clone(keep), newer...)
	slices.Sort(want)
	assert.Equal(t, want, ids("SELECT request_id FROM request_logs"),
		"everything to keep and everything newer is there, nothing else")
	runs, err := db.ListRetentionRuns(ctx, d.Bun, 10, 0)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, int64(500), runs[0].RowsRemoved)
	assert.Equal(t, run.GetID(), runs[0].WorkflowID)
}
