package db

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/uptrace/bun"
)

// Notification states (the CHECK constraint's values).
const (
	NotificationPending = "pending"
	NotificationSending = "sending"
	NotificationSent    = "sent"
	NotificationDead    = "dead"
)

// Notification is one message to one channel and where its delivery stands.
// Its workflow moves it through the states, each move a compare-and-set on
// status, so a retried or repeated activity cannot move it twice.
type Notification struct {
	bun.BaseModel `bun:"table:notifications"`

	ID            string          `bun:"id,pk,type:uuid"`
	ChannelID     int64           `bun:"channel_id"`
	ChannelType   string          `bun:"channel_type"`
	Kind          string          `bun:"kind"`
	Payload       json.RawMessage `bun:"payload,type:jsonb"`
	Status        string          `bun:"status,nullzero,default:'pending'"`
	Attempts      int             `bun:"attempts"`
	LastError     string          `bun:"last_error,nullzero"`
	NextRetryAt   *time.Time      `bun:"next_retry_at"`
	LastAttemptAt *time.Time      `bun:"last_attempt_at"`
	SentAt        *time.Time      `bun:"sent_at"`
	DeadAt        *time.Time      `bun:"dead_at"`
	CreatedAt     time.Time       `bun:"created_at,nullzero,default:now()"`
	WorkflowID    string          `bun:"workflow_id"`
}

// InsertNotification stores a new notification.
func InsertNotification(ctx context.Context, idb bun.IDB, n *Notification) error {
	_, err := idb.NewInsert().Model(n).Returning("status, created_at").Exec(ctx)
	return MapError(err)
}

// DeleteNotification removes a notification whose workflow never started.
func DeleteNotification(ctx context.Context, idb bun.IDB, id string) error {
	_, err := idb.NewDelete().Model((*Notification)(nil)).Where("id = ?", id).Exec(ctx)
	return MapError(err)
}

// GetNotification returns one notification.
func GetNotification(ctx context.Context, idb bun.IDB, id string) (*Notification, error) {
	n := new(Notification)
	if err := idb.NewSelect().Model(n).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, MapError(err)
	}
	return n, nil
}

// NotificationFilter selects notifications, newest first.
type NotificationFilter struct {
	// Status is one state, or empty for all.
	Status string
	// ChannelID is one channel, or 0 for all.
	ChannelID int64
	// Before is the paging cursor: only ids before it (older) are listed.
	Before string
	Limit  int
}

// ListNotifications returns up to f.Limit notifications matching f, newest
// first. UUIDv7 ids sort by creation time, so the last id is the next
// page's cursor.
func ListNotifications(ctx context.Context, idb bun.IDB, f NotificationFilter) ([]Notification, error) {
	var ns []Notification
	q := idb.NewSelect().Model(&ns).Order("id DESC").Limit(int64(f.Limit))
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.ChannelID != 0 {
		q = q.Where("channel_id = ?", f.ChannelID)
	}
	if f.Before != "" {
		q = q.Where("id < ?", f.Before)
	}
	err := q.Scan(ctx)
	return ns, MapError(err)
}

// StartAttempt moves a pending (or, after a lost attempt, still sending)
// notification to sending and counts the attempt. ok is false when the
// notification is in neither state; n is then nil.
func StartAttempt(ctx context.Context, idb bun.IDB, id string, at time.Time) (n *Notification, ok bool, err error) {
	n = new(Notification)
	err = idb.NewUpdate().Model(n).
		Set("status = ?", NotificationSending).
		Set("attempts = attempts + 1").
		Set("last_attempt_at = ?", at).
		Set("next_retry_at = NULL").
		Where("id = ?", id).
		Where("status IN (?, ?)", NotificationPending, NotificationSending).
		Returning("*").
		Scan(ctx)
	if err != nil {
		err = MapError(err)
		if errors.Is(err, ErrNotFound) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return n, true, nil
}

// RecordSent marks a sending notification sent and returns its channel
// type. ok is false when it was not sending (a repeat of a recorded
// delivery).
func RecordSent(ctx context.Context, idb bun.IDB, id string, at time.Time) (channelType string, ok bool, err error) {
	err = idb.NewUpdate().Model((*Notification)(nil)).
		Set("status = ?", NotificationSent).
		Set("sent_at = ?", at).
		Set("last_error = NULL").
		Set("next_retry_at = NULL").
		Where("id = ?", id).Where("status = ?", NotificationSending).
		Returning("channel_type").
		Scan(ctx, &channelType)
	if err = MapError(err); errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	return channelType, err == nil, err
}

// RecordFailure puts a sending notification back to pending with the
// attempt's error and, unless it was the budget's last, the next attempt's
// time.
func RecordFailure(ctx context.Context, idb bun.IDB, id, lastError string, nextRetryAt *time.Time) (ok bool, err error) {
	res, err := idb.NewUpdate().Model((*Notification)(nil)).
		Set("status = ?", NotificationPending).
		Set("last_error = ?", lastError).
		Set("next_retry_at = ?", nextRetryAt).
		Where("id = ?", id).Where("status = ?", NotificationSending).
		Exec(ctx)
	return changed(res, err)
}

// MarkDead dead-letters a pending or sending notification. An empty
// lastError keeps the recorded one.
func MarkDead(ctx context.Context, idb bun.IDB, id, lastError string, at time.Time) (ok bool, err error) {
	res, err := idb.NewUpdate().Model((*Notification)(nil)).
		Set("status = ?", NotificationDead).
		Set("dead_at = ?", at).
		Set("next_retry_at = NULL").
		Set("last_error = COALESCE(NULLIF(?, ''), last_error)", lastError).
		Where("id = ?", id).
		Where("status IN (?, ?)", NotificationPending, NotificationSending).
		Exec(ctx)
	return changed(res, err)
}

// Reopen moves a dead notification back to pending.
func Reopen(ctx context.Context, idb bun.IDB, id string) (ok bool, err error) {
	res, err := idb.NewUpdate().Model((*Notification)(nil)).
		Set("status = ?", NotificationPending).
		Set("dead_at = NULL").
		Set("next_retry_at = NULL").
		Where("id = ?", id).Where("status = ?", NotificationDead).
		Exec(ctx)
	return changed(res, err)
}

// DeadLetterDepth counts dead notifications by channel type.
func DeadLetterDepth(ctx context.Context, idb bun.IDB) (map[string]int64, error) {
	var rows []struct {
		ChannelType string `bun:"channel_type"`
		N           int64  `bun:"n"`
	}
	err := idb.NewSelect().Model((*Notification)(nil)).
		Column("channel_type").ColumnExpr("count(*) AS n").
		Where("status = ?", NotificationDead).
		Group("channel_type").
		Scan(ctx, &rows)
	if err != nil {
		return nil, MapError(err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.ChannelType] = r.N
	}
	return out, nil
}

func changed(res interface{ RowsAffected() (int64, error) }, err error) (bool, error) {
	if err != nil {
		return false, MapError(err)
	}
	n, err := res.RowsAffected()
	return n > 0, MapError(err)
}
