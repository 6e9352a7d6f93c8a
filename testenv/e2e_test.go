package testenv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/loadgen"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/worker"
	"github.com/opsflow/opsflow/workflows"
)

const e2eAdminKey = "opsf-e2e-admin-key-0123456789"

// e2eQuantiles are the percentiles the product promises within 1% of
// percentile_cont.
var e2eQuantiles = []float64{0.5, 0.95, 0.99}

// TestIngestThroughScheduledCollection is the foundation's vertical slice,
// every part real: events go in over HTTP, the worker reconciles its
// schedules, the `collect` schedule is triggered the way an operator would
// in the Temporal UI, and the minute rollups it writes agree with exact SQL
// over the raw rows.
func TestIngestThroughScheduledCollection(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	tc := testenv.TemporalClient(t)
	taskQueue := "e2e-" + uuid.NewString()

	cfg, err := config.Load(func(name string) string {
		return map[string]string{"OPSFLOW_ADMIN_KEY": e2eAdminKey, "OPSFLOW_TASK_QUEUE": taskQueue}[name]
	})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.New(api.Deps{Config: cfg, DB: d, Temporal: tc,
		Logger: slog.New(slog.DiscardHandler), Registry: reg, Gatherer: reg}))
	t.Cleanup(srv.Close)

	// Few tenants and models so every provider holds thousands of events:
	// percentile_cont interpolates between neighbours, which only a large
	// sample makes comparable with a sketch's rank error.
	gen := loadgen.New(7, loadgen.Options{Tenants: 4, Providers: 2, Models: 4})
	end := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Minute)
	var events []loadgen.Event
	for e := range gen.Over(end.Add(-5*time.Minute), end, 30_000) {
		events = append(events, e)
	}
	const batch = 5_000
	for i := 0; i < len(events); i += batch {
		postEvents(t, srv.URL, events[i:min(i+batch, len(events))])
	}

	w := worker.New(tc, taskQueue, &activities.Activities{DB: d})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	applied, err := worker.ApplySchedules(ctx, tc, taskQueue)
	require.NoError(t, err)
	t.Cleanup(func() { deleteSchedules(t, tc, applied) })

	collectUntilNothingPending(t, d, tc)

	var mismatches int
	require.NoError(t, d.Pool.QueryRow(ctx, `
		WITH raw AS (
			SELECT date_trunc('minute', ts) AS minute, tenant, provider, model, count(*) AS requests,
				sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
				sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd
			FROM request_logs GROUP BY 1, 2, 3, 4)
		SELECT count(*) FROM raw FULL JOIN rollup_minute r USING (minute, tenant, provider, model)
		WHERE raw.requests IS DISTINCT FROM r.requests
			OR raw.input_tokens IS DISTINCT FROM r.input_tokens
			OR raw.output_tokens IS DISTINCT FROM r.output_tokens
			OR raw.cached_tokens IS DISTINCT FROM r.cached_tokens
			OR raw.cost_usd IS DISTINCT FROM r.cost_usd`).Scan(&mismatches))
	assert.Zero(t, mismatches, "rollup rows differing from exact sums over the raw rows")
	var rolled int64
	require.NoError(t, d.Pool.QueryRow(ctx, "SELECT sum(requests) FROM rollup_minute").Scan(&rolled))
	assert.EqualValues(t, len(events), rolled, "every accepted event is counted once")

	var rows []db.RollupMinute
	require.NoError(t, d.Bun.NewSelect().Model(&rows).Scan(ctx))
	byProvider := map[string]*ddsketch.DDSketch{}
	overall := db.NewLatencySketch()
	for _, r := range rows {
		if byProvider[r.Provider] == nil {
			byProvider[r.Provider] = db.NewLatencySketch()
		}
		require.NoError(t, db.MergeEncodedSketches(byProvider[r.Provider], r.LatencySketch))
		require.NoError(t, db.MergeEncodedSketches(overall, r.LatencySketch))
	}
	require.Len(t, byProvider, 2)
	exact := exactLatencyPercentiles(t, d)
	for provider, s := range byProvider {
		assertWithinOnePercent(t, provider, s, exact[provider])
	}
	assertWithinOnePercent(t, "overall", overall, exact[""])
}

func postEvents(t *testing.T, baseURL string, events []loadgen.Event) {
	t.Helper()
	body, err := json.Marshal(events)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, baseURL+"/api/v1/ingest/requests", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e2eAdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// collectUntilNothingPending triggers the collect schedule and waits for the
// run it started. The schedule may also fire on its own at a minute
// boundary and take some batches first; that is fine, what matters is that
// scheduled runs leave nothing pending.
func collectUntilNothingPending(t *testing.T, d *db.DB, tc client.Client) {
	t.Helper()
	ctx := context.Background()
	handle := tc.ScheduleClient().GetHandle(ctx, workflows.CollectScheduleID)
	for range 5 {
		// The dev server shares this machine's clock; the slack covers
		// timestamp rounding.
		triggeredAt := time.Now().Add(-time.Second)
		require.NoError(t, handle.Trigger(ctx, client.ScheduleTriggerOptions{
			Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL}))
		var run *client.ScheduleWorkflowExecution
		require.Eventually(t, func() bool {
			desc, err := handle.Describe(ctx)
			require.NoError(t, err)
			actions := desc.Info.RecentActions
			if len(actions) == 0 || actions[len(actions)-1].ActualTime.Before(triggeredAt) {
				return false
			}
			run = actions[len(actions)-1].StartWorkflowResult
			return run != nil
		}, 30*time.Second, 100*time.Millisecond, "the triggered run starts")
		var res workflows.CollectResult
		require.NoError(t, tc.GetWorkflow(ctx, run.WorkflowID, run.FirstExecutionRunID).Get(ctx, &res))
		pending, err := db.PendingBatches(ctx, d.Bun, 1)
		require.NoError(t, err)
		if len(pending) == 0 {
			return
		}
	}
	t.Fatal("batches still pending after five collection runs")
}

func deleteSchedules(t *testing.T, tc client.Client, applied []worker.ApplyResult) {
	for _, r := range applied {
		assert.NoError(t, tc.ScheduleClient().GetHandle(context.Background(), r.ID).Delete(context.Background()))
	}
}

// exactLatencyPercentiles is percentile_cont per provider and, under "",
// over every row.
func exactLatencyPercentiles(t *testing.T, d *db.DB) map[string][]float64 {
	t.Helper()
	rows, err := d.Pool.Query(context.Background(), `
		SELECT coalesce(provider, ''), percentile_cont($1::float8[]) WITHIN GROUP (ORDER BY latency_ms)
		FROM request_logs GROUP BY GROUPING SETS ((provider), ())`, e2eQuantiles)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string][]float64{}
	for rows.Next() {
		var provider string
		var ps []float64
		require.NoError(t, rows.Scan(&provider, &ps))
		out[provider] = ps
	}
	require.NoError(t, rows.Err())
	return out
}

func assertWithinOnePercent(t *testing.T, name string, s *ddsketch.DDSketch, exact []float64) {
	t.Helper()
	require.Len(t, exact, len(e2eQuantiles), name)
	for i, q := range e2eQuantiles {
		got, err := s.GetValueAtQuantile(q)
		require.NoError(t, err)
		assert.InEpsilon(t, exact[i], got, 0.01, fmt.Sprintf("%s p%g: sketch %g, percentile_cont %g", name, q*100, got, exact[i]))
	}
}
