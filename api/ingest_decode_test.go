package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/loadgen"
)

var decodeLimits = api.IngestLimits{
	MaxBodyBytes: 64 << 10,
	MaxEvents:    50,
	Oldest:       testNow.Add(-720 * time.Hour),
	Newest:       testNow.Add(5 * time.Minute),
}

func TestDecodeBatchNormalises(t *testing.T) {
	body := `[{"ts":"2026-11-22T13:00:00+01:00","provider":"p","status_code":200,"latency_ms":1,
		"client_ip":"fe80::1%eth0","error_message":"a\u0000b","Model":"keys are case-sensitive",
		"tenant":"\u0041\ud83d\ude00\ud800\n\"x\/"}]`
	got, err := api.DecodeBatch(strings.NewReader(body), "application/json", "", decodeLimits)
	require.NoError(t, err)
	require.Len(t, got.Logs, 1)
	l := got.Logs[0]
	assert.Equal(t, time.UTC, l.TS.Location())
	assert.True(t, l.TS.Equal(testNow))
	assert.Equal(t, netip.MustParseAddr("fe80::1"), l.ClientIP)
	assert.Equal(t, "ab", l.ErrorMessage)
	assert.Empty(t, l.Model)
	assert.Equal(t, "A\U0001F600\uFFFD\n\"x/", l.Tenant)
}

func TestDecodeBatchHashIgnoresTransferEncoding(t *testing.T) {
	body := jsonArray(t, events(3, testNow))
	plain, err := api.DecodeBatch(bytes.NewReader(body), "application/json", "", decodeLimits)
	require.NoError(t, err)
	zipped, err := api.DecodeBatch(bytes.NewReader(gzipped(t, body)), "application/json", "gzip", decodeLimits)
	require.NoError(t, err)
	assert.Equal(t, plain, zipped)

	other, err := api.DecodeBatch(bytes.NewReader(jsonArray(t, events(2, testNow))), "application/json", "", decodeLimits)
	require.NoError(t, err)
	assert.NotEqual(t, plain.Hash, other.Hash)
}

// fuzzModes are the ways FuzzDecodeBatch sends its input.
var fuzzModes = []struct{ contentType, encoding string }{
	{"application/json", ""},
	{"application/x-ndjson", ""},
	{"application/json", "gzip"}, // input gzipped by the test
	{"application/json", "gzip"}, // input sent as if it were gzip
	{"text/csv", ""},
}

func FuzzDecodeBatch(f *testing.F) {
	valid := jsonArray(f, events(3, testNow))
	full, err := json.Marshal([]map[string]any{{
		"ts": "2026-11-22T11:59:59.999999999Z", "request_id": "r", "tenant": "t", "api_key": "k",
		"upstream_account": "u", "provider": "p", "model": "m", "endpoint": "/e", "status_code": 0,
		"latency_ms": 0.5, "ttft_ms": 0.25, "input_tokens": 1, "output_tokens": 2, "cached_tokens": 3,
		"cost_usd": 0.0123, "stream": true, "error_type": "timeout", "error_message": strings.Repeat("ü", 1100),
		"client_ip": "192.0.2.1", "extra": map[string]any{"nested": []any{1, "x", nil}},
	}})
	require.NoError(f, err)
	const ok = `"ts":"2026-11-22T12:00:00Z","provider":"p","status_code":200,"latency_ms":1`
	seeds := []string{
		// accepted: array, all fields, NDJSON, escapes and bad UTF-8, nulls and -0, unknown nesting
		string(valid), string(full), string(ndjson(f, events(3, testNow))),
		`[{` + ok + `,"tenant":"\u00e9\ud83d\ude00\ud800x\n","model":"` + "\xff\xc3" + `"}]`,
		`{` + ok + `,"status_code":null,"status_code":0,"ttft_ms":-0,"cost_usd":1E-7,"input_tokens":-0}`,
		`[{` + ok + `,"x":[1,{"y":[true,false,null,-1.5e+3,"\""]}]}]`,
		// empty
		"", "   ", "[]",
		// invalid events: wrong types, ranges, non-objects
		"{}", "[1,2,3]", "null", "[null]", `[{"ts":1}]`, `{"status_code":"200"}`,
		`[{"latency_ms":1e400,"status_code":1e3}]`, `[{"provider":"\u0000"}]`,
		`[{` + ok + `,"status_code":"200","latency_ms":"1","stream":1,"ts":5}]`, `1 2 "x" true null {}[]`,
		// malformed
		"[", "[{]", `[{` + ok + `},]`, `[{` + ok + `}] [`, "[" + strings.Repeat("[", 200) + "]",
		"\x1f\x8b\x08\x00\x00\x00\x00\x00", "\xff\xfe garbage",
	}
	for _, s := range seeds {
		for mode := range fuzzModes {
			f.Add([]byte(s), uint8(mode))
		}
	}
	f.Add(gzipped(f, valid), uint8(3))

	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		m := fuzzModes[int(mode)%len(fuzzModes)]
		body := data
		if int(mode)%len(fuzzModes) == 2 {
			body = gzipped(t, data)
		}
		got, err := api.DecodeBatch(bytes.NewReader(body), m.contentType, m.encoding, decodeLimits)
		// encoding/json is the reference for which bodies are JSON at all.
		differential := int(mode)%len(fuzzModes) <= 2
		array := m.contentType == "application/json" && bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("["))
		if err != nil {
			code := requireClientError(t, err)
			if differential && code == "invalid_body" {
				require.False(t, referenceValid(data, array), "encoding/json accepts what the decoder called malformed")
			}
			if differential && (code == "invalid_events" || code == "empty_batch") {
				require.True(t, referenceValid(data, array), "encoding/json rejects what the decoder accepted")
			}
			return
		}
		require.NotEmpty(t, got.Logs)
		require.LessOrEqual(t, len(got.Logs), decodeLimits.MaxEvents)
		for _, l := range got.Logs {
			requireValidLog(t, l)
		}
		if differential {
			requireSameAsReference(t, data, array, got.Logs)
		}

		// What was accepted, sent again, is accepted unchanged.
		again, err := api.DecodeBatch(bytes.NewReader(encodeLogs(t, got.Logs)), "application/json", "", decodeLimits)
		require.NoError(t, err)
		require.Equal(t, got.Logs, again.Logs)
	})
}

// requireClientError checks err is a well-formed 4xx and returns its code.
func requireClientError(t *testing.T, err error) string {
	t.Helper()
	var apiErr *api.Error
	require.True(t, errors.As(err, &apiErr), "want *api.Error, got %T: %v", err, err)
	require.Contains(t, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity}, apiErr.Status, apiErr.Error())
	require.NotEmpty(t, apiErr.Code)
	if apiErr.Status == http.StatusUnprocessableEntity {
		d, err := json.Marshal(apiErr.Details)
		require.NoError(t, err)
		var details invalidDetails
		require.NoError(t, json.Unmarshal(d, &details))
		require.NotEmpty(t, details.Invalid)
		require.LessOrEqual(t, len(details.Invalid), 100)
		require.Positive(t, details.InvalidCount)
		require.LessOrEqual(t, details.InvalidCount, details.Events)
	}
	return apiErr.Code
}

// referenceValid reports whether encoding/json reads body as one array or as
// a sequence of values.
func referenceValid(body []byte, array bool) bool {
	_, err := referenceDecode(body, array)
	return err == nil
}

// referenceDecode decodes body with encoding/json into generic values.
func referenceDecode(body []byte, array bool) ([]any, error) {
	if array {
		if !json.Valid(body) {
			return nil, errors.New("invalid")
		}
		var out []any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		return out, dec.Decode(&out)
	}
	var out []any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

// requireSameAsReference compares accepted events field by field with
// encoding/json's reading of the same body.
func requireSameAsReference(t *testing.T, body []byte, array bool, logs []db.RequestLog) {
	t.Helper()
	ref, err := referenceDecode(body, array)
	require.NoError(t, err)
	require.Len(t, ref, len(logs))
	for i, v := range ref {
		ev, ok := v.(map[string]any)
		require.True(t, ok, "accepted event %d is %T", i, v)
		str := func(name string) string {
			s, _ := ev[name].(string)
			return s
		}
		num := func(name string) json.Number {
			n, _ := ev[name].(json.Number)
			if n == "" {
				return "0"
			}
			return n
		}
		l := logs[i]
		require.Equal(t,
			[]string{str("request_id"), str("tenant"), str("api_key"), str("upstream_account"), str("provider"), str("model"), str("endpoint"), str("error_type")},
			[]string{l.RequestID, l.Tenant, l.APIKey, l.UpstreamAccount, l.Provider, l.Model, l.Endpoint, l.ErrorType})
		msg := strings.ReplaceAll(str("error_message"), "\x00", "")
		require.True(t, strings.HasPrefix(msg, l.ErrorMessage))
		if len(msg) <= 2048 {
			require.Equal(t, msg, l.ErrorMessage)
		}
		ts, err := time.Parse(time.RFC3339Nano, str("ts"))
		require.NoError(t, err)
		require.True(t, ts.Equal(l.TS))
		for name, got := range map[string]int64{"status_code": int64(l.StatusCode), "input_tokens": l.InputTokens,
			"output_tokens": l.OutputTokens, "cached_tokens": l.CachedTokens} {
			want, err := num(name).Int64()
			require.NoError(t, err, name)
			require.Equal(t, want, got, name)
		}
		for name, got := range map[string]float64{"latency_ms": l.LatencyMs, "cost_usd": l.CostUSD} {
			want, err := num(name).Float64()
			require.NoError(t, err, name)
			require.Equal(t, want, got, name)
		}
		if ttft, ok := ev["ttft_ms"].(json.Number); ok {
			require.NotNil(t, l.TTFTMs)
			want, err := ttft.Float64()
			require.NoError(t, err)
			require.Equal(t, want, *l.TTFTMs)
		} else {
			require.Nil(t, l.TTFTMs)
		}
		stream, _ := ev["stream"].(bool)
		require.Equal(t, stream, l.Stream)
		if ip := str("client_ip"); ip != "" {
			require.Equal(t, netip.MustParseAddr(ip).WithZone(""), l.ClientIP)
		} else {
			require.False(t, l.ClientIP.IsValid())
		}
	}
}

func requireValidLog(t *testing.T, l db.RequestLog) {
	t.Helper()
	require.False(t, l.TS.Before(decodeLimits.Oldest) || l.TS.After(decodeLimits.Newest), l.TS)
	require.Equal(t, time.UTC, l.TS.Location())
	require.NotEmpty(t, l.Provider)
	require.True(t, l.StatusCode == 0 || (l.StatusCode >= 100 && l.StatusCode <= 599), l.StatusCode)
	require.GreaterOrEqual(t, l.LatencyMs, 0.0)
	if l.TTFTMs != nil {
		require.GreaterOrEqual(t, *l.TTFTMs, 0.0)
	}
	for _, n := range []int64{l.InputTokens, l.OutputTokens, l.CachedTokens} {
		require.GreaterOrEqual(t, n, int64(0))
	}
	require.GreaterOrEqual(t, l.CostUSD, 0.0)
	require.LessOrEqual(t, len(l.RequestID), 128)
	for _, s := range []string{l.Tenant, l.APIKey, l.UpstreamAccount, l.Provider, l.Model, l.ErrorType} {
		require.LessOrEqual(t, len(s), 256)
	}
	require.LessOrEqual(t, len(l.ErrorMessage), 2048)
	for _, s := range []string{l.RequestID, l.Tenant, l.APIKey, l.UpstreamAccount, l.Provider, l.Model, l.Endpoint, l.ErrorType, l.ErrorMessage} {
		require.True(t, utf8.ValidString(s))
		require.NotContains(t, s, "\x00")
	}
	require.Empty(t, l.ClientIP.Zone())
}

// wireLog is the ingest wire format of a db.RequestLog.
type wireLog struct {
	TS              string   `json:"ts"`
	RequestID       string   `json:"request_id,omitempty"`
	Tenant          string   `json:"tenant,omitempty"`
	APIKey          string   `json:"api_key,omitempty"`
	UpstreamAccount string   `json:"upstream_account,omitempty"`
	Provider        string   `json:"provider"`
	Model           string   `json:"model,omitempty"`
	Endpoint        string   `json:"endpoint,omitempty"`
	StatusCode      int16    `json:"status_code"`
	LatencyMs       float64  `json:"latency_ms"`
	TTFTMs          *float64 `json:"ttft_ms,omitempty"`
	InputTokens     int64    `json:"input_tokens,omitempty"`
	OutputTokens    int64    `json:"output_tokens,omitempty"`
	CachedTokens    int64    `json:"cached_tokens,omitempty"`
	CostUSD         float64  `json:"cost_usd"`
	Stream          bool     `json:"stream,omitempty"`
	ErrorType       string   `json:"error_type,omitempty"`
	ErrorMessage    string   `json:"error_message,omitempty"`
	ClientIP        string   `json:"client_ip,omitempty"`
}

func encodeLogs(t *testing.T, logs []db.RequestLog) []byte {
	t.Helper()
	out := make([]wireLog, len(logs))
	for i, l := range logs {
		w := wireLog{
			TS: l.TS.Format(time.RFC3339Nano), RequestID: l.RequestID, Tenant: l.Tenant, APIKey: l.APIKey,
			UpstreamAccount: l.UpstreamAccount, Provider: l.Provider, Model: l.Model, Endpoint: l.Endpoint,
			StatusCode: l.StatusCode, LatencyMs: l.LatencyMs, TTFTMs: l.TTFTMs, InputTokens: l.InputTokens,
			OutputTokens: l.OutputTokens, CachedTokens: l.CachedTokens, CostUSD: l.CostUSD, Stream: l.Stream,
			ErrorType: l.ErrorType, ErrorMessage: l.ErrorMessage,
		}
		if l.ClientIP.IsValid() {
			w.ClientIP = l.ClientIP.String()
		}
		out[i] = w
	}
	b, err := json.Marshal(out)
	require.NoError(t, err)
	return b
}

// benchEvents is a realistic 5,000-event batch: a mix of tenants, models,
// errors and streaming calls, about 330 bytes an event.
func benchEvents() []map[string]any {
	evs := events(5000, testNow)
	for i, ev := range evs {
		ev["tenant"] = fmt.Sprintf("tenant-%d", i%40)
		ev["model"] = []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-pro"}[i%4]
		ev["upstream_account"] = fmt.Sprintf("acct-%d", i%7)
		ev["latency_ms"] = float64(i%3000) + 0.25
		ev["ttft_ms"] = float64(i % 400)
		ev["cost_usd"] = float64(i%5000) / 1e5
		ev["stream"] = i%3 == 0
		ev["client_ip"] = fmt.Sprintf("10.0.%d.%d", i%250, i%200)
		if i%20 == 0 {
			ev["status_code"] = 429
			ev["error_type"] = "rate_limited"
			ev["error_message"] = "Rate limit reached for requests per minute. Please try again in 20s."
		}
	}
	return evs
}

// BenchmarkDecodeBatch5000 measures decoding and validating a 5,000-event
// batch; ns/event is the figure docs/benchmarks.md quotes.
func BenchmarkDecodeBatch5000(b *testing.B) {
	evs := benchEvents()
	lim := decodeLimits
	lim.MaxEvents, lim.MaxBodyBytes = 10000, 32<<20
	cases := []struct {
		name, contentType, encoding string
		body                        []byte
	}{
		{"array", "application/json", "", jsonArray(b, evs)},
		{"ndjson", "application/x-ndjson", "", ndjson(b, evs)},
		{"gzip_array", "application/json", "gzip", gzipped(b, jsonArray(b, evs))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				got, err := api.DecodeBatch(bytes.NewReader(c.body), c.contentType, c.encoding, lim)
				if err != nil || len(got.Logs) != len(evs) {
					b.Fatalf("decode: %v (%d events)", err, len(got.Logs))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
		})
	}
	// The yardstick: encoding/json decoding the same array into typed
	// structs, with no validation at all.
	b.Run("array_encoding_json_reference", func(b *testing.B) {
		body := jsonArray(b, evs)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var got []loadgen.Event
			if err := json.Unmarshal(body, &got); err != nil || len(got) != len(evs) {
				b.Fatalf("decode: %v (%d events)", err, len(got))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
	})
}
