package worker_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRecordedHistoriesReplay replays histories recorded from earlier
// versions of the workflows (see workflows/testdata/record) against today's
// code, registered exactly as the worker registers it. A failure means a
// change would break workflows already running: guard it with
// workflow.GetVersion instead of re-recording.
func TestRecordedHistoriesReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "workflows", "testdata", "*.history.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			replayer := sdkworker.NewWorkflowReplayer()
			worker.RegisterWorkflows(replayer)
			assert.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(slog.New(slog.DiscardHandler), file))
		})
	}
}

// TestApplySchedulesReconciles: the first apply creates every declared
// schedule, a second changes nothing but reports updates, and drift made by
// hand (another interval, another overlap policy) is put back while the
// operator's pause and note survive.
func TestApplySchedulesReconciles(t *testing.T) {
	ctx := context.Background()
	tc := testenv.TemporalClient(t)
	taskQueue := "schedules-" + uuid.NewString()
	defs := worker.Schedules(taskQueue)
	require.NotEmpty(t, defs)
	t.Cleanup(func() {
		for _, def := range defs {
			_ = tc.ScheduleClient().GetHandle(ctx, def.ID).Delete(ctx)
		}
	})

	first, err := worker.ApplySchedules(ctx, tc, taskQueue)
	require.NoError(t, err)
	require.Len(t, first, len(defs))
	for _, r := range first {
		assert.Equal(t, "created", r.Action, r.ID)
	}

	def := defs[0]
	handle := tc.ScheduleClient().GetHandle(ctx, def.ID)
	require.NoError(t, handle.Pause(ctx, client.SchedulePauseOptions{Note: "maintenance"}))
	require.NoError(t, handle.Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec = &client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: 7 * time.Hour}}}
			s.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	}))

	second, err := worker.ApplySchedules(ctx, tc, taskQueue)
	require.NoError(t, err)
	require.Len(t, second, len(defs))
	for _, r := range second {
		assert.Equal(t, "updated", r.Action, r.ID)
	}

	desc, err := handle.Describe(ctx)
	require.NoError(t, err)
	s := desc.Schedule
	require.Len(t, s.Spec.Intervals, len(def.Spec.Intervals))
	assert.Equal(t, def.Spec.Intervals, s.Spec.Intervals, "the declared spec is back")
	assert.Equal(t, def.Overlap, s.Policy.Overlap, "the declared overlap policy is back")
	assert.True(t, s.State.Paused, "the operator's pause survives")
	assert.Equal(t, "maintenance", s.State.Note)

	listed := map[string]bool{}
	iter, err := tc.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	require.NoError(t, err)
	for iter.HasNext() {
		entry, err := iter.Next()
		require.NoError(t, err)
		assert.False(t, listed[entry.ID], "schedule %s listed twice", entry.ID)
		listed[entry.ID] = true
	}
	for _, def := range defs {
		assert.True(t, listed[def.ID], "schedule %s exists", def.ID)
	}
}
