package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/uptrace/bun"
)

// Channel is a notification destination. Its configuration is sealed (see
// package secrets); db never sees it in clear.
type Channel struct {
	bun.BaseModel `bun:"table:channels"`

	ID           int64  `bun:"id,pk,autoincrement"`
	Name         string `bun:"name"`
	Type         string `bun:"type"`
	ConfigKeyID  string `bun:"config_key_id"`
	ConfigSealed []byte `bun:"config_sealed"`
	// Retry is the per-channel retry policy override as JSON; nil means the
	// configured default.
	Retry     json.RawMessage `bun:"retry,type:jsonb,nullzero"`
	CreatedAt time.Time       `bun:"created_at,nullzero,default:now()"`
	UpdatedAt time.Time       `bun:"updated_at,nullzero,default:now()"`
	DeletedAt *time.Time      `bun:"deleted_at"`
}

// CreateChannel stores a new channel; a live channel with the same name is
// ErrConflict.
func CreateChannel(ctx context.Context, idb bun.IDB, c *Channel) error {
	_, err := idb.NewInsert().Model(c).Returning("id, created_at, updated_at").Exec(ctx)
	return MapError(err)
}

// GetChannel returns a live (not deleted) channel.
func GetChannel(ctx context.Context, idb bun.IDB, id int64) (*Channel, error) {
	c := new(Channel)
	err := idb.NewSelect().Model(c).Where("id = ?", id).Where("deleted_at IS NULL").Scan(ctx)
	if err != nil {
		return nil, MapError(err)
	}
	return c, nil
}

// ListChannels returns every live channel, oldest first.
func ListChannels(ctx context.Context, idb bun.IDB) ([]Channel, error) {
	var cs []Channel
	err := idb.NewSelect().Model(&cs).Where("deleted_at IS NULL").Order("id").Scan(ctx)
	return cs, MapError(err)
}

// UpdateChannel replaces a live channel's name, configuration and retry
// override; the type never changes.
func UpdateChannel(ctx context.Context, idb bun.IDB, c *Channel) error {
	res, err := idb.NewUpdate().Model(c).
		Column("name", "config_key_id", "config_sealed", "retry").
		Set("updated_at = now()").
		Where("id = ?", c.ID).Where("deleted_at IS NULL").
		Returning("type, created_at, updated_at").
		Exec(ctx)
	return oneRow(res, err)
}

// DeleteChannel marks a live channel deleted. Its notifications stay; any
// still in flight fail as rejected.
func DeleteChannel(ctx context.Context, idb bun.IDB, id int64) error {
	res, err := idb.NewUpdate().Model((*Channel)(nil)).
		Set("deleted_at = now()").
		Where("id = ?", id).Where("deleted_at IS NULL").
		Exec(ctx)
	return oneRow(res, err)
}

// oneRow maps "no row matched" to ErrNotFound.
func oneRow(res interface{ RowsAffected() (int64, error) }, err error) error {
	if err != nil {
		return MapError(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return MapError(err)
	}
	if n == 0 {
		return MapError(sql.ErrNoRows)
	}
	return nil
}
