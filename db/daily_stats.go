package db

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/uptrace/bun"
)

// DailyStat is one row of daily_stats: what one (tenant, provider, model)
// did in one UTC day. Counts follow RollupMinute's product definitions.
type DailyStat struct {
	bun.BaseModel `bun:"table:daily_stats"`

	Day      time.Time `bun:"day,pk,type:date"`
	Tenant   string    `bun:"tenant,pk"`
	Provider string    `bun:"provider,pk"`
	Model    string    `bun:"model,pk"`
	RequestCounts
	LatencyAvg    float64  `bun:"latency_avg"`
	LatencyP50    float64  `bun:"latency_p50"`
	LatencyP95    float64  `bun:"latency_p95"`
	LatencyP99    float64  `bun:"latency_p99"`
	LatencyMax    float64  `bun:"latency_max"`
	LatencySketch []byte   `bun:"latency_sketch"`
	DistinctKeys  int      `bun:"distinct_api_keys"`
	APIKeys       []string `bun:"api_keys,array"`
	// ModelRank is 1 for the tenant's busiest model of the day.
	ModelRank int `bun:"model_rank"`
}

// dailyTotalsSQL sums a day's raw rows per (tenant, provider, model). The
// inner level groups by api key too, so the distinct keys fall out of a
// hash aggregate instead of a sort of the day. No aggregate is ordered (the
// keys are sorted in Go): an ordered aggregate rules hashing out and puts a
// sort of the whole day under both levels. Latency is summed in Go
// (exactSum), which costs a fraction of a numeric sum here.
const dailyTotalsSQL = `
WITH k AS (
	SELECT tenant, provider, model, api_key,
		count(*) AS requests,
		count(*) FILTER (WHERE status_code BETWEEN 100 AND 399
			AND error_type IS DISTINCT FROM 'timeout') AS successes,
		count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) AS status_4xx,
		count(*) FILTER (WHERE status_code BETWEEN 500 AND 599) AS status_5xx,
		count(*) FILTER (WHERE error_type = 'timeout' OR status_code IN (408, 504)) AS timeouts,
		sum(input_tokens) AS input_tokens,
		sum(output_tokens) AS output_tokens,
		sum(cached_tokens) AS cached_tokens,
		sum(cost_usd) AS cost_usd,
		max(latency_ms) AS latency_max
	FROM request_logs
	WHERE ts >= $1 AND ts < $2
	GROUP BY 1, 2, 3, 4
)
SELECT tenant, provider, model,
	sum(requests)::bigint, sum(successes)::bigint, sum(status_4xx)::bigint,
	sum(status_5xx)::bigint, sum(timeouts)::bigint,
	sum(input_tokens)::bigint, sum(output_tokens)::bigint, sum(cached_tokens)::bigint,
	sum(cost_usd)::text,
	max(latency_max),
	coalesce(array_agg(api_key) FILTER (WHERE api_key <> ''), '{}')
FROM k
GROUP BY 1, 2, 3`

// dailyPlanSettings make the totals hash-aggregate in memory. The planner
// overestimates the (group, api key) combinations by orders of magnitude
// (500,000 estimated, 2,300 real on a 5 M-row day) and would otherwise sort
// the whole day on disk, several times slower (measured). A hash aggregate
// that does outgrow work_mem spills to disk, so forcing it is safe.
var dailyPlanSettings = []string{"SET LOCAL work_mem = '64MB'", "SET LOCAL enable_sort = off"}

// dailyLatencySQL streams a day's latencies for the sketches and sums.
const dailyLatencySQL = `SELECT tenant, provider, model, latency_ms FROM request_logs WHERE ts >= $1 AND ts < $2`

// dailyProgressEvery is how many streamed rows pass between progress calls.
const dailyProgressEvery = 200_000

// AggregateDay computes the daily_stats rows of the UTC day holding day
// from its raw rows. Both passes (exact sums in SQL; latency sketches and
// sums from a stream of the rows) read one snapshot, so late events arriving
// meanwhile count in neither or both. progress is called with the rows
// streamed so far, for heartbeats.
func AggregateDay(ctx context.Context, d *DB, day time.Time, progress func(rows int64)) ([]DailyStat, error) {
	from := TruncateDay(day)
	to := from.AddDate(0, 0, 1)
	tx, err := d.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, MapError(fmt.Errorf("begin daily snapshot: %w", err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, set := range dailyPlanSettings {
		if _, err := tx.Exec(ctx, set); err != nil {
			return nil, MapError(fmt.Errorf("daily plan settings: %w", err))
		}
	}

	stats, err := dailyTotals(ctx, tx, from, to)
	if err != nil || len(stats) == 0 {
		return stats, err
	}
	latencies, err := dailyLatencies(ctx, tx, from, to, progress)
	if err != nil {
		return nil, err
	}
	for i := range stats {
		s := &stats[i]
		l := latencies[groupKey(s.Tenant, s.Provider, s.Model)]
		if l == nil {
			return nil, fmt.Errorf("daily %s: group %q/%q/%q has no latencies", from.Format(time.DateOnly), s.Tenant, s.Provider, s.Model)
		}
		s.LatencyAvg = l.sum.value() / float64(s.Requests)
		s.LatencyP50, _ = SketchQuantile(l.sketch, 0.5)
		s.LatencyP95, _ = SketchQuantile(l.sketch, 0.95)
		s.LatencyP99, _ = SketchQuantile(l.sketch, 0.99)
		s.LatencySketch = EncodeSketch(l.sketch)
	}
	rankModels(stats)
	return stats, nil
}

func dailyTotals(ctx context.Context, tx pgx.Tx, from, to time.Time) ([]DailyStat, error) {
	rows, err := tx.Query(ctx, dailyTotalsSQL, from, to)
	if err != nil {
		return nil, MapError(fmt.Errorf("daily totals: %w", err))
	}
	stats, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DailyStat, error) {
		s := DailyStat{Day: from}
		err := r.Scan(&s.Tenant, &s.Provider, &s.Model, &s.Requests, &s.Successes, &s.Status4xx,
			&s.Status5xx, &s.Timeouts, &s.InputTokens, &s.OutputTokens, &s.CachedTokens, &s.CostUSD,
			&s.LatencyMax, &s.APIKeys)
		slices.Sort(s.APIKeys)
		s.DistinctKeys = len(s.APIKeys)
		return s, err
	})
	if err != nil {
		return nil, MapError(fmt.Errorf("daily totals: %w", err))
	}
	return stats, nil
}

// groupLatencies are one group's latencies: their sketch and exact sum.
type groupLatencies struct {
	sketch *ddsketch.DDSketch
	sum    exactSum
}

// dailyLatencies streams the day's latencies into one sketch and sum per
// group. Raw values are read without per-row allocations: the group key is
// looked up with a reused buffer, which is what makes millions of rows
// cheap.
func dailyLatencies(ctx context.Context, tx pgx.Tx, from, to time.Time, progress func(int64)) (map[string]*groupLatencies, error) {
	rows, err := tx.Query(ctx, dailyLatencySQL, from, to)
	if err != nil {
		return nil, MapError(fmt.Errorf("daily latencies: %w", err))
	}
	defer rows.Close()
	groups := make(map[string]*groupLatencies)
	var key []byte
	var n int64
	binaryLatency := rows.FieldDescriptions()[3].Format == pgtype.BinaryFormatCode
	for rows.Next() {
		raw := rows.RawValues()
		key = appendGroupKey(key[:0], raw[0], raw[1], raw[2])
		g := groups[string(key)]
		if g == nil {
			g = &groupLatencies{sketch: NewLatencySketch()}
			groups[string(key)] = g
		}
		v, err := rawFloat8(raw[3], binaryLatency)
		if err != nil {
			return nil, err
		}
		AddToSketch(g.sketch, v)
		g.sum.add(v)
		if n++; n%dailyProgressEvery == 0 && progress != nil {
			progress(n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, MapError(fmt.Errorf("daily latencies: %w", err))
	}
	return groups, nil
}

// exactSum adds float64s without rounding error (Shewchuk's algorithm, as
// in Python's math.fsum): partials holds non-overlapping values whose sum is
// exactly the sum of everything added, and value rounds it once. The result
// is the correctly rounded sum, so it does not depend on the order of the
// adds, which a streamed scan does not guarantee.
type exactSum struct{ partials []float64 }

func (s *exactSum) add(x float64) {
	i := 0
	for _, y := range s.partials {
		if math.Abs(x) < math.Abs(y) {
			x, y = y, x
		}
		hi := x + y
		lo := y - (hi - x)
		if lo != 0 {
			s.partials[i] = lo
			i++
		}
		x = hi
	}
	s.partials = append(s.partials[:i], x)
}

func (s *exactSum) value() float64 {
	p := s.partials
	n := len(p)
	if n == 0 {
		return 0
	}
	n--
	hi, lo := p[n], 0.0
	for n > 0 {
		x, y := hi, p[n-1]
		n--
		hi = x + y
		lo = y - (hi - x)
		if lo != 0 {
			break
		}
	}
	// Round half to even across the partials left: when the next partial
	// has lo's sign, hi+2*lo decides which neighbour is nearer.
	if n > 0 && (lo < 0 && p[n-1] < 0 || lo > 0 && p[n-1] > 0) {
		y := lo * 2
		if x := hi + y; y == x-hi {
			hi = x
		}
	}
	return hi
}

func rawFloat8(b []byte, binaryFormat bool) (float64, error) {
	if binaryFormat {
		if len(b) != 8 {
			return 0, fmt.Errorf("latency_ms: %d bytes, want 8", len(b))
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, fmt.Errorf("latency_ms: %w", err)
	}
	return v, nil
}

// groupKey and appendGroupKey join a group's names with NUL, which no text
// value holds.
func groupKey(tenant, provider, model string) string {
	return string(appendGroupKey(nil, []byte(tenant), []byte(provider), []byte(model)))
}

func appendGroupKey(dst, tenant, provider, model []byte) []byte {
	dst = append(dst, tenant...)
	dst = append(dst, 0)
	dst = append(dst, provider...)
	dst = append(dst, 0)
	return append(dst, model...)
}

// rankModels numbers each tenant's models by requests (ties: provider,
// model), so top models per tenant are rows with a small model_rank.
func rankModels(stats []DailyStat) {
	slices.SortFunc(stats, func(a, b DailyStat) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(b.Requests, a.Requests),
			cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Model, b.Model))
	})
	for i := range stats {
		if i > 0 && stats[i].Tenant == stats[i-1].Tenant {
			stats[i].ModelRank = stats[i-1].ModelRank + 1
		} else {
			stats[i].ModelRank = 1
		}
	}
}

// ReplaceDailyStats replaces every row of day with rows in one transaction,
// so re-running a day leaves exactly its new rows and readers never see a
// half-written day.
func ReplaceDailyStats(ctx context.Context, d *DB, day time.Time, rows []DailyStat) error {
	err := d.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// Two runs replacing the same day (a backfill child next to the
		// scheduled run) take turns instead of colliding on the key.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('opsflow_daily_stats'), ?::int)",
			TruncateDay(day).Unix()/86400); err != nil {
			return err
		}
		if _, err := tx.NewDelete().Model((*DailyStat)(nil)).Where("day = ?::date", TruncateDay(day)).Exec(ctx); err != nil {
			return err
		}
		for chunk := range slices.Chunk(rows, insertChunk) {
			if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replace daily stats of %s: %w", day.Format(time.DateOnly), MapError(err))
	}
	return nil
}

// DailyFilter selects daily_stats rows: days From..To inclusive, and the
// optional names.
type DailyFilter struct {
	From, To                time.Time
	Tenant, Provider, Model string
}

// ListDailyStats returns the matching rows ordered by day and group.
func ListDailyStats(ctx context.Context, idb bun.IDB, f DailyFilter) ([]DailyStat, error) {
	var out []DailyStat
	q := idb.NewSelect().Model(&out).
		Where("day BETWEEN ?::date AND ?::date", TruncateDay(f.From), TruncateDay(f.To)).
		Order("day", "tenant", "provider", "model")
	for _, eq := range [][2]string{{"tenant", f.Tenant}, {"provider", f.Provider}, {"model", f.Model}} {
		if eq[1] != "" {
			q = q.Where("? = ?", bun.Ident(eq[0]), eq[1])
		}
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("list daily stats: %w", MapError(err))
	}
	return out, nil
}

// TruncateDay returns the UTC midnight starting t's UTC day.
func TruncateDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
