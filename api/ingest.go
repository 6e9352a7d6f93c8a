package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/opsflow/opsflow/db"
)

const (
	headerIdempotencyKey = "Idempotency-Key"
	// headerReplayed marks an answer repeated from an earlier request with
	// the same Idempotency-Key; nothing was stored this time.
	headerReplayed    = "Idempotent-Replayed"
	maxIdempotencyKey = 200
)

// ingestRequests stores a batch of gateway request events (SPEC §3) whole or
// not at all. It answers 200 with db.IngestResult, also on an idempotent
// replay (marked by the Idempotent-Replayed header).
func (s *Server) ingestRequests(c echo.Context) error {
	req := c.Request()
	key := req.Header.Get(headerIdempotencyKey)
	if !validIdempotencyKey(key) {
		s.countIngest("invalid", 0)
		return BadParam(headerIdempotencyKey, "must be at most 200 printable ASCII characters")
	}
	if req.ContentLength > s.cfg.IngestMaxBodyBytes {
		s.countIngest("too_large", 0)
		return Errorf(http.StatusRequestEntityTooLarge, "body_too_large",
			"request body exceeds %d bytes", s.cfg.IngestMaxBodyBytes)
	}
	batch, err := decodeBatch(req.Body, req.Header.Get(echo.HeaderContentType),
		req.Header.Get(echo.HeaderContentEncoding), s.ingestLimits())
	if err != nil {
		s.countRejected(err)
		return err
	}

	start := time.Now()
	res, err := s.requestLogs.Insert(req.Context(), db.IngestBatch{
		Owner: PrincipalFrom(c).ID, IdempotencyKey: key, RequestHash: batch.Hash[:], Logs: batch.Logs,
	})
	s.metrics.ingestSeconds.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, db.ErrIdempotencyKeyReused):
		s.countIngest("invalid", len(batch.Logs))
		return Errorf(http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was already used for a different batch; use a new key for new data")
	case err != nil:
		s.countIngest("failed", len(batch.Logs))
		return err
	case res.Replayed:
		s.metrics.ingestBatches.WithLabelValues("replayed").Inc()
		c.Response().Header().Set(headerReplayed, "true")
	default:
		s.metrics.ingestBatches.WithLabelValues("stored").Inc()
		s.metrics.ingestEvents.WithLabelValues("stored").Add(float64(res.Stored))
		s.realtime.record(batch.Logs)
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) ingestLimits() ingestLimits {
	now := s.now()
	return ingestLimits{
		MaxBodyBytes: s.cfg.IngestMaxBodyBytes,
		MaxEvents:    s.cfg.IngestMaxEvents,
		Oldest:       now.Add(-s.cfg.IngestMaxAge),
		Newest:       now.Add(s.cfg.IngestMaxFutureSkew),
	}
}

// countIngest records a batch that was not stored and its events.
func (s *Server) countIngest(result string, events int) {
	s.metrics.ingestBatches.WithLabelValues(result).Inc()
	if events > 0 {
		s.metrics.ingestEvents.WithLabelValues("rejected").Add(float64(events))
	}
}

// countRejected records a batch decodeBatch refused.
func (s *Server) countRejected(err error) {
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		s.countIngest("invalid", 0)
		return
	}
	if apiErr.Status == http.StatusRequestEntityTooLarge {
		s.countIngest("too_large", 0)
		return
	}
	events := 0
	if d, ok := apiErr.Details.(invalidEventsDetails); ok {
		events = d.Events
	}
	s.countIngest("invalid", events)
}

// validIdempotencyKey accepts an absent key or up to 200 printable ASCII
// characters, the shape the key is echoed and stored in.
func validIdempotencyKey(k string) bool {
	if len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}
