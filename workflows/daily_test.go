package workflows_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/workflows"
)

// newDailyEnv registers the daily workflows and stand-ins for their
// activities under their contract names; tests mock those names.
func newDailyEnv(t *testing.T, at time.Time) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(at)
	env.RegisterWorkflowWithOptions(workflows.Daily, workflow.RegisterOptions{Name: workflows.DailyWorkflowName})
	env.RegisterWorkflowWithOptions(workflows.DailyBackfill, workflow.RegisterOptions{Name: workflows.DailyBackfillWorkflowName})
	env.RegisterWorkflowWithOptions(workflows.Retention, workflow.RegisterOptions{Name: workflows.RetentionWorkflowName})
	notMocked := errors.New("not mocked")
	for name, fn := range map[string]any{
		workflows.ActivityAggregateDay: func(context.Context, workflows.AggregateDayInput) (workflows.DailyResult, error) {
			return workflows.DailyResult{}, notMocked
		},
		workflows.ActivityEnsurePartitions: func(context.Context, workflows.EnsurePartitionsInput) (workflows.EnsurePartitionsResult, error) {
			return workflows.EnsurePartitionsResult{}, notMocked
		},
		workflows.ActivityRetentionPlan: func(context.Context) (workflows.RetentionPlan, error) {
			return workflows.RetentionPlan{}, notMocked
		},
		workflows.ActivityDropExpiredPartitions: retentionStandIn,
		workflows.ActivityPurgeExpired:          retentionStandIn,
		workflows.ActivityTrimRequestLogs:       retentionStandIn,
	} {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	return env
}

func retentionStandIn(context.Context, workflows.RetentionTaskInput) (workflows.RetentionTaskResult, error) {
	return workflows.RetentionTaskResult{}, errors.New("not mocked")
}

func aggregated(day string, requests int64) workflows.DailyResult {
	return workflows.DailyResult{Day: day, Rows: 3, Requests: requests}
}

// TestDailyScheduledRun: a scheduled run aggregates the day before its
// scheduled time and refolds the day before that, each in a child
// daily/<day>, even when it starts late, and creates partitions ahead from
// the actual day.
func TestDailyScheduledRun(t *testing.T) {
	scheduled := time.Date(2026, 11, 22, 0, 5, 0, 0, time.UTC)
	tests := []struct {
		name      string
		scheduled *time.Time
		days      []string
	}{
		{"late scheduled run", &scheduled, []string{"2026-11-20", "2026-11-21"}},
		{"started by hand", nil, []string{"2026-11-21", "2026-11-22"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			started := time.Date(2026, 11, 23, 0, 3, 0, 0, time.UTC) // a day late
			env := newDailyEnv(t, started)
			if tc.scheduled != nil {
				require.NoError(t, env.SetTypedSearchAttributesOnStart(temporal.NewSearchAttributes(
					temporal.NewSearchAttributeKeyTime("TemporalScheduledStartTime").ValueSet(*tc.scheduled))))
			}
			env.OnActivity(workflows.ActivityEnsurePartitions, mock.Anything,
				workflows.EnsurePartitionsInput{From: "2026-11-23", Days: 8}).
				Return(workflows.EnsurePartitionsResult{Partitions: make([]string, 8)}, nil).Once()
			for i, day := range tc.days {
				env.OnActivity(workflows.ActivityAggregateDay, mock.Anything, workflows.AggregateDayInput{Day: day}).
					Return(aggregated(day, int64(i+1)), nil).Once()
			}

			var children []string
			env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
				children = append(children, info.WorkflowExecution.ID)
			})

			env.ExecuteWorkflow(workflows.DailyWorkflowName, workflows.DailyInput{})

			require.True(t, env.IsWorkflowCompleted())
			require.NoError(t, env.GetWorkflowError())
			var res workflows.DailyResult
			require.NoError(t, env.GetWorkflowResult(&res))
			assert.Equal(t, aggregated(tc.days[1], 2), res)
			assert.Equal(t, []string{workflows.DailyWorkflowID(tc.days[0]), workflows.DailyWorkflowID(tc.days[1])}, children,
				"each day is aggregated by its own daily/<day> child")
			env.AssertExpectations(t)
		})
	}
}

func TestDailyExplicitDay(t *testing.T) {
	env := newDailyEnv(t, time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	env.OnUpsertTypedSearchAttributes(temporal.NewSearchAttributes(
		workflows.SearchAttrJob.ValueSet("daily"), workflows.SearchAttrDay.ValueSet("2026-10-03"))).Return(nil).Once()
	env.OnActivity(workflows.ActivityAggregateDay, mock.Anything, workflows.AggregateDayInput{Day: "2026-10-03"}).
		Return(aggregated("2026-10-03", 9), nil).Once()

	env.ExecuteWorkflow(workflows.DailyWorkflowName, workflows.DailyInput{Day: "2026-10-03"})

	require.NoError(t, env.GetWorkflowError())
	env.AssertExpectations(t)
	env.AssertNotCalled(t, workflows.ActivityEnsurePartitions, mock.Anything, mock.Anything)
}

func TestDailyRejectsBadDay(t *testing.T) {
	env := newDailyEnv(t, time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	env.ExecuteWorkflow(workflows.DailyWorkflowName, workflows.DailyInput{Day: "yesterday"})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	assert.Equal(t, workflows.ErrTypeInvalidInput, appErr.Type())
}

// TestDailyBackfillThirtyDays runs a 30-day backfill with concurrency 4:
// exactly one child per day under its daily/<day> ID, never more than 4 at
// once (the progress query says so mid-run), every day done.
func TestDailyBackfillThirtyDays(t *testing.T) {
	env := newDailyEnv(t, time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var ids []string
	env.OnWorkflow(workflows.DailyWorkflowName, mock.Anything, mock.Anything).After(time.Hour).Return(
		func(ctx workflow.Context, in workflows.DailyInput) (workflows.DailyResult, error) {
			mu.Lock()
			defer mu.Unlock()
			ids = append(ids, workflow.GetInfo(ctx).WorkflowExecution.ID)
			return aggregated(in.Day, 10), nil
		}).Times(30)
	var midRun []workflows.DailyBackfillProgress
	for _, at := range []time.Duration{30 * time.Minute, 90 * time.Minute} {
		env.RegisterDelayedCallback(func() {
			v, err := env.QueryWorkflow(workflows.QueryBackfillProgress)
			require.NoError(t, err)
			var p workflows.DailyBackfillProgress
			require.NoError(t, v.Get(&p))
			midRun = append(midRun, p)
		}, at)
	}

	env.ExecuteWorkflow(workflows.DailyBackfillWorkflowName,
		workflows.DailyBackfillInput{From: "2026-10-01", To: "2026-10-30", Concurrency: 4})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res workflows.DailyBackfillProgress
	require.NoError(t, env.GetWorkflowResult(&res))
	assert.Equal(t, workflows.DailyBackfillProgress{From: "2026-10-01", To: "2026-10-30", Total: 30, Done: 30, Requests: 300}, res)
	want := make([]string, 30)
	for i := range want {
		want[i] = workflows.DailyWorkflowID(time.Date(2026, 10, 1+i, 0, 0, 0, 0, time.UTC).Format(time.DateOnly))
	}
	slices.Sort(ids)
	assert.Equal(t, want, ids, "one child per day, named daily/<day>")
	require.Len(t, midRun, 2)
	assert.Equal(t, 4, midRun[0].Running, "bounded by the concurrency")
	assert.Equal(t, 0, midRun[0].Done)
	assert.Equal(t, 4, midRun[1].Running)
	assert.Equal(t, 4, midRun[1].Done)
	env.AssertExpectations(t)
}

// TestDailyBackfillFailedDay: a failing day does not stop the others, and
// the backfill fails naming it.
func TestDailyBackfillFailedDay(t *testing.T) {
	env := newDailyEnv(t, time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	env.OnWorkflow(workflows.DailyWorkflowName, mock.Anything, mock.Anything).Return(
		func(_ workflow.Context, in workflows.DailyInput) (workflows.DailyResult, error) {
			if in.Day == "2026-10-02" {
				return workflows.DailyResult{}, temporal.NewNonRetryableApplicationError("boom", "Test", nil)
			}
			return aggregated(in.Day, 1), nil
		})

	env.ExecuteWorkflow(workflows.DailyBackfillWorkflowName, workflows.DailyBackfillInput{From: "2026-10-01", To: "2026-10-03"})

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	assert.Equal(t, workflows.ErrTypeBackfillIncomplete, appErr.Type())
	var p workflows.DailyBackfillProgress
	require.NoError(t, appErr.Details(&p))
	assert.Equal(t, workflows.DailyBackfillProgress{From: "2026-10-01", To: "2026-10-03", Total: 3, Done: 2, Failed: 1,
		FailedDays: []string{"2026-10-02"}, Requests: 2}, p)
}

func TestBackfillDaysValidation(t *testing.T) {
	tests := []struct {
		from, to, err string
		n             int
	}{
		{"2026-10-01", "2026-10-01", "", 1},
		{"2025-11-22", "2026-11-22", "", 366},
		{"2025-11-21", "2026-11-22", "to must be at most 365 days after from", 0},
		{"2026-10-02", "2026-10-01", "to must not be before from", 0},
		{"10/01/2026", "2026-10-01", "from must be a date as YYYY-MM-DD", 0},
		{"2026-10-01", "", "to must be a date as YYYY-MM-DD", 0},
	}
	for _, tc := range tests {
		days, err := workflows.BackfillDays(tc.from, tc.to)
		if tc.err != "" {
			assert.EqualError(t, err, tc.err, "%s..%s", tc.from, tc.to)
			continue
		}
		require.NoError(t, err)
		assert.Len(t, days, tc.n)
	}
}
