package db

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// RequestLog is one gateway request event, as stored in request_logs.
// Empty optional strings and a zero ClientIP are stored as NULL.
type RequestLog struct {
	TS              time.Time
	RequestID       string
	Tenant          string
	APIKey          string
	UpstreamAccount string
	Provider        string
	Model           string
	Endpoint        string
	StatusCode      int16
	LatencyMs       float64
	TTFTMs          *float64
	InputTokens     int64
	OutputTokens    int64
	CachedTokens    int64
	// CostUSD reaches PostgreSQL as its shortest decimal representation
	// (pgx formats it with strconv 'f', -1), so 0.0123 is stored as exactly
	// 0.0123, not as the binary float's expansion.
	CostUSD      float64
	Stream       bool
	ErrorType    string
	ErrorMessage string
	ClientIP     netip.Addr
}

var requestLogColumns = []string{
	"ts", "request_id", "tenant", "api_key", "upstream_account", "provider", "model", "endpoint",
	"status_code", "latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cached_tokens",
	"cost_usd", "stream", "error_type", "error_message", "client_ip",
}

// IngestBatch is one validated batch and the identity of its request.
type IngestBatch struct {
	// Owner is the principal that sent the batch; idempotency keys are
	// scoped by it.
	Owner string
	// IdempotencyKey is empty when the client sent none.
	IdempotencyKey string
	// RequestHash identifies the request body, so a reused key with another
	// body can be told from a retry.
	RequestHash []byte
	Logs        []RequestLog
}

// IngestResult is the answer to an ingest request. It is stored with the
// batch so that a replay under the same idempotency key returns it unchanged.
type IngestResult struct {
	Stored  int   `json:"stored"`
	BatchID int64 `json:"batch_id"`
	Minutes int   `json:"minutes"`
	// Replayed is set when the result comes from an earlier request with the
	// same idempotency key and nothing was stored this time.
	Replayed bool `json:"-"`
}

// ErrIdempotencyKeyReused reports an idempotency key already used by the same
// owner for a different request body.
var ErrIdempotencyKeyReused = errors.New("idempotency key already used for a different request")

// RequestLogStore writes request-log batches. It remembers which daily
// partitions exist so that the DDL round trip is paid once per day and
// process, not once per batch.
type RequestLogStore struct {
	db   *DB
	days sync.Map // UTC midnight as Unix seconds -> struct{}
}

// NewRequestLogStore returns a store writing through d.
func NewRequestLogStore(d *DB) *RequestLogStore {
	return &RequestLogStore{db: d}
}

// Insert stores a batch whole or not at all: its rows and its ingest_batches
// entry commit together. With an idempotency key already used by the same
// owner it stores nothing and returns the earlier result (Replayed set) if
// the request hash matches, ErrIdempotencyKeyReused if not.
func (s *RequestLogStore) Insert(ctx context.Context, b IngestBatch) (IngestResult, error) {
	if b.IdempotencyKey != "" {
		res, found, err := s.earlierResult(ctx, b)
		if err != nil || found {
			return res, err
		}
	}
	minutes := distinctMinutes(b.Logs)
	if err := s.ensurePartitions(ctx, minutes); err != nil {
		return IngestResult{}, err
	}
	res, err := s.insertTx(ctx, b, minutes)
	if isMissingPartition(err) {
		// Retention dropped a partition this process still believed in.
		s.forgetDays(minutes)
		if err := s.ensurePartitions(ctx, minutes); err != nil {
			return IngestResult{}, err
		}
		res, err = s.insertTx(ctx, b, minutes)
	}
	if errors.Is(err, ErrConflict) && b.IdempotencyKey != "" {
		// A concurrent request with the same key committed first; answer
		// as its retry would be answered.
		res, found, lookupErr := s.earlierResult(ctx, b)
		if lookupErr != nil {
			return IngestResult{}, lookupErr
		}
		if found {
			return res, nil
		}
	}
	return res, err
}

// earlierResult looks up the batch stored under b's idempotency key.
func (s *RequestLogStore) earlierResult(ctx context.Context, b IngestBatch) (IngestResult, bool, error) {
	var hash, response []byte
	err := s.db.Pool.QueryRow(ctx,
		`SELECT request_hash, response FROM ingest_batches WHERE key_owner = $1 AND idempotency_key = $2`,
		b.Owner, b.IdempotencyKey).Scan(&hash, &response)
	if errors.Is(err, pgx.ErrNoRows) {
		return IngestResult{}, false, nil
	}
	if err != nil {
		return IngestResult{}, false, MapError(fmt.Errorf("look up idempotency key: %w", err))
	}
	if !bytes.Equal(hash, b.RequestHash) {
		return IngestResult{}, true, ErrIdempotencyKeyReused
	}
	var res IngestResult
	if err := json.Unmarshal(response, &res); err != nil {
		return IngestResult{}, true, fmt.Errorf("decode stored ingest response: %w", err)
	}
	res.Replayed = true
	return res, true, nil
}

func (s *RequestLogStore) insertTx(ctx context.Context, b IngestBatch, minutes []time.Time) (IngestResult, error) {
	tx, err := s.db.Pool.Begin(ctx)
	if err != nil {
		return IngestResult{}, MapError(fmt.Errorf("begin ingest transaction: %w", err))
	}
	// A no-op after Commit. A failed rollback needs no handling: pgx closes
	// the connection, which aborts the transaction.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"request_logs"}, requestLogColumns, newRequestLogRows(b.Logs)); err != nil {
		return IngestResult{}, MapError(fmt.Errorf("copy request logs: %w", err))
	}
	// The batch id is part of the stored answer, so it is drawn first.
	var id int64
	if err := tx.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('ingest_batches', 'id'))`).Scan(&id); err != nil {
		return IngestResult{}, MapError(fmt.Errorf("draw ingest batch id: %w", err))
	}
	res := IngestResult{Stored: len(b.Logs), BatchID: id, Minutes: len(minutes)}
	response, err := json.Marshal(res)
	if err != nil {
		return IngestResult{}, fmt.Errorf("encode ingest response: %w", err)
	}
	var key *string
	if b.IdempotencyKey != "" {
		key = &b.IdempotencyKey
	}
	if _, err := tx.Exec(ctx,
		`INSERT INTO ingest_batches (id, key_owner, idempotency_key, request_hash, events, minutes, response)
		 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, b.Owner, key, b.RequestHash, len(b.Logs), minutes, response); err != nil {
		return IngestResult{}, MapError(fmt.Errorf("record ingest batch: %w", err))
	}
	if err := tx.Commit(ctx); err != nil {
		return IngestResult{}, MapError(fmt.Errorf("commit ingest batch: %w", err))
	}
	return res, nil
}

// ensurePartitions creates the daily partitions the minutes fall into. It
// runs outside the COPY transaction: partition creation is DDL that takes a
// lock on request_logs, which must not be held for the whole COPY.
func (s *RequestLogStore) ensurePartitions(ctx context.Context, minutes []time.Time) error {
	for _, day := range days(minutes) {
		if _, known := s.days.Load(day.Unix()); known {
			continue
		}
		if _, err := s.db.Pool.Exec(ctx, `SELECT opsflow_ensure_request_logs_partition($1::date)`, day); err != nil {
			return MapError(fmt.Errorf("ensure request_logs partition for %s: %w", day.Format(time.DateOnly), err))
		}
		s.days.Store(day.Unix(), struct{}{})
	}
	return nil
}

func (s *RequestLogStore) forgetDays(minutes []time.Time) {
	for _, day := range days(minutes) {
		s.days.Delete(day.Unix())
	}
}

// isMissingPartition reports a row routed to a partition that does not
// exist. request_logs has no CHECK constraints, so a check violation during
// COPY can only be partition routing.
func isMissingPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514"
}

// distinctMinutes returns the sorted UTC minutes the logs fall into; the
// collector re-rolls exactly these.
func distinctMinutes(logs []RequestLog) []time.Time {
	seen := make(map[int64]struct{})
	var out []time.Time
	for i := range logs {
		m := logs[i].TS.Truncate(time.Minute)
		if _, dup := seen[m.Unix()]; dup {
			continue
		}
		seen[m.Unix()] = struct{}{}
		out = append(out, m.UTC())
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// days returns the distinct UTC days of sorted minutes.
func days(minutes []time.Time) []time.Time {
	var out []time.Time
	for _, m := range minutes {
		d := time.Date(m.Year(), m.Month(), m.Day(), 0, 0, 0, 0, time.UTC)
		if len(out) == 0 || !out[len(out)-1].Equal(d) {
			out = append(out, d)
		}
	}
	return out
}

// requestLogRows feeds CopyFrom straight from the decoded slice, reusing one
// value slice: pgx encodes each row before asking for the next.
type requestLogRows struct {
	logs []RequestLog
	next int
	vals []any
}

func newRequestLogRows(logs []RequestLog) *requestLogRows {
	return &requestLogRows{logs: logs, vals: make([]any, len(requestLogColumns))}
}

func (r *requestLogRows) Next() bool {
	r.next++
	return r.next <= len(r.logs)
}

func (r *requestLogRows) Values() ([]any, error) {
	l := &r.logs[r.next-1]
	v := r.vals
	v[0] = l.TS
	v[1] = nullString(l.RequestID)
	v[2] = l.Tenant
	v[3] = l.APIKey
	v[4] = nullString(l.UpstreamAccount)
	v[5] = l.Provider
	v[6] = l.Model
	v[7] = nullString(l.Endpoint)
	v[8] = l.StatusCode
	v[9] = l.LatencyMs
	if l.TTFTMs != nil {
		v[10] = *l.TTFTMs
	} else {
		v[10] = nil
	}
	v[11] = l.InputTokens
	v[12] = l.OutputTokens
	v[13] = l.CachedTokens
	v[14] = l.CostUSD
	v[15] = l.Stream
	v[16] = nullString(l.ErrorType)
	v[17] = nullString(l.ErrorMessage)
	if l.ClientIP.IsValid() {
		v[18] = l.ClientIP
	} else {
		v[18] = nil
	}
	return v, nil
}

func (r *requestLogRows) Err() error { return nil }

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
