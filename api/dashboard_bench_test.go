package api_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/testenv"
)

// BenchmarkDashboardRealtime measures the realtime stream's cadence while
// 1,000 events/s are ingested (100-event batches every 100 ms, over HTTP):
// the largest deviation of the gap between consecutive messages from one
// second, over realtimeBenchSeconds messages.
func BenchmarkDashboardRealtime(b *testing.B) {
	const realtimeBenchSeconds = 10
	ctx := context.Background()
	cfg, err := config.Load(func(string) string { return "" })
	require.NoError(b, err)
	d := testenv.DB(b)
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.New(api.Deps{Config: cfg, DB: d, Logger: slog.New(slog.DiscardHandler),
		Registry: reg, Gatherer: reg}))
	b.Cleanup(srv.Close)
	ingestKey, _, err := db.CreateAPIKey(ctx, d.Bun, "gateway", []string{db.ScopeIngest})
	require.NoError(b, err)
	readKey, _, err := db.CreateAPIKey(ctx, d.Bun, "dashboard", []string{db.ScopeRead})
	require.NoError(b, err)

	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	req, err := http.NewRequestWithContext(streamCtx, http.MethodGet, srv.URL+"/api/v1/dashboard/realtime", nil)
	require.NoError(b, err)
	req.Header.Set("Authorization", "Bearer "+readKey)
	res, err := http.DefaultClient.Do(req)
	require.NoError(b, err)
	defer res.Body.Close()
	require.Equal(b, http.StatusOK, res.StatusCode)

	ingestDone := make(chan error, 1)
	var batches atomic.Int64
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-streamCtx.Done():
				ingestDone <- nil
				return
			case <-tick.C:
			}
			body := jsonArray(b, events(100, time.Now().UTC()))
			r, err := http.NewRequestWithContext(streamCtx, http.MethodPost, srv.URL+"/api/v1/ingest/requests", bytes.NewReader(body))
			if err != nil {
				ingestDone <- err
				return
			}
			r.Header.Set("Authorization", "Bearer "+ingestKey)
			r.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				ingestDone <- nil // the stream ended and took the context with it
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				ingestDone <- fmt.Errorf("ingest answered %d", resp.StatusCode)
				return
			}
			batches.Add(1)
		}
	}()

	scan := bufio.NewScanner(res.Body)
	var arrivals []time.Time
	for len(arrivals) <= realtimeBenchSeconds && scan.Scan() {
		if strings.HasPrefix(scan.Text(), "data: ") {
			arrivals = append(arrivals, time.Now())
		}
	}
	stop()
	require.NoError(b, <-ingestDone)
	require.Len(b, arrivals, realtimeBenchSeconds+1)
	var worst time.Duration
	for i := 1; i < len(arrivals); i++ {
		worst = max(worst, (arrivals[i].Sub(arrivals[i-1]) - time.Second).Abs())
	}
	require.Greater(b, batches.Load(), int64(9*realtimeBenchSeconds), "ingest kept up its rate")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max_jitter_ms")
	b.ReportMetric(float64(batches.Load()*100)/arrivals[len(arrivals)-1].Sub(arrivals[0]).Seconds(), "ingested_events/s")
}
