package db

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
)

// RetentionClass declares one data class retention manages. Adding a class
// is one line in RetentionClasses: its policy defaults to DefaultKeepDays
// until an operator sets one, and the retention workflow picks it up.
type RetentionClass struct {
	Name string
	// Table, TimeColumn and Where say which rows belong to the class and how
	// old they are: rows of Table with TimeColumn before the cutoff and the
	// extra predicate Where (SQL, may be empty) are expired.
	Table      string
	TimeColumn string
	Where      string
	// Partitioned classes lose whole day partitions (request_logs).
	Partitioned bool
	// RowCap classes accept a max_rows policy.
	RowCap          bool
	DefaultKeepDays int
	DefaultMaxRows  int64
}

// Policy ranges shared by every class. Keep-forever is never a default: it is
// only ever set explicitly.
const (
	MinKeepDays = 1
	MaxKeepDays = 3650
	MinMaxRows  = 1000
)

// RetentionClasses lists every data class, in the order runs handle them.
// Delivered notifications only: dead-lettered ones wait for an operator.
var RetentionClasses = []RetentionClass{
	{Name: "request_logs", Table: "request_logs", TimeColumn: "ts", Partitioned: true, RowCap: true, DefaultKeepDays: 30, DefaultMaxRows: 500_000_000},
	{Name: "rollup_minute", Table: "rollup_minute", TimeColumn: "minute", DefaultKeepDays: 90},
	// The dashboard pre-aggregates: minute grains live as long as the minute
	// rollups they project; hour grains are small and answer long windows.
	{Name: "rollup_minute_proj", Table: "rollup_minute_proj", TimeColumn: "minute", DefaultKeepDays: 90},
	{Name: "rollup_errors_minute", Table: "rollup_errors_minute", TimeColumn: "minute", DefaultKeepDays: 90},
	{Name: "rollup_hour", Table: "rollup_hour", TimeColumn: "hour", DefaultKeepDays: 400},
	{Name: "rollup_errors_hour", Table: "rollup_errors_hour", TimeColumn: "hour", DefaultKeepDays: 400},
	{Name: "rollup_apikey_minute", Table: "rollup_apikey_minute", TimeColumn: "minute", DefaultKeepDays: 90},
	{Name: "rollup_apikey_hour", Table: "rollup_apikey_hour", TimeColumn: "hour", DefaultKeepDays: 400},
	{Name: "daily_stats", Table: "daily_stats", TimeColumn: "day", DefaultKeepDays: 730},
	{Name: "alert_events", Table: "alert_events", TimeColumn: "at", DefaultKeepDays: 180},
	{Name: "notifications_sent", Table: "notifications", TimeColumn: "sent_at", Where: "status = 'sent'", DefaultKeepDays: 90},
	{Name: "process_metrics", Table: "process_metrics", TimeColumn: "minute", DefaultKeepDays: 30},
}

// RetentionClassByName finds a declared class.
func RetentionClassByName(name string) (RetentionClass, bool) {
	i := slices.IndexFunc(RetentionClasses, func(c RetentionClass) bool { return c.Name == name })
	if i < 0 {
		return RetentionClass{}, false
	}
	return RetentionClasses[i], true
}

// RetentionPolicy is one class's policy. KeepDays nil keeps forever;
// MaxRows nil sets no row cap.
type RetentionPolicy struct {
	bun.BaseModel `bun:"table:retention_policies"`

	Class     string    `bun:"class,pk"`
	KeepDays  *int      `bun:"keep_days"`
	MaxRows   *int64    `bun:"max_rows"`
	UpdatedAt time.Time `bun:"updated_at,nullzero,default:now()"`
	// UpdatedBy is "default" for a class nobody has set.
	UpdatedBy string `bun:"updated_by"`
}

// ListRetentionPolicies returns every declared class's policy in
// RetentionClasses order, the class default where none is stored.
func ListRetentionPolicies(ctx context.Context, idb bun.IDB) ([]RetentionPolicy, error) {
	var stored []RetentionPolicy
	if err := idb.NewSelect().Model(&stored).Scan(ctx); err != nil {
		return nil, fmt.Errorf("list retention policies: %w", MapError(err))
	}
	out := make([]RetentionPolicy, len(RetentionClasses))
	for i, c := range RetentionClasses {
		j := slices.IndexFunc(stored, func(p RetentionPolicy) bool { return p.Class == c.Name })
		if j >= 0 {
			out[i] = stored[j]
			continue
		}
		out[i] = RetentionPolicy{Class: c.Name, KeepDays: &c.DefaultKeepDays, UpdatedBy: "default"}
		if c.DefaultMaxRows > 0 {
			out[i].MaxRows = &c.DefaultMaxRows
		}
	}
	return out, nil
}

// UpsertRetentionPolicies stores policies (validated by the caller).
func UpsertRetentionPolicies(ctx context.Context, idb bun.IDB, ps []RetentionPolicy) error {
	if len(ps) == 0 {
		return nil
	}
	_, err := idb.NewInsert().Model(&ps).
		On("CONFLICT (class) DO UPDATE").
		Set("keep_days = EXCLUDED.keep_days, max_rows = EXCLUDED.max_rows").
		Set("updated_at = now(), updated_by = EXCLUDED.updated_by").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store retention policies: %w", MapError(err))
	}
	return nil
}

// DeleteExpiredBatch deletes up to limit rows of the class older than
// cutoff and returns how many it deleted. Bounded batches keep each
// statement's locks and WAL small while the application keeps writing.
func DeleteExpiredBatch(ctx context.Context, idb bun.IDB, c RetentionClass, cutoff time.Time, limit int) (int64, error) {
	pred := "? < ?"
	if c.Where != "" {
		pred += " AND (" + c.Where + ")"
	}
	res, err := idb.NewRaw(`DELETE FROM ? WHERE ctid = ANY(ARRAY(SELECT ctid FROM ? WHERE `+pred+` LIMIT ?))`,
		bun.Ident(c.Table), bun.Ident(c.Table), bun.Ident(c.TimeColumn), cutoff, limit).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete expired %s: %w", c.Name, MapError(err))
	}
	n, err := res.RowsAffected()
	return n, err
}

// Partition is one day partition of request_logs.
type Partition struct {
	Name string
	Day  time.Time
}

// End is the first instant after the partition.
func (p Partition) End() time.Time { return p.Day.AddDate(0, 0, 1) }

const partitionPrefix = "request_logs_p"

// PartitionName names the partition of t's UTC day.
func PartitionName(t time.Time) string { return partitionPrefix + TruncateDay(t).Format("20060102") }

// RequestLogPartitions lists request_logs' day partitions, oldest first.
func RequestLogPartitions(ctx context.Context, idb bun.IDB) ([]Partition, error) {
	var names []string
	err := idb.NewRaw(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'request_logs'::regclass`).Scan(ctx, &names)
	if err != nil {
		return nil, fmt.Errorf("list request_logs partitions: %w", MapError(err))
	}
	out := make([]Partition, 0, len(names))
	for _, n := range names {
		day, err := time.Parse("20060102", strings.TrimPrefix(n, partitionPrefix))
		if err != nil || !strings.HasPrefix(n, partitionPrefix) {
			continue // not one of ours; retention leaves it alone
		}
		out = append(out, Partition{Name: n, Day: day})
	}
	slices.SortFunc(out, func(a, b Partition) int { return a.Day.Compare(b.Day) })
	return out, nil
}

// EnsureRequestLogPartition creates the partition of t's UTC day unless it
// exists, and returns its name.
func EnsureRequestLogPartition(ctx context.Context, idb bun.IDB, t time.Time) (string, error) {
	var name string
	if err := idb.NewRaw("SELECT opsflow_ensure_request_logs_partition(?::date)", TruncateDay(t)).Scan(ctx, &name); err != nil {
		return "", fmt.Errorf("ensure partition of %s: %w", t.Format(time.DateOnly), MapError(err))
	}
	return name, nil
}

// DropRequestLogPartition detaches and drops one partition. Dropping a day
// costs a catalog change, where DELETE would rewrite every row and leave
// the table to vacuum. Ingest recreates a dropped day if an event for it
// arrives (RequestLogStore retries a missing partition). Dropping a
// partition already gone succeeds.
func DropRequestLogPartition(ctx context.Context, d *DB, name string) error {
	if !strings.HasPrefix(name, partitionPrefix) {
		return fmt.Errorf("drop partition: %q is not a request_logs day partition", name)
	}
	ident := pgx.Identifier{name}.Sanitize()
	err := d.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var exists bool
		if err := tx.NewRaw("SELECT to_regclass(?) IS NOT NULL", name).Scan(ctx, &exists); err != nil || !exists {
			return err
		}
		// Same lock as partition creation, so a concurrent ensure never
		// sees the table half-gone.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('opsflow_request_logs_partitions'))"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "ALTER TABLE request_logs DETACH PARTITION "+ident); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DROP TABLE "+ident)
		return err
	})
	if err != nil {
		return fmt.Errorf("drop partition %s: %w", name, MapError(err))
	}
	return nil
}

// PartitionRows counts a partition's rows exactly.
func PartitionRows(ctx context.Context, idb bun.IDB, p Partition) (int64, error) {
	var n int64
	if err := idb.NewRaw("SELECT count(*) FROM ?", bun.Ident(p.Name)).Scan(ctx, &n); err != nil {
		return 0, fmt.Errorf("count %s: %w", p.Name, MapError(err))
	}
	return n, nil
}

// NthNewestTS returns the timestamp of the n-th newest row (n >= 1) of a
// partition, through the ts index.
func NthNewestTS(ctx context.Context, idb bun.IDB, p Partition, n int64) (time.Time, error) {
	var ts time.Time
	err := idb.NewRaw("SELECT ts FROM ? ORDER BY ts DESC OFFSET ? LIMIT 1", bun.Ident(p.Name), n-1).Scan(ctx, &ts)
	if err != nil {
		return time.Time{}, fmt.Errorf("find row %d of %s: %w", n, p.Name, MapError(err))
	}
	return ts, nil
}

// DeleteOldestBatch deletes up to limit of the oldest rows of a partition
// with from <= ts < cutoff, and returns how many it deleted and the newest
// ts among them. Starting at from (the previous batch's newest ts, ties
// included) keeps the index scan off the dead entries of earlier batches.
func DeleteOldestBatch(ctx context.Context, idb bun.IDB, p Partition, from, cutoff time.Time, limit int) (int64, time.Time, error) {
	var res struct {
		N    int64        `bun:"n"`
		Last sql.NullTime `bun:"last"`
	}
	err := idb.NewRaw(`WITH d AS (
			DELETE FROM ? WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM ? WHERE ts >= ? AND ts < ? ORDER BY ts LIMIT ?))
			RETURNING ts)
		SELECT count(*) AS n, max(ts) AS last FROM d`,
		bun.Ident(p.Name), bun.Ident(p.Name), from, cutoff, limit).Scan(ctx, &res)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("trim %s: %w", p.Name, MapError(err))
	}
	return res.N, res.Last.Time, nil
}

// RetentionRun is one row of retention_runs: what one task of one
// retention run removed.
type RetentionRun struct {
	bun.BaseModel `bun:"table:retention_runs"`

	ID                int64      `bun:"id,pk,autoincrement"`
	WorkflowID        string     `bun:"workflow_id"`
	RunID             string     `bun:"run_id"`
	Class             string     `bun:"class"`
	Table             string     `bun:"table_name"`
	Action            string     `bun:"action"`
	Cutoff            *time.Time `bun:"cutoff"`
	RowsRemoved       int64      `bun:"rows_removed"`
	PartitionsRemoved []string   `bun:"partitions_removed,array"`
	StartedAt         time.Time  `bun:"started_at"`
	DurationMs        int64      `bun:"duration_ms"`
}

// RecordRetentionRun stores a task's outcome. A task retried after its row
// was written (its completion lost) adds to the row instead of duplicating
// it.
func RecordRetentionRun(ctx context.Context, idb bun.IDB, r *RetentionRun) error {
	if r.PartitionsRemoved == nil {
		r.PartitionsRemoved = []string{}
	}
	_, err := idb.NewInsert().Model(r).
		On("CONFLICT (run_id, class, action) DO UPDATE").
		Set("rows_removed = ?TableAlias.rows_removed + EXCLUDED.rows_removed").
		Set("partitions_removed = ?TableAlias.partitions_removed || EXCLUDED.partitions_removed").
		Set("duration_ms = ?TableAlias.duration_ms + EXCLUDED.duration_ms").
		Returning("id").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("record retention run: %w", MapError(err))
	}
	return nil
}

// ListRetentionRuns returns up to limit rows, newest first, older than the
// row beforeID when it is positive.
func ListRetentionRuns(ctx context.Context, idb bun.IDB, limit int, beforeID int64) ([]RetentionRun, error) {
	out := []RetentionRun{}
	q := idb.NewSelect().Model(&out).Order("id DESC").Limit(int64(limit))
	if beforeID > 0 {
		q = q.Where("id < ?", beforeID)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("list retention runs: %w", MapError(err))
	}
	return out, nil
}
