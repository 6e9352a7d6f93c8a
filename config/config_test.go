package config_test

import (
	"encoding/base64"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/config"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := config.Load(env(nil))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", c.HTTPAddr)
	assert.Equal(t, "127.0.0.1:7233", c.TemporalAddress)
	assert.Equal(t, "default", c.TemporalNamespace)
	assert.Equal(t, "opsflow", c.TaskQueue)
	assert.Equal(t, "http://127.0.0.1:8233", c.TemporalUIURL)
	assert.Equal(t, slog.LevelInfo, c.LogLevel)
	assert.Equal(t, 720*time.Hour, c.IngestMaxAge)
	assert.Equal(t, 30*time.Second, c.DashboardRawTimeout)
	assert.Nil(t, c.SecretKey)
	assert.Empty(t, c.NotifyAllow)
}

func TestValidValues(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	c, err := config.Load(env(map[string]string{
		"OPSFLOW_SECRET_KEY":            key,
		"OPSFLOW_NOTIFY_ALLOW":          "127.0.0.0/8, hooks.internal ,",
		"OPSFLOW_LOG_LEVEL":             "debug",
		"OPSFLOW_INGEST_MAX_AGE":        "48h",
		"OPSFLOW_TEMPORAL_UI_URL":       "http://ui:8233/",
		"OPSFLOW_DASHBOARD_RAW_TIMEOUT": "2m",
	}))
	require.NoError(t, err)
	assert.Len(t, c.SecretKey, 32)
	assert.Equal(t, []string{"127.0.0.0/8", "hooks.internal"}, c.NotifyAllow)
	assert.Equal(t, slog.LevelDebug, c.LogLevel)
	assert.Equal(t, 48*time.Hour, c.IngestMaxAge)
	assert.Equal(t, "http://ui:8233", c.TemporalUIURL)
	assert.Equal(t, 2*time.Minute, c.DashboardRawTimeout)
}

func TestInvalidValuesAreNamed(t *testing.T) {
	cases := map[string]string{
		"OPSFLOW_HTTP_ADDR":              "8080",
		"OPSFLOW_SECRET_KEY":             "c2hvcnQ=",
		"OPSFLOW_ADMIN_KEY":              "short",
		"OPSFLOW_LOG_LEVEL":              "loud",
		"OPSFLOW_DB_MAX_CONNS":           "0",
		"OPSFLOW_INGEST_MAX_EVENTS":      "many",
		"OPSFLOW_INGEST_MAX_FUTURE_SKEW": "-1m",
		"OPSFLOW_DASHBOARD_RAW_TIMEOUT":  "0s",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := config.Load(env(map[string]string{name: value}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
		})
	}
}

// TestReadmeDocumentsEveryVariable keeps the README's configuration table
// complete.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for _, v := range config.Vars {
		assert.True(t, strings.Contains(string(readme), "`"+v.Name+"`"), "README misses %s", v.Name)
	}
}

func TestInvalidNotifyValuesAreNamed(t *testing.T) {
	cases := map[string]string{
		"OPSFLOW_SECRET_KEY_PREVIOUS":       "c2hvcnQ=",
		"OPSFLOW_NOTIFY_ALLOW":              "127.0.0.0/8,not a host!",
		"OPSFLOW_NOTIFY_RETRY_INITIAL":      "soon",
		"OPSFLOW_NOTIFY_RETRY_MAX_ATTEMPTS": "0",
		"OPSFLOW_WORKER_METRICS_ADDR":       "9091",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := config.Load(env(map[string]string{name: value}))
			require.ErrorContains(t, err, name)
		})
	}
}

func TestNotifyRetryDefaultsAndOrder(t *testing.T) {
	c, err := config.Load(env(nil))
	require.NoError(t, err)
	assert.Equal(t, time.Minute, c.NotifyRetryInitial)
	assert.Equal(t, time.Hour, c.NotifyRetryMaxInterval)
	assert.Equal(t, 5, c.NotifyRetryMaxAttempts)
	assert.Equal(t, "127.0.0.1:9091", c.WorkerMetricsAddr)

	c, err = config.Load(env(map[string]string{"OPSFLOW_NOTIFY_RETRY_INITIAL": "200ms", "OPSFLOW_NOTIFY_RETRY_MAX_INTERVAL": "1s"}))
	require.NoError(t, err)
	assert.Equal(t, 200*time.Millisecond, c.NotifyRetryInitial, "tests shorten the waits through configuration")

	_, err = config.Load(env(map[string]string{"OPSFLOW_NOTIFY_RETRY_INITIAL": "2h"}))
	require.ErrorContains(t, err, "OPSFLOW_NOTIFY_RETRY_MAX_INTERVAL")
}
