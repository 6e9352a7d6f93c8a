package testenv_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/worker"
	"github.com/opsflow/opsflow/workflows"
)

// benchBatch is how many notifications (or workflows) one iteration runs.
const benchBatch = 1000

// benchStarters bounds the concurrent starts, like a busy alerting run.
const benchStarters = 32

// fanOut runs fn(i) for i in [0, n) on benchStarters goroutines.
func fanOut(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range benchStarters {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// BenchmarkNotifyDelivery: 1,000 notifications to a loopback webhook, end to
// end: row insert and workflow start, the send activity's row updates and
// HTTP POST, the workflow's completion; timed until every row reads sent.
func BenchmarkNotifyDelivery(b *testing.B) {
	ctx := context.Background()
	d := testenv.DB(b)
	tc := testenv.TemporalClient(b)
	box, err := secrets.NewBox(secretKey)
	require.NoError(b, err)
	taskQueue := "bench-notify-" + uuid.NewString()
	out := notify.NewOutbound([]string{"127.0.0.0/8"})
	svc := &notify.Service{DB: d, Temporal: tc, TaskQueue: taskQueue, Secrets: box, Outbound: out, Retry: workflows.DefaultNotifyRetryPolicy}
	w := worker.New(tc, taskQueue, &activities.Activities{DB: d, Secrets: box, Outbound: out})
	require.NoError(b, w.Start())
	b.Cleanup(w.Stop)
	tg := newCountingTarget(b, 0)
	ch := webhookChannel(b, svc, tg.URL)
	alert := notify.Alert{Fingerprint: "bench", Status: notify.StatusFiring, Severity: notify.SeverityWarning, Title: "bench"}

	var elapsed time.Duration
	sent := 0
	for b.Loop() {
		begin := time.Now()
		fanOut(benchBatch, func(int) {
			_, err := svc.Enqueue(ctx, ch, notify.KindAlert, alert)
			require.NoError(b, err)
		})
		sent += benchBatch
		for {
			n, err := d.Bun.NewSelect().Model((*db.Notification)(nil)).Where("status = ?", db.NotificationSent).Count(ctx)
			require.NoError(b, err)
			if int(n) >= sent {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		elapsed += time.Since(begin)
	}
	_, accepted := tg.snapshot()
	require.Len(b, accepted, sent, "every notification delivered, once")
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "notifications/s")
}

const (
	trivialWorkflow = "bench-trivial"
	trivialActivity = "bench-noop"
)

func trivial(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumAttempts: 3},
	})
	return workflow.ExecuteActivity(ctx, trivialActivity).Get(ctx, nil)
}

// BenchmarkTrivialWorkflow is the yardstick for BenchmarkNotifyDelivery:
// 1,000 one-activity workflows that do nothing, on the same dev server.
func BenchmarkTrivialWorkflow(b *testing.B) {
	ctx := context.Background()
	tc := testenv.TemporalClient(b)
	taskQueue := "bench-trivial-" + uuid.NewString()
	w := sdkworker.New(tc, taskQueue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(trivial, workflow.RegisterOptions{Name: trivialWorkflow})
	w.RegisterActivityWithOptions(func(context.Context) error { return nil }, activity.RegisterOptions{Name: trivialActivity})
	require.NoError(b, w.Start())
	b.Cleanup(w.Stop)

	var elapsed time.Duration
	done := 0
	for b.Loop() {
		begin := time.Now()
		// Start everything, then wait for everything, as the notification
		// benchmark does.
		runs := make([]client.WorkflowRun, benchBatch)
		fanOut(benchBatch, func(i int) {
			var err error
			runs[i], err = tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "bench-trivial/" + uuid.NewString(), TaskQueue: taskQueue}, trivialWorkflow)
			require.NoError(b, err)
		})
		fanOut(benchBatch, func(i int) { require.NoError(b, runs[i].Get(ctx, nil)) })
		done += benchBatch
		elapsed += time.Since(begin)
	}
	b.ReportMetric(float64(done)/elapsed.Seconds(), "workflows/s")
}
