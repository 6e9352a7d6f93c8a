package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/opsflow/opsflow/secrets"
)

// Webhook headers. The signature is hex HMAC-SHA256, keyed with the
// channel's secret, over "<timestamp>.<body>"; receivers recompute it and
// reject stale timestamps to stop replays.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderTimestamp      = "X-Opsflow-Timestamp"
	HeaderSignature      = "X-Opsflow-Signature"
	signaturePrefix      = "v1="
	userAgent            = "opsflow-notify/1"
)

// WebhookBody is the JSON a generic webhook receives (documented in the
// OpenAPI document as WebhookPayload). It is the same for every attempt.
type WebhookBody struct {
	Version   string    `json:"version"`
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"created_at"`
	Alert     Alert     `json:"alert"`
}

type webhookSpec struct {
	URL secrets.String `json:"url"`
	// Secret keys the signature; without one, requests go unsigned.
	Secret secrets.String `json:"secret,omitempty"`
}

func (s *webhookSpec) validate(ctx context.Context, o *Outbound) error {
	if len(s.Secret) > 0 && len(s.Secret) < 16 {
		return fieldErr("config.secret", "must be at least 16 characters")
	}
	return validateURL(ctx, o, "config.url", s.URL)
}

func (s *webhookSpec) masked() spec {
	return &webhookSpec{URL: maskedURL(s.URL), Secret: maskedString(s.Secret)}
}

func (s *webhookSpec) keepSecrets(old spec) {
	o := old.(*webhookSpec)
	s.URL = keepSecret(s.URL, o.URL, MaskURL)
	s.Secret = keepSecret(s.Secret, o.Secret, maskSecret)
}

func (s *webhookSpec) notifier(o *Outbound) Notifier {
	return &webhook{spec: *s, client: o.HTTPClient()}
}

type webhook struct {
	spec   webhookSpec
	client *http.Client
}

func (w *webhook) Notify(ctx context.Context, m Message) error {
	body, err := json.Marshal(WebhookBody{Version: "1", ID: m.ID, Kind: m.Kind, CreatedAt: m.CreatedAt, Alert: m.Alert})
	if err != nil {
		return &Error{Reason: ReasonInternal, Permanent: true, Msg: "encode webhook body: " + err.Error()}
	}
	headers := http.Header{HeaderIdempotencyKey: {m.ID}}
	if w.spec.Secret != "" {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		headers.Set(HeaderTimestamp, ts)
		headers.Set(HeaderSignature, signaturePrefix+Sign(w.spec.Secret.Reveal(), ts, body))
	}
	return postJSON(ctx, w.client, w.spec.URL.Reveal(), body, headers)
}

// Sign computes the webhook signature over timestamp + "." + body.
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// postJSON posts body and classifies the outcome. Errors never repeat the
// URL: it may carry a token.
func postJSON(ctx context.Context, client *http.Client, target string, body []byte, headers http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return &Error{Reason: ReasonInternal, Permanent: true, Msg: "build request: invalid URL " + MaskURL(target)}
	}
	for k, v := range headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		return transportError(err)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp, time.Now()); err != nil {
		return err
	}
	// Drain a little so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}
