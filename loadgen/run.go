package loadgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// IngestPath is the opsflow endpoint Run posts to.
const IngestPath = "/api/v1/ingest/requests"

const (
	// maxBatchInterval keeps dashboards live at low rates: batches go out at
	// least this often, smaller than BatchSize if need be.
	maxBatchInterval = time.Second
	// maxLag is how far behind schedule Run may fall (a slow or failing
	// server) before it forgets the backlog instead of bursting to catch up.
	maxLag       = 10 * time.Second
	maxAttempts  = 8
	firstBackoff = 250 * time.Millisecond
	maxBackoff   = 8 * time.Second
	progressLog  = 30 * time.Second
	// drainGrace is how long a batch in flight when the run is cancelled may
	// still take: cutting it off would lose it and make the server log an
	// aborted request.
	drainGrace = 5 * time.Second
)

// RunOptions configure Run.
type RunOptions struct {
	// URL is the base of the opsflow API, e.g. http://127.0.0.1:8080.
	URL string
	// Key is an API key with the ingest scope.
	Key string
	// Rate is the target in events per second.
	Rate float64
	// BatchSize caps the events per request (default 100).
	BatchSize int
	// Duration bounds the run; 0 runs until ctx ends.
	Duration time.Duration
	// Client defaults to one with a 30 s timeout.
	Client *http.Client
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// Stats count what a run delivered.
type Stats struct {
	Batches int64
	// Sent counts events in every batch attempted.
	Sent int64
	// Stored counts events the server confirmed stored.
	Stored int64
	// Failed counts events whose delivery was never confirmed.
	Failed  int64
	Retries int64
}

// ErrKeyRejected reports a key the server refuses (401/403): retrying is
// pointless, so Run stops.
var ErrKeyRejected = errors.New("API key rejected")

// Run sends the generator's traffic to opsflow at opts.Rate until
// opts.Duration has passed or ctx ends, which counts as a clean stop. Each
// batch is gzip JSON with its own Idempotency-Key, kept across retries, so a
// retried batch is stored once.
func (g *Generator) Run(ctx context.Context, opts RunOptions) (Stats, error) {
	if err := opts.normalize(); err != nil {
		return Stats{}, err
	}
	runID, err := newRunID()
	if err != nil {
		return Stats{}, err
	}
	s := &sender{opts: opts, endpoint: strings.TrimRight(opts.URL, "/") + IngestPath}
	var deadline time.Time
	if opts.Duration > 0 {
		deadline = time.Now().Add(opts.Duration)
	}
	p := newPacer(opts.Rate, opts.BatchSize, time.Now())
	lastLog := time.Now()
	for seq := 1; ; seq++ {
		n, at := p.next(time.Now())
		if !deadline.IsZero() && at.After(deadline) || !sleepUntil(ctx, at) {
			return s.stats, nil
		}
		batch := g.Batch(n, time.Now())
		if err := s.deliver(ctx, fmt.Sprintf("loadgen-%s-%d", runID, seq), batch); err != nil {
			if errors.Is(err, ErrKeyRejected) {
				return s.stats, err
			}
			if ctx.Err() != nil {
				return s.stats, nil
			}
			opts.Log.Warn("loadgen batch failed", slog.Int("events", n), slog.Any("err", err))
		}
		if time.Since(lastLog) >= progressLog {
			lastLog = time.Now()
			opts.Log.Info("loadgen progress", slog.Int64("sent", s.stats.Sent),
				slog.Int64("stored", s.stats.Stored), slog.Int64("failed", s.stats.Failed))
		}
	}
}

func (o *RunOptions) normalize() error {
	if o.URL == "" {
		return errors.New("loadgen: no URL")
	}
	if o.Rate <= 0 {
		return fmt.Errorf("loadgen: rate must be positive, got %v", o.Rate)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return nil
}

// newRunID makes idempotency keys unique across runs, even with the same
// seed: a reused key would make the server replay an old answer.
func newRunID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("loadgen run id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// pacer schedules batches so the average rate holds whatever sending costs.
type pacer struct {
	rate  float64
	size  int
	start time.Time
	due   int64 // events scheduled since start
}

func newPacer(rate float64, batchSize int, now time.Time) *pacer {
	size := min(batchSize, max(1, int(rate*maxBatchInterval.Seconds())))
	return &pacer{rate: rate, size: size, start: now}
}

// next returns the next batch's size and when it is due.
func (p *pacer) next(now time.Time) (int, time.Time) {
	at := p.dueAt(p.due + int64(p.size))
	if now.Sub(at) > maxLag {
		p.start, p.due = now, 0
		at = p.dueAt(int64(p.size))
	}
	p.due += int64(p.size)
	return p.size, at
}

func (p *pacer) dueAt(events int64) time.Time {
	return p.start.Add(time.Duration(float64(events) / p.rate * float64(time.Second)))
}

// sleepUntil waits for t and reports false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	return sleep(ctx, time.Until(t))
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

type sender struct {
	opts     RunOptions
	endpoint string
	stats    Stats
}

// deliver posts one batch, retrying transient failures with the same
// idempotency key, and books the outcome in the stats.
func (s *sender) deliver(ctx context.Context, key string, batch []Event) error {
	s.stats.Batches++
	s.stats.Sent += int64(len(batch))
	body, err := gzipJSON(batch)
	if err != nil {
		s.stats.Failed += int64(len(batch))
		return err
	}
	postCtx, cancel := drainContext(ctx, drainGrace)
	defer cancel()
	for attempt := 1; ; attempt++ {
		stored, err := s.post(postCtx, key, body)
		if err == nil {
			s.stats.Stored += int64(stored)
			return nil
		}
		var te transientError
		if !errors.As(err, &te) || attempt == maxAttempts || !sleep(ctx, backoff(attempt)) {
			s.stats.Failed += int64(len(batch))
			return err
		}
		s.stats.Retries++
		s.opts.Log.Debug("loadgen retrying batch", slog.String("idempotency_key", key),
			slog.Int("attempt", attempt), slog.Any("err", err))
	}
}

// drainContext follows ctx but ends only grace after it: a request in flight
// may finish, while retries (which wait on ctx) stop at once.
func drainContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return dctx, func() {
		stop()
		cancel()
	}
}

// transientError marks failures worth retrying: network errors, 429, 5xx.
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

func (s *sender) post(ctx context.Context, key string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build ingest request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.opts.Key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Idempotency-Key", key)
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, transientError{fmt.Errorf("post batch: %w", err)}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, transientError{fmt.Errorf("read ingest answer: %w", err)}
	}
	return storedCount(resp.StatusCode, answer)
}

// storedCount interprets the ingest answer.
func storedCount(status int, answer []byte) (int, error) {
	failure := fmt.Errorf("ingest answered %d: %s", status, bytes.TrimSpace(answer))
	switch {
	case status == http.StatusOK:
		var res struct {
			Stored int `json:"stored"`
		}
		if err := json.Unmarshal(answer, &res); err != nil {
			return 0, fmt.Errorf("decode ingest answer: %w", err)
		}
		return res.Stored, nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return 0, fmt.Errorf("%w: %w", ErrKeyRejected, failure)
	case status == http.StatusTooManyRequests || status >= 500:
		return 0, transientError{failure}
	default:
		return 0, failure
	}
}

// backoff doubles from firstBackoff up to maxBackoff, with jitter so many
// senders do not retry in step.
func backoff(attempt int) time.Duration {
	d := min(firstBackoff<<(attempt-1), maxBackoff)
	return d/2 + mrand.N(d/2)
}

func gzipJSON(batch []Event) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(batch); err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress batch: %w", err)
	}
	return buf.Bytes(), nil
}
