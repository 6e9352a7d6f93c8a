package db

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// DashboardFilter narrows a dashboard query; an empty list means any value,
// several values mean any of them.
type DashboardFilter struct {
	Tenants   []string
	Providers []string
	Models    []string
	APIKeys   []string
}

// grain is the coarsest grain that can answer the filter: every filtered
// dimension must be kept.
func (f DashboardFilter) grain() int {
	g := 0
	if len(f.Tenants) > 0 {
		g |= GrainTenant
	}
	if len(f.Providers) > 0 {
		g |= GrainProvider
	}
	if len(f.Models) > 0 {
		g |= GrainModel
	}
	return g
}

// where appends the filter's conditions on columns of alias a (may be "").
func (f DashboardFilter) where(b *sqlBuilder, a string) {
	for _, c := range []struct {
		col  string
		vals []string
	}{{"tenant", f.Tenants}, {"provider", f.Providers}, {"model", f.Models}, {"api_key", f.APIKeys}} {
		if len(c.vals) > 0 {
			b.add(" AND "+a+c.col+" = ANY(?::text[])", pgdialect.Array(c.vals))
		}
	}
}

// Dashboard dimensions a breakdown can group by.
const (
	DimTenant   = "tenant"
	DimProvider = "provider"
	DimModel    = "model"
	DimAPIKey   = "api_key"
)

var dimGrain = map[string]int{DimTenant: GrainTenant, DimProvider: GrainProvider, DimModel: GrainModel}

// DashboardQuery asks for counters over [From, To) (whole UTC minutes),
// optionally per time bucket and per value of one dimension.
type DashboardQuery struct {
	From, To time.Time
	Filter   DashboardFilter
	// Step buckets the window (epoch-aligned, so 1h and 1d buckets are whole
	// UTC hours and days); zero gives one bucket starting at From.
	Step time.Duration
	// By groups by a dimension (Dim*); empty gives one group.
	By string
	// Sketches asks for the latency and TTFT sketches, which cost a decode
	// and merge per row read; counters alone do not need them.
	Sketches bool
	// RawTimeout bounds a query that reads raw rows (an api_key filter or
	// breakdown): all its statements together, enforced by PostgreSQL's
	// statement_timeout. Past it the query fails with ErrQueryTimeout.
	// Zero means no bound.
	RawTimeout time.Duration
}

// involvesAPIKey reports whether q filters or breaks down by api_key.
func (q DashboardQuery) involvesAPIKey() bool {
	return len(q.Filter.APIKeys) > 0 || q.By == DimAPIKey
}

// apiKeyRollups reports whether q involves api_key and otherwise at most
// tenant, which the api_key rollups (kept per api_key and tenant) answer.
func (q DashboardQuery) apiKeyRollups() bool {
	return q.involvesAPIKey() && len(q.Filter.Providers) == 0 && len(q.Filter.Models) == 0 &&
		(q.By == "" || q.By == DimAPIKey || q.By == DimTenant)
}

// readsRaw reports whether q must read the raw rows: api_key with provider
// or model, which no rollup keeps together.
func (q DashboardQuery) readsRaw() bool {
	return q.involvesAPIKey() && !q.apiKeyRollups()
}

// DashboardStats are the counters of one group with merged sketches (nil
// unless asked for).
type DashboardStats struct {
	Bucket time.Time `bun:"bucket"`
	Key    string    `bun:"key"`
	RequestCounts
	LatencySum float64 `bun:"latency_sum"`
	LatencyMax float64 `bun:"latency_max"`
	TTFTCount  int64   `bun:"ttft_count"`
	TTFTSum    float64 `bun:"ttft_sum"`
	TTFTMax    float64 `bun:"ttft_max"`
	// PeakRequests is the busiest minute's requests. Where several
	// pre-aggregated rows of one hour are summed (a filter with several
	// values, or several filtered dimensions), it is the sum of their
	// peaks: an upper bound, exact whenever one row answers the hour.
	PeakRequests int64 `bun:"peak_requests"`

	Latency *ddsketch.DDSketch `bun:"-"`
	TTFT    *ddsketch.DDSketch `bun:"-"`

	LatencySketches [][]byte `bun:"latency_sketches,array"`
	TTFTSketches    [][]byte `bun:"ttft_sketches,array"`
}

// sqlBuilder accumulates SQL text and its arguments.
type sqlBuilder struct {
	sql  strings.Builder
	args []any
}

func (b *sqlBuilder) add(s string, args ...any) {
	b.sql.WriteString(s)
	b.args = append(b.args, args...)
}

// DashboardAggregate answers q. Without an api_key filter or breakdown it
// reads the pre-aggregates: whole hours from rollup_hour at the coarsest
// grain covering the filters and the breakdown, the minutes at the window's
// edges from rollup_minute_proj (or rollup_minute when the filters and
// breakdown involve two or more dimensions). With api_key and otherwise at
// most tenant it reads rollup_apikey_hour and rollup_apikey_minute the same
// way. The rollups do not keep api_key with provider or model, so those
// queries read the raw rows (rawDashboard): exact counts, the same
// percentile accuracy, at raw-scan speed, within q.RawTimeout. Groups come
// back ordered by bucket and key.
func DashboardAggregate(ctx context.Context, d *DB, q DashboardQuery) ([]DashboardStats, error) {
	if !q.From.Before(q.To) {
		return nil, nil
	}
	if q.readsRaw() {
		return rawDashboard(ctx, d, q)
	}
	var b sqlBuilder
	rollupAggregate(&b, q)
	var out []DashboardStats
	if err := scanSerial(ctx, d.Bun, &out, b.sql.String(), b.args...); err != nil {
		return nil, fmt.Errorf("dashboard aggregate: %w", MapError(err))
	}
	for i := range out {
		if err := out[i].finish(q.Sketches); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scanSerial runs a pre-aggregate query without parallel workers. Such a
// query reads thousands of rows, and starting workers costs more than that:
// when a longer window edge tipped the planner into a parallel plan, the
// overview's top-error query took 150 ms instead of 6 ms at 10 M rows a day.
func scanSerial(ctx context.Context, idb bun.IDB, dest any, query string, args ...any) error {
	return idb.RunInTx(ctx, &sql.TxOptions{ReadOnly: true}, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, "SET LOCAL max_parallel_workers_per_gather = 0"); err != nil {
			return err
		}
		return tx.NewRaw(query, args...).Scan(ctx, dest)
	})
}

func (s *DashboardStats) finish(sketches bool) error {
	s.Bucket = s.Bucket.UTC()
	if !sketches {
		return nil
	}
	s.Latency, s.TTFT = NewLatencySketch(), NewLatencySketch()
	if err := MergeEncodedSketches(s.Latency, s.LatencySketches...); err != nil {
		return err
	}
	if err := MergeEncodedSketches(s.TTFT, s.TTFTSketches...); err != nil {
		return err
	}
	s.LatencySketches, s.TTFTSketches = nil, nil
	return nil
}

// bucketSQL buckets the timestamp expression ts.
func bucketSQL(b *sqlBuilder, q DashboardQuery, ts string) {
	if q.Step <= 0 {
		b.add("?::timestamptz", q.From)
		return
	}
	b.add("date_bin(?::interval, "+ts+", 'epoch'::timestamptz)", intervalArg(q.Step))
}

// intervalArg renders d as a PostgreSQL interval.
func intervalArg(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10) + " seconds"
}

func keySQL(q DashboardQuery, alias string) string {
	if q.By == "" {
		return "''"
	}
	return alias + q.By // By is one of the Dim* constants, checked by the caller
}

// rollupAggregate builds the pre-aggregate query: the sources' rows
// (UNION ALL), per-instant peaks by window function, then one group per
// bucket and key.
func rollupAggregate(b *sqlBuilder, q DashboardQuery) {
	grain := q.Filter.grain() | dimGrain[q.By]
	b.add("SELECT ")
	bucketSQL(b, q, "ts")
	b.add(" AS bucket, key, " + countersSelect + ", max(instant_peak) AS peak_requests")
	if q.Sketches {
		b.add(sketchesSelect)
	}
	b.add(" FROM (SELECT *, sum(peak) OVER (PARTITION BY ts, key) AS instant_peak FROM (")
	first := true
	part := func(table, tsCol, peak string, from, to time.Time, withGrain bool) {
		if !from.Before(to) {
			return
		}
		if !first {
			b.add(" UNION ALL ")
		}
		first = false
		b.add("SELECT " + tsCol + " AS ts, " + keySQL(q, "") + " AS key, requests, successes, status_4xx, status_5xx, timeouts," +
			" input_tokens, output_tokens, cached_tokens, cost_usd, latency_sum, latency_max, latency_sketch," +
			" ttft_count, ttft_sum, ttft_max, ttft_sketch, " + peak + " AS peak FROM " + table + " WHERE ")
		if withGrain {
			b.add("grain = ? AND ", grain)
		}
		b.add(tsCol+" >= ? AND "+tsCol+" < ?", from, to)
		q.Filter.where(b, "")
	}
	// The sources: minute rows and hour rows, and whether each has grains.
	minuteTable, minuteGrain, hourTable, hourGrain := "rollup_minute_proj", true, "rollup_hour", true
	switch {
	case q.apiKeyRollups():
		minuteTable, minuteGrain, hourTable, hourGrain = "rollup_apikey_minute", false, "rollup_apikey_hour", false
	case !slices.Contains(minuteProjGrains, int16(grain)):
		minuteTable, minuteGrain = "rollup_minute", false
	}
	minutes := func(from, to time.Time) {
		part(minuteTable, "minute", "requests", from, to, minuteGrain)
	}
	hourFrom, hourTo := ceilHour(q.From), q.To.Truncate(time.Hour)
	if (q.Step == 0 || q.Step%time.Hour == 0) && hourFrom.Before(hourTo) {
		minutes(q.From, hourFrom)
		part(hourTable, "hour", "peak_requests", hourFrom, hourTo, hourGrain)
		minutes(hourTo, q.To)
	} else {
		minutes(q.From, q.To)
	}
	b.add(") AS src) AS s GROUP BY 1, 2 ORDER BY 1, 2")
}

func ceilHour(t time.Time) time.Time {
	h := t.Truncate(time.Hour)
	if h.Before(t) {
		h = h.Add(time.Hour)
	}
	return h
}
