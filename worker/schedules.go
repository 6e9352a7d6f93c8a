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
		Action: &client.ScheduleWorkflowAction{
			ID:                 workflows.CollectScheduleID,
			Workflow:           workflows.CollectWorkflowName,
			Args:               []any{workflows.CollectInput{}},
			TaskQueue:          taskQueue,
			WorkflowRunTimeout: 10 * time.Minute,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				workflows.SearchAttrJob.ValueSet("collect")),
		},
		// Each run processes every pending batch, so runs missed during an
		// outage need no catching up: the next one covers them.
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: time.Minute,
	},
	// schedules: daily
	// schedules: alerting
	// schedules: credentials
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
