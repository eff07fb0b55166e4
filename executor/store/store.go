package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/deployhook/deployhook/executor"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// BusyTimeout is how long a statement waits for another connection or process
// holding the database's write lock before it fails with SQLITE_BUSY.
const BusyTimeout = 5 * time.Second

// readConns is the size of the read-only connection pool.
const readConns = 4

// Store is the SQLite journal. It implements executor.Store; all its methods are
// safe for concurrent use. The zero value is not usable: call Open.
type Store struct {
	lg   *slog.Logger
	path string
	w    *sql.DB // exactly one connection: every write, serialized
	r    *sql.DB // read-only connections: every read, concurrent with writes
}

var _ executor.Store = (*Store)(nil)

// Store also has the methods that issue 8 adds to executor.Store: owners and
// their leases, what a target deployed, retention and a write probe.
var _ interface {
	Deployed(ctx context.Context, target, sha string) (executor.Job, error)
	Beat(ctx context.Context, o executor.Owner) error
	Orphans(ctx context.Context, now time.Time) ([]executor.Job, error)
	Adopt(ctx context.Context, id, from, to string) error
	Prune(ctx context.Context, before time.Time, keep int) (int, error)
	Check(ctx context.Context) error
} = (*Store)(nil)

// Open opens the journal at path, creating the file (mode 0600) and its
// directory (mode 0700) if they are missing, and migrates its schema to the
// version this binary knows. It refuses, without modifying any: a file that is
// not a SQLite database, a journal whose schema is newer than this binary's
// (written by a newer deployhook), and a journal file, or its -wal, -shm or
// -journal file, that is a symbolic link or not a regular file (the error says
// what to fix). ctx bounds the opening and the
// migrations only. The caller must Close the Store.
func Open(ctx context.Context, lg *slog.Logger, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open journal: empty path")
	}
	if strings.ContainsRune(path, '?') {
		// The driver takes everything after '?' as DSN parameters.
		return nil, fmt.Errorf("open journal %s: the path must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open journal: create directory: %w", err)
	}
	if err := checkFiles(path); err != nil {
		return nil, err
	}
	// Create the file ourselves so it is private: SQLite would create it with
	// 0644 (less the umask), and it gives the same mode to its -wal and -shm
	// files. O_NOFOLLOW: a link put there after checkFiles is refused too.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, linkError(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}

	s := &Store{lg: lg, path: path}
	s.w, err = sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxIdleTime(0)
	s.w.SetConnMaxLifetime(0)

	if err := migrate(ctx, lg, s.w, schema()); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}

	s.r, err = sql.Open("sqlite", dsn(path, true))
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(readConns)
	s.r.SetMaxIdleConns(readConns)
	if err := s.r.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	lg.Debug("journal open", "path", path)
	return s, nil
}

// journalFiles are the suffixes of the files SQLite keeps next to the
// database: the write-ahead log, the shared-memory index, and the rollback
// journal (only while the database is switched to WAL mode).
var journalFiles = []string{"", "-wal", "-shm", "-journal"}

// checkFiles refuses a journal whose database file, or one of the files SQLite
// keeps beside it, is a symbolic link or not a regular file. SQLite would
// follow a link and write wherever it points: to a file of another program, or
// to one that someone who can change the link chooses. Missing files are fine
// (Open and SQLite create them). It does not check the directories above.
func checkFiles(path string) error {
	for _, suffix := range journalFiles {
		name := path + suffix
		fi, err := os.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("open journal: %w", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return linkError(name)
		case !fi.Mode().IsRegular():
			return fmt.Errorf("open journal: %s is not a regular file (%v): remove it, or point data_dir elsewhere", name, fi.Mode().Type())
		}
	}
	return nil
}

// linkError is the error for a journal file that is a symbolic link.
func linkError(name string) error {
	return fmt.Errorf("open journal: %s is a symbolic link, and deployhook does not follow one to its journal: "+
		"replace the link with the file it points to (or remove it to start a new journal), or point data_dir at the directory that holds the file", name)
}

// dsn is the data source name of the journal for modernc.org/sqlite. The
// pragmas run on every new connection of the pool, busy_timeout first.
//
//   - journal_mode(WAL): readers never block the writer nor the writer readers.
//   - synchronous(FULL): in WAL mode, fsync the WAL at every commit, so what
//     returned survives a power loss, not only a crash (see the package doc).
//   - foreign_keys(1): steps and deliveries must name a job; SQLite enforces
//     foreign keys only when asked to, per connection.
//   - busy_timeout: wait for another process's write lock instead of failing.
//   - _txlock=immediate (writer): BEGIN takes the write lock at once, so a
//     transaction that reads then writes cannot fail half-way with SQLITE_BUSY
//     (a deferred transaction cannot wait to upgrade its read lock).
//   - query_only(1) (readers): a read connection cannot write by mistake.
func dsn(path string, readOnly bool) string {
	q := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", BusyTimeout.Milliseconds()),
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)",
		"_pragma=foreign_keys(1)",
	}
	if readOnly {
		q = append(q, "_pragma=query_only(1)")
	} else {
		q = append(q, "_txlock=immediate")
	}
	return path + "?" + strings.Join(q, "&")
}

// Path returns the journal's file name, as given to Open.
func (s *Store) Path() string { return s.path }

// Ping checks that the journal can still be read, and that its write
// connection answers: it runs a query on a read connection and on the write
// connection, which waits for a write in progress. It returns an error
// otherwise, or when ctx ends first. Ping writes nothing, so it does not see a
// full or read-only file system: a readiness probe should call Check.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM jobs WHERE 0").Scan(&n); err != nil {
		return fmt.Errorf("ping journal: read: %w", err)
	}
	if err := s.w.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil {
		return fmt.Errorf("ping journal: write connection: %w", err)
	}
	return nil
}

// Close closes the journal's connections; the last one checkpoints the WAL into
// the database file. Calls on a closed Store fail. Close is safe to call twice.
func (s *Store) Close() error {
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close journal %s: %w", s.path, err)
	}
	return nil
}
