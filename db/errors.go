package db

import (
	"context"
	"database/sql"
	"errors"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Error kinds callers branch on with errors.Is. Raw driver errors stay wrapped
// inside *Error for logs; the API only ever shows the kind.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("database unavailable")
)

// Error carries a kind and the underlying driver error.
type Error struct {
	Kind error
	Err  error
}

func (e *Error) Error() string     { return e.Kind.Error() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error     { return e.Err }
func (e *Error) Is(err error) bool { return err == e.Kind }

// MapError classifies a database error; nil and context errors pass through
// unchanged, unknown errors are returned as they are (callers treat them as
// internal).
func MapError(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) {
		return &Error{Kind: ErrNotFound, Err: err}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505", pgErr.Code == "23503", pgErr.Code == "23P01":
			return &Error{Kind: ErrConflict, Err: err}
		case pgErr.Code == "40001", pgErr.Code == "40P01", pgErr.Code == "55P03":
			return &Error{Kind: ErrUnavailable, Err: err} // serialization, deadlock, lock timeout: retry later
		case len(pgErr.Code) == 5 && (pgErr.Code[:2] == "08" || pgErr.Code[:2] == "53" || pgErr.Code[:2] == "57"):
			return &Error{Kind: ErrUnavailable, Err: err} // connection, resources, operator intervention
		}
		return err
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, net.ErrClosed) {
		return &Error{Kind: ErrUnavailable, Err: err}
	}
	return err
}
