package db

import (
	"context"
	"fmt"

	"github.com/uptrace/bun/migrate"

	"github.com/opsflow/opsflow/migrations"
)

// MigrationStatus describes one migration.
type MigrationStatus struct {
	Name    string
	Applied bool
}

func (d *DB) migrator(ctx context.Context) (*migrate.Migrator, error) {
	m := migrate.NewMigrator(d.Bun, migrations.Migrations, migrate.WithMarkAppliedOnSuccess(true))
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("init migrations: %w", MapError(err))
	}
	return m, nil
}

// withMigrationLock runs fn while holding the migrator's lock, so that several
// processes starting at once apply each migration exactly once.
func (d *DB) withMigrationLock(ctx context.Context, fn func(*migrate.Migrator) error) error {
	// Bun's lock is a row insert; an advisory lock makes waiters queue instead
	// of failing when two processes start together.
	conn, err := d.Pool.Acquire(ctx)
	if err != nil {
		return MapError(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext('opsflow_migrations'))"); err != nil {
		return MapError(err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext('opsflow_migrations'))") //nolint:errcheck
	m, err := d.migrator(ctx)
	if err != nil {
		return err
	}
	return fn(m)
}

// MigrateUp applies every pending migration and returns their names.
func (d *DB) MigrateUp(ctx context.Context) ([]string, error) {
	var applied []string
	err := d.withMigrationLock(ctx, func(m *migrate.Migrator) error {
		group, err := m.Migrate(ctx)
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		for _, mig := range group.Migrations {
			applied = append(applied, mig.Name)
		}
		return nil
	})
	return applied, err
}

// MigrateDown rolls back the last group of migrations.
func (d *DB) MigrateDown(ctx context.Context) ([]string, error) {
	var rolled []string
	err := d.withMigrationLock(ctx, func(m *migrate.Migrator) error {
		group, err := m.Rollback(ctx)
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		for _, mig := range group.Migrations {
			rolled = append(rolled, mig.Name)
		}
		return nil
	})
	return rolled, err
}

// MigrationStatuses lists every known migration and whether it is applied.
func (d *DB) MigrationStatuses(ctx context.Context) ([]MigrationStatus, error) {
	m, err := d.migrator(ctx)
	if err != nil {
		return nil, err
	}
	ms, err := m.MigrationsWithStatus(ctx)
	if err != nil {
		return nil, MapError(err)
	}
	out := make([]MigrationStatus, 0, len(ms))
	for _, mig := range ms {
		out = append(out, MigrationStatus{Name: mig.Name, Applied: mig.IsApplied()})
	}
	return out, nil
}
