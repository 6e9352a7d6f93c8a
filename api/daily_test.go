package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/loadgen"
	"github.com/opsflow/opsflow/worker"
	"github.com/opsflow/opsflow/workflows"
)

// ingestDays stores perDay generated events for each of the days from
// first through the ingest decoder and store; the ingest endpoint itself
// refuses events older than 30 days, which a 30-day backfill needs.
func ingestDays(t *testing.T, env *notifyAPI, first time.Time, days, perDay int) {
	t.Helper()
	gen := loadgen.New(41, loadgen.Options{Tenants: 3, Providers: 2, Models: 3, LateFraction: -1})
	store := db.NewRequestLogStore(env.db)
	lim := api.IngestLimits{MaxBodyBytes: 64 << 20, MaxEvents: perDay, Oldest: first, Newest: time.Now()}
	for i := range days {
		from := first.AddDate(0, 0, i)
		var events []loadgen.Event
		for e := range gen.Over(from, from.Add(24*time.Hour), perDay) {
			events = append(events, e)
		}
		body, err := json.Marshal(events)
		require.NoError(t, err)
		batch, err := api.DecodeBatch(bytes.NewReader(body), "application/json", "", lim)
		require.NoError(t, err)
		_, err = store.Insert(context.Background(), db.IngestBatch{Owner: "test", RequestHash: batch.Hash[:], Logs: batch.Logs})
		require.NoError(t, err)
	}
}

type statsJSON struct {
	From    string       `json:"from"`
	To      string       `json:"to"`
	GroupBy string       `json:"group_by"`
	Totals  figuresJSON  `json:"totals"`
	Series  []pointJSON  `json:"series"`
	Groups  []statsGroup `json:"groups"`
}

type figuresJSON struct {
	Requests        int64   `json:"requests"`
	CostUSD         string  `json:"cost_usd"`
	InputTokens     int64   `json:"input_tokens"`
	LatencyP50Ms    float64 `json:"latency_p50_ms"`
	LatencyP95Ms    float64 `json:"latency_p95_ms"`
	LatencyP99Ms    float64 `json:"latency_p99_ms"`
	DistinctAPIKeys int     `json:"distinct_api_keys"`
}

type pointJSON struct {
	Day string `json:"day"`
	figuresJSON
}

type statsGroup struct {
	Tenant    *string       `json:"tenant"`
	Provider  *string       `json:"provider"`
	Model     *string       `json:"model"`
	Totals    figuresJSON   `json:"totals"`
	Series    []pointJSON   `json:"series"`
	TopModels []topModelRow `json:"top_models"`
}

type topModelRow struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Requests int64  `json:"requests"`
}

// exactRange is the statistics of raw rows in [from, to) straight from SQL.
func exactRange(t *testing.T, d *db.DB, from, to time.Time, where string) (figuresJSON, []float64) {
	t.Helper()
	var f figuresJSON
	var pct []float64
	require.NoError(t, d.Pool.QueryRow(context.Background(), `SELECT count(*), sum(cost_usd)::text, sum(input_tokens),
		count(DISTINCT nullif(api_key, '')), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms)
		FROM request_logs WHERE ts >= $1 AND ts < $2 AND `+where, from, to).
		Scan(&f.Requests, &f.CostUSD, &f.InputTokens, &f.DistinctAPIKeys, &pct))
	return f, pct
}

func assertFigures(t *testing.T, want figuresJSON, pct []float64, got figuresJSON, name string) {
	t.Helper()
	assert.Equal(t, want.Requests, got.Requests, name)
	assert.Equal(t, want.InputTokens, got.InputTokens, name)
	assert.Equal(t, want.DistinctAPIKeys, got.DistinctAPIKeys, name+" distinct keys")
	w, _ := new(big.Rat).SetString(want.CostUSD)
	g, ok := new(big.Rat).SetString(got.CostUSD)
	require.True(t, ok, got.CostUSD)
	assert.Zero(t, w.Cmp(g), "%s cost: want %s, got %s", name, want.CostUSD, got.CostUSD)
	for i, p := range []float64{got.LatencyP50Ms, got.LatencyP95Ms, got.LatencyP99Ms} {
		assert.InEpsilon(t, pct[i], p, 0.01, "%s percentile %d", name, i)
	}
}

// TestDailyBackfillAndStats backfills 30 days through the API on the real
// dev server: the backfill runs one child workflow per day (each found
// completed under daily/<day>), and the daily statistics API then answers
// totals, series and groups equal to exact SQL over the raw rows.
func TestDailyBackfillAndStats(t *testing.T) {
	env := newNotifyAPI(t, true)
	ctx := context.Background()
	first := db.TruncateDay(time.Now()).AddDate(0, 0, -31)
	last := first.AddDate(0, 0, 29)
	ingestDays(t, env, first, 30, 400)

	code, body := env.do(t, http.MethodPost, "/api/v1/aggregations/daily/backfill",
		map[string]any{"from": first.Format(time.DateOnly), "to": last.Format(time.DateOnly), "concurrency": 8})
	require.Equal(t, http.StatusAccepted, code, string(body))
	started := decode[struct {
		WorkflowID    string `json:"workflow_id"`
		TemporalUIURL string `json:"temporal_ui_url"`
		Days          int    `json:"days"`
	}](t, body)
	assert.Equal(t, workflows.DailyBackfillWorkflowID(first.Format(time.DateOnly), last.Format(time.DateOnly)), started.WorkflowID)
	assert.Equal(t, 30, started.Days)
	assert.Contains(t, started.TemporalUIURL, "/workflows/daily-backfill%2F")

	var progress workflows.DailyBackfillProgress
	require.NoError(t, env.tc.GetWorkflow(ctx, started.WorkflowID, "").Get(ctx, &progress))
	assert.Equal(t, 30, progress.Done)
	assert.Zero(t, progress.Failed)
	assert.Equal(t, int64(30*400), progress.Requests)
	for i := range 30 {
		id := workflows.DailyWorkflowID(first.AddDate(0, 0, i).Format(time.DateOnly))
		desc, err := env.tc.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err, id)
		info := desc.GetWorkflowExecutionInfo()
		assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, info.GetStatus(), id)
		assert.Equal(t, started.WorkflowID, info.GetParentExecution().GetWorkflowId(), "%s is the backfill's child", id)
	}

	path := fmt.Sprintf("/api/v1/stats/daily?from=%s&to=%s", first.Format(time.DateOnly), last.Format(time.DateOnly))
	code, body = env.do(t, http.MethodGet, path+"&group_by=tenant", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	stats := decode[statsJSON](t, body)
	want, pct := exactRange(t, env.db, first, last.AddDate(0, 0, 1), "true")
	assertFigures(t, want, pct, stats.Totals, "totals")
	require.Len(t, stats.Series, 30)
	for i, p := range stats.Series {
		day := first.AddDate(0, 0, i)
		assert.Equal(t, day.Format(time.DateOnly), p.Day)
		w, pc := exactRange(t, env.db, day, day.AddDate(0, 0, 1), "true")
		assertFigures(t, w, pc, p.figuresJSON, p.Day)
	}
	require.NotEmpty(t, stats.Groups)
	for _, g := range stats.Groups {
		require.NotNil(t, g.Tenant)
		w, pc := exactRange(t, env.db, first, last.AddDate(0, 0, 1), "tenant = '"+*g.Tenant+"'")
		assertFigures(t, w, pc, g.Totals, "tenant "+*g.Tenant)
		require.NotEmpty(t, g.TopModels)
		var top int64
		require.NoError(t, env.db.Pool.QueryRow(ctx, `SELECT count(*) FROM request_logs WHERE tenant = $1
			GROUP BY provider, model ORDER BY 1 DESC LIMIT 1`, *g.Tenant).Scan(&top))
		assert.Equal(t, top, g.TopModels[0].Requests, "tenant %s top model", *g.Tenant)
	}

	code, body = env.do(t, http.MethodGet, path+"&group_by=model&provider=openai", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	byModel := decode[statsJSON](t, body)
	for _, g := range byModel.Groups {
		require.NotNil(t, g.Model)
		assert.Equal(t, "openai", *g.Provider)
		w, pc := exactRange(t, env.db, first, last.AddDate(0, 0, 1), "provider = 'openai' AND model = '"+*g.Model+"'")
		assertFigures(t, w, pc, g.Totals, "model "+*g.Model)
	}
}

// TestSchedulesAPI lists, pauses, unpauses, triggers and backfills the
// declared schedules on the real dev server.
func TestSchedulesAPI(t *testing.T) {
	env := newNotifyAPI(t, true)
	ctx := context.Background()
	_, err := worker.ApplySchedules(ctx, env.tc, env.cfg.TaskQueue)
	require.NoError(t, err)
	t.Cleanup(func() {
		// The dev server outlives the test: stop its schedules firing.
		for _, def := range worker.Schedules(env.cfg.TaskQueue) {
			_ = env.tc.ScheduleClient().GetHandle(ctx, def.ID).Delete(ctx)
		}
	})

	type scheduleJSON struct {
		ID           string      `json:"id"`
		Spec         string      `json:"spec"`
		Applied      bool        `json:"applied"`
		Paused       bool        `json:"paused"`
		Note         string      `json:"note"`
		NextRunTimes []time.Time `json:"next_run_times"`
		LastRun      *struct {
			WorkflowID string `json:"workflow_id"`
			Status     string `json:"status"`
		} `json:"last_run"`
	}
	list := func() map[string]scheduleJSON {
		code, body := env.do(t, http.MethodGet, "/api/v1/schedules", nil)
		require.Equal(t, http.StatusOK, code, "%s\nserver log:\n%s", body, env.logs.String())
		out := map[string]scheduleJSON{}
		for _, s := range decode[struct {
			Schedules []scheduleJSON `json:"schedules"`
		}](t, body).Schedules {
			out[s.ID] = s
		}
		return out
	}
	all := list()
	for _, id := range []string{workflows.CollectScheduleID, workflows.DailyScheduleID, workflows.RetentionScheduleID} {
		require.Contains(t, all, id)
		assert.True(t, all[id].Applied, id)
		assert.NotEmpty(t, all[id].NextRunTimes, id)
	}
	assert.Equal(t, "cron 5 0 * * * UTC", all[workflows.DailyScheduleID].Spec)
	next := all[workflows.DailyScheduleID].NextRunTimes[0].UTC()
	assert.Equal(t, []int{0, 5, 0}, []int{next.Hour(), next.Minute(), next.Second()}, "daily runs at 00:05 UTC")
	next = all[workflows.RetentionScheduleID].NextRunTimes[0].UTC()
	assert.Equal(t, []int{3, 0}, []int{next.Hour(), next.Minute()}, "retention runs at 03:00 UTC")

	code, body := env.do(t, http.MethodPost, "/api/v1/schedules/retention/pause", map[string]string{"note": "disk migration"})
	require.Equal(t, http.StatusOK, code, string(body))
	assert.True(t, list()[workflows.RetentionScheduleID].Paused)
	assert.Contains(t, list()[workflows.RetentionScheduleID].Note, "disk migration")
	code, body = env.do(t, http.MethodPost, "/api/v1/schedules/retention/unpause", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	assert.False(t, list()[workflows.RetentionScheduleID].Paused)

	code, body = env.do(t, http.MethodPost, "/api/v1/schedules/retention/trigger", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		r := list()[workflows.RetentionScheduleID].LastRun
		if assert.NotNil(c, r, "the triggered retention run is listed") {
			assert.Equal(c, "completed", r.Status, "the triggered retention run %s completes", r.WorkflowID)
		}
	}, 2*time.Minute, 200*time.Millisecond)
	code, body = env.do(t, http.MethodGet, "/api/v1/retention/runs", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	runs := decode[struct {
		Runs []struct {
			WorkflowID string `json:"workflow_id"`
			Class      string `json:"class"`
			Action     string `json:"action"`
		} `json:"runs"`
	}](t, body).Runs
	// One record per task: request_logs has two (drop partitions, trim to
	// max rows), every other class one.
	assert.Len(t, runs, len(db.RetentionClasses)+1)
	for _, r := range runs {
		assert.True(t, strings.HasPrefix(r.WorkflowID, "retention-"), r.WorkflowID)
	}

	yesterday := db.TruncateDay(time.Now()).AddDate(0, 0, -1)
	code, body = env.do(t, http.MethodPost, "/api/v1/schedules/daily/backfill", map[string]string{
		"from": yesterday.AddDate(0, 0, -2).Format(time.DateOnly), "to": yesterday.Add(time.Hour).Format(time.RFC3339)})
	require.Equal(t, http.StatusOK, code, string(body))

	actions := map[string]int{}
	for _, e := range env.audit(t) {
		if strings.HasPrefix(e.Target, "schedule:") {
			actions[e.Action]++
		}
	}
	assert.Equal(t, map[string]int{"schedule.pause": 1, "schedule.unpause": 1, "schedule.trigger": 1, "schedule.backfill": 1}, actions)

	code, body = env.do(t, http.MethodPost, "/api/v1/schedules/nope/trigger", nil)
	assert.Equal(t, http.StatusNotFound, code, string(body))
}

// TestDailyValidation: bad input answers 400 naming the parameter or
// field, and changes nothing.
func TestDailyValidation(t *testing.T) {
	env := newNotifyAPI(t, false)
	today := db.TruncateDay(time.Now()).Format(time.DateOnly)
	policies := func(ps ...map[string]any) map[string]any { return map[string]any{"policies": ps} }
	tests := []struct {
		method, path string
		body         any
		param        string
	}{
		{http.MethodGet, "/api/v1/stats/daily?period=last1d", nil, "period"},
		{http.MethodGet, "/api/v1/stats/daily?from=2026-01-01", nil, "to"},
		{http.MethodGet, "/api/v1/stats/daily?from=x&to=2026-01-01", nil, "from"},
		{http.MethodGet, "/api/v1/stats/daily?period=last7d&from=2026-01-01&to=2026-01-02", nil, "period"},
		{http.MethodGet, "/api/v1/stats/daily?from=2026-02-01&to=2026-01-01", nil, "to"},
		{http.MethodGet, "/api/v1/stats/daily?group_by=day", nil, "group_by"},
		{http.MethodGet, "/api/v1/stats/daily?tenant=" + strings.Repeat("t", 201), nil, "tenant"},
		{http.MethodPost, "/api/v1/aggregations/daily/backfill", map[string]any{}, "from"},
		{http.MethodPost, "/api/v1/aggregations/daily/backfill", map[string]any{"from": "2026-01-02", "to": "2026-01-01"}, "to"},
		{http.MethodPost, "/api/v1/aggregations/daily/backfill", map[string]any{"from": "2026-01-02", "to": today}, "to"},
		{http.MethodPost, "/api/v1/aggregations/daily/backfill", map[string]any{"from": "2024-01-01", "to": "2026-01-01"}, "to"},
		{http.MethodPost, "/api/v1/aggregations/daily/backfill", map[string]any{"from": "2026-01-01", "to": "2026-01-02", "concurrency": 99}, "concurrency"},
		{http.MethodPost, "/api/v1/aggregations/daily/backfill", map[string]any{"from": 5}, "from"},
		{http.MethodPost, "/api/v1/aggregations/daily/backfill", map[string]any{"days": 5}, "body"},
		{http.MethodPut, "/api/v1/retention", policies(), "policies"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "nope", "keep_days": 3}), "policies[0].class"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "rollup_minute"}), "policies[0].keep_days"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "rollup_minute", "keep_days": 0}), "policies[0].keep_days"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "rollup_minute", "keep_days": 3651}), "policies[0].keep_days"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "rollup_minute", "keep_days": 5, "keep_forever": true}), "policies[0].keep_days"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "rollup_minute", "keep_days": 5, "max_rows": 5000}), "policies[0].max_rows"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "request_logs", "keep_days": 5, "max_rows": 10}), "policies[0].max_rows"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "request_logs", "keep_days": 5, "max_rows": 5000, "no_max_rows": true}), "policies[0].max_rows"},
		{http.MethodPut, "/api/v1/retention", policies(map[string]any{"class": "daily_stats", "keep_days": 5}, map[string]any{"class": "daily_stats", "keep_days": 6}), "policies[1].class"},
		{http.MethodGet, "/api/v1/retention/runs?limit=0", nil, "limit"},
		{http.MethodGet, "/api/v1/retention/runs?before=x", nil, "before"},
		{http.MethodPost, "/api/v1/schedules/daily/pause", map[string]any{"note": strings.Repeat("n", 501)}, "note"},
		{http.MethodPost, "/api/v1/schedules/daily/backfill", map[string]any{"from": "yesterday", "to": "2026-01-01"}, "from"},
		{http.MethodPost, "/api/v1/schedules/daily/backfill", map[string]any{"from": "2026-01-01", "to": "2026-01-01"}, "to"},
		{http.MethodPost, "/api/v1/schedules/daily/backfill", map[string]any{"from": "2026-01-01", "to": "2999-01-01"}, "to"},
	}
	for _, tc := range tests {
		code, body := env.do(t, tc.method, tc.path, tc.body)
		if !assert.Equal(t, http.StatusBadRequest, code, "%s %s %v: %s", tc.method, tc.path, tc.body, body) {
			continue
		}
		e := decode[struct {
			Error struct {
				Message string            `json:"message"`
				Details map[string]string `json:"details"`
			} `json:"error"`
		}](t, body)
		assert.Equal(t, tc.param, e.Error.Details["parameter"], "%s %s %v: %s", tc.method, tc.path, tc.body, e.Error.Message)
	}
	code, body := env.do(t, http.MethodGet, "/api/v1/retention", nil)
	require.Equal(t, http.StatusOK, code)
	for _, p := range decode[retentionJSON](t, body).Policies {
		assert.Equal(t, "default", p.UpdatedBy, "%s unchanged", p.Class)
	}
	assert.Empty(t, env.audit(t))
}

type retentionJSON struct {
	Policies []retentionJSONPolicy `json:"policies"`
}

type retentionJSONPolicy struct {
	Class       string `json:"class"`
	KeepDays    *int   `json:"keep_days"`
	KeepForever bool   `json:"keep_forever"`
	MaxRows     *int64 `json:"max_rows"`
	UpdatedBy   string `json:"updated_by"`
}

// TestRetentionPolicies: defaults are finite (request logs capped too);
// changes apply to the listed classes only, are audit-logged, and a row cap
// stays unless changed or explicitly lifted.
func TestRetentionPolicies(t *testing.T) {
	env := newNotifyAPI(t, false)
	get := func() map[string]retentionJSONPolicy {
		code, body := env.do(t, http.MethodGet, "/api/v1/retention", nil)
		require.Equal(t, http.StatusOK, code, string(body))
		out := map[string]retentionJSONPolicy{}
		for _, p := range decode[retentionJSON](t, body).Policies {
			out[p.Class] = p
		}
		return out
	}
	put := func(ps ...map[string]any) {
		code, body := env.do(t, http.MethodPut, "/api/v1/retention", map[string]any{"policies": ps})
		require.Equal(t, http.StatusOK, code, string(body))
	}
	ps := get()
	require.Len(t, ps, len(db.RetentionClasses))
	for class, p := range ps {
		require.NotNil(t, p.KeepDays, "%s: no class keeps forever by default", class)
		assert.False(t, p.KeepForever, class)
	}
	assert.Equal(t, 30, *ps["request_logs"].KeepDays)
	require.NotNil(t, ps["request_logs"].MaxRows)
	assert.Nil(t, ps["rollup_minute"].MaxRows)

	put(map[string]any{"class": "request_logs", "keep_days": 14, "max_rows": 2_000_000},
		map[string]any{"class": "daily_stats", "keep_forever": true})
	ps = get()
	assert.Equal(t, 14, *ps["request_logs"].KeepDays)
	assert.Equal(t, int64(2_000_000), *ps["request_logs"].MaxRows)
	assert.Contains(t, ps["request_logs"].UpdatedBy, "bootstrap")
	assert.True(t, ps["daily_stats"].KeepForever)
	assert.Nil(t, ps["daily_stats"].KeepDays)
	assert.Equal(t, 90, *ps["rollup_minute"].KeepDays, "unlisted classes keep their policy")
	assert.Equal(t, "default", ps["rollup_minute"].UpdatedBy)

	put(map[string]any{"class": "request_logs", "keep_days": 10})
	assert.Equal(t, int64(2_000_000), *get()["request_logs"].MaxRows, "omitting max_rows keeps the cap")
	put(map[string]any{"class": "request_logs", "keep_days": 10, "no_max_rows": true})
	assert.Nil(t, get()["request_logs"].MaxRows, "no_max_rows lifts it")

	var updates int
	for _, e := range env.audit(t) {
		if e.Action == "retention.update" {
			updates++
		}
	}
	assert.Equal(t, 3, updates)
}
