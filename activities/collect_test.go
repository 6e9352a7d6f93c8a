package activities_test

import (
	"context"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// base is the first minute of the generated traffic; the five minutes from
// it cross midnight, so collection spans two request_logs partitions.
var base = time.Date(2026, 11, 21, 23, 58, 0, 0, time.UTC)

var quantiles = []float64{0.5, 0.95, 0.99}

type group struct{ tenant, provider, model string }

var groups = []group{
	{"acme", "openai", "gpt-4o"},
	{"acme", "anthropic", "claude-sonnet"},
	{"globex", "openai", "gpt-4o"},
	{"globex", "openai", "gpt-4o-mini"},
	{"", "gemini", ""}, // tenant and model are optional in ingest
}

type rawEvent struct {
	ts         time.Time
	g          group
	status     int16
	errorType  *string
	latency    float64
	ttft       *float64
	in, out    int64
	cached     int64
	costMicros int64
}

func ptr[T any](v T) *T { return &v }

// apiKeyOf gives a group's events an api_key: one per provider, so a key
// spans tenants and a tenant has several keys.
func apiKeyOf(g group) string { return "key-" + g.provider }

// genEvents makes perMinute events for every group in each minute, with a
// status mix that exercises every class (a 200 the gateway timed out, 408
// and 504 as timeouts, 3xx as success).
func genEvents(rng *rand.Rand, minutes []time.Time, perMinute int) []rawEvent {
	var out []rawEvent
	for _, m := range minutes {
		for _, g := range groups {
			for range perMinute {
				e := rawEvent{
					ts:         m.Add(time.Duration(rng.Int64N(int64(time.Minute)))),
					g:          g,
					latency:    20 + rng.Float64()*2980,
					in:         rng.Int64N(2000),
					out:        rng.Int64N(1000),
					costMicros: rng.Int64N(50_000),
				}
				e.cached = rng.Int64N(e.in + 1)
				if rng.IntN(10) < 6 {
					e.ttft = ptr(10 + rng.Float64()*490)
				}
				e.status, e.errorType = pickStatus(rng)
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b rawEvent) int { return a.ts.Compare(b.ts) })
	return out
}

func pickStatus(rng *rand.Rand) (int16, *string) {
	switch r := rng.IntN(100); {
	case r < 70:
		return 200, nil
	case r < 75:
		return 200, ptr("timeout")
	case r < 80:
		return 400, ptr("invalid_request")
	case r < 84:
		return 429, ptr("rate_limit")
	case r < 87:
		return 408, nil
	case r < 91:
		return 500, ptr("upstream_error")
	case r < 94:
		return 502, nil
	case r < 97:
		return 504, nil
	default:
		return 301, nil
	}
}

func minutesFrom(start time.Time, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = start.Add(time.Duration(i) * time.Minute)
	}
	return out
}

// ingest stores events and their ingest_batches row in one transaction, as
// the ingest API does, and returns the batch id.
func ingest(t *testing.T, d *db.DB, events []rawEvent) int64 {
	t.Helper()
	ctx := context.Background()
	tx, err := d.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	var minutes []time.Time
	for _, e := range events {
		minutes = append(minutes, e.ts.Truncate(time.Minute))
	}
	slices.SortFunc(minutes, time.Time.Compare)
	minutes = slices.CompactFunc(minutes, time.Time.Equal)
	for _, m := range minutes {
		_, err := tx.Exec(ctx, "SELECT opsflow_ensure_request_logs_partition($1::date)", m.Format(time.DateOnly))
		require.NoError(t, err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"request_logs"},
		[]string{"ts", "tenant", "provider", "model", "api_key", "status_code", "latency_ms", "ttft_ms",
			"input_tokens", "output_tokens", "cached_tokens", "cost_usd", "error_type"},
		pgx.CopyFromSlice(len(events), func(i int) ([]any, error) {
			e := events[i]
			cost := pgtype.Numeric{Int: big.NewInt(e.costMicros), Exp: -6, Valid: true}
			return []any{e.ts, e.g.tenant, e.g.provider, e.g.model, apiKeyOf(e.g), e.status, e.latency, e.ttft,
				e.in, e.out, e.cached, cost, e.errorType}, nil
		}))
	require.NoError(t, err)
	var id int64
	require.NoError(t, tx.QueryRow(ctx, `INSERT INTO ingest_batches (key_owner, request_hash, events, minutes, response)
		VALUES ('test', '\x00', $1, $2, '{}') RETURNING id`, len(events), minutes).Scan(&id))
	require.NoError(t, tx.Commit(ctx))
	return id
}

// ingestInBatches splits events into batches of size n.
func ingestInBatches(t *testing.T, d *db.DB, events []rawEvent, n int) int {
	t.Helper()
	batches := 0
	for chunk := range slices.Chunk(events, n) {
		ingest(t, d, chunk)
		batches++
	}
	return batches
}

func newEnv(a *activities.Activities) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	return env
}

func collect(t *testing.T, env *testsuite.TestActivityEnvironment, a *activities.Activities, in workflows.CollectRollupsInput) workflows.CollectRollupsResult {
	t.Helper()
	val, err := env.ExecuteActivity(a.CollectRollups, in)
	require.NoError(t, err)
	var res workflows.CollectRollupsResult
	require.NoError(t, val.Get(&res))
	return res
}

func window(from, to time.Time) workflows.CollectRollupsInput {
	return workflows.CollectRollupsInput{From: &from, To: &to}
}

func rollups(t *testing.T, d *db.DB) []db.RollupMinute {
	t.Helper()
	var rows []db.RollupMinute
	require.NoError(t, d.Bun.NewSelect().Model(&rows).Order("minute", "tenant", "provider", "model").
		Scan(context.Background()))
	return rows
}

// snapshot renders every rollup row as PostgreSQL's text of the whole row,
// so comparing snapshots compares stored bytes, sketches included.
func snapshot(t *testing.T, d *db.DB) []string {
	t.Helper()
	rows, err := d.Pool.Query(context.Background(),
		"SELECT r::text FROM rollup_minute r ORDER BY minute, tenant, provider, model")
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

type key struct {
	minute time.Time
	g      group
}

type classes struct{ requests, successes, s4xx, s5xx, timeouts, ttftCount int64 }

// expectedClasses applies the product definitions to the generated events
// independently of the SQL under test.
func expectedClasses(events []rawEvent) map[key]classes {
	out := map[key]classes{}
	for _, e := range events {
		k := key{e.ts.Truncate(time.Minute), e.g}
		c := out[k]
		timeout := (e.errorType != nil && *e.errorType == "timeout") || e.status == 408 || e.status == 504
		c.requests++
		if e.status >= 100 && e.status <= 399 && !timeout {
			c.successes++
		}
		if e.status >= 400 && e.status <= 499 {
			c.s4xx++
		}
		if e.status >= 500 && e.status <= 599 {
			c.s5xx++
		}
		if timeout {
			c.timeouts++
		}
		if e.ttft != nil {
			c.ttftCount++
		}
		out[k] = c
	}
	return out
}

func TestCollectRollupsMatchesRawRows(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	events := genEvents(rand.New(rand.NewPCG(1, 2)), minutesFrom(base, 5), 300)
	batches := ingestInBatches(t, d, events, 500)
	a := &activities.Activities{DB: d}

	res := collect(t, newEnv(a), a, workflows.CollectRollupsInput{MaxBatches: 100})

	assert.Equal(t, workflows.CollectRollupsResult{
		Batches: batches, Minutes: 5, Events: int64(len(events)), Rows: 5 * len(groups),
	}, res)

	var mismatches int
	require.NoError(t, d.Pool.QueryRow(ctx, `
		WITH raw AS (
			SELECT date_trunc('minute', ts) AS minute, tenant, provider, model,
				count(*) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
				sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd, max(latency_ms) AS latency_max
			FROM request_logs GROUP BY 1, 2, 3, 4)
		SELECT count(*) FROM raw FULL JOIN rollup_minute r USING (minute, tenant, provider, model)
		WHERE raw.requests IS DISTINCT FROM r.requests
			OR raw.input_tokens IS DISTINCT FROM r.input_tokens
			OR raw.output_tokens IS DISTINCT FROM r.output_tokens
			OR raw.cached_tokens IS DISTINCT FROM r.cached_tokens
			OR raw.cost_usd IS DISTINCT FROM r.cost_usd
			OR raw.latency_max IS DISTINCT FROM r.latency_max`).Scan(&mismatches))
	assert.Zero(t, mismatches, "rollup rows differing from sums over raw rows")

	var costEqual bool
	require.NoError(t, d.Pool.QueryRow(ctx,
		"SELECT (SELECT sum(cost_usd) FROM request_logs) = (SELECT sum(cost_usd) FROM rollup_minute)").Scan(&costEqual))
	assert.True(t, costEqual, "total cost equals the raw sum exactly")

	want := expectedClasses(events)
	rows := rollups(t, d)
	require.Len(t, rows, len(want))
	for _, r := range rows {
		k := key{r.Minute.UTC(), group{r.Tenant, r.Provider, r.Model}}
		assert.Equal(t, want[k], classes{r.Requests, r.Successes, r.Status4xx, r.Status5xx, r.Timeouts, r.TTFTCount}, "%v", k)
	}

	assertPercentiles(t, d, rows, "latency_ms", func(r db.RollupMinute) []byte { return r.LatencySketch })
	assertPercentiles(t, d, rows, "ttft_ms", func(r db.RollupMinute) []byte { return r.TTFTSketch })
	assertAPIKeyRollups(t, d)
}

// assertAPIKeyRollups compares rollup_apikey_minute and rollup_apikey_hour
// with sums over the raw rows per (minute or hour, api_key, tenant), and
// their sketches' counts with the rows they summarise.
func assertAPIKeyRollups(t *testing.T, d *db.DB) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct{ table, ts, trunc string }{
		{"rollup_apikey_minute", "minute", "minute"},
		{"rollup_apikey_hour", "hour", "hour"},
	} {
		var rows, mismatches int
		require.NoError(t, d.Pool.QueryRow(ctx, `
			WITH raw AS (
				SELECT date_trunc('`+c.trunc+`', ts) AS `+c.ts+`, api_key, tenant,
					count(*) AS requests,
					count(*) FILTER (WHERE status_code BETWEEN 100 AND 399 AND error_type IS DISTINCT FROM 'timeout') AS successes,
					count(*) FILTER (WHERE error_type = 'timeout' OR status_code IN (408, 504)) AS timeouts,
					sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
					sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd, max(latency_ms) AS latency_max,
					count(ttft_ms) AS ttft_count,
					max(n) AS peak
				FROM (SELECT *, count(*) OVER (PARTITION BY date_trunc('minute', ts), api_key, tenant) AS n FROM request_logs) AS r
				GROUP BY 1, 2, 3)
			SELECT count(*), count(*) FILTER (WHERE raw.requests IS DISTINCT FROM r.requests
				OR raw.successes IS DISTINCT FROM r.successes
				OR raw.timeouts IS DISTINCT FROM r.timeouts
				OR raw.input_tokens IS DISTINCT FROM r.input_tokens
				OR raw.output_tokens IS DISTINCT FROM r.output_tokens
				OR raw.cached_tokens IS DISTINCT FROM r.cached_tokens
				OR raw.cost_usd IS DISTINCT FROM r.cost_usd
				OR raw.latency_max IS DISTINCT FROM r.latency_max
				OR raw.ttft_count IS DISTINCT FROM r.ttft_count`+map[bool]string{true: `
				OR raw.peak IS DISTINCT FROM r.peak_requests`}[c.ts == "hour"]+`)
			FROM raw FULL JOIN `+c.table+` r USING (`+c.ts+`, api_key, tenant)`).Scan(&rows, &mismatches))
		assert.Positive(t, rows, c.table)
		assert.Zero(t, mismatches, "%s rows differing from sums over raw rows", c.table)

		sketches, err := d.Pool.Query(ctx, `SELECT requests, latency_sketch, ttft_count, ttft_sketch FROM `+c.table)
		require.NoError(t, err)
		for sketches.Next() {
			var n, ttftN int64
			var lat, ttft []byte
			require.NoError(t, sketches.Scan(&n, &lat, &ttftN, &ttft))
			for _, s := range []struct {
				n   int64
				enc []byte
			}{{n, lat}, {ttftN, ttft}} {
				sk, err := db.DecodeSketch(s.enc)
				require.NoError(t, err)
				assert.Equal(t, float64(s.n), sk.GetCount(), c.table)
			}
		}
		require.NoError(t, sketches.Err())
	}
}

// assertPercentiles merges the minute sketches per group and overall and
// checks them against percentile_cont over the raw rows.
func assertPercentiles(t *testing.T, d *db.DB, rows []db.RollupMinute, column string, sketchOf func(db.RollupMinute) []byte) {
	t.Helper()
	overall := db.NewLatencySketch()
	perGroup := map[group]*ddsketch.DDSketch{}
	for _, r := range rows {
		g := group{r.Tenant, r.Provider, r.Model}
		if perGroup[g] == nil {
			perGroup[g] = db.NewLatencySketch()
		}
		require.NoError(t, db.MergeEncodedSketches(perGroup[g], sketchOf(r)))
		require.NoError(t, db.MergeEncodedSketches(overall, sketchOf(r)))
	}

	ctx := context.Background()
	q := `SELECT tenant, provider, model, percentile_cont($1::float8[]) WITHIN GROUP (ORDER BY ` + column + `)
		FROM request_logs WHERE ` + column + ` IS NOT NULL GROUP BY 1, 2, 3`
	dbRows, err := d.Pool.Query(ctx, q, quantiles)
	require.NoError(t, err)
	exact := map[group][]float64{}
	for dbRows.Next() {
		var g group
		var ps []float64
		require.NoError(t, dbRows.Scan(&g.tenant, &g.provider, &g.model, &ps))
		exact[g] = ps
	}
	require.NoError(t, dbRows.Err())
	require.Len(t, exact, len(groups))
	for g, ps := range exact {
		assertQuantiles(t, column+" "+g.tenant+"/"+g.provider+"/"+g.model, perGroup[g], ps)
	}

	var all []float64
	require.NoError(t, d.Pool.QueryRow(ctx, `SELECT percentile_cont($1::float8[]) WITHIN GROUP (ORDER BY `+column+`)
		FROM request_logs WHERE `+column+` IS NOT NULL`, quantiles).Scan(&all))
	assertQuantiles(t, column+" overall", overall, all)
}

func assertQuantiles(t *testing.T, name string, s *ddsketch.DDSketch, exact []float64) {
	t.Helper()
	for i, q := range quantiles {
		got, err := s.GetValueAtQuantile(q)
		require.NoError(t, err)
		assert.InEpsilon(t, exact[i], got, 0.01, "%s p%g: sketch %g, percentile_cont %g", name, q*100, got, exact[i])
	}
}

func TestCollectRollupsIsIdempotent(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	minutes := minutesFrom(base, 4)
	ingestInBatches(t, d, genEvents(rand.New(rand.NewPCG(3, 4)), minutes, 50), 120)
	a := &activities.Activities{DB: d}
	env := newEnv(a)
	collect(t, env, a, workflows.CollectRollupsInput{MaxBatches: 100})
	first := snapshot(t, d)
	require.Len(t, first, 4*len(groups))

	_, err := d.Pool.Exec(ctx, "UPDATE ingest_batches SET collected_at = NULL")
	require.NoError(t, err)
	collect(t, env, a, workflows.CollectRollupsInput{MaxBatches: 100})
	assert.Equal(t, first, snapshot(t, d), "collecting the same batches again")

	res := collect(t, env, a, window(base, base.Add(4*time.Minute)))
	assert.Equal(t, first, snapshot(t, d), "recomputing the window")
	assert.Equal(t, workflows.CollectRollupsResult{Minutes: 4, Rows: 4 * len(groups), Events: 4 * 50 * int64(len(groups))}, res)

	collect(t, env, a, window(base.Add(-time.Hour), base.Add(2*time.Hour)))
	assert.Equal(t, first, snapshot(t, d), "recomputing a wider window")
}

func TestRecomputeWindowKeepsRollupsOlderThanRawRows(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	ingest(t, d, genEvents(rand.New(rand.NewPCG(5, 6)), minutesFrom(base, 1), 5))
	// A rollup whose raw rows retention has already dropped.
	old := db.RollupMinute{
		Minute: base.Add(-48 * time.Hour), Tenant: "acme", Provider: "openai", Model: "gpt-4o",
		RollupCounters: db.RollupCounters{
			RequestCounts: db.RequestCounts{Requests: 7, CostUSD: "1.5"},
			LatencySketch: db.EncodeSketch(db.NewLatencySketch()), TTFTSketch: db.EncodeSketch(db.NewLatencySketch()),
		},
	}
	require.NoError(t, db.InsertRollups(ctx, d.Bun, []db.RollupMinute{old}))
	a := &activities.Activities{DB: d}

	res := collect(t, newEnv(a), a, window(base.Add(-72*time.Hour), base.Add(time.Minute)))

	assert.Equal(t, 1, res.Minutes, "only minutes from the oldest raw row on are recomputed")
	rows := rollups(t, d)
	require.Len(t, rows, 1+len(groups))
	assert.Equal(t, int64(7), rows[0].Requests)
	assert.True(t, old.Minute.Equal(rows[0].Minute))
}

func TestCollectRollupsFoldsLateEvents(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	rng := rand.New(rand.NewPCG(7, 8))
	now := base.Add(3 * time.Hour)
	oldMinute := base // three hours before now, on the previous day
	ingest(t, d, append(genEvents(rng, []time.Time{oldMinute}, 10), genEvents(rng, []time.Time{now}, 10)...))
	a := &activities.Activities{DB: d}
	env := newEnv(a)
	collect(t, env, a, workflows.CollectRollupsInput{MaxBatches: 100})
	before := rollups(t, d)

	late := genEvents(rng, []time.Time{oldMinute}, 1)[0]
	late.g = groups[0]
	ingest(t, d, []rawEvent{late})
	res := collect(t, env, a, workflows.CollectRollupsInput{MaxBatches: 100})

	assert.Equal(t, workflows.CollectRollupsResult{Batches: 1, Minutes: 1, Events: 1, Rows: len(groups)}, res)
	after := rollups(t, d)
	require.Len(t, after, len(before))
	for i := range after {
		if after[i].Minute.Equal(oldMinute) && after[i].Tenant == groups[0].tenant &&
			after[i].Provider == groups[0].provider && after[i].Model == groups[0].model {
			assert.Equal(t, before[i].Requests+1, after[i].Requests)
			s, err := db.DecodeSketch(after[i].LatencySketch)
			require.NoError(t, err)
			assert.Equal(t, float64(after[i].Requests), s.GetCount())
			assert.InDelta(t, before[i].LatencySum+late.latency, after[i].LatencySum, 1e-6)
			continue
		}
		assert.Equal(t, before[i], after[i], "rows the late event did not touch stay as they were")
	}

	var costEqual bool
	require.NoError(t, d.Pool.QueryRow(ctx, `SELECT (SELECT sum(cost_usd) FROM request_logs WHERE ts >= $1 AND ts < $2)
		= (SELECT sum(cost_usd) FROM rollup_minute WHERE minute = $1)`, oldMinute, oldMinute.Add(time.Minute)).Scan(&costEqual))
	assert.True(t, costEqual)

	// The late event's minute's api_key rows were replaced, not added to,
	// and its hour rebuilt.
	var keyRows, keyRequests, hourRequests int64
	require.NoError(t, d.Pool.QueryRow(ctx, `SELECT count(*), sum(requests),
		(SELECT requests FROM rollup_apikey_hour WHERE hour = date_trunc('hour', $1::timestamptz) AND api_key = $2 AND tenant = $3)
		FROM rollup_apikey_minute WHERE minute = $1 AND api_key = $2 AND tenant = $3`,
		oldMinute, apiKeyOf(groups[0]), groups[0].tenant).Scan(&keyRows, &keyRequests, &hourRequests))
	assert.EqualValues(t, 1, keyRows)
	assert.EqualValues(t, 10+1, keyRequests, "the group's ten events and the late one")
	assert.EqualValues(t, 10+1, hourRequests, "the hour holds that one minute of the group")
	assertAPIKeyRollups(t, d)
}

func TestCollectRollupsMarksBatchesAndReportsMore(t *testing.T) {
	events := genEvents(rand.New(rand.NewPCG(9, 10)), minutesFrom(base, 5), 2)
	tests := []struct {
		name  string
		clock func() time.Time
		want  []workflows.CollectRollupsResult
	}{
		{
			name: "budget spent after every transaction",
			// Each reading is a minute later, past the 30 s budget.
			clock: steppingClock(base, time.Minute),
			want: []workflows.CollectRollupsResult{
				{Batches: 2, Minutes: 2, Events: 20, Rows: 2 * len(groups), More: true},
				{Batches: 2, Minutes: 2, Events: 20, Rows: 2 * len(groups), More: true},
				{Batches: 1, Minutes: 1, Events: 10, Rows: len(groups)},
			},
		},
		{
			name:  "budget left drains every batch in one call",
			clock: steppingClock(base, 0),
			want:  []workflows.CollectRollupsResult{{Batches: 5, Minutes: 5, Events: 50, Rows: 5 * len(groups)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			d := testenv.DB(t)
			ingestInBatches(t, d, events, 2*len(groups)) // one batch per minute
			a := &activities.Activities{DB: d, Clock: tt.clock, CollectBudget: 30 * time.Second}
			env := newEnv(a)

			for i, want := range tt.want {
				assert.Equal(t, want, collect(t, env, a, workflows.CollectRollupsInput{MaxBatches: 2}), "call %d", i+1)
			}

			var pending, collected int
			require.NoError(t, d.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE collected_at IS NULL),
				count(*) FILTER (WHERE collected_at >= $1) FROM ingest_batches`, base).Scan(&pending, &collected))
			assert.Zero(t, pending)
			assert.Equal(t, 5, collected)
			assert.Len(t, rollups(t, d), 5*len(groups))
		})
	}
}

func steppingClock(start time.Time, step time.Duration) func() time.Time {
	now := start
	return func() time.Time {
		now = now.Add(step)
		return now
	}
}

func TestCollectRollupsRejectsInvalidInput(t *testing.T) {
	a := &activities.Activities{DB: testenv.DB(t)}
	env := newEnv(a)
	from, to := base, base.Add(time.Hour)
	tests := []struct {
		name string
		in   workflows.CollectRollupsInput
	}{
		{"from not before to", window(to, from)},
		{"empty window", window(from, from)},
		{"from without to", workflows.CollectRollupsInput{From: &from}},
		{"negative max batches", workflows.CollectRollupsInput{MaxBatches: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.ExecuteActivity(a.CollectRollups, tt.in)

			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			assert.True(t, appErr.NonRetryable())
		})
	}
}

func TestRecordProcessMetricsOneRowPerMinuteAndInstance(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	_, err := d.Pool.Exec(ctx, `INSERT INTO ingest_batches (key_owner, request_hash, events, minutes, response)
		VALUES ('test', '\x00', 3, '{}', '{}'), ('test', '\x01', 4, '{}', '{}')`)
	require.NoError(t, err)
	w1 := &activities.Activities{DB: d, Instance: "worker-1"}
	w2 := &activities.Activities{DB: d, Instance: "worker-2"}
	minute := base.Add(17 * time.Second)
	record := func(a *activities.Activities, m time.Time) {
		_, err := newEnv(a).ExecuteActivity(a.RecordProcessMetrics, workflows.RecordProcessMetricsInput{Minute: m})
		require.NoError(t, err)
	}

	record(w1, minute)
	record(w1, minute) // a retried activity
	record(w1, minute.Add(time.Minute))
	record(w2, minute)

	var rows []db.ProcessMetrics
	require.NoError(t, d.Bun.NewSelect().Model(&rows).Order("minute", "instance").Scan(ctx))
	require.Len(t, rows, 3)
	assert.Equal(t, []string{"worker-1", "worker-2", "worker-1"},
		[]string{rows[0].Instance, rows[1].Instance, rows[2].Instance})
	assert.True(t, base.Equal(rows[0].Minute), "minute truncated")
	assert.True(t, base.Add(time.Minute).Equal(rows[2].Minute))
	for _, r := range rows {
		assert.Positive(t, r.CPUSeconds)
		assert.Positive(t, r.RSSBytes)
		assert.Positive(t, r.HeapBytes)
		assert.Positive(t, r.Goroutines)
		assert.Positive(t, r.DBConnsTotal)
		assert.GreaterOrEqual(t, r.DBConnsTotal, r.DBConnsInUse+r.DBConnsIdle)
		assert.Equal(t, int64(2), r.IngestQueueBatches)
		assert.Equal(t, int64(7), r.IngestQueueEvents)
	}
}
