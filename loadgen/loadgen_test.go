package loadgen

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var day = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

func collect(g *Generator, n int) []Event {
	return slices.Collect(g.Over(day, day.Add(24*time.Hour), n))
}

func TestSameSeedSameEvents(t *testing.T) {
	a := collect(New(42, Options{}), 2000)
	b := collect(New(42, Options{}), 2000)
	c := collect(New(43, Options{}), 2000)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
}

func TestBatchContinuesWhereThePreviousEnded(t *testing.T) {
	g := New(1, Options{LateFraction: -1})
	now := day.Add(time.Hour)
	first := g.Batch(10, now)
	second := g.Batch(4, now.Add(2*time.Second))
	require.Len(t, first, 10)
	require.Len(t, second, 4)
	assert.Equal(t, now.Add(-time.Second+100*time.Millisecond), first[0].TS)
	assert.Equal(t, now, first[9].TS)
	assert.Equal(t, now.Add(500*time.Millisecond), second[0].TS)
	assert.Equal(t, now.Add(2*time.Second), second[3].TS)
}

func TestDefaultCatalogShape(t *testing.T) {
	g := New(7, Options{})
	assert.Len(t, g.tenants, 30)
	require.Len(t, g.providers, 7)
	for _, p := range g.providers {
		assert.GreaterOrEqual(t, len(p.models), 3, p.name)
		assert.LessOrEqual(t, len(p.models), 6, p.name)
	}
}

func TestOptionsSetTheShape(t *testing.T) {
	events := collect(New(3, Options{Tenants: 50, Providers: 6, Models: 30}), 300_000)
	tenants, providers, models := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, e := range events {
		tenants[e.Tenant] = true
		providers[e.Provider] = true
		models[e.Provider+"/"+e.Model] = true
	}
	assert.Len(t, tenants, 50)
	assert.Len(t, providers, 6)
	assert.Len(t, models, 30)
}

func TestDistributions(t *testing.T) {
	const n = 200_000
	g := New(11, Options{})
	events := collect(g, n)
	step := 24 * time.Hour / n

	counts := map[string]int{}
	ids := make(map[string]bool, n)
	tenantCounts := map[string]int{}
	for i, e := range events {
		ids[e.RequestID] = true
		tenantCounts[e.Tenant]++
		counts[outcome(e)]++
		if e.Stream {
			counts["stream"]++
		}
		if lateness := day.Add(step * time.Duration(i)).Sub(e.TS); lateness > 0 {
			counts["late"]++
			assert.GreaterOrEqual(t, lateness, 2*time.Minute)
			assert.LessOrEqual(t, lateness, time.Hour)
		}
		checkEvent(t, g, e)
	}
	assert.Len(t, ids, n, "request ids are unique")

	share := func(k string) float64 { return float64(counts[k]) / n }
	for _, c := range []struct {
		kind     string
		min, max float64
	}{
		{"success", 0.93, 0.985},
		{"rate_limited", 0.005, 0.03},
		{"5xx", 0.002, 0.03},
		{"timeout", 0.0005, 0.01},
		{"4xx", 0.004, 0.015},
		{"stream", 0.5, 0.7},
		{"late", 0.007, 0.013},
	} {
		assert.InDelta(t, (c.min+c.max)/2, share(c.kind), (c.max-c.min)/2, c.kind)
	}

	shares := make([]int, 0, len(tenantCounts))
	for _, c := range tenantCounts {
		shares = append(shares, c)
	}
	slices.Sort(shares)
	assert.Greater(t, shares[len(shares)-1], 5*shares[len(shares)/2], "traffic is skewed towards a few tenants")
}

func outcome(e Event) string {
	switch {
	case e.StatusCode == 200:
		return "success"
	case e.StatusCode == 429:
		return "rate_limited"
	case e.ErrorType == "timeout":
		return "timeout"
	case e.StatusCode >= 500:
		return "5xx"
	default:
		return "4xx"
	}
}

// checkEvent checks one event's internal consistency: prices, tokens,
// latencies and error fields.
func checkEvent(t *testing.T, g *Generator, e Event) {
	t.Helper()
	m := findModel(t, g, e.Provider, e.Model)
	want := float64(e.InputTokens-e.CachedTokens)*m.price.Input + float64(e.CachedTokens)*m.price.Cached + float64(e.OutputTokens)*m.price.Output
	if !assert.InDelta(t, want/1e6, e.CostUSD, 1e-9, "cost of %+v", e) {
		t.FailNow()
	}
	assert.LessOrEqual(t, e.CachedTokens, e.InputTokens)
	assert.Positive(t, e.LatencyMS)
	switch {
	case e.StatusCode == 200:
		assert.Empty(t, e.ErrorType)
		assert.Less(t, e.LatencyMS, timeoutMS)
		assert.Equal(t, e.Stream, e.TTFTMS > 0, "streams and only streams have a ttft")
		assert.LessOrEqual(t, e.TTFTMS, e.LatencyMS)
	case e.ErrorType == "timeout":
		assert.Equal(t, 504, e.StatusCode)
		assert.InDelta(t, timeoutMS, e.LatencyMS, 25)
	default:
		assert.NotEmpty(t, e.ErrorType)
		assert.NotEmpty(t, e.ErrorMessage)
		assert.Zero(t, e.CostUSD)
	}
}

func findModel(t *testing.T, g *Generator, provider, name string) model {
	t.Helper()
	for _, p := range g.providers {
		for _, m := range p.models {
			if p.name == provider && m.name == name {
				return m
			}
		}
	}
	require.Failf(t, "unknown model", "%s/%s", provider, name)
	return model{}
}

func TestIncidentsDegradeOneProvider(t *testing.T) {
	g := New(5, Options{LateFraction: -1})
	inside, outside := map[bool]int{}, map[bool]int{}
	for e := range g.Over(day, day.Add(24*time.Hour), 200_000) {
		failed := e.StatusCode >= 500
		p := slices.IndexFunc(g.providers, func(p provider) bool { return p.name == e.Provider })
		if g.degradation(e.TS, p) != healthy {
			inside[failed]++
		} else {
			outside[failed]++
		}
	}
	require.Positive(t, inside[false]+inside[true], "a day has incidents")
	rate := func(m map[bool]int) float64 { return float64(m[true]) / float64(m[true]+m[false]) }
	assert.Greater(t, rate(inside), 5*rate(outside))
}

// ingestServer fails each batch's first attempt with 503, then stores it,
// replaying the first answer for a key it has seen, like opsflow.
type ingestServer struct {
	mu       sync.Mutex
	attempts map[string]int
	answers  map[string]int
	stored   []Event
}

func newIngestServer(t *testing.T) (*ingestServer, *httptest.Server) {
	s := &ingestServer{attempts: map[string]int{}, answers: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *ingestServer) handle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != IngestPath || r.Header.Get("Authorization") != "Bearer test-key" || r.Header.Get("Content-Encoding") != "gzip" {
		http.Error(w, "bad request shape", http.StatusBadRequest)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts[key]++
	if s.attempts[key] == 1 {
		http.Error(w, `{"error":{"code":"unavailable"}}`, http.StatusServiceUnavailable)
		return
	}
	if n, ok := s.answers[key]; ok {
		fmt.Fprintf(w, `{"stored":%d}`, n)
		return
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var batch []Event
	if err := json.NewDecoder(zr).Decode(&batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.stored = append(s.stored, batch...)
	s.answers[key] = len(batch)
	fmt.Fprintf(w, `{"stored":%d,"batch_id":%d,"minutes":1}`, len(batch), len(s.answers))
}

func TestRunRetriesWithTheSameIdempotencyKey(t *testing.T) {
	s, srv := newIngestServer(t)
	stats, err := New(1, Options{}).Run(context.Background(), RunOptions{
		URL: srv.URL, Key: "test-key", Rate: 200, BatchSize: 20, Duration: time.Second,
	})
	require.NoError(t, err)

	s.mu.Lock()
	defer s.mu.Unlock()
	require.Positive(t, stats.Batches)
	assert.Len(t, s.attempts, int(stats.Batches), "one key per batch")
	for key, n := range s.attempts {
		assert.Equal(t, 2, n, "batch %s: one failure, one retry", key)
	}
	assert.Equal(t, stats.Batches, stats.Retries)
	assert.Equal(t, stats.Sent, stats.Stored)
	assert.Zero(t, stats.Failed)
	assert.Len(t, s.stored, int(stats.Stored))
	ids := map[string]bool{}
	for _, e := range s.stored {
		ids[e.RequestID] = true
	}
	assert.Len(t, ids, len(s.stored), "every event delivered once")
}

func TestRunStopsWhenTheContextEndsAndFinishesTheBatchInFlight(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-release
		fmt.Fprint(w, `{"stored":10}`)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
		close(release)
	}()

	stats, err := New(1, Options{}).Run(ctx, RunOptions{URL: srv.URL, Key: "test-key", Rate: 100, BatchSize: 10})
	require.NoError(t, err)
	assert.Equal(t, Stats{Batches: 1, Sent: 10, Stored: 10}, stats)
}

func TestRunGivesUpOnARejectedKey(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"code":"unauthorized"}}`, http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)

	stats, err := New(1, Options{}).Run(context.Background(), RunOptions{URL: srv.URL, Key: "wrong", Rate: 1000})
	require.ErrorIs(t, err, ErrKeyRejected)
	assert.ErrorContains(t, err, "401")
	assert.Zero(t, stats.Retries)
}

func BenchmarkNext(b *testing.B) {
	g := New(1, Options{Tenants: 50, Providers: 6, Models: 30})
	ts := day
	for b.Loop() {
		ts = ts.Add(time.Millisecond)
		g.Next(ts)
	}
}
