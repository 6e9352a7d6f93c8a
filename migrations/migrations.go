// Package migrations embeds opsflow's schema as plain SQL files run by Bun's
// migrator. Files named *.tx.up.sql run inside one transaction each.
package migrations

import (
	"embed"

	"github.com/uptrace/bun/migrate"
)

//go:embed *.sql
var files embed.FS

// Migrations is the ordered set of schema migrations.
var Migrations = migrate.NewMigrations()

func init() {
	if err := Migrations.Discover(files); err != nil {
		panic(err)
	}
}
