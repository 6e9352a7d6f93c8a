package notify_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/notify"
)

var loopback = []string{"127.0.0.0/8"}

func testMessage() notify.Message {
	return notify.Message{
		ID:        "0193a5b2-7c00-7000-8000-000000000001",
		Kind:      notify.KindAlert,
		CreatedAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Alert: notify.Alert{
			Fingerprint: "rule-7/provider=openai",
			Status:      notify.StatusFiring,
			Severity:    notify.SeverityCritical,
			Title:       "error rate above 5% for openai",
			Summary:     "error rate is 7.5% over the last 5 minutes",
			Labels:      map[string]string{"provider": "openai"},
			Annotations: map[string]string{"runbook_url": "https://runbooks.example/openai"},
			StartsAt:    time.Date(2026, 11, 22, 9, 55, 0, 0, time.UTC),
		},
	}
}

// notifierFor builds a channel's notifier from its JSON configuration, as
// the activity does after opening the sealed row.
func notifierFor(t *testing.T, typ string, cfg any, out *notify.Outbound) notify.Notifier {
	t.Helper()
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	c, err := notify.ParseConfig(typ, raw)
	require.NoError(t, err)
	require.NoError(t, c.Validate(context.Background(), out))
	return c.Notifier(out)
}

type received struct {
	header http.Header
	body   []byte
}

// receiver is a loopback HTTP target answering with status (and headers),
// recording every request.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
}

func newReceiver(t *testing.T, status int, headers map[string]string) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.requests = append(r.requests, received{header: req.Header.Clone(), body: body})
		r.mu.Unlock()
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, http.StatusText(status))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) last(t *testing.T) received {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.requests)
	return r.requests[len(r.requests)-1]
}

func TestWebhookIsSignedAndCarriesTheIdempotencyKey(t *testing.T) {
	const secret = "whsec-0123456789abcdef"
	rcv := newReceiver(t, http.StatusOK, nil)
	n := notifierFor(t, notify.TypeWebhook, map[string]string{"url": rcv.URL + "/hook", "secret": secret}, notify.NewOutbound(loopback))
	m := testMessage()

	require.NoError(t, n.Notify(context.Background(), m))

	got := rcv.last(t)
	assert.Equal(t, m.ID, got.header.Get("Idempotency-Key"))
	assert.Equal(t, "application/json", got.header.Get("Content-Type"))
	// The receiver's side: recompute the HMAC over "<timestamp>.<body>".
	ts := got.header.Get("X-Opsflow-Timestamp")
	_, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(got.body)))
	assert.Equal(t, "v1="+hex.EncodeToString(mac.Sum(nil)), got.header.Get("X-Opsflow-Signature"))

	var body notify.WebhookBody
	require.NoError(t, json.Unmarshal(got.body, &body))
	assert.Equal(t, notify.WebhookBody{Version: "1", ID: m.ID, Kind: m.Kind, CreatedAt: m.CreatedAt, Alert: m.Alert}, body)
}

func TestWebhookWithoutSecretIsUnsigned(t *testing.T) {
	rcv := newReceiver(t, http.StatusAccepted, nil)
	n := notifierFor(t, notify.TypeWebhook, map[string]string{"url": rcv.URL}, notify.NewOutbound(loopback))

	require.NoError(t, n.Notify(context.Background(), testMessage()))

	assert.Empty(t, rcv.last(t).header.Get("X-Opsflow-Signature"))
}

func TestHTTPAnswersAreClassified(t *testing.T) {
	tests := []struct {
		status     int
		headers    map[string]string
		reason     notify.Reason
		permanent  bool
		retryAfter time.Duration
	}{
		{status: http.StatusMovedPermanently, headers: map[string]string{"Location": "http://169.254.169.254/"}, reason: notify.ReasonClientError, permanent: true},
		{status: http.StatusBadRequest, reason: notify.ReasonClientError, permanent: true},
		{status: http.StatusUnauthorized, reason: notify.ReasonAuth, permanent: true},
		{status: http.StatusForbidden, reason: notify.ReasonAuth, permanent: true},
		{status: http.StatusNotFound, reason: notify.ReasonClientError, permanent: true},
		{status: http.StatusGone, reason: notify.ReasonClientError, permanent: true},
		{status: http.StatusRequestTimeout, reason: notify.ReasonTimeout},
		{status: http.StatusTooManyRequests, headers: map[string]string{"Retry-After": "30"}, reason: notify.ReasonRateLimited, retryAfter: 30 * time.Second},
		{status: http.StatusTooManyRequests, reason: notify.ReasonRateLimited},
		{status: http.StatusTooManyRequests, headers: map[string]string{"Retry-After": "soon"}, reason: notify.ReasonRateLimited},
		{status: http.StatusTooManyRequests, headers: map[string]string{"Retry-After": "99999999"}, reason: notify.ReasonRateLimited, retryAfter: 24 * time.Hour},
		{status: http.StatusInternalServerError, reason: notify.ReasonServerError},
		{status: http.StatusBadGateway, reason: notify.ReasonServerError},
		{status: http.StatusServiceUnavailable, headers: map[string]string{"Retry-After": "120"}, reason: notify.ReasonServerError, retryAfter: 2 * time.Minute},
		{status: http.StatusGatewayTimeout, reason: notify.ReasonServerError},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			rcv := newReceiver(t, tt.status, tt.headers)
			n := notifierFor(t, notify.TypeWebhook, map[string]string{"url": rcv.URL}, notify.NewOutbound(loopback))

			err := n.Notify(context.Background(), testMessage())

			var e *notify.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tt.reason, e.Reason)
			assert.Equal(t, tt.permanent, e.Permanent)
			assert.Equal(t, tt.retryAfter, e.RetryAfter)
			assert.Equal(t, tt.status, e.Status)
		})
	}
}

func TestRetryAfterAsHTTPDate(t *testing.T) {
	at := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	rcv := newReceiver(t, http.StatusTooManyRequests, map[string]string{"Retry-After": at})
	n := notifierFor(t, notify.TypeWebhook, map[string]string{"url": rcv.URL}, notify.NewOutbound(loopback))

	err := n.Notify(context.Background(), testMessage())

	var e *notify.Error
	require.ErrorAs(t, err, &e)
	assert.Positive(t, e.RetryAfter)
	assert.LessOrEqual(t, e.RetryAfter, time.Hour)
}

func TestTransportFailuresAreClassifiedWithoutTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedURL := "http://" + ln.Addr().String() + "/services/T000/B000/SECRETTOKEN?key=SECRETQUERY"
	require.NoError(t, ln.Close())

	// Reading the body first lets the server notice the client hanging up.
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer hang.Close()

	tests := []struct {
		name      string
		url       string
		ctx       func() (context.Context, context.CancelFunc)
		reason    notify.Reason
		permanent bool
	}{
		{name: "connection refused", url: closedURL, reason: notify.ReasonNetwork},
		{name: "no answer in time", url: hang.URL + "/SECRETTOKEN", reason: notify.ReasonTimeout,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := notifierFor(t, notify.TypeSlack, map[string]string{"url": tt.url}, notify.NewOutbound(loopback))
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()

			err := n.Notify(ctx, testMessage())

			var e *notify.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tt.reason, e.Reason)
			assert.Equal(t, tt.permanent, e.Permanent)
			assert.NotContains(t, e.Error(), "SECRET")
		})
	}
}

func TestRefusedDestinationIsPermanentAndNeverDialled(t *testing.T) {
	rec := &dialRecorder{}
	// Saved while the allow-list let it through; the worker's allow-list
	// has changed since, and the dial-time check catches it.
	c, err := notify.ParseConfig(notify.TypeWebhook, []byte(`{"url": "http://10.0.0.1/SECRETTOKEN"}`))
	require.NoError(t, err)
	require.NoError(t, c.Validate(context.Background(), notify.NewOutbound([]string{"10.0.0.0/8"})))
	n := c.Notifier(notify.NewOutbound(nil, notify.WithDialer(rec.dial)))

	err = n.Notify(context.Background(), testMessage())

	var e *notify.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, notify.ReasonDNSRefused, e.Reason)
	assert.True(t, e.Permanent)
	assert.NotContains(t, e.Error(), "SECRET")
	assert.Empty(t, rec.addresses())
}

func TestSlackGetsBlockKit(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK, nil)
	n := notifierFor(t, notify.TypeSlack, map[string]string{"url": rcv.URL + "/services/T000/B000/XXXX"}, notify.NewOutbound(loopback))

	require.NoError(t, n.Notify(context.Background(), testMessage()))

	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
		} `json:"blocks"`
	}
	require.NoError(t, json.Unmarshal(rcv.last(t).body, &msg))
	assert.Equal(t, "[FIRING] error rate above 5% for openai", msg.Text)
	require.NotEmpty(t, msg.Blocks)
	assert.Equal(t, "header", msg.Blocks[0].Type)
	assert.Equal(t, "plain_text", msg.Blocks[0].Text.Type)
	assert.Equal(t, "[FIRING] error rate above 5% for openai", msg.Blocks[0].Text.Text)
	assert.Equal(t, "section", msg.Blocks[1].Type)
	assert.Equal(t, "error rate is 7.5% over the last 5 minutes", msg.Blocks[1].Text.Text)
	assert.Equal(t, "context", msg.Blocks[len(msg.Blocks)-1].Type)
}

func TestPagerDutyTriggersAndResolvesByFingerprint(t *testing.T) {
	const key = "R0UT1NGK3Y0123456789abcdefABCDEF"
	rcv := newReceiver(t, http.StatusAccepted, nil)
	n := notifierFor(t, notify.TypePagerDuty, map[string]string{"routing_key": key, "url": rcv.URL + "/v2/enqueue"}, notify.NewOutbound(loopback))
	firing := testMessage()
	resolved := testMessage()
	resolved.ID = "0193a5b2-7c00-7000-8000-000000000002"
	resolved.Alert.Status = notify.StatusResolved

	type event struct {
		RoutingKey  string `json:"routing_key"`
		EventAction string `json:"event_action"`
		DedupKey    string `json:"dedup_key"`
		Payload     *struct {
			Summary  string `json:"summary"`
			Source   string `json:"source"`
			Severity string `json:"severity"`
		} `json:"payload"`
	}
	var events []event
	for _, m := range []notify.Message{firing, resolved} {
		require.NoError(t, n.Notify(context.Background(), m))
		var ev event
		require.NoError(t, json.Unmarshal(rcv.last(t).body, &ev))
		events = append(events, ev)
	}

	assert.Equal(t, "trigger", events[0].EventAction)
	assert.Equal(t, "resolve", events[1].EventAction)
	for _, ev := range events {
		assert.Equal(t, key, ev.RoutingKey)
		assert.Equal(t, firing.Alert.Fingerprint, ev.DedupKey)
	}
	require.NotNil(t, events[0].Payload)
	assert.Equal(t, "critical", events[0].Payload.Severity)
	assert.Equal(t, "[FIRING] error rate above 5% for openai", events[0].Payload.Summary)
	assert.Nil(t, events[1].Payload)
}
