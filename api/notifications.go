package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/workflows"
)

// Paging of the notification list.
const (
	defaultNotificationPage = 50
	maxNotificationPage     = 200
)

// statusQueryTimeout bounds the live status query of one notification: a
// slow Temporal costs the detail view its live part, not its answer.
const statusQueryTimeout = 2 * time.Second

// newNotifyService wires the notification service from the API's
// dependencies and registers the dead-letter depth gauge.
func newNotifyService(d Deps) *notify.Service {
	box, err := notify.SecretsFromConfig(d.Config)
	if err != nil {
		d.Logger.Error("OPSFLOW_SECRET_KEY unusable; channel endpoints answer 503", "err", err)
	}
	d.Registry.MustRegister(notify.NewDeadLetterCollector(d.DB, d.Logger))
	return &notify.Service{
		DB: d.DB, Temporal: d.Temporal, TaskQueue: d.Config.TaskQueue,
		Retry: notify.RetryFromConfig(d.Config), Secrets: box, Outbound: notify.NewOutbound(d.Config.NotifyAllow),
	}
}

// notificationView is a notification as clients see it.
type notificationView struct {
	ID            string          `json:"id"`
	ChannelID     int64           `json:"channel_id"`
	ChannelType   string          `json:"channel_type"`
	Kind          string          `json:"kind"`
	Status        string          `json:"status"`
	Attempts      int             `json:"attempts"`
	LastError     string          `json:"last_error,omitempty"`
	NextRetryAt   *time.Time      `json:"next_retry_at,omitempty"`
	LastAttemptAt *time.Time      `json:"last_attempt_at,omitempty"`
	SentAt        *time.Time      `json:"sent_at,omitempty"`
	DeadAt        *time.Time      `json:"dead_at,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	Payload       json.RawMessage `json:"payload"`
	WorkflowID    string          `json:"workflow_id"`
	TemporalUIURL string          `json:"temporal_ui_url"`
	// Live is the workflow's own answer to the status query; absent when
	// Temporal did not answer in time.
	Live *workflows.NotifyStatus `json:"live,omitempty"`
}

func (s *Server) notificationView(n *db.Notification) notificationView {
	return notificationView{
		ID: n.ID, ChannelID: n.ChannelID, ChannelType: n.ChannelType, Kind: n.Kind, Status: n.Status,
		Attempts: n.Attempts, LastError: n.LastError, NextRetryAt: n.NextRetryAt, LastAttemptAt: n.LastAttemptAt,
		SentAt: n.SentAt, DeadAt: n.DeadAt, CreatedAt: n.CreatedAt, Payload: n.Payload,
		WorkflowID: n.WorkflowID, TemporalUIURL: s.temporalUIURL(n.WorkflowID),
	}
}

// temporalUIURL links to a workflow in the Temporal UI.
func (s *Server) temporalUIURL(workflowID string) string {
	return s.cfg.TemporalUIURL + "/namespaces/" + url.PathEscape(s.cfg.TemporalNamespace) +
		"/workflows/" + url.PathEscape(workflowID)
}

type notificationPage struct {
	Notifications []notificationView `json:"notifications"`
	// NextCursor fetches the next (older) page; absent on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

var listStatuses = map[string]string{
	"all": "", db.NotificationPending: db.NotificationPending, db.NotificationSending: db.NotificationSending,
	db.NotificationSent: db.NotificationSent, db.NotificationDead: db.NotificationDead,
}

func (s *Server) listNotifications(c echo.Context) error {
	f, err := notificationFilter(c)
	if err != nil {
		return err
	}
	limit := f.Limit
	f.Limit++ // one more tells whether a next page exists
	ns, err := db.ListNotifications(c.Request().Context(), s.db.Bun, f)
	if err != nil {
		return err
	}
	page := notificationPage{Notifications: make([]notificationView, 0, min(len(ns), limit))}
	for i := range ns[:min(len(ns), limit)] {
		page.Notifications = append(page.Notifications, s.notificationView(&ns[i]))
	}
	if len(ns) > limit {
		page.NextCursor = ns[limit-1].ID
	}
	return c.JSON(http.StatusOK, page)
}

func notificationFilter(c echo.Context) (db.NotificationFilter, error) {
	f := db.NotificationFilter{Limit: defaultNotificationPage}
	raw := c.QueryParam("status")
	if raw == "" {
		raw = "all"
	}
	status, ok := listStatuses[raw]
	if !ok {
		return f, BadParam("status", "must be all, pending, sending, sent or dead")
	}
	f.Status = status
	if v := c.QueryParam("channel"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return f, BadParam("channel", "must be a channel id")
		}
		f.ChannelID = id
	}
	if v := c.QueryParam("cursor"); v != "" {
		if _, err := uuid.Parse(v); err != nil {
			return f, BadParam("cursor", "must be a next_cursor from a previous page")
		}
		f.Before = v
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxNotificationPage {
			return f, BadParam("limit", "must be from 1 to "+strconv.Itoa(maxNotificationPage))
		}
		f.Limit = n
	}
	return f, nil
}

func notificationID(c echo.Context) (string, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return "", BadParam("id", "must be a notification id (UUID)")
	}
	return id.String(), nil
}

func (s *Server) getNotification(c echo.Context) error {
	id, err := notificationID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	n, err := db.GetNotification(ctx, s.db.Bun, id)
	if err != nil {
		return err
	}
	view := s.notificationView(n)
	qctx, cancel := context.WithTimeout(ctx, statusQueryTimeout)
	defer cancel()
	if live, err := s.notify.Status(qctx, n); err == nil {
		view.Live = &live
	} else {
		s.log.Debug("notification status query failed", "notification", id, "err", err)
	}
	return c.JSON(http.StatusOK, view)
}

type requeueRequest struct {
	Reason string `json:"reason"`
}

type requeueAccepted struct {
	notificationView
	Requeued bool `json:"requeued"`
}

func (s *Server) requeueNotification(c echo.Context) error {
	id, err := notificationID(c)
	if err != nil {
		return err
	}
	var req requeueRequest
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	n, err := s.notify.Requeue(c.Request().Context(), id, auditActor(c), req.Reason)
	if err != nil {
		return s.notifyError(c, err)
	}
	return c.JSON(http.StatusAccepted, requeueAccepted{notificationView: s.notificationView(n), Requeued: true})
}

type bulkRequeueRequest struct {
	// ChannelID limits the requeue to one channel; 0 takes every channel.
	ChannelID int64  `json:"channel_id"`
	Limit     int    `json:"limit"`
	Reason    string `json:"reason"`
}

func (s *Server) requeueNotifications(c echo.Context) error {
	req := bulkRequeueRequest{Limit: notify.MaxBulkRequeue}
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	if req.ChannelID < 0 {
		return BadParam("channel_id", "must be a channel id, or 0 for every channel")
	}
	res, err := s.notify.RequeueDead(c.Request().Context(), req.ChannelID, req.Limit, auditActor(c), req.Reason)
	if err != nil {
		return s.notifyError(c, err)
	}
	return c.JSON(http.StatusOK, res)
}
