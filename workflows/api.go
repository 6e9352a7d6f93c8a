// Package workflows holds opsflow's Temporal workflows and, in this file, the
// contract every other package uses to talk to them: task queue, workflow and
// schedule IDs, activity names, signal/query names, search attributes and the
// plain input/result structs. Workflows only orchestrate; every side effect is
// an activity (package activities), called here by name.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
)

// DefaultTaskQueue is the task queue when OPSFLOW_TASK_QUEUE is unset.
const DefaultTaskQueue = "opsflow"

// Workflow type names.
const (
	CollectWorkflowName = "collect"
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
)

// Search attributes, registered with the dev server and set on every workflow
// opsflow starts so the Temporal UI can filter by them.
var (
	// SearchAttrJob names the kind of job a workflow performs (collect, ...).
	SearchAttrJob = temporal.NewSearchAttributeKeyKeyword("OpsflowJob")
)

// SearchAttributes lists every custom search attribute, for registration.
var SearchAttributes = []temporal.SearchAttributeKey{SearchAttrJob}

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
