package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/opsflow/opsflow/db"
)

// realtimeWindow is how many past seconds the hub remembers.
const realtimeWindow = 60

// realtimeHub counts what this process's ingest endpoint stored, per wall
// second, for the realtime stream. Fed from the ingest path, it costs the
// database nothing; each API replica sees only its own share of the
// traffic. Counts are by arrival, not by event timestamp: the stream shows
// the load opsflow is taking now.
type realtimeHub struct {
	mu   sync.Mutex
	secs [realtimeWindow]realtimeSecond

	maxSubscribers int64
	subscribers    atomic.Int64
	// done is closed when the HTTP server shuts down, which ends every
	// stream so Shutdown need not wait for clients to hang up.
	done      chan struct{}
	closeOnce sync.Once
	now       func() time.Time
}

type realtimeSecond struct {
	unix           int64
	events, tokens int64
}

func newRealtimeHub(maxSubscribers int) *realtimeHub {
	return &realtimeHub{maxSubscribers: int64(maxSubscribers), done: make(chan struct{}), now: time.Now}
}

func (h *realtimeHub) close() { h.closeOnce.Do(func() { close(h.done) }) }

// record counts a stored batch.
func (h *realtimeHub) record(logs []db.RequestLog) {
	var tokens int64
	for i := range logs {
		tokens += logs[i].InputTokens + logs[i].OutputTokens
	}
	sec := h.now().Unix()
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.secs[sec%realtimeWindow]
	if s.unix != sec {
		*s = realtimeSecond{unix: sec}
	}
	s.events += int64(len(logs))
	s.tokens += tokens
}

// RealtimeRates is one realtime message. The last second is the last
// complete one; the minute is the 60 complete seconds before now.
type RealtimeRates struct {
	TS               time.Time `json:"ts"`
	QPS1s            float64   `json:"qps_1s"`
	QPS1m            float64   `json:"qps_1m"`
	TPS1s            float64   `json:"tps_1s"`
	TPS1m            float64   `json:"tps_1m"`
	EventsLastSecond int64     `json:"events_last_second"`
	EventsLastMinute int64     `json:"events_last_minute"`
	TokensLastSecond int64     `json:"tokens_last_second"`
	TokensLastMinute int64     `json:"tokens_last_minute"`
}

func (h *realtimeHub) rates() RealtimeRates {
	now := h.now()
	last := now.Unix() - 1
	r := RealtimeRates{TS: now.UTC().Truncate(time.Second)}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.secs {
		if s.unix > last || s.unix <= last-realtimeWindow {
			continue
		}
		r.EventsLastMinute += s.events
		r.TokensLastMinute += s.tokens
		if s.unix == last {
			r.EventsLastSecond, r.TokensLastSecond = s.events, s.tokens
		}
	}
	r.QPS1s, r.TPS1s = float64(r.EventsLastSecond), float64(r.TokensLastSecond)
	r.QPS1m, r.TPS1m = float64(r.EventsLastMinute)/realtimeWindow, float64(r.TokensLastMinute)/realtimeWindow
	return r
}

// subscribe takes a subscriber slot; false when all are taken.
func (h *realtimeHub) subscribe() bool {
	for {
		n := h.subscribers.Load()
		if n >= h.maxSubscribers {
			return false
		}
		if h.subscribers.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (h *realtimeHub) unsubscribe() { h.subscribers.Add(-1) }

// realtimeInterval is the stream's period.
const realtimeInterval = time.Second

// dashboardRealtime streams RealtimeRates as Server-Sent Events (event
// "rates") once a second, the first at once, until the client goes away or
// the server shuts down.
func (s *Server) dashboardRealtime(c echo.Context) error {
	if names := paramNames(c); len(names) > 0 {
		return BadParam(names[0], "unknown parameter")
	}
	if !s.realtime.subscribe() {
		return Errorf(http.StatusServiceUnavailable, "too_many_subscribers",
			"the realtime stream has its maximum of %d subscribers; retry later", s.realtime.maxSubscribers)
	}
	defer s.realtime.unsubscribe()

	res := c.Response()
	res.Header().Set(echo.HeaderContentType, "text/event-stream")
	res.Header().Set(echo.HeaderCacheControl, "no-store")
	// Keeps buffering proxies (nginx) from holding the events back.
	res.Header().Set("X-Accel-Buffering", "no")
	res.WriteHeader(http.StatusOK)

	ticker := time.NewTicker(realtimeInterval)
	defer ticker.Stop()
	ctx := c.Request().Context()
	for {
		if err := writeRatesEvent(res, s.realtime.rates()); err != nil {
			return nil // the client went away; nothing is left to answer
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.realtime.done:
			return nil
		case <-ticker.C:
		}
	}
}

func writeRatesEvent(res *echo.Response, r RealtimeRates) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode realtime rates: %w", err)
	}
	if _, err := fmt.Fprintf(res, "id: %d\nevent: rates\ndata: %s\n\n", r.TS.Unix(), data); err != nil {
		return fmt.Errorf("write realtime event: %w", err)
	}
	res.Flush()
	return nil
}
