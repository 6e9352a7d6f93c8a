package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/workflows"
)

var start = time.Date(2026, 11, 22, 10, 1, 17, 0, time.UTC)

// newCollectEnv registers Collect and stand-ins for its activities under
// their contract names; the tests mock those names, as the workflow calls
// activities by name and must not depend on package activities.
func newCollectEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(start)
	env.RegisterWorkflowWithOptions(workflows.Collect, workflow.RegisterOptions{Name: workflows.CollectWorkflowName})
	env.RegisterActivityWithOptions(
		func(context.Context, workflows.CollectRollupsInput) (workflows.CollectRollupsResult, error) {
			return workflows.CollectRollupsResult{}, errors.New("not mocked")
		},
		activity.RegisterOptions{Name: workflows.ActivityCollectRollups})
	env.RegisterActivityWithOptions(
		func(context.Context, workflows.RecordProcessMetricsInput) error { return errors.New("not mocked") },
		activity.RegisterOptions{Name: workflows.ActivityRecordProcessMetrics})
	return env
}

func runCollect(t *testing.T, env *testsuite.TestWorkflowEnvironment, in workflows.CollectInput) (workflows.CollectResult, error) {
	t.Helper()
	env.ExecuteWorkflow(workflows.CollectWorkflowName, in)
	require.True(t, env.IsWorkflowCompleted())
	if err := env.GetWorkflowError(); err != nil {
		return workflows.CollectResult{}, err
	}
	var res workflows.CollectResult
	require.NoError(t, env.GetWorkflowResult(&res))
	return res, nil
}

func pendingInput() workflows.CollectRollupsInput {
	return workflows.CollectRollupsInput{MaxBatches: 100}
}

func TestCollectHappyPath(t *testing.T) {
	env := newCollectEnv(t)
	env.OnUpsertTypedSearchAttributes(
		temporal.NewSearchAttributes(workflows.SearchAttrJob.ValueSet("collect"))).Return(nil).Once()
	env.OnActivity(workflows.ActivityRecordProcessMetrics, mock.Anything,
		workflows.RecordProcessMetricsInput{Minute: start.Truncate(time.Minute)}).Return(nil).Once()
	env.OnActivity(workflows.ActivityCollectRollups, mock.Anything, pendingInput()).
		Return(workflows.CollectRollupsResult{Batches: 3, Minutes: 2, Events: 40, Rows: 5}, nil).Once()

	res, err := runCollect(t, env, workflows.CollectInput{})

	require.NoError(t, err)
	assert.Equal(t, workflows.CollectResult{Batches: 3, Minutes: 2, Events: 40, Rows: 5}, res)
	env.AssertExpectations(t)
}

func TestCollectLoopsOverBacklogBounded(t *testing.T) {
	more := workflows.CollectRollupsResult{Batches: 100, Minutes: 1, Events: 1000, Rows: 2, More: true}
	last := workflows.CollectRollupsResult{Batches: 7, Minutes: 1, Events: 70, Rows: 2}
	tests := []struct {
		name    string
		results []workflows.CollectRollupsResult
		want    workflows.CollectResult
	}{
		{
			name:    "drains in three calls",
			results: []workflows.CollectRollupsResult{more, more, last},
			want:    workflows.CollectResult{Batches: 207, Minutes: 3, Events: 2070, Rows: 6},
		},
		{
			name:    "stops after ten calls with backlog left",
			results: repeat(more, 11),
			want:    workflows.CollectResult{Batches: 1000, Minutes: 10, Events: 10000, Rows: 20, Backlog: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newCollectEnv(t)
			env.OnActivity(workflows.ActivityRecordProcessMetrics, mock.Anything, mock.Anything).Return(nil)
			for _, r := range tt.results {
				env.OnActivity(workflows.ActivityCollectRollups, mock.Anything, pendingInput()).Return(r, nil).Once()
			}

			res, err := runCollect(t, env, workflows.CollectInput{})

			require.NoError(t, err)
			assert.Equal(t, tt.want, res)
			env.AssertNumberOfCalls(t, workflows.ActivityCollectRollups, min(len(tt.results), 10))
		})
	}
}

func repeat(r workflows.CollectRollupsResult, n int) []workflows.CollectRollupsResult {
	out := make([]workflows.CollectRollupsResult, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func TestCollectWindowPassesThrough(t *testing.T) {
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := day.Add(d); return &v }
	tests := []struct {
		name     string
		from, to *time.Time
		calls    [][2]*time.Time
	}{
		{
			name: "window under a day is one call",
			from: at(10 * time.Hour), to: at(11 * time.Hour),
			calls: [][2]*time.Time{{at(10 * time.Hour), at(11 * time.Hour)}},
		},
		{
			name: "unaligned from starts on its minute",
			from: at(10*time.Hour + 30*time.Second), to: at(10*time.Hour + 5*time.Minute),
			calls: [][2]*time.Time{{at(10 * time.Hour), at(10*time.Hour + 5*time.Minute)}},
		},
		{
			name: "long window is sliced by day",
			from: at(0), to: at(60 * time.Hour),
			calls: [][2]*time.Time{
				{at(0), at(24 * time.Hour)},
				{at(24 * time.Hour), at(48 * time.Hour)},
				{at(48 * time.Hour), at(60 * time.Hour)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newCollectEnv(t)
			for _, c := range tt.calls {
				env.OnActivity(workflows.ActivityCollectRollups, mock.Anything,
					workflows.CollectRollupsInput{From: c[0], To: c[1]}).
					Return(workflows.CollectRollupsResult{Minutes: 60, Events: 9, Rows: 4}, nil).Once()
			}

			res, err := runCollect(t, env, workflows.CollectInput{From: tt.from, To: tt.to})

			require.NoError(t, err)
			n := len(tt.calls)
			assert.Equal(t, workflows.CollectResult{Minutes: 60 * n, Events: 9 * int64(n), Rows: 4 * n}, res)
			env.AssertExpectations(t)
			env.AssertActivityNotCalled(t, workflows.ActivityRecordProcessMetrics, mock.Anything, mock.Anything)
		})
	}
}

func TestCollectRejectsInvalidWindow(t *testing.T) {
	from := start
	before := start.Add(-time.Hour)
	tests := []struct {
		name string
		in   workflows.CollectInput
	}{
		{"from without to", workflows.CollectInput{From: &from}},
		{"to without from", workflows.CollectInput{To: &from}},
		{"empty window", workflows.CollectInput{From: &from, To: &from}},
		{"reversed window", workflows.CollectInput{From: &from, To: &before}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newCollectEnv(t)

			_, err := runCollect(t, env, tt.in)

			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			assert.Equal(t, workflows.ErrTypeInvalidWindow, appErr.Type())
			env.AssertActivityNotCalled(t, workflows.ActivityCollectRollups, mock.Anything, mock.Anything)
		})
	}
}

func TestCollectSurvivesProcessMetricsFailure(t *testing.T) {
	env := newCollectEnv(t)
	env.OnActivity(workflows.ActivityRecordProcessMetrics, mock.Anything, mock.Anything).
		Return(errors.New("database unavailable"))
	env.OnActivity(workflows.ActivityCollectRollups, mock.Anything, pendingInput()).
		Return(workflows.CollectRollupsResult{Batches: 1, Minutes: 1, Events: 5, Rows: 1}, nil).Once()

	res, err := runCollect(t, env, workflows.CollectInput{})

	require.NoError(t, err)
	assert.Equal(t, workflows.CollectResult{Batches: 1, Minutes: 1, Events: 5, Rows: 1}, res)
	env.AssertNumberOfCalls(t, workflows.ActivityRecordProcessMetrics, 3)
}

func TestCollectFailsWhenCollectionFails(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		calls int
	}{
		{"non-retryable error fails at once", temporal.NewNonRetryableApplicationError("bad input", "InvalidInput", nil), 1},
		{"retryable error fails after five attempts", errors.New("database unavailable"), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newCollectEnv(t)
			env.OnActivity(workflows.ActivityRecordProcessMetrics, mock.Anything, mock.Anything).Return(nil)
			env.OnActivity(workflows.ActivityCollectRollups, mock.Anything, pendingInput()).
				Return(workflows.CollectRollupsResult{}, tt.err)

			_, err := runCollect(t, env, workflows.CollectInput{})

			var actErr *temporal.ActivityError
			require.ErrorAs(t, err, &actErr)
			env.AssertNumberOfCalls(t, workflows.ActivityCollectRollups, tt.calls)
		})
	}
}
