package api

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/opsflow/opsflow/db"
)

// Bounds on event fields. Identifiers are bounded so one gateway bug cannot
// bloat every rollup key; the free-text error message is truncated instead,
// because losing the event over a long message would be worse.
const (
	maxRequestIDLen    = 128
	maxFieldLen        = 256
	maxEndpointLen     = 1024
	maxErrorMessageLen = 2048
	// maxTokens and maxCostUSD keep per-minute sums far from the bigint and
	// numeric(24,10) column limits.
	maxTokens  = 1_000_000_000_000
	maxCostUSD = 1_000_000_000_000
	// maxInvalidListed caps the per-event problems listed in a 422.
	maxInvalidListed = 100
)

const (
	mediaJSON   = "application/json"
	mediaNDJSON = "application/x-ndjson"
	mediaJSONL  = "application/jsonl"
)

// ingestLimits are the bounds a batch is checked against.
type ingestLimits struct {
	MaxBodyBytes int64
	MaxEvents    int
	// Events must have Oldest <= ts <= Newest.
	Oldest, Newest time.Time
}

// decodedBatch is a fully validated batch.
type decodedBatch struct {
	Logs []db.RequestLog
	// Hash is the SHA-256 of the decompressed body, so the same events sent
	// with and without gzip count as the same request.
	Hash [sha256.Size]byte
}

// invalidEvent names one problem of one event; Index counts events from 0
// in body order.
type invalidEvent struct {
	Index  int    `json:"index"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

type invalidEventsDetails struct {
	Invalid      []invalidEvent `json:"invalid"`
	InvalidCount int            `json:"invalid_count"`
	Events       int            `json:"events"`
}

var errBodyTooLarge = errors.New("body too large")

// maxPooledBody keeps rare huge buffers out of the pool.
const maxPooledBody = 64 << 20

// bodyPool recycles body buffers: decoded strings are copies, so a buffer is
// free again as soon as decoding ends, and batches of several MB would
// otherwise churn the heap.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decodeBatch reads, decodes and validates a whole ingest body. Every error
// it returns is an *Error with a 4xx status; the batch is either entirely
// valid or rejected.
func decodeBatch(body io.Reader, contentType, contentEncoding string, lim ingestLimits) (decodedBatch, error) {
	media, err := ingestMediaType(contentType)
	if err != nil {
		return decodedBatch{}, err
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBody {
			bodyPool.Put(buf)
		}
	}()
	if err := readBody(buf, body, contentEncoding, lim.MaxBodyBytes); err != nil {
		return decodedBatch{}, err
	}
	raw := buf.Bytes()
	logs, err := decodeEvents(raw, media, lim)
	if err != nil {
		return decodedBatch{}, err
	}
	return decodedBatch{Logs: logs, Hash: sha256.Sum256(raw)}, nil
}

func ingestMediaType(contentType string) (string, error) {
	media, _, err := mime.ParseMediaType(contentType)
	if err == nil {
		switch media {
		case mediaJSON, mediaNDJSON, mediaJSONL:
			return media, nil
		}
	}
	return "", Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
		"Content-Type must be %s (a JSON array of events), %s or %s (one event per line)",
		mediaJSON, mediaNDJSON, mediaJSONL)
}

// readBody copies the body into buf, decompressing gzip. Both the raw and the
// decompressed stream are bounded, so a small gzip bomb is cut off after
// maxBytes of output.
func readBody(buf *bytes.Buffer, body io.Reader, contentEncoding string, maxBytes int64) error {
	tooLarge := Errorf(http.StatusRequestEntityTooLarge, "body_too_large",
		"request body exceeds %d bytes (compressed or decompressed)", maxBytes)
	r := io.Reader(&limitedReader{r: body, n: maxBytes})
	what := "body"
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
	case "gzip", "x-gzip":
		what = "gzip body"
		zr, err := gzip.NewReader(r)
		if err != nil {
			if errors.Is(err, errBodyTooLarge) {
				return tooLarge
			}
			return Errorf(http.StatusBadRequest, "invalid_body", "body is not valid gzip")
		}
		r = &limitedReader{r: zr, n: maxBytes}
	default:
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Encoding must be gzip or absent")
	}
	if _, err := buf.ReadFrom(r); err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return tooLarge
		}
		// gzip corruption and truncated uploads alike: the body as received
		// is not a usable batch.
		return Errorf(http.StatusBadRequest, "invalid_body", "reading the %s failed: %s", what, bodyReadReason(err))
	}
	return nil
}

func bodyReadReason(err error) string {
	switch {
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader):
		return "corrupt gzip data"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	}
	return "read error"
}

// limitedReader fails with errBodyTooLarge once more than n bytes have been
// read, unlike io.LimitReader, which would silently truncate.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

// decodeEvents parses either a JSON array of events or a stream of JSON
// values (NDJSON, or a single object) and validates each event, collecting
// every problem before deciding.
func decodeEvents(raw []byte, media string, lim ingestLimits) ([]db.RequestLog, error) {
	r := jsonReader{buf: raw, interned: make(map[string]string, 64)}
	r.skipSpace()
	if r.pos == len(raw) {
		return nil, errEmptyBatch
	}
	array := media == mediaJSON && raw[r.pos] == '['
	more := true
	if array {
		r.pos++
		r.skipSpace()
		if r.pos < len(raw) && raw[r.pos] == ']' {
			r.pos++
			more = false
		}
	}
	v := validator{lim: lim}
	logs := make([]db.RequestLog, 0, min(lim.MaxEvents, estimateEvents(len(raw))))
	var w wireEvent
	for more {
		if v.index == lim.MaxEvents {
			return nil, Errorf(http.StatusRequestEntityTooLarge, "too_many_events",
				"batch has more than %d events, the limit per request", lim.MaxEvents)
		}
		w = wireEvent{}
		isObject, err := r.event(&w)
		if err != nil {
			return nil, syntaxError(raw, err)
		}
		if l, ok := v.event(&w, isObject); ok {
			logs = append(logs, l)
		}
		r.skipSpace()
		switch {
		case !array:
			more = r.pos < len(raw)
		case r.pos < len(raw) && raw[r.pos] == ',':
			r.pos++
			r.skipSpace()
		case r.pos < len(raw) && raw[r.pos] == ']':
			r.pos++
			more = false
		default:
			return nil, syntaxError(raw, r.unexpected("after an array element (expected ',' or ']')"))
		}
	}
	r.skipSpace()
	if r.pos < len(raw) {
		return nil, syntaxError(raw, r.errorf("unexpected data after the array"))
	}
	total := len(logs) + v.invalidEvents
	switch {
	case v.invalidEvents > 0:
		return nil, &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_events",
			Message: fmt.Sprintf("%d of %d events are invalid; nothing was stored", v.invalidEvents, total),
			Details: invalidEventsDetails{Invalid: v.problems, InvalidCount: v.invalidEvents, Events: total}}
	case total == 0:
		return nil, errEmptyBatch
	}
	return logs, nil
}

var errEmptyBatch = Errorf(http.StatusBadRequest, "empty_batch", "the batch holds no events")

// estimateEvents sizes the result slice from the body, assuming events of
// about 200 bytes, so large batches do not regrow it repeatedly.
func estimateEvents(bodyLen int) int { return bodyLen/200 + 1 }

// syntaxError reports malformed JSON with its position, so a client can find
// the bad byte in a multi-megabyte body.
func syntaxError(raw []byte, err *jsonSyntaxError) error {
	line := bytes.Count(raw[:err.offset], []byte{'\n'}) + 1
	return &Error{Status: http.StatusBadRequest, Code: "invalid_body",
		Message: fmt.Sprintf("malformed JSON at line %d (byte offset %d): %s", line, err.offset, err.msg),
		Details: map[string]int{"line": line, "offset": err.offset}}
}

// field identifies an event field. String fields come first, then integers,
// floats and the one boolean, so each kind indexes its own array.
type field uint8

const (
	fTS field = iota
	fRequestID
	fTenant
	fAPIKey
	fUpstreamAccount
	fProvider
	fModel
	fEndpoint
	fErrorType
	fErrorMessage
	fClientIP
	fStatusCode
	fInputTokens
	fOutputTokens
	fCachedTokens
	fLatencyMs
	fTTFTMs
	fCostUSD
	fStream
	numFields

	firstInt   = fStatusCode
	firstFloat = fLatencyMs
	fUnknown   = numFields
)

var fieldNames = [numFields]string{
	"ts", "request_id", "tenant", "api_key", "upstream_account", "provider", "model", "endpoint",
	"error_type", "error_message", "client_ip", "status_code", "input_tokens", "output_tokens",
	"cached_tokens", "latency_ms", "ttft_ms", "cost_usd", "stream",
}

// lookupField matches a key exactly; unknown keys are ignored because
// gateways add fields of their own.
func lookupField(key []byte) field {
	switch string(key) {
	case "ts":
		return fTS
	case "request_id":
		return fRequestID
	case "tenant":
		return fTenant
	case "api_key":
		return fAPIKey
	case "upstream_account":
		return fUpstreamAccount
	case "provider":
		return fProvider
	case "model":
		return fModel
	case "endpoint":
		return fEndpoint
	case "error_type":
		return fErrorType
	case "error_message":
		return fErrorMessage
	case "client_ip":
		return fClientIP
	case "status_code":
		return fStatusCode
	case "input_tokens":
		return fInputTokens
	case "output_tokens":
		return fOutputTokens
	case "cached_tokens":
		return fCachedTokens
	case "latency_ms":
		return fLatencyMs
	case "ttft_ms":
		return fTTFTMs
	case "cost_usd":
		return fCostUSD
	case "stream":
		return fStream
	}
	return fUnknown
}

// interned fields repeat across a batch (a few tenants, providers, models),
// so one string per distinct value serves every event.
func interned(f field) bool {
	switch f {
	case fTenant, fAPIKey, fUpstreamAccount, fProvider, fModel, fEndpoint, fErrorType:
		return true
	}
	return false
}

// wireEvent is an event as sent. A field given as null or left out is
// absent; a field of the wrong JSON type is wrong. A repeated key's last
// occurrence wins.
type wireEvent struct {
	str     [firstInt]string
	ints    [firstFloat - firstInt]int64
	floats  [fStream - firstFloat]float64
	stream  bool
	present uint32
	wrong   uint32
}

func (w *wireEvent) has(f field) bool     { return w.present&(1<<f) != 0 }
func (w *wireEvent) isWrong(f field) bool { return w.wrong&(1<<f) != 0 }

func (w *wireEvent) set(f field) {
	w.present |= 1 << f
	w.wrong &^= 1 << f
}

func (w *wireEvent) clear(f field) {
	w.present &^= 1 << f
	w.wrong &^= 1 << f
	switch {
	case f < firstInt:
		w.str[f] = ""
	case f < firstFloat:
		w.ints[f-firstInt] = 0
	case f < fStream:
		w.floats[f-firstFloat] = 0
	default:
		w.stream = false
	}
}

func (w *wireEvent) markWrong(f field) {
	w.clear(f)
	w.wrong |= 1 << f
}

// wrongTypeReason names what a field must hold when its JSON value does not fit.
func wrongTypeReason(f field) string {
	switch {
	case f < firstInt:
		return "must be a JSON string"
	case f < firstFloat:
		return "must be a JSON integer within range"
	case f < fStream:
		return "must be a JSON number within range"
	}
	return "must be a JSON boolean"
}

// validator checks events one by one and accumulates their problems.
type validator struct {
	lim           ingestLimits
	index         int
	invalidEvents int
	problems      []invalidEvent
	bad           bool
}

func (v *validator) fail(f field, reason string) {
	v.failNamed(fieldNames[f], reason)
}

func (v *validator) failNamed(name, reason string) {
	v.bad = true
	if len(v.problems) < maxInvalidListed {
		v.problems = append(v.problems, invalidEvent{Index: v.index, Field: name, Reason: reason})
	}
}

// event validates w and converts it.
func (v *validator) event(w *wireEvent, isObject bool) (db.RequestLog, bool) {
	v.bad = false
	defer func() {
		v.index++
		if v.bad {
			v.invalidEvents++
		}
	}()
	if !isObject {
		v.failNamed("", "must be a JSON object")
		return db.RequestLog{}, false
	}
	for f := range numFields {
		if w.isWrong(f) {
			v.fail(f, wrongTypeReason(f))
		}
	}
	l := db.RequestLog{
		TS:              v.timestamp(w),
		RequestID:       v.str(w, fRequestID, maxRequestIDLen),
		Tenant:          v.str(w, fTenant, maxFieldLen),
		APIKey:          v.str(w, fAPIKey, maxFieldLen),
		UpstreamAccount: v.str(w, fUpstreamAccount, maxFieldLen),
		Provider:        v.str(w, fProvider, maxFieldLen),
		Model:           v.str(w, fModel, maxFieldLen),
		Endpoint:        v.str(w, fEndpoint, maxEndpointLen),
		ErrorType:       v.str(w, fErrorType, maxFieldLen),
		ErrorMessage:    sanitizeMessage(w.str[fErrorMessage]),
		LatencyMs:       w.floats[fLatencyMs-firstFloat],
		InputTokens:     v.count(w, fInputTokens),
		OutputTokens:    v.count(w, fOutputTokens),
		CachedTokens:    v.count(w, fCachedTokens),
		CostUSD:         w.floats[fCostUSD-firstFloat],
		Stream:          w.stream,
	}
	if l.Provider == "" && !w.isWrong(fProvider) {
		v.fail(fProvider, "required")
	}
	switch status := w.ints[fStatusCode-firstInt]; {
	case w.isWrong(fStatusCode):
	case !w.has(fStatusCode):
		v.fail(fStatusCode, "required")
	case status != 0 && (status < 100 || status > 599):
		v.fail(fStatusCode, "must be 0 (no response) or 100-599")
	default:
		l.StatusCode = int16(status)
	}
	switch {
	case w.isWrong(fLatencyMs):
	case !w.has(fLatencyMs):
		v.fail(fLatencyMs, "required")
	case l.LatencyMs < 0:
		v.fail(fLatencyMs, "must be >= 0")
	}
	if w.has(fTTFTMs) {
		ttft := w.floats[fTTFTMs-firstFloat]
		if ttft < 0 {
			v.fail(fTTFTMs, "must be >= 0")
		}
		l.TTFTMs = &ttft
	}
	if l.CostUSD < 0 || l.CostUSD > maxCostUSD {
		v.fail(fCostUSD, fmt.Sprintf("must be between 0 and %d", maxCostUSD))
	}
	if ip := w.str[fClientIP]; ip != "" {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			v.fail(fClientIP, "must be an IPv4 or IPv6 address")
		}
		// inet has no zone; the interface name means nothing off the gateway host.
		l.ClientIP = addr.WithZone("")
	}
	return l, !v.bad
}

func (v *validator) timestamp(w *wireEvent) time.Time {
	s := w.str[fTS]
	if s == "" {
		if !w.isWrong(fTS) {
			v.fail(fTS, "required")
		}
		return time.Time{}
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	switch {
	case err != nil:
		v.fail(fTS, "must be an RFC 3339 timestamp such as 2026-01-02T15:04:05.123Z")
	case ts.Before(v.lim.Oldest):
		v.fail(fTS, "older than the accepted age (before "+v.lim.Oldest.Format(time.RFC3339)+")")
	case ts.After(v.lim.Newest):
		v.fail(fTS, "in the future (after "+v.lim.Newest.Format(time.RFC3339)+")")
	}
	return ts.UTC()
}

// str bounds a string field and refuses NUL, which PostgreSQL text cannot hold.
func (v *validator) str(w *wireEvent, f field, maxLen int) string {
	s := w.str[f]
	switch {
	case len(s) > maxLen:
		v.fail(f, fmt.Sprintf("longer than %d bytes", maxLen))
	case strings.IndexByte(s, 0) >= 0:
		v.fail(f, "must not contain NUL characters")
	}
	return s
}

func (v *validator) count(w *wireEvent, f field) int64 {
	n := w.ints[f-firstInt]
	if n < 0 || n > maxTokens {
		v.fail(f, fmt.Sprintf("must be an integer between 0 and %d", maxTokens))
	}
	return n
}

// sanitizeMessage truncates the free-text error message on a UTF-8 boundary
// and drops NULs, so a noisy upstream error never costs the event.
func sanitizeMessage(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) <= maxErrorMessageLen {
		return s
	}
	n := maxErrorMessageLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	// Clone so the stored prefix does not pin the whole long string.
	return strings.Clone(s[:n])
}
