package db

import (
	"context"
	"time"

	"github.com/uptrace/bun"
)

// Audit actions.
const (
	AuditChannelCreate       = "channel.create"
	AuditChannelUpdate       = "channel.update"
	AuditChannelDelete       = "channel.delete"
	AuditChannelTest         = "channel.test"
	AuditNotificationRequeue = "notification.requeue"
)

// AuditEntry records an admin action (SPEC §12): who did what to which
// object, and when. Details never hold a secret.
type AuditEntry struct {
	bun.BaseModel `bun:"table:audit_log"`

	ID      int64          `bun:"id,pk,autoincrement"`
	At      time.Time      `bun:"at,nullzero,default:now()"`
	Actor   string         `bun:"actor"`
	Action  string         `bun:"action"`
	Target  string         `bun:"target"`
	Details map[string]any `bun:"details,type:jsonb"`
}

// InsertAudit appends an entry. Pass the transaction that makes the change,
// so the entry exists exactly when the change does.
func InsertAudit(ctx context.Context, idb bun.IDB, e *AuditEntry) error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	_, err := idb.NewInsert().Model(e).Returning("id, at").Exec(ctx)
	return MapError(err)
}
