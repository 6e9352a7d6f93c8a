package workflows_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/workflows"
)

func retentionPtr[T any](v T) *T { return &v }

var retentionNow = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func retentionDay(offset int) time.Time {
	return time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC).AddDate(0, 0, offset)
}

// retentionPlan has a partitioned class with both limits, two row classes
// and one kept forever.
var retentionPlan = workflows.RetentionPlan{Policies: []workflows.RetentionPolicy{
	{Class: "request_logs", Partitioned: true, KeepDays: retentionPtr(30), MaxRows: retentionPtr(int64(5000))},
	{Class: "rollup_minute", KeepDays: retentionPtr(90)},
	{Class: "daily_stats"},
	{Class: "alert_events", KeepDays: retentionPtr(180)},
}}

func taskResult(class, action string, rows int64) workflows.RetentionTaskResult {
	return workflows.RetentionTaskResult{Class: class, Table: class, Action: action, Rows: rows}
}

// TestRetentionRunsEveryPolicy: partitions ahead first, then per class the
// task its policy asks for, with cutoffs counted from the run's UTC day;
// keep-forever classes are left alone.
func TestRetentionRunsEveryPolicy(t *testing.T) {
	env := newDailyEnv(t, retentionNow)
	env.OnActivity(workflows.ActivityEnsurePartitions, mock.Anything, workflows.EnsurePartitionsInput{From: "2026-11-22", Days: 8}).
		Return(workflows.EnsurePartitionsResult{Partitions: make([]string, 8)}, nil).Once()
	env.OnActivity(workflows.ActivityRetentionPlan, mock.Anything).Return(retentionPlan, nil).Once()
	drop := workflows.RetentionTaskResult{Class: "request_logs", Table: "request_logs", Action: workflows.RetentionDropPartitions, Partitions: []string{"request_logs_p20261020"}}
	env.OnActivity(workflows.ActivityDropExpiredPartitions, mock.Anything,
		workflows.RetentionTaskInput{Class: "request_logs", Cutoff: retentionDay(-30)}).Return(drop, nil).Once()
	trim := taskResult("request_logs", workflows.RetentionTrimMaxRows, 12)
	env.OnActivity(workflows.ActivityTrimRequestLogs, mock.Anything,
		workflows.RetentionTaskInput{Class: "request_logs", MaxRows: 5000}).Return(trim, nil).Once()
	rollups := taskResult("rollup_minute", workflows.RetentionDeleteExpired, 40)
	env.OnActivity(workflows.ActivityPurgeExpired, mock.Anything,
		workflows.RetentionTaskInput{Class: "rollup_minute", Cutoff: retentionDay(-90)}).Return(rollups, nil).Once()
	events := taskResult("alert_events", workflows.RetentionDeleteExpired, 3)
	env.OnActivity(workflows.ActivityPurgeExpired, mock.Anything,
		workflows.RetentionTaskInput{Class: "alert_events", Cutoff: retentionDay(-180)}).Return(events, nil).Once()

	env.ExecuteWorkflow(workflows.RetentionWorkflowName, workflows.RetentionInput{})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res workflows.RetentionResult
	require.NoError(t, env.GetWorkflowResult(&res))
	assert.Equal(t, workflows.RetentionResult{PartitionsEnsured: 8,
		Tasks: []workflows.RetentionTaskResult{drop, trim, rollups, events}}, res)
	env.AssertExpectations(t)
}

// TestRetentionFailedTaskDoesNotStopOthers: a failing class is reported
// and fails the run, after every other class ran.
func TestRetentionFailedTaskDoesNotStopOthers(t *testing.T) {
	env := newDailyEnv(t, retentionNow)
	env.OnActivity(workflows.ActivityEnsurePartitions, mock.Anything, mock.Anything).
		Return(workflows.EnsurePartitionsResult{}, nil)
	env.OnActivity(workflows.ActivityRetentionPlan, mock.Anything).Return(retentionPlan, nil)
	env.OnActivity(workflows.ActivityDropExpiredPartitions, mock.Anything, mock.Anything).
		Return(workflows.RetentionTaskResult{}, temporal.NewNonRetryableApplicationError("disk on fire", "Test", nil))
	env.OnActivity(workflows.ActivityTrimRequestLogs, mock.Anything, mock.Anything).
		Return(taskResult("request_logs", workflows.RetentionTrimMaxRows, 1), nil).Once()
	env.OnActivity(workflows.ActivityPurgeExpired, mock.Anything, mock.Anything).
		Return(taskResult("x", workflows.RetentionDeleteExpired, 1), nil).Twice()

	env.ExecuteWorkflow(workflows.RetentionWorkflowName, workflows.RetentionInput{})

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	assert.Equal(t, workflows.ErrTypeRetentionIncomplete, appErr.Type())
	var res workflows.RetentionResult
	require.NoError(t, appErr.Details(&res))
	assert.Len(t, res.Tasks, 3)
	require.Len(t, res.Failed, 1)
	assert.Contains(t, res.Failed[0], "DropExpiredPartitions request_logs")
	env.AssertExpectations(t)
}
