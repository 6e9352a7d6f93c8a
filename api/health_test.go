package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/devstack"
	"github.com/opsflow/opsflow/testenv"
)

type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

func getReadyz(t *testing.T, h http.Handler) (int, readiness, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body readiness
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	return rec.Code, body, rec.Body.String()
}

// TestReadyzFollowsPostgres stops the database under a running API: /readyz
// turns 503 naming postgres without leaking the driver's error, and recovers
// once PostgreSQL is back.
func TestReadyzFollowsPostgres(t *testing.T) {
	ctx := context.Background()
	// Not t.TempDir: its parent is private, and the server may run as the
	// postgres user (see devstack).
	dir, err := os.MkdirTemp("", "opsflow-readyz-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	port, err := devstack.FreePort()
	require.NoError(t, err)
	opts := devstack.PostgresOptions{DataDir: filepath.Join(dir, "pg"), Port: port, Ephemeral: true}
	pg, err := devstack.StartPostgres(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if pg != nil {
			pg.Stop()
		}
	})

	d, err := db.Open(ctx, pg.URL("postgres"), 4)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	cfg, err := config.Load(func(string) string { return "" })
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	e := api.New(api.Deps{Config: cfg, DB: d, Temporal: testenv.TemporalClient(t), Logger: slog.New(slog.DiscardHandler), Registry: reg, Gatherer: reg})

	code, body, _ := getReadyz(t, e)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, map[string]string{"postgres": "ok", "temporal": "ok"}, body.Checks)

	pg.Stop()
	code, body, raw := getReadyz(t, e)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "unavailable", body.Checks["postgres"])
	assert.Equal(t, "ok", body.Checks["temporal"])
	assert.NotContains(t, raw, "connect", "no raw driver error in the body")

	pg, err = devstack.StartPostgres(ctx, opts)
	require.NoError(t, err)
	code, body, _ = getReadyz(t, e)
	assert.Equal(t, http.StatusOK, code, body)
}

func TestHealthzAlwaysAnswers(t *testing.T) {
	cfg, err := config.Load(func(string) string { return "" })
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	e := api.New(api.Deps{Config: cfg, DB: testenv.DB(t), Logger: slog.New(slog.DiscardHandler), Registry: reg, Gatherer: reg})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
}
