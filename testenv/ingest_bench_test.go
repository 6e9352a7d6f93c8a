package testenv_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/loadgen"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

const (
	// ingestBenchBatches x ingestBenchBatchSize events per ingest run, sent
	// by ingestBenchClients concurrent clients.
	ingestBenchBatches   = 40
	ingestBenchBatchSize = 5_000
	ingestBenchClients   = 4
	// collectBenchEvents land in one minute for the collection benchmark.
	collectBenchEvents = 20_000
)

// benchBodies pre-encodes the ingest batches as the API receives them, so
// client-side encoding stays out of the measurement, and decodes them once
// for the paths that skip HTTP.
func benchBodies(b *testing.B) ([][]byte, [][]db.RequestLog) {
	b.Helper()
	gen := loadgen.New(42, loadgen.Options{})
	end := time.Now().UTC().Add(-time.Hour)
	var bodies [][]byte
	var decoded [][]db.RequestLog
	for range ingestBenchBatches {
		var events []loadgen.Event
		for e := range gen.Over(end.Add(-time.Hour), end, ingestBenchBatchSize) {
			events = append(events, e)
		}
		body, err := json.Marshal(events)
		require.NoError(b, err)
		bodies = append(bodies, body)
		decoded = append(decoded, requestLogs(events))
	}
	return bodies, decoded
}

// fanOutBatches runs send(i) for every batch on ingestBenchClients
// goroutines and returns the wall time.
func fanOutBatches(b *testing.B, n int, send func(i int) error) time.Duration {
	b.Helper()
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for range ingestBenchClients {
		wg.Go(func() {
			for i := range next {
				if err := send(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(begin)
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	return elapsed
}

func reportRowsPerSecond(b *testing.B, rows int, elapsed time.Duration) {
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
}

// BenchmarkIngest loads the same 200,000 generated events three ways, each
// into a fresh database, 4 concurrent senders each: through the HTTP API in
// 5,000-event batches (decoding, validation, idempotency bookkeeping and
// CopyFrom), straight through the store the API calls (CopyFrom and the
// batch row, no HTTP), and with psql's \copy of the same rows as CSV (one
// file of 50,000 rows per sender), what a bulk-load tool gets.
func BenchmarkIngest(b *testing.B) {
	bodies, decoded := benchBodies(b)
	rows := ingestBenchBatches * ingestBenchBatchSize

	b.Run("http_api", func(b *testing.B) {
		d := testenv.DB(b)
		cfg, err := config.Load(func(name string) string {
			return map[string]string{"OPSFLOW_ADMIN_KEY": e2eAdminKey}[name]
		})
		require.NoError(b, err)
		reg := prometheus.NewRegistry()
		srv := httptest.NewServer(api.New(api.Deps{Config: cfg, DB: d, Logger: slog.New(slog.DiscardHandler), Registry: reg, Gatherer: reg}))
		b.Cleanup(srv.Close)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: ingestBenchClients}}
		var elapsed time.Duration
		for b.Loop() {
			elapsed += fanOutBatches(b, len(bodies), func(i int) error {
				req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/ingest/requests", bytes.NewReader(bodies[i]))
				if err != nil {
					return err
				}
				req.Header.Set("Authorization", "Bearer "+e2eAdminKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("ingest: HTTP %d", resp.StatusCode)
				}
				return nil
			})
		}
		reportRowsPerSecond(b, rows*b.N, elapsed)
	})

	b.Run("store_copyfrom", func(b *testing.B) {
		store := db.NewRequestLogStore(testenv.DB(b))
		var elapsed time.Duration
		for b.Loop() {
			elapsed += fanOutBatches(b, len(decoded), func(i int) error {
				_, err := store.Insert(context.Background(), db.IngestBatch{Owner: "bench", RequestHash: []byte{byte(i)}, Logs: decoded[i]})
				return err
			})
		}
		reportRowsPerSecond(b, rows*b.N, elapsed)
	})

	b.Run("psql_copy_csv", func(b *testing.B) {
		psql := psqlPath(b)
		url := testenv.DatabaseURL(b)
		d, err := db.Open(context.Background(), url, 2)
		require.NoError(b, err)
		b.Cleanup(d.Close)
		files := csvFiles(b, decoded)
		ensurePartitions(b, d, decoded)
		var elapsed time.Duration
		for b.Loop() {
			elapsed += fanOutBatches(b, len(files), func(i int) error {
				cmd := exec.Command(psql, url, "-q", "-v", "ON_ERROR_STOP=1", "-c",
					`\copy request_logs (ts, request_id, tenant, api_key, upstream_account, provider, model, endpoint, status_code, latency_ms, ttft_ms, input_tokens, output_tokens, cached_tokens, cost_usd, stream, error_type, error_message, client_ip) FROM '`+files[i]+`' WITH (FORMAT csv)`)
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("psql: %w: %s", err, out)
				}
				return nil
			})
		}
		reportRowsPerSecond(b, rows*b.N, elapsed)
	})
}

// psqlPath finds psql next to the server binaries the harness uses, or on
// PATH.
func psqlPath(b *testing.B) string {
	b.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	require.NotEmpty(b, matches, "psql is needed for the \\copy baseline")
	return matches[len(matches)-1]
}

// csvFiles writes the batches as one CSV file per sender, in request_logs'
// column order: one psql process per sender pays its start-up once.
func csvFiles(b *testing.B, batches [][]db.RequestLog) []string {
	b.Helper()
	dir := b.TempDir()
	var files []string
	for i := range ingestBenchClients {
		path := filepath.Join(dir, strconv.Itoa(i)+".csv")
		f, err := os.Create(path)
		require.NoError(b, err)
		w := csv.NewWriter(f)
		for _, l := range slices.Concat(batches[i*len(batches)/ingestBenchClients : (i+1)*len(batches)/ingestBenchClients]...) {
			ttft, ip := "", ""
			if l.TTFTMs != nil {
				ttft = strconv.FormatFloat(*l.TTFTMs, 'f', -1, 64)
			}
			if l.ClientIP.IsValid() {
				ip = l.ClientIP.String()
			}
			require.NoError(b, w.Write([]string{
				l.TS.Format(time.RFC3339Nano), l.RequestID, l.Tenant, l.APIKey, l.UpstreamAccount, l.Provider, l.Model,
				l.Endpoint, strconv.Itoa(int(l.StatusCode)), strconv.FormatFloat(l.LatencyMs, 'f', -1, 64), ttft,
				strconv.FormatInt(l.InputTokens, 10), strconv.FormatInt(l.OutputTokens, 10), strconv.FormatInt(l.CachedTokens, 10),
				strconv.FormatFloat(l.CostUSD, 'f', -1, 64), strconv.FormatBool(l.Stream), l.ErrorType, l.ErrorMessage, ip,
			}))
		}
		w.Flush()
		require.NoError(b, w.Error())
		require.NoError(b, f.Close())
		files = append(files, path)
	}
	return files
}

func ensurePartitions(b *testing.B, d *db.DB, batches [][]db.RequestLog) {
	b.Helper()
	days := map[time.Time]bool{}
	for _, logs := range batches {
		for _, l := range logs {
			days[l.TS.UTC().Truncate(24*time.Hour)] = true
		}
	}
	for day := range days {
		_, err := d.Pool.Exec(context.Background(), "SELECT opsflow_ensure_request_logs_partition($1::date)", day)
		require.NoError(b, err)
	}
}

// requestLogs converts generated events to the rows the API would store, for
// the paths that skip HTTP.
func requestLogs(events []loadgen.Event) []db.RequestLog {
	logs := make([]db.RequestLog, len(events))
	for i, e := range events {
		l := db.RequestLog{
			TS: e.TS, RequestID: e.RequestID, Tenant: e.Tenant, APIKey: e.APIKey, UpstreamAccount: e.UpstreamAccount,
			Provider: e.Provider, Model: e.Model, Endpoint: e.Endpoint, StatusCode: int16(e.StatusCode), LatencyMs: e.LatencyMS,
			InputTokens: e.InputTokens, OutputTokens: e.OutputTokens, CachedTokens: e.CachedTokens, CostUSD: e.CostUSD,
			Stream: e.Stream, ErrorType: e.ErrorType, ErrorMessage: e.ErrorMessage,
		}
		if e.TTFTMS > 0 {
			l.TTFTMs = &e.TTFTMS
		}
		l.ClientIP, _ = netip.ParseAddr(e.ClientIP)
		logs[i] = l
	}
	return logs
}

// BenchmarkCollectMinute times the collection activity rolling up one
// minute holding 20,000 events (the ingest batches of that minute pending),
// as the scheduled workflow's CollectRollups call does.
func BenchmarkCollectMinute(b *testing.B) {
	ctx := context.Background()
	gen := loadgen.New(9, loadgen.Options{LateFraction: -1})
	minute := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	var events []loadgen.Event
	for e := range gen.Over(minute, minute.Add(time.Minute), collectBenchEvents) {
		events = append(events, e)
	}
	logs := requestLogs(events)

	var elapsed time.Duration
	var groups int
	for b.Loop() {
		b.StopTimer()
		d := testenv.DB(b)
		store := db.NewRequestLogStore(d)
		const perBatch = 1_000
		for i := 0; i < len(logs); i += perBatch {
			_, err := store.Insert(ctx, db.IngestBatch{Owner: "bench", RequestHash: []byte{byte(i)}, Logs: logs[i:min(i+perBatch, len(logs))]})
			require.NoError(b, err)
		}
		acts := &activities.Activities{DB: d}
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(acts)
		b.StartTimer()

		begin := time.Now()
		val, err := env.ExecuteActivity(acts.CollectRollups, workflows.CollectRollupsInput{MaxBatches: 100})
		elapsed += time.Since(begin)
		require.NoError(b, err)
		var res workflows.CollectRollupsResult
		require.NoError(b, val.Get(&res))
		require.EqualValues(b, collectBenchEvents, res.Events)
		groups = res.Rows
	}
	b.ReportMetric(float64(elapsed.Milliseconds())/float64(b.N), "ms/minute")
	b.ReportMetric(float64(groups), "rollup_rows")
}
