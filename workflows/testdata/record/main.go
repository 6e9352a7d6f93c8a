// Command record writes the workflow histories that workflows' replay test
// replays (workflows/testdata/*.history.json). It runs each workflow on a
// throwaway Temporal dev server with scripted activities, so a history holds
// the commands the workflow code of the day produced for a known story.
// Record again only on purpose: a replay failure after a workflow change means
// running workflows would break, and needs versioning (workflow.GetVersion),
// not a new recording.
//
//	go run ./workflows/testdata/record   (from the repository root, after make test has installed bin/temporal)
//	go run ./workflows/testdata/record retention   (only the named histories)
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/opsflow/opsflow/devstack"
	"github.com/opsflow/opsflow/worker"
	"github.com/opsflow/opsflow/workflows"
)

const taskQueue = "record"

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "record:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	srv, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{
		CLIPath: "bin/temporal", Namespace: "default", SearchAttributes: workflows.SearchAttributes})
	if err != nil {
		return err
	}
	defer srv.Stop()
	c, err := client.Dial(client.Options{HostPort: srv.Address, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer c.Close()

	w := sdkworker.New(c, taskQueue, sdkworker.Options{})
	worker.RegisterWorkflows(w)
	s := &script{}
	for name, fn := range map[string]any{
		workflows.ActivityCollectRollups:        s.collectRollups,
		workflows.ActivityRecordProcessMetrics:  s.recordProcessMetrics,
		workflows.ActivitySendNotification:      s.sendNotification,
		workflows.ActivityMarkNotificationDead:  func(context.Context, workflows.MarkNotificationDeadInput) error { return nil },
		workflows.ActivityReopenNotification:    func(context.Context, workflows.ReopenNotificationInput) error { return nil },
		workflows.ActivityAggregateDay:          aggregateDay,
		workflows.ActivityEnsurePartitions:      ensurePartitions,
		workflows.ActivityRetentionPlan:         retentionPlan,
		workflows.ActivityDropExpiredPartitions: retentionTask,
		workflows.ActivityPurgeExpired:          retentionTask,
		workflows.ActivityTrimRequestLogs:       retentionTask,
		workflows.ActivityLoadAlertEval:         loadAlertEval,
		workflows.ActivityApplyAlertUpdates:     applyAlertUpdates,
		workflows.ActivityLoadCredential:        credential.load,
		workflows.ActivityRefreshCredential:     credential.refresh,
		workflows.ActivityMarkCredentialError:   func(context.Context, workflows.MarkCredentialErrorInput) error { return nil },
	} {
		w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()

	// collect: process metrics fail (best effort), a backlog takes two calls.
	if err := record(ctx, c, "collect-backlog", workflows.CollectWorkflowName, workflows.CollectInput{}, nil); err != nil {
		return err
	}
	// notify: two failed attempts (one with Retry-After), dead, requeued by
	// signal, delivered.
	retry := workflows.NotifyRetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 2 * time.Second, MaximumAttempts: 2}
	in := workflows.NotifyInput{NotificationID: "n-1", ChannelType: "webhook", Retry: retry}
	err = record(ctx, c, "notify-dead-requeued-sent", workflows.NotifyWorkflowName, in, func(id string) error {
		for {
			time.Sleep(200 * time.Millisecond)
			v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
			if err != nil {
				return err
			}
			var st workflows.NotifyStatus
			if err := v.Get(&st); err != nil {
				return err
			}
			if st.State == workflows.NotificationDead {
				return c.SignalWorkflow(ctx, id, "", workflows.SignalRequeue, workflows.RequeueSignal{Actor: "record"})
			}
		}
	})
	if err != nil {
		return err
	}
	if err := recordDailyRetention(ctx, c); err != nil {
		return err
	}
	if err := recordTokenRefresh(ctx, c); err != nil {
		return err
	}
	return recordAlertEval(ctx, c)
}

// recordDailyRetention records a daily run started by hand (its days follow
// from the clock), a five-day backfill at concurrency 2, and a retention run
// over every kind of policy.
func recordDailyRetention(ctx context.Context, c client.Client) error {
	if err := record(ctx, c, "daily-unscheduled", workflows.DailyWorkflowName, workflows.DailyInput{}, nil); err != nil {
		return err
	}
	backfill := workflows.DailyBackfillInput{From: "2026-10-01", To: "2026-10-05", Concurrency: 2}
	if err := record(ctx, c, "daily-backfill", workflows.DailyBackfillWorkflowName, backfill, nil); err != nil {
		return err
	}
	asOf := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	return record(ctx, c, "retention", workflows.RetentionWorkflowName, workflows.RetentionInput{AsOf: &asOf}, nil)
}

func aggregateDay(_ context.Context, in workflows.AggregateDayInput) (workflows.DailyResult, error) {
	return workflows.DailyResult{Day: in.Day, Rows: 3, Requests: 100}, nil
}

func ensurePartitions(_ context.Context, in workflows.EnsurePartitionsInput) (workflows.EnsurePartitionsResult, error) {
	return workflows.EnsurePartitionsResult{Partitions: make([]string, in.Days)}, nil
}

func retentionPlan(context.Context) (workflows.RetentionPlan, error) {
	days, rows := 30, int64(100_000)
	return workflows.RetentionPlan{Policies: []workflows.RetentionPolicy{
		{Class: "request_logs", Partitioned: true, KeepDays: &days, MaxRows: &rows},
		{Class: "rollup_minute", KeepDays: &days},
		{Class: "daily_stats"},
	}}, nil
}

func retentionTask(_ context.Context, in workflows.RetentionTaskInput) (workflows.RetentionTaskResult, error) {
	return workflows.RetentionTaskResult{Class: in.Class, Table: in.Class, Rows: 10}, nil
}

// wanted reports whether the command line asked for a history: all of
// them without arguments.
func wanted(name string) bool {
	return len(os.Args) < 2 || slices.Contains(os.Args[1:], name)
}

// record runs one workflow to its end, optionally driving it meanwhile, and
// writes its history next to this program.
func record(ctx context.Context, c client.Client, name, workflowType string, in any, drive func(id string) error) error {
	if !wanted(name) {
		return nil
	}
	id := "record/" + name
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, workflowType, in)
	if err != nil {
		return err
	}
	if drive != nil {
		if err := drive(id); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := run.Get(ctx, nil); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	history := &historypb.History{}
	iter := c.GetWorkflowHistory(ctx, id, run.GetRunID(), false, 0)
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			return err
		}
		history.Events = append(history.Events, event)
	}
	out, err := protojson.MarshalOptions{Indent: "  "}.Marshal(history)
	if err != nil {
		return err
	}
	path := filepath.Join("workflows", "testdata", name+".history.json")
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", path, len(history.Events), "events")
	return nil
}

// script answers the activities with a fixed story.
type script struct {
	collectCalls atomic.Int32
	sendCalls    atomic.Int32
}

func (s *script) recordProcessMetrics(context.Context, workflows.RecordProcessMetricsInput) error {
	return temporal.NewNonRetryableApplicationError("scripted failure", "Scripted", nil)
}

func (s *script) collectRollups(_ context.Context, in workflows.CollectRollupsInput) (workflows.CollectRollupsResult, error) {
	if s.collectCalls.Add(1) == 1 {
		return workflows.CollectRollupsResult{Batches: in.MaxBatches, Minutes: 3, Events: 5000, Rows: 12, More: true}, nil
	}
	return workflows.CollectRollupsResult{Batches: 7, Minutes: 1, Events: 350, Rows: 4}, nil
}

func (s *script) sendNotification(_ context.Context, in workflows.SendNotificationInput) (workflows.SendNotificationResult, error) {
	switch s.sendCalls.Add(1) {
	case 1:
		return workflows.SendNotificationResult{}, temporal.NewApplicationErrorWithOptions("503 Service Unavailable",
			workflows.ErrTypeDeliveryFailed, temporal.ApplicationErrorOptions{NonRetryable: true, NextRetryDelay: time.Second})
	case 2:
		return workflows.SendNotificationResult{}, temporal.NewNonRetryableApplicationError("500 Internal Server Error",
			workflows.ErrTypeDeliveryFailed, errors.New("server error"))
	}
	return workflows.SendNotificationResult{}, nil
}
