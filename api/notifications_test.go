package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/workflows"
)

// TestNotificationDeliveredOnTheFifthAttempt: the target fails four times,
// then accepts: delivered once, on attempt 5, with one idempotency key.
func TestNotificationDeliveredOnTheFifthAttempt(t *testing.T) {
	env := newNotifyAPI(t, true)
	tg := newTarget(t, 4, http.StatusInternalServerError)
	ch := env.webhookChannel(t, tg)

	queued := env.sendTest(t, ch.ID)

	assert.Equal(t, "test", queued.Kind)
	assert.Equal(t, "notify/"+queued.ID, queued.WorkflowID)
	assert.Equal(t, "http://127.0.0.1:8233/namespaces/default/workflows/"+url.PathEscape(queued.WorkflowID), queued.TemporalUIURL)
	sent := env.awaitStatus(t, queued.ID, db.NotificationSent)
	assert.Equal(t, 5, sent.Attempts)
	assert.Empty(t, sent.LastError)
	live := env.awaitLive(t, queued.ID, workflows.NotificationSent)
	assert.Equal(t, 5, live.Attempts)
	requests, accepted, keys := tg.counts()
	assert.Equal(t, 5, requests)
	assert.Equal(t, 1, accepted, "delivered once")
	assert.Equal(t, map[string]int{queued.ID: 1}, keys)
	assert.Equal(t, 1.0, env.metricValue(t, "opsflow_notifications_sent_total", map[string]string{"channel_type": "webhook"}))
	assert.Equal(t, 4.0, env.metricValue(t, "opsflow_notifications_failed_total",
		map[string]string{"channel_type": "webhook", "reason": "server_error"}))
	assert.NotContains(t, env.logs.String(), secretMark)
}

// TestDeadLetterRequeueAndItsStory: the target always fails, so the
// notification is dead after 5 attempts, listed as such and counted on
// /metrics; requeued, it is delivered, and the workflow history tells the
// whole story (each failure, the requeue, the delivery) and replays.
func TestDeadLetterRequeueAndItsStory(t *testing.T) {
	env := newNotifyAPI(t, true)
	tg := newTarget(t, -1, http.StatusInternalServerError)
	ch := env.webhookChannel(t, tg)
	queued := env.sendTest(t, ch.ID)

	code, body := env.do(t, http.MethodPost, "/api/v1/notifications/"+queued.ID+"/requeue", nil)
	assert.Equal(t, http.StatusConflict, code, "not dead yet: %s", body)

	dead := env.awaitStatus(t, queued.ID, db.NotificationDead)
	assert.Equal(t, 5, dead.Attempts)
	assert.Contains(t, dead.LastError, "target answered 500")
	assert.NotNil(t, dead.DeadAt)
	env.awaitLive(t, queued.ID, workflows.NotificationDead)
	code, body = env.do(t, http.MethodGet, "/api/v1/notifications?status=dead", nil)
	require.Equal(t, http.StatusOK, code)
	page := decode[struct{ Notifications []notificationJSON }](t, body)
	require.Len(t, page.Notifications, 1)
	assert.Equal(t, queued.ID, page.Notifications[0].ID)
	assert.Equal(t, 1.0, env.metricValue(t, "opsflow_notifications_dead_letter_depth", map[string]string{"channel_type": "webhook"}))
	assert.Equal(t, 1.0, env.metricValue(t, "opsflow_notifications_dead_total", map[string]string{"channel_type": "webhook"}))

	tg.recover()
	code, body = env.do(t, http.MethodPost, "/api/v1/notifications/"+queued.ID+"/requeue", map[string]string{"reason": "receiver fixed"})
	require.Equal(t, http.StatusAccepted, code, string(body))
	sent := env.awaitStatus(t, queued.ID, db.NotificationSent)

	assert.Equal(t, 6, sent.Attempts)
	live := env.awaitLive(t, queued.ID, workflows.NotificationSent)
	assert.Equal(t, 1, live.Requeues)
	assert.Equal(t, 6, live.TotalAttempts)
	_, accepted, keys := tg.counts()
	assert.Equal(t, 1, accepted)
	assert.Equal(t, map[string]int{queued.ID: 1}, keys)
	assert.Equal(t, 0.0, env.metricValue(t, "opsflow_notifications_dead_letter_depth", map[string]string{"channel_type": "webhook"}))
	requeues := auditOf(env.audit(t), db.AuditNotificationRequeue)
	require.Len(t, requeues, 1)
	assert.Equal(t, "bootstrap (bootstrap admin key)", requeues[0].Actor)
	assert.Equal(t, "notification:"+queued.ID, requeues[0].Target)
	assert.Equal(t, map[string]any{"reason": "receiver fixed"}, requeues[0].Details)
	code, _ = env.do(t, http.MethodPost, "/api/v1/notifications/"+queued.ID+"/requeue", nil)
	assert.Equal(t, http.StatusConflict, code, "sent is not dead")

	history := workflowHistory(t, env, queued.WorkflowID)
	raw, err := protojson.Marshal(history)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), secretMark, "no secret in the workflow history either")
	var failures, signals int
	for _, ev := range history.Events {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
			failures++
			assert.Contains(t, ev.GetActivityTaskFailedEventAttributes().GetFailure().GetMessage(), "target answered 500")
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			signals++
		}
	}
	assert.Equal(t, 5, failures, "every failed attempt is in the history")
	assert.Equal(t, 1, signals)
	assert.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, history.Events[len(history.Events)-1].GetEventType())
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(workflows.Notify, workflow.RegisterOptions{Name: workflows.NotifyWorkflowName})
	require.NoError(t, replayer.ReplayWorkflowHistory(nil, history), "the recorded history replays: the workflow is deterministic")
}

func auditOf(entries []db.AuditEntry, action string) []db.AuditEntry {
	var out []db.AuditEntry
	for _, e := range entries {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

func workflowHistory(t *testing.T, env *notifyAPI, workflowID string) *historypb.History {
	t.Helper()
	it := env.tc.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, ev)
	}
	return h
}

// deadNotifications sends n test notifications to a target that rejects
// them (404: dead after one attempt) and waits until all are dead.
func deadNotifications(t *testing.T, env *notifyAPI, ch channelJSON, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		ids = append(ids, env.sendTest(t, ch.ID).ID)
	}
	for _, id := range ids {
		env.awaitStatus(t, id, db.NotificationDead)
	}
	return ids
}

func TestBulkRequeueOfOneChannel(t *testing.T) {
	env := newNotifyAPI(t, true)
	tg := newTarget(t, -1, http.StatusNotFound)
	other := newTarget(t, -1, http.StatusNotFound)
	ch := env.webhookChannel(t, tg)
	otherCh := env.webhookChannel(t, other)
	ids := deadNotifications(t, env, ch, 3)
	otherIDs := deadNotifications(t, env, otherCh, 1)
	tg.recover()

	code, body := env.do(t, http.MethodPost, "/api/v1/notifications/requeue", map[string]any{"channel_id": ch.ID, "reason": "bulk"})

	require.Equal(t, http.StatusOK, code, string(body))
	res := decode[struct {
		Requeued []string
		Failed   []string
		More     bool
	}](t, body)
	assert.ElementsMatch(t, ids, res.Requeued)
	assert.Empty(t, res.Failed)
	assert.False(t, res.More)
	for _, id := range ids {
		env.awaitStatus(t, id, db.NotificationSent)
	}
	assert.Equal(t, db.NotificationDead, env.notification(t, otherIDs[0]).Status, "another channel's stays dead")
	assert.Len(t, auditOf(env.audit(t), db.AuditNotificationRequeue), 3)

	code, body = env.do(t, http.MethodPost, "/api/v1/notifications/requeue", map[string]any{"limit": 501})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Equal(t, "limit", decode[errorJSON](t, body).Error.Details["parameter"])
}

// TestRequeueFromTheTemporalUI: the UI's signal dialog sends the signal
// with no input; the requeue happens and is audit-logged as the UI's.
func TestRequeueFromTheTemporalUI(t *testing.T) {
	env := newNotifyAPI(t, true)
	tg := newTarget(t, -1, http.StatusNotFound)
	ch := env.webhookChannel(t, tg)
	id := deadNotifications(t, env, ch, 1)[0]
	tg.recover()

	require.NoError(t, env.tc.SignalWorkflow(context.Background(), workflows.NotifyWorkflowID(id), "", workflows.SignalRequeue, nil))

	env.awaitStatus(t, id, db.NotificationSent)
	requeues := auditOf(env.audit(t), db.AuditNotificationRequeue)
	require.Len(t, requeues, 1)
	assert.Equal(t, "temporal-ui", requeues[0].Actor)
}

// TestRequeueRestartsAWorkflowThatIsGone: someone terminated the workflow of
// a dead notification; a requeue starts a new run that delivers it.
func TestRequeueRestartsAWorkflowThatIsGone(t *testing.T) {
	env := newNotifyAPI(t, true)
	tg := newTarget(t, -1, http.StatusNotFound)
	ch := env.webhookChannel(t, tg)
	id := deadNotifications(t, env, ch, 1)[0]
	env.awaitLive(t, id, workflows.NotificationDead)
	require.NoError(t, env.tc.TerminateWorkflow(context.Background(), workflows.NotifyWorkflowID(id), "", "by hand"))
	tg.recover()

	code, body := env.do(t, http.MethodPost, "/api/v1/notifications/"+id+"/requeue", nil)

	require.Equal(t, http.StatusAccepted, code, string(body))
	sent := env.awaitStatus(t, id, db.NotificationSent)
	assert.Equal(t, 2, sent.Attempts)
	_, accepted, _ := tg.counts()
	assert.Equal(t, 1, accepted)
}

func TestNotificationListFiltersAndPages(t *testing.T) {
	env := newNotifyAPI(t, false)
	ctx := context.Background()
	a := env.createChannel(t, map[string]any{"name": "a", "type": "slack", "config": map[string]any{"url": "https://127.0.0.1/a"}})
	b := env.createChannel(t, map[string]any{"name": "b", "type": "slack", "config": map[string]any{"url": "https://127.0.0.1/b"}})
	var deadA []string
	for i := range 7 {
		chID := a.ID
		if i%3 == 2 {
			chID = b.ID
		}
		id := uuid.Must(uuid.NewV7()).String()
		require.NoError(t, db.InsertNotification(ctx, env.db.Bun, &db.Notification{ID: id, ChannelID: chID, ChannelType: "slack",
			Kind: "alert", Payload: json.RawMessage(`{}`), WorkflowID: workflows.NotifyWorkflowID(id)}))
		if i%2 == 0 {
			_, err := db.MarkDead(ctx, env.db.Bun, id, "boom", time.Now())
			require.NoError(t, err)
			if chID == a.ID {
				deadA = append([]string{id}, deadA...) // newest first
			}
		}
	}

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		code, body := env.do(t, http.MethodGet, "/api/v1/notifications?status=dead&limit=2&channel="+itoa(a.ID)+"&cursor="+cursor, nil)
		require.Equal(t, http.StatusOK, code, string(body))
		page := decode[struct {
			Notifications []notificationJSON
			NextCursor    string `json:"next_cursor"`
		}](t, body)
		for _, n := range page.Notifications {
			assert.Equal(t, db.NotificationDead, n.Status)
			assert.Equal(t, a.ID, n.ChannelID)
			got = append(got, n.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	assert.Equal(t, deadA, got)

	code, body := env.do(t, http.MethodGet, "/api/v1/notifications", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, decode[struct{ Notifications []notificationJSON }](t, body).Notifications, 7)

	for query, param := range map[string]string{"status=lost": "status", "channel=x": "channel", "cursor=42": "cursor", "limit=0": "limit"} {
		code, body := env.do(t, http.MethodGet, "/api/v1/notifications?"+query, nil)
		assert.Equal(t, http.StatusBadRequest, code, query)
		assert.Equal(t, param, decode[errorJSON](t, body).Error.Details["parameter"], query)
	}
	for _, path := range []string{"/api/v1/notifications/not-a-uuid", "/api/v1/notifications/" + uuid.NewString()} {
		code, _ := env.do(t, http.MethodGet, path, nil)
		assert.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, code, path)
	}
	code, _ = env.do(t, http.MethodPost, "/api/v1/notifications/"+uuid.NewString()+"/requeue", nil)
	assert.Equal(t, http.StatusNotFound, code)
	assert.False(t, strings.Contains(env.logs.String(), secretMark))
}
