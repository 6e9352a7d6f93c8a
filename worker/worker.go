// Package worker runs opsflow's Temporal worker: it registers every workflow
// and activity under the names of the contract in package workflows, and
// reconciles the schedules declared in schedules.go.
package worker

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/workflows"
)

// New builds a worker on taskQueue with everything registered; the caller
// runs it (Run/Start) and stops it.
func New(c client.Client, taskQueue string, acts *activities.Activities) sdkworker.Worker {
	w := sdkworker.New(c, taskQueue, sdkworker.Options{})
	Register(w, acts)
	return w
}

// Register adds every workflow and activity to r (a worker or a test
// environment).
func Register(r sdkworker.Registry, acts *activities.Activities) {
	RegisterWorkflows(r)
	registerActivities(r, acts)
}

// RegisterWorkflows adds every workflow to r; a replayer needs only these.
func RegisterWorkflows(r sdkworker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(workflows.Collect, workflow.RegisterOptions{Name: workflows.CollectWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Notify, workflow.RegisterOptions{Name: workflows.NotifyWorkflowName})
	// workflows: daily
	r.RegisterWorkflowWithOptions(workflows.Daily, workflow.RegisterOptions{Name: workflows.DailyWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.DailyBackfill, workflow.RegisterOptions{Name: workflows.DailyBackfillWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Retention, workflow.RegisterOptions{Name: workflows.RetentionWorkflowName})
	// workflows: alerting
	r.RegisterWorkflowWithOptions(workflows.AlertEval, workflow.RegisterOptions{Name: workflows.AlertEvalWorkflowName})
	// workflows: credentials
	r.RegisterWorkflowWithOptions(workflows.TokenRefresh, workflow.RegisterOptions{Name: workflows.TokenRefreshWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.CredentialsReconcile, workflow.RegisterOptions{Name: workflows.CredentialsReconcileWorkflowName})
}

func registerActivities(r sdkworker.ActivityRegistry, acts *activities.Activities) {
	for name, fn := range map[string]any{
		workflows.ActivityCollectRollups:       acts.CollectRollups,
		workflows.ActivityRecordProcessMetrics: acts.RecordProcessMetrics,
		workflows.ActivitySendNotification:     acts.SendNotification,
		workflows.ActivityMarkNotificationDead: acts.MarkNotificationDead,
		workflows.ActivityReopenNotification:   acts.ReopenNotification,
		// activities: dashboards
		// activities: daily
		workflows.ActivityAggregateDay:          acts.AggregateDailyStats,
		workflows.ActivityEnsurePartitions:      acts.EnsureRequestLogPartitions,
		workflows.ActivityRetentionPlan:         acts.RetentionPlan,
		workflows.ActivityDropExpiredPartitions: acts.DropExpiredPartitions,
		workflows.ActivityPurgeExpired:          acts.PurgeExpired,
		workflows.ActivityTrimRequestLogs:       acts.TrimRequestLogs,
		// activities: alerting
		workflows.ActivityLoadAlertEval:     acts.LoadAlertEval,
		workflows.ActivityApplyAlertUpdates: acts.ApplyAlertUpdates,
		// activities: credentials
		workflows.ActivityLoadCredential:       acts.LoadCredential,
		workflows.ActivityRefreshCredential:    acts.RefreshCredential,
		workflows.ActivityMarkCredentialError:  acts.MarkCredentialError,
		workflows.ActivityReconcileCredentials: acts.ReconcileCredentials,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}
