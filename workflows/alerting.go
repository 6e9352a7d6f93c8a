package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// scheduledStartTime is set by Temporal on every workflow a schedule
// starts: the slot's nominal time, the same for every retry of the slot.
var scheduledStartTime = temporal.NewSearchAttributeKeyTime("TemporalScheduledStartTime")

// inhibitedByProviderDown are the metrics a firing provider-down alert of
// the same provider mutes: they only restate the outage.
var inhibitedByProviderDown = map[string]bool{
	MetricErrorRate: true, MetricUpstream5xxRate: true, MetricTimeoutRate: true,
	MetricLatencyP50: true, MetricLatencyP95: true, MetricLatencyP99: true, MetricTTFTP95: true,
}

// alertNotificationNamespace seeds the name-based (v5) notification ids.
var alertNotificationNamespace = uuid.MustParse("6f1d3f9e-7c1a-4c55-9a43-0b8f3c6e2a10")

// AlertEval evaluates every alert rule for one minute (SPEC §9): load, run
// the state machine, persist with compare-and-set, start the notifications.
// The result lists the transitions, so the run's page in the Temporal UI
// tells the minute's story; each notification is a child notify workflow
// carrying the alert's fingerprint.
func AlertEval(ctx workflow.Context, in AlertEvalInput) (AlertEvalResult, error) {
	return alertEval(ctx, in)
}

func alertEval(ctx workflow.Context, in AlertEvalInput) (AlertEvalResult, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrJob.ValueSet(AlertEvalWorkflowName)); err != nil {
		return AlertEvalResult{}, fmt.Errorf("upsert search attributes: %w", err)
	}
	minute := evalMinute(ctx, in)
	res := AlertEvalResult{Minute: minute, Transitions: []AlertTransition{}}
	loadCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 5,
		},
	})
	severity := ""
	// Each chunk is loaded, evaluated, stored and notified before the next
	// loads, so a later chunk sees this minute's provider-down alerts.
	for cursor := (AlertRuleCursor{}); ; {
		var data AlertEvalData
		load := LoadAlertEvalInput{Minute: minute, After: cursor, MaxGroups: DefaultAlertChunkGroups}
		if err := workflow.ExecuteActivity(loadCtx, ActivityLoadAlertEval, load).Get(ctx, &data); err != nil {
			return AlertEvalResult{}, fmt.Errorf("%s: %w", ActivityLoadAlertEval, err)
		}
		if len(data.Unstarted) > 0 {
			if err := startAlertNotifications(ctx, data.Unstarted); err != nil {
				return AlertEvalResult{}, err
			}
			res.Restarted += len(data.Unstarted)
		}
		res.Chunks++
		res.Rules += len(data.Rules)
		res.Groups += len(data.Samples)
		sev, err := evalChunk(ctx, minute, data, &res)
		if err != nil {
			return AlertEvalResult{}, err
		}
		if severityRank(sev) > severityRank(severity) {
			severity = sev
		}
		if !data.More {
			break
		}
		cursor = data.Next
	}
	if severity != "" {
		if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrAlertSeverity.ValueSet(severity)); err != nil {
			return AlertEvalResult{}, fmt.Errorf("upsert search attributes: %w", err)
		}
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("minute %s: %d transition(s), %d notification(s), %d conflict(s)",
		minute.Format(time.RFC3339), res.TransitionCount, res.Notifications, res.Conflicts))
	return res, nil
}

// evalChunk runs the state machine over one chunk, stores the result and
// starts its notifications; it returns the highest severity firing.
func evalChunk(ctx workflow.Context, minute time.Time, data AlertEvalData, res *AlertEvalResult) (string, error) {
	updates := EvaluateAlerts(data)
	if len(updates) == 0 {
		return "", nil
	}
	// The updates are what this minute decided; once computed they must be
	// stored, so the call retries until PostgreSQL answers.
	var applied ApplyAlertUpdatesResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeepingOptions()), ActivityApplyAlertUpdates,
		ApplyAlertUpdatesInput{Minute: minute, Updates: updates}).Get(ctx, &applied)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ActivityApplyAlertUpdates, err)
	}
	res.Conflicts += len(applied.Conflicts)
	conflicts := make(map[string]bool, len(applied.Conflicts))
	for _, fp := range applied.Conflicts {
		conflicts[fp] = true
	}
	for _, u := range updates {
		if conflicts[u.State.Fingerprint] {
			continue
		}
		for _, ev := range u.Events {
			res.TransitionCount++
			if len(res.Transitions) < MaxListedTransitions {
				res.Transitions = append(res.Transitions, AlertTransition{Fingerprint: u.State.Fingerprint, Rule: u.RuleName,
					From: ev.From, To: ev.To, Severity: ev.Severity, Muted: ev.MutedBy})
			}
		}
	}
	if err := startAlertNotifications(ctx, applied.Notify); err != nil {
		return "", err
	}
	res.Notifications += len(applied.Notify)
	return highestFiring(updates, conflicts), nil
}

// evalMinute is the minute to evaluate: the input's, or the minute before
// the schedule slot (the collector has rolled it up by then), so every try
// of one slot evaluates the same minute.
func evalMinute(ctx workflow.Context, in AlertEvalInput) time.Time {
	if in.Minute != nil {
		return in.Minute.UTC().Truncate(time.Minute)
	}
	at, ok := workflow.GetTypedSearchAttributes(ctx).GetTime(scheduledStartTime)
	if !ok {
		at = workflow.Now(ctx)
	}
	return at.UTC().Truncate(time.Minute).Add(-time.Minute)
}

// startAlertNotifications starts one notify workflow per notification, as
// an abandoned child: it outlives this run, and shows up under it in the
// Temporal UI. Ids are deterministic and duplicates rejected, so starting
// one that a previous try started already is a no-op.
func startAlertNotifications(ctx workflow.Context, starts []AlertNotifyStart) error {
	futures := make([]workflow.ChildWorkflowFuture, 0, len(starts))
	for _, s := range starts {
		childCtx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            NotifyWorkflowID(s.Input.NotificationID),
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				SearchAttrJob.ValueSet(NotifyWorkflowName),
				SearchAttrNotificationStatus.ValueSet(NotificationPending),
				SearchAttrChannelType.ValueSet(s.Input.ChannelType),
				SearchAttrAlertFingerprint.ValueSet(s.Fingerprint),
				SearchAttrAlertSeverity.ValueSet(s.Severity)),
			Memo: map[string]any{"alert_fingerprint": s.Fingerprint},
		})
		futures = append(futures, workflow.ExecuteChildWorkflow(childCtx, NotifyWorkflowName, s.Input))
	}
	for i, f := range futures {
		err := f.GetChildWorkflowExecution().Get(ctx, nil)
		if err != nil && !temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			return fmt.Errorf("start %s: %w", NotifyWorkflowID(starts[i].Input.NotificationID), err)
		}
	}
	return nil
}

func highestFiring(updates []AlertUpdate, skip map[string]bool) string {
	sev := ""
	for _, u := range updates {
		if u.State.State == AlertFiring && !skip[u.State.Fingerprint] && severityRank(u.State.Severity) > severityRank(sev) {
			sev = u.State.Severity
		}
	}
	return sev
}

// AlertFingerprint identifies an alert: its rule (by its never-reused
// uid) and group labels. Label order does not matter; rule edits keep the
// fingerprint, so a changed threshold re-evaluates the same alert instead
// of raising a new one.
func AlertFingerprint(ruleUID string, labels map[string]string) string {
	h := sha256.New()
	h.Write([]byte(ruleUID))
	//workflowcheck:ignore sorted
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte{0})
		h.Write([]byte(k))
		h.Write([]byte{1})
		h.Write([]byte(labels[k]))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// AlertNotificationID is the deterministic id of the notification of an
// alert's seq-th notifying transition to a channel.
func AlertNotificationID(fingerprint string, seq int, channelID int64) string {
	return uuid.NewSHA1(alertNotificationNamespace, fmt.Appendf(nil, "%s/%d/%d", fingerprint, seq, channelID)).String()
}

// Breach tells which threshold value crosses under r: critical, warning
// or none ("").
func Breach(r AlertRule, value float64) string {
	switch {
	case crosses(r.Operator, value, r.Critical):
		return SeverityCritical
	case crosses(r.Operator, value, r.Warning):
		return SeverityWarning
	}
	return ""
}

func crosses(op string, v, threshold float64) bool {
	switch op {
	case ">":
		return v > threshold
	case ">=":
		return v >= threshold
	case "<":
		return v < threshold
	case "<=":
		return v <= threshold
	}
	return false
}

func severityRank(s string) int {
	switch s {
	case SeverityWarning:
		return 1
	case SeverityCritical:
		return 2
	}
	return 0
}

// observation is one alert's input for the minute.
type observation struct {
	rule   *AlertRule
	labels map[string]string
	value  float64
	sev    string // "" when clear, or not enough samples
}

// notifyKind says why a step notifies.
type notifyKind int

const (
	notifyNone notifyKind = iota
	notifyFiring
	notifyEscalation
	notifyRepeat
	notifyResolved
)

// stepped is one alert after the minute's step, before muting and routing.
type stepped struct {
	obs      observation
	expected int64
	state    AlertState
	event    *AlertEvent
	notify   notifyKind
}

// EvaluateAlerts is the alert state machine: from the minute's samples and
// the stored states it computes every alert's new state, its events and its
// notifications. It is pure (no I/O, no clock), so it runs inside the
// workflow and in plain unit tests. Per alert:
//
//   - ok/resolved -> pending when the condition holds (-> firing at once
//     when `for` is zero); pending -> firing once it has held for `for`
//     (pending_since is stored, so a restart does not reset the clock);
//     pending -> ok when it clears first;
//   - firing: warning -> critical escalates (notified); severity never
//     drops within a firing cycle, so a flapping value cannot re-notify;
//     still firing after the repeat interval re-notifies unless acked;
//   - firing -> resolved only once clear for keep_firing_for (hysteresis);
//   - an alert whose rule was disabled or deleted resolves at once.
//
// Silences and inhibition (a firing provider-down alert mutes error-rate,
// timeout and latency alerts of its provider) mute notifications; the
// state moves all the same. An alert evaluated for this minute already (a
// re-run) is left alone.
func EvaluateAlerts(data AlertEvalData) []AlertUpdate {
	minute := data.Minute.UTC().Truncate(time.Minute)
	rules := make(map[int64]*AlertRule, len(data.Rules))
	for i := range data.Rules {
		rules[data.Rules[i].ID] = &data.Rules[i]
	}
	states := make(map[string]*AlertState, len(data.States))
	for i := range data.States {
		states[data.States[i].Fingerprint] = &data.States[i]
	}
	obs := map[string]observation{}
	for _, s := range data.Samples {
		r := rules[s.RuleID]
		if r == nil || !r.Enabled {
			continue
		}
		o := observation{rule: r, labels: s.Labels, value: s.Value}
		if s.Samples >= r.MinSamples {
			o.sev = Breach(*r, s.Value)
		}
		obs[AlertFingerprint(r.UID, s.Labels)] = o
	}
	// Active alerts without a sample this minute (traffic stopped, rule
	// disabled) are clear.
	//workflowcheck:ignore fills a map: order-independent
	for fp, st := range states {
		if _, ok := obs[fp]; ok || (st.State != AlertPending && st.State != AlertFiring) {
			continue
		}
		if r := rules[st.RuleID]; r != nil {
			obs[fp] = observation{rule: r, labels: st.Labels, value: st.Value}
		}
	}
	var steps []*stepped
	//workflowcheck:ignore sorted
	for _, fp := range slices.Sorted(maps.Keys(obs)) {
		st := states[fp]
		if st != nil && !st.LastEvalMinute.Before(minute) {
			continue
		}
		if s := step(fp, obs[fp], st, minute); s != nil {
			steps = append(steps, s)
		}
	}
	downProviders := firingProviderDown(steps, states, rules)
	//workflowcheck:ignore fills a map with distinct keys
	for p, fp := range data.Inhibitors {
		if _, ok := downProviders[p]; !ok {
			downProviders[p] = fp
		}
	}
	updates := make([]AlertUpdate, 0, len(steps))
	for _, s := range steps {
		route(s, minute, data.Silences, downProviders)
		u := AlertUpdate{ExpectedVersion: s.expected, RuleName: s.obs.rule.Name, RuleVersion: s.obs.rule.Version, State: s.state}
		u.State.Version = s.expected + 1
		if s.event != nil {
			u.Events = []AlertEvent{*s.event}
		}
		u.Notifications = s.notifications(minute)
		updates = append(updates, u)
	}
	return updates
}

// step moves one alert through the minute; nil means nothing to write.
func step(fp string, o observation, prev *AlertState, minute time.Time) *stepped {
	r := o.rule
	s := &stepped{obs: o}
	var st AlertState
	if prev != nil {
		st, s.expected = *prev, prev.Version
	} else {
		st = AlertState{Fingerprint: fp, RuleID: r.ID, Labels: o.labels, State: AlertOK, Severity: SeverityWarning}
	}
	from, fromSev := st.State, st.Severity
	st.LastEvalMinute, st.Value = minute, o.value
	if !r.Enabled {
		o.sev = ""
	}
	switch st.State {
	case AlertOK, AlertResolved:
		if o.sev == "" {
			return nil // nothing happened to a quiet alert
		}
		// A new cycle: everything from the last one is forgotten.
		st.PendingSince, st.FiringSince, st.LastActiveAt, st.ResolvedAt, st.LastNotifiedAt = &minute, nil, &minute, nil, nil
		st.Acked, st.Severity, st.State = false, o.sev, AlertPending
		if r.For <= 0 {
			s.fire(&st, minute)
		}
	case AlertPending:
		switch {
		case o.sev == "":
			st.State, st.PendingSince = AlertOK, nil
		case minute.Sub(*st.PendingSince) >= r.For:
			st.Severity, st.LastActiveAt = o.sev, &minute
			s.fire(&st, minute)
		default:
			st.Severity, st.LastActiveAt = o.sev, &minute
		}
	case AlertFiring:
		switch {
		case o.sev != "":
			st.LastActiveAt = &minute
			if severityRank(o.sev) > severityRank(st.Severity) {
				st.Severity, s.notify = o.sev, notifyEscalation
			} else if r.Repeat > 0 && !st.Acked && minute.Sub(lastNotice(st)) >= r.Repeat {
				s.notify = notifyRepeat
			}
		case !r.Enabled || st.LastActiveAt == nil || minute.Sub(*st.LastActiveAt) >= max(r.KeepFiringFor, time.Minute):
			st.State, st.ResolvedAt, s.notify = AlertResolved, &minute, notifyResolved
		}
	}
	if s.notify != notifyNone {
		st.Seq++
	}
	s.state = st
	if st.State != from || st.Severity != fromSev || s.notify == notifyRepeat {
		s.event = &AlertEvent{Key: eventKey(minute, st.Seq, s.notify), From: from, To: st.State, Severity: st.Severity,
			Value: o.value, Threshold: threshold(r, st.Severity)}
		if fromSev != st.Severity && (from == AlertPending || from == AlertFiring) {
			s.event.FromSeverity = fromSev
		}
	}
	return s
}

func (s *stepped) fire(st *AlertState, minute time.Time) {
	st.State, st.FiringSince, s.notify = AlertFiring, &minute, notifyFiring
}

// lastNotice starts the repeat interval: the last notification, or the
// start of firing if none went out (silenced, inhibited).
func lastNotice(st AlertState) time.Time {
	if st.LastNotifiedAt != nil {
		return *st.LastNotifiedAt
	}
	return *st.FiringSince
}

// eventKey is unique per alert: notifying transitions by their sequence
// number, the others by minute (an alert moves at most once a minute).
func eventKey(minute time.Time, seq int, k notifyKind) string {
	if k != notifyNone {
		return "n" + strconv.Itoa(seq)
	}
	return minute.Format(time.RFC3339)
}

func threshold(r *AlertRule, sev string) float64 {
	if sev == SeverityCritical {
		return r.Critical
	}
	return r.Warning
}

// firingProviderDown lists the providers with a provider-down alert firing
// after this minute: stepped now, or firing and not stepped (evaluated by
// an earlier try of the minute).
func firingProviderDown(steps []*stepped, states map[string]*AlertState, rules map[int64]*AlertRule) map[string]string {
	down := map[string]string{}
	mark := func(st AlertState, r *AlertRule) {
		p := st.Labels["provider"]
		if _, taken := down[p]; !taken && r != nil && r.Metric == MetricProviderDown && st.State == AlertFiring && p != "" {
			down[p] = st.Fingerprint
		}
	}
	seen := map[string]bool{}
	for _, s := range steps {
		seen[s.state.Fingerprint] = true
		mark(s.state, s.obs.rule)
	}
	//workflowcheck:ignore sorted
	for _, fp := range slices.Sorted(maps.Keys(states)) {
		if !seen[fp] {
			mark(*states[fp], rules[states[fp].RuleID])
		}
	}
	return down
}

// route decides whether a notifying step is muted, and records it.
func route(s *stepped, minute time.Time, silences []AlertSilence, down map[string]string) {
	if s.notify == notifyNone {
		return
	}
	muted := ""
	if s.notify == notifyResolved && s.state.LastNotifiedAt == nil {
		// Nobody heard it fire (silenced or inhibited throughout).
		muted = "never-notified"
	}
	if muted == "" {
		muted = silencedBy(s, silences)
	}
	if fp, ok := down[s.state.Labels["provider"]]; muted == "" && ok && inhibitedByProviderDown[s.obs.rule.Metric] {
		muted = "inhibited:" + fp
	}
	if muted != "" && s.notify == notifyRepeat {
		// A muted repeat is no transition: nothing to record. Its clock
		// stays expired, so the first minute after the silence (or the
		// inhibition) ends notifies.
		s.event, s.notify = nil, notifyNone
		s.state.Seq--
		return
	}
	if muted != "" {
		s.event.MutedBy = muted
		s.notify = notifyNone
		return
	}
	s.event.Notified = true
	s.state.LastNotifiedAt = &minute
}

func silencedBy(s *stepped, silences []AlertSilence) string {
	for _, sil := range silences {
		if sil.RuleID != 0 && sil.RuleID != s.obs.rule.ID {
			continue
		}
		matches := true
		//workflowcheck:ignore all must match: order-independent
		for k, v := range sil.Matchers {
			if s.state.Labels[k] != v && s.obs.rule.Labels[k] != v {
				matches = false
				break
			}
		}
		if matches {
			return "silence:" + strconv.FormatInt(sil.ID, 10)
		}
	}
	return ""
}

// notifications routes a step's notification to every channel whose
// minimum severity it meets.
func (s *stepped) notifications(minute time.Time) []AlertNotification {
	if s.notify == notifyNone {
		return nil
	}
	r, st := s.obs.rule, s.state
	status := AlertFiring
	var ends *time.Time
	if s.notify == notifyResolved {
		status, ends = AlertResolved, &minute
	}
	labels := maps.Clone(r.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	//workflowcheck:ignore copies a map
	maps.Copy(labels, st.Labels)
	labels["rule"], labels["metric"] = r.Name, r.Metric
	var out []AlertNotification
	for _, rt := range r.Routes {
		if severityRank(st.Severity) < severityRank(rt.MinSeverity) {
			continue
		}
		out = append(out, AlertNotification{
			ID: AlertNotificationID(st.Fingerprint, st.Seq, rt.ChannelID), ChannelID: rt.ChannelID,
			Status: status, Severity: st.Severity, Title: s.title(), Summary: s.summary(),
			Labels: labels, Annotations: r.Annotations, StartsAt: *st.FiringSince, EndsAt: ends,
		})
	}
	return out
}

func (s *stepped) title() string {
	r := s.obs.rule
	var groups []string
	//workflowcheck:ignore sorted
	for _, k := range slices.Sorted(maps.Keys(s.state.Labels)) {
		groups = append(groups, k+"="+s.state.Labels[k])
	}
	title := r.Name
	if len(groups) > 0 {
		title += " (" + strings.Join(groups, ", ") + ")"
	}
	return title
}

func (s *stepped) summary() string {
	r, st := s.obs.rule, s.state
	what := map[notifyKind]string{notifyFiring: "firing", notifyEscalation: "escalated to critical",
		notifyRepeat: "still firing", notifyResolved: "resolved"}[s.notify]
	return fmt.Sprintf("%s %s: %s = %s (%s threshold %s %s)", st.Severity, what, r.Metric,
		strconv.FormatFloat(st.Value, 'g', 6, 64), st.Severity, r.Operator,
		strconv.FormatFloat(threshold(r, st.Severity), 'g', 6, 64))
}
