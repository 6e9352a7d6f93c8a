package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/workflows"
)

// ScheduleDef declares one schedule. Schedules live in code and are
// reconciled onto the server, never created by hand.
type ScheduleDef struct {
	ID          string
	Description string
	Spec        client.ScheduleSpec
	Action      *client.ScheduleWorkflowAction
	Overlap     enumspb.ScheduleOverlapPolicy
	// CatchupWindow bounds how many missed runs fire after an outage.
	CatchupWindow time.Duration
}

// Schedules declares every schedule opsflow runs.
func Schedules(taskQueue string) []ScheduleDef {
	return []ScheduleDef{{
		ID:          workflows.CollectScheduleID,
		Description: "roll raw request logs up into minute rollups; record process metrics",
		Spec:        client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Minute}}},
		Action:      scheduledRun(taskQueue, workflows.CollectScheduleID, workflows.CollectWorkflowName, 10*time.Minute, workflows.CollectInput{}),
		// Each run processes every pending batch, so runs missed during an
		// outage need no catching up: the next one covers them.
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: time.Minute,
	},
		// schedules: daily
		{
			ID:          workflows.DailyScheduleID,
			Description: "aggregate the previous UTC day (and refold the day before) into daily_stats",
			Spec:        client.ScheduleSpec{CronExpressions: []string{"5 0 * * *"}},
			Action:      scheduledRun(taskQueue, workflows.DailyScheduleID, workflows.DailyWorkflowName, 2*time.Hour, workflows.DailyInput{}),
			// A run aggregates the day before its scheduled time, so a run
			// missed during an outage is worth catching up for a day.
			Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE,
			CatchupWindow: 24 * time.Hour,
		},
		{
			ID:          workflows.RetentionScheduleID,
			Description: "enforce retention policies; create request_logs partitions 7 days ahead",
			Spec:        client.ScheduleSpec{CronExpressions: []string{"0 3 * * *"}},
			Action:      scheduledRun(taskQueue, workflows.RetentionScheduleID, workflows.RetentionWorkflowName, 12*time.Hour, workflows.RetentionInput{}),
			// The next run removes whatever a skipped one would have.
			Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			CatchupWindow: 6 * time.Hour,
		},
		// schedules: alerting
		{
			ID:          workflows.AlertEvalScheduleID,
			Description: "evaluate alert rules over the previous minute's rollups; notify transitions",
			// Half a minute after the collector, which has rolled the previous
			// minute up by then; each run evaluates the minute before its slot.
			Spec:   client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Minute, Offset: 30 * time.Second}}},
			Action: scheduledRun(taskQueue, workflows.AlertEvalScheduleID, workflows.AlertEvalWorkflowName, 5*time.Minute, workflows.AlertEvalInput{}),
			// A run evaluates its own minute, and alert clocks are stored, so a
			// skipped or missed minute only delays a transition by a minute.
			Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			CatchupWindow: time.Minute,
		},
		// schedules: credentials
		{
			ID:          workflows.CredentialsReconcileScheduleID,
			Description: "start the token-refresh workflow of every credential lacking one; end those of deleted credentials",
			Spec:        client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: 10 * time.Minute}}},
			Action:      scheduledRun(taskQueue, workflows.CredentialsReconcileScheduleID, workflows.CredentialsReconcileWorkflowName, 5*time.Minute),
			// A run looks at every credential: missed runs need no catching up.
			Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			CatchupWindow: time.Minute,
		},
	}
}

// scheduledRun is a schedule's action: one run of workflowName with id
// (Temporal appends the scheduled time), tagged with the job name so the
// Temporal UI can list a job's runs.
func scheduledRun(taskQueue, id, workflowName string, runTimeout time.Duration, args ...any) *client.ScheduleWorkflowAction {
	return &client.ScheduleWorkflowAction{
		ID:                    id,
		Workflow:              workflowName,
		Args:                  args,
		TaskQueue:             taskQueue,
		WorkflowRunTimeout:    runTimeout,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.SearchAttrJob.ValueSet(workflowName)),
	}
}

// ApplyResult says what reconciling one schedule did.
type ApplyResult struct {
	ID     string
	Action string // created or updated
}

// ApplySchedules creates missing schedules and brings existing ones in line
// with their definition, keeping an operator's pause and note. Safe to run
// from several workers at once.
func ApplySchedules(ctx context.Context, c client.Client, taskQueue string) ([]ApplyResult, error) {
	var results []ApplyResult
	for _, def := range Schedules(taskQueue) {
		action, err := applySchedule(ctx, c.ScheduleClient(), def)
		if err != nil {
			return results, fmt.Errorf("schedule %s: %w", def.ID, err)
		}
		results = append(results, ApplyResult{ID: def.ID, Action: action})
	}
	return results, nil
}

func applySchedule(ctx context.Context, sc client.ScheduleClient, def ScheduleDef) (string, error) {
	_, err := sc.Create(ctx, client.ScheduleOptions{
		ID:            def.ID,
		Spec:          def.Spec,
		Action:        def.Action,
		Overlap:       def.Overlap,
		CatchupWindow: def.CatchupWindow,
		Note:          def.Description,
	})
	if err == nil {
		return "created", nil
	}
	var exists *serviceerror.AlreadyExists
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) && !errors.As(err, &exists) {
		return "", err
	}
	err = sc.GetHandle(ctx, def.ID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			spec := def.Spec
			s.Spec = &spec
			s.Action = def.Action
			if s.Policy == nil {
				s.Policy = &client.SchedulePolicies{}
			}
			s.Policy.Overlap = def.Overlap
			s.Policy.CatchupWindow = def.CatchupWindow
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	return "updated", err
}
