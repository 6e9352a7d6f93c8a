// Package activities holds opsflow's Temporal activities: every side effect
// a workflow orchestrates. Activities are methods on Activities, registered
// by package worker under the names in package workflows; each is idempotent
// because Temporal may run it more than once.
package activities

import (
	"fmt"
	"os"
	"time"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
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
	// fields: credentials
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
