package db

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// ProcessMetrics is one row of process_metrics: a snapshot of one opsflow
// process taken once a minute.
type ProcessMetrics struct {
	bun.BaseModel `bun:"table:process_metrics"`

	Minute   time.Time `bun:"minute,pk"`
	Instance string    `bun:"instance,pk"`
	// CPUSeconds is cumulative user+system CPU time since the process
	// started, a counter: dashboards take its rate.
	CPUSeconds         float64 `bun:"cpu_seconds"`
	RSSBytes           int64   `bun:"rss_bytes"`
	HeapBytes          int64   `bun:"heap_bytes"`
	Goroutines         int     `bun:"goroutines"`
	DBConnsTotal       int     `bun:"db_conns_total"`
	DBConnsInUse       int     `bun:"db_conns_in_use"`
	DBConnsIdle        int     `bun:"db_conns_idle"`
	IngestQueueBatches int64   `bun:"ingest_queue_batches"`
	IngestQueueEvents  int64   `bun:"ingest_queue_events"`
}

// processMetricsColumns are overwritten when a snapshot is taken again.
var processMetricsColumns = []string{
	"cpu_seconds", "rss_bytes", "heap_bytes", "goroutines",
	"db_conns_total", "db_conns_in_use", "db_conns_idle",
	"ingest_queue_batches", "ingest_queue_events",
}

// UpsertProcessMetrics stores a snapshot; taking it again for the same
// (minute, instance), as a retried activity does, replaces the row.
func UpsertProcessMetrics(ctx context.Context, idb bun.IDB, m *ProcessMetrics) error {
	q := idb.NewInsert().Model(m).On("CONFLICT (minute, instance) DO UPDATE")
	for _, c := range processMetricsColumns {
		q = q.Set("? = EXCLUDED.?", bun.Ident(c), bun.Ident(c))
	}
	if _, err := q.Exec(ctx); err != nil {
		return fmt.Errorf("upsert process metrics: %w", MapError(err))
	}
	return nil
}

// IngestBacklog is the collection queue: ingest batches not yet rolled up.
type IngestBacklog struct {
	Batches int64 `bun:"batches"`
	Events  int64 `bun:"events"`
}

// PendingIngest measures the collection queue.
func PendingIngest(ctx context.Context, idb bun.IDB) (IngestBacklog, error) {
	var b IngestBacklog
	err := idb.NewRaw(`SELECT count(*) AS batches, coalesce(sum(events), 0) AS events
		FROM ingest_batches WHERE collected_at IS NULL`).Scan(ctx, &b)
	if err != nil {
		return b, fmt.Errorf("measure ingest backlog: %w", MapError(err))
	}
	return b, nil
}
