package testenv_test

import (
	"bytes"
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

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/devstack"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

var secretKey = bytes.Repeat([]byte{11}, secrets.KeySize)

// countingTarget is a loopback webhook that fails its first failures
// requests with 503 and accepts the rest, counting deliveries per
// Idempotency-Key.
type countingTarget struct {
	*httptest.Server
	mu       sync.Mutex
	failures int
	requests int
	accepted map[string]int
}

func newCountingTarget(t testing.TB, failures int) *countingTarget {
	c := &countingTarget{failures: failures, accepted: map[string]int{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.requests++
		if c.failures > 0 {
			c.failures--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		c.accepted[r.Header.Get(notify.HeaderIdempotencyKey)]++
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *countingTarget) snapshot() (requests int, accepted map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	accepted = map[string]int{}
	for k, v := range c.accepted {
		accepted[k] = v
	}
	return c.requests, accepted
}

// webhookChannel stores a webhook channel to url through the service, as
// the API does.
func webhookChannel(t testing.TB, svc *notify.Service, url string) *db.Channel {
	t.Helper()
	ctx := context.Background()
	cfg, err := json.Marshal(map[string]string{"url": url + "/hook"})
	require.NoError(t, err)
	ch, err := svc.CreateChannel(ctx, notify.ChannelInput{Name: "hook-" + uuid.NewString()[:8], Type: notify.TypeWebhook, Config: cfg}, "test")
	require.NoError(t, err)
	row, err := db.GetChannel(ctx, svc.DB.Bun, ch.ID)
	require.NoError(t, err)
	return row
}

// TestWorkerKilledWhileBackingOffDeliversExactlyOnce: the target fails the
// first two attempts; while the notification waits for its third, the
// worker process is SIGKILLed. A new worker picks the durable timer up and
// the notification is delivered, once.
func TestWorkerKilledWhileBackingOffDeliversExactlyOnce(t *testing.T) {
	ctx := context.Background()
	bin := opsflowBinary(t)
	dbURL, d := processDB(t, 4)
	tc := testenv.TemporalClient(t)
	box, err := secrets.NewBox(secretKey)
	require.NoError(t, err)
	taskQueue := "kill-test-" + uuid.NewString()
	svc := &notify.Service{DB: d, Temporal: tc, TaskQueue: taskQueue, Secrets: box, Outbound: notify.NewOutbound([]string{"127.0.0.0/8"}),
		// Waits of 3 s and 6 s leave the kill plenty of room between attempts.
		Retry: workflows.NotifyRetryPolicy{InitialInterval: 3 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 5}}
	tg := newCountingTarget(t, 2)
	ch := webhookChannel(t, svc, tg.URL)
	env := workerEnv(t, dbURL, taskQueue)
	first := startWorker(t, bin, env)

	n, err := svc.Enqueue(ctx, ch, notify.KindTest, notify.Alert{Fingerprint: "kill", Status: notify.StatusFiring, Title: "kill test"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		row, err := db.GetNotification(ctx, d.Bun, n.ID)
		require.NoError(t, err)
		return row.Attempts == 2 && row.Status == db.NotificationPending && row.NextRetryAt != nil
	}, time.Minute, 20*time.Millisecond, "two failed attempts, then a backoff; worker output:\n%s", first.out)
	first.kill(t)
	requests, accepted := tg.snapshot()
	require.Equal(t, 2, requests, "killed during the backoff, before the third attempt")
	require.Empty(t, accepted)

	port, err := devstack.FreePort()
	require.NoError(t, err)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(port)
	startWorker(t, bin, append(env, "OPSFLOW_WORKER_METRICS_ADDR="+metricsAddr))

	require.Eventually(t, func() bool {
		row, err := db.GetNotification(ctx, d.Bun, n.ID)
		require.NoError(t, err)
		return row.Status == db.NotificationSent
	}, 2*time.Minute, 50*time.Millisecond)
	requests, accepted = tg.snapshot()
	assert.Equal(t, 3, requests)
	assert.Equal(t, map[string]int{n.ID: 1}, accepted, "delivered exactly once")
	row, err := db.GetNotification(ctx, d.Bun, n.ID)
	require.NoError(t, err)
	assert.Equal(t, 3, row.Attempts)
	var res workflows.NotifyResult
	require.NoError(t, tc.GetWorkflow(ctx, n.WorkflowID, "").Get(ctx, &res))
	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 3}, res)
	// The restarted worker counted the delivery on its own /metrics.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	metrics, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(metrics), `opsflow_notifications_sent_total{channel_type="webhook"} 1`)
	assert.Contains(t, string(metrics), `opsflow_notifications_failed_total{channel_type="webhook",reason="server_error"} 0`,
		"the failures were the killed worker's")
}
