package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/uptrace/bun"

	"github.com/opsflow/opsflow/db"
)

// auditRetentionUpdate is the audit action of a policy change.
const auditRetentionUpdate = "retention.update"

// Paging of the retention run list.
const (
	defaultRetentionRunPage = 50
	maxRetentionRunPage     = 500
)

// retentionPolicyView is one class's policy as clients see it. keep_days is
// null exactly when keep_forever is true.
type retentionPolicyView struct {
	Class       string `json:"class"`
	Table       string `json:"table"`
	Partitioned bool   `json:"partitioned"`
	KeepDays    *int   `json:"keep_days"`
	KeepForever bool   `json:"keep_forever"`
	// MaxRows only exists for classes that take a row cap.
	MaxRows   *int64    `json:"max_rows,omitempty"`
	RowCap    bool      `json:"row_cap"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	UpdatedBy string    `json:"updated_by"`
}

type retentionLimits struct {
	MinKeepDays int   `json:"min_keep_days"`
	MaxKeepDays int   `json:"max_keep_days"`
	MinMaxRows  int64 `json:"min_max_rows"`
}

type retentionView struct {
	Policies []retentionPolicyView `json:"policies"`
	Limits   retentionLimits       `json:"limits"`
}

func (s *Server) getRetention(c echo.Context) error {
	v, err := s.retentionView(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) retentionView(ctx context.Context) (retentionView, error) {
	ps, err := db.ListRetentionPolicies(ctx, s.db.Bun)
	if err != nil {
		return retentionView{}, err
	}
	v := retentionView{Policies: make([]retentionPolicyView, len(ps)),
		Limits: retentionLimits{MinKeepDays: db.MinKeepDays, MaxKeepDays: db.MaxKeepDays, MinMaxRows: db.MinMaxRows}}
	for i, p := range ps {
		c, _ := db.RetentionClassByName(p.Class)
		v.Policies[i] = retentionPolicyView{Class: p.Class, Table: c.Table, Partitioned: c.Partitioned,
			KeepDays: p.KeepDays, KeepForever: p.KeepDays == nil, RowCap: c.RowCap,
			UpdatedAt: p.UpdatedAt, UpdatedBy: p.UpdatedBy}
		if c.RowCap {
			v.Policies[i].MaxRows = p.MaxRows
		}
	}
	return v, nil
}

// retentionPolicyInput changes one class's policy. Exactly one of
// keep_days and keep_forever: true; for a row-capped class, max_rows sets
// the cap and no_max_rows: true lifts it (neither keeps the current cap).
type retentionPolicyInput struct {
	Class       string `json:"class"`
	KeepDays    *int   `json:"keep_days"`
	KeepForever bool   `json:"keep_forever"`
	MaxRows     *int64 `json:"max_rows"`
	NoMaxRows   bool   `json:"no_max_rows"`
}

type retentionInput struct {
	Policies []retentionPolicyInput `json:"policies"`
}

// putRetention changes the listed classes' policies; the others stay.
func (s *Server) putRetention(c echo.Context) error {
	var in retentionInput
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	ctx := c.Request().Context()
	current, err := db.ListRetentionPolicies(ctx, s.db.Bun)
	if err != nil {
		return err
	}
	actor := auditActor(c)
	changes, err := retentionChanges(in, current, actor)
	if err != nil {
		return err
	}
	err = s.db.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.UpsertRetentionPolicies(ctx, tx, changes); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: actor, Action: auditRetentionUpdate,
			Target: "retention", Details: map[string]any{"policies": in.Policies}})
	})
	if err != nil {
		return err
	}
	v, err := s.retentionView(ctx)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// retentionChanges validates the input against the declared classes; the
// error names the offending field (policies[i].field).
func retentionChanges(in retentionInput, current []db.RetentionPolicy, actor string) ([]db.RetentionPolicy, error) {
	if len(in.Policies) == 0 {
		return nil, BadParam("policies", "must list at least one class")
	}
	seen := map[string]bool{}
	out := make([]db.RetentionPolicy, 0, len(in.Policies))
	for i, p := range in.Policies {
		field := func(name string) string { return fmt.Sprintf("policies[%d].%s", i, name) }
		class, ok := db.RetentionClassByName(p.Class)
		switch {
		case !ok:
			return nil, BadParam(field("class"), "unknown data class")
		case seen[p.Class]:
			return nil, BadParam(field("class"), "listed twice")
		case p.KeepForever && p.KeepDays != nil:
			return nil, BadParam(field("keep_days"), "give keep_days or keep_forever: true, not both")
		case !p.KeepForever && p.KeepDays == nil:
			return nil, BadParam(field("keep_days"), "required (keeping forever takes an explicit keep_forever: true)")
		case p.KeepDays != nil && (*p.KeepDays < db.MinKeepDays || *p.KeepDays > db.MaxKeepDays):
			return nil, BadParam(field("keep_days"), fmt.Sprintf("must be from %d to %d", db.MinKeepDays, db.MaxKeepDays))
		case !class.RowCap && (p.MaxRows != nil || p.NoMaxRows):
			return nil, BadParam(field("max_rows"), "this class takes no row cap")
		case p.MaxRows != nil && p.NoMaxRows:
			return nil, BadParam(field("max_rows"), "give max_rows or no_max_rows: true, not both")
		case p.MaxRows != nil && *p.MaxRows < db.MinMaxRows:
			return nil, BadParam(field("max_rows"), fmt.Sprintf("must be at least %d", db.MinMaxRows))
		}
		seen[p.Class] = true
		next := db.RetentionPolicy{Class: p.Class, KeepDays: p.KeepDays, MaxRows: p.MaxRows, UpdatedBy: actor}
		if class.RowCap && p.MaxRows == nil && !p.NoMaxRows {
			for _, cur := range current {
				if cur.Class == p.Class {
					next.MaxRows = cur.MaxRows
				}
			}
		}
		out = append(out, next)
	}
	return out, nil
}

type retentionRunView struct {
	ID                int64      `json:"id"`
	WorkflowID        string     `json:"workflow_id"`
	RunID             string     `json:"run_id"`
	TemporalUIURL     string     `json:"temporal_ui_url"`
	Class             string     `json:"class"`
	Table             string     `json:"table"`
	Action            string     `json:"action"`
	Cutoff            *time.Time `json:"cutoff,omitempty"`
	RowsRemoved       int64      `json:"rows_removed"`
	PartitionsRemoved []string   `json:"partitions_removed"`
	StartedAt         time.Time  `json:"started_at"`
	DurationMs        int64      `json:"duration_ms"`
}

type retentionRunPage struct {
	Runs []retentionRunView `json:"runs"`
	// NextBefore fetches the next (older) page; absent on the last page.
	NextBefore int64 `json:"next_before,omitempty"`
}

func (s *Server) listRetentionRuns(c echo.Context) error {
	limit, err := queryIntInRange(c, "limit", defaultRetentionRunPage, 1, maxRetentionRunPage)
	if err != nil {
		return err
	}
	before, err := queryIntInRange(c, "before", 0, 1, 1<<62)
	if err != nil {
		return err
	}
	runs, err := db.ListRetentionRuns(c.Request().Context(), s.db.Bun, limit+1, int64(before))
	if err != nil {
		return err
	}
	page := retentionRunPage{Runs: make([]retentionRunView, 0, min(len(runs), limit))}
	for _, r := range runs[:min(len(runs), limit)] {
		page.Runs = append(page.Runs, retentionRunView{ID: r.ID, WorkflowID: r.WorkflowID, RunID: r.RunID,
			TemporalUIURL: s.temporalUIURL(r.WorkflowID), Class: r.Class, Table: r.Table, Action: r.Action,
			Cutoff: r.Cutoff, RowsRemoved: r.RowsRemoved, PartitionsRemoved: r.PartitionsRemoved,
			StartedAt: r.StartedAt, DurationMs: r.DurationMs})
	}
	if len(runs) > limit {
		page.NextBefore = runs[limit-1].ID
	}
	return c.JSON(http.StatusOK, page)
}

// intParam reads an optional integer query parameter within [lo, hi].
func queryIntInRange(c echo.Context, name string, def, lo, hi int) (int, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		return 0, BadParam(name, fmt.Sprintf("must be an integer from %d to %d", lo, hi))
	}
	return n, nil
}
