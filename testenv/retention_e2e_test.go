package testenv_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

const trimWorkflowName = "trim-e2e"

// trimInput is trimWorkflow's input: the trim, and the task queue of the
// worker process that runs it.
type trimInput struct {
	Task          workflows.RetentionTaskInput `json:"task"`
	ActivityQueue string                       `json:"activity_queue"`
}

// trimWorkflow runs only the max-rows trim, on the activity queue (an
// `opsflow worker` process, which does not know this workflow), with a
// heartbeat timeout short enough for a test (the retention workflow's is 2
// minutes).
func trimWorkflow(ctx workflow.Context, in trimInput) (workflows.RetentionTaskResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           in.ActivityQueue,
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    3 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumAttempts: 5},
	})
	var r workflows.RetentionTaskResult
	err := workflow.ExecuteActivity(ctx, workflows.ActivityTrimRequestLogs, in.Task).Get(ctx, &r)
	return r, err
}

// TestTrimResumesAfterWorkerKilled SIGKILLs the `opsflow worker` process
// running a max-rows trim while its fourth DELETE batch waits on a row lock
// held by the test, then starts another worker process. (The workflow runs
// on an in-process worker of its own queue; only the activity is the
// processes'.) The killed worker's PostgreSQL backend outlives it, still
// waiting: once the test lets go of the lock, its DELETE may commit (the
// server notices the dead client only when it answers) or be rolled back;
// either way the retry, after the heartbeat timeout, resumes from the
// heartbeat the first attempt left on the server: it keeps that attempt's
// cutoff although newer rows arrived (starting over would cut 200 rows
// deeper), continues at its position and counts on from its 300 rows, and
// the rows left are exactly the newest 1500 of before plus the new ones.
func TestTrimResumesAfterWorkerKilled(t *testing.T) {
	ctx := context.Background()
	bin := opsflowBinary(t)
	dbURL, d := processDB(t, 8)
	tc := testenv.TemporalClient(t)
	actQueue := "trim-kill-" + uuid.NewString()
	wfQueue := "trim-workflow-" + uuid.NewString()
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

	env := workerEnv(t, dbURL, actQueue)
	first := startWorker(t, bin, env)
	awaitPolling(t, tc, actQueue)
	ww := sdkworker.New(tc, wfQueue, sdkworker.Options{})
	ww.RegisterWorkflowWithOptions(trimWorkflow, workflow.RegisterOptions{Name: trimWorkflowName})
	require.NoError(t, ww.Start())
	defer ww.Stop()
	begun := time.Now()
	in := trimInput{Task: workflows.RetentionTaskInput{Class: "request_logs", MaxRows: 1500, BatchSize: 100}, ActivityQueue: actQueue}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: trimWorkflowName + "/" + uuid.NewString(), TaskQueue: wfQueue},
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
	}, time.Minute, 50*time.Millisecond, "the first attempt heartbeats 300 rows and blocks; worker output:\n%s", first.out)

	first.kill(t)
	killed := time.Now()
	t.Logf("killed the first worker %s after the workflow started", killed.Sub(begun).Round(time.Millisecond))
	// Traffic continues while no worker runs.
	insertDay(today, 200, time.Second)
	newer := ids("SELECT request_id FROM request_logs WHERE ts >= ?", today)
	// The killed worker's DELETE still waits on the lock: let it go and
	// wait for the statement to end, committed or not. (No worker runs, so
	// any statement active in the database but the test's is the killed
	// worker's.)
	require.NoError(t, lockTx.Rollback(ctx))
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, d.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
			AND state = 'active'`).Scan(&n))
		return n == 0
	}, 30*time.Second, 20*time.Millisecond, "the killed worker's DELETE ends")
	old := ids("SELECT request_id FROM request_logs WHERE ts < ?", today)
	// The oldest day dropped, three batches deleted; the fourth committed
	// (100 rows gone, unknown to the heartbeat) or rolled back.
	require.Contains(t, []int{3000 - 1000 - 300, 3000 - 1000 - 400}, len(old), "rows before today")
	t.Logf("the killed worker's fourth batch deleted %d rows after it died", 3000-1000-300-len(old))
	assert.Subset(t, old, keep, "nothing to keep is gone")

	second := startWorker(t, bin, env)
	var res workflows.RetentionTaskResult
	require.NoError(t, run.Get(ctx, &res))
	t.Logf("resumed and finished %s after the kill", time.Since(killed).Round(time.Millisecond))

	// The resumed attempt counts on from the heartbeat's 300 rows and
	// deletes what is left down to the first attempt's cutoff; starting
	// over would count from zero and cut deeper.
	assert.Equal(t, int64(300+len(old)-1500), res.Rows, "300 rows by the first attempt, the rest by the resumed one")
	assert.Equal(t, []string{db.PartitionName(today.AddDate(0, 0, -3))}, res.Partitions, "the first attempt's dropped partition")
	want := append(slices.Clone(keep), newer...)
	slices.Sort(want)
	assert.Equal(t, want, ids("SELECT request_id FROM request_logs"),
		"everything to keep and everything newer is there, nothing else")
	runs, err := db.ListRetentionRuns(ctx, d.Bun, 10, 0)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, res.Rows, runs[0].RowsRemoved)
	assert.Equal(t, run.GetID(), runs[0].WorkflowID)

	// The second process ran the retry, started when the killed attempt's
	// heartbeat timed out.
	var started int
	hist := tc.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for hist.HasNext() {
		ev, err := hist.Next()
		require.NoError(t, err)
		a := ev.GetActivityTaskStartedEventAttributes()
		if a == nil {
			continue
		}
		started++
		assert.GreaterOrEqual(t, a.GetAttempt(), int32(2), "a retry")
		assert.True(t, strings.HasPrefix(a.GetIdentity(), strconv.Itoa(second.cmd.Process.Pid)+"@"),
			"run by the second worker process %d, not %s", second.cmd.Process.Pid, a.GetIdentity())
		assert.Equal(t, enumspb.TIMEOUT_TYPE_HEARTBEAT, a.GetLastFailure().GetTimeoutFailureInfo().GetTimeoutType(),
			"after the killed attempt's heartbeat timed out: %v", a.GetLastFailure())
	}
	assert.Equal(t, 1, started)
}
