package db

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Grain bits: which dimensions a pre-aggregated row keeps. A dimension not
// kept is stored as ” and stands for every value.
const (
	GrainModel    = 1
	GrainProvider = 2
	GrainTenant   = 4
	// GrainFull keeps every dimension: rollup_minute's own key.
	GrainFull = GrainTenant | GrainProvider | GrainModel
)

// RollupMinuteProj is one row of rollup_minute_proj: rollup_minute summed
// over the dimensions Grain drops (grains 0, 1, 2 and 4).
type RollupMinuteProj struct {
	bun.BaseModel `bun:"table:rollup_minute_proj"`

	Grain    int16     `bun:"grain,pk"`
	Minute   time.Time `bun:"minute,pk"`
	Tenant   string    `bun:"tenant,pk"`
	Provider string    `bun:"provider,pk"`
	Model    string    `bun:"model,pk"`
	RollupCounters
}

// RollupHour is one row of rollup_hour: an hour of rollup_minute at any
// grain (7 = the full key).
type RollupHour struct {
	bun.BaseModel `bun:"table:rollup_hour"`

	Grain    int16     `bun:"grain,pk"`
	Hour     time.Time `bun:"hour,pk"`
	Tenant   string    `bun:"tenant,pk"`
	Provider string    `bun:"provider,pk"`
	Model    string    `bun:"model,pk"`
	RollupCounters
	// PeakRequests is the busiest minute's requests for this key.
	PeakRequests int64 `bun:"peak_requests"`
}

// groupedCounters is a grouped row of counters whose sketches still need
// merging: SQL sums the numbers (cost in numeric, exactly) and collects the
// encodings, Go merges them.
type groupedCounters struct {
	Grain    int16     `bun:"grain"`
	Bucket   time.Time `bun:"bucket"`
	Tenant   string    `bun:"tenant"`
	Provider string    `bun:"provider"`
	Model    string    `bun:"model"`
	APIKey   string    `bun:"api_key"`
	RequestCounts
	LatencySum      float64  `bun:"latency_sum"`
	LatencyMax      float64  `bun:"latency_max"`
	LatencySketches [][]byte `bun:"latency_sketches,array"`
	TTFTCount       int64    `bun:"ttft_count"`
	TTFTSum         float64  `bun:"ttft_sum"`
	TTFTMax         float64  `bun:"ttft_max"`
	TTFTSketches    [][]byte `bun:"ttft_sketches,array"`
	PeakRequests    int64    `bun:"peak_requests"`
}

// countersSelect sums the counter columns of a group of rollup rows.
const countersSelect = `
	sum(requests)::bigint AS requests, sum(successes)::bigint AS successes,
	sum(status_4xx)::bigint AS status_4xx, sum(status_5xx)::bigint AS status_5xx,
	sum(timeouts)::bigint AS timeouts, sum(input_tokens)::bigint AS input_tokens,
	sum(output_tokens)::bigint AS output_tokens, sum(cached_tokens)::bigint AS cached_tokens,
	sum(cost_usd)::text AS cost_usd, sum(latency_sum) AS latency_sum, max(latency_max) AS latency_max,
	sum(ttft_count)::bigint AS ttft_count, sum(ttft_sum) AS ttft_sum, max(ttft_max) AS ttft_max`

// sketchesSelect collects the sketches of a group for merging in Go.
const sketchesSelect = `,
	array_agg(latency_sketch) AS latency_sketches, array_agg(ttft_sketch) AS ttft_sketches`

// stableCounters is countersSelect for stored rows: float addition is not
// associative and the input order follows the plan, so the float sums take
// their input in a fixed order (order, a unique key of the source) and a
// rebuild gives identical rows, as RecomputeMinutes does for rollup_minute.
func stableCounters(order string) string {
	r := strings.NewReplacer(
		"sum(latency_sum)", "sum(latency_sum ORDER BY "+order+")",
		"sum(ttft_sum)", "sum(ttft_sum ORDER BY "+order+")")
	return r.Replace(countersSelect) + sketchesSelect
}

// GROUPING() sets a bit for every dimension NOT grouped, tenant highest, so
// the grain (dimensions kept) is its complement.
//
// minuteSets are rollup_minute_proj's grains: everything and one dimension
// at a time, which is what unfiltered and single-filter windows read at
// their edges. Two-dimension grains would hold most of rollup_minute's rows
// again (tenant x model alone is ~1,500 rows a busy minute); queries
// filtering two or more dimensions read rollup_minute itself, where the
// filters leave few rows. hourSets are every grain below the full key.
const (
	minuteSets = `GROUPING SETS ((), (tenant), (provider), (model))`
	hourSets   = `GROUPING SETS ((), (tenant), (provider), (model),
	(tenant, provider), (tenant, model), (provider, model))`
)

const grainExpr = `(7 - GROUPING(tenant, provider, model))::smallint AS grain,
	coalesce(tenant, '') AS tenant, coalesce(provider, '') AS provider, coalesce(model, '') AS model`

func (g *groupedCounters) counters() (RollupCounters, error) {
	lat, err := mergeEncoded(g.LatencySketches)
	if err != nil {
		return RollupCounters{}, err
	}
	ttft, err := mergeEncoded(g.TTFTSketches)
	if err != nil {
		return RollupCounters{}, err
	}
	return RollupCounters{
		RequestCounts: g.RequestCounts,
		LatencySum:    g.LatencySum, LatencyMax: g.LatencyMax, LatencySketch: lat,
		TTFTCount: g.TTFTCount, TTFTSum: g.TTFTSum, TTFTMax: g.TTFTMax, TTFTSketch: ttft,
	}, nil
}

func mergeEncoded(encoded [][]byte) ([]byte, error) {
	s := NewLatencySketch()
	if err := MergeEncodedSketches(s, encoded...); err != nil {
		return nil, err
	}
	return EncodeSketch(s), nil
}

// minuteProjGrains are the grains of rollup_minute_proj.
var minuteProjGrains = []int16{0, GrainModel, GrainProvider, GrainTenant}

// allGrains are the grains of rollup_hour and rollup_errors_hour.
var allGrains = []int16{0, 1, 2, 3, 4, 5, 6, 7}

// projectionChunkMinutes bounds the minutes one projection query groups: a
// busy minute has thousands of rollup_minute rows.
const projectionChunkMinutes = 10

// RebuildDashboardRollups recomputes every dashboard pre-aggregate that
// depends on the given minutes (any instants; each stands for its UTC
// minute): their minute projections, error rows and api_key rows, and the
// hour rows of the hours they fall in. Like RecomputeMinutes it derives
// everything from scratch, so running it again gives the same rows. It must run in the
// transaction that recomputed the minutes, under LockRollups. progress is
// called after each step so a long rebuild can heartbeat.
func RebuildDashboardRollups(ctx context.Context, idb bun.IDB, minutes []time.Time, progress func()) error {
	minutes = normaliseMinutes(minutes)
	if len(minutes) == 0 {
		return nil
	}
	for chunk := range slices.Chunk(minutes, projectionChunkMinutes) {
		if err := rebuildMinuteProjections(ctx, idb, chunk); err != nil {
			return err
		}
		progress()
	}
	for chunk := range slices.Chunk(minutes, RecomputeChunkMinutes) {
		if err := rebuildErrorMinutes(ctx, idb, chunk); err != nil {
			return err
		}
		progress()
		if err := rebuildAPIKeyMinutes(ctx, idb, chunk); err != nil {
			return err
		}
		progress()
	}
	hours := hoursOf(minutes)
	for _, h := range hours {
		if err := rebuildHour(ctx, idb, h); err != nil {
			return err
		}
		if err := rebuildAPIKeyHour(ctx, idb, h); err != nil {
			return err
		}
		progress()
	}
	return rebuildErrorHours(ctx, idb, hours)
}

func rebuildMinuteProjections(ctx context.Context, idb bun.IDB, minutes []time.Time) error {
	arr := pgdialect.Array(minutes)
	// Naming every grain lets the primary key (grain, minute, ...) find
	// the rows instead of scanning the table.
	if _, err := idb.NewDelete().Model((*RollupMinuteProj)(nil)).
		Where("grain = ANY(?::smallint[]) AND minute = ANY(?::timestamptz[])", pgdialect.Array(minuteProjGrains), arr).Exec(ctx); err != nil {
		return fmt.Errorf("delete minute projections: %w", MapError(err))
	}
	var groups []groupedCounters
	err := idb.NewRaw(`SELECT minute AS bucket, `+grainExpr+`, `+stableCounters("tenant, provider, model")+`
		FROM rollup_minute WHERE minute = ANY(?::timestamptz[])
		GROUP BY minute, `+minuteSets, arr).Scan(ctx, &groups)
	if err != nil {
		return fmt.Errorf("project minutes: %w", MapError(err))
	}
	return insertGroups(ctx, idb, groups, rollupColumns{table: "rollup_minute_proj", tsColumn: "minute", withGrain: true})
}

// rebuildHour recomputes hour h's rows: the full key from rollup_minute,
// then the coarser grains from those, which merges 9,000 sketches instead
// of the hour's several hundred thousand minute rows once per grain.
func rebuildHour(ctx context.Context, idb bun.IDB, h time.Time) error {
	if _, err := idb.NewDelete().Model((*RollupHour)(nil)).
		Where("grain = ANY(?::smallint[]) AND hour = ?", pgdialect.Array(allGrains), h).Exec(ctx); err != nil {
		return fmt.Errorf("delete hour rollups: %w", MapError(err))
	}
	var full []groupedCounters
	err := idb.NewRaw(`SELECT ?::smallint AS grain, ?::timestamptz AS bucket, tenant, provider, model, `+
		stableCounters("minute")+`, max(requests) AS peak_requests
		FROM rollup_minute WHERE minute >= ? AND minute < ?
		GROUP BY tenant, provider, model`, GrainFull, h, h, h.Add(time.Hour)).Scan(ctx, &full)
	if err != nil {
		return fmt.Errorf("roll up hour: %w", MapError(err))
	}
	if err := insertHourGroups(ctx, idb, full); err != nil {
		return err
	}
	var coarse []groupedCounters
	err = idb.NewRaw(`SELECT hour AS bucket, `+grainExpr+`, `+stableCounters("tenant, provider, model")+`,
		sum(peak_requests)::bigint AS peak_requests
		FROM rollup_hour WHERE grain = ? AND hour = ?
		GROUP BY hour, `+hourSets, GrainFull, h).Scan(ctx, &coarse)
	if err != nil {
		return fmt.Errorf("project hour: %w", MapError(err))
	}
	if err := insertHourGroups(ctx, idb, coarse); err != nil {
		return err
	}
	return setHourPeaks(ctx, idb, h)
}

// setHourPeaks sets peak_requests of hour h's rows whose grain has minute
// projections from those, exactly: the busiest minute of a coarse key is not
// the busiest minute of any one of its full keys. Full-key rows get theirs
// when they are built; two-dimension rows keep the sum of their full keys'
// peaks, an upper bound.
func setHourPeaks(ctx context.Context, idb bun.IDB, h time.Time) error {
	_, err := idb.NewRaw(`UPDATE rollup_hour AS h SET peak_requests = p.peak
		FROM (SELECT grain, tenant, provider, model, max(requests) AS peak FROM rollup_minute_proj
			WHERE minute >= ? AND minute < ? GROUP BY 1, 2, 3, 4) AS p
		WHERE h.hour = ? AND h.grain = p.grain AND h.tenant = p.tenant
			AND h.provider = p.provider AND h.model = p.model`,
		h, h.Add(time.Hour), h).Exec(ctx)
	if err != nil {
		return fmt.Errorf("set hour peaks: %w", MapError(err))
	}
	return nil
}

func insertHourGroups(ctx context.Context, idb bun.IDB, groups []groupedCounters) error {
	return insertGroups(ctx, idb, groups, rollupColumns{table: "rollup_hour", tsColumn: "hour", withGrain: true, withPeak: true})
}

// insertGroups merges each group's sketches and inserts the rows in chunks.
func insertGroups(ctx context.Context, idb bun.IDB, groups []groupedCounters, into rollupColumns) error {
	for chunk := range slices.Chunk(groups, insertChunk) {
		cols := into
		for i := range chunk {
			g := &chunk[i]
			c, err := g.counters()
			if err != nil {
				return err
			}
			key := rollupKey{Tenant: g.Tenant, Provider: g.Provider, Model: g.Model, APIKey: g.APIKey}
			cols.add(g.Grain, g.Bucket.UTC(), key, &c, g.PeakRequests)
		}
		if err := cols.insert(ctx, idb); err != nil {
			return err
		}
	}
	return nil
}

// rebuildAPIKeyMinutes recomputes rollup_apikey_minute's rows of the given
// minutes from the raw rows: one scan of the minutes grouped per (minute,
// api_key, tenant), the sketches built here as AggregateMinutes builds
// rollup_minute's.
func rebuildAPIKeyMinutes(ctx context.Context, idb bun.IDB, minutes []time.Time) error {
	if _, err := idb.NewRaw(`DELETE FROM rollup_apikey_minute WHERE minute = ANY(?::timestamptz[])`,
		pgdialect.Array(minutes)).Exec(ctx); err != nil {
		return fmt.Errorf("delete api_key rollups: %w", MapError(err))
	}
	aggs, err := aggregateMinutes(ctx, idb, minutes, aggregateAPIKeySQL)
	if err != nil {
		return err
	}
	for chunk := range slices.Chunk(aggs, insertChunk) {
		cols := rollupColumns{table: "rollup_apikey_minute", tsColumn: "minute", dims: apiKeyDims}
		for i := range chunk {
			c := chunk[i].counters()
			cols.add(0, chunk[i].Minute, chunk[i].key(), &c, 0)
		}
		if err := cols.insert(ctx, idb); err != nil {
			return err
		}
	}
	return nil
}

// rebuildAPIKeyHour recomputes hour h's rollup_apikey_hour rows from
// rollup_apikey_minute, each with its busiest minute.
func rebuildAPIKeyHour(ctx context.Context, idb bun.IDB, h time.Time) error {
	if _, err := idb.NewRaw(`DELETE FROM rollup_apikey_hour WHERE hour = ?`, h).Exec(ctx); err != nil {
		return fmt.Errorf("delete hourly api_key rollups: %w", MapError(err))
	}
	var groups []groupedCounters
	err := idb.NewRaw(`SELECT ?::timestamptz AS bucket, api_key, tenant, `+stableCounters("minute")+`,
		max(requests) AS peak_requests
		FROM rollup_apikey_minute WHERE minute >= ? AND minute < ?
		GROUP BY api_key, tenant`, h, h, h.Add(time.Hour)).Scan(ctx, &groups)
	if err != nil {
		return fmt.Errorf("roll up api_key hour: %w", MapError(err))
	}
	return insertGroups(ctx, idb, groups, rollupColumns{table: "rollup_apikey_hour", tsColumn: "hour", dims: apiKeyDims, withPeak: true})
}

// errorMessageBound is how much of an error message the error rollups keep.
const errorMessageBound = 200

// rebuildErrorMinutes recomputes rollup_errors_minute from the raw rows,
// probing the ts index per minute as aggregateSQL does. A failure is every
// row rollup_minute does not count as a success.
func rebuildErrorMinutes(ctx context.Context, idb bun.IDB, minutes []time.Time) error {
	arr := pgdialect.Array(minutes)
	if _, err := idb.NewRaw(`DELETE FROM rollup_errors_minute WHERE minute = ANY(?::timestamptz[])`, arr).Exec(ctx); err != nil {
		return fmt.Errorf("delete error rollups: %w", MapError(err))
	}
	lo, hi := minutes[0], minutes[len(minutes)-1].Add(time.Minute)
	_, err := idb.NewRaw(`INSERT INTO rollup_errors_minute
		SELECT m.minute, r.tenant, r.provider, r.model, r.status_code,
			coalesce(r.error_type, ''), left(coalesce(r.error_message, ''), ?), count(*)
		FROM unnest(?::timestamptz[]) AS m(minute)
		JOIN request_logs r ON r.ts >= m.minute AND r.ts < m.minute + interval '1 minute'
		WHERE r.ts >= ? AND r.ts < ? AND `+FailureSQL+`
		GROUP BY 1, 2, 3, 4, 5, 6, 7`, errorMessageBound, arr, lo, hi).Exec(ctx)
	if err != nil {
		return fmt.Errorf("roll up errors: %w", MapError(err))
	}
	return nil
}

// rawSuccessSQL is rollup_minute's success definition on raw rows (alias r).
const rawSuccessSQL = `r.status_code BETWEEN 100 AND 399 AND r.error_type IS DISTINCT FROM 'timeout'`

// FailureSQL selects the raw rows (alias r) that are not successes.
const FailureSQL = `NOT (` + rawSuccessSQL + `)`

func rebuildErrorHours(ctx context.Context, idb bun.IDB, hours []time.Time) error {
	arr := pgdialect.Array(hours)
	if _, err := idb.NewRaw(`DELETE FROM rollup_errors_hour WHERE grain = ANY(?::smallint[]) AND hour = ANY(?::timestamptz[])`,
		pgdialect.Array(allGrains), arr).Exec(ctx); err != nil {
		return fmt.Errorf("delete hourly error rollups: %w", MapError(err))
	}
	_, err := idb.NewRaw(`INSERT INTO rollup_errors_hour
		SELECT (7 - GROUPING(tenant, provider, model))::smallint, date_trunc('hour', minute),
			coalesce(tenant, ''), coalesce(provider, ''), coalesce(model, ''),
			status_code, error_type, error_message, sum(requests)
		FROM rollup_errors_minute
		WHERE minute >= ? AND minute < ? AND date_trunc('hour', minute) = ANY(?::timestamptz[])
		GROUP BY date_trunc('hour', minute), status_code, error_type, error_message,
			GROUPING SETS ((), (tenant), (provider), (model), (tenant, provider),
				(tenant, model), (provider, model), (tenant, provider, model))`,
		hours[0], hours[len(hours)-1].Add(time.Hour), arr).Exec(ctx)
	if err != nil {
		return fmt.Errorf("roll up hourly errors: %w", MapError(err))
	}
	return nil
}

// hoursOf returns the distinct UTC hours of sorted minutes.
func hoursOf(minutes []time.Time) []time.Time {
	var out []time.Time
	for _, m := range minutes {
		h := m.Truncate(time.Hour)
		if len(out) == 0 || !out[len(out)-1].Equal(h) {
			out = append(out, h)
		}
	}
	return out
}
