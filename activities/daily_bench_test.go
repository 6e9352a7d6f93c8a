package activities_test

import (
	"context"
	"iter"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/loadgen"
	"github.com/opsflow/opsflow/testenv"
)

// benchDailyRows is the size of the benchmarked day (SPEC §13: daily
// aggregation time at 5 M request logs).
const benchDailyRows = 5_000_000

// loadBenchDay streams n generated events of one day into request_logs with
// CopyFrom, never holding the day in memory.
func loadBenchDay(b *testing.B, d *db.DB, day time.Time, n int) {
	b.Helper()
	ctx := context.Background()
	_, err := db.EnsureRequestLogPartition(ctx, d.Bun, day)
	require.NoError(b, err)
	gen := loadgen.New(99, loadgen.Options{LateFraction: -1})
	next, stop := iter.Pull(gen.Over(day, day.Add(24*time.Hour), n))
	defer stop()
	cols := []string{"ts", "request_id", "tenant", "api_key", "provider", "model", "status_code", "latency_ms",
		"input_tokens", "output_tokens", "cached_tokens", "cost_usd", "error_type"}
	vals := make([]any, len(cols))
	copied, err := d.Pool.CopyFrom(ctx, pgx.Identifier{"request_logs"}, cols, pgx.CopyFromFunc(func() ([]any, error) {
		e, ok := next()
		if !ok {
			return nil, nil
		}
		l := toRequestLog(e)
		vals[0], vals[1], vals[2], vals[3], vals[4], vals[5] = l.TS, l.RequestID, l.Tenant, l.APIKey, l.Provider, l.Model
		vals[6], vals[7], vals[8], vals[9], vals[10], vals[11] = l.StatusCode, l.LatencyMs, l.InputTokens, l.OutputTokens, l.CachedTokens, l.CostUSD
		vals[12] = nil
		if l.ErrorType != "" {
			vals[12] = l.ErrorType
		}
		return vals, nil
	}))
	require.NoError(b, err)
	require.Equal(b, int64(n), copied)
	_, err = d.Pool.Exec(ctx, "ANALYZE request_logs")
	require.NoError(b, err)
}

// BenchmarkDailyAggregation5M aggregates a day of benchDailyRows request
// logs into daily_stats (both passes and the replace), then, on the same
// day, times DELETE of all its rows (rolled back, so the same rows remain)
// against dropping its partition.
func BenchmarkDailyAggregation5M(b *testing.B) {
	d := testenv.DB(b)
	ctx := context.Background()
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	loadStart := time.Now()
	loadBenchDay(b, d, day, benchDailyRows)
	b.Logf("loaded %d rows in %s", benchDailyRows, time.Since(loadStart).Round(time.Millisecond))

	b.ResetTimer()
	var groups int
	for b.Loop() {
		rows, err := db.AggregateDay(ctx, d, day, nil)
		require.NoError(b, err)
		require.NoError(b, db.ReplaceDailyStats(ctx, d, day, rows))
		groups = len(rows)
	}
	b.StopTimer()
	perRun := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(perRun.Seconds(), "aggregate-s")
	b.ReportMetric(float64(benchDailyRows)/perRun.Seconds(), "rows/s")
	b.Logf("aggregated %d rows into %d groups in %s", benchDailyRows, groups, perRun.Round(time.Millisecond))

	tx, err := d.Pool.Begin(ctx)
	require.NoError(b, err)
	start := time.Now()
	tag, err := tx.Exec(ctx, "DELETE FROM request_logs WHERE ts >= $1 AND ts < $2", day, day.Add(24*time.Hour))
	require.NoError(b, err)
	deleteTook := time.Since(start)
	require.NoError(b, tx.Rollback(ctx))
	require.Equal(b, int64(benchDailyRows), tag.RowsAffected())

	start = time.Now()
	require.NoError(b, db.DropRequestLogPartition(ctx, d, db.PartitionName(day)))
	dropTook := time.Since(start)
	b.ReportMetric(deleteTook.Seconds(), "delete-s")
	b.ReportMetric(float64(dropTook.Microseconds())/1000, "drop-ms")
	b.Logf("DELETE of the day's %d rows: %s (before any VACUUM); DROP of its partition: %s",
		benchDailyRows, deleteTook.Round(time.Millisecond), dropTook.Round(time.Microsecond))
}
