package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/db"
)

type errorJSON struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Details map[string]string `json:"details"`
	} `json:"error"`
}

func TestChannelLifecycleMasksSecretsAndAudits(t *testing.T) {
	env := newNotifyAPI(t, false)
	slackURL := "https://127.0.0.1/services/T000/B000/" + secretMark + "XXXXXXXX"

	created := env.createChannel(t, map[string]any{
		"name": "ops-slack", "type": "slack", "config": map[string]any{"url": slackURL},
		"retry": map[string]any{"maximum_attempts": 8, "maximum_interval": "30m"},
	})

	assert.Equal(t, "https://127.0.0.1/services/T000/****", created.Config["url"])
	assert.Equal(t, map[string]any{"initial_interval": "200ms", "backoff_coefficient": 2.0, "maximum_interval": "30m0s",
		"maximum_attempts": 8.0}, created.EffectiveRetry, "the override over the configured defaults")
	assert.Contains(t, env.storedConfig(t, created.ID), slackURL, "sealed, not lost")

	code, body := env.do(t, http.MethodGet, "/api/v1/channels", nil)
	require.Equal(t, http.StatusOK, code)
	list := decode[struct{ Channels []channelJSON }](t, body)
	require.Len(t, list.Channels, 1)
	assert.Equal(t, "https://127.0.0.1/services/T000/****", list.Channels[0].Config["url"])

	// A client sends back what it read, masked, with a new name: the
	// secret stays.
	code, body = env.do(t, http.MethodPut, "/api/v1/channels/"+itoa(created.ID), map[string]any{
		"name": "ops-slack-2", "config": created.Config,
	})
	require.Equal(t, http.StatusOK, code, string(body))
	assert.Equal(t, "ops-slack-2", decode[channelJSON](t, body).Name)
	assert.Contains(t, env.storedConfig(t, created.ID), slackURL)

	code, body = env.do(t, http.MethodPut, "/api/v1/channels/"+itoa(created.ID), map[string]any{
		"name": "ops-slack-2", "type": "webhook", "config": created.Config,
	})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Equal(t, "type", decode[errorJSON](t, body).Error.Details["parameter"])

	code, _ = env.do(t, http.MethodDelete, "/api/v1/channels/"+itoa(created.ID), nil)
	assert.Equal(t, http.StatusNoContent, code)
	code, _ = env.do(t, http.MethodGet, "/api/v1/channels/"+itoa(created.ID), nil)
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = env.do(t, http.MethodDelete, "/api/v1/channels/"+itoa(created.ID), nil)
	assert.Equal(t, http.StatusNotFound, code)

	var actions []string
	for _, e := range env.audit(t) {
		assert.Equal(t, "bootstrap (bootstrap admin key)", e.Actor)
		assert.Equal(t, "channel:"+itoa(created.ID), e.Target)
		actions = append(actions, e.Action)
	}
	assert.Equal(t, []string{db.AuditChannelCreate, db.AuditChannelUpdate, db.AuditChannelDelete}, actions)
	assert.NotContains(t, env.logs.String(), secretMark)
}

func TestChannelNamesAreUniqueAmongLiveChannels(t *testing.T) {
	env := newNotifyAPI(t, false)
	body := map[string]any{"name": "pager", "type": "pagerduty", "config": map[string]any{"routing_key": "R0UT1NGK3Y0123456789abcdefABCDEF"}}
	first := env.createChannel(t, body)

	code, _ := env.do(t, http.MethodPost, "/api/v1/channels", body)
	assert.Equal(t, http.StatusConflict, code)

	code, _ = env.do(t, http.MethodDelete, "/api/v1/channels/"+itoa(first.ID), nil)
	require.Equal(t, http.StatusNoContent, code)
	env.createChannel(t, body)
}

func TestChannelInputIsValidatedByField(t *testing.T) {
	env := newNotifyAPI(t, false)
	webhook := func(url string) map[string]any {
		return map[string]any{"name": "w", "type": "webhook", "config": map[string]any{"url": url}}
	}
	tests := []struct {
		name    string
		body    any
		field   string
		message string
	}{
		{"unknown type", map[string]any{"name": "x", "type": "sms", "config": map[string]any{}}, "type", "must be one of"},
		{"no name", map[string]any{"type": "slack", "config": map[string]any{"url": "https://127.0.0.1/x"}}, "name", "1 to 100"},
		{"unknown field", map[string]any{"name": "x", "type": "slack", "config": map[string]any{}, "colour": "red"}, "body", "unknown field"},
		{"not an object", []int{1, 2}, "body", "JSON object"},
		{"metadata address", webhook("http://169.254.169.254/latest/meta-data/"), "config.url", "cloud metadata"},
		{"private address", webhook("http://10.0.0.1/" + secretMark), "config.url", "private address"},
		{"decimal loopback", webhook("http://2130706433/"), "config.url", "non-canonical"},
		{"mapped IPv6", webhook("http://[::ffff:192.168.0.1]/"), "config.url", "private address"},
		{"ULA", webhook("http://[fc00::1]/"), "config.url", "unique local"},
		{"CGNAT", webhook("http://100.64.0.1/"), "config.url", "carrier-grade NAT"},
		{"scheme", webhook("file:///etc/passwd"), "config.url", "not http or https"},
		{"bad retry", map[string]any{"name": "x", "type": "slack", "config": map[string]any{"url": "https://127.0.0.1/x"},
			"retry": map[string]any{"maximum_attempts": 1000}}, "retry.maximum_attempts", "1 to 100"},
		{"bad retry duration", map[string]any{"name": "x", "type": "slack", "config": map[string]any{"url": "https://127.0.0.1/x"},
			"retry": map[string]any{"initial_interval": "soon"}}, "body", "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := env.do(t, http.MethodPost, "/api/v1/channels", tt.body)

			require.Equal(t, http.StatusBadRequest, code, string(body))
			e := decode[errorJSON](t, body)
			assert.Equal(t, tt.field, e.Error.Details["parameter"])
			assert.Contains(t, e.Error.Message, tt.message)
		})
	}
	n, err := env.db.Bun.NewSelect().Model((*db.Channel)(nil)).Count(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n, "bad input changes nothing")
}

func TestChannelsNeedTheAdminScope(t *testing.T) {
	env := newNotifyAPI(t, false)
	readKey, _, err := db.CreateAPIKey(context.Background(), env.db.Bun, "dashboards", []string{db.ScopeRead})
	require.NoError(t, err)

	code, _ := env.do(t, http.MethodGet, "/api/v1/channels", nil, "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = env.do(t, http.MethodGet, "/api/v1/channels", nil, readKey)
	assert.Equal(t, http.StatusForbidden, code)
	code, _ = env.do(t, http.MethodPost, "/api/v1/notifications/requeue", nil, readKey)
	assert.Equal(t, http.StatusForbidden, code)
}
