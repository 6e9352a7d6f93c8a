package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/opsflow/opsflow/notify"
)

// maxJSONBody bounds the configuration endpoints' bodies.
const maxJSONBody = 64 << 10

type channelList struct {
	Channels []notify.Channel `json:"channels"`
}

func (s *Server) listChannels(c echo.Context) error {
	chs, err := s.notify.ListChannels(c.Request().Context())
	if err != nil {
		return s.notifyError(c, err)
	}
	return c.JSON(http.StatusOK, channelList{Channels: chs})
}

func (s *Server) createChannel(c echo.Context) error {
	var in notify.ChannelInput
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	ch, err := s.notify.CreateChannel(c.Request().Context(), in, auditActor(c))
	if err != nil {
		return s.notifyError(c, err)
	}
	return c.JSON(http.StatusCreated, ch)
}

func (s *Server) getChannel(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ch, err := s.notify.GetChannel(c.Request().Context(), id)
	if err != nil {
		return s.notifyError(c, err)
	}
	return c.JSON(http.StatusOK, ch)
}

func (s *Server) updateChannel(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	var in notify.ChannelInput
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	ch, err := s.notify.UpdateChannel(c.Request().Context(), id, in, auditActor(c))
	if err != nil {
		return s.notifyError(c, err)
	}
	return c.JSON(http.StatusOK, ch)
}

func (s *Server) deleteChannel(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	if err := s.notify.DeleteChannel(c.Request().Context(), id, auditActor(c)); err != nil {
		return s.notifyError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) testChannel(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	n, err := s.notify.TestChannel(c.Request().Context(), id, auditActor(c))
	if err != nil {
		return s.notifyError(c, err)
	}
	return c.JSON(http.StatusAccepted, s.notificationView(n))
}

// auditActor names the caller in the audit log.
func auditActor(c echo.Context) string {
	p := PrincipalFrom(c)
	if p.Name == "" {
		return p.ID
	}
	return p.ID + " (" + p.Name + ")"
}

func pathID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, BadParam("id", "must be a positive integer")
	}
	return id, nil
}

// decodeJSON reads a bounded JSON body, refusing unknown fields. Without
// required, an empty body leaves v as it is.
func decodeJSON(c echo.Context, v any, required bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxJSONBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the body exceeds %d bytes", maxJSONBody)
	}
	if err != nil {
		return BadParam("body", "cannot be read")
	}
	if len(body) == 0 && !required {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return BadParam(typeErr.Field, "must be "+typeErr.Type.String())
		}
		// Never echo the input: a configuration body carries secrets.
		return BadParam("body", "must be one JSON object with known fields: "+jsonReason(err))
	}
	return nil
}

// jsonReason describes a decoding error without quoting the input.
func jsonReason(err error) string {
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Sprintf("invalid JSON at offset %d", syntaxErr.Offset)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return "invalid JSON"
}

// notifyError maps the notification service's errors; database errors fall
// through to the central handler.
func (s *Server) notifyError(c echo.Context, err error) error {
	var fe *notify.FieldError
	switch {
	case errors.As(err, &fe):
		return BadParam(fe.Field, fe.Reason)
	case errors.Is(err, notify.ErrNotDead):
		return Errorf(http.StatusConflict, "not_dead", "%s", err)
	case errors.Is(err, notify.ErrNoSecretKey):
		return Errorf(http.StatusServiceUnavailable, "secret_key_missing", "%s", notify.ErrNoSecretKey)
	case errors.Is(err, notify.ErrTemporal):
		s.log.Warn("temporal call failed", slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			slog.Any("err", err))
		return Errorf(http.StatusServiceUnavailable, "unavailable", "Temporal is unavailable; retry later")
	}
	return err
}
