// Package pgtest starts a real PostgreSQL server for tests: Debian's
// postgresql package's initdb and pg_ctl, in a temporary directory, listening
// on 127.0.0.1 on a free port, run as the postgres OS user when the tests run
// as root (initdb refuses root). One server serves a whole package's tests;
// each test takes a new, empty database of its own with NewDatabase.
//
// A package's TestMain starts nothing: the first test that calls Shared
// starts the server, and TestMain stops it after the tests:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		url := pgtest.Shared(t).NewDatabase(t)
//		…
//	}
//
// When PostgreSQL is not installed, Shared fails the test if the CI
// environment variable is set (CI must install it: see .ci/run) and skips it
// otherwise.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL server of a test run.
type Server struct {
	bin   string // the directory of initdb, pg_ctl and postgres
	dir   string // the temporary directory: data/, sock/, log
	port  int
	cred  *syscall.Credential // the postgres OS user's, when running as root
	dbs   atomic.Int64
	admin string // the URL of the maintenance database
}

// Binaries returns the directory of Debian's PostgreSQL server binaries (the
// newest version in /usr/lib/postgresql), or an error saying what to install.
func Binaries() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			continue
		}
		if v > bestV {
			best, bestV = d, v
		}
	}
	if best == "" {
		return "", errors.New("PostgreSQL server not found in /usr/lib/postgresql/*/bin: install Debian's postgresql package (apt-get install postgresql)")
	}
	return best, nil
}

// Start initializes a new cluster in a temporary directory and starts its
// server on 127.0.0.1. Only trust authentication is enabled, for connections
// from this machine. fsync is off: a test server need not survive a power
// loss. The caller must Stop it.
func Start(ctx context.Context) (*Server, error) {
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, and initdb refuses root: %w (the postgresql package creates the postgres user)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := s.start(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	sock := filepath.Join(s.dir, "sock")
	if err := s.run(ctx, "mkdir", "-m", "0700", sock); err != nil {
		return err
	}
	data := filepath.Join(s.dir, "data")
	if err := s.run(ctx, filepath.Join(s.bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return err
	}
	// A free port: the kernel's choice for a listener closed at once. Another
	// process could take it in between; then pg_ctl fails and says so.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s "+
		"-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", s.port, sock)
	if err := s.run(ctx, filepath.Join(s.bin, "pg_ctl"), "start", "-D", data, "-w", "-t", "60",
		"-l", filepath.Join(s.dir, "log"), "-o", opts); err != nil {
		return err
	}
	s.admin = s.url("postgres")
	return nil
}

// run runs a command as the server's OS user and returns its output in the
// error when it fails.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %w\n%s", filepath.Base(name), args, err, out)
	}
	return nil
}

// url is the URL of database db on s.
func (s *Server) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// NewDatabase creates a new, empty database on s and returns its URL. It
// fails tb if it cannot.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	// template0 and FILE_COPY: a fast copy of the smallest template.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 STRATEGY FILE_COPY"); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	return s.url(name)
}

// Stop stops the server at once (pg_ctl stop -m immediate) and removes its
// directory. It is safe to call on a server that failed to start.
func (s *Server) Stop() error {
	var err error
	if s.admin != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = s.run(ctx, filepath.Join(s.bin, "pg_ctl"), "stop", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w")
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// shared is the server of this test binary, started by the first Shared.
var shared struct {
	once sync.Once
	s    *Server
	err  error
}

// Shared returns the test binary's server, starting it on the first call. It
// fails tb when the server cannot start, and when PostgreSQL is not installed
// and the CI environment variable is set; without CI, it skips tb then. The
// package's TestMain must call Main, which stops it.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	if _, err := Binaries(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%v: CI must install it (see .ci/run)", err)
		}
		tb.Skipf("%v; skipping", err)
	}
	shared.once.Do(func() {
		shared.s, shared.err = Start(context.Background())
	})
	if shared.err != nil {
		tb.Fatalf("pgtest: start PostgreSQL: %v", shared.err)
	}
	return shared.s
}

// Main runs m's tests and stops the shared server if one was started, and
// returns the exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.s != nil {
		if err := shared.s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop PostgreSQL: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}
