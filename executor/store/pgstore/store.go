// Package pgstore is deployhook's journal on PostgreSQL: an implementation of
// executor.Store for deployhook processes (replicas behind a load balancer, or
// a service and a command line on two machines) that share one database. The
// embedded SQLite journal (executor/store) stays the default; both pass the
// conformance suite executor/store/storetest.
//
// # Schema
//
// The tables are those of the SQLite journal (jobs, steps, deliveries,
// outbox, owners, health, lanes), created and upgraded by numbered migrations
// embedded in the binary (migrations/NNNN_name.sql). Applied versions are kept
// in the table schema_migrations. Open applies the pending ones in one
// transaction under an advisory lock, so that replicas starting together
// apply each migration once, and refuses, without changing it, a database
// whose schema is newer than this binary knows.
//
// Times are stored as BIGINT unix nanoseconds, not timestamptz (which keeps
// only microseconds), so that they round-trip exactly.
//
// # Concurrency
//
// A Store is safe for concurrent use, and any number of processes may share
// one database. Unique constraints decide, never a check-then-insert: the
// deliveries table's primary key (delivery GUID, target) and a unique index
// on jobs (target, body hash) make CreateJob's deduplication atomic, so of
// any number of concurrent CreateJob calls for one delivery or one signed
// body and one target, even on several replicas, exactly one records a job.
// Adopt, Settle and Retry are single statements that report whether they
// changed a row.
//
// # Replicas
//
// Store implements executor.Lanes. ClaimLane is one INSERT … ON CONFLICT DO
// UPDATE on the lanes table, so of replicas claiming a lane at once exactly
// one gets it; a fenced write locks the lane's row FOR SHARE and checks its
// token in the transaction of the write, so no write of a replica that lost
// the lane can commit after the new holder's claim; ClaimOwed takes the
// oldest reports FOR UPDATE SKIP LOCKED and sets their claim; and a partial
// unique index on (target, sha) of a replicated lane's unfinished jobs makes
// the same SHA arriving at two replicas one job. That index also refuses an
// Adopt that would give a lane a second unfinished job of one SHA: Adopt
// then answers executor.ErrDuplicate, as CreateJob does.
//
// CreateJob of a queued job notifies the channel deployhook_queued (NOTIFY,
// with the target as payload) in its transaction, and WatchQueue LISTENs on
// it (executor.QueueWatcher): the replica that holds the job's lane starts it
// at once, whichever replica recorded it, instead of at its next poll.
//
// # Start-up
//
// Open connects and migrates. Connect returns a Store without connecting,
// for a process that must start while the database is down; Migrate
// (executor.Migrator) then migrates it once the database answers, and
// Unavailable tells such an outage from a refusal.
//
// # Secrets
//
// The database URL may carry a password. No error or log line of this
// package contains the URL.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/migrations"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is the PostgreSQL journal. It implements executor.Store; all its
// methods are safe for concurrent use. The zero value is not usable: call
// Open (or Connect).
type Store struct {
	lg       *slog.Logger
	pool     *pgxpool.Pool
	database string // the database's name, for errors (never the URL)

	migrateMu sync.Mutex
	migrated  atomic.Bool
}

var (
	_ executor.Store    = (*Store)(nil)
	_ executor.Migrator = (*Store)(nil)
)

// Open connects to the PostgreSQL database at url (a postgres:// URL or a
// key=value connection string, as libpq takes them) and migrates its schema
// to the version this binary knows: Connect, then Migrate. It refuses a
// database whose schema is newer (written by a newer deployhook), without
// modifying it. ctx bounds the connection and the migrations only. The caller
// must Close the Store.
//
// Errors never contain url, which may carry a password.
func Open(ctx context.Context, lg *slog.Logger, url string) (*Store, error) {
	s, err := Connect(lg, url)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Connect returns the journal on the PostgreSQL database at url without
// connecting to it: connections are made when a method needs one. The schema
// is not migrated; Migrate must succeed before the other methods are used
// (executor.Executor.Run calls it, and retries until the database answers).
// It fails only when url cannot be parsed. The caller must Close the Store.
//
// Errors never contain url, which may carry a password.
func Connect(lg *slog.Logger, url string) (*Store, error) {
	if url == "" {
		return nil, errors.New("open journal: empty database URL")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The error quotes the URL, password and all, when it cannot redact
		// it: say what is wrong without it.
		return nil, errors.New("open journal: the database URL is neither a valid postgres:// URL nor a key=value connection string")
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open journal on database %s: %w", cfg.ConnConfig.Database, err)
	}
	return &Store{lg: lg, pool: pool, database: cfg.ConnConfig.Database}, nil
}

// Migrate brings the database's schema to the version this binary knows,
// unless it did so before (then it returns nil at once). It refuses a
// database whose schema is newer, without modifying it. It implements
// executor.Migrator.
func (s *Store) Migrate(ctx context.Context) error {
	if s.migrated.Load() {
		return nil
	}
	s.migrateMu.Lock()
	defer s.migrateMu.Unlock()
	if s.migrated.Load() {
		return nil
	}
	if err := migrate(ctx, s.lg, s.pool, schema()); err != nil {
		return fmt.Errorf("open journal on database %s: %w", s.database, err)
	}
	s.migrated.Store(true)
	s.lg.Debug("journal open", "database", s.database)
	return nil
}

// Unavailable reports whether err, from Open or Migrate, says that the
// database could not be reached or is not taking connections for now (it is
// down, starting, shutting down, failing over, or out of connection slots):
// an outage that a later attempt may outlive. A database that answered and
// refused (a wrong password, no such database, a schema newer than this
// binary knows) is not unavailable: retrying does not help.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pe.Code[:min(2, len(pe.Code))] {
		case "08", // connection exception
			"53", // insufficient resources: too many connections, out of memory
			"57": // operator intervention: shutting down, starting up, admin shutdown
			return true
		}
		return false
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true // no server answered (a PgError is handled above)
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}

// Ping checks that the database answers a query. It writes nothing: a
// readiness probe should call Check.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping journal: %w", err)
	}
	return nil
}

// Close closes the journal's connections, waiting for those in use to be
// released. Calls on a closed Store fail. Close is safe to call twice.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

//go:embed migrations/*.sql
var embedded embed.FS

// schema returns the embedded migrations.
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

// migrateLock is the key of the transaction-scoped advisory lock that
// serializes migrations of one database across processes ("dhjr").
const migrateLock = 0x64686a72

// migrate brings the database to the newest version in fsys, in one
// transaction (PostgreSQL's DDL is transactional) that holds an advisory lock,
// so that processes migrating one database at once apply each migration once.
// A database whose version is newer than fsys knows is refused before
// anything is written.
func migrate(ctx context.Context, lg *slog.Logger, pool *pgxpool.Pool, fsys fs.FS) error {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY,
		applied BIGINT  NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if v > len(ms) {
		return fmt.Errorf("journal schema version %d is newer than this deployhook knows (%d): run a newer deployhook", v, len(ms))
	}
	for _, m := range ms[v:] {
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)`,
			m.Version, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		lg.Info("journal migrated", "version", m.Version, "migration", m.Name)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}
