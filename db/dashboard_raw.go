package db

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/uptrace/bun"
)

// ErrQueryTimeout is the kind of a raw-row dashboard read that ran past its
// time bound (DashboardQuery.RawTimeout, RawRead's timeout).
var ErrQueryTimeout = errors.New("query timed out")

// rawDashboard answers a query that must read request_logs (an api_key
// filter or breakdown). Its memory is bounded by the number of groups, not
// rows: the counters are aggregated in SQL, and the latency and TTFT
// sketches are built by streaming the matching rows' (bucket, key,
// latency_ms, ttft_ms) into one pair of sketches per group, so neither
// PostgreSQL nor this process ever holds a window's latencies. Both reads see
// one snapshot (REPEATABLE READ), so rows arriving meanwhile count in
// neither or both, and share q.RawTimeout.
func rawDashboard(ctx context.Context, d *DB, q DashboardQuery) ([]DashboardStats, error) {
	r, err := beginRawRead(ctx, d, q.RawTimeout)
	if err != nil {
		return nil, err
	}
	defer r.close(ctx)

	var b sqlBuilder
	rawCounters(&b, q)
	out, err := r.counters(ctx, d.Bun.QueryGen().FormatQuery(b.sql.String(), b.args...))
	if err != nil || len(out) == 0 || !q.Sketches {
		return out, err
	}
	b = sqlBuilder{}
	rawLatencies(&b, q)
	groups, err := r.latencies(ctx, d.Bun.QueryGen().FormatQuery(b.sql.String(), b.args...), q)
	if err != nil {
		return nil, err
	}
	var key []byte
	for i := range out {
		s := &out[i]
		key = appendRawGroupKey(key[:0], s.Bucket.UnixMicro(), []byte(s.Key))
		g := groups[string(key)]
		if g == nil {
			return nil, fmt.Errorf("dashboard aggregate: group %s/%q has no latencies", s.Bucket.Format(time.RFC3339), s.Key)
		}
		s.Latency, s.TTFT = g.latency, g.ttft
	}
	return out, nil
}

// rawCounters builds the counters query, with the same definitions as the
// rollups: the rows are summed per (bucket, key, minute) in one scan, then
// per (bucket, key), the busiest minute giving the peak.
func rawCounters(b *sqlBuilder, q DashboardQuery) {
	b.add(`SELECT bucket, key, sum(n)::bigint AS requests, sum(successes)::bigint AS successes,
	sum(status_4xx)::bigint AS status_4xx, sum(status_5xx)::bigint AS status_5xx, sum(timeouts)::bigint AS timeouts,
	sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens,
	sum(cached_tokens)::bigint AS cached_tokens, sum(cost_usd)::text AS cost_usd,
	sum(latency_sum) AS latency_sum, max(latency_max) AS latency_max,
	sum(ttft_count)::bigint AS ttft_count, coalesce(sum(ttft_sum), 0) AS ttft_sum, coalesce(max(ttft_max), 0) AS ttft_max,
	max(n) AS peak_requests
FROM (SELECT `)
	bucketSQL(b, q, "r.ts")
	b.add(` AS bucket, `+keySQL(q, "r.")+` AS key,
	count(*) AS n,
	count(*) FILTER (WHERE `+rawSuccessSQL+`) AS successes,
	count(*) FILTER (WHERE r.status_code BETWEEN 400 AND 499) AS status_4xx,
	count(*) FILTER (WHERE r.status_code BETWEEN 500 AND 599) AS status_5xx,
	count(*) FILTER (WHERE r.error_type = 'timeout' OR r.status_code IN (408, 504)) AS timeouts,
	sum(r.input_tokens) AS input_tokens, sum(r.output_tokens) AS output_tokens,
	sum(r.cached_tokens) AS cached_tokens, sum(r.cost_usd) AS cost_usd,
	sum(r.latency_ms) AS latency_sum, max(r.latency_ms) AS latency_max,
	count(r.ttft_ms) AS ttft_count, sum(r.ttft_ms) AS ttft_sum, max(r.ttft_ms) AS ttft_max
	FROM request_logs r WHERE r.ts >= ? AND r.ts < ?`, q.From, q.To)
	q.Filter.where(b, "r.")
	b.add(` GROUP BY 1, 2, date_trunc('minute', r.ts)) AS m GROUP BY 1, 2 ORDER BY 1, 2`)
}

// rawLatencies builds the stream of the matching rows' latencies: the
// bucket (when the query has steps), the key (when it has a breakdown),
// latency_ms and ttft_ms.
func rawLatencies(b *sqlBuilder, q DashboardQuery) {
	b.add("SELECT ")
	if q.Step > 0 {
		bucketSQL(b, q, "r.ts")
		b.add(" AS bucket, ")
	}
	if q.By != "" {
		b.add(keySQL(q, "r.") + " AS key, ")
	}
	b.add("r.latency_ms, r.ttft_ms FROM request_logs r WHERE r.ts >= ? AND r.ts < ?", q.From, q.To)
	q.Filter.where(b, "r.")
}

// rawRead is a read-only REPEATABLE READ transaction on one pooled
// connection whose statements share a time budget.
type rawRead struct {
	tx pgx.Tx
	// deadline ends the budget; zero means none.
	deadline time.Time
}

func beginRawRead(ctx context.Context, d *DB, timeout time.Duration) (*rawRead, error) {
	tx, err := d.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, MapError(fmt.Errorf("begin dashboard snapshot: %w", err))
	}
	r := &rawRead{tx: tx}
	if timeout > 0 {
		r.deadline = time.Now().Add(timeout)
	}
	return r, nil
}

func (r *rawRead) close(ctx context.Context) { _ = r.tx.Rollback(context.WithoutCancel(ctx)) }

// arm gives the next statement what is left of the budget as its
// statement_timeout.
func (r *rawRead) arm(ctx context.Context, what string) error {
	if r.deadline.IsZero() {
		return nil
	}
	left := time.Until(r.deadline)
	if left <= 0 {
		return &Error{Kind: ErrQueryTimeout, Err: fmt.Errorf("%s: time budget spent", what)}
	}
	if _, err := r.tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true)", timeoutSetting(left)); err != nil {
		return r.fail(ctx, what, err)
	}
	return nil
}

// fail classifies err; a statement timeout under a budget is ErrQueryTimeout.
func (r *rawRead) fail(ctx context.Context, what string, err error) error {
	if !r.deadline.IsZero() {
		if te := asStatementTimeout(ctx, err); te != nil {
			return te
		}
	}
	return MapError(fmt.Errorf("%s: %w", what, err))
}

func (r *rawRead) counters(ctx context.Context, query string) ([]DashboardStats, error) {
	const what = "dashboard aggregate"
	if err := r.arm(ctx, what); err != nil {
		return nil, err
	}
	rows, err := r.tx.Query(ctx, query)
	if err != nil {
		return nil, r.fail(ctx, what, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DashboardStats, error) {
		var s DashboardStats
		err := row.Scan(&s.Bucket, &s.Key, &s.Requests, &s.Successes, &s.Status4xx, &s.Status5xx, &s.Timeouts,
			&s.InputTokens, &s.OutputTokens, &s.CachedTokens, &s.CostUSD, &s.LatencySum, &s.LatencyMax,
			&s.TTFTCount, &s.TTFTSum, &s.TTFTMax, &s.PeakRequests)
		s.Bucket = s.Bucket.UTC()
		return s, err
	})
	if err != nil {
		return nil, r.fail(ctx, what, err)
	}
	return out, nil
}

// rawGroupSketches are one group's streamed sketches.
type rawGroupSketches struct {
	latency, ttft *ddsketch.DDSketch
}

// latencies streams the query built by rawLatencies into one pair of
// sketches per (bucket, key), keyed by appendRawGroupKey. Rows are read as
// raw values with a reused key buffer, without per-row allocations.
func (r *rawRead) latencies(ctx context.Context, query string, q DashboardQuery) (map[string]*rawGroupSketches, error) {
	const what = "dashboard latencies"
	if err := r.arm(ctx, what); err != nil {
		return nil, err
	}
	rows, err := r.tx.Query(ctx, query)
	if err != nil {
		return nil, r.fail(ctx, what, err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	typeMap := r.tx.Conn().TypeMap()
	col := 0
	bucketCol, keyCol := -1, -1
	if q.Step > 0 {
		bucketCol, col = col, col+1
	}
	if q.By != "" {
		keyCol, col = col, col+1
	}
	latCol, ttftCol := col, col+1
	binaryLatency := fields[latCol].Format == pgtype.BinaryFormatCode
	binaryTTFT := fields[ttftCol].Format == pgtype.BinaryFormatCode

	groups := make(map[string]*rawGroupSketches)
	var key []byte
	bucket := q.From.UnixMicro()
	for rows.Next() {
		raw := rows.RawValues()
		if bucketCol >= 0 {
			if bucket, err = rawTimestamptzMicros(typeMap, fields[bucketCol], raw[bucketCol]); err != nil {
				return nil, err
			}
		}
		var k []byte
		if keyCol >= 0 {
			k = raw[keyCol]
		}
		key = appendRawGroupKey(key[:0], bucket, k)
		g := groups[string(key)]
		if g == nil {
			g = &rawGroupSketches{latency: NewLatencySketch(), ttft: NewLatencySketch()}
			groups[string(key)] = g
		}
		v, err := rawFloat8(raw[latCol], binaryLatency)
		if err != nil {
			return nil, err
		}
		AddToSketch(g.latency, v)
		if raw[ttftCol] != nil {
			v, err := rawFloat8(raw[ttftCol], binaryTTFT)
			if err != nil {
				return nil, err
			}
			AddToSketch(g.ttft, v)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, r.fail(ctx, what, err)
	}
	return groups, nil
}

// pgEpochMicros is 2000-01-01 UTC, the origin of binary timestamps, in Unix
// microseconds.
const pgEpochMicros = 946_684_800_000_000

func rawTimestamptzMicros(m *pgtype.Map, fd pgconn.FieldDescription, b []byte) (int64, error) {
	if fd.Format == pgtype.BinaryFormatCode && len(b) == 8 {
		return int64(binary.BigEndian.Uint64(b)) + pgEpochMicros, nil
	}
	var t time.Time
	if err := m.Scan(fd.DataTypeOID, fd.Format, b, &t); err != nil {
		return 0, fmt.Errorf("bucket: %w", err)
	}
	return t.UnixMicro(), nil
}

// appendRawGroupKey identifies a (bucket, key) group: the bucket's Unix
// microseconds (8 bytes) then the key.
func appendRawGroupKey(dst []byte, bucketMicros int64, key []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(bucketMicros))
	return append(dst, key...)
}

// timeoutSetting renders d for statement_timeout (milliseconds, at least 1:
// 0 would disable it).
func timeoutSetting(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// asStatementTimeout returns an ErrQueryTimeout error when err is
// PostgreSQL cancelling a statement (57014) while ctx is still live, i.e.
// statement_timeout fired rather than the caller going away; nil otherwise.
func asStatementTimeout(ctx context.Context, err error) error {
	var pgErr *pgconn.PgError
	if ctx.Err() == nil && errors.As(err, &pgErr) && pgErr.Code == "57014" {
		return &Error{Kind: ErrQueryTimeout, Err: pgErr}
	}
	return nil
}

// RawRead runs fn, a read of raw request logs, in a read-only transaction
// whose statements PostgreSQL cancels after timeout (each; zero means no
// bound). A cancelled statement fails with ErrQueryTimeout. Dashboard
// reads other than DashboardAggregate (errors with an api_key filter) use it.
func RawRead(ctx context.Context, d *DB, timeout time.Duration, fn func(ctx context.Context, idb bun.IDB) error) error {
	if timeout <= 0 {
		return fn(ctx, d.Bun)
	}
	err := d.Bun.RunInTx(ctx, &sql.TxOptions{ReadOnly: true}, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT set_config('statement_timeout', ?, true)", timeoutSetting(timeout)); err != nil {
			return MapError(fmt.Errorf("raw read timeout: %w", err))
		}
		return fn(ctx, tx)
	})
	if te := asStatementTimeout(ctx, err); te != nil {
		return te
	}
	return err
}
