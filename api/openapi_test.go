package api_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/testenv"
)

// TestOpenAPIMatchesRoutes keeps the served document true: every route Echo
// registers is documented and every documented operation exists.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	cfg, err := config.Load(func(string) string { return "" })
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	e := api.New(api.Deps{Config: cfg, DB: testenv.DB(t), Logger: slog.New(slog.DiscardHandler), Registry: reg, Gatherer: reg})

	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &doc))

	param := regexp.MustCompile(`\{([^}]+)\}`)
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+param.ReplaceAllString(path, ":$1"))
		}
	}
	var registered []string
	for _, r := range e.Routes() {
		if strings.HasPrefix(r.Name, "github.com/labstack/echo") {
			continue // Echo's own not-found/method-not-allowed handlers
		}
		registered = append(registered, r.Method+" "+r.Path)
	}
	sort.Strings(documented)
	sort.Strings(registered)
	assert.Equal(t, registered, documented)
}
