package api

import (
	"cmp"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/workflows"
)

// topModelsPerTenant is how many models a tenant group lists.
const topModelsPerTenant = 5

// maxStatsDays bounds one daily statistics request: every row's sketch and
// key set is merged in memory, about 2 KB per group and day.
const maxStatsDays = 92

// dailyRoutes registers daily statistics, retention and schedule control.
func (s *Server) dailyRoutes(v1 *echo.Group) {
	read, admin := s.requireScope(db.ScopeRead), s.requireScope(db.ScopeAdmin)
	v1.GET("/stats/daily", s.getDailyStats, read)
	v1.POST("/aggregations/daily/backfill", s.backfillDaily, admin)
	v1.GET("/retention", s.getRetention, admin)
	v1.PUT("/retention", s.putRetention, admin)
	v1.GET("/retention/runs", s.listRetentionRuns, admin)
	v1.GET("/schedules", s.listSchedules, admin)
	v1.POST("/schedules/:id/trigger", s.triggerSchedule, admin)
	v1.POST("/schedules/:id/pause", s.pauseSchedule, admin)
	v1.POST("/schedules/:id/unpause", s.unpauseSchedule, admin)
	v1.POST("/schedules/:id/backfill", s.backfillSchedule, admin)
}

// dailyFigures are one day's or one period's statistics. Percentiles come
// from the merged sketches; distinct_api_keys is exact (a union of the
// stored key sets, not a sum).
type dailyFigures struct {
	Requests        int64   `json:"requests"`
	Successes       int64   `json:"successes"`
	Status4xx       int64   `json:"status_4xx"`
	Status5xx       int64   `json:"status_5xx"`
	Timeouts        int64   `json:"timeouts"`
	InputTokens     int64   `json:"input_tokens"`
	OutputTokens    int64   `json:"output_tokens"`
	CachedTokens    int64   `json:"cached_tokens"`
	CostUSD         string  `json:"cost_usd"`
	LatencyAvgMs    float64 `json:"latency_avg_ms"`
	LatencyP50Ms    float64 `json:"latency_p50_ms"`
	LatencyP95Ms    float64 `json:"latency_p95_ms"`
	LatencyP99Ms    float64 `json:"latency_p99_ms"`
	LatencyMaxMs    float64 `json:"latency_max_ms"`
	DistinctAPIKeys int     `json:"distinct_api_keys"`
}

type dailyPoint struct {
	Day string `json:"day"`
	dailyFigures
}

type topModel struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Requests int64  `json:"requests"`
	CostUSD  string `json:"cost_usd"`
}

type dailyGroup struct {
	Tenant    *string      `json:"tenant,omitempty"`
	Provider  *string      `json:"provider,omitempty"`
	Model     *string      `json:"model,omitempty"`
	Totals    dailyFigures `json:"totals"`
	Series    []dailyPoint `json:"series"`
	TopModels []topModel   `json:"top_models,omitempty"`
}

type dailyStatsResponse struct {
	From    string       `json:"from"`
	To      string       `json:"to"`
	GroupBy string       `json:"group_by"`
	Totals  dailyFigures `json:"totals"`
	Series  []dailyPoint `json:"series"`
	Groups  []dailyGroup `json:"groups"`
}

func (s *Server) getDailyStats(c echo.Context) error {
	from, to, err := s.statsDays(c)
	if err != nil {
		return err
	}
	groupBy := cmp.Or(c.QueryParam("group_by"), "tenant")
	if !slices.Contains([]string{"tenant", "provider", "model"}, groupBy) {
		return BadParam("group_by", "must be tenant, provider or model")
	}
	f := db.DailyFilter{From: from, To: to}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"tenant", &f.Tenant}, {"provider", &f.Provider}, {"model", &f.Model}} {
		*p.dst = c.QueryParam(p.name)
		if len(*p.dst) > 200 {
			return BadParam(p.name, "must be at most 200 characters")
		}
	}
	rows, err := db.ListDailyStats(c.Request().Context(), s.db.Bun, f)
	if err != nil {
		return err
	}
	resp, err := buildDailyStats(rows, from, to, groupBy)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// statsDays reads period=last7d|last30d (the complete UTC days before
// today; the default last7d) or from/to (YYYY-MM-DD, inclusive).
func (s *Server) statsDays(c echo.Context) (time.Time, time.Time, error) {
	period, fromS, toS := c.QueryParam("period"), c.QueryParam("from"), c.QueryParam("to")
	today := db.TruncateDay(s.now())
	if fromS == "" && toS == "" {
		n := map[string]int{"": 7, "last7d": 7, "last30d": 30}[period]
		if n == 0 {
			return time.Time{}, time.Time{}, BadParam("period", "must be last7d or last30d")
		}
		return today.AddDate(0, 0, -n), today.AddDate(0, 0, -1), nil
	}
	if period != "" {
		return time.Time{}, time.Time{}, BadParam("period", "give either period or from/to, not both")
	}
	if fromS == "" {
		return time.Time{}, time.Time{}, BadParam("from", "required with to")
	}
	if toS == "" {
		return time.Time{}, time.Time{}, BadParam("to", "required with from")
	}
	days, err := workflows.BackfillDays(fromS, toS)
	if err != nil {
		return time.Time{}, time.Time{}, dayRangeError(err)
	}
	if len(days) > maxStatsDays {
		return time.Time{}, time.Time{}, BadParam("to", fmt.Sprintf("must be at most %d days after from", maxStatsDays-1))
	}
	from, _ := workflows.ParseDay("from", fromS)
	to, _ := workflows.ParseDay("to", toS)
	return from, to, nil
}

// dayRangeError turns a workflows.BackfillDays error, which starts with the
// field's name, into a 400 naming it.
func dayRangeError(err error) error {
	field, _, _ := strings.Cut(err.Error(), " ")
	if field != "from" {
		field = "to"
	}
	return BadParam(field, strings.TrimPrefix(err.Error(), field+" "))
}

// dailyAcc sums daily_stats rows.
type dailyAcc struct {
	f      dailyFigures
	cost   big.Rat
	latSum float64
	sketch *ddsketch.DDSketch
	keys   map[string]struct{}
}

func newDailyAcc() *dailyAcc {
	return &dailyAcc{sketch: db.NewLatencySketch(), keys: map[string]struct{}{}}
}

func (a *dailyAcc) add(r *db.DailyStat) error {
	a.f.Requests += r.Requests
	a.f.Successes += r.Successes
	a.f.Status4xx += r.Status4xx
	a.f.Status5xx += r.Status5xx
	a.f.Timeouts += r.Timeouts
	a.f.InputTokens += r.InputTokens
	a.f.OutputTokens += r.OutputTokens
	a.f.CachedTokens += r.CachedTokens
	cost, ok := new(big.Rat).SetString(r.CostUSD)
	if !ok {
		return errors.New("daily stats: unparsable cost " + r.CostUSD)
	}
	a.cost.Add(&a.cost, cost)
	a.latSum += r.LatencyAvg * float64(r.Requests)
	a.f.LatencyMaxMs = max(a.f.LatencyMaxMs, r.LatencyMax)
	for _, k := range r.APIKeys {
		a.keys[k] = struct{}{}
	}
	return db.MergeEncodedSketches(a.sketch, r.LatencySketch)
}

func (a *dailyAcc) figures() dailyFigures {
	f := a.f
	f.CostUSD = decimalString(&a.cost)
	f.DistinctAPIKeys = len(a.keys)
	if f.Requests > 0 {
		f.LatencyAvgMs = a.latSum / float64(f.Requests)
	}
	f.LatencyP50Ms, _ = db.SketchQuantile(a.sketch, 0.5)
	f.LatencyP95Ms, _ = db.SketchQuantile(a.sketch, 0.95)
	f.LatencyP99Ms, _ = db.SketchQuantile(a.sketch, 0.99)
	return f
}

// decimalString prints an exact sum of numeric(30,10) values.
func decimalString(r *big.Rat) string {
	s := r.FloatString(10)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// series accumulates one value per day of the range.
type series struct {
	days []time.Time
	accs []*dailyAcc
}

func newSeries(from, to time.Time) *series {
	s := &series{}
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		s.days = append(s.days, d)
		s.accs = append(s.accs, newDailyAcc())
	}
	return s
}

func (s *series) add(r *db.DailyStat) error {
	i := int(db.TruncateDay(r.Day).Sub(s.days[0]) / (24 * time.Hour))
	if i < 0 || i >= len(s.accs) {
		return nil
	}
	return s.accs[i].add(r)
}

func (s *series) points() []dailyPoint {
	out := make([]dailyPoint, len(s.days))
	for i, d := range s.days {
		out[i] = dailyPoint{Day: d.Format(time.DateOnly), dailyFigures: s.accs[i].figures()}
	}
	return out
}

type groupAcc struct {
	group  dailyGroup
	total  *dailyAcc
	series *series
	models map[[2]string]*topModel
	cost   map[[2]string]*big.Rat
}

func buildDailyStats(rows []db.DailyStat, from, to time.Time, groupBy string) (dailyStatsResponse, error) {
	total, all := newDailyAcc(), newSeries(from, to)
	groups := map[[2]string]*groupAcc{}
	var order [][2]string
	for i := range rows {
		r := &rows[i]
		key, g := groupKeyOf(r, groupBy)
		ga := groups[key]
		if ga == nil {
			ga = &groupAcc{group: g, total: newDailyAcc(), series: newSeries(from, to),
				models: map[[2]string]*topModel{}, cost: map[[2]string]*big.Rat{}}
			groups[key] = ga
			order = append(order, key)
		}
		for _, err := range []error{total.add(r), all.add(r), ga.total.add(r), ga.series.add(r)} {
			if err != nil {
				return dailyStatsResponse{}, err
			}
		}
		if groupBy == "tenant" {
			ga.addModel(r)
		}
	}
	slices.SortFunc(order, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	resp := dailyStatsResponse{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), GroupBy: groupBy,
		Totals: total.figures(), Series: all.points(), Groups: make([]dailyGroup, 0, len(order))}
	for _, key := range order {
		ga := groups[key]
		g := ga.group
		g.Totals, g.Series = ga.total.figures(), ga.series.points()
		g.TopModels = ga.topModels()
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

func groupKeyOf(r *db.DailyStat, groupBy string) ([2]string, dailyGroup) {
	switch groupBy {
	case "provider":
		return [2]string{r.Provider}, dailyGroup{Provider: &r.Provider}
	case "model":
		return [2]string{r.Provider, r.Model}, dailyGroup{Provider: &r.Provider, Model: &r.Model}
	}
	return [2]string{r.Tenant}, dailyGroup{Tenant: &r.Tenant}
}

func (ga *groupAcc) addModel(r *db.DailyStat) {
	key := [2]string{r.Provider, r.Model}
	m := ga.models[key]
	if m == nil {
		m = &topModel{Provider: r.Provider, Model: r.Model}
		ga.models[key], ga.cost[key] = m, new(big.Rat)
	}
	m.Requests += r.Requests
	if c, ok := new(big.Rat).SetString(r.CostUSD); ok {
		ga.cost[key].Add(ga.cost[key], c)
	}
}

// topModels ranks a tenant's models over the period by requests.
func (ga *groupAcc) topModels() []topModel {
	out := make([]topModel, 0, len(ga.models))
	for key, m := range ga.models {
		m.CostUSD = decimalString(ga.cost[key])
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b topModel) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Model, b.Model))
	})
	return out[:min(len(out), topModelsPerTenant)]
}

type backfillRequest struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Concurrency int    `json:"concurrency"`
}

type workflowStarted struct {
	WorkflowID    string `json:"workflow_id"`
	RunID         string `json:"run_id"`
	TemporalUIURL string `json:"temporal_ui_url"`
	Days          int    `json:"days,omitempty"`
}

// backfillDaily starts the backfill of a day range. Asking again for the
// same range while it runs returns the running backfill.
func (s *Server) backfillDaily(c echo.Context) error {
	var in backfillRequest
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	days, err := workflows.BackfillDays(in.From, in.To)
	if err != nil {
		return dayRangeError(err)
	}
	if to, _ := workflows.ParseDay("to", in.To); !to.Before(db.TruncateDay(s.now())) {
		return BadParam("to", "must be before today (UTC): a day is aggregated once it is over")
	}
	if in.Concurrency < 0 || in.Concurrency > workflows.MaxBackfillConcurrency {
		return BadParam("concurrency", "must be from 1 to 16, or omitted")
	}
	if s.temporal == nil {
		return errTemporalUnavailable
	}
	id := workflows.DailyBackfillWorkflowID(in.From, in.To)
	run, err := s.temporal.ExecuteWorkflow(c.Request().Context(), client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                s.cfg.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrJob.ValueSet(workflows.DailyBackfillWorkflowName)),
	}, workflows.DailyBackfillWorkflowName, workflows.DailyBackfillInput{From: in.From, To: in.To, Concurrency: in.Concurrency})
	if err != nil {
		return s.temporalError(c, "start daily backfill", err)
	}
	return c.JSON(http.StatusAccepted, workflowStarted{WorkflowID: id, RunID: run.GetRunID(),
		TemporalUIURL: s.temporalUIURL(id), Days: len(days)})
}

var errTemporalUnavailable = Errorf(http.StatusServiceUnavailable, "unavailable", "Temporal is unavailable; retry later")

// temporalError logs a Temporal failure and answers 503 without its text.
func (s *Server) temporalError(c echo.Context, what string, err error) error {
	s.log.Error("temporal call failed", "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
		"op", what, "err", err)
	return errTemporalUnavailable
}
