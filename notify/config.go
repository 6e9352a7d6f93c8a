package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/opsflow/opsflow/secrets"
)

// Channel types.
const (
	TypeWebhook   = "webhook"
	TypeSlack     = "slack"
	TypeEmail     = "email"
	TypePagerDuty = "pagerduty"
)

// Types lists every channel type.
var Types = []string{TypeWebhook, TypeSlack, TypeEmail, TypePagerDuty}

// FieldError is invalid channel input, naming the field ("config.url").
type FieldError struct {
	Field  string
	Reason string
	err    error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }
func (e *FieldError) Unwrap() error { return e.err }

// fieldCause reports err, e.g. a refused destination, against field.
func fieldCause(field string, err error) error {
	return &FieldError{Field: field, Reason: err.Error(), err: err}
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// spec is one channel type's configuration.
type spec interface {
	// validate checks the fields, destinations included (SSRF rules).
	validate(ctx context.Context, o *Outbound) error
	// masked is a copy fit for clients and logs.
	masked() spec
	// keepSecrets fills secret fields left empty, or sent back masked, from
	// the stored configuration, so a client can round-trip what it read.
	keepSecrets(old spec)
	notifier(o *Outbound) Notifier
}

// Config is one channel's typed configuration, secrets included. Encoding
// it as JSON, printing or logging it shows the masked form; only Seal sees
// the secrets.
type Config struct {
	typ  string
	spec spec
}

func newSpec(typ string) (spec, error) {
	switch typ {
	case TypeWebhook:
		return &webhookSpec{}, nil
	case TypeSlack:
		return &slackSpec{}, nil
	case TypeEmail:
		return &emailSpec{}, nil
	case TypePagerDuty:
		return &pagerDutySpec{}, nil
	}
	return nil, fieldErr("type", "must be one of %s", strings.Join(Types, ", "))
}

// ParseConfig decodes a channel's configuration object for its type.
// Unknown fields are refused, so a typo is not silently ignored. It does not
// validate: call Validate once secrets have been kept.
func ParseConfig(typ string, raw json.RawMessage) (Config, error) {
	s, err := newSpec(typ)
	if err != nil {
		return Config{}, err
	}
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return Config{}, fieldErr("config", "is required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return Config{}, fieldErr("config", "%s", jsonProblem(err))
	}
	return Config{typ: typ, spec: s}, nil
}

// jsonProblem describes a decoding error without echoing the input, which
// may hold a secret.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Sprintf("field %q must be %s", typeErr.Field, typeErr.Type)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("invalid JSON at offset %d", syntaxErr.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "must be a JSON object"
}

// Type is the channel type.
func (c Config) Type() string { return c.typ }

// Validate checks every field and every destination against the SSRF rules.
func (c Config) Validate(ctx context.Context, o *Outbound) error { return c.spec.validate(ctx, o) }

// KeepSecrets takes, from old, every secret field c leaves empty or masked.
func (c Config) KeepSecrets(old Config) {
	if old.spec != nil && old.typ == c.typ {
		c.spec.keepSecrets(old.spec)
	}
}

// Notifier builds the channel's notifier.
func (c Config) Notifier(o *Outbound) Notifier { return c.spec.notifier(o) }

// MarshalJSON encodes the masked configuration.
func (c Config) MarshalJSON() ([]byte, error) {
	if c.spec == nil {
		return []byte("null"), nil
	}
	return json.Marshal(c.spec.masked())
}

// String shows the masked configuration.
func (c Config) String() string {
	b, _ := c.MarshalJSON()
	return c.typ + string(b)
}

// LogValue logs the masked configuration.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Seal encrypts the whole configuration: only the box's holder sees any of
// it, the non-secret fields included, which keeps the rule simple.
func (c Config) Seal(b *secrets.Box) (secrets.Sealed, error) {
	raw, err := json.Marshal(c.spec)
	if err != nil {
		return secrets.Sealed{}, err
	}
	return b.Seal(raw)
}

// OpenConfig decrypts a configuration sealed by Seal.
func OpenConfig(typ string, b *secrets.Box, s secrets.Sealed) (Config, error) {
	raw, err := b.Open(s)
	if err != nil {
		return Config{}, fmt.Errorf("open channel configuration: %w", err)
	}
	sp, err := newSpec(typ)
	if err != nil {
		return Config{}, err
	}
	if err := json.Unmarshal(raw, sp); err != nil {
		return Config{}, fmt.Errorf("decode channel configuration: %w", err)
	}
	return Config{typ: typ, spec: sp}, nil
}

// MaskURL hides what in a URL may be a token: userinfo, query, fragment and
// the second half of the path. The host and the leading path segments stay
// so an operator can tell channels apart:
// https://hooks.slack.com/services/T000/B000/XXXX -> https://hooks.slack.com/services/T000/****.
func MaskURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return secrets.Mask
	}
	segs := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	keep := segs[:len(segs)/2]
	out := u.Scheme + "://" + u.Host + "/"
	if len(keep) > 0 {
		out += strings.Join(keep, "/") + "/"
	}
	return out + secrets.Mask
}

// keepSecret returns old when v is empty or is old's masked form.
func keepSecret(v, old secrets.String, mask func(string) string) secrets.String {
	if v == "" || v.Reveal() == mask(old.Reveal()) {
		return old
	}
	return v
}

func maskSecret(s string) string {
	if s == "" {
		return ""
	}
	return secrets.Mask
}

func maskedString(s secrets.String) secrets.String { return secrets.String(maskSecret(s.Reveal())) }

func maskedURL(s secrets.String) secrets.String { return secrets.String(MaskURL(s.Reveal())) }

// validateURL checks a required destination URL.
func validateURL(ctx context.Context, o *Outbound, field string, u secrets.String) error {
	if u == "" {
		return fieldErr(field, "is required")
	}
	if err := o.ValidateURL(ctx, u.Reveal()); err != nil {
		return fieldCause(field, err)
	}
	return nil
}
