package testenv_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/worker"
	"github.com/opsflow/opsflow/workflows"
)

// alertTarget is a loopback webhook recording every alert it receives.
type alertTarget struct {
	*httptest.Server
	mu     sync.Mutex
	alerts []notify.Alert
	keys   map[string]int
}

func newAlertTarget(t *testing.T) *alertTarget {
	a := &alertTarget{keys: map[string]int{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var wb notify.WebhookBody
		if err != nil || json.Unmarshal(body, &wb) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.alerts = append(a.alerts, wb.Alert)
		a.keys[r.Header.Get(notify.HeaderIdempotencyKey)]++
	}))
	t.Cleanup(a.Close)
	return a
}

// statuses lists the received alerts as "status/severity".
func (a *alertTarget) statuses() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []string{}
	for _, al := range a.alerts {
		out = append(out, al.Status+"/"+al.Severity)
	}
	return out
}

// alerting is one end-to-end setup: a fresh database, the package's
// Temporal dev server, a task queue of its own (the tests run evaluations
// for explicit minutes), a webhook channel to a loopback target and an
// error-rate rule routed to it. The test starts the worker: in-process
// (startWorker: no schedules) or `opsflow worker` processes
// (startWorkerProcess).
type alerting struct {
	url    string
	d      *db.DB
	tc     client.Client
	queue  string
	acts   *activities.Activities
	target *alertTarget
	rule   db.AlertRule
	// base is the first evaluated minute: in the past, with room for the
	// test's minutes before now.
	base time.Time
	// schedulePaused: the alert-evaluation schedule is paused for the test.
	schedulePaused bool
}

func newAlerting(t *testing.T, forDuration time.Duration) *alerting {
	t.Helper()
	box, err := secrets.NewBox(secretKey)
	require.NoError(t, err)
	al := &alerting{url: testenv.DatabaseURL(t), tc: testenv.TemporalClient(t), queue: "alerting-" + uuid.NewString(),
		target: newAlertTarget(t), base: time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute)}
	al.d = al.open(t)
	al.acts = &activities.Activities{DB: al.d, Secrets: box, Outbound: notify.NewOutbound([]string{"127.0.0.0/8"}),
		NotifyRetry: workflows.NotifyRetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 2 * time.Second, MaximumAttempts: 3}}
	svc := &notify.Service{DB: al.d, Secrets: box, Outbound: al.acts.Outbound, Retry: al.acts.NotifyRetry}
	ch := webhookChannel(t, svc, al.target.URL)
	al.rule = db.AlertRule{Name: "openai error rate", Metric: workflows.MetricErrorRate, Operator: ">", Warning: 0.1, Critical: 0.5,
		WindowSeconds: 60, ForSeconds: int(forDuration / time.Second), MinSamples: 10, GroupBy: []string{"provider"}, Enabled: true,
		Annotations: map[string]string{"runbook_url": "https://runbooks.example/errors"},
		Routes:      []db.AlertRoute{{ChannelID: ch.ID, MinSeverity: workflows.SeverityWarning}}}
	require.NoError(t, db.CreateAlertRule(context.Background(), al.d.Bun, &al.rule))
	return al
}

func (al *alerting) open(t *testing.T) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), al.url, 4)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	return d
}

// startWorker runs an in-process worker with al.acts until the test ends.
func (al *alerting) startWorker(t *testing.T) {
	t.Helper()
	w := worker.New(al.tc, al.queue, al.acts)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}

// startWorkerProcess starts an `opsflow worker` process on the setup's task
// queue, with al.acts' notification retry policy. A worker process
// reconciles the schedules onto the dev server as it starts, pointing them
// at this queue; the first call pauses the alert-evaluation schedule (the
// reconcile keeps a pause) until the test ends, or its run for the real
// previous minute, without traffic, would clear the test's alert between
// the test's cycles.
func (al *alerting) startWorkerProcess(t *testing.T) *workerProcess {
	t.Helper()
	ctx := context.Background()
	if !al.schedulePaused {
		_, err := worker.ApplySchedules(ctx, al.tc, al.queue)
		require.NoError(t, err)
		h := al.tc.ScheduleClient().GetHandle(ctx, workflows.AlertEvalScheduleID)
		require.NoError(t, h.Pause(ctx, client.SchedulePauseOptions{Note: t.Name() + " runs its own cycles"}))
		t.Cleanup(func() { _ = h.Unpause(context.Background(), client.ScheduleUnpauseOptions{}) })
		al.schedulePaused = true
	}
	r := al.acts.NotifyRetry
	env := append(workerEnv(t, al.url, al.queue),
		"OPSFLOW_NOTIFY_RETRY_INITIAL="+r.InitialInterval.String(),
		"OPSFLOW_NOTIFY_RETRY_MAX_INTERVAL="+r.MaximumInterval.String(),
		"OPSFLOW_NOTIFY_RETRY_MAX_ATTEMPTS="+strconv.Itoa(int(r.MaximumAttempts)))
	w := startWorker(t, opsflowBinary(t), env)
	desc, err := al.tc.ScheduleClient().GetHandle(ctx, workflows.AlertEvalScheduleID).Describe(ctx)
	require.NoError(t, err)
	require.True(t, desc.Schedule.State.Paused, "the alert-evaluation schedule stays paused")
	return w
}

// minute is the i-th evaluated minute.
func (al *alerting) minute(i int) time.Time { return al.base.Add(time.Duration(i) * time.Minute) }

// traffic stores minute i's rollup for openai: 100 requests, failed of
// them failing.
func (al *alerting) traffic(t *testing.T, i int, failed int64) {
	t.Helper()
	empty := db.EncodeSketch(db.NewLatencySketch())
	require.NoError(t, db.InsertRollups(context.Background(), al.d.Bun, []db.RollupMinute{{
		Minute: al.minute(i), Tenant: "acme", Provider: "openai", Model: "gpt-4o",
		RollupCounters: db.RollupCounters{
			RequestCounts: db.RequestCounts{Requests: 100, Successes: 100 - failed, Status5xx: failed, CostUSD: "0"},
			LatencySketch: empty, TTFTSketch: empty,
		},
	}}))
}

// eval runs one evaluation cycle for minute i, as the schedule would,
// and waits for it (a minute at most: a worker process may have died).
func (al *alerting) eval(t *testing.T, i int) workflows.AlertEvalResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := al.minute(i)
	run, err := al.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "alert-eval-test-" + uuid.NewString(), TaskQueue: al.queue},
		workflows.AlertEvalWorkflowName, workflows.AlertEvalInput{Minute: &m})
	require.NoError(t, err)
	var res workflows.AlertEvalResult
	require.NoError(t, run.Get(ctx, &res))
	return res
}

func (al *alerting) fingerprint() string {
	return workflows.AlertFingerprint(al.rule.UID, map[string]string{"provider": "openai"})
}

func (al *alerting) history(t *testing.T) []string {
	t.Helper()
	events, err := db.AlertHistory(context.Background(), al.d.Bun, al.fingerprint(), 0, 100)
	require.NoError(t, err)
	var out []string
	for _, e := range events {
		s := e.FromState + "->" + e.ToState
		if e.MutedBy != "" {
			s += " (muted: " + e.MutedBy + ")"
		}
		out = append(out, s)
	}
	return out
}

func (al *alerting) notifications(t *testing.T) []db.Notification {
	t.Helper()
	ns, err := db.ListNotifications(context.Background(), al.d.Bun, db.NotificationFilter{Limit: 100})
	require.NoError(t, err)
	return ns
}

// awaitDelivered waits until the target has n alerts and every stored
// notification is sent: a wait for the workflows, not a timing assertion.
func (al *alerting) awaitDelivered(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, row := range al.notifications(t) {
			if row.Status != db.NotificationSent {
				return false
			}
		}
		return len(al.target.statuses()) >= n
	}, time.Minute, 50*time.Millisecond, "deliveries: %v; notifications: %+v", al.target.statuses(), al.notifications(t))
}

// TestAlertFiresOnceAndResolvesOnce: a breaching error rate fires within
// two evaluation cycles (for = 1m) and reaches the webhook exactly once,
// even when a cycle is run again; recovery reaches it exactly once too.
func TestAlertFiresOnceAndResolvesOnce(t *testing.T) {
	al := newAlerting(t, time.Minute)
	al.startWorker(t)
	al.traffic(t, 0, 40)
	al.traffic(t, 1, 40)

	first := al.eval(t, 0)
	require.Len(t, first.Transitions, 1)
	assert.Equal(t, "pending", first.Transitions[0].To)
	second := al.eval(t, 1)
	require.Len(t, second.Transitions, 1)
	assert.Equal(t, "firing", second.Transitions[0].To)
	assert.Equal(t, 1, second.Notifications)
	rerun := al.eval(t, 1)
	assert.Empty(t, rerun.Transitions, "a repeated cycle changes nothing")
	assert.Zero(t, rerun.Notifications)

	al.awaitDelivered(t, 1)
	assert.Equal(t, []string{"firing/warning"}, al.target.statuses())

	al.traffic(t, 2, 0)
	resolved := al.eval(t, 2)
	require.Len(t, resolved.Transitions, 1)
	assert.Equal(t, "resolved", resolved.Transitions[0].To)
	al.awaitDelivered(t, 2)

	assert.Equal(t, []string{"firing/warning", "resolved/warning"}, al.target.statuses())
	for key, n := range al.target.keys {
		assert.Equal(t, 1, n, "notification %s delivered once", key)
	}
	assert.Len(t, al.notifications(t), 2)
	for _, a := range al.target.alerts {
		assert.Equal(t, al.fingerprint(), a.Fingerprint)
		assert.Equal(t, "https://runbooks.example/errors", a.Annotations["runbook_url"])
	}
	assert.Equal(t, []string{"ok->pending", "pending->firing", "firing->resolved"}, al.history(t))

	// The alert's life in the Temporal UI: its notify workflows are found
	// by the fingerprint search attribute.
	query := workflows.SearchAttrAlertFingerprint.GetName() + " = '" + al.fingerprint() + "'"
	require.Eventually(t, func() bool {
		resp, err := al.tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		require.NoError(t, err)
		return len(resp.Executions) == 2
	}, 30*time.Second, 100*time.Millisecond, "visibility lists both notify workflows")
}

// TestSilencedAlertNotifiesNobody: the alert fires and resolves, its state
// and history move, but nothing is sent.
func TestSilencedAlertNotifiesNobody(t *testing.T) {
	al := newAlerting(t, 0)
	al.startWorker(t)
	sil := &db.Silence{Matchers: map[string]string{"provider": "openai"}, StartsAt: al.minute(-60), EndsAt: al.minute(60),
		CreatedBy: "test", Comment: "maintenance"}
	require.NoError(t, db.CreateSilence(context.Background(), al.d.Bun, sil))
	al.traffic(t, 0, 90)
	al.traffic(t, 1, 0)

	fired := al.eval(t, 0)
	resolved := al.eval(t, 1)

	require.Len(t, fired.Transitions, 1)
	assert.Equal(t, "firing", fired.Transitions[0].To)
	assert.Equal(t, "critical", fired.Transitions[0].Severity)
	assert.Zero(t, fired.Notifications+resolved.Notifications)
	assert.Empty(t, al.notifications(t), "no notification exists, so none can ever be sent")
	assert.Equal(t, []string{"ok->firing (muted: silence:" + strconv.FormatInt(sil.ID, 10) + ")",
		"firing->resolved (muted: never-notified)"}, al.history(t))
}

// TestPendingClockSurvivesWorkerRestart: with for = 3m, the alert goes
// pending; between two evaluation cycles the worker process is SIGKILLed
// and a new one (its own process, its own database pool) takes over; the
// alert still fires at the third minute after it went pending, the minute
// it was due, not three minutes after the restart.
func TestPendingClockSurvivesWorkerRestart(t *testing.T) {
	al := newAlerting(t, 3*time.Minute)
	for i := range 4 {
		al.traffic(t, i, 40)
	}
	first := al.startWorkerProcess(t)
	pending := al.eval(t, 0)
	require.Len(t, pending.Transitions, 1)
	require.Equal(t, "pending", pending.Transitions[0].To)
	assert.Empty(t, al.eval(t, 1).Transitions)

	first.kill(t)
	al.startWorkerProcess(t)

	assert.Empty(t, al.eval(t, 2).Transitions, "still pending")
	fired := al.eval(t, 3)
	require.Len(t, fired.Transitions, 1)
	assert.Equal(t, "firing", fired.Transitions[0].To)
	alert, err := db.GetAlert(context.Background(), al.d.Bun, al.fingerprint())
	require.NoError(t, err)
	require.NotNil(t, alert.PendingSince)
	assert.True(t, al.minute(0).Equal(*alert.PendingSince), "the clock started before the restart")
	require.NotNil(t, alert.FiringSince)
	assert.True(t, al.minute(3).Equal(*alert.FiringSince), "fired at the minute it was due")
	assert.Equal(t, []string{"ok->pending", "pending->firing"}, al.history(t))
	al.awaitDelivered(t, 1)
	assert.Equal(t, []string{"firing/warning"}, al.target.statuses())
}
