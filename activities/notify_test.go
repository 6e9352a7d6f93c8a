package activities_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

// now is the activities' pinned clock in these tests.
var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type notifyFixture struct {
	acts    *activities.Activities
	db      *db.DB
	box     *secrets.Box
	reg     *prometheus.Registry
	logs    *syncBuffer
	target  *httptest.Server
	mu      sync.Mutex
	hits    int
	status  int
	headers map[string]string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newNotifyFixture: a fresh database, a loopback webhook target answering
// f.status, and the activities with a secrets box and the outbound client
// allowed onto loopback.
func newNotifyFixture(t *testing.T) *notifyFixture {
	t.Helper()
	f := &notifyFixture{db: testenv.DB(t), reg: prometheus.NewRegistry(), logs: &syncBuffer{}, status: http.StatusOK}
	var err error
	f.box, err = secrets.NewBox(bytes.Repeat([]byte{3}, secrets.KeySize))
	require.NoError(t, err)
	f.target = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		f.hits++
		status, headers := f.status, f.headers
		f.mu.Unlock()
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(f.target.Close)
	f.acts = &activities.Activities{
		DB: f.db, Clock: func() time.Time { return now }, Secrets: f.box,
		Outbound: notify.NewOutbound([]string{"127.0.0.0/8"}), NotifyMetrics: notify.NewMetrics(f.reg),
	}
	return f
}

func (f *notifyFixture) answer(status int, headers map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.headers = status, headers
}

func (f *notifyFixture) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

func (f *notifyFixture) env() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewJSONHandler(f.logs, nil))))
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(f.acts)
	return env
}

// notification stores a webhook channel whose URL carries a token, and a
// pending notification for it.
func (f *notifyFixture) notification(t *testing.T) *db.Notification {
	t.Helper()
	ctx := context.Background()
	cfg, err := notify.ParseConfig(notify.TypeWebhook, json.RawMessage(`{"url": "`+f.target.URL+`/hooks/S3CR3T-token"}`))
	require.NoError(t, err)
	sealed, err := cfg.Seal(f.box)
	require.NoError(t, err)
	ch := &db.Channel{Name: "ops-" + uuid.NewString(), Type: notify.TypeWebhook, ConfigKeyID: sealed.KeyID, ConfigSealed: sealed.Ciphertext}
	require.NoError(t, db.CreateChannel(ctx, f.db.Bun, ch))
	payload, err := json.Marshal(notify.Alert{Fingerprint: "fp", Status: notify.StatusFiring, Severity: notify.SeverityWarning, Title: "t"})
	require.NoError(t, err)
	id := uuid.Must(uuid.NewV7()).String()
	n := &db.Notification{ID: id, ChannelID: ch.ID, ChannelType: ch.Type, Kind: notify.KindAlert, Payload: payload,
		WorkflowID: workflows.NotifyWorkflowID(id)}
	require.NoError(t, db.InsertNotification(ctx, f.db.Bun, n))
	return n
}

func (f *notifyFixture) row(t *testing.T, id string) *db.Notification {
	t.Helper()
	n, err := db.GetNotification(context.Background(), f.db.Bun, id)
	require.NoError(t, err)
	return n
}

func send(env *testsuite.TestActivityEnvironment, in workflows.SendNotificationInput) (workflows.SendNotificationResult, error) {
	val, err := env.ExecuteActivity(workflows.ActivitySendNotification, in)
	if err != nil {
		return workflows.SendNotificationResult{}, err
	}
	var res workflows.SendNotificationResult
	return res, val.Get(&res)
}

func TestSendNotificationDeliversOnceAndRecords(t *testing.T) {
	f := newNotifyFixture(t)
	n := f.notification(t)
	in := workflows.SendNotificationInput{NotificationID: n.ID, Attempt: 1, RetryDelay: time.Minute}

	res, err := send(f.env(), in)
	require.NoError(t, err)
	assert.False(t, res.AlreadySent)

	again, err := send(f.env(), in)
	require.NoError(t, err)
	assert.True(t, again.AlreadySent, "a repeat finds it sent")
	assert.Equal(t, 1, f.requests(), "and sends nothing")
	row := f.row(t, n.ID)
	assert.Equal(t, db.NotificationSent, row.Status)
	assert.Equal(t, 1, row.Attempts)
	require.NotNil(t, row.SentAt)
	assert.True(t, now.Equal(*row.SentAt))
	assert.Equal(t, 1.0, counter(t, f.reg, "opsflow_notifications_sent_total", "webhook", ""))
}

func TestSendNotificationRecordsAFailedAttempt(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		headers    map[string]string
		in         workflows.SendNotificationInput
		errType    string
		reason     notify.Reason
		retryAfter time.Duration
		nextRetry  *time.Time
	}{
		{name: "retryable with Retry-After", status: http.StatusServiceUnavailable, headers: map[string]string{"Retry-After": "7"},
			in: workflows.SendNotificationInput{Attempt: 2, RetryDelay: 2 * time.Minute}, errType: workflows.ErrTypeDeliveryFailed,
			reason: notify.ReasonServerError, retryAfter: 7 * time.Second, nextRetry: ptr(now.Add(7 * time.Second))},
		{name: "retryable", status: http.StatusInternalServerError,
			in: workflows.SendNotificationInput{Attempt: 1, RetryDelay: time.Minute}, errType: workflows.ErrTypeDeliveryFailed,
			reason: notify.ReasonServerError, nextRetry: ptr(now.Add(time.Minute))},
		{name: "retryable on the last attempt", status: http.StatusInternalServerError,
			in: workflows.SendNotificationInput{Attempt: 5}, errType: workflows.ErrTypeDeliveryFailed, reason: notify.ReasonServerError},
		{name: "permanent", status: http.StatusNotFound,
			in: workflows.SendNotificationInput{Attempt: 1, RetryDelay: time.Minute}, errType: workflows.ErrTypeDeliveryRejected,
			reason: notify.ReasonClientError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newNotifyFixture(t)
			f.answer(tt.status, tt.headers)
			n := f.notification(t)
			tt.in.NotificationID = n.ID

			_, err := send(f.env(), tt.in)

			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			assert.Equal(t, tt.errType, appErr.Type())
			assert.Equal(t, tt.retryAfter, appErr.NextRetryDelay())
			row := f.row(t, n.ID)
			assert.Equal(t, db.NotificationPending, row.Status)
			assert.Equal(t, 1, row.Attempts)
			assert.Contains(t, row.LastError, "target answered")
			if tt.nextRetry == nil {
				assert.Nil(t, row.NextRetryAt)
			} else {
				require.NotNil(t, row.NextRetryAt)
				assert.True(t, tt.nextRetry.Equal(*row.NextRetryAt))
			}
			assert.Equal(t, 1.0, counter(t, f.reg, "opsflow_notifications_failed_total", "webhook", string(tt.reason)))
			for _, shown := range []string{appErr.Error(), row.LastError, f.logs.String()} {
				assert.NotContains(t, shown, "S3CR3T")
			}
		})
	}
}

// TestSendNotificationRetryRecordsWithoutSending: a try that delivered but
// failed to record left its heartbeat; the retry only records.
func TestSendNotificationRetryRecordsWithoutSending(t *testing.T) {
	f := newNotifyFixture(t)
	n := f.notification(t)
	_, ok, err := db.StartAttempt(context.Background(), f.db.Bun, n.ID, now)
	require.NoError(t, err)
	require.True(t, ok)
	env := f.env()
	env.SetHeartbeatDetails(map[string]bool{"delivered": true})

	_, err = send(env, workflows.SendNotificationInput{NotificationID: n.ID, Attempt: 1})

	require.NoError(t, err)
	assert.Zero(t, f.requests())
	assert.Equal(t, db.NotificationSent, f.row(t, n.ID).Status)
}

func TestSendNotificationRefusesWhatItCannotSend(t *testing.T) {
	ctx := context.Background()
	t.Run("dead", func(t *testing.T) {
		f := newNotifyFixture(t)
		n := f.notification(t)
		_, err := db.MarkDead(ctx, f.db.Bun, n.ID, "boom", now)
		require.NoError(t, err)

		_, err = send(f.env(), workflows.SendNotificationInput{NotificationID: n.ID, Attempt: 1})

		assertAppError(t, err, workflows.ErrTypeNotificationDead)
		assert.Zero(t, f.requests())
	})
	t.Run("unknown", func(t *testing.T) {
		f := newNotifyFixture(t)
		_, err := send(f.env(), workflows.SendNotificationInput{NotificationID: uuid.NewString(), Attempt: 1})
		assertAppError(t, err, workflows.ErrTypeInvalidInput)
	})
	t.Run("channel deleted", func(t *testing.T) {
		f := newNotifyFixture(t)
		n := f.notification(t)
		require.NoError(t, db.DeleteChannel(ctx, f.db.Bun, n.ChannelID))

		_, err := send(f.env(), workflows.SendNotificationInput{NotificationID: n.ID, Attempt: 1, RetryDelay: time.Minute})

		assertAppError(t, err, workflows.ErrTypeDeliveryRejected)
		assert.Contains(t, f.row(t, n.ID).LastError, "was deleted")
		assert.Zero(t, f.requests())
	})
	t.Run("no secret key", func(t *testing.T) {
		f := newNotifyFixture(t)
		n := f.notification(t)
		f.acts.Secrets = nil

		_, err := send(f.env(), workflows.SendNotificationInput{NotificationID: n.ID, Attempt: 1, RetryDelay: time.Minute})

		assertAppError(t, err, workflows.ErrTypeDeliveryRejected)
		assert.Zero(t, f.requests())
	})
}

func assertAppError(t *testing.T, err error, errType string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, errType, appErr.Type())
}

func TestMarkDeadAndReopenAreIdempotent(t *testing.T) {
	ctx := context.Background()
	f := newNotifyFixture(t)
	n := f.notification(t)
	env := f.env()
	dead := workflows.MarkNotificationDeadInput{NotificationID: n.ID, ChannelType: n.ChannelType, LastError: "target answered 500"}
	reopen := workflows.ReopenNotificationInput{NotificationID: n.ID, Actor: "key:1 (ops)", Reason: "fixed"}

	for range 2 {
		_, err := env.ExecuteActivity(workflows.ActivityMarkNotificationDead, dead)
		require.NoError(t, err)
	}
	row := f.row(t, n.ID)
	assert.Equal(t, db.NotificationDead, row.Status)
	assert.Equal(t, "target answered 500", row.LastError)
	require.NotNil(t, row.DeadAt)
	assert.Equal(t, 1.0, counter(t, f.reg, "opsflow_notifications_dead_total", "webhook", ""), "counted once")

	for range 2 {
		_, err := env.ExecuteActivity(workflows.ActivityReopenNotification, reopen)
		require.NoError(t, err)
	}
	row = f.row(t, n.ID)
	assert.Equal(t, db.NotificationPending, row.Status)
	assert.Nil(t, row.DeadAt)
	var audit []db.AuditEntry
	require.NoError(t, f.db.Bun.NewSelect().Model(&audit).Scan(ctx))
	require.Len(t, audit, 1, "one requeue, one entry")
	assert.Equal(t, "key:1 (ops)", audit[0].Actor)
	assert.Equal(t, db.AuditNotificationRequeue, audit[0].Action)
	assert.Equal(t, "notification:"+n.ID, audit[0].Target)
	assert.Equal(t, map[string]any{"reason": "fixed"}, audit[0].Details)
}

// counter reads one series of a counter: by channel type, and by reason
// when reason is set.
func counter(t *testing.T, reg *prometheus.Registry, name, channelType, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
	series:
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if (l.GetName() == "channel_type" && l.GetValue() != channelType) || (l.GetName() == "reason" && l.GetValue() != reason) {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s{%s,%s}", name, channelType, reason)
	return 0
}
