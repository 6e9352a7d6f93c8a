package workflows_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/opsflow/opsflow/workflows"
)

const credentialID = 7

var credStart = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// fakeCredential stands in for the credentials table and the token endpoint:
// its activities read and change one in-memory credential, and answer each
// refresh from script (a nil entry, or running past the end, refreshes).
type fakeCredential struct {
	env *testsuite.TestWorkflowEnvironment

	mu       sync.Mutex
	state    workflows.CredentialState
	lifetime time.Duration
	script   []error
	calls    []time.Time // when the token endpoint was called
	marked   []time.Time // MarkCredentialError calls
	// afterCalls deletes the credential once this many calls were made.
	afterCalls int
}

func newTokenRefreshEnv(t *testing.T, f *fakeCredential) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(credStart)
	f.env = env
	env.RegisterWorkflowWithOptions(workflows.TokenRefresh, workflow.RegisterOptions{Name: workflows.TokenRefreshWorkflowName})
	env.RegisterActivityWithOptions(f.load, activity.RegisterOptions{Name: workflows.ActivityLoadCredential})
	env.RegisterActivityWithOptions(f.refresh, activity.RegisterOptions{Name: workflows.ActivityRefreshCredential})
	env.RegisterActivityWithOptions(f.markError, activity.RegisterOptions{Name: workflows.ActivityMarkCredentialError})
	return env
}

func activeCredential(expiresAt time.Time, lead time.Duration) workflows.CredentialState {
	return workflows.CredentialState{Found: true, Status: workflows.CredentialActive, ExpiresAt: &expiresAt,
		RefreshLead: lead, TokenVersion: 1, HasAccessToken: true}
}

func (f *fakeCredential) load(context.Context, workflows.LoadCredentialInput) (workflows.CredentialState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state, nil
}

func (f *fakeCredential) refresh(_ context.Context, in workflows.RefreshCredentialInput) (workflows.RefreshResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.state.Found {
		return workflows.RefreshResult{}, temporal.NewNonRetryableApplicationError("gone", workflows.ErrTypeCredentialGone, nil)
	}
	if f.state.TokenVersion > in.SeenVersion {
		return workflows.RefreshResult{Outcome: workflows.RefreshFresh, Status: f.state.Status,
			TokenVersion: f.state.TokenVersion, ExpiresAt: f.state.ExpiresAt}, nil
	}
	now := f.env.Now().UTC()
	f.calls = append(f.calls, now)
	var err error
	if n := len(f.calls); n <= len(f.script) {
		err = f.script[n-1]
	}
	defer func() {
		if f.afterCalls > 0 && len(f.calls) >= f.afterCalls {
			f.state.Found = false
		}
	}()
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeCredentialRejected {
		f.state.Status = workflows.CredentialDisabled
	}
	if err != nil {
		return workflows.RefreshResult{}, err
	}
	exp := now.Add(f.lifetime)
	f.state.Status, f.state.ExpiresAt, f.state.HasAccessToken = workflows.CredentialActive, &exp, true
	f.state.TokenVersion++
	return workflows.RefreshResult{Outcome: workflows.RefreshRefreshed, Status: workflows.CredentialActive,
		TokenVersion: f.state.TokenVersion, ExpiresAt: &exp}, nil
}

func (f *fakeCredential) markError(context.Context, workflows.MarkCredentialErrorInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marked = append(f.marked, f.env.Now().UTC())
	f.state.Status = workflows.CredentialError
	return nil
}

func (f *fakeCredential) callTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls...)
}

func tokenRefreshInput() workflows.TokenRefreshInput {
	return workflows.TokenRefreshInput{CredentialID: credentialID, Retry: workflows.DefaultRefreshRetry}
}

func transient(msg string) error {
	return temporal.NewApplicationError(msg, workflows.ErrTypeCredentialTransient)
}

func queryTokenStatus(t *testing.T, env *testsuite.TestWorkflowEnvironment) workflows.TokenRefreshStatus {
	t.Helper()
	v, err := env.QueryWorkflow(workflows.QueryStatus)
	require.NoError(t, err)
	var st workflows.TokenRefreshStatus
	require.NoError(t, v.Get(&st))
	return st
}

func TestTokenRefreshRefreshesTheLeadBeforeEachExpiry(t *testing.T) {
	f := &fakeCredential{state: activeCredential(credStart.Add(time.Hour), 10*time.Minute), lifetime: time.Hour, afterCalls: 3}
	env := newTokenRefreshEnv(t, f)
	env.ExecuteWorkflow(workflows.TokenRefreshWorkflowName, tokenRefreshInput())

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []time.Time{
		credStart.Add(50 * time.Minute),
		credStart.Add(50*time.Minute + 50*time.Minute),
		credStart.Add(50*time.Minute + 100*time.Minute),
	}, f.callTimes())
}

func TestTokenRefreshOfShortLivedTokensWaitsHalfTheirLife(t *testing.T) {
	f := &fakeCredential{state: activeCredential(credStart.Add(time.Hour), 10*time.Minute), lifetime: 5 * time.Minute, afterCalls: 3}
	env := newTokenRefreshEnv(t, f)
	env.ExecuteWorkflow(workflows.TokenRefreshWorkflowName, tokenRefreshInput())

	require.NoError(t, env.GetWorkflowError())
	first := credStart.Add(50 * time.Minute)
	assert.Equal(t, []time.Time{first, first.Add(150 * time.Second), first.Add(300 * time.Second)}, f.callTimes(),
		"a 5-minute token under a 10-minute lead")
}

func TestTokenRefreshWithoutAccessTokenRefreshesAtOnce(t *testing.T) {
	f := &fakeCredential{state: workflows.CredentialState{Found: true, Status: workflows.CredentialActive,
		RefreshLead: 10 * time.Minute}, lifetime: time.Hour, afterCalls: 2}
	env := newTokenRefreshEnv(t, f)
	env.ExecuteWorkflow(workflows.TokenRefreshWorkflowName, tokenRefreshInput())

	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []time.Time{credStart, credStart.Add(50 * time.Minute)}, f.callTimes())
}

func TestTokenRefreshSignalRefreshesAtOnceAndReschedules(t *testing.T) {
	f := &fakeCredential{state: activeCredential(credStart.Add(24*time.Hour), 10*time.Minute), lifetime: time.Hour, afterCalls: 2}
	env := newTokenRefreshEnv(t, f)
	env.RegisterDelayedCallback(func() {
		// Two signals at once cost one refresh.
		env.SignalWorkflow(workflows.SignalRefreshNow, nil)
		env.SignalWorkflow(workflows.SignalRefreshNow, nil)
	}, 3*time.Minute)
	env.ExecuteWorkflow(workflows.TokenRefreshWorkflowName, tokenRefreshInput())

	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []time.Time{credStart.Add(3 * time.Minute), credStart.Add(53 * time.Minute)}, f.callTimes())
}

func TestTokenRefreshConcurrentUpdatesShareOneRefresh(t *testing.T) {
	f := &fakeCredential{state: activeCredential(credStart.Add(24*time.Hour), 10*time.Minute), lifetime: time.Hour}
	env := newTokenRefreshEnv(t, f)
	results := make([]workflows.RefreshResult, 2)
	errs := make([]error, 2)
	env.RegisterDelayedCallback(func() {
		for i := range results {
			env.UpdateWorkflow(workflows.UpdateRefresh, "", &testsuite.TestUpdateCallback{
				OnAccept: func() {},
				OnReject: func(err error) { errs[i] = err },
				OnComplete: func(v any, err error) {
					errs[i] = err
					if err == nil {
						results[i] = v.(workflows.RefreshResult)
					}
				},
			}, workflows.RefreshRequest{Actor: "test", SeenVersion: 1})
		}
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := queryTokenStatus(t, env)
		assert.Equal(t, 0, st.Waiting)
		assert.Equal(t, 1, st.Refreshes)
		f.mu.Lock()
		f.state.Found = false
		f.mu.Unlock()
		env.SignalWorkflow(workflows.SignalCredentialChanged, nil)
	}, 2*time.Minute)
	env.ExecuteWorkflow(workflows.TokenRefreshWorkflowName, tokenRefreshInput())

	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []time.Time{credStart.Add(time.Minute)}, f.callTimes(), "one call to the token endpoint")
	for i := range results {
		require.NoError(t, errs[i])
		assert.Equal(t, workflows.RefreshRefreshed, results[i].Outcome)
		assert.Equal(t, int64(2), results[i].TokenVersion)
	}
}

func TestTokenRefreshExhaustedRetriesMarkErrorAndTryAgainLater(t *testing.T) {
	retry := workflows.RefreshRetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
		MaximumInterval: 4 * time.Second, MaximumAttempts: 3}
	f := &fakeCredential{state: activeCredential(credStart.Add(time.Hour), 10*time.Minute), lifetime: time.Hour, afterCalls: 4,
		script: []error{transient("500"), transient("502"), transient("503")}}
	env := newTokenRefreshEnv(t, f)
	in := tokenRefreshInput()
	in.Retry = retry
	env.RegisterDelayedCallback(func() {
		st := queryTokenStatus(t, env)
		assert.Equal(t, workflows.CredentialError, st.State)
		assert.Equal(t, workflows.RefreshFailed, st.LastOutcome)
		assert.Contains(t, st.LastError, "503")
		require.NotNil(t, st.NextRefreshAt)
		assert.Equal(t, f.marked[0].Add(workflows.ErrorRetryDelay(1, 10*time.Minute)), *st.NextRefreshAt)
	}, 50*time.Minute+30*time.Second)
	env.ExecuteWorkflow(workflows.TokenRefreshWorkflowName, in)

	require.NoError(t, env.GetWorkflowError())
	calls := f.callTimes()
	require.Len(t, calls, 4)
	require.Len(t, f.marked, 1, "status error once the retries ran out")
	assert.Equal(t, credStart.Add(50*time.Minute), calls[0])
	assert.Equal(t, f.marked[0].Add(time.Minute), calls[3], "tried again after the error delay")
}

func TestTokenRefreshRejectionDisablesUntilTheCredentialChanges(t *testing.T) {
	f := &fakeCredential{state: activeCredential(credStart.Add(time.Hour), 10*time.Minute), lifetime: time.Hour, afterCalls: 2,
		script: []error{temporal.NewNonRetryableApplicationError("invalid_grant", workflows.ErrTypeCredentialRejected, nil)}}
	env := newTokenRefreshEnv(t, f)
	env.RegisterDelayedCallback(func() {
		st := queryTokenStatus(t, env)
		assert.Equal(t, workflows.CredentialDisabled, st.State)
		assert.Nil(t, st.NextRefreshAt, "a disabled credential is not refreshed")
		// An operator stores a new refresh token.
		f.mu.Lock()
		f.state.Status = workflows.CredentialActive
		f.state.TokenVersion++
		f.mu.Unlock()
		env.SignalWorkflow(workflows.SignalCredentialChanged, nil)
	}, 10*time.Hour)
	env.ExecuteWorkflow(workflows.TokenRefreshWorkflowName, tokenRefreshInput())

	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []time.Time{credStart.Add(50 * time.Minute), credStart.Add(10 * time.Hour)}, f.callTimes(),
		"once refused, no attempt until the edit; then at once (its expiry has passed)")
}

func TestTokenRefreshContinuesAsNewWithItsCounts(t *testing.T) {
	f := &fakeCredential{state: activeCredential(credStart.Add(11*time.Minute), 10*time.Minute), lifetime: 11 * time.Minute}
	env := newTokenRefreshEnv(t, f)
	env.ExecuteWorkflow(workflows.TokenRefreshWorkflowName, tokenRefreshInput())

	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next workflows.TokenRefreshInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	assert.Equal(t, credentialID, int(next.CredentialID))
	assert.Equal(t, 100, next.Refreshes)
	assert.Len(t, f.callTimes(), 100)
}

func TestRefreshRetryDelayIsJitteredAndCapped(t *testing.T) {
	p := workflows.DefaultRefreshRetry
	for _, tc := range []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{1, 0, 2 * time.Second},
		{2, 0, 4 * time.Second},
		{2, 0.5, 3600 * time.Millisecond},
		{10, 0, time.Minute},
		{10, 0.999999, 48*time.Second + 60*time.Microsecond},
	} {
		assert.InDelta(t, float64(tc.want), float64(p.Delay(tc.attempt, tc.r)), float64(time.Millisecond), "attempt %d r %v", tc.attempt, tc.r)
	}
}

func TestErrorRetryDelayDoublesUpToItsCeiling(t *testing.T) {
	for _, tc := range []struct {
		rounds int
		lead   time.Duration
		want   time.Duration
	}{
		{1, 10 * time.Minute, time.Minute},
		{3, 10 * time.Minute, 4 * time.Minute},
		{4, 10 * time.Minute, 5 * time.Minute},
		{6, time.Hour, 30 * time.Minute},
		{60, time.Hour, 30 * time.Minute},
	} {
		assert.Equal(t, tc.want, workflows.ErrorRetryDelay(tc.rounds, tc.lead), "rounds %d", tc.rounds)
	}
}
