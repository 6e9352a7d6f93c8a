package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/opsflow/opsflow/workflows"
)

// Reason classifies a failed delivery for metrics and operators.
type Reason string

// Failure reasons, the label values of opsflow_notifications_failed_total.
const (
	ReasonAuth        Reason = "auth"         // 401/403, SMTP authentication
	ReasonRateLimited Reason = "rate_limited" // 429
	ReasonTimeout     Reason = "timeout"      // no answer in time, 408
	ReasonServerError Reason = "server_error" // 5xx, SMTP 4xx
	ReasonClientError Reason = "client_error" // other 4xx, 3xx, SMTP 5xx
	ReasonDNSRefused  Reason = "dns_refused"  // refused by the SSRF rules, or the name did not resolve
	ReasonNetwork     Reason = "network"      // connection refused or reset, TLS failure
	ReasonInternal    Reason = "internal"     // opsflow's own side: configuration, database
)

// Reasons lists every reason, for documentation and tests.
var Reasons = []Reason{ReasonAuth, ReasonRateLimited, ReasonTimeout, ReasonServerError,
	ReasonClientError, ReasonDNSRefused, ReasonNetwork, ReasonInternal}

// Error is a failed delivery, as every Notifier reports one (after
// Alertmanager's notify package): the reason, whether another attempt may
// succeed, and how long the target asked us to wait. Its message never holds
// a secret: no URL path or query, no credential.
type Error struct {
	Reason Reason
	// Permanent means no retry can succeed until someone changes the
	// channel or the target (4xx other than 408/429, refused destination).
	Permanent bool
	// RetryAfter is the target's Retry-After on 429/503, zero otherwise.
	RetryAfter time.Duration
	// Status is the HTTP status (or SMTP reply code), 0 without an answer.
	Status int
	Msg    string
	err    error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.err }

// AsError returns err as an *Error, classifying anything else as a
// retryable internal failure.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Reason: ReasonInternal, Msg: err.Error(), err: err}
}

// bodySnippet bounds how much of a failed answer's body goes into the error:
// enough for "invalid_payload" or "channel_not_found".
const bodySnippet = 200

// checkResponse turns a non-2xx HTTP answer into an *Error.
func checkResponse(resp *http.Response, now time.Time) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	e := &Error{Status: resp.StatusCode}
	code := resp.StatusCode
	status := fmt.Sprintf("%d %s", code, http.StatusText(code))
	switch {
	case code >= 300 && code < 400:
		e.Reason, e.Permanent = ReasonClientError, true
		e.Msg = fmt.Sprintf("target answered %s; redirects are not followed", status)
		return e
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e.Reason, e.Permanent = ReasonAuth, true
	case code == http.StatusRequestTimeout:
		e.Reason = ReasonTimeout
	case code == http.StatusTooManyRequests:
		e.Reason = ReasonRateLimited
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	case code == http.StatusServiceUnavailable:
		e.Reason = ReasonServerError
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	case code >= 500:
		e.Reason = ReasonServerError
	default:
		e.Reason, e.Permanent = ReasonClientError, true
	}
	e.Msg = "target answered " + status
	if snippet := readSnippet(resp.Body); snippet != "" {
		e.Msg += ": " + snippet
	}
	if e.RetryAfter > 0 {
		e.Msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return e
}

// readSnippet reads the start of a body, keeping printable characters only
// and collapsing whitespace: it ends up in logs and the Temporal UI.
func readSnippet(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, bodySnippet))
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(b))
	return strings.Join(strings.Fields(s), " ")
}

// parseRetryAfter reads delay-seconds or an HTTP date, capped at
// workflows.MaxRetryAfter; zero when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		d = time.Duration(min(secs, int64(workflows.MaxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, workflows.MaxRetryAfter))
}

// transportError classifies a failure to get an answer at all. URL errors
// are unwrapped first: their message repeats the whole URL, tokens included.
func transportError(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	var refusedErr *RefusedError
	var dnsErr *DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &refusedErr):
		return &Error{Reason: ReasonDNSRefused, Permanent: true, Msg: refusedErr.Error(), err: err}
	case errors.As(err, &dnsErr):
		return &Error{Reason: ReasonDNSRefused, Msg: dnsErr.Error(), err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return &Error{Reason: ReasonTimeout, Msg: fmt.Sprintf("no answer within %s", Timeout), err: err}
	}
	return &Error{Reason: ReasonNetwork, Msg: "cannot reach the target: " + err.Error(), err: err}
}
