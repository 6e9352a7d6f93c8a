package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/uptrace/bun"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/workflows"
)

// deliveredMark is the heartbeat detail a try leaves once the target has
// accepted the notification: a retry of the same attempt that finds it only
// records the delivery, never sends again.
type deliveredMark struct {
	Delivered bool `json:"delivered"`
}

// SendNotification makes one delivery attempt. The order of writes is what
// keeps a retry of ours from delivering twice (docs/notifications.md):
//
//  1. the row moves pending -> sending and the attempt is counted, before
//     anything leaves; a row already sent ends the activity without sending;
//  2. the notification goes out, carrying its id as the idempotency key;
//  3. on success a heartbeat records "delivered" with Temporal, then the row
//     moves sending -> sent. If that write fails, the activity's retry finds
//     the heartbeat and only writes the row.
//
// A failed attempt puts the row back to pending with its error and next
// retry time and returns an ApplicationError of type DeliveryFailed (the
// workflow retries it, after the target's Retry-After if it gave one) or
// DeliveryRejected (no retry can help).
func (a *Activities) SendNotification(ctx context.Context, in workflows.SendNotificationInput) (workflows.SendNotificationResult, error) {
	if in.NotificationID == "" {
		return workflows.SendNotificationResult{}, temporal.NewNonRetryableApplicationError("notification_id is required", workflows.ErrTypeInvalidInput, nil)
	}
	if activity.HasHeartbeatDetails(ctx) {
		var mark deliveredMark
		if err := activity.GetHeartbeatDetails(ctx, &mark); err == nil && mark.Delivered {
			return workflows.SendNotificationResult{}, a.recordSent(ctx, in.NotificationID)
		}
	}
	n, ok, err := db.StartAttempt(ctx, a.DB.Bun, in.NotificationID, a.now())
	if err != nil {
		return workflows.SendNotificationResult{}, a.unavailable(ctx, "start attempt", err)
	}
	if !ok {
		return a.notStartable(ctx, in.NotificationID)
	}
	sendErr := a.deliver(ctx, n)
	if sendErr == nil {
		activity.RecordHeartbeat(ctx, deliveredMark{Delivered: true})
		return workflows.SendNotificationResult{}, a.recordSent(ctx, n.ID)
	}
	var unavailable *temporal.ApplicationError
	if errors.As(sendErr, &unavailable) && unavailable.Type() == errTypeUnavailable {
		return workflows.SendNotificationResult{}, sendErr
	}
	fail := notify.AsError(sendErr)
	a.NotifyMetrics.Failed(n.ChannelType, fail.Reason)
	activity.GetLogger(ctx).Warn("Notification attempt failed", "notification", n.ID, "channel", n.ChannelID,
		"attempt", in.Attempt, "reason", fail.Reason, "permanent", fail.Permanent, "error", fail.Msg)
	var next *time.Time
	if !fail.Permanent && in.RetryDelay > 0 {
		wait := in.RetryDelay
		if fail.RetryAfter > 0 {
			wait = fail.RetryAfter
		}
		t := a.now().Add(wait)
		next = &t
	}
	if _, err := db.RecordFailure(ctx, a.DB.Bun, n.ID, fail.Msg, next); err != nil {
		return workflows.SendNotificationResult{}, a.unavailable(ctx, "record failure", err)
	}
	errType := workflows.ErrTypeDeliveryFailed
	if fail.Permanent {
		errType = workflows.ErrTypeDeliveryRejected
	}
	// Benign: a target failing is daily business, logged above once at
	// warn, not an error of the worker's (the SDK would log it again).
	return workflows.SendNotificationResult{}, temporal.NewApplicationErrorWithOptions(
		fmt.Sprintf("%s (%s)", fail.Msg, fail.Reason), errType,
		temporal.ApplicationErrorOptions{NonRetryable: fail.Permanent, NextRetryDelay: fail.RetryAfter,
			Category: temporal.ApplicationErrorCategoryBenign})
}

// notStartable explains a notification that is neither pending nor sending.
func (a *Activities) notStartable(ctx context.Context, id string) (workflows.SendNotificationResult, error) {
	cur, err := db.GetNotification(ctx, a.DB.Bun, id)
	switch {
	case errors.Is(err, db.ErrNotFound):
		return workflows.SendNotificationResult{}, temporal.NewNonRetryableApplicationError(
			"notification "+id+" does not exist", workflows.ErrTypeInvalidInput, nil)
	case err != nil:
		return workflows.SendNotificationResult{}, a.unavailable(ctx, "load notification", err)
	case cur.Status == db.NotificationSent:
		return workflows.SendNotificationResult{AlreadySent: true}, nil
	}
	return workflows.SendNotificationResult{}, temporal.NewNonRetryableApplicationError(
		"notification "+id+" is dead; requeue it to try again", workflows.ErrTypeNotificationDead, nil)
}

// deliver loads the channel and sends. Problems on opsflow's side that no
// retry fixes (channel deleted, configuration unreadable) are rejections:
// the notification goes dead at once and an operator requeues it after the
// fix.
func (a *Activities) deliver(ctx context.Context, n *db.Notification) error {
	ch, err := db.GetChannel(ctx, a.DB.Bun, n.ChannelID)
	if errors.Is(err, db.ErrNotFound) {
		return &notify.Error{Reason: notify.ReasonClientError, Permanent: true,
			Msg: "channel " + strconv.FormatInt(n.ChannelID, 10) + " was deleted"}
	}
	if err != nil {
		return a.unavailable(ctx, "load channel", err)
	}
	if a.Secrets == nil {
		return &notify.Error{Reason: notify.ReasonInternal, Permanent: true,
			Msg: "the worker has no OPSFLOW_SECRET_KEY to open channel configurations"}
	}
	cfg, err := notify.OpenConfig(ch.Type, a.Secrets, secrets.Sealed{KeyID: ch.ConfigKeyID, Ciphertext: ch.ConfigSealed})
	if err != nil {
		return &notify.Error{Reason: notify.ReasonInternal, Permanent: true, Msg: "channel configuration: " + err.Error()}
	}
	var alert notify.Alert
	if err := json.Unmarshal(n.Payload, &alert); err != nil {
		return &notify.Error{Reason: notify.ReasonInternal, Permanent: true, Msg: "notification payload is not an alert"}
	}
	msg := notify.Message{ID: n.ID, Kind: n.Kind, CreatedAt: n.CreatedAt, Alert: alert}
	return cfg.Notifier(a.Outbound).Notify(ctx, msg)
}

func (a *Activities) recordSent(ctx context.Context, id string) error {
	channelType, ok, err := db.RecordSent(ctx, a.DB.Bun, id, a.now())
	if err != nil {
		return a.unavailable(ctx, "record delivery", err)
	}
	if ok {
		a.NotifyMetrics.Sent(channelType)
	}
	return nil
}

// MarkNotificationDead dead-letters a notification after its last attempt.
// Marking an already dead (or sent) notification again changes nothing.
func (a *Activities) MarkNotificationDead(ctx context.Context, in workflows.MarkNotificationDeadInput) error {
	if in.NotificationID == "" {
		return temporal.NewNonRetryableApplicationError("notification_id is required", workflows.ErrTypeInvalidInput, nil)
	}
	ok, err := db.MarkDead(ctx, a.DB.Bun, in.NotificationID, in.LastError, a.now())
	if err != nil {
		return a.unavailable(ctx, "mark dead", err)
	}
	if ok {
		a.NotifyMetrics.Dead(in.ChannelType)
		return nil
	}
	return a.mustExist(ctx, in.NotificationID)
}

// ReopenNotification moves a dead notification back to pending for a fresh
// attempt budget and audit-logs the requeue in the same transaction, so
// every requeue (API, CLI or Temporal UI) is recorded exactly once.
func (a *Activities) ReopenNotification(ctx context.Context, in workflows.ReopenNotificationInput) error {
	if in.NotificationID == "" {
		return temporal.NewNonRetryableApplicationError("notification_id is required", workflows.ErrTypeInvalidInput, nil)
	}
	var reopened bool
	err := a.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if reopened, err = db.Reopen(ctx, tx, in.NotificationID); err != nil || !reopened {
			return err
		}
		details := map[string]any{}
		if in.Reason != "" {
			details["reason"] = in.Reason
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{
			At: a.now(), Actor: in.Actor, Action: db.AuditNotificationRequeue, Target: "notification:" + in.NotificationID, Details: details,
		})
	})
	if err != nil {
		return a.unavailable(ctx, "reopen", db.MapError(err))
	}
	if reopened {
		return nil
	}
	// A retry after the commit, or a requeue of what is no longer dead.
	return a.mustExist(ctx, in.NotificationID)
}

func (a *Activities) mustExist(ctx context.Context, id string) error {
	_, err := db.GetNotification(ctx, a.DB.Bun, id)
	if errors.Is(err, db.ErrNotFound) {
		return temporal.NewNonRetryableApplicationError("notification "+id+" does not exist", workflows.ErrTypeInvalidInput, nil)
	}
	if err != nil {
		return a.unavailable(ctx, "load notification", err)
	}
	return nil
}
