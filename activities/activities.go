// Package activities holds opsflow's Temporal activities: every side effect
// a workflow orchestrates. Activities are methods on Activities, registered
// by package worker under the names in package workflows; each is idempotent
// because Temporal may run it more than once.
package activities

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/credentials"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/workflows"
)

// Activities carries the dependencies every activity shares.
type Activities struct {
	DB *db.DB
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
	// Instance names this process in process_metrics; empty means
	// DefaultInstance().
	Instance string
	// CollectBudget bounds how long one CollectRollups call keeps taking new
	// batches; zero means 40 s, which leaves a scheduled minute room for the
	// rest of the run.
	CollectBudget time.Duration
	// Secrets opens channel configurations; nil fails every delivery as
	// rejected (the worker lacks OPSFLOW_SECRET_KEY).
	Secrets *secrets.Box
	// Outbound is the SSRF-safe way out for every notification.
	Outbound *notify.Outbound
	// NotifyMetrics counts delivery outcomes; nil counts nothing.
	NotifyMetrics *notify.Metrics
	// fields: dashboards
	// fields: daily
	// fields: alerting
	// NotifyRetry is the default delivery policy of alert notifications
	// (OPSFLOW_NOTIFY_RETRY_*); an invalid or zero one means
	// workflows.DefaultNotifyRetryPolicy.
	NotifyRetry workflows.NotifyRetryPolicy
	// fields: credentials
	// CredentialMetrics counts refresh outcomes; nil counts nothing. The
	// token endpoint is called through Outbound, and credentials are opened
	// with Secrets.
	CredentialMetrics *credentials.Metrics
}

const defaultCollectBudget = 40 * time.Second

// DefaultInstance names this process as host:pid, unique among replicas.
func DefaultInstance() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

func (a *Activities) now() time.Time {
	if a.Clock == nil {
		return time.Now()
	}
	return a.Clock()
}

func (a *Activities) instance() string {
	if a.Instance == "" {
		return DefaultInstance()
	}
	return a.Instance
}

func (a *Activities) collectBudget() time.Duration {
	if a.CollectBudget <= 0 {
		return defaultCollectBudget
	}
	return a.CollectBudget
}

// errTypeUnavailable marks opsflow's own trouble (PostgreSQL away): worth
// retrying, and described without the driver's text, which would otherwise
// reach the Temporal UI and the status query.
const errTypeUnavailable = "Unavailable"

// unavailable logs a database failure in full and returns a retryable
// error that names only the step.
func (a *Activities) unavailable(ctx context.Context, step string, err error) error {
	activity.GetLogger(ctx).Warn("Database step failed", "step", step, "error", err)
	return temporal.NewApplicationError(step+": the database is unavailable", errTypeUnavailable)
}
