package activities_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

// retentionToday is "today" of the retention tests.
var retentionToday = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func dayOf(offset int) time.Time { return retentionToday.AddDate(0, 0, offset) }

func requestIDs(t *testing.T, d *db.DB, query string, args ...any) []string {
	t.Helper()
	var ids []string
	require.NoError(t, d.Bun.NewRaw(query, args...).Scan(context.Background(), &ids))
	slices.Sort(ids)
	return ids
}

func allRequestIDs(t *testing.T, d *db.DB) []string {
	return requestIDs(t, d, "SELECT request_id FROM request_logs")
}

func runTask(t *testing.T, env *testsuite.TestActivityEnvironment, fn any, in workflows.RetentionTaskInput) workflows.RetentionTaskResult {
	t.Helper()
	val, err := env.ExecuteActivity(fn, in)
	require.NoError(t, err)
	var res workflows.RetentionTaskResult
	require.NoError(t, val.Get(&res))
	return res
}

func retentionRuns(t *testing.T, d *db.DB) []db.RetentionRun {
	t.Helper()
	runs, err := db.ListRetentionRuns(context.Background(), d.Bun, 100, 0)
	require.NoError(t, err)
	return runs
}

// TestTrimRequestLogsResumesAfterCrash kills a max-rows trim in the middle
// of its batched deletes (its DELETE blocked on a row lock, its context
// cancelled as a dying worker's is) and runs a second attempt with the
// heartbeat the first one left. The second attempt resumes: it keeps the
// first attempt's cutoff although newer rows arrived meanwhile (a fresh
// start would recount and cut deeper), continues from the recorded
// position, and at the end exactly the rows that should go are gone.
func TestTrimRequestLogsResumesAfterCrash(t *testing.T) {
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	ctx := context.Background()
	loadDay(t, d, 21, dayOf(-3), dayOf(-2), 1000)
	loadDay(t, d, 22, dayOf(-2), dayOf(-1), 1000)
	loadDay(t, d, 23, dayOf(-1), dayOf(0), 1000)
	const maxRows = 1500 // day -1 whole and the newest 500 of day -2 stay
	keep := requestIDs(t, d, "SELECT request_id FROM request_logs ORDER BY ts DESC LIMIT ?", maxRows)
	boundary := db.Partition{Name: db.PartitionName(dayOf(-2)), Day: dayOf(-2)}

	// Lock rows 300-309 of the boundary day (oldest first): batches of 100
	// delete rows 0-299, then the fourth batch waits on the lock.
	lockTx, err := d.Pool.Begin(ctx)
	require.NoError(t, err)
	defer lockTx.Rollback(ctx) //nolint:errcheck
	_, err = lockTx.Exec(ctx, `SELECT 1 FROM `+boundary.Name+` WHERE ctid IN (
		SELECT ctid FROM `+boundary.Name+` ORDER BY ts OFFSET 300 LIMIT 10) FOR UPDATE`)
	require.NoError(t, err)

	workerCtx, crash := context.WithCancel(ctx)
	var s testsuite.WorkflowTestSuite
	env1 := s.NewTestActivityEnvironment()
	env1.RegisterActivity(a)
	env1.SetWorkerOptions(worker.Options{BackgroundActivityContext: workerCtx})
	var last workflows.RetentionProgress
	env1.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p workflows.RetentionProgress
		if details.HasValues() && details.Get(&p) == nil {
			last = p
		}
	})
	done := make(chan error, 1)
	in := workflows.RetentionTaskInput{Class: "request_logs", MaxRows: maxRows, BatchSize: 100}
	go func() {
		_, err := env1.ExecuteActivity(a.TrimRequestLogs, in)
		done <- err
	}()
	require.Eventually(t, func() bool { return lockWaiters(t, d) > 0 }, time.Minute, 10*time.Millisecond,
		"the trim reaches the locked rows")
	crash()
	err = <-done
	require.Error(t, err, "the first attempt dies")
	// Its blocked DELETE is cancelled in PostgreSQL before the lock goes,
	// so the dead attempt's last statement cannot complete after all.
	require.Eventually(t, func() bool { return lockWaiters(t, d) == 0 }, time.Minute, 10*time.Millisecond)
	require.NoError(t, lockTx.Rollback(ctx))

	require.True(t, last.Planned, "the first attempt heartbeated its plan")
	require.False(t, last.Recorded)
	assert.Equal(t, []string{db.PartitionName(dayOf(-3))}, last.Partitions, "the oldest day went as a partition")
	assert.Equal(t, int64(300), last.Rows, "three batches were deleted before the crash")
	assert.False(t, last.Position.IsZero())
	assert.Empty(t, retentionRuns(t, d), "nothing recorded by the dead attempt")
	remaining := allRequestIDs(t, d)
	assert.Len(t, remaining, 3000-1000-300)
	assert.Zero(t, missing(keep, remaining), "the crash lost nothing that should be kept")

	// Traffic continues: 200 newer rows. A fresh plan would now cut 200
	// rows deeper; the resumed attempt keeps its cutoff.
	loadDay(t, d, 24, dayOf(0), dayOf(0).Add(time.Hour), 200)
	newer := requestIDs(t, d, "SELECT request_id FROM request_logs WHERE ts >= ?", dayOf(0))
	require.Len(t, newer, 200)

	env2 := newEnv(a)
	env2.SetHeartbeatDetails(last)
	res := runTask(t, env2, a.TrimRequestLogs, in)

	assert.Equal(t, int64(500), res.Rows, "rows deleted in batches across both attempts")
	assert.Equal(t, []string{db.PartitionName(dayOf(-3))}, res.Partitions)
	want := sortedCopy(append(slices.Clone(keep), newer...))
	got := allRequestIDs(t, d)
	assert.Len(t, got, len(want), "the planned rows are gone, not 200 more")
	assert.Zero(t, missing(want, got), "everything to keep and everything newer stays")
	runs := retentionRuns(t, d)
	require.Len(t, runs, 1)
	assert.Equal(t, workflows.RetentionTrimMaxRows, runs[0].Action)
	assert.Equal(t, int64(500), runs[0].RowsRemoved)
	assert.Equal(t, []string{db.PartitionName(dayOf(-3))}, runs[0].PartitionsRemoved)
}

// missing counts the ids of want absent from got.
func missing(want, got []string) int {
	n := 0
	for _, id := range want {
		if _, found := slices.BinarySearch(got, id); !found {
			n++
		}
	}
	return n
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// lockWaiters counts backends of this database waiting for a lock.
func lockWaiters(t *testing.T, d *db.DB) int {
	t.Helper()
	var n int
	require.NoError(t, d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
	return n
}

// TestTrimRequestLogs covers the plans a trim can make: nothing over the
// cap, a cap that falls on a day boundary (whole partitions only), and a
// resumed attempt whose predecessor recorded its row (its completion lost)
// repeating nothing.
func TestTrimRequestLogs(t *testing.T) {
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	loadDay(t, d, 31, dayOf(-2), dayOf(-1), 1000)
	loadDay(t, d, 32, dayOf(-1), dayOf(0), 1000)
	in := workflows.RetentionTaskInput{Class: "request_logs", MaxRows: 2000}

	res := runTask(t, newEnv(a), a.TrimRequestLogs, in)
	assert.Zero(t, res.Rows)
	assert.Empty(t, res.Partitions)
	assert.Len(t, allRequestIDs(t, d), 2000)

	in.MaxRows = 1000
	res = runTask(t, newEnv(a), a.TrimRequestLogs, in)
	assert.Zero(t, res.Rows, "the cap falls on midnight: no row deletes")
	assert.Equal(t, []string{db.PartitionName(dayOf(-2))}, res.Partitions)
	assert.Len(t, allRequestIDs(t, d), 1000)

	recorded := retentionRuns(t, d)
	env := newEnv(a)
	env.SetHeartbeatDetails(workflows.RetentionProgress{Planned: true, Recorded: true, Rows: 7})
	res = runTask(t, env, a.TrimRequestLogs, in)
	assert.Equal(t, int64(7), res.Rows, "a recorded task answers its record")
	assert.Equal(t, recorded, retentionRuns(t, d), "and records nothing again")

	_, err := newEnv(a).ExecuteActivity(a.TrimRequestLogs, workflows.RetentionTaskInput{Class: "request_logs", MaxRows: 10})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "max_rows must be at least")
}

// TestDropExpiredPartitionsThenIngest drops the days wholly before the
// cutoff, keeps the rest, creates partitions ahead, and shows that
// ingestion for a dropped day (through a store that still believes in the
// partition) and for a day never created both succeed.
func TestDropExpiredPartitionsThenIngest(t *testing.T) {
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	ctx := context.Background()
	store := db.NewRequestLogStore(d)
	batch := func(ts time.Time) db.IngestBatch {
		return db.IngestBatch{Owner: "test", RequestHash: []byte{2}, Logs: []db.RequestLog{{TS: ts, Provider: "openai", StatusCode: 200, LatencyMs: 12}}}
	}
	for _, off := range []int{-40, -31, -30, -1} {
		_, err := store.Insert(ctx, batch(dayOf(off).Add(time.Hour)))
		require.NoError(t, err)
	}

	res := runTask(t, newEnv(a), a.DropExpiredPartitions, workflows.RetentionTaskInput{Class: "request_logs", Cutoff: dayOf(-30)})

	assert.Equal(t, []string{db.PartitionName(dayOf(-40)), db.PartitionName(dayOf(-31))}, res.Partitions)
	parts, err := db.RequestLogPartitions(ctx, d.Bun)
	require.NoError(t, err)
	var names []string
	for _, p := range parts {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{db.PartitionName(dayOf(-30)), db.PartitionName(dayOf(-1))}, names)
	runs := retentionRuns(t, d)
	require.Len(t, runs, 1)
	assert.Equal(t, res.Partitions, runs[0].PartitionsRemoved)
	assert.Equal(t, workflows.RetentionDropPartitions, runs[0].Action)

	val, err := newEnv(a).ExecuteActivity(a.EnsureRequestLogPartitions,
		workflows.EnsurePartitionsInput{From: retentionToday.Format(time.DateOnly), Days: workflows.PartitionsAhead + 1})
	require.NoError(t, err)
	var ensured workflows.EnsurePartitionsResult
	require.NoError(t, val.Get(&ensured))
	assert.Len(t, ensured.Partitions, 8)
	assert.Equal(t, db.PartitionName(dayOf(7)), ensured.Partitions[7])

	// The store cached day -40's partition; retention dropped it.
	_, err = store.Insert(ctx, batch(dayOf(-40).Add(2*time.Hour)))
	require.NoError(t, err, "ingest for a dropped day recreates its partition")
	_, err = store.Insert(ctx, batch(dayOf(-400)))
	require.NoError(t, err, "ingest for a day never created succeeds")
	var n int
	require.NoError(t, d.Pool.QueryRow(ctx, "SELECT count(*) FROM request_logs WHERE ts < $1", dayOf(-39)).Scan(&n))
	assert.Equal(t, 2, n)
}

// TestPurgeExpiredPerClass deletes each non-partitioned class's expired rows
// in small batches and nothing else; dead-lettered notifications stay
// whatever their age.
func TestPurgeExpiredPerClass(t *testing.T) {
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	ctx := context.Background()
	old, fresh := dayOf(-100), dayOf(-1)
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := d.Pool.Exec(ctx, q, args...)
		require.NoError(t, err)
	}
	for i, ts := range []time.Time{old, old.Add(time.Minute), old.Add(2 * time.Minute), fresh} {
		exec(`INSERT INTO rollup_minute VALUES ($1, 't', 'p', 'm', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, '\x', 0, 0, 0, '\x')`, ts)
		exec(`INSERT INTO rollup_minute_proj VALUES (0, $1, 't', 'p', 'm', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, '\x', 0, 0, 0, '\x')`, ts)
		exec(`INSERT INTO rollup_hour VALUES (7, $1, 't', 'p', 'm', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, '\x', 0, 0, 0, '\x', 1)`, ts)
		exec(`INSERT INTO rollup_errors_minute VALUES ($1, 't', 'p', 'm', 500, 'e', 'boom', 1)`, ts)
		exec(`INSERT INTO rollup_errors_hour VALUES (7, $1, 't', 'p', 'm', 500, 'e', 'boom', 1)`, ts)
		exec(`INSERT INTO rollup_apikey_minute VALUES ($1, 'k', 't', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, '\x', 0, 0, 0, '\x')`, ts)
		exec(`INSERT INTO rollup_apikey_hour VALUES ($1, 'k', 't', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, '\x', 0, 0, 0, '\x', 1)`, ts)
		exec(`INSERT INTO process_metrics VALUES ($1, 'i', 0, 0, 0, 0, 0, 0, 0, 0, 0)`, ts)
		exec(`INSERT INTO alert_events (at, fingerprint, rule_id, from_state, to_state, severity, event_key)
			VALUES ($1, 'f', 1, 'ok', 'firing', 'warning', $2)`, ts, strconv.Itoa(i))
		exec(`INSERT INTO daily_stats VALUES ($1::date, 't', 'p', 'm', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, '\x', 0, '{}', 1)`,
			ts.AddDate(0, 0, -i))
	}
	exec(`INSERT INTO channels (id, name, type, config_key_id, config_sealed) VALUES (1, 'c', 'webhook', 'k', '\x00')`)
	for i, n := range []struct {
		status string
		sent   *time.Time
		dead   *time.Time
	}{{"sent", &old, nil}, {"sent", &old, nil}, {"sent", &fresh, nil}, {"dead", nil, &old}, {"pending", nil, nil}} {
		exec(`INSERT INTO notifications (id, channel_id, channel_type, kind, payload, status, sent_at, dead_at, created_at, workflow_id)
			VALUES (gen_random_uuid(), 1, 'webhook', 'test', '{}', $1, $2, $3, $4, $5)`, n.status, n.sent, n.dead, old, "notify/"+strconv.Itoa(i))
	}

	tests := []struct {
		class, table string
		removed      int64
		left         int
	}{
		{"rollup_minute", "rollup_minute", 3, 1},
		{"rollup_minute_proj", "rollup_minute_proj", 3, 1},
		{"rollup_hour", "rollup_hour", 3, 1},
		{"rollup_errors_minute", "rollup_errors_minute", 3, 1},
		{"rollup_errors_hour", "rollup_errors_hour", 3, 1},
		{"rollup_apikey_minute", "rollup_apikey_minute", 3, 1},
		{"rollup_apikey_hour", "rollup_apikey_hour", 3, 1},
		{"process_metrics", "process_metrics", 3, 1},
		{"alert_events", "alert_events", 3, 1},
		{"daily_stats", "daily_stats", 3, 1},
		{"notifications_sent", "notifications", 2, 3},
	}
	for _, tc := range tests {
		t.Run(tc.class, func(t *testing.T) {
			res := runTask(t, newEnv(a), a.PurgeExpired, workflows.RetentionTaskInput{Class: tc.class, Cutoff: dayOf(-30), BatchSize: 2})
			assert.Equal(t, tc.removed, res.Rows)
			assert.Equal(t, tc.table, res.Table)
			var left int
			require.NoError(t, d.Pool.QueryRow(ctx, "SELECT count(*) FROM "+tc.table).Scan(&left))
			assert.Equal(t, tc.left, left)
		})
	}
	var dead int
	require.NoError(t, d.Pool.QueryRow(ctx, "SELECT count(*) FROM notifications WHERE status = 'dead'").Scan(&dead))
	assert.Equal(t, 1, dead, "a dead-lettered notification waits for an operator")
	assert.Len(t, retentionRuns(t, d), len(tests))

	_, err := newEnv(a).ExecuteActivity(a.PurgeExpired, workflows.RetentionTaskInput{Class: "request_logs", Cutoff: old})
	require.Error(t, err, "request logs go by partition, not by row")
	var appErr interface{ NonRetryable() bool }
	require.True(t, errors.As(err, &appErr) && appErr.NonRetryable())
}
