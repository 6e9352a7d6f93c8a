package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/opsflow/opsflow/db"
)

// Error is an error a client may see: a status, a stable machine code and a
// message naming the problem. Anything else reaching the error handler is
// reported as a generic internal error and logged.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Errorf builds a client-facing error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadParam reports an invalid request parameter by name.
func BadParam(name, reason string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_parameter",
		Message: fmt.Sprintf("parameter %q: %s", name, reason), Details: map[string]string{"parameter": name}}
}

type errorBody struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
	Details   any    `json:"details,omitempty"`
}

// classify turns any error into the client-facing form. Database and
// unknown errors become fixed messages: raw driver text never leaves.
func classify(err error) *Error {
	var apiErr *Error
	var httpErr *echo.HTTPError
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &httpErr):
		return fromHTTPError(httpErr)
	case errors.Is(err, db.ErrNotFound):
		return Errorf(http.StatusNotFound, "not_found", "resource not found")
	case errors.Is(err, db.ErrConflict):
		return Errorf(http.StatusConflict, "conflict", "the request conflicts with the current state; reload and retry")
	case errors.Is(err, db.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return Errorf(http.StatusServiceUnavailable, "unavailable", "a dependency is unavailable; retry later")
	}
	return Errorf(http.StatusInternalServerError, "internal", "internal error")
}

func fromHTTPError(he *echo.HTTPError) *Error {
	msg, ok := he.Message.(string)
	if !ok || msg == "" {
		msg = http.StatusText(he.Code)
	}
	code := map[int]string{
		http.StatusNotFound:              "not_found",
		http.StatusMethodNotAllowed:      "method_not_allowed",
		http.StatusRequestEntityTooLarge: "body_too_large",
		http.StatusUnsupportedMediaType:  "unsupported_media_type",
		http.StatusUnauthorized:          "unauthorized",
		http.StatusForbidden:             "forbidden",
		http.StatusTooManyRequests:       "rate_limited",
		http.StatusServiceUnavailable:    "unavailable",
	}[he.Code]
	if code == "" {
		if he.Code >= 500 {
			return Errorf(http.StatusInternalServerError, "internal", "internal error")
		}
		code = "bad_request"
	}
	return &Error{Status: he.Code, Code: code, Message: msg}
}

// errorHandler is Echo's central error handler.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := classify(err)
		reqID := c.Response().Header().Get(echo.HeaderXRequestID)
		if e.Status >= 500 {
			log.Error("request failed", "request_id", reqID, "method", c.Request().Method,
				"path", c.Path(), "status", e.Status, "err", err)
		}
		body := errorBody{Error: errorPayload{Code: e.Code, Message: e.Message, RequestID: reqID, Details: e.Details}}
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(e.Status)
		} else {
			err = c.JSON(e.Status, body)
		}
		if err != nil {
			log.Error("write error response", "request_id", reqID, "err", err)
		}
	}
}
