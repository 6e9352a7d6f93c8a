package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// cyclesPerRun bounds one run's history: after this many refresh cycles
// (each a few events: timer, activity, maybe a bookkeeping call), or
// earlier when Temporal suggests it, the workflow continues as new.
const cyclesPerRun = 100

// TokenRefresh keeps one credential's access token fresh (SPEC §8). It
// sleeps until the token's expiry minus the credential's lead, or until a
// refresh-now signal or a refresh update, whichever comes first, and then
// runs one RefreshCredential (retried with a jittered backoff). A refusal of
// the grant disables the credential and the workflow waits for an edit
// (credential-changed); retries running out mark it error and it is tried
// again later. It ends when the credential is deleted. Every refresh is an
// activity in the history, so the Temporal UI shows the credential's
// refresh history.
func TokenRefresh(ctx workflow.Context, in TokenRefreshInput) error {
	if in.CredentialID <= 0 {
		return temporal.NewNonRetryableApplicationError("credential_id is required", ErrTypeInvalidInput, nil)
	}
	if in.Retry == (RefreshRetryPolicy{}) {
		in.Retry = DefaultRefreshRetry
	}
	r := &refresher{in: in, kick: workflow.NewBufferedChannel(ctx, 1),
		status: TokenRefreshStatus{Refreshes: in.Refreshes}}
	if err := r.setHandlers(ctx); err != nil {
		return err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrJob.ValueSet(TokenRefreshWorkflowName)); err != nil {
		return fmt.Errorf("upsert search attributes: %w", err)
	}
	if err := r.load(ctx); err != nil {
		return err
	}
	refreshNow := workflow.GetSignalChannel(ctx, SignalRefreshNow)
	changed := workflow.GetSignalChannel(ctx, SignalCredentialChanged)
	pendingNow := in.RefreshNow
	for cycles := 0; ; {
		if !r.state.Found {
			// The validator refuses new updates from here on, so the wait
			// for the running handlers ends.
			r.gone = true
			r.answerWaiters(RefreshResult{}, errCredentialGone())
			workflow.SetCurrentDetails(ctx, "credential deleted; workflow ended")
			return workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
		}
		if len(r.waiters) == 0 && (cycles >= cyclesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()) {
			// A pending credential-changed needs nothing: the next run
			// reads the credential first.
			drain(changed)
			// Answered handlers return first; an update arriving meanwhile
			// is served by this run before it continues as new.
			err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) || len(r.waiters) > 0 })
			if err != nil {
				return err
			}
			if len(r.waiters) == 0 {
				return r.continueAsNew(ctx, pendingNow || drain(refreshNow) > 0)
			}
		}
		trigger := pendingNow || len(r.waiters) > 0
		if !trigger {
			var reload bool
			trigger, reload = r.wait(ctx, refreshNow, changed)
			if reload {
				if err := r.load(ctx); err != nil {
					return err
				}
				continue
			}
		}
		if !trigger {
			continue
		}
		pendingNow = false
		cycles++
		if err := r.refresh(ctx); err != nil {
			return err
		}
		// Refresh-now signals that arrived before or during this refresh are
		// served by it: concurrent triggers cost one call.
		drain(refreshNow)
	}
}

type refresher struct {
	in     TokenRefreshInput
	state  CredentialState
	status TokenRefreshStatus
	// retryAt is when a credential in status error is tried again.
	retryAt *time.Time
	// refreshedAt is when this run last refreshed: a token living shorter
	// than the lead is refreshed at half its life, not over and over.
	refreshedAt *time.Time
	waiters     []*refreshWaiter
	// kick wakes the main loop when an update arrives.
	kick workflow.Channel
	// gone: the credential was deleted and the workflow is ending.
	gone bool
}

func errCredentialGone() error {
	return temporal.NewNonRetryableApplicationError("the credential was deleted", ErrTypeCredentialGone, nil)
}

// refreshWaiter is one refresh update waiting for its answer.
type refreshWaiter struct {
	seen int64
	done bool
	res  RefreshResult
	err  error
}

func (r *refresher) setHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (TokenRefreshStatus, error) {
		st := r.status
		st.Waiting = len(r.waiters)
		return st, nil
	}); err != nil {
		return fmt.Errorf("set status query: %w", err)
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRefresh,
		func(ctx workflow.Context, req RefreshRequest) (RefreshResult, error) {
			w := &refreshWaiter{seen: req.SeenVersion}
			r.waiters = append(r.waiters, w)
			r.kick.SendAsync(true)
			if err := workflow.Await(ctx, func() bool { return w.done }); err != nil {
				return RefreshResult{}, err
			}
			return w.res, w.err
		},
		workflow.UpdateHandlerOptions{Validator: func(req RefreshRequest) error {
			if r.gone {
				return errCredentialGone()
			}
			if req.SeenVersion < 0 {
				return errors.New("seen_version must not be negative")
			}
			return nil
		}})
	if err != nil {
		return fmt.Errorf("set refresh update: %w", err)
	}
	return nil
}

// load re-reads the credential.
func (r *refresher) load(ctx workflow.Context) error {
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeepingOptions()), ActivityLoadCredential,
		LoadCredentialInput{CredentialID: r.in.CredentialID}).Get(ctx, &r.state)
	if err != nil {
		return fmt.Errorf("%s: %w", ActivityLoadCredential, err)
	}
	if r.state.Status != CredentialError {
		r.retryAt = nil
	}
	r.status.State, r.status.TokenVersion, r.status.ExpiresAt = r.state.Status, r.state.TokenVersion, r.state.ExpiresAt
	return nil
}

// nextRefresh is when the credential is due: its expiry minus the lead (at
// the earliest half way through a token's life), at once without an access
// token, and for one in error after its retry delay.
// nil means no refresh is scheduled (disabled, or no known expiry).
func (r *refresher) nextRefresh(now time.Time) *time.Time {
	switch {
	case r.state.Status == CredentialDisabled:
		return nil
	case r.state.Status == CredentialError:
		if r.retryAt == nil {
			at := now.Add(ErrorRetryDelay(max(r.in.ErrorRounds, 1), r.state.RefreshLead))
			r.retryAt = &at
		}
		return r.retryAt
	case !r.state.HasAccessToken:
		return &now
	case r.state.ExpiresAt == nil:
		return nil
	}
	at := r.state.ExpiresAt.Add(-r.state.RefreshLead)
	if r.refreshedAt != nil {
		if half := r.refreshedAt.Add(r.state.ExpiresAt.Sub(*r.refreshedAt) / 2); at.Before(half) {
			at = half
		}
	}
	return &at
}

// wait sleeps until the credential is due, a refresh-now signal or update
// arrives (trigger), or the credential changed (reload).
func (r *refresher) wait(ctx workflow.Context, refreshNow, changed workflow.ReceiveChannel) (trigger, reload bool) {
	now := workflow.Now(ctx)
	due := r.nextRefresh(now)
	r.status.NextRefreshAt = due
	if due != nil && !due.After(now) {
		return true, false
	}
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(refreshNow, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); trigger = true })
	sel.AddReceive(r.kick, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); trigger = len(r.waiters) > 0 })
	sel.AddReceive(changed, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); reload = true })
	timerCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	if due != nil {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s**, token version %d\n\nnext refresh at %s",
			r.state.Status, r.state.TokenVersion, due.UTC().Format(time.RFC3339)))
		timer := workflow.NewTimerWithOptions(timerCtx, due.Sub(now), workflow.TimerOptions{Summary: "refresh due"})
		sel.AddFuture(timer, func(workflow.Future) { trigger = true })
	} else {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s**, token version %d\n\nno refresh scheduled; signal `%s` or edit the credential",
			r.state.Status, r.state.TokenVersion, SignalRefreshNow))
	}
	sel.Select(ctx)
	return trigger, reload
}

// refresh runs one refresh and answers every waiting update it satisfies.
func (r *refresher) refresh(ctx workflow.Context) error {
	seen := r.state.TokenVersion
	for _, w := range r.waiters {
		seen = max(seen, w.seen)
	}
	r.status.State, r.status.NextRefreshAt = CredentialRefreshing, nil
	actCtx := workflow.WithActivityOptions(ctx, refreshActivityOptions(r.in.Retry))
	var res RefreshResult
	err := workflow.ExecuteActivity(actCtx, ActivityRefreshCredential,
		RefreshCredentialInput{CredentialID: r.in.CredentialID, SeenVersion: seen, Retry: r.in.Retry}).Get(ctx, &res)
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		r.in.ErrorRounds, r.retryAt = 0, nil
		r.status.LastOutcome, r.status.LastError = res.Outcome, res.Error
		r.answerWaiters(res, nil)
		if res.Outcome != RefreshRefreshed {
			// Someone else changed the tokens: take the row as it is now.
			return r.load(ctx)
		}
		r.status.Refreshes++
		now := workflow.Now(ctx)
		r.refreshedAt = &now
		r.state.Status, r.state.TokenVersion, r.state.ExpiresAt = res.Status, res.TokenVersion, res.ExpiresAt
		r.state.HasAccessToken = true
		r.status.State, r.status.TokenVersion, r.status.ExpiresAt = res.Status, res.TokenVersion, res.ExpiresAt
		return nil
	case errors.As(err, &appErr) && (appErr.Type() == ErrTypeCredentialRejected || appErr.Type() == ErrTypeCredentialGone):
		// Disabled now (or already, or deleted): the row says which.
		r.status.LastOutcome, r.status.LastError = "", appErr.Message()
		if appErr.Type() == ErrTypeCredentialRejected {
			r.status.LastOutcome = RefreshRejected
		}
		r.answerWaiters(RefreshResult{}, temporal.NewNonRetryableApplicationError(appErr.Message(), appErr.Type(), nil))
		return r.load(ctx)
	}
	msg := failureMessage(err)
	r.status.LastOutcome, r.status.LastError = RefreshFailed, msg
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeepingOptions()), ActivityMarkCredentialError,
		MarkCredentialErrorInput{CredentialID: r.in.CredentialID, LastError: msg}).Get(ctx, nil); err != nil {
		return fmt.Errorf("%s: %w", ActivityMarkCredentialError, err)
	}
	r.in.ErrorRounds++
	at := workflow.Now(ctx).Add(ErrorRetryDelay(r.in.ErrorRounds, r.state.RefreshLead))
	r.retryAt = &at
	r.answerWaiters(RefreshResult{}, temporal.NewApplicationError(msg, ErrTypeCredentialTransient))
	// load keeps retryAt while the row says error.
	return r.load(ctx)
}

// answerWaiters answers the updates this outcome satisfies: every one on an
// error, and on success those that saw an older token version than the
// result's (a newer-looking requester waits for the next refresh).
func (r *refresher) answerWaiters(res RefreshResult, err error) {
	kept := r.waiters[:0]
	for _, w := range r.waiters {
		if err == nil && w.seen >= res.TokenVersion {
			kept = append(kept, w)
			continue
		}
		w.res, w.err, w.done = res, err, true
	}
	r.waiters = kept
}

// continueAsNew starts the next run, carrying the counts and a pending
// refresh-now over.
func (r *refresher) continueAsNew(ctx workflow.Context, refreshNow bool) error {
	next := r.in
	next.Refreshes, next.RefreshNow = r.status.Refreshes, refreshNow
	return workflow.NewContinueAsNewError(ctx, TokenRefreshWorkflowName, next)
}

// refreshActivityOptions retry a refresh under the credential's policy;
// the activity sets NextRetryDelay to add jitter. A refusal or a deleted
// credential is never retried.
func refreshActivityOptions(p RefreshRetryPolicy) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		// A token request is bounded at 10 s by the outbound client; the row
		// updates come on top.
		StartToCloseTimeout: 30 * time.Second,
		Summary:             "refresh access token",
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        p.InitialInterval,
			BackoffCoefficient:     p.BackoffCoefficient,
			MaximumInterval:        p.MaximumInterval,
			MaximumAttempts:        int32(p.MaximumAttempts),
			NonRetryableErrorTypes: []string{ErrTypeCredentialRejected, ErrTypeCredentialGone, ErrTypeInvalidInput},
		},
	}
}

// CredentialsReconcile runs ReconcileCredentials (the schedule's workflow).
func CredentialsReconcile(ctx workflow.Context) (ReconcileCredentialsResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 3,
		},
	})
	var res ReconcileCredentialsResult
	err := workflow.ExecuteActivity(ctx, ActivityReconcileCredentials).Get(ctx, &res)
	return res, err
}
