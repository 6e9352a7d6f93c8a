package activities

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/uptrace/bun"
	"go.temporal.io/sdk/activity"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/workflows"
)

// LoadAlertEval gathers one chunk of a minute's evaluation input: the
// next rules after the cursor (provider-down rules first) until their
// groups reach MaxGroups, every rule's metric value per group over the
// window that ends with the evaluated minute, the stored states those
// groups need, the silences in force, and the providers a provider-down
// alert of an earlier chunk inhibits. Reading only, it is safe to repeat;
// the same minute gives the same values once its rollups are complete.
func (a *Activities) LoadAlertEval(ctx context.Context, in workflows.LoadAlertEvalInput) (workflows.AlertEvalData, error) {
	minute := in.Minute.UTC().Truncate(time.Minute)
	maxGroups := in.MaxGroups
	if maxGroups <= 0 {
		maxGroups = workflows.DefaultAlertChunkGroups
	}
	out := workflows.AlertEvalData{Minute: minute, Rules: []workflows.AlertRule{}, Samples: []workflows.AlertSample{},
		States: []workflows.AlertState{}, Silences: []workflows.AlertSilence{}, Next: in.After}
	all, err := db.EvaluableAlertRules(ctx, a.DB.Bun)
	if err != nil {
		return out, a.unavailable(ctx, "load alert rules", err)
	}
	rules := rulesAfter(all, in.After)
	m := &ruleMetrics{a: a, minute: minute}
	var ids []int64
	var fingerprints []string
	for i := range rules {
		r := &rules[i]
		ids = append(ids, r.ID)
		out.Rules = append(out.Rules, ruleView(*r))
		out.Next = workflows.AlertRuleCursor{Started: true, Rest: r.Metric != workflows.MetricProviderDown, ID: r.ID}
		if r.Enabled && r.DeletedAt == nil {
			samples, err := m.samples(ctx, r)
			switch {
			case errors.Is(err, errUnknownMetric):
				activity.GetLogger(ctx).Warn("Skipping alert rule with unknown metric", "rule", r.ID, "metric", r.Metric)
			case err != nil:
				return out, a.unavailable(ctx, fmt.Sprintf("evaluate rule %d (%s)", r.ID, r.Metric), err)
			}
			for _, s := range samples {
				fingerprints = append(fingerprints, workflows.AlertFingerprint(r.UID, s.Labels))
			}
			out.Samples = append(out.Samples, samples...)
			activity.RecordHeartbeat(ctx, r.ID)
		}
		if len(out.Samples) >= maxGroups && i < len(rules)-1 {
			out.More = true
			break
		}
	}
	states, err := db.AlertStatesOf(ctx, a.DB.Bun, ids, fingerprints)
	if err != nil {
		return out, a.unavailable(ctx, "load alert states", err)
	}
	for _, s := range states {
		out.States = append(out.States, stateView(s))
	}
	if out.Inhibitors, err = db.FiringProviderDown(ctx, a.DB.Bun, ids); err != nil {
		return out, a.unavailable(ctx, "load provider-down alerts", err)
	}
	// A silence covers the evaluated minute if it is in force at its end.
	silences, err := db.ActiveSilences(ctx, a.DB.Bun, minute.Add(time.Minute))
	if err != nil {
		return out, a.unavailable(ctx, "load silences", err)
	}
	for _, s := range silences {
		out.Silences = append(out.Silences, workflows.AlertSilence{ID: s.ID, RuleID: s.RuleID, Matchers: s.Matchers})
	}
	if !in.After.Started {
		out.Unstarted, err = a.unstartedAlertNotifications(ctx)
	}
	return out, err
}

// Unstarted alert notifications are looked for between a day and two
// minutes old: younger ones may belong to a run still starting them; older
// ones would have been found by a day of runs already.
const (
	unstartedMinAge = 2 * time.Minute
	unstartedMaxAge = 24 * time.Hour
	unstartedLimit  = 100
)

// unstartedAlertNotifications finds stored alert notifications whose notify
// workflow may never have started, to be started (again) by the run.
func (a *Activities) unstartedAlertNotifications(ctx context.Context) ([]workflows.AlertNotifyStart, error) {
	now := a.now()
	rows, err := db.UnstartedAlertNotifications(ctx, a.DB.Bun, now.Add(-unstartedMaxAge), now.Add(-unstartedMinAge), unstartedLimit)
	if err != nil {
		return nil, a.unavailable(ctx, "load unstarted alert notifications", err)
	}
	channels := map[int64]*db.Channel{}
	for _, n := range rows {
		if err := a.loadChannel(ctx, channels, n.ChannelID); err != nil {
			return nil, err
		}
	}
	out := make([]workflows.AlertNotifyStart, 0, len(rows))
	for i := range rows {
		var alert notify.Alert
		if err := json.Unmarshal(rows[i].Payload, &alert); err != nil {
			return nil, fmt.Errorf("notification %s payload: %w", rows[i].ID, err)
		}
		start, err := a.alertNotifyStart(&rows[i], alert.Fingerprint, alert.Severity, channels)
		if err != nil {
			return nil, err
		}
		out = append(out, start)
	}
	if len(out) > 0 {
		activity.GetLogger(ctx).Warn("Starting alert notifications an earlier run stored but may not have started", "count", len(out))
	}
	return out, nil
}

// rulesAfter orders rules as chunks take them (provider-down rules first,
// then by id) and drops those up to the cursor.
func rulesAfter(rules []db.AlertRule, after workflows.AlertRuleCursor) []db.AlertRule {
	rest := func(r db.AlertRule) bool { return r.Metric != workflows.MetricProviderDown }
	slices.SortStableFunc(rules, func(x, y db.AlertRule) int {
		if rest(x) != rest(y) {
			if rest(x) {
				return 1
			}
			return -1
		}
		return cmp.Compare(x.ID, y.ID)
	})
	if !after.Started {
		return rules
	}
	return slices.DeleteFunc(rules, func(r db.AlertRule) bool {
		return rest(r) == after.Rest && r.ID <= after.ID || !rest(r) && after.Rest
	})
}

func ruleView(r db.AlertRule) workflows.AlertRule {
	v := workflows.AlertRule{ID: r.ID, UID: r.UID, Version: r.Version, Name: r.Name, Metric: r.Metric, Operator: r.Operator,
		Warning: r.Warning, Critical: r.Critical, MinSamples: r.MinSamples,
		For:           time.Duration(r.ForSeconds) * time.Second,
		KeepFiringFor: time.Duration(r.KeepFiringForSeconds) * time.Second,
		Repeat:        time.Duration(r.RepeatSeconds) * time.Second,
		Labels:        r.Labels, Annotations: r.Annotations, Enabled: r.Enabled && r.DeletedAt == nil}
	for _, rt := range r.Routes {
		v.Routes = append(v.Routes, workflows.AlertRoute{ChannelID: rt.ChannelID, MinSeverity: rt.MinSeverity})
	}
	return v
}

func stateView(s db.Alert) workflows.AlertState {
	return workflows.AlertState{Fingerprint: s.Fingerprint, RuleID: s.RuleID, Labels: s.Labels, State: s.State,
		Severity: s.Severity, Value: s.Value, PendingSince: utc(s.PendingSince), FiringSince: utc(s.FiringSince),
		LastActiveAt: utc(s.LastActiveAt), ResolvedAt: utc(s.ResolvedAt), LastNotifiedAt: utc(s.LastNotifiedAt),
		LastEvalMinute: s.LastEvalMinute.UTC(), Acked: s.AckedAt != nil, Seq: s.Seq, Version: s.Version}
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// ruleMetrics computes rule values for one evaluated minute.
type ruleMetrics struct {
	a      *Activities
	minute time.Time
	quotas map[string]map[string]float64 // tenant -> kind -> limit, loaded on first use
}

// window is the rule's window ending with the evaluated minute.
func (m *ruleMetrics) window(r *db.AlertRule) (from, to time.Time) {
	to = m.minute.Add(time.Minute)
	return to.Add(-time.Duration(r.WindowSeconds) * time.Second), to
}

// dayToDate is the UTC day of the evaluated minute, up to its end.
func (m *ruleMetrics) dayToDate() (from, to time.Time) {
	to = m.minute.Add(time.Minute)
	return m.minute.Truncate(24 * time.Hour), to
}

func (m *ruleMetrics) aggregate(ctx context.Context, r *db.AlertRule, from, to time.Time, groupBy []string, sketch string) ([]db.RollupAgg, error) {
	return db.AggregateRollups(ctx, m.a.DB.Bun, db.RollupAggQuery{From: from, To: to, GroupBy: groupBy, Filters: r.Filters, Sketch: sketch})
}

func sample(r *db.AlertRule, labels map[string]string, value float64, n int64) workflows.AlertSample {
	if labels == nil {
		labels = map[string]string{}
	}
	return workflows.AlertSample{RuleID: r.ID, Labels: labels, Value: value, Samples: n}
}

// samples is the rule's value per group. Groups without any observation
// report nothing: an active alert of such a group counts as clear.
func (m *ruleMetrics) samples(ctx context.Context, r *db.AlertRule) ([]workflows.AlertSample, error) {
	from, to := m.window(r)
	minutes := float64(r.WindowSeconds) / 60
	switch r.Metric {
	case workflows.MetricErrorRate, workflows.MetricProviderDown, workflows.MetricUpstream5xxRate, workflows.MetricTimeoutRate:
		groupBy := r.GroupBy
		if r.Metric == workflows.MetricProviderDown {
			groupBy = []string{"provider"}
		}
		aggs, err := m.aggregate(ctx, r, from, to, groupBy, "")
		return ratioSamples(r, aggs, func(g db.RollupAgg) int64 {
			switch r.Metric {
			case workflows.MetricUpstream5xxRate:
				return g.Status5xx
			case workflows.MetricTimeoutRate:
				return g.Timeouts
			}
			return g.Requests - g.Successes
		}), err
	case workflows.MetricLatencyP50, workflows.MetricLatencyP95, workflows.MetricLatencyP99, workflows.MetricTTFTP95:
		return m.quantileSamples(ctx, r, from, to)
	case workflows.MetricRPM, workflows.MetricTPM, workflows.MetricRPD, workflows.MetricTPD, workflows.MetricCostPerDay:
		per := minutes
		if r.Metric == workflows.MetricRPD || r.Metric == workflows.MetricTPD || r.Metric == workflows.MetricCostPerDay {
			from, to = m.dayToDate()
			per = 1
		}
		aggs, err := m.aggregate(ctx, r, from, to, r.GroupBy, "")
		var out []workflows.AlertSample
		for _, g := range aggs {
			out = append(out, sample(r, g.Labels, usage(r.Metric, g)/per, g.Requests))
		}
		return out, err
	case workflows.MetricTrafficSpike:
		return m.spikeSamples(ctx, r, from, to)
	case workflows.MetricQuotaUsage, workflows.MetricCostForecast:
		return m.quotaSamples(ctx, r, from, to)
	case workflows.MetricNoData:
		return m.noDataSamples(ctx, r)
	case workflows.MetricDeadLetters:
		return m.deadLetterSamples(ctx, r)
	case workflows.MetricCredentialFailures:
		creds, err := db.FailedCredentials(ctx, m.a.DB.Bun)
		var out []workflows.AlertSample
		for _, c := range creds {
			out = append(out, sample(r, map[string]string{"credential": c.Name}, float64(max(c.FailureCount, 1)), 1))
		}
		return out, err
	}
	return nil, errUnknownMetric
}

// errUnknownMetric is a stored rule this worker cannot evaluate (written by
// a newer version): it is skipped, the others still evaluate.
var errUnknownMetric = errors.New("unknown metric")

// usage is a group's total of the quantity a rate metric counts.
func usage(metric string, g db.RollupAgg) float64 {
	switch metric {
	case workflows.MetricTPM, workflows.MetricTPD:
		return float64(g.InputTokens + g.OutputTokens)
	case workflows.MetricCostPerDay:
		return g.CostUSD
	}
	return float64(g.Requests)
}

func ratioSamples(r *db.AlertRule, aggs []db.RollupAgg, bad func(db.RollupAgg) int64) []workflows.AlertSample {
	var out []workflows.AlertSample
	for _, g := range aggs {
		if g.Requests > 0 {
			out = append(out, sample(r, g.Labels, float64(bad(g))/float64(g.Requests), g.Requests))
		}
	}
	return out
}

func (m *ruleMetrics) quantileSamples(ctx context.Context, r *db.AlertRule, from, to time.Time) ([]workflows.AlertSample, error) {
	column, q := "latency_sketch", map[string]float64{
		workflows.MetricLatencyP50: 0.5, workflows.MetricLatencyP95: 0.95, workflows.MetricLatencyP99: 0.99, workflows.MetricTTFTP95: 0.95,
	}[r.Metric]
	if r.Metric == workflows.MetricTTFTP95 {
		column = "ttft_sketch"
	}
	aggs, err := m.aggregate(ctx, r, from, to, r.GroupBy, column)
	if err != nil {
		return nil, err
	}
	var out []workflows.AlertSample
	for _, g := range aggs {
		n := g.Requests
		if r.Metric == workflows.MetricTTFTP95 {
			n = g.TTFTCount
		}
		if n == 0 {
			continue
		}
		sk := db.NewLatencySketch()
		if err := db.MergeEncodedSketches(sk, g.Sketches...); err != nil {
			return nil, err
		}
		v, err := sk.GetValueAtQuantile(q)
		if err != nil {
			continue // an empty sketch: no latency to judge
		}
		out = append(out, sample(r, g.Labels, v, n))
	}
	return out, nil
}

// spikeSamples compares the window's requests with the same window at the
// same hour on each of the previous 7 days (their mean): the value is the
// ratio. A group whose baseline is under min_baseline is not judged.
func (m *ruleMetrics) spikeSamples(ctx context.Context, r *db.AlertRule, from, to time.Time) ([]workflows.AlertSample, error) {
	cur, err := m.aggregate(ctx, r, from, to, r.GroupBy, "")
	if err != nil {
		return nil, err
	}
	var ranges [][2]time.Time
	for d := 1; d <= 7; d++ {
		shift := -time.Duration(d) * 24 * time.Hour
		ranges = append(ranges, [2]time.Time{from.Add(shift), to.Add(shift)})
	}
	base, err := db.AggregateRollups(ctx, m.a.DB.Bun, db.RollupAggQuery{Ranges: ranges, GroupBy: r.GroupBy, Filters: r.Filters})
	if err != nil {
		return nil, err
	}
	baseline := map[string]float64{}
	for _, g := range base {
		baseline[workflows.AlertFingerprint("", g.Labels)] = float64(g.Requests) / 7
	}
	minBaseline := max(r.Params.MinBaseline, 1)
	var out []workflows.AlertSample
	for _, g := range cur {
		b := baseline[workflows.AlertFingerprint("", g.Labels)]
		if b < minBaseline {
			continue
		}
		out = append(out, sample(r, g.Labels, float64(g.Requests)/b, g.Requests))
	}
	return out, nil
}

// quotaSamples: quota_usage is a tenant's usage as a fraction of its quota
// (per-minute kinds averaged over the window, per-day kinds day to date);
// cost_forecast_hours is how many hours until the tenant's day-to-date
// cost crosses its cost_per_day quota at the window's burn rate (0 once
// crossed). Tenants without the quota are not judged.
func (m *ruleMetrics) quotaSamples(ctx context.Context, r *db.AlertRule, from, to time.Time) ([]workflows.AlertSample, error) {
	if err := m.loadQuotas(ctx); err != nil {
		return nil, err
	}
	kind := r.Params.Quota
	if r.Metric == workflows.MetricCostForecast {
		kind = "cost_per_day"
	}
	tenant := []string{"tenant"}
	var window []db.RollupAgg
	var err error
	if kind == "rpm" || kind == "tpm" || r.Metric == workflows.MetricCostForecast {
		if window, err = m.aggregate(ctx, r, from, to, tenant, ""); err != nil {
			return nil, err
		}
	}
	var day []db.RollupAgg
	if kind != "rpm" && kind != "tpm" {
		dayFrom, dayTo := m.dayToDate()
		if day, err = m.aggregate(ctx, r, dayFrom, dayTo, tenant, ""); err != nil {
			return nil, err
		}
	}
	minutes := float64(r.WindowSeconds) / 60
	var out []workflows.AlertSample
	switch {
	case r.Metric == workflows.MetricCostForecast:
		burn := map[string]float64{}
		for _, g := range window {
			burn[g.Labels["tenant"]] = g.CostUSD / (minutes / 60)
		}
		for _, g := range day {
			budget, ok := m.quotas[g.Labels["tenant"]][kind]
			if !ok {
				continue
			}
			left := budget - g.CostUSD
			perHour := burn[g.Labels["tenant"]]
			switch {
			case left <= 0:
				out = append(out, sample(r, g.Labels, 0, g.Requests))
			case perHour > 0:
				out = append(out, sample(r, g.Labels, left/perHour, g.Requests))
			}
		}
	case kind == "rpm" || kind == "tpm":
		for _, g := range window {
			if limit, ok := m.quotas[g.Labels["tenant"]][kind]; ok {
				metric := map[string]string{"rpm": workflows.MetricRPM, "tpm": workflows.MetricTPM}[kind]
				out = append(out, sample(r, g.Labels, usage(metric, g)/minutes/limit, g.Requests))
			}
		}
	default:
		metric := map[string]string{"rpd": workflows.MetricRPD, "tpd": workflows.MetricTPD, "cost_per_day": workflows.MetricCostPerDay}[kind]
		for _, g := range day {
			if limit, ok := m.quotas[g.Labels["tenant"]][kind]; ok {
				out = append(out, sample(r, g.Labels, usage(metric, g)/limit, g.Requests))
			}
		}
	}
	return out, nil
}

func (m *ruleMetrics) loadQuotas(ctx context.Context) error {
	if m.quotas != nil {
		return nil
	}
	qs, err := db.ListTenantQuotas(ctx, m.a.DB.Bun, "")
	if err != nil {
		return err
	}
	m.quotas = map[string]map[string]float64{}
	for _, q := range qs {
		if m.quotas[q.Tenant] == nil {
			m.quotas[q.Tenant] = map[string]float64{}
		}
		m.quotas[q.Tenant][q.Kind] = q.Limit
	}
	return nil
}

// noDataSamples: every group seen within the lookback (default 24 h)
// reports the minutes since its last request.
func (m *ruleMetrics) noDataSamples(ctx context.Context, r *db.AlertRule) ([]workflows.AlertSample, error) {
	lookback := time.Duration(r.Params.LookbackMinutes) * time.Minute
	if lookback <= 0 {
		lookback = 24 * time.Hour
	}
	to := m.minute.Add(time.Minute)
	aggs, err := m.aggregate(ctx, r, to.Add(-lookback), to, r.GroupBy, "")
	var out []workflows.AlertSample
	for _, g := range aggs {
		if g.Requests > 0 {
			out = append(out, sample(r, g.Labels, m.minute.Sub(g.LastMinute).Minutes(), g.Requests))
		}
	}
	return out, err
}

// deadLetterSamples counts dead notifications, per channel type when
// grouped so; the total reports even at zero, so its alert can resolve.
func (m *ruleMetrics) deadLetterSamples(ctx context.Context, r *db.AlertRule) ([]workflows.AlertSample, error) {
	depth, err := db.DeadLetterDepth(ctx, m.a.DB.Bun)
	if err != nil {
		return nil, err
	}
	if len(r.GroupBy) == 0 {
		var total int64
		for _, n := range depth {
			total += n
		}
		return []workflows.AlertSample{sample(r, nil, float64(total), total)}, nil
	}
	var out []workflows.AlertSample
	for ct, n := range depth {
		out = append(out, sample(r, map[string]string{"channel_type": ct}, float64(n), n))
	}
	return out, nil
}

// ApplyAlertUpdates stores one evaluation's decisions in one transaction:
// each alert with compare-and-set on its version (a retried call, or an
// evaluation racing another, never applies a transition twice), its
// events, and its notifications under their deterministic ids. It returns
// the notifications whose workflows the evaluation starts: those of every
// update applied now or by an earlier try of this call.
func (a *Activities) ApplyAlertUpdates(ctx context.Context, in workflows.ApplyAlertUpdatesInput) (workflows.ApplyAlertUpdatesResult, error) {
	var res workflows.ApplyAlertUpdatesResult
	channels, err := a.alertChannels(ctx, in.Updates)
	if err != nil {
		return res, err
	}
	var missed []workflows.AlertUpdate
	err = a.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res.Applied, missed = 0, nil
		for _, u := range in.Updates {
			ok, err := applyAlertUpdate(ctx, tx, in.Minute, u, channels)
			if err != nil {
				return err
			}
			if ok {
				res.Applied++
			} else {
				missed = append(missed, u)
			}
		}
		return nil
	})
	if err != nil {
		return res, a.unavailable(ctx, "apply alert updates", err)
	}
	for _, u := range missed {
		cur, err := db.GetAlert(ctx, a.DB.Bun, u.State.Fingerprint)
		if err != nil && !errors.Is(err, db.ErrNotFound) {
			return res, a.unavailable(ctx, "check alert", err)
		}
		// Applied by an earlier try of this very call: not a conflict.
		if err == nil && cur.Version == u.State.Version && cur.LastEvalMinute.Equal(in.Minute) {
			res.Applied++
			continue
		}
		res.Conflicts = append(res.Conflicts, u.State.Fingerprint)
	}
	res.Notify, err = a.alertNotifyStarts(ctx, in.Updates, res.Conflicts, channels)
	return res, err
}

// alertChannels loads the live channels the updates notify.
func (a *Activities) alertChannels(ctx context.Context, updates []workflows.AlertUpdate) (map[int64]*db.Channel, error) {
	channels := map[int64]*db.Channel{}
	for _, u := range updates {
		for _, n := range u.Notifications {
			if err := a.loadChannel(ctx, channels, n.ChannelID); err != nil {
				return nil, err
			}
		}
	}
	return channels, nil
}

// loadChannel adds channel id to channels unless it is there already; a
// deleted channel is stored as nil.
func (a *Activities) loadChannel(ctx context.Context, channels map[int64]*db.Channel, id int64) error {
	if _, seen := channels[id]; seen {
		return nil
	}
	ch, err := db.GetChannel(ctx, a.DB.Bun, id)
	switch {
	case errors.Is(err, db.ErrNotFound):
		channels[id] = nil // deleted since the rule was routed: skipped
	case err != nil:
		return a.unavailable(ctx, "load channel", err)
	default:
		channels[id] = ch
	}
	return nil
}

func applyAlertUpdate(ctx context.Context, tx bun.Tx, minute time.Time, u workflows.AlertUpdate, channels map[int64]*db.Channel) (bool, error) {
	st := u.State
	row := &db.Alert{Fingerprint: st.Fingerprint, RuleID: st.RuleID, Labels: st.Labels, State: st.State, Severity: st.Severity,
		Value: finite(st.Value), PendingSince: st.PendingSince, FiringSince: st.FiringSince, LastActiveAt: st.LastActiveAt,
		ResolvedAt: st.ResolvedAt, LastNotifiedAt: st.LastNotifiedAt, LastEvalMinute: st.LastEvalMinute, Seq: st.Seq, Version: st.Version}
	newCycle := false
	for _, ev := range u.Events {
		newCycle = newCycle || ev.From == workflows.AlertOK || ev.From == workflows.AlertResolved
	}
	ok, err := db.PutAlert(ctx, tx, row, u.ExpectedVersion, newCycle)
	if err != nil || !ok {
		return false, err
	}
	events := make([]db.AlertEvent, 0, len(u.Events))
	for _, ev := range u.Events {
		events = append(events, db.AlertEvent{At: minute, Fingerprint: st.Fingerprint, RuleID: st.RuleID, RuleVersion: u.RuleVersion,
			FromState: ev.From, ToState: ev.To, FromSeverity: ev.FromSeverity, Severity: ev.Severity, Labels: st.Labels,
			Value: finite(ev.Value), Threshold: ev.Threshold, EventKey: ev.Key, Notified: ev.Notified, MutedBy: ev.MutedBy})
	}
	if err := db.InsertAlertEvents(ctx, tx, events); err != nil {
		return false, err
	}
	for _, n := range u.Notifications {
		ch := channels[n.ChannelID]
		if ch == nil {
			continue
		}
		payload, err := json.Marshal(notify.Alert{Fingerprint: st.Fingerprint, Status: n.Status, Severity: n.Severity,
			Title: n.Title, Summary: n.Summary, Labels: n.Labels, Annotations: n.Annotations, StartsAt: n.StartsAt, EndsAt: n.EndsAt})
		if err != nil {
			return false, err
		}
		err = db.InsertAlertNotification(ctx, tx, &db.Notification{ID: n.ID, ChannelID: ch.ID, ChannelType: ch.Type,
			Kind: notify.KindAlert, Payload: payload, WorkflowID: workflows.NotifyWorkflowID(n.ID)})
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// finite keeps NaN and infinities (a metric over nothing) out of
// PostgreSQL and JSON.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// alertNotifyStarts lists the stored, still pending notifications of the
// applied updates with their notify workflow input.
func (a *Activities) alertNotifyStarts(ctx context.Context, updates []workflows.AlertUpdate, conflicts []string, channels map[int64]*db.Channel) ([]workflows.AlertNotifyStart, error) {
	skip := map[string]bool{}
	for _, fp := range conflicts {
		skip[fp] = true
	}
	type origin struct{ fingerprint, severity string }
	from := map[string]origin{}
	var ids []string
	for _, u := range updates {
		if skip[u.State.Fingerprint] {
			continue
		}
		for _, n := range u.Notifications {
			ids = append(ids, n.ID)
			from[n.ID] = origin{u.State.Fingerprint, n.Severity}
		}
	}
	stored, err := db.NotificationsByID(ctx, a.DB.Bun, ids)
	if err != nil {
		return nil, a.unavailable(ctx, "load alert notifications", err)
	}
	var out []workflows.AlertNotifyStart
	for i := range stored {
		n := &stored[i]
		if n.Status != db.NotificationPending {
			continue
		}
		start, err := a.alertNotifyStart(n, from[n.ID].fingerprint, from[n.ID].severity, channels)
		if err != nil {
			return nil, err
		}
		out = append(out, start)
	}
	return out, nil
}

// alertNotifyStart is how the run starts n's notify workflow: the
// configured retry policy with the channel's override.
func (a *Activities) alertNotifyStart(n *db.Notification, fingerprint, severity string, channels map[int64]*db.Channel) (workflows.AlertNotifyStart, error) {
	policy := a.NotifyRetry
	if policy.Validate() != nil {
		policy = workflows.DefaultNotifyRetryPolicy
	}
	var override notify.RetryOverride
	if ch := channels[n.ChannelID]; ch != nil && len(ch.Retry) > 0 {
		if err := json.Unmarshal(ch.Retry, &override); err != nil {
			return workflows.AlertNotifyStart{}, fmt.Errorf("channel %d retry policy: %w", n.ChannelID, err)
		}
	}
	return workflows.AlertNotifyStart{Fingerprint: fingerprint, Severity: severity,
		Input: workflows.NotifyInput{NotificationID: n.ID, ChannelType: n.ChannelType, Retry: override.Apply(policy)}}, nil
}
