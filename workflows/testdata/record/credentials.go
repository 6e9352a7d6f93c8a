package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/workflows"
)

// credential is the one credential of the recorded token-refresh story.
var credential credentialScript

// recordTokenRefresh records a token-refresh run: the credential loads two
// seconds before expiry with a one-second lead, the timer fires and a
// refresh rotates the token; a refresh-now signal refreshes again, after one
// transient failure retried under a shortened policy; then the credential is
// deleted and credential-changed makes the workflow re-read it and end.
func recordTokenRefresh(ctx context.Context, c client.Client) error {
	in := workflows.TokenRefreshInput{CredentialID: 7, Retry: workflows.RefreshRetryPolicy{
		InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Second, MaximumAttempts: 3, Jitter: 0.2}}
	return record(ctx, c, "token-refresh", workflows.TokenRefreshWorkflowName, in, func(id string) error {
		if err := awaitRefreshes(ctx, c, id, 1); err != nil {
			return err
		}
		if err := c.SignalWorkflow(ctx, id, "", workflows.SignalRefreshNow, nil); err != nil {
			return err
		}
		if err := awaitRefreshes(ctx, c, id, 2); err != nil {
			return err
		}
		credential.delete()
		return c.SignalWorkflow(ctx, id, "", workflows.SignalCredentialChanged, nil)
	})
}

// awaitRefreshes polls the status query until the workflow counts n
// refreshes.
func awaitRefreshes(ctx context.Context, c client.Client, id string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
		if err != nil {
			return err
		}
		var st workflows.TokenRefreshStatus
		if err := v.Get(&st); err != nil {
			return err
		}
		if st.Refreshes >= n {
			return nil
		}
	}
	return fmt.Errorf("no %d refreshes within 30s", n)
}

// credentialScript answers LoadCredential and RefreshCredential: the first
// load expires two seconds ahead, every refresh rotates the token for an
// hour, the first attempt of the second refresh fails transiently.
type credentialScript struct {
	mu      sync.Mutex
	loaded  bool
	deleted bool
	state   workflows.CredentialState
	calls   int // token endpoint calls
}

func (s *credentialScript) load(context.Context, workflows.LoadCredentialInput) (workflows.CredentialState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return workflows.CredentialState{}, nil
	}
	if !s.loaded {
		s.loaded = true
		exp := time.Now().UTC().Add(2 * time.Second)
		s.state = workflows.CredentialState{Found: true, Status: workflows.CredentialActive, ExpiresAt: &exp,
			RefreshLead: time.Second, TokenVersion: 1, HasAccessToken: true}
	}
	return s.state, nil
}

func (s *credentialScript) refresh(ctx context.Context, in workflows.RefreshCredentialInput) (workflows.RefreshResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return workflows.RefreshResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("credential %d is deleted", in.CredentialID), workflows.ErrTypeCredentialGone, nil)
	}
	s.calls++
	if s.calls == 2 {
		attempt := int(activity.GetInfo(ctx).Attempt)
		return workflows.RefreshResult{}, temporal.NewApplicationErrorWithOptions("token endpoint: 503 Service Unavailable",
			workflows.ErrTypeCredentialTransient, temporal.ApplicationErrorOptions{NextRetryDelay: in.Retry.Delay(attempt, 0.5),
				Category: temporal.ApplicationErrorCategoryBenign})
	}
	exp := time.Now().UTC().Add(time.Hour)
	s.state.ExpiresAt, s.state.TokenVersion = &exp, s.state.TokenVersion+1
	return workflows.RefreshResult{Outcome: workflows.RefreshRefreshed, Status: workflows.CredentialActive,
		TokenVersion: s.state.TokenVersion, ExpiresAt: &exp}, nil
}

func (s *credentialScript) delete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = true
}
