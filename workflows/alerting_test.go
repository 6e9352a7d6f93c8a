package workflows_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/workflows"
)

// evalStart is the first schedule slot of the scenarios: slot 10:00:30
// evaluates minute 09:59.
var evalStart = time.Date(2026, 11, 22, 10, 0, 30, 0, time.UTC)

// alertStore is an in-memory stand-in for LoadAlertEval and
// ApplyAlertUpdates: the rules, the stored states (with the same
// compare-and-set on version), the events and the notifications.
type alertStore struct {
	mu       sync.Mutex
	rules    []workflows.AlertRule
	silences []workflows.AlertSilence
	// value gives the metric value of the single group at a minute index
	// (0 = first evaluated minute); ok false reports no sample.
	value  func(i int) (float64, bool)
	first  time.Time
	states map[string]workflows.AlertState
	events []workflows.AlertEvent
	sent   []workflows.AlertNotification
	// ack acknowledges every firing alert before evaluating the minute of
	// this index (-1: never).
	ack int
}

var groupLabels = map[string]string{"provider": "openai"}

func newAlertStore(rule workflows.AlertRule, value func(i int) (float64, bool)) *alertStore {
	rule.ID, rule.UID, rule.Enabled, rule.Name = 1, "rule-1", true, "high error rate"
	if rule.Operator == "" {
		rule.Operator = ">"
	}
	rule.Routes = []workflows.AlertRoute{{ChannelID: 7, MinSeverity: workflows.SeverityWarning}}
	return &alertStore{rules: []workflows.AlertRule{rule}, value: value, first: evalStart.Truncate(time.Minute).Add(-time.Minute),
		states: map[string]workflows.AlertState{}, ack: -1}
}

func (s *alertStore) load(_ context.Context, in workflows.LoadAlertEvalInput) (workflows.AlertEvalData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := int(in.Minute.Sub(s.first) / time.Minute)
	if i == s.ack {
		for fp, st := range s.states {
			if st.State == workflows.AlertFiring {
				st.Acked = true
				s.states[fp] = st
			}
		}
	}
	data := workflows.AlertEvalData{Minute: in.Minute, Rules: s.rules, Silences: s.silences}
	if v, ok := s.value(i); ok {
		data.Samples = []workflows.AlertSample{{RuleID: 1, Labels: groupLabels, Value: v, Samples: 100}}
	}
	for _, fp := range slices.Sorted(maps.Keys(s.states)) {
		data.States = append(data.States, s.states[fp])
	}
	return data, nil
}

func (s *alertStore) apply(_ context.Context, in workflows.ApplyAlertUpdatesInput) (workflows.ApplyAlertUpdatesResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res workflows.ApplyAlertUpdatesResult
	for _, u := range in.Updates {
		if s.states[u.State.Fingerprint].Version != u.ExpectedVersion {
			res.Conflicts = append(res.Conflicts, u.State.Fingerprint)
			continue
		}
		st := u.State
		st.Acked = st.Acked || s.states[st.Fingerprint].Acked && st.State == workflows.AlertFiring
		s.states[st.Fingerprint] = st
		s.events = append(s.events, u.Events...)
		res.Applied++
		for _, n := range u.Notifications {
			s.sent = append(s.sent, n)
			res.Notify = append(res.Notify, workflows.AlertNotifyStart{Fingerprint: st.Fingerprint, Severity: n.Severity,
				Input: workflows.NotifyInput{NotificationID: n.ID, ChannelType: "webhook", Retry: workflows.DefaultNotifyRetryPolicy}})
		}
	}
	return res, nil
}

// scenario is what a run over several minutes produced.
type scenario struct {
	store   *alertStore
	results []workflows.AlertEvalResult
	started []string // notify workflows started, by notification id
}

// runMinutes runs the schedule for n minutes in a time-skipping test
// environment: a driver workflow sleeps a minute, then runs alert-eval as
// a child, n times; alert-eval evaluates the minute before its start, as a
// scheduled run does. Notify children are stubs that record their ids.
func runMinutes(t *testing.T, store *alertStore, n int) scenario {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(evalStart.Add(-time.Minute))
	env.RegisterWorkflowWithOptions(workflows.AlertEval, workflow.RegisterOptions{Name: workflows.AlertEvalWorkflowName})
	env.RegisterActivityWithOptions(store.load, activity.RegisterOptions{Name: workflows.ActivityLoadAlertEval})
	env.RegisterActivityWithOptions(store.apply, activity.RegisterOptions{Name: workflows.ActivityApplyAlertUpdates})
	var mu sync.Mutex
	sc := scenario{store: store}
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.NotifyInput) (workflows.NotifyResult, error) {
		mu.Lock()
		defer mu.Unlock()
		sc.started = append(sc.started, in.NotificationID)
		return workflows.NotifyResult{TotalAttempts: 1}, nil
	}, workflow.RegisterOptions{Name: workflows.NotifyWorkflowName})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, n int) ([]workflows.AlertEvalResult, error) {
		var out []workflows.AlertEvalResult
		for i := range n {
			if err := workflow.Sleep(ctx, time.Minute); err != nil {
				return nil, err
			}
			childCtx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: fmt.Sprintf("alert-eval-%d", i)})
			var r workflows.AlertEvalResult
			if err := workflow.ExecuteChildWorkflow(childCtx, workflows.AlertEvalWorkflowName, workflows.AlertEvalInput{}).Get(ctx, &r); err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}, workflow.RegisterOptions{Name: "drive"})
	env.ExecuteWorkflow("drive", n)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.NoError(t, env.GetWorkflowResult(&sc.results))
	return sc
}

// transitions flattens the runs' transitions as "minute-index:from->to/severity".
func (sc scenario) transitions() []string {
	var out []string
	for i, r := range sc.results {
		for _, tr := range r.Transitions {
			out = append(out, fmt.Sprintf("%d:%s->%s/%s", i, tr.From, tr.To, tr.Severity))
		}
	}
	return out
}

// notified lists the notifications as "status/severity".
func (sc scenario) notified() []string {
	var out []string
	for _, n := range sc.store.sent {
		out = append(out, n.Status+"/"+n.Severity)
	}
	return out
}

// series returns a value script from a list (then the last value on).
func series(vs ...float64) func(int) (float64, bool) {
	return func(i int) (float64, bool) { return vs[min(i, len(vs)-1)], true }
}

func TestAlertEvalScenarios(t *testing.T) {
	base := workflows.AlertRule{Metric: workflows.MetricErrorRate, Warning: 0.1, Critical: 0.5}
	with := func(f func(*workflows.AlertRule)) workflows.AlertRule {
		r := base
		f(&r)
		return r
	}
	tests := []struct {
		name        string
		rule        workflows.AlertRule
		values      func(int) (float64, bool)
		minutes     int
		ack         int
		transitions []string
		notified    []string
	}{{
		name: "pending then firing after for",
		rule: with(func(r *workflows.AlertRule) { r.For = 3 * time.Minute }),
		// clear, then breaching from minute 1 on.
		values:      series(0.01, 0.2),
		minutes:     6,
		transitions: []string{"1:ok->pending/warning", "4:pending->firing/warning"},
		notified:    []string{"firing/warning"},
	}, {
		name:        "pending that clears never fires",
		rule:        with(func(r *workflows.AlertRule) { r.For = 3 * time.Minute }),
		values:      series(0.2, 0.2, 0.01),
		minutes:     5,
		transitions: []string{"0:ok->pending/warning", "2:pending->ok/warning"},
	}, {
		name:        "warning escalates to critical, notified twice",
		rule:        base,
		values:      series(0.2, 0.2, 0.9, 0.9, 0.2),
		minutes:     6,
		transitions: []string{"0:ok->firing/warning", "2:firing->firing/critical"},
		notified:    []string{"firing/warning", "firing/critical"},
	}, {
		name:        "resolves at the first clear minute without keep_firing_for",
		rule:        base,
		values:      series(0.2, 0.2, 0.01),
		minutes:     5,
		transitions: []string{"0:ok->firing/warning", "2:firing->resolved/warning"},
		notified:    []string{"firing/warning", "resolved/warning"},
	}, {
		name: "hysteresis: a short clear spell does not resolve",
		rule: with(func(r *workflows.AlertRule) { r.KeepFiringFor = 3 * time.Minute }),
		// firing, clear for 2 minutes, breaching again, then clear for good.
		values:      series(0.2, 0.01, 0.01, 0.2, 0.01, 0.01, 0.01, 0.01),
		minutes:     9,
		transitions: []string{"0:ok->firing/warning", "6:firing->resolved/warning"},
		notified:    []string{"firing/warning", "resolved/warning"},
	}, {
		name:        "repeat interval re-notifies a still firing alert",
		rule:        with(func(r *workflows.AlertRule) { r.Repeat = 5 * time.Minute }),
		values:      series(0.2),
		minutes:     12,
		transitions: []string{"0:ok->firing/warning", "5:firing->firing/warning", "10:firing->firing/warning"},
		notified:    []string{"firing/warning", "firing/warning", "firing/warning"},
	}, {
		name:        "ack stops repeats until the alert resolves",
		rule:        with(func(r *workflows.AlertRule) { r.Repeat = 2 * time.Minute }),
		values:      series(0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.01, 0.2),
		minutes:     9,
		ack:         1,
		transitions: []string{"0:ok->firing/warning", "6:firing->resolved/warning", "7:resolved->firing/warning"},
		// The resolution still notifies; the new cycle notifies again.
		notified: []string{"firing/warning", "resolved/warning", "firing/warning"},
	}, {
		name:        "group without samples clears",
		rule:        base,
		values:      func(i int) (float64, bool) { return 0.3, i < 2 },
		minutes:     4,
		transitions: []string{"0:ok->firing/warning", "2:firing->resolved/warning"},
		notified:    []string{"firing/warning", "resolved/warning"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newAlertStore(tt.rule, tt.values)
			if tt.ack > 0 {
				store.ack = tt.ack
			}
			sc := runMinutes(t, store, tt.minutes)
			assert.Equal(t, tt.transitions, sc.transitions())
			assert.Equal(t, tt.notified, sc.notified())
			var ids []string
			for _, n := range store.sent {
				ids = append(ids, n.ID)
			}
			assert.Equal(t, ids, sc.started, "one notify workflow per notification")
		})
	}
}

func TestAlertEvalResultAndSeverity(t *testing.T) {
	store := newAlertStore(workflows.AlertRule{Metric: workflows.MetricErrorRate, Warning: 0.1, Critical: 0.5}, series(0.9))
	sc := runMinutes(t, store, 1)
	require.Len(t, sc.results, 1)
	r := sc.results[0]
	assert.Equal(t, evalStart.Truncate(time.Minute).Add(-time.Minute), r.Minute, "a run evaluates the minute before its slot")
	assert.Equal(t, 1, r.Rules)
	assert.Equal(t, 1, r.Notifications)
	fp := workflows.AlertFingerprint("rule-1", groupLabels)
	assert.Equal(t, []workflows.AlertTransition{{Fingerprint: fp, Rule: "high error rate", From: "ok", To: "firing", Severity: "critical"}},
		r.Transitions)
	require.Len(t, store.sent, 1)
	n := store.sent[0]
	assert.Equal(t, workflows.AlertNotificationID(fp, 1, 7), n.ID)
	assert.Equal(t, map[string]string{"provider": "openai", "rule": "high error rate", "metric": "error_rate"}, n.Labels)
	assert.Equal(t, "high error rate (provider=openai)", n.Title)
}

// evalData builds one minute's input for the pure state machine.
func evalData(minute time.Time, rules []workflows.AlertRule, states []workflows.AlertState, samples ...workflows.AlertSample) workflows.AlertEvalData {
	return workflows.AlertEvalData{Minute: minute, Rules: rules, States: states, Samples: samples}
}

func errorRule(id int64, metric string) workflows.AlertRule {
	return workflows.AlertRule{ID: id, UID: fmt.Sprint("rule-", id), Name: metric, Metric: metric, Operator: ">", Warning: 0.1, Critical: 0.5, Enabled: true,
		Routes: []workflows.AlertRoute{{ChannelID: 1, MinSeverity: workflows.SeverityWarning}, {ChannelID: 2, MinSeverity: workflows.SeverityCritical}}}
}

// stateAfter applies updates to states as the store would.
func stateAfter(states []workflows.AlertState, updates []workflows.AlertUpdate) []workflows.AlertState {
	byFP := map[string]workflows.AlertState{}
	for _, s := range states {
		byFP[s.Fingerprint] = s
	}
	for _, u := range updates {
		byFP[u.State.Fingerprint] = u.State
	}
	var out []workflows.AlertState
	for _, fp := range slices.Sorted(maps.Keys(byFP)) {
		out = append(out, byFP[fp])
	}
	return out
}

func TestEvaluateAlertsRoutesBySeverity(t *testing.T) {
	m := evalStart.Truncate(time.Minute)
	rule := errorRule(1, workflows.MetricErrorRate)
	up := workflows.EvaluateAlerts(evalData(m, []workflows.AlertRule{rule}, nil,
		workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 0.2, Samples: 10}))
	require.Len(t, up, 1)
	require.Len(t, up[0].Notifications, 1, "warning reaches only the warning route")
	assert.Equal(t, int64(1), up[0].Notifications[0].ChannelID)

	up = workflows.EvaluateAlerts(evalData(m.Add(time.Minute), []workflows.AlertRule{rule}, stateAfter(nil, up),
		workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 0.7, Samples: 10}))
	require.Len(t, up, 1)
	var channels []int64
	for _, n := range up[0].Notifications {
		channels = append(channels, n.ChannelID)
		assert.Equal(t, workflows.SeverityCritical, n.Severity)
	}
	assert.Equal(t, []int64{1, 2}, channels, "the escalation reaches both routes")
}

func TestEvaluateAlertsMinSamples(t *testing.T) {
	rule := errorRule(1, workflows.MetricErrorRate)
	rule.MinSamples = 50
	up := workflows.EvaluateAlerts(evalData(evalStart, []workflows.AlertRule{rule}, nil,
		workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 1, Samples: 49}))
	assert.Empty(t, up, "too few samples to judge")
}

func TestEvaluateAlertsRerunOfAMinuteChangesNothing(t *testing.T) {
	m := evalStart.Truncate(time.Minute)
	rules := []workflows.AlertRule{errorRule(1, workflows.MetricErrorRate)}
	sample := workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 0.2, Samples: 10}
	first := workflows.EvaluateAlerts(evalData(m, rules, nil, sample))
	require.Len(t, first, 1)
	again := workflows.EvaluateAlerts(evalData(m, rules, stateAfter(nil, first), sample))
	assert.Empty(t, again, "the minute was evaluated already")
	// Without the stored result (the apply was lost), the same input gives
	// the same update, with the same notification ids.
	assert.Equal(t, first, workflows.EvaluateAlerts(evalData(m, rules, nil, sample)))
}

func TestEvaluateAlertsSilenceMutesButKeepsState(t *testing.T) {
	m := evalStart.Truncate(time.Minute)
	rule := errorRule(1, workflows.MetricErrorRate)
	tests := []struct {
		name    string
		silence workflows.AlertSilence
		muted   bool
	}{
		{"matching labels", workflows.AlertSilence{ID: 3, Matchers: map[string]string{"provider": "openai"}}, true},
		{"matching rule", workflows.AlertSilence{ID: 3, RuleID: 1}, true},
		{"other provider", workflows.AlertSilence{ID: 3, Matchers: map[string]string{"provider": "anthropic"}}, false},
		{"other rule", workflows.AlertSilence{ID: 3, RuleID: 2}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := evalData(m, []workflows.AlertRule{rule}, nil, workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 0.2, Samples: 10})
			data.Silences = []workflows.AlertSilence{tt.silence}
			up := workflows.EvaluateAlerts(data)
			require.Len(t, up, 1)
			assert.Equal(t, workflows.AlertFiring, up[0].State.State, "state moves regardless")
			if tt.muted {
				assert.Empty(t, up[0].Notifications)
				assert.Equal(t, "silence:3", up[0].Events[0].MutedBy)
				assert.Nil(t, up[0].State.LastNotifiedAt)
			} else {
				assert.NotEmpty(t, up[0].Notifications)
			}
		})
	}
	// A silenced alert that resolves unheard sends no resolution either.
	data := evalData(m, []workflows.AlertRule{rule}, nil, workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 0.2, Samples: 10})
	data.Silences = []workflows.AlertSilence{{ID: 3, RuleID: 1}}
	up := workflows.EvaluateAlerts(data)
	up = workflows.EvaluateAlerts(evalData(m.Add(time.Minute), []workflows.AlertRule{rule}, stateAfter(nil, up)))
	require.Len(t, up, 1)
	assert.Equal(t, workflows.AlertResolved, up[0].State.State)
	assert.Empty(t, up[0].Notifications)
	assert.Equal(t, "never-notified", up[0].Events[0].MutedBy)
}

func TestEvaluateAlertsProviderDownInhibits(t *testing.T) {
	m := evalStart.Truncate(time.Minute)
	rules := []workflows.AlertRule{errorRule(1, workflows.MetricProviderDown), errorRule(2, workflows.MetricErrorRate),
		errorRule(3, workflows.MetricLatencyP95), errorRule(4, workflows.MetricRPM)}
	rules[2].Warning, rules[2].Critical = 1000, 2000
	rules[3].Warning, rules[3].Critical = 100, 200
	openai, anthropic := map[string]string{"provider": "openai"}, map[string]string{"provider": "anthropic"}
	up := workflows.EvaluateAlerts(evalData(m, rules, nil,
		workflows.AlertSample{RuleID: 1, Labels: openai, Value: 0.9, Samples: 100},
		workflows.AlertSample{RuleID: 2, Labels: openai, Value: 0.9, Samples: 100},
		workflows.AlertSample{RuleID: 2, Labels: anthropic, Value: 0.9, Samples: 100},
		workflows.AlertSample{RuleID: 3, Labels: openai, Value: 5000, Samples: 100},
		workflows.AlertSample{RuleID: 4, Labels: openai, Value: 500, Samples: 100}))
	downFP := workflows.AlertFingerprint("rule-1", openai)
	notified := map[string]bool{}
	muted := map[string]string{}
	for _, u := range up {
		assert.Equal(t, workflows.AlertFiring, u.State.State)
		notified[fmt.Sprintf("%d/%s", u.State.RuleID, u.State.Labels["provider"])] = len(u.Notifications) > 0
		muted[fmt.Sprintf("%d/%s", u.State.RuleID, u.State.Labels["provider"])] = u.Events[0].MutedBy
	}
	assert.Equal(t, map[string]bool{"1/openai": true, "2/openai": false, "2/anthropic": true, "3/openai": false, "4/openai": true}, notified)
	assert.Equal(t, "inhibited:"+downFP, muted["2/openai"])
	assert.Equal(t, "inhibited:"+downFP, muted["3/openai"])
}

func TestEvaluateAlertsRuleEditDoesNotStorm(t *testing.T) {
	m := evalStart.Truncate(time.Minute)
	rule := errorRule(1, workflows.MetricErrorRate)
	sample := workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 0.3, Samples: 10}
	states := stateAfter(nil, workflows.EvaluateAlerts(evalData(m, []workflows.AlertRule{rule}, nil, sample)))

	edited := rule
	edited.Version, edited.Warning, edited.Critical, edited.For = 2, 0.2, 0.6, 10*time.Minute
	up := workflows.EvaluateAlerts(evalData(m.Add(time.Minute), []workflows.AlertRule{edited}, states, sample))
	require.Len(t, up, 1)
	assert.Equal(t, workflows.AlertFiring, up[0].State.State, "same fingerprint, still firing")
	assert.Empty(t, up[0].Events)
	assert.Empty(t, up[0].Notifications, "a threshold change alone notifies nobody")

	edited.Critical = 0.25
	up = workflows.EvaluateAlerts(evalData(m.Add(2*time.Minute), []workflows.AlertRule{edited}, stateAfter(states, up), sample))
	require.Len(t, up, 1)
	assert.Equal(t, workflows.SeverityCritical, up[0].State.Severity)
	assert.NotEmpty(t, up[0].Notifications, "a real severity change does")
}

func TestEvaluateAlertsDisabledRuleResolves(t *testing.T) {
	m := evalStart.Truncate(time.Minute)
	rule := errorRule(1, workflows.MetricErrorRate)
	rule.KeepFiringFor = time.Hour
	states := stateAfter(nil, workflows.EvaluateAlerts(evalData(m, []workflows.AlertRule{rule}, nil,
		workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 0.3, Samples: 10})))
	rule.Enabled = false
	up := workflows.EvaluateAlerts(evalData(m.Add(time.Minute), []workflows.AlertRule{rule}, states,
		workflows.AlertSample{RuleID: 1, Labels: groupLabels, Value: 0.3, Samples: 10}))
	require.Len(t, up, 1)
	assert.Equal(t, workflows.AlertResolved, up[0].State.State, "at once, keep_firing_for notwithstanding")
	require.Len(t, up[0].Notifications, 1)
	assert.Equal(t, workflows.AlertResolved, up[0].Notifications[0].Status)
}

func TestBreach(t *testing.T) {
	tests := []struct {
		op    string
		warn  float64
		crit  float64
		value float64
		want  string
	}{
		{">", 1, 2, 1, ""},
		{">", 1, 2, 1.5, workflows.SeverityWarning},
		{">", 1, 2, 2.5, workflows.SeverityCritical},
		{">=", 1, 2, 2, workflows.SeverityCritical},
		{"<", 6, 2, 7, ""},
		{"<", 6, 2, 5, workflows.SeverityWarning},
		{"<=", 6, 2, 2, workflows.SeverityCritical},
	}
	for _, tt := range tests {
		got := workflows.Breach(workflows.AlertRule{Operator: tt.op, Warning: tt.warn, Critical: tt.crit}, tt.value)
		assert.Equal(t, tt.want, got, "%v %s (%v, %v)", tt.value, tt.op, tt.warn, tt.crit)
	}
}

func TestAlertFingerprintIgnoresLabelOrder(t *testing.T) {
	a := workflows.AlertFingerprint("rule-1", map[string]string{"provider": "openai", "tenant": "acme"})
	b := workflows.AlertFingerprint("rule-1", map[string]string{"tenant": "acme", "provider": "openai"})
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, workflows.AlertFingerprint("rule-2", map[string]string{"provider": "openai", "tenant": "acme"}))
	assert.NotEqual(t, a, workflows.AlertFingerprint("rule-1", map[string]string{"provider": "openai"}))
	assert.NotEqual(t, workflows.AlertNotificationID(a, 1, 1), workflows.AlertNotificationID(a, 2, 1))
}

func TestAlertEvalRunsEveryChunk(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.AlertEval, workflow.RegisterOptions{Name: workflows.AlertEvalWorkflowName})
	store := newAlertStore(workflows.AlertRule{Metric: workflows.MetricErrorRate, Warning: 0.1, Critical: 0.5}, series(0.2))
	second := errorRule(2, workflows.MetricProviderDown)
	minute := evalStart.Truncate(time.Minute)
	first := workflows.AlertRuleCursor{Started: true, Rest: true, ID: 1}
	env.RegisterActivityWithOptions(func(ctx context.Context, in workflows.LoadAlertEvalInput) (workflows.AlertEvalData, error) {
		data, err := store.load(ctx, in)
		switch in.After {
		case workflows.AlertRuleCursor{}:
			data.Next, data.More = first, true
		case first:
			data.Rules, data.States = []workflows.AlertRule{second}, nil
			data.Samples = []workflows.AlertSample{{RuleID: 2, Labels: groupLabels, Value: 0.9, Samples: 100}}
		default:
			return data, fmt.Errorf("unexpected cursor %+v", in.After)
		}
		return data, err
	}, activity.RegisterOptions{Name: workflows.ActivityLoadAlertEval})
	env.RegisterActivityWithOptions(store.apply, activity.RegisterOptions{Name: workflows.ActivityApplyAlertUpdates})
	env.RegisterWorkflowWithOptions(func(workflow.Context, workflows.NotifyInput) (workflows.NotifyResult, error) {
		return workflows.NotifyResult{}, nil
	}, workflow.RegisterOptions{Name: workflows.NotifyWorkflowName})

	res := runAlertEval(t, env, minute)
	assert.Equal(t, 2, res.Chunks)
	assert.Equal(t, 2, res.Rules)
	assert.Equal(t, 2, res.TransitionCount)
	assert.Equal(t, 3, res.Notifications, "warning to one route, critical to both")
	assert.Equal(t, minute, res.Minute, "the input's minute")
}

// TestAlertEvalStartsUnstartedNotifications: notifications an earlier run
// stored but may not have started are started under their own notify/<id>.
func TestAlertEvalStartsUnstartedNotifications(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.AlertEval, workflow.RegisterOptions{Name: workflows.AlertEvalWorkflowName})
	minute := evalStart.Truncate(time.Minute)
	orphan := workflows.AlertNotifyStart{Fingerprint: "fp-1", Severity: workflows.SeverityCritical,
		Input: workflows.NotifyInput{NotificationID: "n-old", ChannelType: "webhook", Retry: workflows.DefaultNotifyRetryPolicy}}
	env.RegisterActivityWithOptions(func(_ context.Context, in workflows.LoadAlertEvalInput) (workflows.AlertEvalData, error) {
		return workflows.AlertEvalData{Minute: in.Minute, Unstarted: []workflows.AlertNotifyStart{orphan}}, nil
	}, activity.RegisterOptions{Name: workflows.ActivityLoadAlertEval})
	var started []string
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.NotifyInput) (workflows.NotifyResult, error) {
		started = append(started, workflow.GetInfo(ctx).WorkflowExecution.ID+" "+in.NotificationID)
		return workflows.NotifyResult{}, nil
	}, workflow.RegisterOptions{Name: workflows.NotifyWorkflowName})

	res := runAlertEval(t, env, minute)
	assert.Equal(t, 1, res.Restarted)
	assert.Zero(t, res.Notifications, "no transition this minute")
	assert.Equal(t, []string{"notify/n-old n-old"}, started)
}

// runAlertEval evaluates minute in env and returns the run's result.
func runAlertEval(t *testing.T, env *testsuite.TestWorkflowEnvironment, minute time.Time) workflows.AlertEvalResult {
	t.Helper()
	env.ExecuteWorkflow(workflows.AlertEvalWorkflowName, workflows.AlertEvalInput{Minute: &minute})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res workflows.AlertEvalResult
	require.NoError(t, env.GetWorkflowResult(&res))
	return res
}
