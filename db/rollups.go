package db

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// RollupMinute is one row of rollup_minute: what one (tenant, provider,
// model) did in one UTC minute.
//
// Product definitions, shared by every dashboard and alert that reads these
// rows:
//   - requests: every raw row.
//   - status_4xx: status_code 400..499; status_5xx: status_code 500..599.
//   - timeouts: error_type = 'timeout' or status_code 408 or 504, whatever
//     else the row says (a 504 is both a 5xx and a timeout).
//   - successes: status_code 100..399 and not a timeout, so a 200 the
//     gateway gave up on does not count as served.
//   - latency_*: over every row; ttft_*: only over rows with ttft_ms set
//     (streamed answers), ttft_count says how many.
//   - *_max is 0 when nothing was measured; sketches are then empty.
type RollupMinute struct {
	bun.BaseModel `bun:"table:rollup_minute"`

	Minute   time.Time `bun:"minute,pk"`
	Tenant   string    `bun:"tenant,pk"`
	Provider string    `bun:"provider,pk"`
	Model    string    `bun:"model,pk"`
	RollupCounters
}

// RequestCounts are the summable request, token and cost counters every
// aggregate of request logs carries, with RollupMinute's definitions.
type RequestCounts struct {
	Requests     int64 `bun:"requests"`
	Successes    int64 `bun:"successes"`
	Status4xx    int64 `bun:"status_4xx"`
	Status5xx    int64 `bun:"status_5xx"`
	Timeouts     int64 `bun:"timeouts"`
	InputTokens  int64 `bun:"input_tokens"`
	OutputTokens int64 `bun:"output_tokens"`
	CachedTokens int64 `bun:"cached_tokens"`
	// CostUSD is the exact numeric sum as decimal text: a float64 would make
	// cost totals drift from the raw rows.
	CostUSD string `bun:"cost_usd"`
}

// RollupCounters are the columns shared by rollup_minute,
// rollup_minute_proj and rollup_hour: the counts and the latency and TTFT
// summaries.
type RollupCounters struct {
	RequestCounts
	LatencySum    float64 `bun:"latency_sum"`
	LatencyMax    float64 `bun:"latency_max"`
	LatencySketch []byte  `bun:"latency_sketch"`
	TTFTCount     int64   `bun:"ttft_count"`
	TTFTSum       float64 `bun:"ttft_sum"`
	TTFTMax       float64 `bun:"ttft_max"`
	TTFTSketch    []byte  `bun:"ttft_sketch"`
}

// PendingBatch is an uncollected ingest batch as the collector needs it.
type PendingBatch struct {
	ID      int64       `bun:"id"`
	Events  int64       `bun:"events"`
	Minutes []time.Time `bun:"minutes,array"`
}

// Recomputed counts what RecomputeMinutes did.
type Recomputed struct {
	Minutes  int
	Rows     int
	Requests int64
}

// RecomputeChunkMinutes bounds the minutes one aggregate query reads, so
// memory and statement time stay bounded however many minutes a backlog
// touches.
const RecomputeChunkMinutes = 60

// insertChunk bounds the rows (and so the parameter arrays) of one INSERT.
const insertChunk = 5000

// LockRollups takes the transaction-level advisory lock that serialises every
// writer of rollup_minute, so two collectors never recompute the same minutes
// concurrently (their DELETE + INSERT would interleave). Collection is cheap
// enough that one lock for all minutes costs nothing, and a lock per minute
// would exhaust the lock table on a day-long backlog. idb must be a
// transaction; taking the lock again in the same transaction is harmless.
func LockRollups(ctx context.Context, idb bun.IDB) error {
	if _, err := idb.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('opsflow_rollup_minute'))"); err != nil {
		return fmt.Errorf("lock rollups: %w", MapError(err))
	}
	return nil
}

// PendingBatches locks and returns up to limit uncollected ingest batches,
// oldest first. SKIP LOCKED keeps a second collector off the batches the
// first holds: it takes later ones, and LockRollups orders the recomputes.
func PendingBatches(ctx context.Context, idb bun.IDB, limit int) ([]PendingBatch, error) {
	var batches []PendingBatch
	err := idb.NewRaw(`SELECT id, events, minutes FROM ingest_batches
		WHERE collected_at IS NULL ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`, limit).Scan(ctx, &batches)
	if err != nil {
		return nil, fmt.Errorf("select pending batches: %w", MapError(err))
	}
	return batches, nil
}

// MarkBatchesCollected sets collected_at on the given batches.
func MarkBatchesCollected(ctx context.Context, idb bun.IDB, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := idb.NewUpdate().Table("ingest_batches").
		Set("collected_at = ?", at).
		Where("id IN (?)", bun.List(ids)).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("mark batches collected: %w", MapError(err))
	}
	return nil
}

// DeleteRollups removes every rollup row of the given minutes (any instants;
// each stands for its UTC minute).
func DeleteRollups(ctx context.Context, idb bun.IDB, minutes []time.Time) error {
	_, err := idb.NewDelete().Model((*RollupMinute)(nil)).
		Where("minute = ANY(?::timestamptz[])", pgdialect.Array(normaliseMinutes(minutes))).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("delete rollups: %w", MapError(err))
	}
	return nil
}

// aggregateSQL rolls raw rows up per minute and the given key columns
// (Dim* names): rollup_minute's (tenant, provider, model), or the api_key
// rollups' (api_key, tenant). Counts, tokens and cost are summed here, cost
// in numeric so totals equal the raw rows exactly. Latencies come back as
// arrays for the sketches. The join probes the ts index once per minute, so
// scattered late minutes do not scan the hours between them; the outer ts
// bounds let the planner prune partitions.
func aggregateSQL(dims []string) string {
	keys, groups := "", "1"
	for i, dim := range dims {
		keys += ", r." + dim
		groups += ", " + strconv.Itoa(i+2)
	}
	return `
SELECT m.minute` + keys + `,
	count(*) AS requests,
	count(*) FILTER (WHERE r.status_code BETWEEN 100 AND 399
		AND r.error_type IS DISTINCT FROM 'timeout') AS successes,
	count(*) FILTER (WHERE r.status_code BETWEEN 400 AND 499) AS status_4xx,
	count(*) FILTER (WHERE r.status_code BETWEEN 500 AND 599) AS status_5xx,
	count(*) FILTER (WHERE r.error_type = 'timeout' OR r.status_code IN (408, 504)) AS timeouts,
	sum(r.input_tokens)::bigint AS input_tokens,
	sum(r.output_tokens)::bigint AS output_tokens,
	sum(r.cached_tokens)::bigint AS cached_tokens,
	sum(r.cost_usd)::text AS cost_usd,
	array_agg(r.latency_ms) AS latencies,
	coalesce(array_agg(r.ttft_ms) FILTER (WHERE r.ttft_ms IS NOT NULL), '{}') AS ttfts
FROM unnest(?::timestamptz[]) AS m(minute)
JOIN request_logs r ON r.ts >= m.minute AND r.ts < m.minute + interval '1 minute'
WHERE r.ts >= ? AND r.ts < ?
GROUP BY ` + groups + `
ORDER BY ` + groups
}

var (
	aggregateFullKeySQL = aggregateSQL(fullKeyDims)
	aggregateAPIKeySQL  = aggregateSQL(apiKeyDims)
)

// minuteAggregate is a row of aggregateSQL; the key fields its query does
// not select stay empty.
type minuteAggregate struct {
	Minute   time.Time `bun:"minute"`
	Tenant   string    `bun:"tenant"`
	Provider string    `bun:"provider"`
	Model    string    `bun:"model"`
	APIKey   string    `bun:"api_key"`
	RequestCounts
	Latencies []float64 `bun:"latencies,array"`
	TTFTs     []float64 `bun:"ttfts,array"`
}

// AggregateMinutes computes the rollup rows of the given minutes (any
// instants; each stands for its UTC minute) from every raw row in them.
func AggregateMinutes(ctx context.Context, idb bun.IDB, minutes []time.Time) ([]RollupMinute, error) {
	aggs, err := aggregateMinutes(ctx, idb, minutes, aggregateFullKeySQL)
	if err != nil {
		return nil, err
	}
	rows := make([]RollupMinute, len(aggs))
	for i := range aggs {
		a := &aggs[i]
		rows[i] = RollupMinute{Minute: a.Minute, Tenant: a.Tenant, Provider: a.Provider, Model: a.Model,
			RollupCounters: a.counters()}
	}
	return rows, nil
}

// aggregateMinutes runs query, an aggregateSQL, over the given minutes.
func aggregateMinutes(ctx context.Context, idb bun.IDB, minutes []time.Time, query string) ([]minuteAggregate, error) {
	minutes = normaliseMinutes(minutes)
	if len(minutes) == 0 {
		return nil, nil
	}
	var aggs []minuteAggregate
	lo, hi := minutes[0], minutes[len(minutes)-1].Add(time.Minute)
	if err := idb.NewRaw(query, pgdialect.Array(minutes), lo, hi).Scan(ctx, &aggs); err != nil {
		return nil, fmt.Errorf("aggregate raw rows: %w", MapError(err))
	}
	for i := range aggs {
		aggs[i].Minute = aggs[i].Minute.UTC()
	}
	return aggs, nil
}

func (a *minuteAggregate) key() rollupKey {
	return rollupKey{Tenant: a.Tenant, Provider: a.Provider, Model: a.Model, APIKey: a.APIKey}
}

// counters summarises the latencies into sketches.
func (a *minuteAggregate) counters() RollupCounters {
	lat, ttft := summarise(a.Latencies), summarise(a.TTFTs)
	return RollupCounters{
		RequestCounts: a.RequestCounts,
		LatencySum:    lat.sum, LatencyMax: lat.max, LatencySketch: lat.sketch,
		TTFTCount: int64(len(a.TTFTs)), TTFTSum: ttft.sum, TTFTMax: ttft.max, TTFTSketch: ttft.sketch,
	}
}

type summary struct {
	sum, max float64
	sketch   []byte
}

func summarise(values []float64) summary {
	// Float addition is not associative and array_agg's order follows the
	// scan (parallel workers included); summing sorted values makes the sum,
	// and so a recomputed row, identical whatever the plan.
	slices.Sort(values)
	s := NewLatencySketch()
	var out summary
	for _, v := range values {
		out.sum += v
		AddToSketch(s, v)
	}
	if len(values) > 0 {
		out.max = values[len(values)-1]
	}
	out.sketch = EncodeSketch(s)
	return out
}

// InsertRollups inserts rollup rows; the caller has deleted their minutes.
func InsertRollups(ctx context.Context, idb bun.IDB, rows []RollupMinute) error {
	for chunk := range slices.Chunk(rows, insertChunk) {
		cols := rollupColumns{table: "rollup_minute", tsColumn: "minute"}
		for i := range chunk {
			r := &chunk[i]
			cols.add(0, r.Minute, rollupKey{Tenant: r.Tenant, Provider: r.Provider, Model: r.Model}, &r.RollupCounters, 0)
		}
		if err := cols.insert(ctx, idb); err != nil {
			return fmt.Errorf("insert rollups: %w", err)
		}
	}
	return nil
}

// RecomputeMinutes replaces the rollups of the given minutes (any instants;
// each stands for its UTC minute, duplicates are fine) with rows recomputed
// from every raw row in them. Recomputing from all rows, not only new ones,
// is what makes collection idempotent and folds late events in. It takes
// LockRollups; idb must be a transaction. The dashboards' pre-aggregates of
// those minutes and their hours are rebuilt with them (see
// RebuildDashboardRollups). progress is called after each chunk so a long
// recompute can heartbeat.
func RecomputeMinutes(ctx context.Context, idb bun.IDB, minutes []time.Time, progress func(Recomputed)) (Recomputed, error) {
	var done Recomputed
	if err := LockRollups(ctx, idb); err != nil {
		return done, err
	}
	for chunk := range slices.Chunk(normaliseMinutes(minutes), RecomputeChunkMinutes) {
		rows, err := recomputeChunkOf(ctx, idb, chunk)
		if err != nil {
			return done, err
		}
		done.Minutes += len(chunk)
		done.Rows += len(rows)
		for i := range rows {
			done.Requests += rows[i].Requests
		}
		progress(done)
	}
	// The dashboards' pre-aggregates follow in the same transaction, so a
	// reader never sees them disagree with rollup_minute.
	if err := RebuildDashboardRollups(ctx, idb, minutes, func() { progress(done) }); err != nil {
		return done, err
	}
	return done, nil
}

func recomputeChunkOf(ctx context.Context, idb bun.IDB, minutes []time.Time) ([]RollupMinute, error) {
	if err := DeleteRollups(ctx, idb, minutes); err != nil {
		return nil, err
	}
	rows, err := AggregateMinutes(ctx, idb, minutes)
	if err != nil {
		return nil, err
	}
	return rows, InsertRollups(ctx, idb, rows)
}

// normaliseMinutes truncates to UTC minutes, sorts and removes duplicates;
// sorted chunks keep each query's partition bounds tight.
func normaliseMinutes(ts []time.Time) []time.Time {
	out := make([]time.Time, len(ts))
	for i, t := range ts {
		out[i] = t.UTC().Truncate(time.Minute)
	}
	slices.SortFunc(out, time.Time.Compare)
	return slices.CompactFunc(out, time.Time.Equal)
}

// OldestRawMinute returns the UTC minute of the oldest raw request log, if
// any. Retention drops raw rows long before their rollups, so recomputing a
// minute older than this would erase rollups that are the only record left.
func OldestRawMinute(ctx context.Context, idb bun.IDB) (time.Time, bool, error) {
	var oldest sql.NullTime
	if err := idb.NewRaw("SELECT min(ts) FROM request_logs").Scan(ctx, &oldest); err != nil {
		return time.Time{}, false, fmt.Errorf("oldest raw row: %w", MapError(err))
	}
	return oldest.Time.UTC().Truncate(time.Minute), oldest.Valid, nil
}
