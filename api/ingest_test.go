package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testNow is the pinned clock of every ingest test.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type ingestEnv struct {
	e         *echo.Echo
	db        *db.DB
	reg       *prometheus.Registry
	ingestKey string
	readKey   string
}

// newIngestEnv builds the API on a fresh database. Ingest needs no Temporal.
func newIngestEnv(t *testing.T, tweak func(*config.Config)) *ingestEnv {
	t.Helper()
	cfg, err := config.Load(func(string) string { return "" })
	require.NoError(t, err)
	if tweak != nil {
		tweak(&cfg)
	}
	d := testenv.DB(t)
	reg := prometheus.NewRegistry()
	e := api.New(api.Deps{
		Config: cfg, DB: d, Logger: slog.New(slog.DiscardHandler),
		Registry: reg, Gatherer: reg, Now: func() time.Time { return testNow },
	})
	ctx := context.Background()
	ingestKey, _, err := db.CreateAPIKey(ctx, d.Bun, "gateway", []string{db.ScopeIngest})
	require.NoError(t, err)
	readKey, _, err := db.CreateAPIKey(ctx, d.Bun, "dashboard", []string{db.ScopeRead})
	require.NoError(t, err)
	return &ingestEnv{e: e, db: d, reg: reg, ingestKey: ingestKey, readKey: readKey}
}

// post sends body to the ingest endpoint. Headers default to the ingest key
// and application/json; an empty value removes a header.
func (env *ingestEnv) post(t *testing.T, body []byte, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/ingest/requests", bytes.NewReader(body))
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+env.ingestKey)
	req.Header.Set(echo.HeaderContentType, "application/json")
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	return rec
}

func (env *ingestEnv) count(t *testing.T, query string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, env.db.Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func (env *ingestEnv) assertNothingStored(t *testing.T) {
	t.Helper()
	assert.Zero(t, env.count(t, `SELECT count(*) FROM request_logs`), "request_logs rows")
	assert.Zero(t, env.count(t, `SELECT count(*) FROM ingest_batches`), "ingest_batches rows")
}

// metric returns the value of a counter with the given label, 0 if absent.
func (env *ingestEnv) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	families, err := env.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

type okBody struct {
	Stored  int   `json:"stored"`
	BatchID int64 `json:"batch_id"`
	Minutes int   `json:"minutes"`
}

type errEnvelope struct {
	Error struct {
		Code      string          `json:"code"`
		Message   string          `json:"message"`
		RequestID string          `json:"request_id"`
		Details   json.RawMessage `json:"details"`
	} `json:"error"`
}

type invalidDetails struct {
	Invalid []struct {
		Index  int    `json:"index"`
		Field  string `json:"field"`
		Reason string `json:"reason"`
	} `json:"invalid"`
	InvalidCount int `json:"invalid_count"`
	Events       int `json:"events"`
}

func decodeOK(t *testing.T, rec *httptest.ResponseRecorder) okBody {
	t.Helper()
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var b okBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &b))
	return b
}

// decodeErr checks the central error envelope and returns it.
func decodeErr(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) errEnvelope {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	var b errEnvelope
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &b))
	assert.Equal(t, code, b.Error.Code)
	assert.NotEmpty(t, b.Error.Message)
	assert.NotEmpty(t, b.Error.RequestID)
	assert.Equal(t, rec.Header().Get(echo.HeaderXRequestID), b.Error.RequestID)
	return b
}

// event is a valid event at ts; callers edit the map to break it.
func event(ts time.Time, i int) map[string]any {
	return map[string]any{
		"ts":            ts.Format(time.RFC3339Nano),
		"request_id":    fmt.Sprintf("req-%d", i),
		"tenant":        "acme",
		"api_key":       "key-1",
		"provider":      "openai",
		"model":         "gpt-4o",
		"endpoint":      "/v1/chat/completions",
		"status_code":   200,
		"latency_ms":    123.5,
		"input_tokens":  100,
		"output_tokens": 20,
		"stream":        false,
	}
}

func events(n int, ts time.Time) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = event(ts.Add(-time.Duration(i)*time.Second), i)
	}
	return out
}

func jsonArray(t testing.TB, evs []map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(evs)
	require.NoError(t, err)
	return b
}

func ndjson(t testing.TB, evs []map[string]any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, ev := range evs {
		require.NoError(t, enc.Encode(ev))
	}
	return buf.Bytes()
}

// gzipWriters spares the fuzzer a megabyte of compressor state per input.
var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// TestIngestVolume stores 100,000 events in 20 batches over several days,
// one of them far enough back that nothing has created its partition, in
// alternating formats, and checks every row and sum arrived exactly.
func TestIngestVolume(t *testing.T) {
	env := newIngestEnv(t, nil)
	days := []time.Time{testNow, testNow.Add(-24 * time.Hour), testNow.Add(-48 * time.Hour), testNow.Add(-20 * 24 * time.Hour)}
	const batches, perBatch = 20, 5000

	wantPerDay := map[string]int64{}
	var wantInput, wantOutput, wantCached int64
	var wantCostMicros int64 // costs are whole micro-dollars, so the exact decimal sum is known
	for b := range batches {
		evs := make([]map[string]any, perBatch)
		for i := range evs {
			n := b*perBatch + i
			ts := days[n%len(days)].Add(-time.Duration(n%3600) * time.Second)
			ev := event(ts, n)
			ev["input_tokens"], ev["output_tokens"], ev["cached_tokens"] = n%997, n%89, n%13
			micros := int64(n%50000) + 100 // 0.0001 .. 0.0501, e.g. 0.0123
			ev["cost_usd"] = float64(micros) / 1e6
			evs[i] = ev
			wantPerDay[ts.Format(time.DateOnly)]++
			wantInput += int64(n % 997)
			wantOutput += int64(n % 89)
			wantCached += int64(n % 13)
			wantCostMicros += micros
		}
		var rec *httptest.ResponseRecorder
		if b%2 == 0 {
			rec = env.post(t, jsonArray(t, evs), nil)
		} else {
			rec = env.post(t, gzipped(t, ndjson(t, evs)), map[string]string{
				echo.HeaderContentType: "application/x-ndjson", echo.HeaderContentEncoding: "gzip",
			})
		}
		res := decodeOK(t, rec)
		assert.Equal(t, perBatch, res.Stored)
		assert.Positive(t, res.BatchID)
		assert.Positive(t, res.Minutes)
	}

	assert.Equal(t, int64(batches*perBatch), env.count(t, `SELECT count(*) FROM request_logs`))
	rows, err := env.db.Pool.Query(context.Background(),
		`SELECT to_char(ts, 'YYYY-MM-DD'), count(*) FROM request_logs GROUP BY 1`)
	require.NoError(t, err)
	gotPerDay := map[string]int64{}
	for rows.Next() {
		var day string
		var n int64
		require.NoError(t, rows.Scan(&day, &n))
		gotPerDay[day] = n
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, wantPerDay, gotPerDay)

	wantCost := fmt.Sprintf("%d.%06d", wantCostMicros/1e6, wantCostMicros%1e6)
	var costExact bool
	var gotInput, gotOutput, gotCached int64
	require.NoError(t, env.db.Pool.QueryRow(context.Background(),
		`SELECT sum(cost_usd) = $1::numeric, sum(input_tokens), sum(output_tokens), sum(cached_tokens) FROM request_logs`,
		wantCost).Scan(&costExact, &gotInput, &gotOutput, &gotCached))
	assert.True(t, costExact, "sum(cost_usd) must equal exactly %s", wantCost)
	assert.Equal(t, []int64{wantInput, wantOutput, wantCached}, []int64{gotInput, gotOutput, gotCached})

	assert.Equal(t, int64(batches), env.count(t, `SELECT count(*) FROM ingest_batches`))
	assert.Equal(t, int64(batches*perBatch), env.count(t, `SELECT sum(events) FROM ingest_batches`))
	assert.Equal(t, float64(batches), env.metric(t, "opsflow_ingest_batches_total", "result", "stored"))
	assert.Equal(t, float64(batches*perBatch), env.metric(t, "opsflow_ingest_events_total", "result", "stored"))
}

// TestIngestStoresEveryField checks each field's stored form, including NULL
// for absent optional fields, exact decimals and message truncation.
func TestIngestStoresEveryField(t *testing.T) {
	env := newIngestEnv(t, nil)
	full := map[string]any{
		"ts": "2026-11-22T13:04:05.123456+02:00", "request_id": "r-1", "tenant": "acme", "api_key": "k-9",
		"upstream_account": "acct-3", "provider": "anthropic", "model": "claude", "endpoint": "/v1/messages",
		"status_code": 529, "latency_ms": 1500.25, "ttft_ms": 0, "input_tokens": 10, "output_tokens": 0,
		"cached_tokens": 7, "cost_usd": 0.0123, "stream": true, "error_type": "overloaded",
		"error_message": strings.Repeat("é", 1500), "client_ip": "2001:db8::1", "added_by_gateway": map[string]any{"x": []int{1}},
	}
	bare := map[string]any{"ts": "2026-11-22T11:00:00Z", "provider": "openai", "status_code": 0, "latency_ms": 0}
	res := decodeOK(t, env.post(t, jsonArray(t, []map[string]any{full, bare}), nil))
	assert.Equal(t, 2, res.Stored)
	assert.Equal(t, 2, res.Minutes)

	type row struct {
		TS                                                        time.Time
		RequestID, UpstreamAccount, Endpoint, ErrorType, ErrorMsg *string
		Tenant, APIKey, Provider, Model                           string
		Status                                                    int16
		Latency                                                   float64
		TTFT                                                      *float64
		In, Out, Cached                                           int64
		Cost                                                      string
		Stream                                                    bool
		IP                                                        *string
	}
	query := `SELECT ts, request_id, upstream_account, endpoint, error_type, error_message, tenant, api_key, provider,
		model, status_code, latency_ms, ttft_ms, input_tokens, output_tokens, cached_tokens, cost_usd::text, stream,
		host(client_ip) FROM request_logs ORDER BY ts`
	rows, err := env.db.Pool.Query(context.Background(), query)
	require.NoError(t, err)
	var got []row
	for rows.Next() {
		var r row
		require.NoError(t, rows.Scan(&r.TS, &r.RequestID, &r.UpstreamAccount, &r.Endpoint, &r.ErrorType, &r.ErrorMsg,
			&r.Tenant, &r.APIKey, &r.Provider, &r.Model, &r.Status, &r.Latency, &r.TTFT, &r.In, &r.Out, &r.Cached,
			&r.Cost, &r.Stream, &r.IP))
		got = append(got, r)
	}
	require.NoError(t, rows.Err())
	require.Len(t, got, 2)

	b := got[0]
	assert.True(t, b.TS.Equal(time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)))
	assert.Nil(t, b.RequestID)
	assert.Nil(t, b.UpstreamAccount)
	assert.Nil(t, b.Endpoint)
	assert.Nil(t, b.ErrorType)
	assert.Nil(t, b.ErrorMsg)
	assert.Nil(t, b.TTFT)
	assert.Nil(t, b.IP)
	assert.Equal(t, "", b.Tenant)
	assert.Equal(t, "", b.Model)
	assert.Equal(t, int16(0), b.Status)
	assert.Equal(t, "0.0000000000", b.Cost)

	f := got[1]
	assert.True(t, f.TS.Equal(time.Date(2026, 11, 22, 11, 4, 5, 123456000, time.UTC)))
	assert.Equal(t, "r-1", *f.RequestID)
	assert.Equal(t, "acct-3", *f.UpstreamAccount)
	assert.Equal(t, "/v1/messages", *f.Endpoint)
	assert.Equal(t, "overloaded", *f.ErrorType)
	assert.Len(t, *f.ErrorMsg, 2048, "truncated to 2048 bytes")
	assert.Equal(t, strings.Repeat("é", 1024), *f.ErrorMsg, "cut on a character boundary")
	assert.Equal(t, []string{"acme", "k-9", "anthropic", "claude"}, []string{f.Tenant, f.APIKey, f.Provider, f.Model})
	assert.Equal(t, int16(529), f.Status)
	assert.Equal(t, 1500.25, f.Latency)
	require.NotNil(t, f.TTFT)
	assert.Equal(t, 0.0, *f.TTFT)
	assert.Equal(t, []int64{10, 0, 7}, []int64{f.In, f.Out, f.Cached})
	assert.Equal(t, "0.0123000000", f.Cost)
	assert.True(t, f.Stream)
	assert.Equal(t, "2001:db8::1", *f.IP)

	var minutes []time.Time
	require.NoError(t, env.db.Pool.QueryRow(context.Background(), `SELECT minutes FROM ingest_batches`).Scan(&minutes))
	require.Len(t, minutes, 2)
	assert.True(t, minutes[0].Equal(time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)))
	assert.True(t, minutes[1].Equal(time.Date(2026, 11, 22, 11, 4, 0, 0, time.UTC)))
}

// TestIngestExactCost sends costs that binary floats cannot represent and
// expects PostgreSQL's decimal sum to be exact.
func TestIngestExactCost(t *testing.T) {
	env := newIngestEnv(t, nil)
	evs := events(4, testNow)
	for i, c := range []float64{0.1, 0.2, 0.0123, 1234.5678901234} {
		evs[i]["cost_usd"] = c
	}
	decodeOK(t, env.post(t, jsonArray(t, evs), nil))
	var sum string
	require.NoError(t, env.db.Pool.QueryRow(context.Background(), `SELECT sum(cost_usd)::text FROM request_logs`).Scan(&sum))
	assert.Equal(t, "1234.8801901234", sum)
}

func TestIngestInvalidEvent(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(ev map[string]any)
		field  string
		reason string
	}{
		{"missing ts", func(ev map[string]any) { delete(ev, "ts") }, "ts", "required"},
		{"bad ts", func(ev map[string]any) { ev["ts"] = "22/11/2026 12:00" }, "ts", "RFC 3339"},
		{"numeric ts", func(ev map[string]any) { ev["ts"] = 1763812800 }, "ts", "must be a JSON string"},
		{"ts too old", func(ev map[string]any) { ev["ts"] = testNow.Add(-721 * time.Hour).Format(time.RFC3339) }, "ts", "older"},
		{"ts in future", func(ev map[string]any) { ev["ts"] = testNow.Add(6 * time.Minute).Format(time.RFC3339) }, "ts", "future"},
		{"missing provider", func(ev map[string]any) { delete(ev, "provider") }, "provider", "required"},
		{"empty provider", func(ev map[string]any) { ev["provider"] = "" }, "provider", "required"},
		{"long tenant", func(ev map[string]any) { ev["tenant"] = strings.Repeat("t", 257) }, "tenant", "longer than 256"},
		{"long request_id", func(ev map[string]any) { ev["request_id"] = strings.Repeat("r", 129) }, "request_id", "longer than 128"},
		{"NUL in model", func(ev map[string]any) { ev["model"] = "gpt\x00" }, "model", "NUL"},
		{"missing status", func(ev map[string]any) { delete(ev, "status_code") }, "status_code", "required"},
		{"null status", func(ev map[string]any) { ev["status_code"] = nil }, "status_code", "required"},
		{"status 700", func(ev map[string]any) { ev["status_code"] = 700 }, "status_code", "100-599"},
		{"status 99", func(ev map[string]any) { ev["status_code"] = 99 }, "status_code", "100-599"},
		{"string status", func(ev map[string]any) { ev["status_code"] = "200" }, "status_code", "integer"},
		{"fractional status", func(ev map[string]any) { ev["status_code"] = 200.5 }, "status_code", "integer"},
		{"missing latency", func(ev map[string]any) { delete(ev, "latency_ms") }, "latency_ms", "required"},
		{"negative latency", func(ev map[string]any) { ev["latency_ms"] = -1 }, "latency_ms", ">= 0"},
		{"huge latency", func(ev map[string]any) { ev["latency_ms"] = json.Number("1e400") }, "latency_ms", "within range"},
		{"negative ttft", func(ev map[string]any) { ev["ttft_ms"] = -0.5 }, "ttft_ms", ">= 0"},
		{"fractional tokens", func(ev map[string]any) { ev["input_tokens"] = 1.5 }, "input_tokens", "integer"},
		{"negative tokens", func(ev map[string]any) { ev["cached_tokens"] = -3 }, "cached_tokens", "between 0"},
		{"negative cost", func(ev map[string]any) { ev["cost_usd"] = -0.01 }, "cost_usd", "between 0"},
		{"string stream", func(ev map[string]any) { ev["stream"] = "yes" }, "stream", "boolean"},
		{"bad client_ip", func(ev map[string]any) { ev["client_ip"] = "10.0.0.300" }, "client_ip", "IPv4 or IPv6"},
	}
	env := newIngestEnv(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := events(5, testNow)
			tt.edit(evs[3])
			b := decodeErr(t, env.post(t, jsonArray(t, evs), nil), http.StatusUnprocessableEntity, "invalid_events")
			assert.Equal(t, "1 of 5 events are invalid; nothing was stored", b.Error.Message)
			var d invalidDetails
			require.NoError(t, json.Unmarshal(b.Error.Details, &d))
			assert.Equal(t, 1, d.InvalidCount)
			assert.Equal(t, 5, d.Events)
			require.Len(t, d.Invalid, 1, "%+v", d.Invalid)
			assert.Equal(t, 3, d.Invalid[0].Index)
			assert.Equal(t, tt.field, d.Invalid[0].Field)
			assert.Contains(t, d.Invalid[0].Reason, tt.reason)
			env.assertNothingStored(t)
		})
	}
}

// TestIngestManyInvalidEvents checks that every invalid event is counted and
// the listing is capped.
func TestIngestManyInvalidEvents(t *testing.T) {
	env := newIngestEnv(t, nil)
	evs := events(5000, testNow)
	for _, i := range []int{3, 1000, 4999} {
		delete(evs[i], "provider")
	}
	b := decodeErr(t, env.post(t, jsonArray(t, evs), nil), http.StatusUnprocessableEntity, "invalid_events")
	assert.Equal(t, "3 of 5000 events are invalid; nothing was stored", b.Error.Message)
	var d invalidDetails
	require.NoError(t, json.Unmarshal(b.Error.Details, &d))
	require.Len(t, d.Invalid, 3)
	for i, idx := range []int{3, 1000, 4999} {
		assert.Equal(t, idx, d.Invalid[i].Index)
		assert.Equal(t, "provider", d.Invalid[i].Field)
	}

	for i := range 150 {
		evs[i]["status_code"] = 42
	}
	b = decodeErr(t, env.post(t, gzipped(t, ndjson(t, evs)), map[string]string{
		echo.HeaderContentType: "application/jsonl", echo.HeaderContentEncoding: "gzip",
	}), http.StatusUnprocessableEntity, "invalid_events")
	d = invalidDetails{}
	require.NoError(t, json.Unmarshal(b.Error.Details, &d))
	assert.Len(t, d.Invalid, 100, "listing capped")
	assert.Equal(t, 152, d.InvalidCount)
	env.assertNothingStored(t)
	assert.Equal(t, 2.0, env.metric(t, "opsflow_ingest_batches_total", "result", "invalid"))
	assert.Equal(t, 10000.0, env.metric(t, "opsflow_ingest_events_total", "result", "rejected"))
}

func TestIngestBodyErrors(t *testing.T) {
	const maxBody, maxEvents = 64 << 10, 50
	env := newIngestEnv(t, func(c *config.Config) { c.IngestMaxBodyBytes, c.IngestMaxEvents = maxBody, maxEvents })
	valid := jsonArray(t, events(3, testNow))
	bomb := gzipped(t, append(append([]byte("["), bytes.Repeat([]byte(" "), 20<<20)...), ']'))
	require.Less(t, len(bomb), maxBody, "the bomb itself is small")
	padded := append(append([]byte("["), bytes.Repeat([]byte(" "), maxBody)...), ']')

	tests := []struct {
		name     string
		body     []byte
		headers  map[string]string
		chunked  bool
		status   int
		code     string
		contains string
	}{
		{"syntax error", []byte(`[{"ts": "x",}]`), nil, false, 400, "invalid_body", "byte offset 12"},
		{"truncated array", valid[:len(valid)-5], nil, false, 400, "invalid_body", "ends in the middle"},
		{"unclosed array", valid[:len(valid)-1], nil, false, 400, "invalid_body", "ends in the middle"},
		{"trailing data", append(append([]byte{}, valid...), []byte(` {}`)...), nil, false, 400, "invalid_body", "after the array"},
		{"bad ndjson line", []byte("{\"ts\":\"a\"}\n{\"ts\":\"b\"}\n{\"ts\" \"c\"}\n"), map[string]string{echo.HeaderContentType: "application/x-ndjson"}, false, 400, "invalid_body", "line 3"},
		{"not json", []byte("hello"), nil, false, 400, "invalid_body", "malformed JSON"},
		{"corrupt gzip", []byte("\x1f\x8b\x08\x00garbage"), map[string]string{echo.HeaderContentEncoding: "gzip"}, false, 400, "invalid_body", "gzip"},
		{"plain body sent as gzip", valid, map[string]string{echo.HeaderContentEncoding: "gzip"}, false, 400, "invalid_body", "gzip"},
		{"empty array", []byte(" [ ] "), nil, false, 400, "empty_batch", "no events"},
		{"empty body", nil, nil, false, 400, "empty_batch", "no events"},
		{"blank ndjson", []byte("\n\n"), map[string]string{echo.HeaderContentType: "application/x-ndjson"}, false, 400, "empty_batch", "no events"},
		{"text/plain", valid, map[string]string{echo.HeaderContentType: "text/plain"}, false, 415, "unsupported_media_type", "application/x-ndjson"},
		{"no content type", valid, map[string]string{echo.HeaderContentType: ""}, false, 415, "unsupported_media_type", "application/json"},
		{"brotli", valid, map[string]string{echo.HeaderContentEncoding: "br"}, false, 415, "unsupported_media_type", "gzip"},
		{"oversized body", padded, nil, false, 413, "body_too_large", "65536"},
		{"oversized chunked body", padded, nil, true, 413, "body_too_large", "65536"},
		{"gzip bomb", bomb, map[string]string{echo.HeaderContentEncoding: "gzip"}, false, 413, "body_too_large", "decompressed"},
		{"too many events", jsonArray(t, events(maxEvents+1, testNow)), nil, false, 413, "too_many_events", "50"},
		{"too many ndjson events", ndjson(t, events(maxEvents+1, testNow)), map[string]string{echo.HeaderContentType: "application/x-ndjson"}, false, 413, "too_many_events", "50"},
		{"bad idempotency key", valid, map[string]string{"Idempotency-Key": "caf\u00e9"}, false, 400, "invalid_parameter", "Idempotency-Key"},
		{"long idempotency key", valid, map[string]string{"Idempotency-Key": strings.Repeat("k", 201)}, false, 400, "invalid_parameter", "Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec *httptest.ResponseRecorder
			if tt.chunked {
				rec = env.postChunked(t, tt.body)
			} else {
				rec = env.post(t, tt.body, tt.headers)
			}
			b := decodeErr(t, rec, tt.status, tt.code)
			assert.Contains(t, b.Error.Message, tt.contains)
			env.assertNothingStored(t)
		})
	}
	t.Run("exactly at the limits", func(t *testing.T) {
		decodeOK(t, env.post(t, jsonArray(t, events(maxEvents, testNow)), nil))
	})
}

// postChunked sends a body of unknown length, so only the reader-side limit
// can stop it.
func (env *ingestEnv) postChunked(t *testing.T, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/ingest/requests", io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+env.ingestKey)
	req.Header.Set(echo.HeaderContentType, "application/json")
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	return rec
}

func TestIngestFormats(t *testing.T) {
	env := newIngestEnv(t, nil)
	evs := events(3, testNow)
	one, err := json.Marshal(evs[0])
	require.NoError(t, err)
	tests := []struct {
		name    string
		body    []byte
		headers map[string]string
		stored  int
	}{
		{"json array with charset", jsonArray(t, evs), map[string]string{echo.HeaderContentType: "application/json; charset=utf-8"}, 3},
		{"ndjson", ndjson(t, evs), map[string]string{echo.HeaderContentType: "application/x-ndjson"}, 3},
		{"jsonl without final newline", bytes.TrimSpace(ndjson(t, evs)), map[string]string{echo.HeaderContentType: "application/jsonl"}, 3},
		{"ndjson with blank lines and CRLF", bytes.ReplaceAll(ndjson(t, evs), []byte("\n"), []byte("\r\n\r\n")), map[string]string{echo.HeaderContentType: "application/x-ndjson"}, 3},
		{"single object as application/json", one, nil, 1},
		{"objects as application/json", ndjson(t, evs), nil, 3},
		{"gzip array", gzipped(t, jsonArray(t, evs)), map[string]string{echo.HeaderContentEncoding: "gzip"}, 3},
		{"gzip ndjson", gzipped(t, ndjson(t, evs)), map[string]string{echo.HeaderContentType: "application/x-ndjson", echo.HeaderContentEncoding: "gzip"}, 3},
	}
	var total int64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := decodeOK(t, env.post(t, tt.body, tt.headers))
			assert.Equal(t, tt.stored, res.Stored)
			total += int64(tt.stored)
			assert.Equal(t, total, env.count(t, `SELECT count(*) FROM request_logs`))
		})
	}
}

func TestIngestIdempotency(t *testing.T) {
	env := newIngestEnv(t, nil)
	body := jsonArray(t, events(10, testNow))
	key := map[string]string{"Idempotency-Key": "batch-0001"}

	first := env.post(t, body, key)
	res := decodeOK(t, first)
	assert.Equal(t, 10, res.Stored)
	assert.Empty(t, first.Header().Get("Idempotent-Replayed"))

	second := env.post(t, body, key)
	require.Equal(t, http.StatusOK, second.Code)
	assert.Equal(t, first.Body.String(), second.Body.String())
	assert.Equal(t, "true", second.Header().Get("Idempotent-Replayed"))

	// The same events gzipped are the same request.
	third := env.post(t, gzipped(t, body), map[string]string{"Idempotency-Key": "batch-0001", echo.HeaderContentEncoding: "gzip"})
	assert.Equal(t, first.Body.String(), third.Body.String())
	assert.Equal(t, "true", third.Header().Get("Idempotent-Replayed"))

	assert.Equal(t, int64(10), env.count(t, `SELECT count(*) FROM request_logs`))
	assert.Equal(t, int64(1), env.count(t, `SELECT count(*) FROM ingest_batches`))
	assert.Equal(t, 2.0, env.metric(t, "opsflow_ingest_batches_total", "result", "replayed"))

	other := jsonArray(t, events(2, testNow))
	decodeErr(t, env.post(t, other, key), http.StatusUnprocessableEntity, "idempotency_key_reused")
	assert.Equal(t, int64(10), env.count(t, `SELECT count(*) FROM request_logs`))

	// Keys are scoped by caller: another key may use the same name.
	otherKey, _, err := db.CreateAPIKey(context.Background(), env.db.Bun, "gateway-2", []string{db.ScopeIngest})
	require.NoError(t, err)
	res2 := decodeOK(t, env.post(t, other, map[string]string{"Idempotency-Key": "batch-0001", echo.HeaderAuthorization: "Bearer " + otherKey}))
	assert.NotEqual(t, res.BatchID, res2.BatchID)

	// Only stored batches are remembered: a key first sent with a bad batch
	// is free for the corrected one.
	bad := events(2, testNow)
	delete(bad[1], "ts")
	fresh := map[string]string{"Idempotency-Key": "batch-0002"}
	decodeErr(t, env.post(t, jsonArray(t, bad), fresh), http.StatusUnprocessableEntity, "invalid_events")
	assert.Equal(t, 2, decodeOK(t, env.post(t, other, fresh)).Stored)
	assert.Equal(t, int64(14), env.count(t, `SELECT count(*) FROM request_logs`))
}

// TestIngestIdempotencyRace sends one batch with one key from 8 goroutines at
// once: it must be stored once and every caller must get the same answer.
func TestIngestIdempotencyRace(t *testing.T) {
	env := newIngestEnv(t, nil)
	body := jsonArray(t, events(2000, testNow))
	const callers = 8
	recs := make([]*httptest.ResponseRecorder, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range recs {
		wg.Go(func() {
			<-start
			recs[i] = env.post(t, body, map[string]string{"Idempotency-Key": "race"})
		})
	}
	close(start)
	wg.Wait()

	replays := 0
	for _, rec := range recs {
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, recs[0].Body.String(), rec.Body.String())
		if rec.Header().Get("Idempotent-Replayed") == "true" {
			replays++
		}
	}
	assert.Equal(t, callers-1, replays)
	assert.Equal(t, int64(2000), env.count(t, `SELECT count(*) FROM request_logs`))
	assert.Equal(t, int64(1), env.count(t, `SELECT count(*) FROM ingest_batches`))
}

// TestIngestRecreatesDroppedPartition covers retention dropping a partition
// the server still believes exists.
func TestIngestRecreatesDroppedPartition(t *testing.T) {
	env := newIngestEnv(t, nil)
	decodeOK(t, env.post(t, jsonArray(t, events(5, testNow)), nil))
	_, err := env.db.Pool.Exec(context.Background(), `DROP TABLE request_logs_p20261122`)
	require.NoError(t, err)
	res := decodeOK(t, env.post(t, jsonArray(t, events(7, testNow)), nil))
	assert.Equal(t, 7, res.Stored)
	assert.Equal(t, int64(7), env.count(t, `SELECT count(*) FROM request_logs`))
}

func TestIngestAuth(t *testing.T) {
	env := newIngestEnv(t, nil)
	body := jsonArray(t, events(1, testNow))
	tests := []struct {
		name   string
		auth   string
		status int
		code   string
	}{
		{"no key", "", http.StatusUnauthorized, "unauthorized"},
		{"not bearer", "Basic " + env.ingestKey, http.StatusUnauthorized, "unauthorized"},
		{"unknown key", "Bearer opsf_abcdefgh_" + strings.Repeat("a", 52), http.StatusUnauthorized, "unauthorized"},
		{"wrong secret", "Bearer " + flipLast(env.ingestKey), http.StatusUnauthorized, "unauthorized"},
		{"read-only key", "Bearer " + env.readKey, http.StatusForbidden, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := env.post(t, body, map[string]string{echo.HeaderAuthorization: tt.auth})
			decodeErr(t, rec, tt.status, tt.code)
		})
	}
	env.assertNothingStored(t)
}

// flipLast changes a key's last character, keeping its prefix valid.
func flipLast(key string) string {
	last := byte('a')
	if key[len(key)-1] == last {
		last = 'b'
	}
	return key[:len(key)-1] + string(last)
}
