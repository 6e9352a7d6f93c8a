package activities_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

// evalMinute is the evaluated minute of the alerting tests.
var evalMinute = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

type traffic struct {
	tenant, provider, model string
	requests, successes     int64
	status5xx, timeouts     int64
	tokens                  int64 // input and output each
	costMicros              int64
	latency                 float64 // every request's latency and TTFT, ms
}

// rollupOf is one minute's rollup row of t.
func rollupOf(minute time.Time, t traffic) db.RollupMinute {
	sk := db.NewLatencySketch()
	for range t.requests {
		db.AddToSketch(sk, t.latency)
	}
	enc := db.EncodeSketch(sk)
	return db.RollupMinute{Minute: minute, Tenant: t.tenant, Provider: t.provider, Model: t.model,
		RollupCounters: db.RollupCounters{
			RequestCounts: db.RequestCounts{
				Requests: t.requests, Successes: t.successes, Status5xx: t.status5xx, Timeouts: t.timeouts,
				InputTokens: t.tokens, OutputTokens: t.tokens, CostUSD: strconv.FormatFloat(float64(t.costMicros)/1e6, 'f', 6, 64),
			},
			LatencySum: t.latency * float64(t.requests), LatencyMax: t.latency, LatencySketch: enc,
			TTFTCount: t.requests, TTFTSum: t.latency * float64(t.requests), TTFTMax: t.latency, TTFTSketch: enc,
		}}
}

func insertTraffic(t *testing.T, d *db.DB, minute time.Time, ts ...traffic) {
	t.Helper()
	rows := make([]db.RollupMinute, 0, len(ts))
	for _, tr := range ts {
		rows = append(rows, rollupOf(minute, tr))
	}
	require.NoError(t, db.InsertRollups(context.Background(), d.Bun, rows))
}

func createRule(t testing.TB, d *db.DB, name string, r db.AlertRule) db.AlertRule {
	t.Helper()
	r.Name, r.Enabled = name, true
	if r.Operator == "" {
		r.Operator = ">"
	}
	if r.WindowSeconds == 0 {
		r.WindowSeconds = 300
	}
	require.NoError(t, db.CreateAlertRule(context.Background(), d.Bun, &r))
	return r
}

func loadEval(t *testing.T, a *activities.Activities, minute time.Time) workflows.AlertEvalData {
	t.Helper()
	val, err := newEnv(a).ExecuteActivity(a.LoadAlertEval, workflows.LoadAlertEvalInput{Minute: minute})
	require.NoError(t, err)
	var data workflows.AlertEvalData
	require.NoError(t, val.Get(&data))
	return data
}

// samplesOf renders a rule's samples as "labels=value (samples)".
func samplesOf(data workflows.AlertEvalData, ruleID int64) map[string][2]float64 {
	out := map[string][2]float64{}
	for _, s := range data.Samples {
		if s.RuleID != ruleID {
			continue
		}
		key := ""
		for _, k := range []string{"tenant", "provider", "model", "channel_type", "credential"} {
			if v, ok := s.Labels[k]; ok {
				key += k + "=" + v + " "
			}
		}
		out[key] = [2]float64{s.Value, float64(s.Samples)}
	}
	return out
}

func TestLoadAlertEvalComputesTheCatalogue(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	// The 5-minute window ending with evalMinute: openai fails 30 % (20 5xx,
	// 10 timeouts of 100 a minute), anthropic is healthy. acme pays 1 $ a
	// minute.
	for i := range 5 {
		m := evalMinute.Add(-time.Duration(i) * time.Minute)
		insertTraffic(t, d, m,
			traffic{tenant: "acme", provider: "openai", model: "gpt-4o", requests: 100, successes: 70, status5xx: 20, timeouts: 10,
				tokens: 1000, costMicros: 1e6, latency: 200},
			traffic{tenant: "globex", provider: "anthropic", model: "claude", requests: 50, successes: 50, tokens: 500, latency: 800})
	}
	// Earlier today, outside the window: more of acme's day.
	insertTraffic(t, d, evalMinute.Add(-time.Hour), traffic{tenant: "acme", provider: "openai", model: "gpt-4o", requests: 500,
		successes: 500, tokens: 100, costMicros: 5e6, latency: 100})
	// A week of baseline for the spike: 10 requests per window at this hour.
	for day := 1; day <= 7; day++ {
		insertTraffic(t, d, evalMinute.Add(-time.Duration(day)*24*time.Hour), traffic{tenant: "globex", provider: "anthropic",
			model: "claude", requests: 10, successes: 10, latency: 100})
	}
	// A group quiet for the last 20 minutes.
	insertTraffic(t, d, evalMinute.Add(-20*time.Minute), traffic{tenant: "initech", provider: "gemini", model: "flash",
		requests: 5, successes: 5, latency: 100})
	require.NoError(t, db.PutTenantQuota(ctx, d.Bun, &db.TenantQuota{Tenant: "acme", Kind: "rpm", Limit: 50}))
	require.NoError(t, db.PutTenantQuota(ctx, d.Bun, &db.TenantQuota{Tenant: "acme", Kind: "cost_per_day", Limit: 100}))
	ch := &db.Channel{Name: "hook", Type: "webhook", ConfigKeyID: "k", ConfigSealed: []byte{1}}
	require.NoError(t, db.CreateChannel(ctx, d.Bun, ch))
	for i, status := range []string{db.NotificationDead, db.NotificationDead, db.NotificationSent} {
		id := workflows.AlertNotificationID("dead-test", i, ch.ID)
		require.NoError(t, db.InsertNotification(ctx, d.Bun, &db.Notification{ID: id, ChannelID: ch.ID, ChannelType: "webhook",
			Kind: "test", Payload: []byte(`{}`), Status: status, WorkflowID: workflows.NotifyWorkflowID(id)}))
	}
	_, err := d.Pool.Exec(ctx, `INSERT INTO credentials (name, kind, token_url, refresh_token_key_id, refresh_token_sealed, status, failure_count)
		VALUES ('openai-prod', 'oauth2', 'https://auth.example/token', 'k', '\x01', 'error', 3),
		       ('anthropic-prod', 'oauth2', 'https://auth.example/token', 'k', '\x01', 'active', 0)`)
	require.NoError(t, err)

	byProvider := []string{"provider"}
	rules := map[string]db.AlertRule{}
	for name, r := range map[string]db.AlertRule{
		"error_rate":   {Metric: workflows.MetricErrorRate, GroupBy: byProvider},
		"5xx":          {Metric: workflows.MetricUpstream5xxRate, GroupBy: byProvider},
		"timeouts":     {Metric: workflows.MetricTimeoutRate, GroupBy: byProvider, Filters: map[string]string{"tenant": "acme"}},
		"p95":          {Metric: workflows.MetricLatencyP95, GroupBy: byProvider},
		"ttft":         {Metric: workflows.MetricTTFTP95},
		"rpm":          {Metric: workflows.MetricRPM, GroupBy: []string{"tenant"}},
		"tpd":          {Metric: workflows.MetricTPD, GroupBy: []string{"tenant"}},
		"spike":        {Metric: workflows.MetricTrafficSpike, GroupBy: byProvider, Params: db.AlertRuleParams{MinBaseline: 5}},
		"down":         {Metric: workflows.MetricProviderDown, GroupBy: byProvider},
		"quota":        {Metric: workflows.MetricQuotaUsage, GroupBy: []string{"tenant"}, Params: db.AlertRuleParams{Quota: "rpm"}},
		"cost":         {Metric: workflows.MetricCostPerDay, GroupBy: []string{"tenant"}, Filters: map[string]string{"tenant": "acme"}},
		"forecast":     {Metric: workflows.MetricCostForecast, Operator: "<", GroupBy: []string{"tenant"}},
		"no_data":      {Metric: workflows.MetricNoData, GroupBy: []string{"tenant"}, Params: db.AlertRuleParams{LookbackMinutes: 60}},
		"dead_letters": {Metric: workflows.MetricDeadLetters},
		"credentials":  {Metric: workflows.MetricCredentialFailures},
	} {
		rules[name] = createRule(t, d, name, r)
	}

	data := loadEval(t, a, evalMinute)

	assert.Equal(t, evalMinute, data.Minute)
	assert.Len(t, data.Rules, len(rules))
	openai, anthropic := "provider=openai ", "provider=anthropic "
	exact := map[string]map[string][2]float64{
		"error_rate": {openai: {0.3, 500}, anthropic: {0, 250}},
		"5xx":        {openai: {0.2, 500}, anthropic: {0, 250}},
		"timeouts":   {openai: {0.1, 500}},
		"rpm":        {"tenant=acme ": {100, 500}, "tenant=globex ": {50, 250}},
		// day to date: 5 minutes of 2000 tokens, and 200 an hour ago.
		"tpd": {"tenant=acme ": {10200, 1000}, "tenant=globex ": {5000, 250}, "tenant=initech ": {0, 5}},
		// 250 requests now against a baseline of 10 a window.
		"spike": {anthropic: {25, 250}},
		"down":  {openai: {0.3, 500}, anthropic: {0, 250}},
		// 100 rpm against a quota of 50.
		"quota": {"tenant=acme ": {2, 500}},
		"cost":  {"tenant=acme ": {10, 1000}},
		// 90 $ of budget left at 60 $ an hour.
		"forecast":     {"tenant=acme ": {1.5, 1000}},
		"no_data":      {"tenant=acme ": {0, 500}, "tenant=globex ": {0, 250}, "tenant=initech ": {20, 5}},
		"dead_letters": {"": {2, 2}},
		"credentials":  {"credential=openai-prod ": {3, 1}},
	}
	for name, want := range exact {
		got := samplesOf(data, rules[name].ID)
		require.Len(t, got, len(want), name)
		for k, v := range want {
			assert.InDelta(t, v[0], got[k][0], 1e-9, "%s %s value", name, k)
			assert.InDelta(t, v[1], got[k][1], 0, "%s %s samples", name, k)
		}
	}
	p95 := samplesOf(data, rules["p95"].ID)
	assert.InEpsilon(t, 200, p95[openai][0], 0.01, "within the sketch's 0.5 %% accuracy")
	assert.InEpsilon(t, 800, p95[anthropic][0], 0.01)
	ttft := samplesOf(data, rules["ttft"].ID)
	assert.InEpsilon(t, 800, ttft[""][0], 0.01, "a third of the requests take 800 ms: p95 is among them")
}

func TestLoadAlertEvalSkipsDisabledRulesButKeepsTheirActiveAlerts(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	r := createRule(t, d, "errors", db.AlertRule{Metric: workflows.MetricErrorRate})
	quiet := createRule(t, d, "quiet", db.AlertRule{Metric: workflows.MetricRPM})
	insertTraffic(t, d, evalMinute, traffic{tenant: "acme", provider: "openai", model: "m", requests: 10, successes: 1, latency: 1})
	fp := workflows.AlertFingerprint(r.UID, map[string]string{})
	ok, err := db.PutAlert(ctx, d.Bun, &db.Alert{Fingerprint: fp, RuleID: r.ID, Labels: map[string]string{}, State: "firing",
		Severity: "warning", LastEvalMinute: evalMinute.Add(-time.Minute), Version: 1}, 0, true)
	require.NoError(t, err)
	require.True(t, ok)
	for _, id := range []int64{r.ID, quiet.ID} {
		require.NoError(t, db.DeleteAlertRule(ctx, d.Bun, id))
	}

	data := loadEval(t, a, evalMinute)

	require.Len(t, data.Rules, 1, "the deleted rule with a firing alert, not the quiet one")
	assert.False(t, data.Rules[0].Enabled)
	assert.Empty(t, data.Samples)
	require.Len(t, data.States, 1)
	up := workflows.EvaluateAlerts(data)
	require.Len(t, up, 1)
	assert.Equal(t, workflows.AlertResolved, up[0].State.State)
}

func TestLoadAlertEvalChunksProviderDownFirst(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	insertTraffic(t, d, evalMinute,
		traffic{tenant: "acme", provider: "openai", model: "m", requests: 10, successes: 1, latency: 1},
		traffic{tenant: "acme", provider: "anthropic", model: "m", requests: 10, successes: 10, latency: 1})
	byProvider := []string{"provider"}
	errs := createRule(t, d, "errors", db.AlertRule{Metric: workflows.MetricErrorRate, GroupBy: byProvider})
	rpm := createRule(t, d, "rpm", db.AlertRule{Metric: workflows.MetricRPM, GroupBy: byProvider})
	down := createRule(t, d, "down", db.AlertRule{Metric: workflows.MetricProviderDown, GroupBy: byProvider})
	openai := map[string]string{"provider": "openai"}
	downFP := workflows.AlertFingerprint(down.UID, openai)
	ok, err := db.PutAlert(ctx, d.Bun, &db.Alert{Fingerprint: downFP, RuleID: down.ID, Labels: openai, State: "firing",
		Severity: "critical", LastEvalMinute: evalMinute, Version: 2}, 0, true)
	require.NoError(t, err)
	require.True(t, ok)

	var chunks [][]int64
	var inhibitors []map[string]string
	in := workflows.LoadAlertEvalInput{Minute: evalMinute, MaxGroups: 1}
	for range 5 {
		val, err := newEnv(a).ExecuteActivity(a.LoadAlertEval, in)
		require.NoError(t, err)
		var data workflows.AlertEvalData
		require.NoError(t, val.Get(&data))
		var ids []int64
		for _, r := range data.Rules {
			ids = append(ids, r.ID)
		}
		chunks, inhibitors = append(chunks, ids), append(inhibitors, data.Inhibitors)
		assert.Len(t, data.Samples, 2, "each rule has its two groups")
		if !data.More {
			break
		}
		in.After = data.Next
	}

	assert.Equal(t, [][]int64{{down.ID}, {errs.ID}, {rpm.ID}}, chunks, "one rule per chunk, provider-down first")
	assert.Empty(t, inhibitors[0], "the provider-down rule's own alert is in its chunk")
	assert.Equal(t, map[string]string{"openai": downFP}, inhibitors[1])
}

func applyUpdates(t *testing.T, a *activities.Activities, in workflows.ApplyAlertUpdatesInput) workflows.ApplyAlertUpdatesResult {
	t.Helper()
	val, err := newEnv(a).ExecuteActivity(a.ApplyAlertUpdates, in)
	require.NoError(t, err)
	var res workflows.ApplyAlertUpdatesResult
	require.NoError(t, val.Get(&res))
	return res
}

func TestApplyAlertUpdatesAppliesOnce(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	a := &activities.Activities{DB: d}
	ch := &db.Channel{Name: "hook", Type: "webhook", ConfigKeyID: "k", ConfigSealed: []byte{1},
		Retry: []byte(`{"maximum_attempts": 9}`)}
	require.NoError(t, db.CreateChannel(ctx, d.Bun, ch))
	createRule(t, d, "errors", db.AlertRule{Metric: workflows.MetricErrorRate, Warning: 0.1, Critical: 0.5,
		Routes: []db.AlertRoute{{ChannelID: ch.ID, MinSeverity: "warning"}}})
	insertTraffic(t, d, evalMinute, traffic{tenant: "acme", provider: "openai", model: "m", requests: 10, successes: 1, latency: 1})
	updates := workflows.EvaluateAlerts(loadEval(t, a, evalMinute))
	require.Len(t, updates, 1)
	in := workflows.ApplyAlertUpdatesInput{Minute: evalMinute, Updates: updates}

	first := applyUpdates(t, a, in)
	// A retry of the same call (its result lost): nothing is applied
	// twice, and it still hands back the notification to start.
	again := applyUpdates(t, a, in)

	assert.Equal(t, 1, first.Applied)
	assert.Empty(t, first.Conflicts)
	require.Len(t, first.Notify, 1)
	assert.Equal(t, first, again)
	start := first.Notify[0]
	assert.Equal(t, updates[0].Notifications[0].ID, start.Input.NotificationID)
	assert.Equal(t, 9, start.Input.Retry.MaximumAttempts, "the channel's override")
	assert.Equal(t, workflows.DefaultNotifyRetryPolicy.InitialInterval, start.Input.Retry.InitialInterval, "the default below it")
	assert.Equal(t, workflows.SeverityCritical, start.Severity)

	alert, err := db.GetAlert(ctx, d.Bun, updates[0].State.Fingerprint)
	require.NoError(t, err)
	assert.Equal(t, workflows.AlertFiring, alert.State)
	assert.Equal(t, int64(1), alert.Version)
	events, err := db.AlertHistory(ctx, d.Bun, alert.Fingerprint, 0, 10)
	require.NoError(t, err)
	require.Len(t, events, 1)
	assert.Equal(t, "ok", events[0].FromState)
	assert.True(t, events[0].Notified)
	n, err := db.GetNotification(ctx, d.Bun, start.Input.NotificationID)
	require.NoError(t, err)
	var payload notify.Alert
	require.NoError(t, json.Unmarshal(n.Payload, &payload))
	assert.Equal(t, alert.Fingerprint, payload.Fingerprint, "PagerDuty's dedup key")
	assert.Equal(t, notify.StatusFiring, payload.Status)
	assert.Equal(t, notify.KindAlert, n.Kind)

	// An evaluation working from a stale state (another run got there
	// first) conflicts and changes nothing.
	stale := updates[0]
	stale.State.LastEvalMinute = evalMinute.Add(time.Minute)
	res := applyUpdates(t, a, workflows.ApplyAlertUpdatesInput{Minute: evalMinute.Add(time.Minute), Updates: []workflows.AlertUpdate{stale}})
	assert.Equal(t, []string{alert.Fingerprint}, res.Conflicts)
	assert.Empty(t, res.Notify)
	var count int
	require.NoError(t, d.Bun.NewSelect().Model((*db.Notification)(nil)).ColumnExpr("count(*)").Scan(ctx, &count))
	assert.Equal(t, 1, count)
}

// BenchmarkAlertEvaluation measures one evaluation cycle of rules x groups
// (error-rate rules grouped by tenant, provider and model over a 5-minute
// window, half of the groups breaching): LoadAlertEval, EvaluateAlerts
// and ApplyAlertUpdates chunk by chunk as the workflow runs them, and the
// largest payload that passes through the workflow history. Each iteration
// evaluates the next minute.
func BenchmarkAlertEvaluation(b *testing.B) {
	const rules, tenants, providers, models, minutes = 20, 25, 4, 5, 10 // 500 groups, 10,000 alerts
	ctx := context.Background()
	d := testenv.DB(b)
	a := &activities.Activities{DB: d}
	start := evalMinute.Add(-minutes * time.Minute)
	var rows []db.RollupMinute
	for m := range minutes + 5 {
		for ti := range tenants {
			for pi := range providers {
				for mi := range models {
					failed := int64(0)
					if (ti+pi+mi)%2 == 0 {
						failed = 30
					}
					rows = append(rows, rollupOf(start.Add(time.Duration(m)*time.Minute), traffic{
						tenant: "t" + strconv.Itoa(ti), provider: "p" + strconv.Itoa(pi), model: "m" + strconv.Itoa(mi),
						requests: 100, successes: 100 - failed, status5xx: failed, tokens: 10, latency: 100}))
				}
			}
		}
	}
	require.NoError(b, db.InsertRollups(ctx, d.Bun, rows))
	for i := range rules {
		createRule(b, d, "errors-"+strconv.Itoa(i), db.AlertRule{Metric: workflows.MetricErrorRate, Warning: 0.1 + float64(i)/1000,
			Critical: 0.5, GroupBy: []string{"tenant", "provider", "model"}})
	}
	env := newEnv(a)
	var load, eval, apply time.Duration
	var dataBytes, updateBytes, groups, chunks int
	b.ResetTimer()
	for i := range b.N {
		minute := start.Add(time.Duration(5+i%minutes) * time.Minute)
		in := workflows.LoadAlertEvalInput{Minute: minute, MaxGroups: workflows.DefaultAlertChunkGroups}
		groups, chunks = 0, 0
		for more := true; more; {
			t0 := time.Now()
			val, err := env.ExecuteActivity(a.LoadAlertEval, in)
			require.NoError(b, err)
			var data workflows.AlertEvalData
			require.NoError(b, val.Get(&data))
			t1 := time.Now()
			updates := workflows.EvaluateAlerts(data)
			t2 := time.Now()
			_, err = env.ExecuteActivity(a.ApplyAlertUpdates, workflows.ApplyAlertUpdatesInput{Minute: minute, Updates: updates})
			require.NoError(b, err)
			load, eval, apply = load+t1.Sub(t0), eval+t2.Sub(t1), apply+time.Since(t2)
			dataJSON, err := json.Marshal(data)
			require.NoError(b, err)
			updatesJSON, err := json.Marshal(updates)
			require.NoError(b, err)
			dataBytes, updateBytes = max(dataBytes, len(dataJSON)), max(updateBytes, len(updatesJSON))
			groups, chunks = groups+len(data.Samples), chunks+1
			in.After, more = data.Next, data.More
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(load.Milliseconds())/n, "load-ms/op")
	b.ReportMetric(float64(eval.Microseconds())/n/1000, "evaluate-ms/op")
	b.ReportMetric(float64(apply.Milliseconds())/n, "apply-ms/op")
	b.ReportMetric(float64(groups), "groups")
	b.ReportMetric(float64(chunks), "chunks")
	b.ReportMetric(float64(dataBytes)/1024, "max-load-KiB")
	b.ReportMetric(float64(updateBytes)/1024, "max-updates-KiB")
}

// TestLoadAlertEvalFindsUnstartedNotifications: the first chunk lists the
// alert notifications an earlier run stored but may not have started
// (pending, no attempt, between two minutes and a day old), with what their
// notify workflow needs; later chunks list none.
func TestLoadAlertEvalFindsUnstartedNotifications(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t)
	now := evalMinute.Add(90 * time.Second)
	a := &activities.Activities{DB: d, Clock: func() time.Time { return now }}
	ch := &db.Channel{Name: "hook", Type: "webhook", ConfigKeyID: "k", ConfigSealed: []byte{1},
		Retry: json.RawMessage(`{"maximum_attempts": 2}`)}
	require.NoError(t, db.CreateChannel(ctx, d.Bun, ch))
	payload, err := json.Marshal(notify.Alert{Fingerprint: "fp-1", Status: notify.StatusFiring, Severity: workflows.SeverityCritical})
	require.NoError(t, err)
	ids := map[string]string{}
	for _, n := range []struct {
		id, kind, status string
		attempts         int
		age              time.Duration
	}{
		{"orphan", notify.KindAlert, db.NotificationPending, 0, 5 * time.Minute},
		{"young", notify.KindAlert, db.NotificationPending, 0, time.Minute},
		{"ancient", notify.KindAlert, db.NotificationPending, 0, 25 * time.Hour},
		{"trying", notify.KindAlert, db.NotificationPending, 1, 5 * time.Minute},
		{"sent", notify.KindAlert, db.NotificationSent, 1, 5 * time.Minute},
		{"test", notify.KindTest, db.NotificationPending, 0, 5 * time.Minute},
	} {
		id := workflows.AlertNotificationID(n.id, 1, ch.ID)
		ids[n.id] = id
		require.NoError(t, db.InsertNotification(ctx, d.Bun, &db.Notification{ID: id, ChannelID: ch.ID, ChannelType: "webhook",
			Kind: n.kind, Payload: payload, Status: n.status, Attempts: n.attempts, CreatedAt: now.Add(-n.age),
			WorkflowID: workflows.NotifyWorkflowID(id)}))
	}

	data := loadEval(t, a, evalMinute)
	require.Len(t, data.Unstarted, 1)
	got := data.Unstarted[0]
	assert.Equal(t, "fp-1", got.Fingerprint)
	assert.Equal(t, workflows.SeverityCritical, got.Severity)
	assert.Equal(t, ids["orphan"], got.Input.NotificationID)
	assert.Equal(t, "webhook", got.Input.ChannelType)
	assert.Equal(t, 2, got.Input.Retry.MaximumAttempts, "the channel's retry override applies")

	val, err := newEnv(a).ExecuteActivity(a.LoadAlertEval, workflows.LoadAlertEvalInput{Minute: evalMinute,
		After: workflows.AlertRuleCursor{Started: true, Rest: true, ID: 1}})
	require.NoError(t, err)
	var later workflows.AlertEvalData
	require.NoError(t, val.Get(&later))
	assert.Empty(t, later.Unstarted, "only the first chunk looks")
}
