package api

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/uptrace/bun"

	"github.com/opsflow/opsflow/db"
)

// dashboardRoutes registers the read-only dashboard API (scope read).
func (s *Server) dashboardRoutes(v1 *echo.Group) {
	g := v1.Group("/dashboard", s.requireScope(db.ScopeRead), s.rawTimeouts)
	g.GET("/overview", s.dashboardOverview)
	g.GET("/timeseries", s.dashboardTimeseries)
	g.GET("/breakdown", s.dashboardBreakdown)
	g.GET("/latency-histogram", s.dashboardHistogram)
	g.GET("/errors", s.dashboardErrors)
	g.GET("/errors/requests", s.dashboardErrorRequests)
	g.GET("/realtime", s.dashboardRealtime)
	g.GET("/system", s.dashboardSystem)
}

// rawTimeouts turns a raw-row read that ran past OPSFLOW_DASHBOARD_RAW_TIMEOUT
// into a client error saying why and what to do; the database's text stays
// in the log.
func (s *Server) rawTimeouts(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err != nil && errors.Is(err, db.ErrQueryTimeout) {
			s.log.Warn("dashboard raw query timed out", "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
				"path", c.Path(), "query", c.QueryString(), "err", err)
			return &Error{Status: http.StatusServiceUnavailable, Code: "query_timeout",
				Message: fmt.Sprintf("the query ran longer than %s: api_key filters and breakdowns combined with "+
					"provider or model, and errors filtered by api_key, read the raw request logs instead of "+
					"pre-aggregates; retry with a shorter window (range or from/to)",
					s.cfg.DashboardRawTimeout),
				Details: map[string]string{"timeout": s.cfg.DashboardRawTimeout.String()}}
		}
		return err
	}
}

// aggregate runs a dashboard aggregation, raw-row reads bounded by
// OPSFLOW_DASHBOARD_RAW_TIMEOUT.
func (s *Server) aggregate(c echo.Context, q db.DashboardQuery) ([]db.DashboardStats, error) {
	q.RawTimeout = s.cfg.DashboardRawTimeout
	return db.DashboardAggregate(c.Request().Context(), s.db, q)
}

// rawRead runs fn on the rollups, or, when f filters by api_key and fn
// therefore reads raw request logs, bounded by OPSFLOW_DASHBOARD_RAW_TIMEOUT.
func (s *Server) rawRead(ctx context.Context, f db.DashboardFilter, fn func(context.Context, bun.IDB) error) error {
	if len(f.APIKeys) == 0 {
		return fn(ctx, s.db.Bun)
	}
	return db.RawRead(ctx, s.db, s.cfg.DashboardRawTimeout, fn)
}

// dashboardQuery parses the window and filters shared by every endpoint,
// after refusing parameters outside allowed.
func (s *Server) dashboardQuery(c echo.Context, allowed ...string) (dashboardWindow, db.DashboardFilter, error) {
	if err := checkParams(c, allowed...); err != nil {
		return dashboardWindow{}, db.DashboardFilter{}, err
	}
	w, err := s.parseWindow(c)
	if err != nil {
		return w, db.DashboardFilter{}, err
	}
	f, err := parseFilter(c)
	return w, f, err
}

type latencyView struct {
	Avg *float64 `json:"avg"`
	P50 *float64 `json:"p50"`
	P90 *float64 `json:"p90"`
	P95 *float64 `json:"p95"`
	P99 *float64 `json:"p99"`
	Max *float64 `json:"max"`
}

type ttftView struct {
	P50 *float64 `json:"p50"`
	P95 *float64 `json:"p95"`
	P99 *float64 `json:"p99"`
}

type qpsView struct {
	Current float64 `json:"current"`
	Peak    float64 `json:"peak"`
	Average float64 `json:"average"`
}

type tokensView struct {
	Input  int64 `json:"input"`
	Output int64 `json:"output"`
	Cached int64 `json:"cached"`
	Total  int64 `json:"total"`
}

type errorView struct {
	db.ErrorGroup
	// Share is the group's part of all failures in the window.
	Share float64 `json:"share"`
}

type overviewView struct {
	Window          dashboardWindow `json:"window"`
	Requests        int64           `json:"requests"`
	Successes       int64           `json:"successes"`
	Errors          int64           `json:"errors"`
	SuccessRate     *float64        `json:"success_rate"`
	ErrorRate       *float64        `json:"error_rate"`
	Status4xx       int64           `json:"status_4xx"`
	Status5xx       int64           `json:"status_5xx"`
	Timeouts        int64           `json:"timeouts"`
	QPS             qpsView         `json:"qps"`
	TokensPerSecond float64         `json:"tokens_per_second"`
	Tokens          tokensView      `json:"tokens"`
	CostUSD         string          `json:"cost_usd"`
	LatencyMs       latencyView     `json:"latency_ms"`
	TTFTMs          ttftView        `json:"ttft_ms"`
	TopError        *errorView      `json:"top_error"`
	Health          healthView      `json:"health"`
}

func (s *Server) dashboardOverview(c echo.Context) error {
	w, f, err := s.dashboardQuery(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	total, err := s.aggregateOne(c, db.DashboardQuery{From: w.From, To: w.To, Filter: f, Sketches: true})
	if err != nil {
		return err
	}
	// The window's last minute gives the current rate.
	current, err := s.aggregateOne(c, db.DashboardQuery{From: w.To.Add(-time.Minute), To: w.To, Filter: f})
	if err != nil {
		return err
	}
	var top []db.ErrorGroup
	var failures int64
	err = s.rawRead(ctx, f, func(ctx context.Context, idb bun.IDB) (err error) {
		top, failures, err = db.DashboardErrors(ctx, idb, w.From, w.To, f, 1)
		return err
	})
	if err != nil {
		return err
	}
	v := overviewView{
		Window: w, Requests: total.Requests, Successes: total.Successes, Errors: failuresOf(total),
		SuccessRate: ratio(total.Successes, total.Requests), ErrorRate: ratio(failuresOf(total), total.Requests),
		Status4xx: total.Status4xx, Status5xx: total.Status5xx, Timeouts: total.Timeouts,
		QPS: qpsView{
			Current: float64(current.Requests) / 60,
			Peak:    float64(total.PeakRequests) / 60,
			Average: float64(total.Requests) / w.seconds(),
		},
		TokensPerSecond: float64(total.InputTokens+total.OutputTokens) / w.seconds(),
		Tokens: tokensView{Input: total.InputTokens, Output: total.OutputTokens, Cached: total.CachedTokens,
			Total: total.InputTokens + total.OutputTokens},
		CostUSD: costOf(total),
		LatencyMs: latencyView{
			Avg: avg(total.LatencySum, total.Requests), P50: quantile(total.Latency, 0.5),
			P90: quantile(total.Latency, 0.9), P95: quantile(total.Latency, 0.95), P99: quantile(total.Latency, 0.99),
			Max: maxOf(total.LatencyMax, total.Requests),
		},
		TTFTMs: ttftView{P50: quantile(total.TTFT, 0.5), P95: quantile(total.TTFT, 0.95), P99: quantile(total.TTFT, 0.99)},
		Health: health(&total),
	}
	if len(top) > 0 {
		v.TopError = &errorView{ErrorGroup: top[0], Share: float64(top[0].Requests) / float64(failures)}
	}
	return sendCached(c, v)
}

// aggregateOne answers a query without buckets or breakdown: one group,
// zero when nothing matched.
func (s *Server) aggregateOne(c echo.Context, q db.DashboardQuery) (db.DashboardStats, error) {
	groups, err := s.aggregate(c, q)
	if err != nil || len(groups) == 0 {
		return db.DashboardStats{}, err
	}
	return groups[0], nil
}

type timeseriesView struct {
	Window dashboardWindow `json:"window"`
	Metric string          `json:"metric"`
	Step   string          `json:"step"`
	Points []pointView     `json:"points"`
}

type pointView struct {
	TS    time.Time `json:"ts"`
	Value float64   `json:"value"`
}

func (s *Server) dashboardTimeseries(c echo.Context) error {
	w, f, err := s.dashboardQuery(c, "metric", "step")
	if err != nil {
		return err
	}
	name := c.QueryParam("metric")
	m, ok := dashboardMetrics[name]
	if !ok {
		return BadParam("metric", "must be one of "+strings.Join(metricNames(), ", "))
	}
	step, err := parseStep(c, w)
	if err != nil {
		return err
	}
	groups, err := s.aggregate(c, db.DashboardQuery{From: w.From, To: w.To, Filter: f, Step: step, Sketches: m.sketches})
	if err != nil {
		return err
	}
	byBucket := make(map[int64]*db.DashboardStats, len(groups))
	for i := range groups {
		byBucket[groups[i].Bucket.Unix()] = &groups[i]
	}
	v := timeseriesView{Window: w, Metric: name, Step: stepName(step)}
	for _, b := range buckets(w, step) {
		// A bucket without traffic has zero counters, so charts show no
		// holes (and health_score its neutral 100).
		g, ok := byBucket[b.Unix()]
		if !ok {
			g = &db.DashboardStats{}
		}
		v.Points = append(v.Points, pointView{TS: b, Value: m.value(g, step.Seconds())})
	}
	return sendCached(c, v)
}

func stepName(d time.Duration) string {
	for _, s := range dashboardSteps {
		if s.d == d {
			return s.name
		}
	}
	return d.String()
}

type breakdownView struct {
	Window  dashboardWindow `json:"window"`
	By      string          `json:"by"`
	Sort    string          `json:"sort"`
	Total   int64           `json:"total_requests"`
	CostUSD string          `json:"total_cost_usd"`
	Rows    []breakdownRow  `json:"rows"`
	// Others counts the requests of the values past the limit.
	Others int64 `json:"others_requests"`
}

type breakdownRow struct {
	Key       string   `json:"key"`
	Requests  int64    `json:"requests"`
	Share     float64  `json:"share"`
	Errors    int64    `json:"errors"`
	ErrorRate *float64 `json:"error_rate"`
	Tokens    int64    `json:"tokens"`
	CostUSD   string   `json:"cost_usd"`
	CostShare *float64 `json:"cost_share"`
	P50       *float64 `json:"latency_p50_ms"`
	P95       *float64 `json:"latency_p95_ms"`
	P99       *float64 `json:"latency_p99_ms"`

	sortValue float64
}

// breakdownSorts are the orders a breakdown can take, all descending.
var breakdownSorts = map[string]func(*db.DashboardStats) float64{
	"requests": func(g *db.DashboardStats) float64 { return float64(g.Requests) },
	"errors":   func(g *db.DashboardStats) float64 { return float64(failuresOf(*g)) },
	"tokens":   func(g *db.DashboardStats) float64 { return float64(g.InputTokens + g.OutputTokens) },
	"cost_usd": func(g *db.DashboardStats) float64 { return costFloat(g.CostUSD) },
	"latency_p95": func(g *db.DashboardStats) float64 {
		if p := quantile(g.Latency, 0.95); p != nil {
			return *p
		}
		return 0
	},
}

func (s *Server) dashboardBreakdown(c echo.Context) error {
	w, f, err := s.dashboardQuery(c, "by", "sort", "limit")
	if err != nil {
		return err
	}
	by := c.QueryParam("by")
	if !slices.Contains([]string{db.DimProvider, db.DimModel, db.DimTenant, db.DimAPIKey}, by) {
		return BadParam("by", "must be provider, model, tenant or api_key")
	}
	sortName := cmp.Or(c.QueryParam("sort"), "requests")
	sortBy, ok := breakdownSorts[sortName]
	if !ok {
		return BadParam("sort", "must be requests, errors, tokens, cost_usd or latency_p95")
	}
	limit, err := parseLimit(c, "limit", 10, 1000)
	if err != nil {
		return err
	}
	groups, err := s.aggregate(c, db.DashboardQuery{From: w.From, To: w.To, Filter: f, By: by, Sketches: true})
	if err != nil {
		return err
	}
	var totalCost float64
	rows := make([]breakdownRow, len(groups))
	v := breakdownView{Window: w, By: by, Sort: sortName, CostUSD: "0"}
	for i := range groups {
		g := &groups[i]
		v.Total += g.Requests
		totalCost += costFloat(g.CostUSD)
		rows[i] = breakdownRow{Key: g.Key, Requests: g.Requests, Errors: failuresOf(*g),
			ErrorRate: ratio(failuresOf(*g), g.Requests), Tokens: g.InputTokens + g.OutputTokens, CostUSD: costOf(*g),
			P50: quantile(g.Latency, 0.5), P95: quantile(g.Latency, 0.95), P99: quantile(g.Latency, 0.99),
			sortValue: sortBy(g)}
	}
	if len(groups) > 0 {
		total, err := s.aggregateOne(c, db.DashboardQuery{From: w.From, To: w.To, Filter: f})
		if err != nil {
			return err
		}
		v.CostUSD = costOf(total)
	}
	slices.SortStableFunc(rows, func(a, b breakdownRow) int {
		return cmp.Or(cmp.Compare(b.sortValue, a.sortValue), cmp.Compare(a.Key, b.Key))
	})
	for i := range rows {
		rows[i].Share = float64(rows[i].Requests) / float64(v.Total)
		if totalCost > 0 {
			rows[i].CostShare = ptr(costFloat(rows[i].CostUSD) / totalCost)
		}
		if i >= limit {
			v.Others += rows[i].Requests
		}
	}
	v.Rows = rows[:min(limit, len(rows))]
	return sendCached(c, v)
}

type histogramView struct {
	Window  dashboardWindow   `json:"window"`
	Metric  string            `json:"metric"`
	Count   int64             `json:"count"`
	Buckets []histogramBucket `json:"buckets"`
}

type histogramBucket struct {
	// From (inclusive) and To (exclusive) bound the bucket, milliseconds.
	From  float64 `json:"from_ms"`
	To    float64 `json:"to_ms"`
	Count int64   `json:"count"`
}

// histogramPerDecade is how many log-spaced buckets split a factor of 10.
const histogramPerDecade = 5

func (s *Server) dashboardHistogram(c echo.Context) error {
	w, f, err := s.dashboardQuery(c, "metric")
	if err != nil {
		return err
	}
	metric := cmp.Or(c.QueryParam("metric"), "latency")
	if metric != "latency" && metric != "ttft" {
		return BadParam("metric", "must be latency or ttft")
	}
	total, err := s.aggregateOne(c, db.DashboardQuery{From: w.From, To: w.To, Filter: f, Sketches: true})
	if err != nil {
		return err
	}
	sk := total.Latency
	if metric == "ttft" {
		sk = total.TTFT
	}
	v := histogramView{Window: w, Metric: metric, Buckets: []histogramBucket{}}
	if sk == nil || sk.IsEmpty() {
		return sendCached(c, v)
	}
	// Bucket i holds [10^(i/k), 10^((i+1)/k)); values under 1 ms go to the
	// first bucket. Sketch bins are 1% wide, far finer than a bucket.
	counts := map[int]float64{}
	lo, hi := math.MaxInt, math.MinInt
	sk.ForEach(func(value, count float64) bool {
		i := 0
		if value >= 1 {
			i = int(math.Floor(math.Log10(value) * histogramPerDecade))
		}
		counts[i] += count
		lo, hi = min(lo, i), max(hi, i)
		return false
	})
	for i := lo; i <= hi; i++ {
		from := math.Pow(10, float64(i)/histogramPerDecade)
		if i == 0 {
			from = 0
		}
		n := int64(math.Round(counts[i]))
		v.Count += n
		v.Buckets = append(v.Buckets, histogramBucket{From: roundTo(from, 3), To: roundTo(math.Pow(10, float64(i+1)/histogramPerDecade), 3), Count: n})
	}
	return sendCached(c, v)
}

type errorsView struct {
	Window   dashboardWindow `json:"window"`
	Requests int64           `json:"requests"`
	Failures int64           `json:"failures"`
	Groups   []errorView     `json:"groups"`
}

func (s *Server) dashboardErrors(c echo.Context) error {
	w, f, err := s.dashboardQuery(c, "limit")
	if err != nil {
		return err
	}
	limit, err := parseLimit(c, "limit", 10, 100)
	if err != nil {
		return err
	}
	var groups []db.ErrorGroup
	var failures int64
	err = s.rawRead(c.Request().Context(), f, func(ctx context.Context, idb bun.IDB) (err error) {
		groups, failures, err = db.DashboardErrors(ctx, idb, w.From, w.To, f, limit)
		return err
	})
	if err != nil {
		return err
	}
	total, err := s.aggregateOne(c, db.DashboardQuery{From: w.From, To: w.To, Filter: f})
	if err != nil {
		return err
	}
	v := errorsView{Window: w, Requests: total.Requests, Failures: failures, Groups: []errorView{}}
	for _, g := range groups {
		v.Groups = append(v.Groups, errorView{ErrorGroup: g, Share: float64(g.Requests) / float64(failures)})
	}
	return sendCached(c, v)
}

type errorRequestsView struct {
	Window     dashboardWindow `json:"window"`
	Items      []db.ErrorLog   `json:"items"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

func (s *Server) dashboardErrorRequests(c echo.Context) error {
	w, f, err := s.dashboardQuery(c, "status_code", "error_type", "error_message", "cursor", "limit")
	if err != nil {
		return err
	}
	q := db.ErrorLogQuery{From: w.From, To: w.To, Filter: f}
	if q.Limit, err = parseLimit(c, "limit", 50, 500); err != nil {
		return err
	}
	params := c.QueryParams()
	if params.Has("status_code") {
		code, err := strconv.ParseInt(params.Get("status_code"), 10, 16)
		if err != nil || code < 100 || code > 599 {
			return BadParam("status_code", "must be an HTTP status from 100 to 599")
		}
		q.StatusCode = ptr(int16(code))
	}
	if params.Has("error_type") {
		q.ErrorType = ptr(params.Get("error_type"))
	}
	if params.Has("error_message") {
		q.ErrorMessage = ptr(params.Get("error_message"))
	}
	if params.Has("cursor") {
		pos, err := decodeCursor(params.Get("cursor"))
		if err != nil {
			return err
		}
		q.After = &pos
	}
	var items []db.ErrorLog
	var more bool
	err = s.rawRead(c.Request().Context(), f, func(ctx context.Context, idb bun.IDB) (err error) {
		items, more, err = db.ListErrorLogs(ctx, idb, q)
		return err
	})
	if err != nil {
		return err
	}
	v := errorRequestsView{Window: w, Items: items}
	if v.Items == nil {
		v.Items = []db.ErrorLog{}
	}
	if more {
		v.NextCursor = encodeCursor(items[len(items)-1].Position())
	}
	return sendCached(c, v)
}

// A cursor is the last row's position, opaque to clients.
func encodeCursor(p db.LogPosition) string {
	return base64.RawURLEncoding.EncodeToString([]byte(p.TS.Format(time.RFC3339Nano) + "|" + p.CTID))
}

func decodeCursor(s string) (db.LogPosition, error) {
	bad := BadParam("cursor", "not a cursor this API returned")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return db.LogPosition{}, bad
	}
	ts, ctid, ok := strings.Cut(string(raw), "|")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || !validCTID(ctid) {
		return db.LogPosition{}, bad
	}
	return db.LogPosition{TS: t, CTID: ctid}, nil
}

// validCTID accepts "(block,offset)", the only shape PostgreSQL prints.
func validCTID(s string) bool {
	inner, ok := strings.CutPrefix(s, "(")
	if inner, ok = strings.CutSuffix(inner, ")"); !ok {
		return false
	}
	block, offset, ok := strings.Cut(inner, ",")
	_, err1 := strconv.ParseUint(block, 10, 32)
	_, err2 := strconv.ParseUint(offset, 10, 16)
	return ok && err1 == nil && err2 == nil
}

type systemView struct {
	Window dashboardWindow  `json:"window"`
	Step   string           `json:"step"`
	Points []db.SystemPoint `json:"points"`
}

func (s *Server) dashboardSystem(c echo.Context) error {
	if err := checkParams(c, "step"); err != nil {
		return err
	}
	if names := slices.DeleteFunc(paramNames(c), func(n string) bool { return !slices.Contains(filterParams, n) }); len(names) > 0 {
		return BadParam(names[0], "process metrics have no such dimension")
	}
	w, err := s.parseWindow(c)
	if err != nil {
		return err
	}
	step, err := parseStep(c, w)
	if err != nil {
		return err
	}
	pts, err := db.SystemMetrics(c.Request().Context(), s.db.Bun, w.From, w.To, step)
	if err != nil {
		return err
	}
	v := systemView{Window: w, Step: stepName(step), Points: pts}
	if v.Points == nil {
		v.Points = []db.SystemPoint{}
	}
	return sendCached(c, v)
}

func ptr[T any](v T) *T { return &v }

func roundTo(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
