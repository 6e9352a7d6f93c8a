package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/uptrace/bun"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/workflows"
)

// alertingRoutes registers rules, alerts, silences and quotas (SPEC §9).
// Reading alerts takes read; every change takes admin.
func (s *Server) alertingRoutes(v1 *echo.Group) {
	read, admin := s.requireScope(db.ScopeRead), s.requireScope(db.ScopeAdmin)
	v1.GET("/alert-rules", s.listAlertRules, admin)
	v1.POST("/alert-rules", s.createAlertRule, admin)
	v1.GET("/alert-rules/:id", s.getAlertRule, admin)
	v1.PUT("/alert-rules/:id", s.updateAlertRule, admin)
	v1.DELETE("/alert-rules/:id", s.deleteAlertRule, admin)
	v1.GET("/alerts", s.listAlerts, read)
	v1.GET("/alerts/:fingerprint", s.getAlert, read)
	v1.GET("/alerts/:fingerprint/history", s.alertHistory, read)
	v1.POST("/alerts/:fingerprint/ack", s.ackAlert, admin)
	v1.GET("/silences", s.listSilences, read)
	v1.POST("/silences", s.createSilence, admin)
	v1.GET("/silences/:id", s.getSilence, read)
	v1.PUT("/silences/:id", s.updateSilence, admin)
	v1.DELETE("/silences/:id", s.deleteSilence, admin)
	v1.GET("/quotas", s.listQuotas, read)
	v1.PUT("/quotas/:tenant/:kind", s.putQuota, admin)
	v1.DELETE("/quotas/:tenant/:kind", s.deleteQuota, admin)
}

// Bounds of a rule.
const (
	maxRuleName     = 100
	maxRuleDuration = 24 * time.Hour
	maxRepeat       = 7 * 24 * time.Hour
	maxRuleRoutes   = 20
	maxRuleLabels   = 30
	maxLabelLength  = 200
	maxNoDataLookup = 7 * 24 * 60
	defaultWindow   = 5 * time.Minute
	maxComment      = 1000
)

// Group-by dimensions each kind of metric allows; rollup metrics also
// filter by the rollup dimensions.
var (
	rollupMetrics = []string{
		workflows.MetricErrorRate, workflows.MetricUpstream5xxRate, workflows.MetricTimeoutRate,
		workflows.MetricLatencyP50, workflows.MetricLatencyP95, workflows.MetricLatencyP99, workflows.MetricTTFTP95,
		workflows.MetricRPM, workflows.MetricTPM, workflows.MetricRPD, workflows.MetricTPD,
		workflows.MetricTrafficSpike, workflows.MetricCostPerDay, workflows.MetricNoData,
	}
	fixedGroupMetrics = map[string][]string{
		workflows.MetricProviderDown:       {"provider"},
		workflows.MetricQuotaUsage:         {"tenant"},
		workflows.MetricCostForecast:       {"tenant"},
		workflows.MetricDeadLetters:        {"channel_type"},
		workflows.MetricCredentialFailures: {},
	}
	quotaKinds = []string{"rpm", "tpm", "rpd", "tpd", "cost_per_day"}
	operators  = []string{">", ">=", "<", "<="}
	severities = []string{workflows.SeverityWarning, workflows.SeverityCritical}
)

// ruleRoute is a rule's route as clients write and read it.
type ruleRoute struct {
	ChannelID   int64  `json:"channel_id"`
	MinSeverity string `json:"min_severity"`
}

// ruleBody is a rule as clients write it. Durations are Go duration
// strings ("5m").
type ruleBody struct {
	Name          string             `json:"name"`
	Metric        string             `json:"metric"`
	Operator      string             `json:"operator"`
	Warning       *float64           `json:"warning"`
	Critical      *float64           `json:"critical"`
	Window        *notify.Duration   `json:"window"`
	For           *notify.Duration   `json:"for"`
	KeepFiringFor *notify.Duration   `json:"keep_firing_for"`
	MinSamples    int64              `json:"min_samples"`
	GroupBy       []string           `json:"group_by"`
	Filters       map[string]string  `json:"filters"`
	Params        db.AlertRuleParams `json:"params"`
	Repeat        *notify.Duration   `json:"repeat_interval"`
	Channels      []ruleRoute        `json:"channels"`
	Labels        map[string]string  `json:"labels"`
	Annotations   map[string]string  `json:"annotations"`
	Enabled       *bool              `json:"enabled"`
}

// ruleView is a rule as clients read it.
type ruleView struct {
	ID            int64              `json:"id"`
	Name          string             `json:"name"`
	Metric        string             `json:"metric"`
	Operator      string             `json:"operator"`
	Warning       float64            `json:"warning"`
	Critical      float64            `json:"critical"`
	Window        notify.Duration    `json:"window"`
	For           notify.Duration    `json:"for"`
	KeepFiringFor notify.Duration    `json:"keep_firing_for"`
	MinSamples    int64              `json:"min_samples"`
	GroupBy       []string           `json:"group_by"`
	Filters       map[string]string  `json:"filters"`
	Params        db.AlertRuleParams `json:"params"`
	Repeat        notify.Duration    `json:"repeat_interval"`
	Channels      []ruleRoute        `json:"channels"`
	Labels        map[string]string  `json:"labels"`
	Annotations   map[string]string  `json:"annotations"`
	Enabled       bool               `json:"enabled"`
	Version       int                `json:"version"`
	CreatedAt     time.Time          `json:"created_at"`
	UpdatedAt     time.Time          `json:"updated_at"`
}

func seconds(d int) notify.Duration { return notify.Duration(time.Duration(d) * time.Second) }

func viewRule(r *db.AlertRule) ruleView {
	v := ruleView{ID: r.ID, Name: r.Name, Metric: r.Metric, Operator: r.Operator, Warning: r.Warning, Critical: r.Critical,
		Window: seconds(r.WindowSeconds), For: seconds(r.ForSeconds), KeepFiringFor: seconds(r.KeepFiringForSeconds),
		MinSamples: r.MinSamples, GroupBy: r.GroupBy, Filters: r.Filters, Params: r.Params, Repeat: seconds(r.RepeatSeconds),
		Channels: []ruleRoute{}, Labels: r.Labels, Annotations: r.Annotations, Enabled: r.Enabled, Version: r.Version,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	for _, rt := range r.Routes {
		v.Channels = append(v.Channels, ruleRoute{ChannelID: rt.ChannelID, MinSeverity: rt.MinSeverity})
	}
	return v
}

// toRule validates the body and builds the row; the error names the field.
func (b *ruleBody) toRule() (*db.AlertRule, error) {
	b.Name = strings.TrimSpace(b.Name)
	if b.Name == "" || len(b.Name) > maxRuleName {
		return nil, BadParam("name", fmt.Sprintf("needs 1 to %d characters", maxRuleName))
	}
	fixed, isFixed := fixedGroupMetrics[b.Metric]
	if !isFixed && !slices.Contains(rollupMetrics, b.Metric) {
		return nil, BadParam("metric", "must be one of "+strings.Join(append(slices.Clone(rollupMetrics), sortedKeys(fixedGroupMetrics)...), ", "))
	}
	if b.Operator == "" {
		b.Operator = ">"
		if b.Metric == workflows.MetricCostForecast {
			b.Operator = "<" // hours left: fewer is worse
		}
	}
	if !slices.Contains(operators, b.Operator) {
		return nil, BadParam("operator", "must be one of >, >=, <, <=")
	}
	r := &db.AlertRule{Name: b.Name, Metric: b.Metric, Operator: b.Operator, Enabled: b.Enabled == nil || *b.Enabled,
		MinSamples: b.MinSamples, Params: b.Params}
	if err := b.thresholds(r); err != nil {
		return nil, err
	}
	if err := b.durations(r); err != nil {
		return nil, err
	}
	if b.MinSamples < 0 {
		return nil, BadParam("min_samples", "must not be negative")
	}
	if err := b.grouping(r, fixed, isFixed); err != nil {
		return nil, err
	}
	if err := b.params(r); err != nil {
		return nil, err
	}
	if err := b.routes(r); err != nil {
		return nil, err
	}
	var err error
	if r.Labels, err = labelMap("labels", b.Labels); err != nil {
		return nil, err
	}
	if r.Annotations, err = labelMap("annotations", b.Annotations); err != nil {
		return nil, err
	}
	if u, ok := r.Annotations["runbook_url"]; ok {
		if parsed, err := url.Parse(u); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return nil, BadParam("annotations.runbook_url", "must be an http(s) URL")
		}
	}
	return r, nil
}

// thresholds: warning is required; critical defaults to 2x warning (half
// for a "less than" rule) and must not be on the easy side of warning.
func (b *ruleBody) thresholds(r *db.AlertRule) error {
	if b.Warning == nil || math.IsNaN(*b.Warning) || math.IsInf(*b.Warning, 0) {
		return BadParam("warning", "is required: the warning threshold")
	}
	r.Warning = *b.Warning
	less := r.Operator == "<" || r.Operator == "<="
	switch {
	case b.Critical != nil:
		r.Critical = *b.Critical
	case less:
		r.Critical = r.Warning / 2
	default:
		r.Critical = r.Warning * 2
	}
	if math.IsNaN(r.Critical) || math.IsInf(r.Critical, 0) {
		return BadParam("critical", "must be a finite number")
	}
	if !less && r.Critical < r.Warning {
		return BadParam("critical", "must be at least warning for operator "+r.Operator)
	}
	if less && r.Critical > r.Warning {
		return BadParam("critical", "must be at most warning for operator "+r.Operator)
	}
	return nil
}

func (b *ruleBody) durations(r *db.AlertRule) error {
	window := defaultWindow
	if b.Window != nil {
		window = time.Duration(*b.Window)
	}
	for _, d := range []struct {
		name     string
		v        *notify.Duration
		min, max time.Duration
		dst      *int
	}{
		{"window", (*notify.Duration)(&window), time.Minute, maxRuleDuration, &r.WindowSeconds},
		{"for", b.For, 0, maxRuleDuration, &r.ForSeconds},
		{"keep_firing_for", b.KeepFiringFor, 0, maxRuleDuration, &r.KeepFiringForSeconds},
		{"repeat_interval", b.Repeat, 0, maxRepeat, &r.RepeatSeconds},
	} {
		if d.v == nil {
			continue
		}
		v := time.Duration(*d.v)
		if v < d.min || v > d.max || v%time.Minute != 0 {
			return BadParam(d.name, fmt.Sprintf("must be whole minutes from %s to %s", d.min, d.max))
		}
		*d.dst = int(v / time.Second)
	}
	return nil
}

func (b *ruleBody) grouping(r *db.AlertRule, fixed []string, isFixed bool) error {
	r.GroupBy, r.Filters = []string{}, map[string]string{}
	allowed := db.RollupDimensions
	if isFixed {
		allowed = fixed
	}
	for i, d := range b.GroupBy {
		if !slices.Contains(allowed, d) || slices.Contains(r.GroupBy, d) {
			return BadParam(fmt.Sprintf("group_by[%d]", i), fmt.Sprintf("must be distinct values among [%s] for metric %s",
				strings.Join(allowed, ", "), b.Metric))
		}
		r.GroupBy = append(r.GroupBy, d)
	}
	if isFixed {
		// These metrics always group this way; saying so is optional.
		r.GroupBy = slices.Clone(fixed)
	}
	for _, k := range sortedKeys(b.Filters) {
		if b.Metric == workflows.MetricDeadLetters || b.Metric == workflows.MetricCredentialFailures ||
			!slices.Contains(db.RollupDimensions, k) {
			return BadParam("filters."+k, "must be a rollup dimension (tenant, provider, model) of a traffic metric")
		}
		r.Filters[k] = b.Filters[k]
	}
	return nil
}

func (b *ruleBody) params(r *db.AlertRule) error {
	p := b.Params
	switch {
	case b.Metric == workflows.MetricQuotaUsage && !slices.Contains(quotaKinds, p.Quota):
		return BadParam("params.quota", "must be one of "+strings.Join(quotaKinds, ", "))
	case b.Metric != workflows.MetricQuotaUsage && p.Quota != "":
		return BadParam("params.quota", "only applies to metric quota_usage")
	case p.MinBaseline < 0 || math.IsNaN(p.MinBaseline) || math.IsInf(p.MinBaseline, 0):
		return BadParam("params.min_baseline", "must be a non-negative number")
	case p.LookbackMinutes < 0 || p.LookbackMinutes > maxNoDataLookup:
		return BadParam("params.lookback_minutes", fmt.Sprintf("must be from 0 to %d", maxNoDataLookup))
	}
	r.Params = p
	return nil
}

func (b *ruleBody) routes(r *db.AlertRule) error {
	if len(b.Channels) > maxRuleRoutes {
		return BadParam("channels", fmt.Sprintf("at most %d", maxRuleRoutes))
	}
	for i, rt := range b.Channels {
		if rt.MinSeverity == "" {
			rt.MinSeverity = workflows.SeverityWarning
		}
		if !slices.Contains(severities, rt.MinSeverity) {
			return BadParam(fmt.Sprintf("channels[%d].min_severity", i), "must be warning or critical")
		}
		if rt.ChannelID <= 0 || slices.ContainsFunc(r.Routes, func(x db.AlertRoute) bool { return x.ChannelID == rt.ChannelID }) {
			return BadParam(fmt.Sprintf("channels[%d].channel_id", i), "must be distinct channel ids")
		}
		r.Routes = append(r.Routes, db.AlertRoute{ChannelID: rt.ChannelID, MinSeverity: rt.MinSeverity})
	}
	return nil
}

func labelMap(field string, m map[string]string) (map[string]string, error) {
	if len(m) > maxRuleLabels {
		return nil, BadParam(field, fmt.Sprintf("at most %d entries", maxRuleLabels))
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if k == "" || len(k) > maxLabelLength || len(v) > maxLabelLength*10 {
			return nil, BadParam(field+"."+k, "keys need 1 to 200 characters, values at most 2000")
		}
		out[k] = v
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkRouteChannels names the first routed channel that does not exist.
func (s *Server) checkRouteChannels(ctx context.Context, r *db.AlertRule) error {
	for i, rt := range r.Routes {
		if _, err := db.GetChannel(ctx, s.db.Bun, rt.ChannelID); errors.Is(err, db.ErrNotFound) {
			return BadParam(fmt.Sprintf("channels[%d].channel_id", i), "no such channel")
		} else if err != nil {
			return err
		}
	}
	return nil
}

func ruleTarget(id int64) string { return "alert_rule:" + strconv.FormatInt(id, 10) }

func (s *Server) listAlertRules(c echo.Context) error {
	rules, err := db.ListAlertRules(c.Request().Context(), s.db.Bun)
	if err != nil {
		return err
	}
	out := struct {
		Rules []ruleView `json:"rules"`
	}{Rules: make([]ruleView, 0, len(rules))}
	for i := range rules {
		out.Rules = append(out.Rules, viewRule(&rules[i]))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getAlertRule(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	r, err := db.GetAlertRule(c.Request().Context(), s.db.Bun, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewRule(r))
}

func (s *Server) createAlertRule(c echo.Context) error {
	return s.saveAlertRule(c, 0)
}

func (s *Server) updateAlertRule(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	return s.saveAlertRule(c, id)
}

// saveAlertRule creates (id 0) or replaces a rule, audit-logged. A
// replaced rule keeps its alerts: fingerprints do not depend on the
// definition, so an edit re-evaluates them instead of raising new ones.
func (s *Server) saveAlertRule(c echo.Context, id int64) error {
	var body ruleBody
	if err := decodeJSON(c, &body, true); err != nil {
		return err
	}
	r, err := body.toRule()
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.checkRouteChannels(ctx, r); err != nil {
		return err
	}
	r.ID = id
	action := db.AuditAlertRuleCreate
	if id != 0 {
		action = db.AuditAlertRuleUpdate
	}
	err = s.db.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		save := db.CreateAlertRule
		if id != 0 {
			save = db.UpdateAlertRule
		}
		if err := save(ctx, tx, r); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: auditActor(c), Action: action, Target: ruleTarget(r.ID),
			Details: map[string]any{"name": r.Name, "metric": r.Metric, "version": r.Version}})
	})
	if errors.Is(err, db.ErrConflict) {
		return Errorf(http.StatusConflict, "conflict", "a rule named %q exists already, or a routed channel was deleted", r.Name)
	}
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if id != 0 {
		status = http.StatusOK
	}
	return c.JSON(status, viewRule(r))
}

func (s *Server) deleteAlertRule(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	err = s.db.Bun.RunInTx(c.Request().Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.DeleteAlertRule(ctx, tx, id); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: auditActor(c), Action: db.AuditAlertRuleDelete, Target: ruleTarget(id)})
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// alertView is an alert as clients see it. TemporalUIURL lists the
// alert's notify workflows in the Temporal UI.
type alertView struct {
	Fingerprint    string            `json:"fingerprint"`
	RuleID         int64             `json:"rule_id"`
	Labels         map[string]string `json:"labels"`
	State          string            `json:"state"`
	Severity       string            `json:"severity"`
	Value          float64           `json:"value"`
	PendingSince   *time.Time        `json:"pending_since,omitempty"`
	FiringSince    *time.Time        `json:"firing_since,omitempty"`
	ResolvedAt     *time.Time        `json:"resolved_at,omitempty"`
	LastNotifiedAt *time.Time        `json:"last_notified_at,omitempty"`
	LastEvalMinute time.Time         `json:"last_eval_minute"`
	AckedAt        *time.Time        `json:"acked_at,omitempty"`
	AckedBy        string            `json:"acked_by,omitempty"`
	AckComment     string            `json:"ack_comment,omitempty"`
	UpdatedAt      time.Time         `json:"updated_at"`
	TemporalUIURL  string            `json:"temporal_ui_url"`
}

func (s *Server) viewAlert(a *db.Alert) alertView {
	query := url.QueryEscape(fmt.Sprintf("%s=%q", workflows.SearchAttrAlertFingerprint.GetName(), a.Fingerprint))
	return alertView{Fingerprint: a.Fingerprint, RuleID: a.RuleID, Labels: a.Labels, State: a.State, Severity: a.Severity,
		Value: a.Value, PendingSince: a.PendingSince, FiringSince: a.FiringSince, ResolvedAt: a.ResolvedAt,
		LastNotifiedAt: a.LastNotifiedAt, LastEvalMinute: a.LastEvalMinute, AckedAt: a.AckedAt, AckedBy: a.AckedBy,
		AckComment: a.AckComment, UpdatedAt: a.UpdatedAt,
		TemporalUIURL: s.cfg.TemporalUIURL + "/namespaces/" + url.PathEscape(s.cfg.TemporalNamespace) + "/workflows?query=" + query}
}

// Paging of alerts and alert history.
const (
	defaultAlertPage = 100
	maxAlertPage     = 1000
)

var alertStates = []string{workflows.AlertOK, workflows.AlertPending, workflows.AlertFiring, workflows.AlertResolved}

func (s *Server) listAlerts(c echo.Context) error {
	f := db.AlertFilter{Limit: defaultAlertPage}
	switch st := c.QueryParam("state"); {
	case st == "" || st == "active":
	case st == "all":
		f.States = alertStates
	case slices.Contains(alertStates, st):
		f.States = []string{st}
	default:
		return BadParam("state", "must be active, all, ok, pending, firing or resolved")
	}
	if v := c.QueryParam("severity"); v != "" {
		if !slices.Contains(severities, v) {
			return BadParam("severity", "must be warning or critical")
		}
		f.Severity = v
	}
	if v := c.QueryParam("rule"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return BadParam("rule", "must be a rule id")
		}
		f.RuleID = id
	}
	limit, err := pageLimit(c, defaultAlertPage)
	if err != nil {
		return err
	}
	f.Limit = limit
	alerts, err := db.ListAlerts(c.Request().Context(), s.db.Bun, f)
	if err != nil {
		return err
	}
	out := struct {
		Alerts []alertView `json:"alerts"`
	}{Alerts: make([]alertView, 0, len(alerts))}
	for i := range alerts {
		out.Alerts = append(out.Alerts, s.viewAlert(&alerts[i]))
	}
	return c.JSON(http.StatusOK, out)
}

func pageLimit(c echo.Context, def int) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxAlertPage {
		return 0, BadParam("limit", "must be from 1 to "+strconv.Itoa(maxAlertPage))
	}
	return n, nil
}

// fingerprintParam checks the path's fingerprint (32 hex digits).
func fingerprintParam(c echo.Context) (string, error) {
	fp := c.Param("fingerprint")
	if len(fp) != 32 || strings.Trim(fp, "0123456789abcdef") != "" {
		return "", BadParam("fingerprint", "must be an alert fingerprint (32 lowercase hex digits)")
	}
	return fp, nil
}

func (s *Server) getAlert(c echo.Context) error {
	fp, err := fingerprintParam(c)
	if err != nil {
		return err
	}
	a, err := db.GetAlert(c.Request().Context(), s.db.Bun, fp)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.viewAlert(a))
}

// alertEventView is one entry of an alert's history.
type alertEventView struct {
	ID           int64             `json:"id"`
	At           time.Time         `json:"at"`
	From         string            `json:"from"`
	To           string            `json:"to"`
	FromSeverity string            `json:"from_severity,omitempty"`
	Severity     string            `json:"severity"`
	Value        float64           `json:"value"`
	Threshold    float64           `json:"threshold"`
	RuleVersion  int               `json:"rule_version"`
	Labels       map[string]string `json:"labels"`
	Notified     bool              `json:"notified"`
	MutedBy      string            `json:"muted_by,omitempty"`
	Actor        string            `json:"actor,omitempty"`
	Comment      string            `json:"comment,omitempty"`
}

func (s *Server) alertHistory(c echo.Context) error {
	fp, err := fingerprintParam(c)
	if err != nil {
		return err
	}
	var after int64
	if v := c.QueryParam("cursor"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return BadParam("cursor", "must be a next_cursor from a previous page")
		}
	}
	limit, err := pageLimit(c, defaultAlertPage)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	a, err := db.GetAlert(ctx, s.db.Bun, fp)
	if err != nil {
		return err
	}
	events, err := db.AlertHistory(ctx, s.db.Bun, fp, after, limit+1)
	if err != nil {
		return err
	}
	out := struct {
		Alert      alertView        `json:"alert"`
		Events     []alertEventView `json:"events"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}{Alert: s.viewAlert(a), Events: make([]alertEventView, 0, min(len(events), limit))}
	for _, e := range events[:min(len(events), limit)] {
		out.Events = append(out.Events, alertEventView{ID: e.ID, At: e.At, From: e.FromState, To: e.ToState,
			FromSeverity: e.FromSeverity, Severity: e.Severity, Value: e.Value, Threshold: e.Threshold, RuleVersion: e.RuleVersion,
			Labels: e.Labels, Notified: e.Notified, MutedBy: e.MutedBy, Actor: e.Actor, Comment: e.Comment})
	}
	if len(events) > limit {
		out.NextCursor = strconv.FormatInt(events[limit-1].ID, 10)
	}
	return c.JSON(http.StatusOK, out)
}

type ackBody struct {
	Comment string `json:"comment"`
}

// ackAlert acknowledges a firing alert: no repeats until it resolves. The
// acknowledgement is in the alert's history and the audit log.
func (s *Server) ackAlert(c echo.Context) error {
	fp, err := fingerprintParam(c)
	if err != nil {
		return err
	}
	var body ackBody
	if err := decodeJSON(c, &body, false); err != nil {
		return err
	}
	if len(body.Comment) > maxComment {
		return BadParam("comment", fmt.Sprintf("at most %d characters", maxComment))
	}
	actor, now := auditActor(c), s.now().UTC()
	var a *db.Alert
	err = s.db.Bun.RunInTx(c.Request().Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		var ackErr error
		if a, ackErr = db.AckAlert(ctx, tx, fp, actor, body.Comment, now); ackErr != nil {
			return ackErr
		}
		err := db.InsertAlertEvents(ctx, tx, []db.AlertEvent{{At: now, Fingerprint: fp, RuleID: a.RuleID, FromState: a.State,
			ToState: a.State, Severity: a.Severity, Labels: a.Labels, Value: a.Value,
			EventKey: "ack/" + now.Format(time.RFC3339Nano), Actor: actor, Comment: body.Comment, MutedBy: "acked"}})
		if err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: actor, Action: db.AuditAlertAck, Target: "alert:" + fp,
			Details: map[string]any{"comment": body.Comment}})
	})
	if errors.Is(err, db.ErrConflict) {
		return Errorf(http.StatusConflict, "not_firing", "only a firing alert can be acknowledged")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.viewAlert(a))
}

// silenceBody is a silence as clients write it: a rule, label matchers or
// both (at least one), and a window; starts_at defaults to now.
type silenceBody struct {
	RuleID   int64             `json:"rule_id"`
	Matchers map[string]string `json:"matchers"`
	StartsAt *time.Time        `json:"starts_at"`
	EndsAt   *time.Time        `json:"ends_at"`
	Comment  string            `json:"comment"`
}

func (s *Server) toSilence(ctx context.Context, b silenceBody) (*db.Silence, error) {
	now := s.now().UTC()
	sil := &db.Silence{RuleID: b.RuleID, Comment: b.Comment, StartsAt: now}
	if b.StartsAt != nil {
		sil.StartsAt = b.StartsAt.UTC()
	}
	var err error
	switch {
	case b.RuleID < 0:
		return nil, BadParam("rule_id", "must be a rule id")
	case b.RuleID == 0 && len(b.Matchers) == 0:
		return nil, BadParam("matchers", "a silence needs matchers, a rule_id or both; it never mutes everything")
	case b.EndsAt == nil:
		return nil, BadParam("ends_at", "is required")
	case !b.EndsAt.After(sil.StartsAt) || !b.EndsAt.After(now):
		return nil, BadParam("ends_at", "must be after starts_at and in the future")
	case len(b.Comment) > maxComment:
		return nil, BadParam("comment", fmt.Sprintf("at most %d characters", maxComment))
	}
	sil.EndsAt = b.EndsAt.UTC()
	if sil.Matchers, err = labelMap("matchers", b.Matchers); err != nil {
		return nil, err
	}
	if b.RuleID != 0 {
		if _, err := db.GetAlertRule(ctx, s.db.Bun, b.RuleID); errors.Is(err, db.ErrNotFound) {
			return nil, BadParam("rule_id", "no such rule")
		} else if err != nil {
			return nil, err
		}
	}
	return sil, nil
}

func silenceTarget(id int64) string { return "silence:" + strconv.FormatInt(id, 10) }

func (s *Server) listSilences(c echo.Context) error {
	all := false
	switch v := c.QueryParam("expired"); v {
	case "", "false":
	case "true":
		all = true
	default:
		return BadParam("expired", "must be true or false")
	}
	ss, err := db.ListSilences(c.Request().Context(), s.db.Bun, s.now(), all)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct {
		Silences []db.Silence `json:"silences"`
	}{ss})
}

func (s *Server) getSilence(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	sil, err := db.GetSilence(c.Request().Context(), s.db.Bun, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sil)
}

func (s *Server) createSilence(c echo.Context) error {
	return s.saveSilence(c, 0)
}

func (s *Server) updateSilence(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	return s.saveSilence(c, id)
}

func (s *Server) saveSilence(c echo.Context, id int64) error {
	var body silenceBody
	if err := decodeJSON(c, &body, true); err != nil {
		return err
	}
	ctx := c.Request().Context()
	sil, err := s.toSilence(ctx, body)
	if err != nil {
		return err
	}
	sil.ID, sil.CreatedBy = id, auditActor(c)
	action := db.AuditSilenceCreate
	if id != 0 {
		action = db.AuditSilenceUpdate
	}
	err = s.db.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		save := db.CreateSilence
		if id != 0 {
			save = db.UpdateSilence
		}
		if err := save(ctx, tx, sil); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: sil.CreatedBy, Action: action, Target: silenceTarget(sil.ID),
			Details: map[string]any{"rule_id": sil.RuleID, "matchers": sil.Matchers, "ends_at": sil.EndsAt}})
	})
	if err != nil {
		return err
	}
	if id != 0 {
		return c.JSON(http.StatusOK, sil)
	}
	return c.JSON(http.StatusCreated, sil)
}

func (s *Server) deleteSilence(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	err = s.db.Bun.RunInTx(c.Request().Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.DeleteSilence(ctx, tx, id); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: auditActor(c), Action: db.AuditSilenceDelete, Target: silenceTarget(id)})
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

const maxTenantName = 200

func quotaParams(c echo.Context) (tenant, kind string, err error) {
	tenant, kind = c.Param("tenant"), c.Param("kind")
	if tenant == "" || len(tenant) > maxTenantName {
		return "", "", BadParam("tenant", fmt.Sprintf("needs 1 to %d characters", maxTenantName))
	}
	if !slices.Contains(quotaKinds, kind) {
		return "", "", BadParam("kind", "must be one of "+strings.Join(quotaKinds, ", "))
	}
	return tenant, kind, nil
}

func (s *Server) listQuotas(c echo.Context) error {
	qs, err := db.ListTenantQuotas(c.Request().Context(), s.db.Bun, c.QueryParam("tenant"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct {
		Quotas []db.TenantQuota `json:"quotas"`
	}{qs})
}

type quotaBody struct {
	Limit *float64 `json:"limit"`
}

func (s *Server) putQuota(c echo.Context) error {
	tenant, kind, err := quotaParams(c)
	if err != nil {
		return err
	}
	var body quotaBody
	if err := decodeJSON(c, &body, true); err != nil {
		return err
	}
	if body.Limit == nil || !(*body.Limit > 0) || math.IsInf(*body.Limit, 0) {
		return BadParam("limit", "must be a positive number")
	}
	q := &db.TenantQuota{Tenant: tenant, Kind: kind, Limit: *body.Limit}
	err = s.db.Bun.RunInTx(c.Request().Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.PutTenantQuota(ctx, tx, q); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: auditActor(c), Action: db.AuditQuotaSet,
			Target: "quota:" + tenant + "/" + kind, Details: map[string]any{"limit": q.Limit}})
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, q)
}

func (s *Server) deleteQuota(c echo.Context) error {
	tenant, kind, err := quotaParams(c)
	if err != nil {
		return err
	}
	err = s.db.Bun.RunInTx(c.Request().Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.DeleteTenantQuota(ctx, tx, tenant, kind); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: auditActor(c), Action: db.AuditQuotaDelete, Target: "quota:" + tenant + "/" + kind})
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
