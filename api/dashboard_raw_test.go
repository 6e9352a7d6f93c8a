package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/config"
)

// TestDashboardAPIKeyStreamedSketches checks api_key answers per bucket and
// per key against percentile_cont, both from the api_key rollups (api_key
// alone) and from the raw-row path's streamed sketches (with a provider
// filter, which no rollup keeps with api_key): a time series with an
// api_key filter (one sketch per hour) and a breakdown by api_key (one per
// key).
func TestDashboardAPIKeyStreamedSketches(t *testing.T) {
	env := newIngestEnv(t, nil)
	loadDashboardData(t, env, 20_000)
	keys := topValues(t, env, "api_key", 3)
	providers := topValues(t, env, "provider", 1)
	ctx := context.Background()
	from, to := testNow.Add(-4*time.Hour), testNow.Add(-time.Hour)

	for name, extra := range map[string][]string{"rollups": nil, "raw": providers} {
		t.Run("timeseries per bucket/"+name, func(t *testing.T) {
			f := filterCase{keys: keys[:2], providers: extra}
			q := f.values(from, to)
			q.Set("step", "1h")
			for _, metric := range []string{"requests", "latency_p95", "ttft_p50"} {
				q.Set("metric", metric)
				got := getJSON[struct {
					Points []struct {
						TS    time.Time `json:"ts"`
						Value float64   `json:"value"`
					} `json:"points"`
				}](t, env, "/api/v1/dashboard/timeseries", q)
				rows, err := env.db.Pool.Query(ctx, `SELECT date_bin('1 hour', ts, 'epoch'::timestamptz), count(*),
					percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms)
					FROM request_logs WHERE ts >= $1 AND ts < $2 `+exactFilterSQL+` GROUP BY 1 ORDER BY 1`, f.args(from, to)...)
				require.NoError(t, err)
				i := 0
				for rows.Next() {
					var bucket time.Time
					var n int64
					var p95, ttft50 float64
					require.NoError(t, rows.Scan(&bucket, &n, &p95, &ttft50))
					require.Less(t, i, len(got.Points))
					p := got.Points[i]
					assert.True(t, bucket.Equal(p.TS), "bucket %d: %s != %s", i, bucket, p.TS)
					switch metric {
					case "requests":
						assert.Equal(t, float64(n), p.Value, "requests of %s", bucket)
					case "latency_p95":
						assertWithin1Pct(t, p95, &p.Value, metric+" "+bucket.String())
					case "ttft_p50":
						assertWithin1Pct(t, ttft50, &p.Value, metric+" "+bucket.String())
					}
					i++
				}
				require.NoError(t, rows.Err())
				assert.Equal(t, 3, i)
			}
		})

		t.Run("breakdown per key/"+name, func(t *testing.T) {
			f := filterCase{providers: extra}
			q := f.values(from, to)
			q.Set("by", "api_key")
			q.Set("limit", "3")
			got := getJSON[struct {
				Rows []struct {
					Key      string   `json:"key"`
					Requests int64    `json:"requests"`
					P50      *float64 `json:"latency_p50_ms"`
					P95      *float64 `json:"latency_p95_ms"`
					P99      *float64 `json:"latency_p99_ms"`
				} `json:"rows"`
			}](t, env, "/api/v1/dashboard/breakdown", q)
			require.Len(t, got.Rows, 3)
			for _, r := range got.Rows {
				var n int64
				var want []float64
				require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT count(*),
					percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms)
					FROM request_logs WHERE ts >= $1 AND ts < $2 `+exactFilterSQL,
					filterCase{providers: extra, keys: []string{r.Key}}.args(from, to)...).Scan(&n, &want))
				assert.Equal(t, n, r.Requests, r.Key)
				for i, p := range []*float64{r.P50, r.P95, r.P99} {
					assertWithin1Pct(t, want[i], p, fmt.Sprintf("%s quantile %d", r.Key, i))
				}
			}
		})
	}
}

// TestDashboardRawTimeout: a raw-row read running past
// OPSFLOW_DASHBOARD_RAW_TIMEOUT answers 503 query_timeout with a message
// that explains it, not the database's error; rollup answers are unaffected
// and the timeout does not outlive the request's transaction.
func TestDashboardRawTimeout(t *testing.T) {
	env := newIngestEnv(t, func(c *config.Config) { c.DashboardRawTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	window := url.Values{"range": {"24h"}}
	// api_key with provider or model has no rollup: those read raw rows.
	withKey := func(extra ...string) url.Values {
		q := url.Values{"range": {"24h"}, "api_key": {"some-key"}, "provider": {"some-provider"}}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return q
	}
	cases := []struct {
		path string
		q    url.Values
	}{
		{"/api/v1/dashboard/overview", withKey()},
		{"/api/v1/dashboard/timeseries", withKey("metric", "latency_p95")},
		{"/api/v1/dashboard/breakdown", url.Values{"range": {"24h"}, "by": {"api_key"}, "model": {"some-model"}}},
		{"/api/v1/dashboard/latency-histogram", withKey()},
		{"/api/v1/dashboard/errors", url.Values{"range": {"24h"}, "api_key": {"some-key"}}},
		{"/api/v1/dashboard/errors/requests", url.Values{"range": {"24h"}, "api_key": {"some-key"}}},
	}
	// api_key alone or with tenant is answered from the api_key rollups.
	fromRollups := []struct {
		path string
		q    url.Values
	}{
		{"/api/v1/dashboard/timeseries", url.Values{"range": {"24h"}, "api_key": {"some-key"}, "metric": {"latency_p95"}}},
		{"/api/v1/dashboard/timeseries", url.Values{"range": {"7d"}, "api_key": {"some-key"}, "tenant": {"t"}, "metric": {"requests"}}},
		{"/api/v1/dashboard/breakdown", url.Values{"range": {"24h"}, "by": {"api_key"}}},
		{"/api/v1/dashboard/breakdown", url.Values{"range": {"24h"}, "by": {"tenant"}, "api_key": {"some-key"}}},
		{"/api/v1/dashboard/latency-histogram", url.Values{"range": {"24h"}, "api_key": {"some-key"}, "tenant": {"t"}}},
	}

	// A session holding an exclusive lock on request_logs makes every raw
	// read wait, deterministically, until its statement timeout fires.
	lock, err := env.db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = lock.Exec(ctx, "LOCK TABLE request_logs IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	for _, c := range cases {
		t.Run(strings.TrimPrefix(c.path, "/api/v1/dashboard/"), func(t *testing.T) {
			begin := time.Now()
			rec := env.get(t, c.path, c.q)
			require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
			assert.Less(t, time.Since(begin), 5*time.Second, "the timeout bounds the request")
			var body struct {
				Error struct {
					Code    string            `json:"code"`
					Message string            `json:"message"`
					Details map[string]string `json:"details"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, "query_timeout", body.Error.Code)
			assert.Contains(t, body.Error.Message, "api_key")
			assert.Contains(t, body.Error.Message, "raw request logs")
			assert.Contains(t, body.Error.Message, "shorter window")
			assert.Equal(t, "300ms", body.Error.Details["timeout"])
			for _, leak := range []string{"SELECT", "request_logs", "statement", "canceling", "57014", "SQLSTATE"} {
				assert.NotContains(t, rec.Body.String(), leak)
			}
		})
	}
	// Rollup answers never touch request_logs, api_key ones included.
	rec := env.get(t, "/api/v1/dashboard/overview", window)
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	for _, c := range fromRollups {
		rec := env.get(t, c.path, c.q)
		assert.Equal(t, http.StatusOK, rec.Code, "%s?%s: %s", c.path, c.q.Encode(), rec.Body.String())
	}
	require.NoError(t, lock.Rollback(ctx))

	// The timeout was local to each request's transaction: pooled
	// connections keep the server default, and the same reads now answer.
	for range 4 {
		var setting string
		require.NoError(t, env.db.Pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&setting))
		assert.Equal(t, "0", setting)
	}
	for _, c := range cases {
		rec := env.get(t, c.path, c.q)
		assert.Equal(t, http.StatusOK, rec.Code, "%s: %s", c.path, rec.Body.String())
	}
}
