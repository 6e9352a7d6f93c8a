package db

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// ErrorGroup is one status x error type x message with its failures.
type ErrorGroup struct {
	StatusCode   int16  `bun:"status_code" json:"status_code"`
	ErrorType    string `bun:"error_type" json:"error_type"`
	ErrorMessage string `bun:"error_message" json:"error_message"`
	Requests     int64  `bun:"requests" json:"requests"`
	// Total is every failure in the window, the groups left out included.
	Total int64 `bun:"total" json:"-"`
}

// DashboardErrors returns the limit most frequent failure groups of
// [from, to), most frequent first, and the window's total failures. Messages
// are compared on their first 200 characters, as the error rollups keep
// them. Without an api_key filter it reads rollup_errors_hour for whole
// hours and rollup_errors_minute for the edges; with one, the raw rows.
func DashboardErrors(ctx context.Context, idb bun.IDB, from, to time.Time, f DashboardFilter, limit int) ([]ErrorGroup, int64, error) {
	if !from.Before(to) {
		return nil, 0, nil
	}
	var b sqlBuilder
	b.add(`SELECT status_code, error_type, error_message, sum(requests)::bigint AS requests,
		(sum(sum(requests)) OVER ())::bigint AS total FROM (`)
	if len(f.APIKeys) > 0 {
		b.add(`SELECT r.status_code, coalesce(r.error_type, '') AS error_type,
			left(coalesce(r.error_message, ''), ?) AS error_message, 1 AS requests
			FROM request_logs r WHERE r.ts >= ? AND r.ts < ? AND `+FailureSQL, errorMessageBound, from, to)
		f.where(&b, "r.")
	} else {
		errorRollupParts(&b, from, to, f)
	}
	b.add(`) AS s GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT ?`, limit)
	var out []ErrorGroup
	scan := func() error { return idb.NewRaw(b.sql.String(), b.args...).Scan(ctx, &out) }
	if len(f.APIKeys) == 0 {
		scan = func() error { return scanSerial(ctx, idb, &out, b.sql.String(), b.args...) }
	}
	if err := scan(); err != nil {
		return nil, 0, fmt.Errorf("dashboard errors: %w", MapError(err))
	}
	var total int64
	if len(out) > 0 {
		total = out[0].Total
	}
	return out, total, nil
}

func errorRollupParts(b *sqlBuilder, from, to time.Time, f DashboardFilter) {
	const cols = `SELECT status_code, error_type, error_message, requests FROM `
	minutes := func(lo, hi time.Time) {
		b.add(cols+`rollup_errors_minute WHERE minute >= ? AND minute < ?`, lo, hi)
		f.where(b, "")
	}
	hourFrom, hourTo := ceilHour(from), to.Truncate(time.Hour)
	if !hourFrom.Before(hourTo) {
		minutes(from, to)
		return
	}
	minutes(from, hourFrom)
	b.add(` UNION ALL `+cols+`rollup_errors_hour WHERE grain = ? AND hour >= ? AND hour < ?`, f.grain(), hourFrom, hourTo)
	f.where(b, "")
	b.add(` UNION ALL `)
	minutes(hourTo, to)
}

// ErrorLogQuery selects failed raw requests for the errors drill-down.
type ErrorLogQuery struct {
	From, To time.Time
	Filter   DashboardFilter
	// StatusCode, ErrorType and ErrorMessage narrow to one error group; an
	// empty ErrorType or ErrorMessage matches rows without one.
	StatusCode   *int16
	ErrorType    *string
	ErrorMessage *string
	// After continues a listing: rows strictly older than this position.
	After *LogPosition
	Limit int
}

// LogPosition is a raw row's place in newest-first order. ts decides the
// partition, and ctid is unique within one, so (ts, ctid) is unique; request
// logs are never updated, so a ctid stays put.
type LogPosition struct {
	TS   time.Time
	CTID string
}

// ErrorLog is one failed raw request.
type ErrorLog struct {
	CTID            string    `bun:"row_ctid" json:"-"`
	TS              time.Time `bun:"ts" json:"ts"`
	RequestID       string    `bun:"request_id" json:"request_id,omitempty"`
	Tenant          string    `bun:"tenant" json:"tenant"`
	APIKey          string    `bun:"api_key" json:"api_key"`
	UpstreamAccount string    `bun:"upstream_account" json:"upstream_account,omitempty"`
	Provider        string    `bun:"provider" json:"provider"`
	Model           string    `bun:"model" json:"model"`
	Endpoint        string    `bun:"endpoint" json:"endpoint,omitempty"`
	StatusCode      int16     `bun:"status_code" json:"status_code"`
	LatencyMs       float64   `bun:"latency_ms" json:"latency_ms"`
	TTFTMs          *float64  `bun:"ttft_ms" json:"ttft_ms,omitempty"`
	InputTokens     int64     `bun:"input_tokens" json:"input_tokens"`
	OutputTokens    int64     `bun:"output_tokens" json:"output_tokens"`
	CachedTokens    int64     `bun:"cached_tokens" json:"cached_tokens"`
	CostUSD         string    `bun:"cost_usd" json:"cost_usd"`
	Stream          bool      `bun:"stream" json:"stream"`
	ErrorType       string    `bun:"error_type" json:"error_type,omitempty"`
	ErrorMessage    string    `bun:"error_message" json:"error_message,omitempty"`
	ClientIP        string    `bun:"client_ip" json:"client_ip,omitempty"`
}

// Position is the row's place for continuing after it.
func (l *ErrorLog) Position() LogPosition { return LogPosition{TS: l.TS, CTID: l.CTID} }

// ListErrorLogs returns failed raw requests matching q, newest first, and
// whether more follow. It walks the ts index backwards, so a page costs
// about its own rows however large the window.
func ListErrorLogs(ctx context.Context, idb bun.IDB, q ErrorLogQuery) ([]ErrorLog, bool, error) {
	var b sqlBuilder
	b.add(`SELECT r.ctid::text AS row_ctid, r.ts, coalesce(r.request_id, '') AS request_id, r.tenant, r.api_key,
		coalesce(r.upstream_account, '') AS upstream_account, r.provider, r.model,
		coalesce(r.endpoint, '') AS endpoint, r.status_code, r.latency_ms, r.ttft_ms,
		r.input_tokens, r.output_tokens, r.cached_tokens, r.cost_usd::text AS cost_usd, r.stream,
		coalesce(r.error_type, '') AS error_type, coalesce(r.error_message, '') AS error_message,
		coalesce(host(r.client_ip), '') AS client_ip
		FROM request_logs r WHERE r.ts >= ? AND r.ts < ? AND `+FailureSQL, q.From, q.To)
	q.Filter.where(&b, "r.")
	if q.StatusCode != nil {
		b.add(` AND r.status_code = ?`, *q.StatusCode)
	}
	if q.ErrorType != nil {
		b.add(` AND coalesce(r.error_type, '') = ?`, *q.ErrorType)
	}
	if q.ErrorMessage != nil {
		b.add(` AND left(coalesce(r.error_message, ''), ?) = ?`, errorMessageBound, *q.ErrorMessage)
	}
	if q.After != nil {
		b.add(` AND (r.ts, r.ctid) < (?, ?::tid)`, q.After.TS, q.After.CTID)
	}
	b.add(` ORDER BY r.ts DESC, r.ctid DESC LIMIT ?`, q.Limit+1)
	var out []ErrorLog
	if err := idb.NewRaw(b.sql.String(), b.args...).Scan(ctx, &out); err != nil {
		return nil, false, fmt.Errorf("list error logs: %w", MapError(err))
	}
	for i := range out {
		out[i].TS = out[i].TS.UTC()
	}
	if len(out) > q.Limit {
		return out[:q.Limit], true, nil
	}
	return out, false, nil
}

// SystemPoint is one process's vital signs over one step: gauges at their
// highest, CPU as the average cores used.
type SystemPoint struct {
	Bucket             time.Time `bun:"bucket" json:"ts"`
	Instance           string    `bun:"instance" json:"instance"`
	CPUCores           *float64  `bun:"cpu_cores" json:"cpu_cores"`
	RSSBytes           int64     `bun:"rss_bytes" json:"rss_bytes"`
	HeapBytes          int64     `bun:"heap_bytes" json:"heap_bytes"`
	Goroutines         int       `bun:"goroutines" json:"goroutines"`
	DBConnsTotal       int       `bun:"db_conns_total" json:"db_conns_total"`
	DBConnsInUse       int       `bun:"db_conns_in_use" json:"db_conns_in_use"`
	DBConnsIdle        int       `bun:"db_conns_idle" json:"db_conns_idle"`
	IngestQueueBatches int64     `bun:"ingest_queue_batches" json:"ingest_queue_batches"`
	IngestQueueEvents  int64     `bun:"ingest_queue_events" json:"ingest_queue_events"`
}

// SystemMetrics reads process_metrics of [from, to) per instance and step.
// cpu_seconds is a counter, so CPU is its rate between consecutive
// snapshots; a drop (the process restarted) gives no rate for that minute.
func SystemMetrics(ctx context.Context, idb bun.IDB, from, to time.Time, step time.Duration) ([]SystemPoint, error) {
	var out []SystemPoint
	err := idb.NewRaw(`SELECT date_bin(?::interval, minute, 'epoch'::timestamptz) AS bucket, instance,
		avg(cpu_rate) AS cpu_cores, max(rss_bytes) AS rss_bytes, max(heap_bytes) AS heap_bytes,
		max(goroutines) AS goroutines, max(db_conns_total) AS db_conns_total,
		max(db_conns_in_use) AS db_conns_in_use, max(db_conns_idle) AS db_conns_idle,
		max(ingest_queue_batches) AS ingest_queue_batches, max(ingest_queue_events) AS ingest_queue_events
		FROM (SELECT *, CASE WHEN cpu_seconds >= lag(cpu_seconds) OVER w
				THEN (cpu_seconds - lag(cpu_seconds) OVER w) / extract(epoch FROM minute - lag(minute) OVER w)
			END AS cpu_rate
			FROM process_metrics WHERE minute >= ? AND minute < ?
			WINDOW w AS (PARTITION BY instance ORDER BY minute)) AS p
		WHERE minute >= ?
		GROUP BY 1, 2 ORDER BY 2, 1`,
		intervalArg(step), from.Add(-time.Minute), to, from).Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("system metrics: %w", MapError(err))
	}
	for i := range out {
		out[i].Bucket = out[i].Bucket.UTC()
	}
	return out, nil
}
