package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/worker"
)

// Audit actions of schedule control.
const (
	auditScheduleTrigger  = "schedule.trigger"
	auditSchedulePause    = "schedule.pause"
	auditScheduleUnpause  = "schedule.unpause"
	auditScheduleBackfill = "schedule.backfill"
)

// Bounds of schedule control input.
const (
	maxScheduleNote       = 500
	maxScheduleBackfill   = 366 * 24 * time.Hour
	nextRunTimes          = 5
	scheduleDescribeLimit = 8 * time.Second
)

// scheduleRun is a schedule's most recent action and how its workflow
// ended (or that it still runs).
type scheduleRun struct {
	ScheduledAt   time.Time `json:"scheduled_at"`
	StartedAt     time.Time `json:"started_at"`
	WorkflowID    string    `json:"workflow_id"`
	RunID         string    `json:"run_id"`
	Status        string    `json:"status,omitempty"`
	TemporalUIURL string    `json:"temporal_ui_url"`
}

type scheduleView struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	Spec        string `json:"spec"`
	// Applied is false when the schedule is declared but not on the server
	// yet (the worker or `opsflow schedules apply` creates it).
	Applied      bool         `json:"applied"`
	Paused       bool         `json:"paused"`
	Note         string       `json:"note,omitempty"`
	NextRunTimes []time.Time  `json:"next_run_times"`
	LastRun      *scheduleRun `json:"last_run,omitempty"`
	Running      []string     `json:"running"`
}

type scheduleList struct {
	Schedules []scheduleView `json:"schedules"`
}

func (s *Server) listSchedules(c echo.Context) error {
	if s.temporal == nil {
		return errTemporalUnavailable
	}
	defs := worker.Schedules(s.cfg.TaskQueue)
	out := scheduleList{Schedules: make([]scheduleView, 0, len(defs))}
	for _, def := range defs {
		v, err := s.describeSchedule(c, def)
		if err != nil {
			return err
		}
		out.Schedules = append(out.Schedules, v)
	}
	return c.JSON(http.StatusOK, out)
}

// scheduleDef finds a declared schedule: the API controls only those.
func (s *Server) scheduleDef(c echo.Context) (worker.ScheduleDef, error) {
	if s.temporal == nil {
		return worker.ScheduleDef{}, errTemporalUnavailable
	}
	id := c.Param("id")
	for _, def := range worker.Schedules(s.cfg.TaskQueue) {
		if def.ID == id {
			return def, nil
		}
	}
	return worker.ScheduleDef{}, Errorf(http.StatusNotFound, "not_found", "no schedule %q is declared", id)
}

// describeScheduleRetrying describes a schedule, trying again while the budget of
// ctx lasts when the server ran out of time: describing queries the
// schedule's internal workflow, and that query now and then times out on
// the server while the workflow is busy (a trigger, a run starting).
func describeScheduleRetrying(ctx context.Context, h client.ScheduleHandle) (*client.ScheduleDescription, error) {
	for {
		d, err := h.Describe(ctx)
		var timedOut *serviceerror.DeadlineExceeded
		if err == nil || ctx.Err() != nil || !(errors.As(err, &timedOut) || errors.Is(err, context.DeadlineExceeded)) {
			return d, err
		}
	}
}

func (s *Server) describeSchedule(c echo.Context, def worker.ScheduleDef) (scheduleView, error) {
	v := scheduleView{ID: def.ID, Description: def.Description, Spec: specString(def.Spec),
		NextRunTimes: []time.Time{}, Running: []string{}}
	ctx, cancel := context.WithTimeout(c.Request().Context(), scheduleDescribeLimit)
	defer cancel()
	d, err := describeScheduleRetrying(ctx, s.temporal.ScheduleClient().GetHandle(ctx, def.ID))
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return v, nil
	}
	if err != nil {
		return v, s.temporalError(c, "describe schedule", err)
	}
	v.Applied = true
	if st := d.Schedule.State; st != nil {
		v.Paused, v.Note = st.Paused, st.Note
	}
	v.NextRunTimes = d.Info.NextActionTimes[:min(len(d.Info.NextActionTimes), nextRunTimes)]
	for _, r := range d.Info.RunningWorkflows {
		v.Running = append(v.Running, r.WorkflowID)
	}
	if n := len(d.Info.RecentActions); n > 0 {
		last := d.Info.RecentActions[n-1]
		if wf := last.StartWorkflowResult; wf != nil {
			v.LastRun = &scheduleRun{ScheduledAt: last.ScheduleTime, StartedAt: last.ActualTime,
				WorkflowID: wf.WorkflowID, RunID: wf.FirstExecutionRunID, TemporalUIURL: s.temporalUIURL(wf.WorkflowID)}
			// The outcome is best effort: the run may be gone from
			// visibility while the schedule still remembers it.
			if desc, err := s.temporal.DescribeWorkflowExecution(ctx, wf.WorkflowID, wf.FirstExecutionRunID); err == nil {
				v.LastRun.Status = strings.ToLower(desc.GetWorkflowExecutionInfo().GetStatus().String())
			}
		}
	}
	return v, nil
}

// specString renders a declared spec for people: cron lines or intervals,
// always in UTC.
func specString(spec client.ScheduleSpec) string {
	var parts []string
	for _, c := range spec.CronExpressions {
		parts = append(parts, "cron "+c+" UTC")
	}
	for _, i := range spec.Intervals {
		p := "every " + i.Every.String()
		if i.Offset != 0 {
			p += " offset " + i.Offset.String()
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// scheduleNote is the optional body of pause and unpause.
type scheduleNote struct {
	Note string `json:"note"`
}

func (s *Server) triggerSchedule(c echo.Context) error {
	return s.controlSchedule(c, auditScheduleTrigger, nil, func(ctx context.Context, h client.ScheduleHandle) error {
		return h.Trigger(ctx, client.ScheduleTriggerOptions{})
	})
}

func (s *Server) pauseSchedule(c echo.Context) error {
	return s.controlScheduleWithNote(c, auditSchedulePause, "paused", func(ctx context.Context, h client.ScheduleHandle, note string) error {
		return h.Pause(ctx, client.SchedulePauseOptions{Note: note})
	})
}

func (s *Server) unpauseSchedule(c echo.Context) error {
	return s.controlScheduleWithNote(c, auditScheduleUnpause, "unpaused", func(ctx context.Context, h client.ScheduleHandle, note string) error {
		return h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: note})
	})
}

func (s *Server) controlScheduleWithNote(c echo.Context, action, verb string, op func(context.Context, client.ScheduleHandle, string) error) error {
	var in scheduleNote
	if err := decodeJSON(c, &in, false); err != nil {
		return err
	}
	if len(in.Note) > maxScheduleNote {
		return BadParam("note", "must be at most 500 characters")
	}
	// The note says who did it, so the Temporal UI tells it too.
	note := verb + " by " + auditActor(c)
	if in.Note != "" {
		note = in.Note + " (" + note + ")"
	}
	return s.controlSchedule(c, action, map[string]any{"note": in.Note}, func(ctx context.Context, h client.ScheduleHandle) error {
		return op(ctx, h, note)
	})
}

type scheduleBackfillRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// backfillSchedule runs the schedule's action for every time it would have
// fired in [from, to), whatever its overlap policy.
func (s *Server) backfillSchedule(c echo.Context) error {
	var in scheduleBackfillRequest
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	from, err := parseInstant("from", in.From)
	if err != nil {
		return err
	}
	to, err := parseInstant("to", in.To)
	if err != nil {
		return err
	}
	switch {
	case !from.Before(to):
		return BadParam("to", "must be after from")
	case to.Sub(from) > maxScheduleBackfill:
		return BadParam("to", "must be at most 366 days after from")
	case to.After(s.now()):
		return BadParam("to", "must not be in the future")
	}
	details := map[string]any{"from": from, "to": to}
	return s.controlSchedule(c, auditScheduleBackfill, details, func(ctx context.Context, h client.ScheduleHandle) error {
		return h.Backfill(ctx, client.ScheduleBackfillOptions{Backfill: []client.ScheduleBackfill{{
			Start: from, End: to, Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
		}}})
	})
}

// parseInstant takes RFC 3339 or a YYYY-MM-DD day (its UTC midnight).
func parseInstant(field, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, BadParam(field, "must be an RFC 3339 time or a YYYY-MM-DD date")
}

// controlSchedule applies op to a declared schedule, audit-logs it and
// answers the schedule's new state.
func (s *Server) controlSchedule(c echo.Context, action string, details map[string]any, op func(context.Context, client.ScheduleHandle) error) error {
	def, err := s.scheduleDef(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	err = op(ctx, s.temporal.ScheduleClient().GetHandle(ctx, def.ID))
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return Errorf(http.StatusNotFound, "not_found", "schedule %q is not applied yet: start a worker or run `opsflow schedules apply`", def.ID)
	}
	if err != nil {
		return s.temporalError(c, action, err)
	}
	if details == nil {
		details = map[string]any{}
	}
	if err := db.InsertAudit(ctx, s.db.Bun, &db.AuditEntry{Actor: auditActor(c), Action: action,
		Target: "schedule:" + def.ID, Details: details}); err != nil {
		return err
	}
	v, err := s.describeSchedule(c, def)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}
