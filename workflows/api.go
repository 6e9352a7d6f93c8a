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

// Daily statistics (SPEC §6) and retention (SPEC §7). The daily workflow
// aggregates one UTC day of raw request logs into daily_stats; the backfill
// workflow runs it as one child per day; the retention workflow creates
// request_logs partitions ahead and removes expired data per data class.
const (
	DailyWorkflowName         = "daily"
	DailyBackfillWorkflowName = "daily-backfill"
	RetentionWorkflowName     = "retention"

	DailyScheduleID     = "daily"
	RetentionScheduleID = "retention"

	ActivityEnsurePartitions      = "EnsureRequestLogPartitions"
	ActivityAggregateDay          = "AggregateDailyStats"
	ActivityRetentionPlan         = "RetentionPlan"
	ActivityDropExpiredPartitions = "DropExpiredPartitions"
	ActivityPurgeExpired          = "PurgeExpired"
	ActivityTrimRequestLogs       = "TrimRequestLogs"

	// QueryBackfillProgress answers a DailyBackfillProgress.
	QueryBackfillProgress = "progress"
)

// PartitionsAhead is how many days after today get their request_logs
// partition created in advance, so ingestion never pays the DDL.
const PartitionsAhead = 7

// MaxBackfillDays bounds one daily backfill (a year and a day).
const MaxBackfillDays = 366

// DefaultBackfillConcurrency is how many child days a backfill runs at once
// when the input leaves it zero; MaxBackfillConcurrency caps it.
const (
	DefaultBackfillConcurrency = 4
	MaxBackfillConcurrency     = 16
)

// Daily search attributes: a daily run carries its day, so the UI finds a
// day's run (OpsflowDay = "2026-11-21"); a backfill carries how many of its
// days are done, so the workflow list shows its progress.
var (
	SearchAttrDay      = temporal.NewSearchAttributeKeyKeyword("OpsflowDay")
	SearchAttrDaysDone = temporal.NewSearchAttributeKeyInt64("OpsflowDaysDone")
)

func init() {
	SearchAttributes = append(SearchAttributes, SearchAttrDay, SearchAttrDaysDone)
}

// DailyWorkflowID names the run aggregating one day ("daily/2026-11-21").
// Backfill children and API-started runs use it, so a day runs once at a
// time; scheduled runs are named by their schedule ("daily-<time>").
func DailyWorkflowID(day string) string { return "daily/" + day }

// DailyBackfillWorkflowID names the backfill of [from, to].
func DailyBackfillWorkflowID(from, to string) string { return "daily-backfill/" + from + ".." + to }

// ParseDay parses a YYYY-MM-DD day as UTC midnight; the error names field.
func ParseDay(field, s string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s must be a date as YYYY-MM-DD", field)
	}
	return d, nil
}

// BackfillDays lists the days from..to (inclusive, YYYY-MM-DD). Errors name
// the field: from, to, or the range when it is reversed or too long.
func BackfillDays(from, to string) ([]string, error) {
	f, err := ParseDay("from", from)
	if err != nil {
		return nil, err
	}
	t, err := ParseDay("to", to)
	if err != nil {
		return nil, err
	}
	if t.Before(f) {
		return nil, errors.New("to must not be before from")
	}
	n := int(t.Sub(f)/(24*time.Hour)) + 1
	if n > MaxBackfillDays {
		return nil, fmt.Errorf("to must be at most %d days after from", MaxBackfillDays-1)
	}
	days := make([]string, n)
	for i := range days {
		days[i] = f.AddDate(0, 0, i).Format(time.DateOnly)
	}
	return days, nil
}

// DailyInput names the day to aggregate. Empty: the UTC day before the
// scheduled time (a scheduled run), so a run fired late still aggregates
// the day it was scheduled for.
type DailyInput struct {
	Day string `json:"day,omitempty"`
}

// DailyResult is what one day's aggregation wrote.
type DailyResult struct {
	Day      string `json:"day"`
	Rows     int    `json:"rows"`
	Requests int64  `json:"requests"`
}

// AggregateDayInput is the AggregateDailyStats activity's input.
type AggregateDayInput struct {
	Day string `json:"day"`
}

// EnsurePartitionsInput creates request_logs partitions for Days days from
// From (YYYY-MM-DD).
type EnsurePartitionsInput struct {
	From string `json:"from"`
	Days int    `json:"days"`
}

// EnsurePartitionsResult lists the partitions that exist afterwards.
type EnsurePartitionsResult struct {
	Partitions []string `json:"partitions"`
}

// DailyBackfillInput asks for every day of [From, To] to be aggregated.
type DailyBackfillInput struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Concurrency bounds the children running at once; zero means
	// DefaultBackfillConcurrency.
	Concurrency int `json:"concurrency,omitempty"`
}

// DailyBackfillProgress answers the progress query and is the backfill's
// result.
type DailyBackfillProgress struct {
	From       string   `json:"from"`
	To         string   `json:"to"`
	Total      int      `json:"total"`
	Done       int      `json:"done"`
	Failed     int      `json:"failed"`
	Running    int      `json:"running"`
	FailedDays []string `json:"failed_days,omitempty"`
	Requests   int64    `json:"requests"`
}

// RetentionInput pins the run's clock (tests); nil: the workflow's time.
type RetentionInput struct {
	AsOf *time.Time `json:"as_of,omitempty"`
}

// RetentionPolicy is one data class's policy as the workflow plans with it.
// KeepDays nil keeps forever; MaxRows nil sets no row cap.
type RetentionPolicy struct {
	Class string `json:"class"`
	// Partitioned classes lose whole day partitions, not rows.
	Partitioned bool   `json:"partitioned"`
	KeepDays    *int   `json:"keep_days,omitempty"`
	MaxRows     *int64 `json:"max_rows,omitempty"`
}

// RetentionPlan is every class's policy, read once per run.
type RetentionPlan struct {
	Policies []RetentionPolicy `json:"policies"`
}

// RetentionTaskInput removes one class's data older than Cutoff, or (for
// TrimRequestLogs) the oldest rows beyond MaxRows.
type RetentionTaskInput struct {
	Class   string    `json:"class"`
	Cutoff  time.Time `json:"cutoff,omitzero"`
	MaxRows int64     `json:"max_rows,omitempty"`
	// BatchSize bounds one DELETE; zero means the activity's default.
	BatchSize int `json:"batch_size,omitempty"`
}

// RetentionTaskResult is what one retention task removed, as recorded in
// retention_runs.
type RetentionTaskResult struct {
	Class      string   `json:"class"`
	Table      string   `json:"table"`
	Action     string   `json:"action"`
	Rows       int64    `json:"rows"`
	Partitions []string `json:"partitions,omitempty"`
	DurationMs int64    `json:"duration_ms"`
}

// Retention actions, as recorded in retention_runs.
const (
	RetentionDropPartitions = "drop_partitions"
	RetentionDeleteExpired  = "delete_expired"
	RetentionTrimMaxRows    = "trim_max_rows"
)

// RetentionResult is one retention run.
type RetentionResult struct {
	PartitionsEnsured int                   `json:"partitions_ensured"`
	Tasks             []RetentionTaskResult `json:"tasks"`
	Failed            []string              `json:"failed,omitempty"`
}

// RetentionProgress is a retention task's heartbeat: a retried attempt
// resumes from it instead of starting over. Cutoff is fixed by the first
// attempt (for a trim: the oldest timestamp kept), Position is the newest
// timestamp already deleted, Rows and Partitions what was removed so far;
// Recorded means the retention_runs row is written and nothing is left.
type RetentionProgress struct {
	Planned    bool      `json:"planned"`
	Cutoff     time.Time `json:"cutoff,omitzero"`
	Position   time.Time `json:"position,omitzero"`
	Rows       int64     `json:"rows"`
	Partitions []string  `json:"partitions,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	Recorded   bool      `json:"recorded"`
}

// ---- alerting (issue 6) ----

// Alerting workflow, schedule and activities (SPEC §9). The alert-eval
// workflow loads rules, alert states and metric values for one minute
// (LoadAlertEval), runs the state machine (EvaluateAlerts, a pure function),
// persists the changes with compare-and-set (ApplyAlertUpdates), and starts
// one notify child workflow per notification.
const (
	AlertEvalWorkflowName     = "alert-eval"
	AlertEvalScheduleID       = "alert-eval"
	ActivityLoadAlertEval     = "LoadAlertEval"
	ActivityApplyAlertUpdates = "ApplyAlertUpdates"
)

// Alerting search attributes: notify workflows started by alerting carry
// the alert's fingerprint and severity, and an alert-eval run carries the
// highest severity firing after it, so the Temporal UI can list an alert's
// notifications (OpsflowAlertFingerprint = "...") or every critical run.
var (
	SearchAttrAlertFingerprint = temporal.NewSearchAttributeKeyKeyword("OpsflowAlertFingerprint")
	SearchAttrAlertSeverity    = temporal.NewSearchAttributeKeyKeyword("OpsflowAlertSeverity")
)

func init() {
	SearchAttributes = append(SearchAttributes, SearchAttrAlertFingerprint, SearchAttrAlertSeverity)
}

// Alert states. ok is a group whose pending condition cleared before it
// fired; resolved one that fired and cleared for keep_firing_for.
const (
	AlertOK       = "ok"
	AlertPending  = "pending"
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Alert severities, in increasing order.
const (
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Alert metrics (the rule catalogue). Rates are fractions (0.05 = 5 %),
// latencies milliseconds, cost US dollars.
const (
	MetricErrorRate          = "error_rate"
	MetricUpstream5xxRate    = "upstream_5xx_rate"
	MetricTimeoutRate        = "timeout_rate"
	MetricLatencyP50         = "latency_p50"
	MetricLatencyP95         = "latency_p95"
	MetricLatencyP99         = "latency_p99"
	MetricTTFTP95            = "ttft_p95"
	MetricRPM                = "rpm"
	MetricTPM                = "tpm"
	MetricRPD                = "rpd"
	MetricTPD                = "tpd"
	MetricTrafficSpike       = "traffic_spike"
	MetricProviderDown       = "provider_down"
	MetricQuotaUsage         = "quota_usage"
	MetricCostPerDay         = "cost_per_day"
	MetricCostForecast       = "cost_forecast_hours"
	MetricNoData             = "no_data"
	MetricDeadLetters        = "dead_letters"
	MetricCredentialFailures = "credential_failures"
)

// AlertEvalInput asks for one evaluation. Minute pins the evaluated minute
// (tests, backfills); without it a scheduled run evaluates the minute
// before its scheduled time, so a retried or re-run evaluation of the same
// schedule slot evaluates the same minute.
type AlertEvalInput struct {
	Minute *time.Time `json:"minute,omitempty"`
}

// AlertEvalResult lists what one evaluation changed: readable in the
// Temporal UI as the run's result.
type AlertEvalResult struct {
	Minute time.Time `json:"minute"`
	Rules  int       `json:"rules"`
	Groups int       `json:"groups"`
	Chunks int       `json:"chunks"`
	// Transitions lists the first MaxListedTransitions transitions;
	// TransitionCount counts them all.
	Transitions     []AlertTransition `json:"transitions"`
	TransitionCount int               `json:"transition_count"`
	Notifications   int               `json:"notifications"`
	// Conflicts counts alerts changed by someone else meanwhile; the next
	// minute evaluates them again.
	Conflicts int `json:"conflicts"`
	// Restarted counts notifications of earlier runs started again.
	Restarted int `json:"restarted,omitempty"`
}

// MaxListedTransitions bounds the transitions a run result lists, and with
// it the result's size.
const MaxListedTransitions = 200

// DefaultAlertChunkGroups is the groups one evaluation chunk aims for.
const DefaultAlertChunkGroups = 1000

// AlertTransition is one alert's state change, as listed in a run result.
type AlertTransition struct {
	Fingerprint string `json:"fingerprint"`
	Rule        string `json:"rule"`
	From        string `json:"from"`
	To          string `json:"to"`
	Severity    string `json:"severity"`
	Muted       string `json:"muted,omitempty"`
}

// LoadAlertEvalInput asks for the next chunk of one minute's evaluation:
// the rules after After, until their groups reach MaxGroups (at least one
// rule). Chunks keep every payload well under Temporal's size limits.
type LoadAlertEvalInput struct {
	Minute    time.Time       `json:"minute"`
	After     AlertRuleCursor `json:"after"`
	MaxGroups int             `json:"max_groups"`
}

// AlertRuleCursor orders rules for chunking: provider-down rules first (so
// later chunks see this minute's provider-down alerts for inhibition),
// then by id. The zero cursor starts at the beginning.
type AlertRuleCursor struct {
	Started bool  `json:"started"`
	Rest    bool  `json:"rest"` // past the provider-down rules
	ID      int64 `json:"id"`
}

// AlertEvalData is everything EvaluateAlerts needs for one chunk of a
// minute.
type AlertEvalData struct {
	Minute time.Time `json:"minute"`
	// Rules holds the chunk's enabled rules, plus disabled or deleted rules
	// that still have active alerts (Enabled false: their alerts resolve).
	Rules   []AlertRule   `json:"rules"`
	Samples []AlertSample `json:"samples"`
	// States holds the stored alerts of the chunk's rules that are active
	// or have a sample now.
	States   []AlertState   `json:"states"`
	Silences []AlertSilence `json:"silences"`
	// Inhibitors maps a provider to a firing provider-down alert of a rule
	// outside this chunk.
	Inhibitors map[string]string `json:"inhibitors,omitempty"`
	// Next is the cursor of the next chunk; More says whether there is one.
	Next AlertRuleCursor `json:"next"`
	More bool            `json:"more"`
	// Unstarted (first chunk only) are stored alert notifications whose
	// workflow may never have started; the run starts them (a no-op for
	// those that exist).
	Unstarted []AlertNotifyStart `json:"unstarted,omitempty"`
}

// AlertRule is a rule as the state machine sees it.
type AlertRule struct {
	ID int64 `json:"id"`
	// UID is the rule's unique id, which fingerprints hash.
	UID           string            `json:"uid"`
	Version       int               `json:"version"`
	Name          string            `json:"name"`
	Metric        string            `json:"metric"`
	Operator      string            `json:"operator"`
	Warning       float64           `json:"warning"`
	Critical      float64           `json:"critical"`
	MinSamples    int64             `json:"min_samples"`
	For           time.Duration     `json:"for"`
	KeepFiringFor time.Duration     `json:"keep_firing_for"`
	Repeat        time.Duration     `json:"repeat"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	Routes        []AlertRoute      `json:"routes,omitempty"`
	Enabled       bool              `json:"enabled"`
}

// AlertRoute sends a rule's notifications of at least MinSeverity to a
// channel.
type AlertRoute struct {
	ChannelID   int64  `json:"channel_id"`
	MinSeverity string `json:"min_severity"`
}

// AlertSample is a rule's metric value for one group in the evaluated
// window; Samples is how many observations it rests on (requests, mostly).
type AlertSample struct {
	RuleID  int64             `json:"rule_id"`
	Labels  map[string]string `json:"labels"`
	Value   float64           `json:"value"`
	Samples int64             `json:"samples"`
}

// AlertState is an alert's durable state (table alerts). Version is the
// compare-and-set token; Seq numbers its notifying transitions.
type AlertState struct {
	Fingerprint    string            `json:"fingerprint"`
	RuleID         int64             `json:"rule_id"`
	Labels         map[string]string `json:"labels"`
	State          string            `json:"state"`
	Severity       string            `json:"severity"`
	Value          float64           `json:"value"`
	PendingSince   *time.Time        `json:"pending_since,omitempty"`
	FiringSince    *time.Time        `json:"firing_since,omitempty"`
	LastActiveAt   *time.Time        `json:"last_active_at,omitempty"`
	ResolvedAt     *time.Time        `json:"resolved_at,omitempty"`
	LastNotifiedAt *time.Time        `json:"last_notified_at,omitempty"`
	LastEvalMinute time.Time         `json:"last_eval_minute"`
	Acked          bool              `json:"acked"`
	Seq            int               `json:"seq"`
	Version        int64             `json:"version"`
}

// AlertSilence mutes the notifications of alerts of RuleID (0: any rule)
// whose labels include every matcher.
type AlertSilence struct {
	ID       int64             `json:"id"`
	RuleID   int64             `json:"rule_id,omitempty"`
	Matchers map[string]string `json:"matchers,omitempty"`
}

// AlertEvent is one transition as alert_events records it. Key is unique
// per alert, so recording it twice is a no-op.
type AlertEvent struct {
	Key          string  `json:"key"`
	From         string  `json:"from"`
	To           string  `json:"to"`
	FromSeverity string  `json:"from_severity,omitempty"`
	Severity     string  `json:"severity"`
	Value        float64 `json:"value"`
	Threshold    float64 `json:"threshold"`
	Notified     bool    `json:"notified"`
	// MutedBy says why no notification went out: "silence:<id>",
	// "inhibited:<fingerprint>", or "never-notified" for the resolution of
	// an alert whose firing nobody was told about.
	MutedBy string `json:"muted_by,omitempty"`
}

// AlertNotification is one notification an update sends. ID is derived
// from fingerprint, transition sequence and channel, so a retried
// evaluation produces the same id and the notification exists once.
type AlertNotification struct {
	ID          string            `json:"id"`
	ChannelID   int64             `json:"channel_id"`
	Status      string            `json:"status"` // firing or resolved
	Severity    string            `json:"severity"`
	Title       string            `json:"title"`
	Summary     string            `json:"summary"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"starts_at"`
	EndsAt      *time.Time        `json:"ends_at,omitempty"`
}

// AlertUpdate is one alert's new state: written only if the stored version
// still equals ExpectedVersion (0: the alert must not exist yet).
type AlertUpdate struct {
	ExpectedVersion int64               `json:"expected_version"`
	RuleName        string              `json:"rule_name"`
	RuleVersion     int                 `json:"rule_version"`
	State           AlertState          `json:"state"`
	Events          []AlertEvent        `json:"events,omitempty"`
	Notifications   []AlertNotification `json:"notifications,omitempty"`
}

// ApplyAlertUpdatesInput persists one evaluation's updates.
type ApplyAlertUpdatesInput struct {
	Minute  time.Time     `json:"minute"`
	Updates []AlertUpdate `json:"updates"`
}

// ApplyAlertUpdatesResult lists the notifications to start: those of
// updates that were applied, now or by an earlier try of the same call.
type ApplyAlertUpdatesResult struct {
	Applied   int                `json:"applied"`
	Conflicts []string           `json:"conflicts,omitempty"`
	Notify    []AlertNotifyStart `json:"notify,omitempty"`
}

// AlertNotifyStart is a stored notification whose notify workflow the
// evaluation starts.
type AlertNotifyStart struct {
	Fingerprint string      `json:"fingerprint"`
	Severity    string      `json:"severity"`
	Input       NotifyInput `json:"input"`
}

// ---- credentials (issue 7) ----

// Workflow type names, IDs and activities of the credential refresher
// (SPEC §8): one long-running token-refresh/<id> per live credential, and a
// schedule reconciling those workflows with the credentials table.
const (
	TokenRefreshWorkflowName         = "token-refresh"
	CredentialsReconcileWorkflowName = "credentials-reconcile"
	CredentialsReconcileScheduleID   = "credentials-reconcile"

	ActivityLoadCredential       = "LoadCredential"
	ActivityRefreshCredential    = "RefreshCredential"
	ActivityMarkCredentialError  = "MarkCredentialError"
	ActivityReconcileCredentials = "ReconcileCredentials"
)

// TokenRefreshWorkflowID names the workflow keeping one credential fresh.
func TokenRefreshWorkflowID(credentialID int64) string {
	return fmt.Sprintf("token-refresh/%d", credentialID)
}

// Messages of the token-refresh workflow; its status query is QueryStatus.
const (
	// SignalRefreshNow refreshes at once; no payload (the Temporal UI's
	// signal dialog works as is).
	SignalRefreshNow = "refresh-now"
	// SignalCredentialChanged makes the workflow re-read the credential
	// (new refresh token, lead, re-enabled) without refreshing.
	SignalCredentialChanged = "credential-changed"
	// UpdateRefresh refreshes and answers with the outcome (RefreshRequest
	// -> RefreshResult): the API's "refresh and wait".
	UpdateRefresh = "refresh"
)

// Credential states, in PostgreSQL and in the status query.
const (
	CredentialActive     = "active"
	CredentialRefreshing = "refreshing"
	CredentialError      = "error"    // transient retries exhausted; retried later
	CredentialDisabled   = "disabled" // the provider refused the grant; needs a new refresh token
)

// Refresh outcomes, in credential_refreshes, the metrics and RefreshResult.
const (
	RefreshRefreshed  = "refreshed"
	RefreshTransient  = "transient"  // a failed attempt that will be retried
	RefreshRejected   = "rejected"   // invalid_grant and friends: disabled
	RefreshSuperseded = "superseded" // another writer changed the tokens first; nothing overwritten
	RefreshFresh      = "fresh"      // already refreshed since the caller looked; no call made
	RefreshFailed     = "failed"     // transient retries exhausted: status error
)

// ApplicationError types of the credential activities.
const (
	// ErrTypeCredentialRejected: the token endpoint refused the grant or the
	// client; the credential is disabled. Never retried.
	ErrTypeCredentialRejected = "CredentialRejected"
	// ErrTypeCredentialTransient: a failed attempt worth retrying.
	ErrTypeCredentialTransient = "CredentialTransient"
	// ErrTypeCredentialGone: deleted, or disabled, so nothing to refresh.
	ErrTypeCredentialGone = "CredentialGone"
)

// DefaultRefreshLead is how long before expiry a credential is refreshed.
const DefaultRefreshLead = 10 * time.Minute

// RefreshRetryPolicy paces the attempts of one refresh: attempt n failing
// waits a jittered InitialInterval * BackoffCoefficient^(n-1), at most
// MaximumInterval. Temporal's own retry has no jitter, so the activity
// computes the delay (NextRetryDelay) from this policy.
type RefreshRetryPolicy struct {
	InitialInterval    time.Duration `json:"initial_interval"`
	BackoffCoefficient float64       `json:"backoff_coefficient"`
	MaximumInterval    time.Duration `json:"maximum_interval"`
	MaximumAttempts    int           `json:"maximum_attempts"`
	// Jitter is the fraction of the delay drawn at random: 0.2 waits
	// 80-100 % of it, so credentials failing together spread out.
	Jitter float64 `json:"jitter"`
}

// DefaultRefreshRetry: 2 s doubling, capped at 1 min, 6 attempts (about
// 1 min of trying), 20 % jitter. A lead of 10 min leaves room for several
// such rounds before the token expires.
var DefaultRefreshRetry = RefreshRetryPolicy{
	InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 6, Jitter: 0.2,
}

// Delay is the wait after failed attempt n (1-based); r in [0, 1) draws the
// jitter.
func (p RefreshRetryPolicy) Delay(attempt int, r float64) time.Duration {
	d := float64(p.InitialInterval) * math.Pow(p.BackoffCoefficient, float64(attempt-1))
	d = min(d, float64(p.MaximumInterval))
	return time.Duration(d * (1 - p.Jitter*r))
}

// ErrorRetryDelay is how long a credential in status error waits before the
// workflow tries another round: doubling per failed round from 1 min, capped
// at the lead (or 5 min), so a token still valid is retried before expiry.
func ErrorRetryDelay(rounds int, lead time.Duration) time.Duration {
	ceiling := max(lead/2, 5*time.Minute)
	d := time.Minute << min(max(rounds-1, 0), 10)
	return min(d, ceiling)
}

// TokenRefreshInput starts (or continues as new) one credential's workflow.
type TokenRefreshInput struct {
	CredentialID int64              `json:"credential_id"`
	Retry        RefreshRetryPolicy `json:"retry"`
	// Carried over continue-as-new.
	Refreshes   int `json:"refreshes,omitempty"`
	ErrorRounds int `json:"error_rounds,omitempty"`
	// RefreshNow is a refresh-now signal that arrived as the previous run
	// ended: this run acts on it first.
	RefreshNow bool `json:"refresh_now,omitempty"`
}

// CredentialState is what the workflow needs of a credential row (never a
// secret): LoadCredential's answer.
type CredentialState struct {
	Found        bool          `json:"found"`
	Status       string        `json:"status"`
	ExpiresAt    *time.Time    `json:"expires_at,omitempty"`
	RefreshLead  time.Duration `json:"refresh_lead"`
	TokenVersion int64         `json:"token_version"`
	// HasAccessToken is false until a first refresh got one: such a
	// credential is refreshed at once.
	HasAccessToken bool `json:"has_access_token"`
}

// LoadCredentialInput names the credential.
type LoadCredentialInput struct {
	CredentialID int64 `json:"credential_id"`
}

// RefreshCredentialInput is one refresh. SeenVersion is the token version
// the requester saw: when the stored version is newer, someone refreshed
// since, and the activity answers RefreshFresh without calling the token
// endpoint.
type RefreshCredentialInput struct {
	CredentialID int64              `json:"credential_id"`
	SeenVersion  int64              `json:"seen_version"`
	Retry        RefreshRetryPolicy `json:"retry"`
}

// RefreshResult is a refresh's outcome, also the refresh update's answer.
type RefreshResult struct {
	Outcome      string     `json:"outcome"`
	Status       string     `json:"status"`
	TokenVersion int64      `json:"token_version"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	Error        string     `json:"error,omitempty"`
}

// MarkCredentialErrorInput records a refresh whose retries ran out.
type MarkCredentialErrorInput struct {
	CredentialID int64  `json:"credential_id"`
	LastError    string `json:"last_error"`
}

// RefreshRequest is the refresh update's argument.
type RefreshRequest struct {
	Actor       string `json:"actor,omitempty"`
	SeenVersion int64  `json:"seen_version"`
}

// TokenRefreshStatus answers the token-refresh workflow's status query.
type TokenRefreshStatus struct {
	State         string     `json:"state"`
	TokenVersion  int64      `json:"token_version"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	NextRefreshAt *time.Time `json:"next_refresh_at,omitempty"`
	Refreshes     int        `json:"refreshes"`
	LastOutcome   string     `json:"last_outcome,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	// Waiting counts refresh updates waiting for a refresh to finish.
	Waiting int `json:"waiting"`
}

// ReconcileCredentialsResult says what one reconcile run changed.
type ReconcileCredentialsResult struct {
	Started int `json:"started"`
	// Ended counts workflows of deleted credentials told to end.
	Ended int `json:"ended"`
}
