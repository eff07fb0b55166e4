package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/deployhook/deployhook/internal/migrations"
)

// migrations holds the schema, one numbered file per version:
// migrations/0001_init.sql is version 1, and so on. A migration is never
// edited once released; a change is a new file.
//
//go:embed migrations/*.sql
var embedded embed.FS

// schema returns the embedded migrations as migrate reads them.
func schema() fs.FS {
	sub, err := fs.Sub(embedded, "migrations")
	if err != nil {
		panic(err) // a constant directory that go:embed checked at build time
	}
	return sub
}

// migration is one numbered schema change (internal/migrations).
type migration = migrations.Migration

// loadMigrations reads the migrations of fsys (migrations.Load).
func loadMigrations(fsys fs.FS) ([]migration, error) { return migrations.Load(fsys) }

// migrate brings the database on db (a pool of one connection whose BEGIN is
// IMMEDIATE) to the newest version in fsys. Each pending migration runs in its
// own transaction together with the bump of user_version, and the version is
// read again inside that transaction, so two processes opening one journal at
// once apply each migration once. Running migrate on an up-to-date database
// changes nothing. A database whose version is newer than fsys knows is refused
// before anything is written.
func migrate(ctx context.Context, lg *slog.Logger, db *sql.DB, fsys fs.FS) error {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	latest := len(ms)
	for {
		done, err := migrateOne(ctx, lg, db, ms, latest)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next pending migration, if any, and reports whether
// there was none.
func migrateOne(ctx context.Context, lg *slog.Logger, db *sql.DB, ms []migration, latest int) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback()

	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return false, fmt.Errorf("migrate: read schema version: %w", err)
	}
	switch {
	case v > latest:
		return false, fmt.Errorf("journal schema version %d is newer than this deployhook knows (%d): "+
			"it was written by a newer deployhook; run that version, or point --data-dir elsewhere", v, latest)
	case v == latest:
		return true, tx.Commit()
	}
	m := ms[v] // versions are 1..latest, so ms[v] is version v+1
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("migrate to version %d (%s): %w", m.Version, m.Name, err)
	}
	// PRAGMA takes no bound parameters; m.Version is an int we parsed.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.Version)); err != nil {
		return false, fmt.Errorf("migrate to version %d: set schema version: %w", m.Version, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate to version %d: commit: %w", m.Version, err)
	}
	lg.Info("journal schema migrated", "version", m.Version, "migration", m.Name)
	return false, nil
}
