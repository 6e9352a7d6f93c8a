package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// requeuesPerRun bounds one run's history: the requeue after this many
// continues as new, carrying the counts over. An attempt writes 5 events
// (activity scheduled, started, failed; timer started, fired), so a run of
// the default 5-attempt budget stays under 400 events, and even the largest
// budget (MaxNotifyAttempts) under Temporal's 10,000-event warning.
const requeuesPerRun = 10

// Notify delivers one notification (SPEC §10). The workflow, not the
// activity's Temporal retry policy, paces the attempts under in.Retry: each
// attempt is one SendNotification execution and each wait a durable timer,
// so every attempt's failure is an event in the history (readable in the
// Temporal UI), and the status query knows the attempt count and the next
// retry time. A rejected delivery, or an exhausted budget, marks the
// notification dead; a requeue signal then opens a fresh budget.
func Notify(ctx workflow.Context, in NotifyInput) (NotifyResult, error) {
	if err := in.Retry.Validate(); err != nil {
		return NotifyResult{}, temporal.NewNonRetryableApplicationError("retry policy: "+err.Error(), ErrTypeInvalidInput, nil)
	}
	if in.NotificationID == "" {
		return NotifyResult{}, temporal.NewNonRetryableApplicationError("notification_id is required", ErrTypeInvalidInput, nil)
	}
	d := &delivery{in: in, requeues: workflow.GetSignalChannel(ctx, SignalRequeue), status: NotifyStatus{
		State: NotificationPending, MaxAttempts: in.Retry.MaximumAttempts,
		TotalAttempts: in.TotalAttempts, Requeues: in.Requeues,
	}}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (NotifyStatus, error) { return d.status, nil }); err != nil {
		return NotifyResult{}, fmt.Errorf("set status query: %w", err)
	}
	if err := d.setState(ctx, NotificationPending); err != nil {
		return NotifyResult{}, err
	}
	if in.Requeue != nil {
		if err := d.reopen(ctx, *in.Requeue); err != nil {
			return NotifyResult{}, err
		}
	}
	for runRequeues := 0; ; {
		sent, err := d.deliver(ctx)
		if err != nil || sent {
			return NotifyResult{TotalAttempts: d.status.TotalAttempts, Requeues: d.status.Requeues}, err
		}
		sig := d.awaitRequeue(ctx)
		d.status.Requeues++
		if runRequeues++; runRequeues >= requeuesPerRun {
			next := in
			next.TotalAttempts, next.Requeues, next.Requeue = d.status.TotalAttempts, d.status.Requeues, &sig
			return NotifyResult{}, workflow.NewContinueAsNewError(ctx, NotifyWorkflowName, next)
		}
		if err := d.reopen(ctx, sig); err != nil {
			return NotifyResult{}, err
		}
	}
}

type delivery struct {
	in       NotifyInput
	requeues workflow.ReceiveChannel
	status   NotifyStatus
}

// deliver runs one attempt budget; it reports whether the notification was
// sent, or else is dead.
func (d *delivery) deliver(ctx workflow.Context) (bool, error) {
	policy := d.in.Retry
	sendCtx := workflow.WithActivityOptions(ctx, sendActivityOptions())
	for attempt := 1; ; attempt++ {
		last := attempt >= policy.MaximumAttempts
		in := SendNotificationInput{NotificationID: d.in.NotificationID, Attempt: attempt}
		if !last {
			in.RetryDelay = policy.Backoff(attempt)
		}
		d.status.State, d.status.Attempts, d.status.NextRetryAt = NotificationSending, attempt, nil
		d.status.TotalAttempts++
		var res SendNotificationResult
		err := workflow.ExecuteActivity(sendCtx, ActivitySendNotification, in).Get(ctx, &res)
		if err == nil {
			d.status.LastError = ""
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("**sent** on attempt %d (%d in all)", attempt, d.status.TotalAttempts))
			return true, d.setState(ctx, NotificationSent)
		}
		var appErr *temporal.ApplicationError
		isApp := errors.As(err, &appErr)
		d.status.LastError = failureMessage(err)
		switch {
		case isApp && appErr.Type() == ErrTypeNotificationDead:
			// A run started by a requeue for a notification whose previous
			// run is gone: it is dead already, nothing was attempted, and the
			// requeue that started this run is waiting in the channel.
			d.status.Attempts, d.status.LastError = 0, ""
			d.status.TotalAttempts--
			return false, d.becomeDead(ctx, false)
		case isApp && appErr.Type() == ErrTypeDeliveryRejected, last:
			return false, d.becomeDead(ctx, true)
		}
		wait := in.RetryDelay
		if isApp && appErr.NextRetryDelay() > 0 {
			wait = min(appErr.NextRetryDelay(), MaxRetryAfter)
		}
		next := workflow.Now(ctx).Add(wait).UTC()
		d.status.State, d.status.NextRetryAt = NotificationPending, &next
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("attempt %d of %d failed: %s\n\nnext attempt at %s",
			attempt, policy.MaximumAttempts, d.status.LastError, next.Format(time.RFC3339)))
		if err := workflow.Sleep(ctx, wait); err != nil {
			return false, err
		}
	}
}

// sendActivityOptions retry an attempt only for opsflow's own trouble (a
// worker lost mid-call, PostgreSQL briefly away): delivery failures are
// listed as non-retryable here because the workflow paces those itself.
func sendActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		// A delivery is bounded at 10 s per connection; SMTP takes a few
		// exchanges, and the row updates come on top.
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    3,
			NonRetryableErrorTypes: []string{
				ErrTypeDeliveryFailed, ErrTypeDeliveryRejected, ErrTypeNotificationDead, ErrTypeInvalidInput,
			},
		},
	}
}

// bookkeepingOptions are for the state changes a workflow cannot go on
// without (notification, alert and credential rows): they retry until
// PostgreSQL answers.
func bookkeepingOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        0, // unlimited: the workflow cannot go on without the row
			NonRetryableErrorTypes: []string{ErrTypeInvalidInput},
		},
	}
}

// failureMessage is an attempt's error as an operator reads it.
func failureMessage(err error) string {
	var appErr *temporal.ApplicationError
	var timeoutErr *temporal.TimeoutError
	switch {
	case errors.As(err, &appErr):
		return appErr.Message()
	case errors.As(err, &timeoutErr):
		return "attempt timed out (" + timeoutErr.TimeoutType().String() + ")"
	}
	return err.Error()
}

// becomeDead dead-letters the notification. Requeue signals that arrived
// while it was still being delivered are dropped first: they asked to retry
// something that was not dead. Only then is the row marked dead, so a
// requeue sent after seeing it dead is never dropped.
func (d *delivery) becomeDead(ctx workflow.Context, mark bool) error {
	if mark {
		if n := drain(d.requeues); n > 0 {
			workflow.GetLogger(ctx).Info("Dropped requeue signals sent while the notification was not dead", "count", n)
		}
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeepingOptions()), ActivityMarkNotificationDead,
			MarkNotificationDeadInput{
				NotificationID: d.in.NotificationID, ChannelType: d.in.ChannelType, LastError: d.status.LastError,
			}).Get(ctx, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", ActivityMarkNotificationDead, err)
		}
	}
	d.status.NextRetryAt = nil
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**dead** after %d attempt(s): %s\n\nsignal `%s` to try again",
		d.status.Attempts, d.status.LastError, SignalRequeue))
	return d.setState(ctx, NotificationDead)
}

func drain(ch workflow.ReceiveChannel) int {
	n := 0
	for ch.ReceiveAsync(nil) {
		n++
	}
	return n
}

// awaitRequeue blocks until a requeue signal. Its payload is optional and
// read leniently: an empty or unreadable one (a hand-typed signal in the
// Temporal UI) still requeues, on behalf of "temporal-ui".
func (d *delivery) awaitRequeue(ctx workflow.Context) RequeueSignal {
	var raw converter.RawValue
	d.requeues.Receive(ctx, &raw)
	var sig RequeueSignal
	if raw.Payload() != nil {
		if err := converter.GetDefaultDataConverter().FromPayload(raw.Payload(), &sig); err != nil {
			workflow.GetLogger(ctx).Warn("Unreadable requeue payload; requeueing anyway", "error", err)
		}
	}
	if sig.Actor == "" {
		sig.Actor = "temporal-ui"
	}
	return sig
}

// reopen moves the notification back to pending with a fresh budget.
func (d *delivery) reopen(ctx workflow.Context, sig RequeueSignal) error {
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeepingOptions()), ActivityReopenNotification,
		ReopenNotificationInput{NotificationID: d.in.NotificationID, Actor: sig.Actor, Reason: sig.Reason}).Get(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", ActivityReopenNotification, err)
	}
	d.status.Attempts, d.status.LastError, d.status.NextRetryAt = 0, "", nil
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("requeued by %s", sig.Actor))
	return d.setState(ctx, NotificationPending)
}

// setState records a state and mirrors it into the search attributes, so
// the Temporal UI can list e.g. every dead notification of a channel type.
func (d *delivery) setState(ctx workflow.Context, state string) error {
	d.status.State = state
	err := workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrJob.ValueSet(NotifyWorkflowName),
		SearchAttrNotificationStatus.ValueSet(state),
		SearchAttrChannelType.ValueSet(d.in.ChannelType))
	if err != nil {
		return fmt.Errorf("upsert search attributes: %w", err)
	}
	return nil
}
