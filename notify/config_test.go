package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
)

// Channel configurations with a secret in each; the secrets contain "S3CR3T"
// so a test can look for any of them anywhere.
var secretConfigs = map[string]string{
	notify.TypeWebhook:   `{"url": "https://127.0.0.1/hooks/S3CR3T-path?token=S3CR3T-query", "secret": "S3CR3T-signing-key-0123"}`,
	notify.TypeSlack:     `{"url": "https://127.0.0.1/services/T000/B000/S3CR3TXXXXXXXXXX"}`,
	notify.TypeEmail:     `{"host": "127.0.0.1", "tls": "starttls", "username": "alerts", "password": "S3CR3T-pass", "from": "a@example.com", "to": ["b@example.com"]}`,
	notify.TypePagerDuty: `{"routing_key": "S3CR3TS3CR3TS3CR3TS3CR3TS3CR3T12"}`,
}

func parse(t *testing.T, typ, raw string) notify.Config {
	t.Helper()
	c, err := notify.ParseConfig(typ, json.RawMessage(raw))
	require.NoError(t, err)
	return c
}

func TestConfigNeverShowsItsSecrets(t *testing.T) {
	for typ, raw := range secretConfigs {
		t.Run(typ, func(t *testing.T) {
			c := parse(t, typ, raw)
			require.NoError(t, c.Validate(context.Background(), notify.NewOutbound(loopback)))
			var logs bytes.Buffer
			slog.New(slog.NewJSONHandler(&logs, nil)).Info("channel", "config", c)
			js, err := json.Marshal(map[string]any{"config": c})
			require.NoError(t, err)

			for _, shown := range []string{string(js), logs.String(), fmt.Sprintf("%v %+v %s", c, c, c)} {
				assert.NotContains(t, shown, "S3CR3T")
				assert.Contains(t, shown, secrets.Mask)
			}
		})
	}
}

func TestMaskURL(t *testing.T) {
	tests := map[string]string{
		"https://hooks.slack.com/services/T000/B000/XXXX": "https://hooks.slack.com/services/T000/****",
		"https://example.com/hook":                        "https://example.com/****",
		"https://example.com/":                            "https://example.com/****",
		"https://user:pw@example.com:8443/a/b?token=x#f":  "https://example.com:8443/a/****",
		"not a url": secrets.Mask,
		"":          "",
	}
	for raw, want := range tests {
		assert.Equal(t, want, notify.MaskURL(raw), raw)
	}
}

func TestSealedConfigKeepsItsSecrets(t *testing.T) {
	box, err := secrets.NewBox(bytes.Repeat([]byte{9}, 32))
	require.NoError(t, err)
	for typ, raw := range secretConfigs {
		c := parse(t, typ, raw)
		sealed, err := c.Seal(box)
		require.NoError(t, err)
		assert.NotContains(t, string(sealed.Ciphertext), "S3CR3T")

		opened, err := notify.OpenConfig(typ, box, sealed)
		require.NoError(t, err)
		again, err := opened.Seal(box)
		require.NoError(t, err)
		plain, err := box.Open(again)
		require.NoError(t, err)
		assert.Contains(t, string(plain), "S3CR3T", "the secrets survive the round trip")
	}
}

// TestKeepSecretsOnUpdate: a client sends back what it read (masked) or
// leaves secrets out, and the stored secrets stay; a new value replaces them.
func TestKeepSecretsOnUpdate(t *testing.T) {
	old := parse(t, notify.TypeWebhook, `{"url": "https://127.0.0.1/hooks/old-S3CR3T", "secret": "old-signing-S3CR3T-key"}`)
	masked, err := json.Marshal(old)
	require.NoError(t, err)
	box, err := secrets.NewBox(bytes.Repeat([]byte{9}, 32))
	require.NoError(t, err)
	plain := func(c notify.Config) string {
		s, err := c.Seal(box)
		require.NoError(t, err)
		b, err := box.Open(s)
		require.NoError(t, err)
		return string(b)
	}

	echoed := parse(t, notify.TypeWebhook, string(masked))
	echoed.KeepSecrets(old)
	assert.Equal(t, plain(old), plain(echoed))

	omitted := parse(t, notify.TypeWebhook, `{"url": ""}`)
	omitted.KeepSecrets(old)
	assert.Equal(t, plain(old), plain(omitted))

	replaced := parse(t, notify.TypeWebhook, `{"url": "https://127.0.0.1/hooks/new", "secret": "new-signing-secret-key"}`)
	replaced.KeepSecrets(old)
	assert.Contains(t, plain(replaced), "hooks/new")
	assert.Contains(t, plain(replaced), "new-signing-secret-key")
}

func TestConfigValidationNamesTheField(t *testing.T) {
	tests := []struct {
		typ, raw, field, reason string
	}{
		{"sms", `{}`, "type", "must be one of"},
		{notify.TypeSlack, ``, "config", "is required"},
		{notify.TypeSlack, `{"url": "https://x", "channel": "#ops"}`, "config", `unknown field "channel"`},
		{notify.TypeSlack, `{"url": 7}`, "config", `field "url" must be`},
		{notify.TypeSlack, `{}`, "config.url", "is required"},
		{notify.TypeSlack, `{"url": "https://10.1.2.3/services/x"}`, "config.url", "private address"},
		{notify.TypeWebhook, `{"url": "http://169.254.169.254/"}`, "config.url", "cloud metadata"},
		{notify.TypeWebhook, `{"url": "gopher://127.0.0.1/"}`, "config.url", "not http or https"},
		{notify.TypeWebhook, `{"url": "https://127.0.0.1/", "secret": "short"}`, "config.secret", "at least 16"},
		{notify.TypePagerDuty, `{"routing_key": "abc"}`, "config.routing_key", "32-character"},
		{notify.TypePagerDuty, `{"routing_key": "R0UT1NGK3Y0123456789abcdefABCDEF", "url": "http://[::ffff:10.0.0.1]/"}`, "config.url", "private"},
		{notify.TypeEmail, `{"host": "127.0.0.1", "tls": "ssl", "from": "a@example.com", "to": ["b@example.com"]}`, "config.tls", "none, starttls or tls"},
		{notify.TypeEmail, `{"host": "127.0.0.1", "tls": "none", "username": "u", "password": "p", "from": "a@example.com", "to": ["b@example.com"]}`, "config.tls", "never sent unencrypted"},
		{notify.TypeEmail, `{"host": "127.0.0.1", "username": "u", "from": "a@example.com", "to": ["b@example.com"]}`, "config.password", "go together"},
		{notify.TypeEmail, `{"host": "127.0.0.1", "from": "nobody", "to": ["b@example.com"]}`, "config.from", "not an email address"},
		{notify.TypeEmail, `{"host": "127.0.0.1", "from": "a@example.com", "to": []}`, "config.to", "1 to 50"},
		{notify.TypeEmail, `{"host": "127.0.0.1", "from": "a@example.com", "to": ["b@example.com", "x"]}`, "config.to[1]", "not an email address"},
		{notify.TypeEmail, `{"host": "127.0.0.1", "port": 70000, "from": "a@example.com", "to": ["b@example.com"]}`, "config.port", "1 to 65535"},
		{notify.TypeEmail, `{"host": "", "from": "a@example.com", "to": ["b@example.com"]}`, "config.host", "is required"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+" "+tt.field+" "+tt.reason, func(t *testing.T) {
			out := notify.NewOutbound(loopback)
			c, err := notify.ParseConfig(tt.typ, json.RawMessage(tt.raw))
			if err == nil {
				err = c.Validate(context.Background(), out)
			}
			var fe *notify.FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.field, fe.Field)
			assert.Contains(t, fe.Reason, tt.reason)
			assert.False(t, strings.Contains(fe.Error(), "S3CR3T"))
		})
	}
}
