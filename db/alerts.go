package db

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Audit actions of alerting.
const (
	AuditAlertRuleCreate = "alert_rule.create"
	AuditAlertRuleUpdate = "alert_rule.update"
	AuditAlertRuleDelete = "alert_rule.delete"
	AuditAlertAck        = "alert.ack"
	AuditSilenceCreate   = "silence.create"
	AuditSilenceUpdate   = "silence.update"
	AuditSilenceDelete   = "silence.delete"
	AuditQuotaSet        = "quota.set"
	AuditQuotaDelete     = "quota.delete"
)

// AlertRuleParams are the settings only some metrics use.
type AlertRuleParams struct {
	// Quota is the quota kind quota_usage measures (rpm, tpm, rpd, tpd,
	// cost_per_day).
	Quota string `json:"quota,omitempty"`
	// MinBaseline is traffic_spike's smallest baseline (requests per
	// window) worth comparing with.
	MinBaseline float64 `json:"min_baseline,omitempty"`
	// LookbackMinutes is how far back no_data looks for groups that went
	// quiet.
	LookbackMinutes int `json:"lookback_minutes,omitempty"`
}

// AlertRule is a rule (SPEC §9). Version counts edits.
type AlertRule struct {
	bun.BaseModel `bun:"table:alert_rules"`

	ID                   int64             `bun:"id,pk,autoincrement"`
	UID                  string            `bun:"uid,type:uuid,nullzero,default:gen_random_uuid()"`
	Name                 string            `bun:"name"`
	Metric               string            `bun:"metric"`
	Operator             string            `bun:"operator"`
	Warning              float64           `bun:"warning"`
	Critical             float64           `bun:"critical"`
	WindowSeconds        int               `bun:"window_seconds"`
	ForSeconds           int               `bun:"for_seconds"`
	KeepFiringForSeconds int               `bun:"keep_firing_for_seconds"`
	MinSamples           int64             `bun:"min_samples"`
	GroupBy              []string          `bun:"group_by,array"`
	Filters              map[string]string `bun:"filters,type:jsonb"`
	Params               AlertRuleParams   `bun:"params,type:jsonb"`
	RepeatSeconds        int               `bun:"repeat_seconds"`
	Labels               map[string]string `bun:"labels,type:jsonb"`
	Annotations          map[string]string `bun:"annotations,type:jsonb"`
	Enabled              bool              `bun:"enabled"`
	Version              int               `bun:"version,nullzero,default:1"`
	CreatedAt            time.Time         `bun:"created_at,nullzero,default:now()"`
	UpdatedAt            time.Time         `bun:"updated_at,nullzero,default:now()"`
	DeletedAt            *time.Time        `bun:"deleted_at"`

	Routes []AlertRoute `bun:"-"`
}

// AlertRoute sends a rule's notifications of at least MinSeverity to a
// channel.
type AlertRoute struct {
	bun.BaseModel `bun:"table:alert_routes"`

	RuleID      int64  `bun:"rule_id,pk" json:"-"`
	ChannelID   int64  `bun:"channel_id,pk" json:"channel_id"`
	MinSeverity string `bun:"min_severity" json:"min_severity"`
}

// CreateAlertRule stores a rule and its routes; a live rule of the same
// name is ErrConflict, an unknown channel too.
func CreateAlertRule(ctx context.Context, idb bun.IDB, r *AlertRule) error {
	r.normalise()
	if _, err := idb.NewInsert().Model(r).Returning("id, uid, version, created_at, updated_at").Exec(ctx); err != nil {
		return MapError(err)
	}
	return replaceRoutes(ctx, idb, r)
}

// UpdateAlertRule replaces a live rule's definition and routes and counts
// the edit. Its alerts keep their state: their fingerprints do not change.
func UpdateAlertRule(ctx context.Context, idb bun.IDB, r *AlertRule) error {
	r.normalise()
	res, err := idb.NewUpdate().Model(r).
		ExcludeColumn("id", "uid", "version", "created_at", "updated_at", "deleted_at").
		Set("version = version + 1").
		Set("updated_at = now()").
		Where("id = ?", r.ID).Where("deleted_at IS NULL").
		Returning("uid, version, created_at, updated_at").
		Exec(ctx)
	if err := oneRow(res, err); err != nil {
		return err
	}
	return replaceRoutes(ctx, idb, r)
}

// normalise stores absent collections as empty ones (the columns are NOT
// NULL).
func (r *AlertRule) normalise() {
	if r.GroupBy == nil {
		r.GroupBy = []string{}
	}
	for _, m := range []*map[string]string{&r.Filters, &r.Labels, &r.Annotations} {
		if *m == nil {
			*m = map[string]string{}
		}
	}
}

func replaceRoutes(ctx context.Context, idb bun.IDB, r *AlertRule) error {
	if _, err := idb.NewDelete().Model((*AlertRoute)(nil)).Where("rule_id = ?", r.ID).Exec(ctx); err != nil {
		return MapError(err)
	}
	if len(r.Routes) == 0 {
		return nil
	}
	for i := range r.Routes {
		r.Routes[i].RuleID = r.ID
	}
	// Only live channels: a deleted one would reject every notification.
	var live int
	ids := make([]int64, len(r.Routes))
	for i, rt := range r.Routes {
		ids[i] = rt.ChannelID
	}
	err := idb.NewSelect().Model((*Channel)(nil)).ColumnExpr("count(*)").
		Where("id IN (?)", bun.In(ids)).Where("deleted_at IS NULL").Scan(ctx, &live)
	if err != nil {
		return MapError(err)
	}
	if live != len(r.Routes) {
		return &Error{Kind: ErrConflict, Err: errors.New("a routed channel does not exist")}
	}
	_, err = idb.NewInsert().Model(&r.Routes).Exec(ctx)
	return MapError(err)
}

// DeleteAlertRule marks a live rule deleted; the evaluator resolves its
// alerts on its next run.
func DeleteAlertRule(ctx context.Context, idb bun.IDB, id int64) error {
	res, err := idb.NewUpdate().Model((*AlertRule)(nil)).
		Set("deleted_at = now()").Set("updated_at = now()").
		Where("id = ?", id).Where("deleted_at IS NULL").
		Exec(ctx)
	return oneRow(res, err)
}

// GetAlertRule returns a live rule with its routes.
func GetAlertRule(ctx context.Context, idb bun.IDB, id int64) (*AlertRule, error) {
	rules, err := selectRules(ctx, idb, func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.Where("id = ?", id).Where("deleted_at IS NULL")
	})
	if err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return nil, &Error{Kind: ErrNotFound, Err: sql.ErrNoRows}
	}
	return &rules[0], nil
}

// ListAlertRules returns every live rule with its routes, oldest first.
func ListAlertRules(ctx context.Context, idb bun.IDB) ([]AlertRule, error) {
	return selectRules(ctx, idb, func(q *bun.SelectQuery) *bun.SelectQuery { return q.Where("deleted_at IS NULL") })
}

// EvaluableAlertRules returns the rules an evaluation needs: every enabled
// live rule, and every other rule that still has a pending or firing alert
// (so the evaluator can resolve it).
func EvaluableAlertRules(ctx context.Context, idb bun.IDB) ([]AlertRule, error) {
	return selectRules(ctx, idb, func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.Where("(enabled AND deleted_at IS NULL) OR id IN (SELECT rule_id FROM alerts WHERE state IN ('pending', 'firing'))")
	})
}

func selectRules(ctx context.Context, idb bun.IDB, where func(*bun.SelectQuery) *bun.SelectQuery) ([]AlertRule, error) {
	var rules []AlertRule
	if err := where(idb.NewSelect().Model(&rules)).Order("id").Scan(ctx); err != nil {
		return nil, MapError(err)
	}
	if len(rules) == 0 {
		return rules, nil
	}
	ids := make([]int64, len(rules))
	byID := make(map[int64]*AlertRule, len(rules))
	for i := range rules {
		ids[i], byID[rules[i].ID] = rules[i].ID, &rules[i]
		rules[i].Routes = []AlertRoute{}
	}
	var routes []AlertRoute
	err := idb.NewSelect().Model(&routes).Where("rule_id IN (?)", bun.In(ids)).Order("rule_id", "channel_id").Scan(ctx)
	if err != nil {
		return nil, MapError(err)
	}
	for _, rt := range routes {
		byID[rt.RuleID].Routes = append(byID[rt.RuleID].Routes, rt)
	}
	return rules, nil
}

// Alert is an alert's durable state (one row per fingerprint).
type Alert struct {
	bun.BaseModel `bun:"table:alerts"`

	Fingerprint    string            `bun:"fingerprint,pk"`
	RuleID         int64             `bun:"rule_id"`
	Labels         map[string]string `bun:"labels,type:jsonb"`
	State          string            `bun:"state"`
	Severity       string            `bun:"severity"`
	Value          float64           `bun:"value"`
	PendingSince   *time.Time        `bun:"pending_since"`
	FiringSince    *time.Time        `bun:"firing_since"`
	LastActiveAt   *time.Time        `bun:"last_active_at"`
	ResolvedAt     *time.Time        `bun:"resolved_at"`
	LastNotifiedAt *time.Time        `bun:"last_notified_at"`
	LastEvalMinute time.Time         `bun:"last_eval_minute"`
	AckedAt        *time.Time        `bun:"acked_at"`
	AckedBy        string            `bun:"acked_by,nullzero"`
	AckComment     string            `bun:"ack_comment,nullzero"`
	Seq            int               `bun:"seq"`
	Version        int64             `bun:"version"`
	UpdatedAt      time.Time         `bun:"updated_at,nullzero,default:now()"`
}

// AlertStatesOf returns the stored alerts of the given rules that are
// pending or firing, or among fingerprints: what an evaluation needs,
// without the quiet history of every group ever seen.
func AlertStatesOf(ctx context.Context, idb bun.IDB, ruleIDs []int64, fingerprints []string) ([]Alert, error) {
	var as []Alert
	if len(ruleIDs) == 0 {
		return as, nil
	}
	err := idb.NewSelect().Model(&as).Where("rule_id = ANY(?)", pgdialect.Array(ruleIDs)).
		Where("(state IN ('pending', 'firing') OR fingerprint = ANY(?))", pgdialect.Array(fingerprints)).
		Order("fingerprint").Scan(ctx)
	return as, MapError(err)
}

// FiringProviderDown maps each provider with a firing provider-down alert
// of a rule outside exceptRules to that alert's fingerprint.
func FiringProviderDown(ctx context.Context, idb bun.IDB, exceptRules []int64) (map[string]string, error) {
	var rows []struct {
		Provider    string `bun:"provider"`
		Fingerprint string `bun:"fingerprint"`
	}
	err := idb.NewSelect().TableExpr("alerts AS a").Join("JOIN alert_rules AS r ON r.id = a.rule_id").
		ColumnExpr("a.labels->>'provider' AS provider, a.fingerprint").
		Where("r.metric = 'provider_down'").Where("a.state = 'firing'").
		Where("NOT (a.rule_id = ANY(?))", pgdialect.Array(exceptRules)).
		OrderExpr("a.fingerprint").Scan(ctx, &rows)
	if err != nil {
		return nil, MapError(err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		if _, ok := out[r.Provider]; !ok && r.Provider != "" {
			out[r.Provider] = r.Fingerprint
		}
	}
	return out, nil
}

// AlertFilter selects alerts for the API.
type AlertFilter struct {
	// States lists the states wanted; empty means pending and firing.
	States   []string
	Severity string
	RuleID   int64
	Limit    int
}

// ListAlerts returns alerts matching f, most recently changed first.
func ListAlerts(ctx context.Context, idb bun.IDB, f AlertFilter) ([]Alert, error) {
	var as []Alert
	states := f.States
	if len(states) == 0 {
		states = []string{"pending", "firing"}
	}
	q := idb.NewSelect().Model(&as).Where("state IN (?)", bun.In(states)).Order("updated_at DESC", "fingerprint").Limit(int64(f.Limit))
	if f.Severity != "" {
		q = q.Where("severity = ?", f.Severity)
	}
	if f.RuleID != 0 {
		q = q.Where("rule_id = ?", f.RuleID)
	}
	err := q.Scan(ctx)
	return as, MapError(err)
}

// GetAlert returns one alert.
func GetAlert(ctx context.Context, idb bun.IDB, fingerprint string) (*Alert, error) {
	a := new(Alert)
	if err := idb.NewSelect().Model(a).Where("fingerprint = ?", fingerprint).Scan(ctx); err != nil {
		return nil, MapError(err)
	}
	return a, nil
}

// PutAlert writes an evaluated alert with compare-and-set: a new alert
// (expectedVersion 0) only if none exists, an existing one only at
// expectedVersion. ok is false when someone else got there first. The
// acknowledgement columns belong to the API; a new cycle (newCycle) clears
// them.
func PutAlert(ctx context.Context, idb bun.IDB, a *Alert, expectedVersion int64, newCycle bool) (ok bool, err error) {
	if expectedVersion == 0 {
		res, err := idb.NewInsert().Model(a).On("CONFLICT (fingerprint) DO NOTHING").Exec(ctx)
		return changed(res, err)
	}
	q := idb.NewUpdate().Model(a).
		Column("labels", "state", "severity", "value", "pending_since", "firing_since", "last_active_at",
			"resolved_at", "last_notified_at", "last_eval_minute", "seq", "version").
		Set("updated_at = now()").
		Where("fingerprint = ?", a.Fingerprint).Where("version = ?", expectedVersion)
	if newCycle {
		q = q.Set("acked_at = NULL").Set("acked_by = NULL").Set("ack_comment = NULL")
	}
	res, err := q.Exec(ctx)
	return changed(res, err)
}

// AckAlert acknowledges a firing alert: no repeats until it resolves. It
// does not count as a version change, so it never makes an evaluation
// conflict. ErrNotFound: no such alert; ErrConflict: not firing.
func AckAlert(ctx context.Context, idb bun.IDB, fingerprint, actor, comment string, at time.Time) (*Alert, error) {
	a := new(Alert)
	err := idb.NewUpdate().Model(a).
		Set("acked_at = ?", at).Set("acked_by = ?", actor).Set("ack_comment = ?", comment).
		Where("fingerprint = ?", fingerprint).Where("state = 'firing'").
		Returning("*").Scan(ctx)
	if err = MapError(err); errors.Is(err, ErrNotFound) {
		if _, getErr := GetAlert(ctx, idb, fingerprint); getErr != nil {
			return nil, getErr
		}
		return nil, &Error{Kind: ErrConflict, Err: errors.New("alert is not firing")}
	}
	return a, err
}

// AlertEvent is one transition of an alert (its history).
type AlertEvent struct {
	bun.BaseModel `bun:"table:alert_events"`

	ID           int64             `bun:"id,pk,autoincrement"`
	At           time.Time         `bun:"at"`
	Fingerprint  string            `bun:"fingerprint"`
	RuleID       int64             `bun:"rule_id"`
	RuleVersion  int               `bun:"rule_version"`
	FromState    string            `bun:"from_state"`
	ToState      string            `bun:"to_state"`
	FromSeverity string            `bun:"from_severity,nullzero"`
	Severity     string            `bun:"severity"`
	Labels       map[string]string `bun:"labels,type:jsonb"`
	Value        float64           `bun:"value"`
	Threshold    float64           `bun:"threshold"`
	EventKey     string            `bun:"event_key"`
	Notified     bool              `bun:"notified"`
	MutedBy      string            `bun:"muted_by,nullzero"`
	Actor        string            `bun:"actor,nullzero"`
	Comment      string            `bun:"comment,nullzero"`
	CreatedAt    time.Time         `bun:"created_at,nullzero,default:now()"`
}

// InsertAlertEvents records events; one already recorded (same alert and
// key) is skipped.
func InsertAlertEvents(ctx context.Context, idb bun.IDB, events []AlertEvent) error {
	if len(events) == 0 {
		return nil
	}
	_, err := idb.NewInsert().Model(&events).On("CONFLICT (fingerprint, event_key) DO NOTHING").Exec(ctx)
	return MapError(err)
}

// AlertHistory returns an alert's events in the order recorded, after the
// cursor id.
func AlertHistory(ctx context.Context, idb bun.IDB, fingerprint string, after int64, limit int) ([]AlertEvent, error) {
	var es []AlertEvent
	err := idb.NewSelect().Model(&es).Where("fingerprint = ?", fingerprint).Where("id > ?", after).
		Order("id").Limit(int64(limit)).Scan(ctx)
	return es, MapError(err)
}

// InsertAlertNotification stores a notification under its deterministic
// id; one stored already is left alone (a retried evaluation).
func InsertAlertNotification(ctx context.Context, idb bun.IDB, n *Notification) error {
	_, err := idb.NewInsert().Model(n).On("CONFLICT (id) DO NOTHING").Exec(ctx)
	return MapError(err)
}

// NotificationsByID returns the stored notifications among ids.
func NotificationsByID(ctx context.Context, idb bun.IDB, ids []string) ([]Notification, error) {
	var ns []Notification
	if len(ids) == 0 {
		return ns, nil
	}
	err := idb.NewSelect().Model(&ns).Where("id IN (?)", bun.In(ids)).Order("id").Scan(ctx)
	return ns, MapError(err)
}

// UnstartedAlertNotifications lists up to limit alert notifications created
// in [after, before) that are still pending with no attempt: their notify
// workflow may never have started (an evaluation run that stored them and
// failed before starting it). Starting such a workflow again is a no-op
// when it exists, so the caller may start all of them.
func UnstartedAlertNotifications(ctx context.Context, idb bun.IDB, after, before time.Time, limit int) ([]Notification, error) {
	var ns []Notification
	err := idb.NewSelect().Model(&ns).
		Where("status = ?", NotificationPending).Where("kind = 'alert'").Where("attempts = 0").
		Where("created_at >= ? AND created_at < ?", after, before).
		Order("created_at").Limit(int64(limit)).Scan(ctx)
	return ns, MapError(err)
}

// Silence mutes the notifications of matching alerts between StartsAt and
// EndsAt.
type Silence struct {
	bun.BaseModel `bun:"table:silences"`

	ID        int64             `bun:"id,pk,autoincrement" json:"id"`
	RuleID    int64             `bun:"rule_id,nullzero" json:"rule_id,omitempty"`
	Matchers  map[string]string `bun:"matchers,type:jsonb" json:"matchers"`
	StartsAt  time.Time         `bun:"starts_at" json:"starts_at"`
	EndsAt    time.Time         `bun:"ends_at" json:"ends_at"`
	CreatedBy string            `bun:"created_by" json:"created_by"`
	Comment   string            `bun:"comment" json:"comment"`
	CreatedAt time.Time         `bun:"created_at,nullzero,default:now()" json:"created_at"`
}

// CreateSilence stores a silence.
func CreateSilence(ctx context.Context, idb bun.IDB, s *Silence) error {
	_, err := idb.NewInsert().Model(s).Returning("id, created_at").Exec(ctx)
	return MapError(err)
}

// UpdateSilence replaces a silence's matchers, window and comment.
func UpdateSilence(ctx context.Context, idb bun.IDB, s *Silence) error {
	res, err := idb.NewUpdate().Model(s).Column("rule_id", "matchers", "starts_at", "ends_at", "comment").
		Where("id = ?", s.ID).Returning("created_by, created_at").Exec(ctx)
	return oneRow(res, err)
}

// DeleteSilence removes a silence.
func DeleteSilence(ctx context.Context, idb bun.IDB, id int64) error {
	res, err := idb.NewDelete().Model((*Silence)(nil)).Where("id = ?", id).Exec(ctx)
	return oneRow(res, err)
}

// GetSilence returns one silence.
func GetSilence(ctx context.Context, idb bun.IDB, id int64) (*Silence, error) {
	s := new(Silence)
	if err := idb.NewSelect().Model(s).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, MapError(err)
	}
	return s, nil
}

// ListSilences returns silences not yet ended at now (all when all is
// set), soonest ending first.
func ListSilences(ctx context.Context, idb bun.IDB, now time.Time, all bool) ([]Silence, error) {
	ss := []Silence{}
	q := idb.NewSelect().Model(&ss).Order("ends_at", "id")
	if !all {
		q = q.Where("ends_at > ?", now)
	}
	err := q.Scan(ctx)
	return ss, MapError(err)
}

// ActiveSilences returns the silences in force at t.
func ActiveSilences(ctx context.Context, idb bun.IDB, t time.Time) ([]Silence, error) {
	var ss []Silence
	err := idb.NewSelect().Model(&ss).Where("starts_at <= ?", t).Where("ends_at > ?", t).Order("id").Scan(ctx)
	return ss, MapError(err)
}

// TenantQuota is one tenant's limit of one kind.
type TenantQuota struct {
	bun.BaseModel `bun:"table:tenant_quotas"`

	Tenant    string    `bun:"tenant,pk" json:"tenant"`
	Kind      string    `bun:"kind,pk" json:"kind"`
	Limit     float64   `bun:"quota_limit" json:"limit"`
	UpdatedAt time.Time `bun:"updated_at,nullzero,default:now()" json:"updated_at"`
}

// PutTenantQuota creates or replaces a quota.
func PutTenantQuota(ctx context.Context, idb bun.IDB, q *TenantQuota) error {
	_, err := idb.NewInsert().Model(q).
		On("CONFLICT (tenant, kind) DO UPDATE").Set("quota_limit = EXCLUDED.quota_limit").Set("updated_at = now()").
		Returning("updated_at").Exec(ctx)
	return MapError(err)
}

// DeleteTenantQuota removes a quota.
func DeleteTenantQuota(ctx context.Context, idb bun.IDB, tenant, kind string) error {
	res, err := idb.NewDelete().Model((*TenantQuota)(nil)).Where("tenant = ?", tenant).Where("kind = ?", kind).Exec(ctx)
	return oneRow(res, err)
}

// ListTenantQuotas returns every quota, of one tenant when tenant is set.
func ListTenantQuotas(ctx context.Context, idb bun.IDB, tenant string) ([]TenantQuota, error) {
	qs := []TenantQuota{}
	q := idb.NewSelect().Model(&qs).Order("tenant", "kind")
	if tenant != "" {
		q = q.Where("tenant = ?", tenant)
	}
	err := q.Scan(ctx)
	return qs, MapError(err)
}

// RollupDimensions are the rollup columns an alert may group or filter by.
var RollupDimensions = []string{"tenant", "provider", "model"}

// RollupAggQuery sums minute rollups over [From, To) per group. Ranges,
// when set, replace [From, To) with several windows (a baseline).
type RollupAggQuery struct {
	From, To time.Time
	Ranges   [][2]time.Time
	GroupBy  []string
	Filters  map[string]string
	// Sketch names the sketch column to collect ("latency_sketch",
	// "ttft_sketch"), or "" for none.
	Sketch string
}

// RollupAgg is one group's totals.
type RollupAgg struct {
	Labels       map[string]string
	Requests     int64
	Successes    int64
	Status5xx    int64
	Timeouts     int64
	InputTokens  int64
	OutputTokens int64
	TTFTCount    int64
	CostUSD      float64
	LastMinute   time.Time
	Sketches     [][]byte
}

// AggregateRollups sums rollup_minute per group. It sums over every row of
// a group, never assuming one row per minute and dimensions, so rollups
// with more dimensions still add up.
func AggregateRollups(ctx context.Context, idb bun.IDB, q RollupAggQuery) ([]RollupAgg, error) {
	for _, d := range q.GroupBy {
		if !isRollupDimension(d) {
			return nil, fmt.Errorf("group by %q: not a rollup dimension", d)
		}
	}
	sel := idb.NewSelect().TableExpr("rollup_minute").
		ColumnExpr("coalesce(sum(requests), 0), coalesce(sum(successes), 0), coalesce(sum(status_5xx), 0)").
		ColumnExpr("coalesce(sum(timeouts), 0), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0)").
		ColumnExpr("coalesce(sum(ttft_count), 0), coalesce(sum(cost_usd), 0)::float8").
		ColumnExpr("max(minute) FILTER (WHERE requests > 0) AS last_minute")
	if q.Sketch == "latency_sketch" || q.Sketch == "ttft_sketch" {
		// Base64 text travels through database/sql unchanged, unlike bytea[].
		sel = sel.ColumnExpr("coalesce(string_agg(encode(?, 'base64'), ','), '')", bun.Ident(q.Sketch))
	} else {
		sel = sel.ColumnExpr("''")
	}
	for _, d := range q.GroupBy {
		sel = sel.ColumnExpr("? AS ?", bun.Ident(d), bun.Ident("g_"+d)).GroupExpr("?", bun.Ident(d))
	}
	if len(q.Ranges) == 0 {
		sel = sel.Where("minute >= ?", q.From).Where("minute < ?", q.To)
	} else {
		sel = sel.WhereGroup(" AND ", func(w *bun.SelectQuery) *bun.SelectQuery {
			for _, r := range q.Ranges {
				w = w.WhereOr("(minute >= ? AND minute < ?)", r[0], r[1])
			}
			return w
		})
	}
	for k, v := range q.Filters {
		if !isRollupDimension(k) {
			return nil, fmt.Errorf("filter %q: not a rollup dimension", k)
		}
		sel = sel.Where("? = ?", bun.Ident(k), v)
	}
	rows, err := sel.Rows(ctx)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	var out []RollupAgg
	for rows.Next() {
		var a RollupAgg
		var last sql.NullTime
		var sketches string
		groups := make([]string, len(q.GroupBy))
		dest := []any{&a.Requests, &a.Successes, &a.Status5xx, &a.Timeouts, &a.InputTokens, &a.OutputTokens,
			&a.TTFTCount, &a.CostUSD, &last, &sketches}
		for i := range groups {
			dest = append(dest, &groups[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, MapError(err)
		}
		// An empty group (filters matched nothing) still sums to one row
		// of NULLs when nothing is grouped.
		if !last.Valid && a.Requests == 0 && len(q.GroupBy) == 0 {
			continue
		}
		a.LastMinute = last.Time
		if a.Sketches, err = decodeSketchList(sketches); err != nil {
			return nil, err
		}
		a.Labels = make(map[string]string, len(groups))
		for i, d := range q.GroupBy {
			a.Labels[d] = groups[i]
		}
		out = append(out, a)
	}
	return out, MapError(rows.Err())
}

func decodeSketchList(s string) ([][]byte, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([][]byte, len(parts))
	for i, p := range parts {
		// encode(..., 'base64') wraps lines every 76 characters.
		b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(p, "\n", ""))
		if err != nil {
			return nil, fmt.Errorf("decode sketch: %w", err)
		}
		out[i] = b
	}
	return out, nil
}

func isRollupDimension(d string) bool {
	for _, x := range RollupDimensions {
		if x == d {
			return true
		}
	}
	return false
}

// FailedCredential is a credential whose refresh keeps failing.
type FailedCredential struct {
	Name         string `bun:"name"`
	Status       string `bun:"status"`
	FailureCount int64  `bun:"failure_count"`
}

// FailedCredentials lists live credentials whose refresh is failing
// (status error or disabled).
func FailedCredentials(ctx context.Context, idb bun.IDB) ([]FailedCredential, error) {
	var out []FailedCredential
	err := idb.NewRaw(`SELECT name, status, failure_count::bigint AS failure_count FROM credentials
		WHERE status IN ('error', 'disabled') AND deleted_at IS NULL ORDER BY name`).Scan(ctx, &out)
	return out, MapError(err)
}
