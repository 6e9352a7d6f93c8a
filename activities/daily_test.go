package activities_test

import (
	"context"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/loadgen"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

// dailyDay is the aggregated day of the daily tests.
var dailyDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// toRequestLog converts a generated event to the stored form.
func toRequestLog(e loadgen.Event) db.RequestLog {
	l := db.RequestLog{
		TS: e.TS, RequestID: e.RequestID, Tenant: e.Tenant, APIKey: e.APIKey, UpstreamAccount: e.UpstreamAccount,
		Provider: e.Provider, Model: e.Model, Endpoint: e.Endpoint, StatusCode: int16(e.StatusCode),
		LatencyMs: e.LatencyMS, InputTokens: e.InputTokens, OutputTokens: e.OutputTokens,
		CachedTokens: e.CachedTokens, CostUSD: e.CostUSD, Stream: e.Stream, ErrorType: e.ErrorType,
		ErrorMessage: e.ErrorMessage,
	}
	if e.TTFTMS > 0 {
		ttft := e.TTFTMS
		l.TTFTMs = &ttft
	}
	l.ClientIP, _ = netip.ParseAddr(e.ClientIP)
	return l
}

// loadDay stores n generated events spread over [from, to) through the
// ingest store, which creates the partitions.
func loadDay(t *testing.T, d *db.DB, seed int64, from, to time.Time, n int) {
	t.Helper()
	gen := loadgen.New(seed, loadgen.Options{Tenants: 3, Providers: 2, Models: 3, LateFraction: -1})
	logs := make([]db.RequestLog, 0, n)
	for e := range gen.Over(from, to, n) {
		logs = append(logs, toRequestLog(e))
	}
	_, err := db.NewRequestLogStore(d).Insert(context.Background(), db.IngestBatch{Owner: "test", RequestHash: []byte{1}, Logs: logs})
	require.NoError(t, err)
}

func aggregateDay(t *testing.T, a *activities.Activities, day string) workflows.DailyResult {
	t.Helper()
	val, err := newEnv(a).ExecuteActivity(a.AggregateDailyStats, workflows.AggregateDayInput{Day: day})
	require.NoError(t, err)
	var res workflows.DailyResult
	require.NoError(t, val.Get(&res))
	return res
}

type exactDaily struct {
	tenant, provider, model                                string
	requests, successes, s4xx, s5xx, timeouts, in, out, ca int64
	cost                                                   string
	avg, max                                               float64
	keys                                                   int
	pct                                                    []float64
}

// exactDailySQL is the day's statistics straight from the raw rows,
// written independently of the aggregation under test.
const exactDailySQL = `
SELECT tenant, provider, model, count(*),
	count(*) FILTER (WHERE status_code BETWEEN 100 AND 399 AND coalesce(error_type, '') <> 'timeout'),
	count(*) FILTER (WHERE status_code >= 400 AND status_code < 500),
	count(*) FILTER (WHERE status_code >= 500 AND status_code < 600),
	count(*) FILTER (WHERE error_type = 'timeout' OR status_code = 408 OR status_code = 504),
	sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cost_usd)::text,
	avg(latency_ms), max(latency_ms), count(DISTINCT nullif(api_key, '')),
	percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms)
FROM request_logs WHERE ts >= $1 AND ts < $1 + interval '1 day'
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`

func exactDay(t *testing.T, d *db.DB, day time.Time) []exactDaily {
	t.Helper()
	rows, err := d.Pool.Query(context.Background(), exactDailySQL, day)
	require.NoError(t, err)
	defer rows.Close()
	var out []exactDaily
	for rows.Next() {
		var e exactDaily
		require.NoError(t, rows.Scan(&e.tenant, &e.provider, &e.model, &e.requests, &e.successes, &e.s4xx, &e.s5xx,
			&e.timeouts, &e.in, &e.out, &e.ca, &e.cost, &e.avg, &e.max, &e.keys, &e.pct))
		out = append(out, e)
	}
	require.NoError(t, rows.Err())
	return out
}

func storedDaily(t *testing.T, d *db.DB, day time.Time) []db.DailyStat {
	t.Helper()
	rows, err := db.ListDailyStats(context.Background(), d.Bun, db.DailyFilter{From: day, To: day})
	require.NoError(t, err)
	return rows
}

// dailySnapshot renders every daily_stats row as PostgreSQL's text of the
// whole row, so equal snapshots mean equal stored bytes, sketches included.
func dailySnapshot(t *testing.T, d *db.DB) []string {
	t.Helper()
	var out []string
	require.NoError(t, d.Bun.NewRaw("SELECT s::text FROM daily_stats s ORDER BY day, tenant, provider, model").
		Scan(context.Background(), &out))
	return out
}

func ratEqual(t *testing.T, want, got, msg string) {
	t.Helper()
	w, ok1 := new(big.Rat).SetString(want)
	g, ok2 := new(big.Rat).SetString(got)
	require.True(t, ok1 && ok2, "%s: parse %q / %q", msg, want, got)
	assert.Zero(t, w.Cmp(g), "%s: want %s, got %s", msg, want, got)
}

// TestDailyStatsEqualExactSQL aggregates a day with neighbours on both sides
// and compares every row with exact SQL over the day's raw rows: counts,
// tokens, cost and distinct keys exactly, percentiles within 1% of
// percentile_cont. Re-running gives identical rows; rows of a group that no
// longer exists are gone.
func TestDailyStatsEqualExactSQL(t *testing.T) {
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	// The neighbouring days' rows must not leak into the day.
	loadDay(t, d, 3, dailyDay.Add(-2*time.Hour), dailyDay, 500)
	loadDay(t, d, 4, dailyDay, dailyDay.Add(24*time.Hour), 30_000)
	loadDay(t, d, 5, dailyDay.Add(24*time.Hour), dailyDay.Add(26*time.Hour), 500)
	// A stale row of a group absent from the day: replacing must drop it.
	_, err := d.Pool.Exec(context.Background(), `INSERT INTO daily_stats SELECT day, 'ghost', provider, model,
		requests, successes, status_4xx, status_5xx, timeouts, input_tokens, output_tokens, cached_tokens, cost_usd,
		0, 0, 0, 0, 0, '\x', 0, '{}', 1 FROM (SELECT $1::date AS day, 'p' AS provider, 'm' AS model, 1 AS requests,
		0 AS successes, 0 AS status_4xx, 0 AS status_5xx, 0 AS timeouts, 0 AS input_tokens, 0 AS output_tokens,
		0 AS cached_tokens, 0 AS cost_usd) s`, dailyDay)
	require.NoError(t, err)

	res := aggregateDay(t, a, dailyDay.Format(time.DateOnly))

	want := exactDay(t, d, dailyDay)
	got := storedDaily(t, d, dailyDay)
	require.Len(t, got, len(want))
	assert.Equal(t, len(want), res.Rows)
	var total int64
	for i, w := range want {
		g := got[i]
		name := w.tenant + "/" + w.provider + "/" + w.model
		require.Equal(t, [3]string{w.tenant, w.provider, w.model}, [3]string{g.Tenant, g.Provider, g.Model})
		require.GreaterOrEqual(t, w.requests, int64(300), "%s: too few rows for a 1%% percentile check", name)
		total += w.requests
		assert.Equal(t, []int64{w.requests, w.successes, w.s4xx, w.s5xx, w.timeouts, w.in, w.out, w.ca},
			[]int64{g.Requests, g.Successes, g.Status4xx, g.Status5xx, g.Timeouts, g.InputTokens, g.OutputTokens, g.CachedTokens}, name)
		ratEqual(t, w.cost, g.CostUSD, name+" cost")
		assert.InEpsilon(t, w.avg, g.LatencyAvg, 1e-9, name+" avg")
		assert.Equal(t, w.max, g.LatencyMax, name+" max")
		assert.Equal(t, w.keys, g.DistinctKeys, name+" distinct keys")
		assert.Len(t, g.APIKeys, w.keys, name)
		for j, p := range []float64{g.LatencyP50, g.LatencyP95, g.LatencyP99} {
			assert.InEpsilon(t, w.pct[j], p, 0.01, "%s percentile %d: sketch %g, percentile_cont %g", name, j, p, w.pct[j])
		}
	}
	assert.Equal(t, int64(30_000), total, "every row of the day, none of its neighbours")
	assert.Equal(t, total, res.Requests)
	assertModelRanks(t, got)

	before := dailySnapshot(t, d)
	aggregateDay(t, a, dailyDay.Format(time.DateOnly))
	assert.Equal(t, before, dailySnapshot(t, d), "re-running a day gives identical rows")
}

// assertModelRanks checks that each tenant's models are ranked 1..n by
// requests.
func assertModelRanks(t *testing.T, rows []db.DailyStat) {
	t.Helper()
	byTenant := map[string][]db.DailyStat{}
	for _, r := range rows {
		byTenant[r.Tenant] = append(byTenant[r.Tenant], r)
	}
	for tenant, rs := range byTenant {
		ranks := map[int]int64{}
		for _, r := range rs {
			ranks[r.ModelRank] = r.Requests
		}
		require.Len(t, ranks, len(rs), "tenant %s: ranks are distinct", tenant)
		for rank := 2; rank <= len(rs); rank++ {
			assert.GreaterOrEqual(t, ranks[rank-1], ranks[rank], "tenant %s rank %d", tenant, rank)
		}
	}
}

// TestDailyStatsEmptyDay: a day without rows (or without a partition)
// aggregates to no rows and clears what was stored.
func TestDailyStatsEmptyDay(t *testing.T) {
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	loadDay(t, d, 6, dailyDay, dailyDay.Add(time.Hour), 1000)
	aggregateDay(t, a, dailyDay.Format(time.DateOnly))
	require.NotEmpty(t, storedDaily(t, d, dailyDay))

	_, err := d.Pool.Exec(context.Background(), "DELETE FROM request_logs")
	require.NoError(t, err)
	res := aggregateDay(t, a, dailyDay.Format(time.DateOnly))
	assert.Zero(t, res.Rows)
	assert.Empty(t, storedDaily(t, d, dailyDay))

	res = aggregateDay(t, a, "2020-01-01") // no partition at all
	assert.Zero(t, res.Rows)
}

func TestAggregateDailyStatsRejectsBadDay(t *testing.T) {
	a := &activities.Activities{DB: testenv.DB(t)}
	_, err := newEnv(a).ExecuteActivity(a.AggregateDailyStats, workflows.AggregateDayInput{Day: "2026-13-01"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "day must be a date")
}
