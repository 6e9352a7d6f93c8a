package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/loadgen"
)

// dashboardData spans the four hours before testNow; windows below cut
// through hours so answers mix hour rows with minute edges.
var (
	dataFrom = testNow.Add(-4 * time.Hour)
	// windowA starts and ends mid-hour: minute edges around whole hours.
	windowA = [2]time.Time{testNow.Add(-3*time.Hour - 47*time.Minute), testNow.Add(-31 * time.Minute)}
)

// loadDashboardData ingests generated traffic through the API and runs the
// collector's recompute over it, as the collection workflow would.
func loadDashboardData(t *testing.T, env *ingestEnv, n int) {
	t.Helper()
	gen := loadgen.New(11, loadgen.Options{Tenants: 4, Providers: 3, Models: 6})
	var batch []loadgen.Event
	flush := func() {
		body, err := json.Marshal(batch)
		require.NoError(t, err)
		decodeOK(t, env.post(t, body, nil))
		batch = batch[:0]
	}
	for e := range gen.Over(dataFrom, testNow, n) {
		batch = append(batch, e)
		if len(batch) == 5000 {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	ctx := context.Background()
	var minutes []time.Time
	for m := dataFrom.Add(-time.Hour); m.Before(testNow); m = m.Add(time.Minute) {
		minutes = append(minutes, m)
	}
	require.NoError(t, env.db.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := db.RecomputeMinutes(ctx, tx, minutes, func(db.Recomputed) {})
		return err
	}))
}

// get calls a dashboard endpoint with the read key.
func (env *ingestEnv) get(t *testing.T, path string, q url.Values, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path+"?"+q.Encode(), nil)
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+env.readKey)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	return rec
}

func getJSON[T any](t *testing.T, env *ingestEnv, path string, q url.Values) T {
	t.Helper()
	rec := env.get(t, path, q)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var v T
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
	return v
}

type filterCase struct {
	name                             string
	tenants, providers, models, keys []string
}

func (f filterCase) values(from, to time.Time) url.Values {
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
	for name, vals := range map[string][]string{"tenant": f.tenants, "provider": f.providers, "model": f.models, "api_key": f.keys} {
		for _, v := range vals {
			q.Add(name, v)
		}
	}
	return q
}

// exactSQL is the raw-row truth with the product's definitions.
const exactSQL = `SELECT count(*),
	count(*) FILTER (WHERE status_code BETWEEN 100 AND 399 AND error_type IS DISTINCT FROM 'timeout'),
	count(*) FILTER (WHERE status_code BETWEEN 400 AND 499),
	count(*) FILTER (WHERE status_code BETWEEN 500 AND 599),
	count(*) FILTER (WHERE error_type = 'timeout' OR status_code IN (408, 504)),
	coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cached_tokens), 0),
	coalesce(sum(cost_usd), 0)::text, coalesce(max(latency_ms), 0),
	coalesce(percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms), '{}'),
	coalesce(percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ttft_ms), '{}')
FROM request_logs WHERE ts >= $1 AND ts < $2 ` + exactFilterSQL

const exactFilterSQL = `AND (cardinality($3::text[]) = 0 OR tenant = ANY($3))
	AND (cardinality($4::text[]) = 0 OR provider = ANY($4))
	AND (cardinality($5::text[]) = 0 OR model = ANY($5))
	AND (cardinality($6::text[]) = 0 OR api_key = ANY($6))`

func (f filterCase) args(from, to time.Time) []any {
	nn := func(v []string) []string {
		if v == nil {
			return []string{}
		}
		return v
	}
	return []any{from, to, nn(f.tenants), nn(f.providers), nn(f.models), nn(f.keys)}
}

type overviewJSON struct {
	Requests  int64 `json:"requests"`
	Successes int64 `json:"successes"`
	Errors    int64 `json:"errors"`
	Status4xx int64 `json:"status_4xx"`
	Status5xx int64 `json:"status_5xx"`
	Timeouts  int64 `json:"timeouts"`
	Tokens    struct {
		Input, Output, Cached int64
	} `json:"tokens"`
	CostUSD   string `json:"cost_usd"`
	LatencyMs struct {
		P50, P95, P99, Max *float64
	} `json:"latency_ms"`
	TTFTMs struct {
		P50, P95, P99 *float64
	} `json:"ttft_ms"`
	QPS struct {
		Current, Peak, Average float64
	} `json:"qps"`
	TopError *struct {
		StatusCode int     `json:"status_code"`
		Requests   int64   `json:"requests"`
		Share      float64 `json:"share"`
	} `json:"top_error"`
	Health struct {
		Score int  `json:"score"`
		Idle  bool `json:"idle"`
	} `json:"health"`
}

// topValues returns the n most frequent values of column in the data.
func topValues(t *testing.T, env *ingestEnv, column string, n int) []string {
	t.Helper()
	rows, err := env.db.Pool.Query(context.Background(),
		fmt.Sprintf(`SELECT %s FROM request_logs GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT %d`, column, n))
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var v string
		require.NoError(t, rows.Scan(&v))
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	require.Len(t, out, n)
	return out
}

func assertWithin1Pct(t *testing.T, want float64, got *float64, what string) {
	t.Helper()
	require.NotNil(t, got, what)
	assert.InDelta(t, want, *got, want*0.01, "%s: want %.3f got %.3f", what, want, *got)
}

// TestDashboardFromRollups checks the rollup-served answers against exact
// SQL over the raw rows for many filter combinations, and the shape of
// every data endpoint.
func TestDashboardFromRollups(t *testing.T) {
	env := newIngestEnv(t, nil)
	loadDashboardData(t, env, 40_000)
	tenants := topValues(t, env, "tenant", 2)
	providers := topValues(t, env, "provider", 2)
	models := topValues(t, env, "model", 2)
	keys := topValues(t, env, "api_key", 2)
	ctx := context.Background()
	// Keys belong to tenants: one of each tenant's for a breakdown by
	// tenant filtered by api_key.
	var keyPerTenant []string
	require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT array_agg(k) FROM (SELECT DISTINCT ON (tenant) api_key AS k
		FROM request_logs ORDER BY tenant, api_key) AS s`).Scan(&keyPerTenant))

	t.Run("overview equals exact SQL", func(t *testing.T) {
		cases := []filterCase{
			{name: "none"},
			{name: "tenant", tenants: tenants[:1]},
			{name: "provider", providers: providers[:1]},
			{name: "model", models: models[:1]},
			{name: "two tenants", tenants: tenants},
			{name: "tenant and provider", tenants: tenants[:1], providers: providers[:1]},
			{name: "tenants and model", tenants: tenants, models: models[:1]},
			{name: "provider and models", providers: providers[:1], models: models},
			{name: "full key", tenants: tenants[:1], providers: providers, models: models},
			{name: "api key", keys: keys[:1]},
			{name: "api keys", keys: keys},
			{name: "api key and tenant", keys: keys[:1], tenants: tenants},
			{name: "api keys and provider", keys: keys, providers: providers[:1]},
			{name: "api key and model", keys: keys[:1], models: models},
			{name: "no match", tenants: []string{"nobody"}},
		}
		windows := map[string][2]time.Time{
			"mid-hour edges": windowA,
			"whole hours":    {testNow.Add(-3 * time.Hour), testNow.Add(-time.Hour)},
			"within an hour": {testNow.Add(-2*time.Hour + 5*time.Minute), testNow.Add(-2*time.Hour + 50*time.Minute)},
		}
		for _, c := range cases {
			for wname, w := range windows {
				t.Run(c.name+"/"+wname, func(t *testing.T) {
					var want struct {
						requests, successes, s4, s5, timeouts, in, out, cached int64
						cost                                                   string
						max                                                    float64
						lat, ttft                                              []float64
					}
					require.NoError(t, env.db.Pool.QueryRow(ctx, exactSQL, c.args(w[0], w[1])...).Scan(
						&want.requests, &want.successes, &want.s4, &want.s5, &want.timeouts,
						&want.in, &want.out, &want.cached, &want.cost, &want.max, &want.lat, &want.ttft))
					got := getJSON[overviewJSON](t, env, "/api/v1/dashboard/overview", c.values(w[0], w[1]))
					assert.Equal(t, want.requests, got.Requests, "requests")
					assert.Equal(t, want.successes, got.Successes, "successes")
					assert.Equal(t, want.requests-want.successes, got.Errors, "errors")
					assert.Equal(t, want.s4, got.Status4xx, "4xx")
					assert.Equal(t, want.s5, got.Status5xx, "5xx")
					assert.Equal(t, want.timeouts, got.Timeouts, "timeouts")
					assert.Equal(t, want.in, got.Tokens.Input, "input tokens")
					assert.Equal(t, want.out, got.Tokens.Output, "output tokens")
					assert.Equal(t, want.cached, got.Tokens.Cached, "cached tokens")
					assert.Equal(t, want.cost, got.CostUSD, "cost")
					if c.name == "no match" {
						require.Zero(t, got.Requests)
						assert.Nil(t, got.LatencyMs.P50)
						assert.True(t, got.Health.Idle)
						assert.Equal(t, 100, got.Health.Score)
						return
					}
					require.Greater(t, want.requests, int64(300), "the case needs enough rows to be meaningful")
					require.NotNil(t, got.LatencyMs.Max)
					assert.Equal(t, want.max, *got.LatencyMs.Max, "max latency")
					for i, p := range []*float64{got.LatencyMs.P50, got.LatencyMs.P95, got.LatencyMs.P99} {
						assertWithin1Pct(t, want.lat[i], p, fmt.Sprintf("latency quantile %d", i))
					}
					for i, p := range []*float64{got.TTFTMs.P50, got.TTFTMs.P95, got.TTFTMs.P99} {
						assertWithin1Pct(t, want.ttft[i], p, fmt.Sprintf("ttft quantile %d", i))
					}
					assert.InDelta(t, float64(want.requests)/w[1].Sub(w[0]).Seconds(), got.QPS.Average, 1e-9)
					assert.GreaterOrEqual(t, got.QPS.Peak, got.QPS.Average)
					assert.True(t, got.Health.Score >= 0 && got.Health.Score <= 100)
					assert.False(t, got.Health.Idle)
				})
			}
		}
	})

	t.Run("peak and current qps", func(t *testing.T) {
		var peak, last int64
		require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT max(n) FROM (SELECT count(*) AS n FROM request_logs
			WHERE ts >= $1 AND ts < $2 GROUP BY date_trunc('minute', ts)) m`, windowA[0], windowA[1]).Scan(&peak))
		require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT count(*) FROM request_logs WHERE ts >= $1 AND ts < $2`,
			windowA[1].Add(-time.Minute), windowA[1]).Scan(&last))
		got := getJSON[overviewJSON](t, env, "/api/v1/dashboard/overview", filterCase{}.values(windowA[0], windowA[1]))
		assert.InDelta(t, float64(peak)/60, got.QPS.Peak, 1e-9)
		assert.InDelta(t, float64(last)/60, got.QPS.Current, 1e-9)
	})

	t.Run("top error", func(t *testing.T) {
		var status int
		var n, failures int64
		require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT status_code, count(*), sum(count(*)) OVER ()
			FROM request_logs WHERE ts >= $1 AND ts < $2
			AND NOT (status_code BETWEEN 100 AND 399 AND error_type IS DISTINCT FROM 'timeout')
			GROUP BY status_code, error_type, error_message ORDER BY 2 DESC LIMIT 1`, windowA[0], windowA[1]).Scan(&status, &n, &failures))
		got := getJSON[overviewJSON](t, env, "/api/v1/dashboard/overview", filterCase{}.values(windowA[0], windowA[1]))
		require.NotNil(t, got.TopError)
		assert.Equal(t, status, got.TopError.StatusCode)
		assert.Equal(t, n, got.TopError.Requests)
		assert.InDelta(t, float64(n)/float64(failures), got.TopError.Share, 1e-9)
	})

	t.Run("timeseries", func(t *testing.T) {
		type series struct {
			Step   string `json:"step"`
			Points []struct {
				TS    time.Time `json:"ts"`
				Value float64   `json:"value"`
			} `json:"points"`
		}
		// Hourly buckets over windowA extended two hours past the data:
		// partial first and last buckets, then zeros.
		to := testNow.Add(2 * time.Hour)
		q := filterCase{providers: providers[:1]}.values(windowA[0], to)
		q.Set("metric", "requests")
		q.Set("step", "1h")
		got := getJSON[series](t, env, "/api/v1/dashboard/timeseries", q)
		require.Len(t, got.Points, 6)
		for i, p := range got.Points {
			lo := windowA[0].Truncate(time.Hour).Add(time.Duration(i) * time.Hour)
			require.Equal(t, lo, p.TS)
			var want int64
			require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT count(*) FROM request_logs
				WHERE ts >= greatest($1, $2::timestamptz) AND ts < $3 AND provider = $4`,
				lo, windowA[0], lo.Add(time.Hour), providers[0]).Scan(&want))
			assert.EqualValues(t, want, p.Value, "bucket %s", lo)
		}
		assert.Zero(t, got.Points[4].Value+got.Points[5].Value, "buckets after the data are zeros")

		// auto: 24 h in 5-minute steps is 288 points, holes filled.
		q = url.Values{"range": {"24h"}, "metric": {"requests"}}
		got = getJSON[series](t, env, "/api/v1/dashboard/timeseries", q)
		assert.Equal(t, "5m", got.Step)
		require.Len(t, got.Points, 288)
		var sum float64
		for i, p := range got.Points {
			sum += p.Value
			if i > 0 {
				assert.Equal(t, 5*time.Minute, p.TS.Sub(got.Points[i-1].TS))
			}
		}
		var want int64
		require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT count(*) FROM request_logs WHERE ts >= $1 AND ts < $2`,
			testNow.Add(-24*time.Hour), testNow).Scan(&want))
		assert.EqualValues(t, want, sum)

		// A latency quantile per bucket agrees with percentile_cont.
		q = filterCase{}.values(testNow.Add(-3*time.Hour), testNow.Add(-time.Hour))
		q.Set("metric", "latency_p95")
		got = getJSON[series](t, env, "/api/v1/dashboard/timeseries", q)
		assert.Equal(t, "1m", got.Step)
		require.Len(t, got.Points, 120)
		var p95 float64
		require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
			FROM request_logs WHERE ts >= $1 AND ts < $2`, got.Points[7].TS, got.Points[7].TS.Add(time.Minute)).Scan(&p95))
		assertWithin1Pct(t, p95, &got.Points[7].Value, "p95 of one minute")
	})

	t.Run("breakdown", func(t *testing.T) {
		type breakdown struct {
			Total  int64 `json:"total_requests"`
			Others int64 `json:"others_requests"`
			Rows   []struct {
				Key      string  `json:"key"`
				Requests int64   `json:"requests"`
				Share    float64 `json:"share"`
			} `json:"rows"`
		}
		for _, c := range []struct {
			by     string
			filter filterCase
		}{
			{"model", filterCase{}},
			{"tenant", filterCase{providers: providers[:1]}},
			{"provider", filterCase{tenants: tenants}},
			{"api_key", filterCase{}},
			{"api_key", filterCase{tenants: tenants}},
			{"tenant", filterCase{keys: keyPerTenant}},
			{"api_key", filterCase{providers: providers[:1]}},
		} {
			t.Run(fmt.Sprintf("%s/%+v", c.by, c.filter), func(t *testing.T) {
				q := c.filter.values(windowA[0], windowA[1])
				q.Set("by", c.by)
				q.Set("limit", "2")
				got := getJSON[breakdown](t, env, "/api/v1/dashboard/breakdown", q)
				rows, err := env.db.Pool.Query(ctx, `SELECT `+c.by+`, count(*) FROM request_logs
					WHERE ts >= $1 AND ts < $2 `+exactFilterSQL+` GROUP BY 1 ORDER BY 2 DESC, 1`,
					c.filter.args(windowA[0], windowA[1])...)
				require.NoError(t, err)
				var keys []string
				var counts []int64
				var total int64
				for rows.Next() {
					var k string
					var n int64
					require.NoError(t, rows.Scan(&k, &n))
					keys, counts, total = append(keys, k), append(counts, n), total+n
				}
				require.NoError(t, rows.Err())
				require.Greater(t, len(keys), 2, "the limit must cut something")
				assert.Equal(t, total, got.Total)
				require.Len(t, got.Rows, 2)
				for i, r := range got.Rows {
					assert.Equal(t, keys[i], r.Key)
					assert.Equal(t, counts[i], r.Requests)
					assert.InDelta(t, float64(counts[i])/float64(total), r.Share, 1e-9)
				}
				assert.Equal(t, total-counts[0]-counts[1], got.Others)
			})
		}
	})

	t.Run("latency histogram", func(t *testing.T) {
		type histogram struct {
			Count   int64 `json:"count"`
			Buckets []struct {
				From  float64 `json:"from_ms"`
				To    float64 `json:"to_ms"`
				Count int64   `json:"count"`
			} `json:"buckets"`
		}
		got := getJSON[histogram](t, env, "/api/v1/dashboard/latency-histogram", filterCase{}.values(windowA[0], windowA[1]))
		var want, under100 int64
		require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE latency_ms < 100)
			FROM request_logs WHERE ts >= $1 AND ts < $2`, windowA[0], windowA[1]).Scan(&want, &under100))
		assert.Equal(t, want, got.Count)
		require.NotEmpty(t, got.Buckets)
		var sum, below int64
		for i, b := range got.Buckets {
			sum += b.Count
			assert.Less(t, b.From, b.To)
			if i > 0 {
				assert.Equal(t, got.Buckets[i-1].To, b.From, "buckets are contiguous")
				assert.InDelta(t, math.Pow(10, 0.2), b.To/b.From, 1e-3, "five buckets per decade")
			}
			if b.To <= 100 {
				below += b.Count
			}
		}
		assert.Equal(t, want, sum)
		// 100 ms is a bucket bound; sketch bins are 1% wide, so only values
		// within 1% of it can land on the other side.
		assert.InDelta(t, under100, below, float64(want)/100)
	})

	t.Run("errors and drill-down", func(t *testing.T) {
		type errorsJSON struct {
			Requests int64 `json:"requests"`
			Failures int64 `json:"failures"`
			Groups   []struct {
				StatusCode   int16   `json:"status_code"`
				ErrorType    string  `json:"error_type"`
				ErrorMessage string  `json:"error_message"`
				Requests     int64   `json:"requests"`
				Share        float64 `json:"share"`
			} `json:"groups"`
		}
		for _, c := range []filterCase{{name: "all"}, {name: "provider", providers: providers[:1]}, {name: "api key", keys: keys[:1]}} {
			t.Run(c.name, func(t *testing.T) {
				q := c.values(windowA[0], windowA[1])
				q.Set("limit", "3")
				got := getJSON[errorsJSON](t, env, "/api/v1/dashboard/errors", q)
				rows, err := env.db.Pool.Query(ctx, `SELECT status_code, coalesce(error_type, ''), coalesce(error_message, ''),
					count(*), sum(count(*)) OVER ()::bigint FROM request_logs WHERE ts >= $1 AND ts < $2 `+exactFilterSQL+`
					AND NOT (status_code BETWEEN 100 AND 399 AND error_type IS DISTINCT FROM 'timeout')
					GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT 3`, c.args(windowA[0], windowA[1])...)
				require.NoError(t, err)
				i := 0
				for rows.Next() {
					var status int16
					var typ, msg string
					var n, total int64
					require.NoError(t, rows.Scan(&status, &typ, &msg, &n, &total))
					require.Less(t, i, len(got.Groups))
					g := got.Groups[i]
					assert.Equal(t, status, g.StatusCode)
					assert.Equal(t, typ, g.ErrorType)
					assert.Equal(t, msg, g.ErrorMessage)
					assert.Equal(t, n, g.Requests)
					assert.InDelta(t, float64(n)/float64(total), g.Share, 1e-9)
					assert.Equal(t, total, got.Failures)
					i++
				}
				require.NoError(t, rows.Err())
				assert.Len(t, got.Groups, i)
			})
		}

		// Page through the raw rows of the top group.
		q := filterCase{}.values(windowA[0], windowA[1])
		q.Set("limit", "1")
		top := getJSON[errorsJSON](t, env, "/api/v1/dashboard/errors", q).Groups[0]
		type page struct {
			Items []struct {
				TS           time.Time `json:"ts"`
				RequestID    string    `json:"request_id"`
				StatusCode   int16     `json:"status_code"`
				ErrorType    string    `json:"error_type"`
				ErrorMessage string    `json:"error_message"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		q = filterCase{}.values(windowA[0], windowA[1])
		q.Set("status_code", fmt.Sprint(top.StatusCode))
		q.Set("error_type", top.ErrorType)
		q.Set("error_message", top.ErrorMessage)
		q.Set("limit", "50")
		seen := map[string]bool{}
		var last time.Time
		pages := 0
		for {
			p := getJSON[page](t, env, "/api/v1/dashboard/errors/requests", q)
			pages++
			for _, it := range p.Items {
				assert.False(t, seen[it.RequestID], "row %s listed twice", it.RequestID)
				seen[it.RequestID] = true
				if !last.IsZero() {
					assert.False(t, it.TS.After(last), "newest first")
				}
				last = it.TS
				assert.Equal(t, top.StatusCode, it.StatusCode)
				assert.Equal(t, top.ErrorType, it.ErrorType)
			}
			if p.NextCursor == "" {
				break
			}
			q.Set("cursor", p.NextCursor)
		}
		assert.Len(t, seen, int(top.Requests))
		assert.Greater(t, pages, 1, "the listing must span pages")
	})

	t.Run("re-collecting gives the same rows", func(t *testing.T) {
		snapshot := func() []string {
			var out []string
			for _, table := range []string{"rollup_minute_proj", "rollup_hour", "rollup_errors_minute", "rollup_errors_hour",
				"rollup_apikey_minute", "rollup_apikey_hour"} {
				var sum string
				require.NoError(t, env.db.Pool.QueryRow(ctx,
					`SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY t::text)) FROM `+table+` t`).Scan(&sum))
				out = append(out, table+" "+sum)
			}
			return out
		}
		before := snapshot()
		var minutes []time.Time
		for m := windowA[0]; m.Before(windowA[0].Add(90 * time.Minute)); m = m.Add(time.Minute) {
			minutes = append(minutes, m)
		}
		require.NoError(t, env.db.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			_, err := db.RecomputeMinutes(ctx, tx, minutes, func(db.Recomputed) {})
			return err
		}))
		assert.Equal(t, before, snapshot())
	})

	t.Run("etag", func(t *testing.T) {
		q := filterCase{}.values(windowA[0], windowA[1])
		first := env.get(t, "/api/v1/dashboard/overview", q)
		require.Equal(t, http.StatusOK, first.Code)
		etag := first.Header().Get("ETag")
		require.NotEmpty(t, etag)
		assert.Equal(t, "private, max-age=15", first.Header().Get(echo.HeaderCacheControl))

		again := env.get(t, "/api/v1/dashboard/overview", q, "If-None-Match", etag)
		assert.Equal(t, http.StatusNotModified, again.Code)
		assert.Empty(t, again.Body.Bytes())
		assert.Equal(t, etag, again.Header().Get("ETag"))

		other := env.get(t, "/api/v1/dashboard/overview", q, "If-None-Match", `"stale"`)
		assert.Equal(t, http.StatusOK, other.Code)
		assert.Equal(t, first.Body.String(), other.Body.String())
	})
}

// TestDashboardBadParams: every malformed parameter is a 400 naming it.
func TestDashboardBadParams(t *testing.T) {
	env := newIngestEnv(t, nil)
	cases := []struct {
		path, query, param string
	}{
		{"overview", "from=yesterday&to=2026-11-22T10:00:00Z", "from"},
		{"overview", "from=2026-11-22T10:00:00Z&to=2026-11-22T09:00:00Z", "from"},
		{"overview", "from=2026-06-01T00:00:00Z&to=2026-11-22T00:00:00Z", "from"},
		{"overview", "to=noon", "to"},
		{"overview", "range=2h", "range"},
		{"overview", "range=1h&from=2026-11-22T10:00:00Z", "range"},
		{"overview", "tenant=a&colour=red", "colour"},
		{"overview", "provider=", "provider"},
		{"timeseries", "metric=happiness", "metric"},
		{"timeseries", "range=1h", "metric"},
		{"timeseries", "metric=requests&step=7m", "step"},
		{"timeseries", "metric=requests&step=1m&range=30d", "step"},
		{"breakdown", "by=colour", "by"},
		{"breakdown", "by=model&sort=vibes", "sort"},
		{"breakdown", "by=model&limit=0", "limit"},
		{"latency-histogram", "metric=cpu", "metric"},
		{"errors", "limit=many", "limit"},
		{"errors/requests", "status_code=42", "status_code"},
		{"errors/requests", "cursor=bm9wZQ", "cursor"},
		{"system", "tenant=acme", "tenant"},
		{"realtime", "range=1h", "range"},
	}
	for _, c := range cases {
		t.Run(c.path+"?"+c.query, func(t *testing.T) {
			q, err := url.ParseQuery(c.query)
			require.NoError(t, err)
			rec := env.get(t, "/api/v1/dashboard/"+c.path, q)
			body := decodeErr(t, rec, http.StatusBadRequest, "invalid_parameter")
			var details struct {
				Parameter string `json:"parameter"`
			}
			require.NoError(t, json.Unmarshal(body.Error.Details, &details))
			assert.Equal(t, c.param, details.Parameter)
		})
	}

	t.Run("scope", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/dashboard/overview", nil)
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+env.ingestKey)
		rec := httptest.NewRecorder()
		env.e.ServeHTTP(rec, req)
		decodeErr(t, rec, http.StatusForbidden, "forbidden")
	})
}

// TestDashboardSystem reads process metrics back per instance, with CPU as
// the counter's rate.
func TestDashboardSystem(t *testing.T) {
	env := newIngestEnv(t, nil)
	ctx := context.Background()
	for i := range 10 {
		m := db.ProcessMetrics{Minute: testNow.Add(time.Duration(i-10) * time.Minute), Instance: "w1",
			CPUSeconds: float64(30 * i), RSSBytes: int64(100 + i), Goroutines: 10 + i}
		require.NoError(t, db.UpsertProcessMetrics(ctx, env.db.Bun, &m))
	}
	type system struct {
		Step   string `json:"step"`
		Points []struct {
			TS         time.Time `json:"ts"`
			Instance   string    `json:"instance"`
			CPUCores   *float64  `json:"cpu_cores"`
			RSSBytes   int64     `json:"rss_bytes"`
			Goroutines int       `json:"goroutines"`
		} `json:"points"`
	}
	got := getJSON[system](t, env, "/api/v1/dashboard/system", url.Values{"range": {"30m"}, "step": {"5m"}})
	assert.Equal(t, "5m", got.Step)
	require.Len(t, got.Points, 2)
	for _, p := range got.Points {
		assert.Equal(t, "w1", p.Instance)
		require.NotNil(t, p.CPUCores)
		assert.InDelta(t, 0.5, *p.CPUCores, 1e-9, "30 CPU seconds a minute")
	}
	assert.EqualValues(t, 109, got.Points[1].RSSBytes, "gauges show the bucket's highest")
	assert.Equal(t, 19, got.Points[1].Goroutines)
}

type ratesJSON struct {
	TS               time.Time `json:"ts"`
	QPS1m            float64   `json:"qps_1m"`
	EventsLastMinute int64     `json:"events_last_minute"`
	TokensLastMinute int64     `json:"tokens_last_minute"`
}

// sseReader reads "rates" events from a realtime stream.
type sseReader struct {
	t    *testing.T
	scan *bufio.Scanner
}

func openRealtime(t *testing.T, baseURL, key string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, baseURL+"/api/v1/dashboard/realtime", nil)
	require.NoError(t, err)
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+key)
	return http.DefaultClient.Do(req)
}

func (r *sseReader) next() ratesJSON {
	r.t.Helper()
	var event string
	for r.scan.Scan() {
		line := r.scan.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			require.Equal(r.t, "rates", event)
			var v ratesJSON
			require.NoError(r.t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &v))
			return v
		}
	}
	require.NoError(r.t, r.scan.Err())
	r.t.Fatal("stream ended")
	return ratesJSON{}
}

// TestDashboardRealtime reads the stream while events are ingested: the
// messages come once per second (consecutive whole seconds) and carry the
// ingested counts; past the subscriber limit a clear 503.
func TestDashboardRealtime(t *testing.T) {
	env := newIngestEnv(t, func(c *config.Config) { c.RealtimeMaxSubscribers = 1 })
	srv := httptest.NewServer(env.e)
	t.Cleanup(srv.Close)

	res, err := openRealtime(t, srv.URL, env.readKey)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream", res.Header.Get(echo.HeaderContentType))
	stream := &sseReader{t: t, scan: bufio.NewScanner(res.Body)}
	first := stream.next()
	assert.Zero(t, first.EventsLastMinute)

	t.Run("subscriber limit", func(t *testing.T) {
		second, err := openRealtime(t, srv.URL, env.readKey)
		require.NoError(t, err)
		defer second.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, second.StatusCode)
		var body errEnvelope
		require.NoError(t, json.NewDecoder(second.Body).Decode(&body))
		assert.Equal(t, "too_many_subscribers", body.Error.Code)
	})

	// Three batches of 40 events, 120 tokens each (see event()).
	const batches, perBatch = 3, 40
	for range batches {
		decodeOK(t, env.post(t, jsonArray(t, events(perBatch, testNow.Add(-time.Minute))), nil))
	}
	prev := first
	for range 5 {
		msg := stream.next()
		assert.True(t, msg.TS.After(prev.TS), "one message per tick, each for a later second")
		prev = msg
		if msg.EventsLastMinute == batches*perBatch {
			assert.EqualValues(t, batches*perBatch*120, msg.TokensLastMinute)
			assert.InDelta(t, float64(batches*perBatch)/60, msg.QPS1m, 1e-9)
			return
		}
	}
	t.Fatal("the ingested events never showed in the stream")
}

// TestDashboardRealtimeDisconnect: a client that hangs up frees its slot.
func TestDashboardRealtimeDisconnect(t *testing.T) {
	env := newIngestEnv(t, func(c *config.Config) { c.RealtimeMaxSubscribers = 1 })
	srv := httptest.NewServer(env.e)
	t.Cleanup(srv.Close)
	for range 3 {
		var res *http.Response
		// The server notices a hang-up when the connection closes; until
		// then the slot is taken and the answer is 503.
		require.Eventually(t, func() bool {
			var err error
			res, err = openRealtime(t, srv.URL, env.readKey)
			require.NoError(t, err)
			if res.StatusCode == http.StatusOK {
				return true
			}
			res.Body.Close()
			return false
		}, 10*time.Second, 50*time.Millisecond)
		(&sseReader{t: t, scan: bufio.NewScanner(res.Body)}).next()
		res.Body.Close()
	}
}
