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
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/workflows"
)

const notificationID = "0193a5b2-7c00-7000-8000-000000000001"

// newNotifyEnv registers Notify and stand-ins for its activities under their
// contract names, for the tests to mock.
func newNotifyEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(start)
	env.RegisterWorkflowWithOptions(workflows.Notify, workflow.RegisterOptions{Name: workflows.NotifyWorkflowName})
	env.RegisterActivityWithOptions(
		func(context.Context, workflows.SendNotificationInput) (workflows.SendNotificationResult, error) {
			return workflows.SendNotificationResult{}, errors.New("not mocked")
		}, activity.RegisterOptions{Name: workflows.ActivitySendNotification})
	env.RegisterActivityWithOptions(
		func(context.Context, workflows.MarkNotificationDeadInput) error { return errors.New("not mocked") },
		activity.RegisterOptions{Name: workflows.ActivityMarkNotificationDead})
	env.RegisterActivityWithOptions(
		func(context.Context, workflows.ReopenNotificationInput) error { return errors.New("not mocked") },
		activity.RegisterOptions{Name: workflows.ActivityReopenNotification})
	return env
}

func notifyInput() workflows.NotifyInput {
	return workflows.NotifyInput{NotificationID: notificationID, ChannelType: "webhook", Retry: workflows.DefaultNotifyRetryPolicy}
}

func sendInput(attempt int, delay time.Duration) workflows.SendNotificationInput {
	return workflows.SendNotificationInput{NotificationID: notificationID, Attempt: attempt, RetryDelay: delay}
}

// onSend scripts one SendNotification answer for the input (a
// SendNotificationInput or mock.Anything); chain Once or Times.
func onSend(env *testsuite.TestWorkflowEnvironment, in any, err error) *testsuite.MockCallWrapper {
	return env.OnActivity(workflows.ActivitySendNotification, mock.Anything, in).Return(workflows.SendNotificationResult{}, err)
}

func deliveryFailed(msg string) error {
	return temporal.NewApplicationError(msg, workflows.ErrTypeDeliveryFailed)
}

func queryStatus(t *testing.T, env *testsuite.TestWorkflowEnvironment) workflows.NotifyStatus {
	t.Helper()
	v, err := env.QueryWorkflow(workflows.QueryStatus)
	require.NoError(t, err)
	var st workflows.NotifyStatus
	require.NoError(t, v.Get(&st))
	return st
}

func result(t *testing.T, env *testsuite.TestWorkflowEnvironment) workflows.NotifyResult {
	t.Helper()
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res workflows.NotifyResult
	require.NoError(t, env.GetWorkflowResult(&res))
	return res
}

func TestNotifyDeliversOnTheFirstAttempt(t *testing.T) {
	env := newNotifyEnv(t)
	for _, state := range []string{workflows.NotificationPending, workflows.NotificationSent} {
		env.OnUpsertTypedSearchAttributes(temporal.NewSearchAttributes(
			workflows.SearchAttrJob.ValueSet(workflows.NotifyWorkflowName),
			workflows.SearchAttrNotificationStatus.ValueSet(state),
			workflows.SearchAttrChannelType.ValueSet("webhook"))).Return(nil).Once()
	}
	onSend(env, sendInput(1, time.Minute), nil).Once()

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, notifyInput())

	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 1}, result(t, env))
	env.AssertExpectations(t)
	env.AssertActivityNotCalled(t, workflows.ActivityMarkNotificationDead, mock.Anything, mock.Anything)
}

// TestNotifyBacksOffThenDelivers: four failures, then the target accepts;
// each wait follows the policy, and the status query tells the attempt, the
// error and when the next attempt comes.
func TestNotifyBacksOffThenDelivers(t *testing.T) {
	env := newNotifyEnv(t)
	var attemptTimes []time.Time
	record := func(err error) func(context.Context, workflows.SendNotificationInput) (workflows.SendNotificationResult, error) {
		return func(context.Context, workflows.SendNotificationInput) (workflows.SendNotificationResult, error) {
			attemptTimes = append(attemptTimes, env.Now())
			return workflows.SendNotificationResult{}, err
		}
	}
	delays := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 0}
	for i, d := range delays[:4] {
		env.OnActivity(workflows.ActivitySendNotification, mock.Anything, sendInput(i+1, d)).
			Return(record(deliveryFailed("target answered 500 Internal Server Error"))).Once()
	}
	env.OnActivity(workflows.ActivitySendNotification, mock.Anything, sendInput(5, 0)).Return(record(nil)).Once()
	var during workflows.NotifyStatus
	// 90 s in: attempt 2 failed at 1 min, attempt 3 is due at 3 min.
	env.RegisterDelayedCallback(func() { during = queryStatus(t, env) }, 90*time.Second)

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, notifyInput())

	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 5}, result(t, env))
	require.Len(t, attemptTimes, 5)
	for i := 1; i < 5; i++ {
		assert.Equal(t, delays[i-1], attemptTimes[i].Sub(attemptTimes[i-1]), "wait before attempt %d", i+1)
	}
	assert.Equal(t, workflows.NotificationPending, during.State)
	assert.Equal(t, 2, during.Attempts)
	assert.Equal(t, 5, during.MaxAttempts)
	assert.Equal(t, "target answered 500 Internal Server Error", during.LastError)
	require.NotNil(t, during.NextRetryAt)
	assert.Equal(t, attemptTimes[1].Add(2*time.Minute).UTC(), *during.NextRetryAt)
	final := queryStatus(t, env)
	assert.Equal(t, workflows.NotificationSent, final.State)
	assert.Empty(t, final.LastError)
	env.AssertActivityNotCalled(t, workflows.ActivityMarkNotificationDead, mock.Anything, mock.Anything)
}

func TestNotifyHonoursRetryAfter(t *testing.T) {
	env := newNotifyEnv(t)
	var secondAt time.Time
	onSend(env, sendInput(1, time.Minute), temporal.NewApplicationErrorWithOptions("target answered 429 Too Many Requests",
		workflows.ErrTypeDeliveryFailed, temporal.ApplicationErrorOptions{NextRetryDelay: 17 * time.Second})).Once()
	env.OnActivity(workflows.ActivitySendNotification, mock.Anything, sendInput(2, 2*time.Minute)).
		Return(func(context.Context, workflows.SendNotificationInput) (workflows.SendNotificationResult, error) {
			secondAt = env.Now().UTC()
			return workflows.SendNotificationResult{}, nil
		}).Once()
	var during workflows.NotifyStatus
	env.RegisterDelayedCallback(func() { during = queryStatus(t, env) }, 5*time.Second)

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, notifyInput())

	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 2}, result(t, env))
	require.NotNil(t, during.NextRetryAt)
	assert.Equal(t, start.Add(17*time.Second), *during.NextRetryAt)
	assert.Equal(t, start.Add(17*time.Second), secondAt)
}

// TestNotifyDeadThenRequeuedByAnEmptySignal: the budget runs out, the
// notification is marked dead and waits; a requeue signal without payload
// (the Temporal UI's dialog) opens a fresh budget, and it is delivered.
func TestNotifyDeadThenRequeuedByAnEmptySignal(t *testing.T) {
	env := newNotifyEnv(t)
	in := notifyInput()
	in.Retry.MaximumAttempts = 3
	onSend(env, mock.Anything, deliveryFailed("target answered 503 Service Unavailable")).Times(3)
	env.OnActivity(workflows.ActivityMarkNotificationDead, mock.Anything, workflows.MarkNotificationDeadInput{
		NotificationID: notificationID, ChannelType: "webhook", LastError: "target answered 503 Service Unavailable",
	}).Return(nil).Once()
	env.OnActivity(workflows.ActivityReopenNotification, mock.Anything, workflows.ReopenNotificationInput{
		NotificationID: notificationID, Actor: "temporal-ui",
	}).Return(nil).Once()
	onSend(env, sendInput(1, time.Minute), nil).Once()
	var dead workflows.NotifyStatus
	env.RegisterDelayedCallback(func() {
		dead = queryStatus(t, env)
		env.SignalWorkflow(workflows.SignalRequeue, nil)
	}, time.Hour)

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, in)

	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 4, Requeues: 1}, result(t, env))
	assert.Equal(t, workflows.NotifyStatus{State: workflows.NotificationDead, Attempts: 3, MaxAttempts: 3, TotalAttempts: 3,
		LastError: "target answered 503 Service Unavailable"}, dead)
	env.AssertExpectations(t)
}

func TestNotifyRequeueNamesWhoAsked(t *testing.T) {
	env := newNotifyEnv(t)
	onSend(env, sendInput(1, time.Minute), temporal.NewNonRetryableApplicationError("target answered 404 Not Found",
		workflows.ErrTypeDeliveryRejected, nil)).Once()
	env.OnActivity(workflows.ActivityMarkNotificationDead, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(workflows.ActivityReopenNotification, mock.Anything, workflows.ReopenNotificationInput{
		NotificationID: notificationID, Actor: "key:3 (ops)", Reason: "endpoint fixed",
	}).Return(nil).Once()
	onSend(env, sendInput(1, time.Minute), nil).Once()
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalRequeue, workflows.RequeueSignal{Actor: "key:3 (ops)", Reason: "endpoint fixed"})
	}, time.Hour)

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, notifyInput())

	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 2, Requeues: 1}, result(t, env))
	env.AssertExpectations(t)
}

// TestNotifyDropsRequeuesSentWhileNotDead: a requeue signalled during the
// backoff asks to retry something that is not dead; it must not requeue the
// notification once it does go dead.
func TestNotifyDropsRequeuesSentWhileNotDead(t *testing.T) {
	env := newNotifyEnv(t)
	in := notifyInput()
	in.Retry.MaximumAttempts = 2
	onSend(env, mock.Anything, deliveryFailed("boom")).Times(2)
	env.OnActivity(workflows.ActivityMarkNotificationDead, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(workflows.ActivityReopenNotification, mock.Anything, mock.Anything).Return(nil).Once()
	onSend(env, mock.Anything, nil).Once()
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalRequeue, nil) }, 30*time.Second)
	var stillDead workflows.NotifyStatus
	env.RegisterDelayedCallback(func() {
		stillDead = queryStatus(t, env)
		env.SignalWorkflow(workflows.SignalRequeue, workflows.RequeueSignal{Actor: "cli:ops@host"})
	}, time.Hour)

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, in)

	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 3, Requeues: 1}, result(t, env))
	assert.Equal(t, workflows.NotificationDead, stillDead.State, "the early requeue was dropped")
	env.AssertExpectations(t)
}

func TestNotifyRejectionIsDeadAtOnce(t *testing.T) {
	env := newNotifyEnv(t)
	onSend(env, sendInput(1, time.Minute), temporal.NewNonRetryableApplicationError("target answered 401 Unauthorized",
		workflows.ErrTypeDeliveryRejected, nil)).Once()
	env.OnActivity(workflows.ActivityMarkNotificationDead, mock.Anything, workflows.MarkNotificationDeadInput{
		NotificationID: notificationID, ChannelType: "webhook", LastError: "target answered 401 Unauthorized",
	}).Return(nil).Once()
	var dead workflows.NotifyStatus
	env.RegisterDelayedCallback(func() {
		dead = queryStatus(t, env)
		env.CancelWorkflow()
	}, time.Hour)

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, notifyInput())

	assert.Equal(t, workflows.NotificationDead, dead.State)
	assert.Equal(t, 1, dead.Attempts)
	env.AssertExpectations(t)
}

// TestNotifyInfrastructureFailureCountsAsAnAttempt: opsflow's own trouble
// is retried by Temporal within the attempt; if it persists, the attempt
// failed and the policy's backoff applies.
func TestNotifyInfrastructureFailureCountsAsAnAttempt(t *testing.T) {
	env := newNotifyEnv(t)
	onSend(env, sendInput(1, time.Minute), temporal.NewApplicationError("start attempt: the database is unavailable", "Unavailable")).Times(3)
	onSend(env, sendInput(2, 2*time.Minute), nil).Once()

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, notifyInput())

	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 2}, result(t, env))
	env.AssertExpectations(t)
}

// TestNotifyActsOnARequeueThatStartedIt: a requeue of a notification whose
// workflow is gone starts a new run (signal-with-start); the row is dead,
// so the run waits for, and finds, that requeue.
func TestNotifyActsOnARequeueThatStartedIt(t *testing.T) {
	env := newNotifyEnv(t)
	onSend(env, sendInput(1, time.Minute), temporal.NewNonRetryableApplicationError("notification is dead",
		workflows.ErrTypeNotificationDead, nil)).Once()
	env.OnActivity(workflows.ActivityReopenNotification, mock.Anything, mock.Anything).Return(nil).Once()
	onSend(env, sendInput(1, time.Minute), nil).Once()
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalRequeue, workflows.RequeueSignal{Actor: "key:1"}) }, 0)

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, notifyInput())

	assert.Equal(t, workflows.NotifyResult{TotalAttempts: 1, Requeues: 1}, result(t, env))
	env.AssertExpectations(t)
	env.AssertActivityNotCalled(t, workflows.ActivityMarkNotificationDead, mock.Anything, mock.Anything)
}

// TestNotifyContinuesAsNewAfterTenRequeues keeps one run's history bounded.
func TestNotifyContinuesAsNewAfterTenRequeues(t *testing.T) {
	env := newNotifyEnv(t)
	onSend(env, mock.Anything, temporal.NewNonRetryableApplicationError("target answered 400 Bad Request",
		workflows.ErrTypeDeliveryRejected, nil))
	env.OnActivity(workflows.ActivityMarkNotificationDead, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(workflows.ActivityReopenNotification, mock.Anything, mock.Anything).Return(nil)
	for i := 1; i <= 10; i++ {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalRequeue, workflows.RequeueSignal{Actor: "key:1"}) },
			time.Duration(i)*time.Hour)
	}

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, notifyInput())

	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next workflows.NotifyInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	want := notifyInput()
	want.TotalAttempts, want.Requeues, want.Requeue = 10, 10, &workflows.RequeueSignal{Actor: "key:1"}
	assert.Equal(t, want, next)
	env.AssertNumberOfCalls(t, workflows.ActivityReopenNotification, 9)
}

func TestNotifyRefusesABadPolicy(t *testing.T) {
	env := newNotifyEnv(t)
	in := notifyInput()
	in.Retry.MaximumAttempts = 0

	env.ExecuteWorkflow(workflows.NotifyWorkflowName, in)

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	assert.Equal(t, workflows.ErrTypeInvalidInput, appErr.Type())
	assert.Contains(t, appErr.Error(), "maximum_attempts")
}

func TestBackoffFollowsThePolicy(t *testing.T) {
	p := workflows.DefaultNotifyRetryPolicy
	var got []time.Duration
	for attempt := 1; attempt <= 9; attempt++ {
		got = append(got, p.Backoff(attempt))
	}
	assert.Equal(t, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute,
		32 * time.Minute, time.Hour, time.Hour, time.Hour}, got)
	assert.Equal(t, time.Hour, p.Backoff(workflows.MaxNotifyAttempts), "no overflow at the largest budget")
}
