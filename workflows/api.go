// Package workflows holds opsflow's Temporal workflows and, in this file, the
// contract every other package uses to talk to them: task queue, workflow and
// schedule IDs, activity names, signal/query names, search attributes and the
// plain input/result structs. Workflows only orchestrate; every side effect is
// an activity (package activities), called here by name.
package workflows

import (
	"errors"
	"fmt"
	"math"
	"time"

	"go.temporal.io/sdk/temporal"
)

// DefaultTaskQueue is the task queue when OPSFLOW_TASK_QUEUE is unset.
const DefaultTaskQueue = "opsflow"

// Workflow type names.
const (
	CollectWorkflowName = "collect"
	NotifyWorkflowName  = "notify"
)

// Schedule IDs. A schedule's workflows are named after it; Temporal appends the
// scheduled time, so a run's ID reads e.g. "collect-2026-11-22T10:01:00Z".
const (
	CollectScheduleID = "collect"
)

// Activity names, registered under these names by package worker.
const (
	ActivityCollectRollups       = "CollectRollups"
	ActivityRecordProcessMetrics = "RecordProcessMetrics"
	ActivitySendNotification     = "SendNotification"
	ActivityMarkNotificationDead = "MarkNotificationDead"
	ActivityReopenNotification   = "ReopenNotification"
)

// Search attributes, registered with the dev server and set on every workflow
// opsflow starts so the Temporal UI can filter by them.
var (
	// SearchAttrJob names the kind of job a workflow performs (collect, ...).
	SearchAttrJob = temporal.NewSearchAttributeKeyKeyword("OpsflowJob")
	// SearchAttrNotificationStatus is a notify workflow's state: pending
	// (including between attempts), sent or dead.
	SearchAttrNotificationStatus = temporal.NewSearchAttributeKeyKeyword("OpsflowNotificationStatus")
	// SearchAttrChannelType is a notify workflow's channel type (webhook, ...).
	SearchAttrChannelType = temporal.NewSearchAttributeKeyKeyword("OpsflowChannelType")
)

// SearchAttributes lists every custom search attribute, for registration.
var SearchAttributes = []temporal.SearchAttributeKey{SearchAttrJob, SearchAttrNotificationStatus, SearchAttrChannelType}

// CollectInput asks the collection workflow to roll up what changed. With a
// window set it recomputes every minute in [From, To) from the raw rows
// instead; re-running a window gives identical rows.
type CollectInput struct {
	From *time.Time `json:"from,omitempty"`
	To   *time.Time `json:"to,omitempty"`
}

// CollectResult reports what one collection run did.
type CollectResult struct {
	Batches int   `json:"batches"`
	Minutes int   `json:"minutes"`
	Events  int64 `json:"events"`
	Rows    int   `json:"rows"`
	// Backlog is true when the run stopped with uncollected batches left; the
	// next scheduled run continues.
	Backlog bool `json:"backlog"`
}

// CollectRollupsInput is the CollectRollups activity's input: either pending
// ingest batches (no window) or a window to recompute.
type CollectRollupsInput struct {
	From *time.Time `json:"from,omitempty"`
	To   *time.Time `json:"to,omitempty"`
	// MaxBatches bounds one call's transaction.
	MaxBatches int `json:"max_batches"`
}

// CollectRollupsResult is what one CollectRollups call rolled up.
type CollectRollupsResult struct {
	Batches int   `json:"batches"`
	Minutes int   `json:"minutes"`
	Events  int64 `json:"events"`
	Rows    int   `json:"rows"`
	More    bool  `json:"more"`
}

// RecordProcessMetricsInput names the minute being recorded.
type RecordProcessMetricsInput struct {
	Minute time.Time `json:"minute"`
}

// NotifyWorkflowID names the workflow delivering one notification.
func NotifyWorkflowID(notificationID string) string { return "notify/" + notificationID }

// Signals and queries of the notify workflow. The requeue signal's payload
// (RequeueSignal) is optional, so the Temporal UI's signal dialog works with
// an empty input.
const (
	SignalRequeue = "requeue"
	QueryStatus   = "status"
)

// Notification states, in PostgreSQL and in the status query.
const (
	NotificationPending = "pending" // waiting for its first or next attempt
	NotificationSending = "sending" // an attempt is under way
	NotificationSent    = "sent"
	NotificationDead    = "dead" // out of attempts; waits for a requeue
)

// ApplicationError types of the notification activities.
const (
	// ErrTypeDeliveryFailed is a failed attempt the workflow retries under
	// its NotifyRetryPolicy; NextRetryDelay carries a target's Retry-After.
	ErrTypeDeliveryFailed = "DeliveryFailed"
	// ErrTypeDeliveryRejected is a failure no retry can fix (4xx other than
	// 408/429, refused destination, deleted channel): dead at once.
	ErrTypeDeliveryRejected = "DeliveryRejected"
	// ErrTypeNotificationDead means the row is dead already: the workflow
	// waits for a requeue without another attempt.
	ErrTypeNotificationDead = "NotificationDead"
	// ErrTypeInvalidInput marks input no retry can fix.
	ErrTypeInvalidInput = "InvalidInput"
)

// NotifyRetryPolicy is the backoff between delivery attempts (SPEC §10):
// attempt n failing waits InitialInterval * BackoffCoefficient^(n-1), at
// most MaximumInterval, unless the target's Retry-After says otherwise;
// after MaximumAttempts failures the notification is dead.
type NotifyRetryPolicy struct {
	InitialInterval    time.Duration `json:"initial_interval"`
	BackoffCoefficient float64       `json:"backoff_coefficient"`
	MaximumInterval    time.Duration `json:"maximum_interval"`
	MaximumAttempts    int           `json:"maximum_attempts"`
}

// DefaultNotifyRetryPolicy is SPEC §10's policy: 1 min, x2, 1 h cap, 5 attempts.
var DefaultNotifyRetryPolicy = NotifyRetryPolicy{
	InitialInterval: time.Minute, BackoffCoefficient: 2, MaximumInterval: time.Hour, MaximumAttempts: 5,
}

// MaxNotifyAttempts bounds MaximumAttempts, and with it a run's history.
const MaxNotifyAttempts = 100

// MaxRetryAfter caps how long a target's Retry-After may hold a
// notification back; a target asking for more is retried after this long.
const MaxRetryAfter = 24 * time.Hour

// Validate checks the policy; the error names the field.
func (p NotifyRetryPolicy) Validate() error {
	switch {
	case p.InitialInterval <= 0:
		return errors.New("initial_interval must be positive")
	case p.BackoffCoefficient < 1:
		return errors.New("backoff_coefficient must be at least 1")
	case p.MaximumInterval < p.InitialInterval:
		return errors.New("maximum_interval must be at least initial_interval")
	case p.MaximumAttempts < 1 || p.MaximumAttempts > MaxNotifyAttempts:
		return fmt.Errorf("maximum_attempts must be from 1 to %d", MaxNotifyAttempts)
	}
	return nil
}

// Backoff is the wait after failed attempt n (1-based).
func (p NotifyRetryPolicy) Backoff(attempt int) time.Duration {
	d := float64(p.InitialInterval) * math.Pow(p.BackoffCoefficient, float64(attempt-1))
	if d >= float64(p.MaximumInterval) {
		return p.MaximumInterval
	}
	return time.Duration(d)
}

// NotifyInput starts the delivery of one notification. The retry policy
// travels in the input, so it is fixed for the run and visible in the UI.
type NotifyInput struct {
	NotificationID string            `json:"notification_id"`
	ChannelType    string            `json:"channel_type"`
	Retry          NotifyRetryPolicy `json:"retry"`
	// Carried over continue-as-new: attempts and requeues so far, and the
	// requeue that ended the previous run, which this run acts on first.
	TotalAttempts int            `json:"total_attempts,omitempty"`
	Requeues      int            `json:"requeues,omitempty"`
	Requeue       *RequeueSignal `json:"requeue,omitempty"`
}

// RequeueSignal is the requeue signal's optional payload: who asked, and why.
type RequeueSignal struct {
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// NotifyStatus answers the status query.
type NotifyStatus struct {
	State string `json:"state"`
	// Attempts counts the attempts of the current budget, which a requeue
	// resets; TotalAttempts counts every attempt.
	Attempts      int        `json:"attempts"`
	MaxAttempts   int        `json:"max_attempts"`
	TotalAttempts int        `json:"total_attempts"`
	Requeues      int        `json:"requeues"`
	LastError     string     `json:"last_error,omitempty"`
	NextRetryAt   *time.Time `json:"next_retry_at,omitempty"`
}

// NotifyResult is a delivered notification's story in numbers.
type NotifyResult struct {
	TotalAttempts int `json:"total_attempts"`
	Requeues      int `json:"requeues"`
}

// SendNotificationInput is one delivery attempt.
type SendNotificationInput struct {
	NotificationID string `json:"notification_id"`
	// Attempt counts within the current budget, from 1.
	Attempt int `json:"attempt"`
	// RetryDelay is the policy's wait should this attempt fail, zero on the
	// budget's last attempt; the activity records the next retry time from it.
	RetryDelay time.Duration `json:"retry_delay"`
}

// SendNotificationResult tells a delivery from a repeat of one.
type SendNotificationResult struct {
	// AlreadySent is true when the notification was found sent and nothing
	// went out.
	AlreadySent bool `json:"already_sent"`
}

// MarkNotificationDeadInput dead-letters a notification.
type MarkNotificationDeadInput struct {
	NotificationID string `json:"notification_id"`
	ChannelType    string `json:"channel_type"`
	LastError      string `json:"last_error"`
}

// ReopenNotificationInput moves a dead notification back to pending and
// audit-logs who asked.
type ReopenNotificationInput struct {
	NotificationID string `json:"notification_id"`
	Actor          string `json:"actor"`
	Reason         string `json:"reason,omitempty"`
}

// ---- dashboards (issue 3) ----

// ---- daily (issue 4: daily statistics, retention, schedules) ----

// ---- alerting (issue 6) ----

// ---- credentials (issue 7) ----
