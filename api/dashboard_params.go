package api

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/opsflow/opsflow/db"
)

// dashboardRanges are the named windows, ending now.
var dashboardRanges = map[string]time.Duration{
	"5m": 5 * time.Minute, "30m": 30 * time.Minute, "1h": time.Hour, "6h": 6 * time.Hour,
	"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour,
}

const (
	defaultDashboardRange = time.Hour
	maxDashboardWindow    = 90 * 24 * time.Hour
	maxFilterValues       = 100
	// dashboardCacheControl suits a UI refreshing every 15-30 s: a refresh within
	// 15 s may reuse the answer, later ones revalidate with If-None-Match.
	dashboardCacheControl = "private, max-age=15"
)

// windowParams and filterParams are accepted by every dashboard endpoint.
var (
	windowParams = []string{"from", "to", "range"}
	filterParams = []string{"tenant", "provider", "model", "api_key"}
)

// dashboardWindow is a resolved query window: whole UTC minutes, because
// that is the rollups' resolution. from is rounded down and to up, so the
// current, unfinished minute is part of a window ending now.
type dashboardWindow struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

func (w dashboardWindow) seconds() float64 { return w.To.Sub(w.From).Seconds() }

// checkParams refuses parameters the endpoint does not know: a typo must
// not silently widen a query.
func checkParams(c echo.Context, allowed ...string) error {
	for _, name := range paramNames(c) {
		if !slices.Contains(allowed, name) && !slices.Contains(windowParams, name) && !slices.Contains(filterParams, name) {
			return BadParam(name, "unknown parameter")
		}
	}
	return nil
}

func paramNames(c echo.Context) []string {
	names := make([]string, 0, len(c.QueryParams()))
	for name := range c.QueryParams() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// parseWindow reads from/to (RFC 3339) or range (default 1h). from alone
// runs until now; to alone starts an hour earlier.
func (s *Server) parseWindow(c echo.Context) (dashboardWindow, error) {
	q := c.QueryParams()
	now := s.now().UTC()
	rng, hasRange := q.Get("range"), q.Has("range")
	if hasRange && (q.Has("from") || q.Has("to")) {
		return dashboardWindow{}, BadParam("range", "give either range or from/to, not both")
	}
	from, to := now.Add(-defaultDashboardRange), now
	if hasRange {
		d, ok := dashboardRanges[rng]
		if !ok {
			return dashboardWindow{}, BadParam("range", "must be one of 5m, 30m, 1h, 6h, 24h, 7d, 30d")
		}
		from = now.Add(-d)
	}
	var err error
	if q.Has("to") {
		if to, err = parseTime(q, "to"); err != nil {
			return dashboardWindow{}, err
		}
		from = to.Add(-defaultDashboardRange)
	}
	if q.Has("from") {
		if from, err = parseTime(q, "from"); err != nil {
			return dashboardWindow{}, err
		}
	}
	w := dashboardWindow{From: from.Truncate(time.Minute), To: ceilMinute(to)}
	switch {
	case !w.From.Before(w.To):
		return dashboardWindow{}, BadParam("from", "must be before to")
	case w.To.Sub(w.From) > maxDashboardWindow:
		return dashboardWindow{}, BadParam("from", "the window from..to must not exceed 90 days")
	}
	return w, nil
}

func parseTime(q map[string][]string, name string) (time.Time, error) {
	vals := q[name]
	if len(vals) != 1 {
		return time.Time{}, BadParam(name, "give it once")
	}
	t, err := time.Parse(time.RFC3339Nano, vals[0])
	if err != nil {
		return time.Time{}, BadParam(name, "must be an RFC 3339 time such as 2026-11-22T10:00:00Z")
	}
	return t.UTC(), nil
}

func ceilMinute(t time.Time) time.Time {
	m := t.Truncate(time.Minute)
	if m.Before(t) {
		m = m.Add(time.Minute)
	}
	return m
}

// parseFilter reads the repeatable tenant, provider, model and api_key.
func parseFilter(c echo.Context) (db.DashboardFilter, error) {
	var f db.DashboardFilter
	for _, p := range []struct {
		name string
		dst  *[]string
	}{{"tenant", &f.Tenants}, {"provider", &f.Providers}, {"model", &f.Models}, {"api_key", &f.APIKeys}} {
		vals := c.QueryParams()[p.name]
		if len(vals) > maxFilterValues {
			return f, BadParam(p.name, fmt.Sprintf("at most %d values", maxFilterValues))
		}
		// tenant, model and api_key are optional on events, so '' is a
		// value worth selecting; provider is required.
		if p.name == "provider" && slices.Contains(vals, "") {
			return f, BadParam(p.name, "must not be empty")
		}
		*p.dst = slices.Compact(slices.Sorted(slices.Values(vals)))
	}
	return f, nil
}

// parseLimit reads an optional positive limit.
func parseLimit(c echo.Context, name string, def, most int) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, BadParam(name, fmt.Sprintf("must be an integer from 1 to %d", most))
	}
	return n, nil
}

// Steps a time series may use; auto picks the finest giving at most
// maxAutoPoints points.
var dashboardSteps = []struct {
	name string
	d    time.Duration
}{{"1m", time.Minute}, {"5m", 5 * time.Minute}, {"1h", time.Hour}, {"1d", 24 * time.Hour}}

const (
	maxAutoPoints = 360
	// maxPoints bounds an explicit step: 1m over 90 days would be 129,600
	// points.
	maxPoints = 1500
)

func parseStep(c echo.Context, w dashboardWindow) (time.Duration, error) {
	v := c.QueryParam("step")
	if v == "" || v == "auto" {
		for _, s := range dashboardSteps {
			if points(w, s.d) <= maxAutoPoints {
				return s.d, nil
			}
		}
		return dashboardSteps[len(dashboardSteps)-1].d, nil
	}
	for _, s := range dashboardSteps {
		if s.name == v {
			if points(w, s.d) > maxPoints {
				return 0, BadParam("step", fmt.Sprintf("gives more than %d points over this window; use a coarser step", maxPoints))
			}
			return s.d, nil
		}
	}
	return 0, BadParam("step", "must be auto, 1m, 5m, 1h or 1d")
}

// buckets lists the step-aligned bucket starts covering the window.
func buckets(w dashboardWindow, step time.Duration) []time.Time {
	var out []time.Time
	for b := w.From.Truncate(step); b.Before(w.To); b = b.Add(step) {
		out = append(out, b)
	}
	return out
}

func points(w dashboardWindow, step time.Duration) int {
	first := w.From.Truncate(step)
	return int((w.To.Sub(first) + step - 1) / step)
}

// sendCached writes v as JSON with a strong ETag of its bytes, answering
// 304 when the client already holds them.
func sendCached(c echo.Context, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode dashboard answer: %w", err)
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, dashboardCacheControl)
	h.Set("ETag", etag)
	h.Add(echo.HeaderVary, echo.HeaderAuthorization)
	if etagMatches(c.Request().Header.Get("If-None-Match"), etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.JSONBlob(http.StatusOK, body)
}

// etagMatches applies If-None-Match's weak comparison.
func etagMatches(header, etag string) bool {
	for _, tag := range strings.Split(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
}
