package remote

// Issue 8, item 10: the lock's location. Each refusal here was accepted before
// (a FIFO even blocked Open for ever, past lock_wait and the context) and is
// refused now.

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// unsafeLock is a lock location Open must refuse.
type unsafeLock struct {
	name    string
	root    bool                                  // needs root (chown)
	setup   func(t *testing.T, dir string) string // returns the lock path
	wantErr string
}

func unsafeLocks() []unsafeLock {
	mkfifo := func(t *testing.T, p string) {
		if err := unix.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(t *testing.T, old, new string) {
		if err := os.Symlink(old, new); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(t *testing.T, p string, mode os.FileMode) string {
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	return []unsafeLock{
		{name: "lock file is a FIFO", wantErr: "is not a regular file", setup: func(t *testing.T, dir string) string {
			l := filepath.Join(dir, "deploy.lock")
			mkfifo(t, l)
			return l
		}},
		{name: "steps lock is a FIFO", wantErr: "is not a regular file", setup: func(t *testing.T, dir string) string {
			l := filepath.Join(dir, "deploy.lock")
			mkfifo(t, l+stepsSuffix)
			return l
		}},
		{name: "lock file is a symlink", wantErr: "is a symlink", setup: func(t *testing.T, dir string) string {
			l := filepath.Join(dir, "deploy.lock")
			if err := os.WriteFile(filepath.Join(dir, "elsewhere"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			symlink(t, "elsewhere", l)
			return l
		}},
		{name: "lock file is a dangling symlink", wantErr: "is a symlink", setup: func(t *testing.T, dir string) string {
			l := filepath.Join(dir, "deploy.lock")
			symlink(t, filepath.Join(dir, "created-through-the-link"), l)
			return l
		}},
		{name: "lock file is a directory", wantErr: "not a regular file", setup: func(t *testing.T, dir string) string {
			return mkdir(t, filepath.Join(dir, "deploy.lock"), 0o700)
		}},
		{name: "directory is a symlink", wantErr: "is a symlink or not a directory", setup: func(t *testing.T, dir string) string {
			real := mkdir(t, filepath.Join(dir, "real"), 0o700)
			symlink(t, real, filepath.Join(dir, "link"))
			return filepath.Join(dir, "link", "deploy.lock")
		}},
		{name: "world-writable directory", wantErr: "writable by group or others", setup: func(t *testing.T, dir string) string {
			return filepath.Join(mkdir(t, filepath.Join(dir, "open"), 0o777), "deploy.lock")
		}},
		{name: "sticky world-writable directory, like /run/lock", wantErr: "writable by group or others", setup: func(t *testing.T, dir string) string {
			return filepath.Join(mkdir(t, filepath.Join(dir, "sticky"), 0o777|os.ModeSticky), "deploy.lock")
		}},
		{name: "group-writable directory", wantErr: "writable by group or others", setup: func(t *testing.T, dir string) string {
			return filepath.Join(mkdir(t, filepath.Join(dir, "group"), 0o770), "deploy.lock")
		}},
		{name: "directory owned by another user", root: true, wantErr: "owned by uid 65534", setup: func(t *testing.T, dir string) string {
			d := mkdir(t, filepath.Join(dir, "theirs"), 0o755)
			if err := os.Chown(d, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(d, "deploy.lock")
		}},
	}
}

// checkRefused runs open with a lock wait of an hour and checks that it
// refuses the lock at once (a generous bound turns a hang into a failure), with
// an error that is not ErrLocked and names the problem.
func checkRefused(t *testing.T, tt unsafeLock, lock string, open func(lock string) error) {
	t.Helper()
	t.Cleanup(func() {
		// Unblock an open(2) that is stuck on a FIFO, if any.
		for _, p := range []string{lock, lock + stepsSuffix} {
			if fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				unix.Close(fd)
			}
		}
	})
	done := make(chan error, 1)
	go func() { done <- open(lock) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Open() blocked although its lock is unsafe")
	}
	if err == nil || errors.Is(err, executor.ErrLocked) || !strings.Contains(err.Error(), tt.wantErr) {
		t.Fatalf("Open() error = %v, want one containing %q", err, tt.wantErr)
	}
}

func TestLocal_Open_unsafeLock(t *testing.T) {
	tr := NewLocal(testLogger(t), LocalOptions{})
	for _, tt := range unsafeLocks() {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && !isRoot() {
				t.Skip("chown needs root")
			}
			lock := tt.setup(t, t.TempDir())
			checkRefused(t, tt, lock, func(lock string) error {
				s, err := tr.Open(t.Context(), "local", lock, time.Hour)
				if err == nil {
					s.Close()
				}
				return err
			})
		})
	}
}

func TestSSH_Open_unsafeLock(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	tr := newSSH(t, sshOptions(t, srv))
	for _, tt := range unsafeLocks() {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && !isRoot() {
				t.Skip("chown needs root")
			}
			lock := tt.setup(t, t.TempDir())
			checkRefused(t, tt, lock, func(lock string) error {
				s, err := tr.Open(t.Context(), "test-vm", lock, time.Hour)
				if err == nil {
					s.Close()
				}
				return err
			})
			if out := pgrep(t, "flock -E 75 -w 3600 "+lock); out != "" {
				t.Errorf("a flock was left behind:\n%s", out)
			}
		})
	}
}

// checkCreated checks the modes of a lock's directory and files that Open
// created.
func checkCreated(t *testing.T, lock string) {
	t.Helper()
	for p, want := range map[string]os.FileMode{
		filepath.Dir(lock): os.ModeDir | 0o700,
		lock:               0o600,
		lock + stepsSuffix: 0o600,
	} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestLocal_Open_relativeLock(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	s, err := NewLocal(testLogger(t), LocalOptions{}).Open(t.Context(), "local", ".deployhook/deploy.lock", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(home, ".deployhook", "deploy.lock")
	if flockFree(t, lock) {
		t.Error("the lock in $HOME is not held")
	}
	checkCreated(t, lock)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSSH_Open_relativeLock(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	s := openSSH(t, newSSH(t, sshOptions(t, srv)), ".deployhook/deploy.lock", time.Second)
	lock := filepath.Join(srv.Home, ".deployhook", "deploy.lock")
	if flockFree(t, lock) {
		t.Error("the lock in the login user's home is not held")
	}
	checkCreated(t, lock)
	// Steps find the steps lock there too.
	checkRun(t, s, runCase{name: "step", cmd: executor.Command{Run: "echo ok"}, wantOut: "ok\n"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !flockFree(t, lock) {
		t.Error("the lock is still held after Close")
	}
}

// TestOpen_stepsLockHeld: a process that holds the steps lock (a step of an
// earlier deploy whose wrapper is still killing its group) keeps Open waiting,
// then failing with ErrLocked.
func TestOpen_stepsLockHeld(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	transports := []struct {
		name string
		tr   executor.Transport
	}{
		{"ssh", newSSH(t, sshOptions(t, srv))},
		{"local", NewLocal(testLogger(t), LocalOptions{LockPoll: 10 * time.Millisecond})},
	}
	for _, tt := range transports {
		t.Run(tt.name, func(t *testing.T) {
			lock := filepath.Join(t.TempDir(), "deploy.lock")
			release := holdFlock(t, lock+stepsSuffix)
			_, err := tt.tr.Open(t.Context(), "test-vm", lock, 200*time.Millisecond)
			if !errors.Is(err, executor.ErrLocked) || !strings.Contains(err.Error(), "earlier deploy") {
				t.Fatalf("Open() error = %v, want ErrLocked naming an earlier deploy", err)
			}
			if !flockFree(t, lock) {
				t.Error("the deploy lock stayed held after Open failed")
			}
			release()
			s, err := tt.tr.Open(t.Context(), "test-vm", lock, time.Minute)
			if err != nil {
				t.Fatalf("Open() after the steps lock was released: %v", err)
			}
			s.Close()
		})
	}
}

// TestSSH_Open_hostileLockPath: the lock path is data in the lock session and
// in every step's command line, never code.
func TestSSH_Open_hostileLockPath(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	evil := "it's $(touch " + pwned + ") `touch " + pwned + "` \"; touch " + pwned + " #"
	for _, lock := range []string{
		filepath.Join(dir, evil, "deploy.lock"),
		filepath.Join(".deployhook", evil, "deploy.lock"),
	} {
		s := openSSH(t, newSSH(t, sshOptions(t, srv)), lock, time.Second)
		checkRun(t, s, runCase{name: "step", cmd: executor.Command{Run: "echo ok"}, wantOut: "ok\n"})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if !filepath.IsAbs(lock) {
			lock = filepath.Join(srv.Home, lock)
		}
		checkCreated(t, lock)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Errorf("a piece of the lock path was executed: %s exists", pwned)
	}
}

func TestCleanLock(t *testing.T) {
	tests := []struct {
		lock, want, wantErr string
	}{
		{lock: ".deployhook/deploy.lock", want: ".deployhook/deploy.lock"},
		{lock: "/var/lib/deployhook//deploy.lock", want: "/var/lib/deployhook/deploy.lock"},
		{lock: "./deploy.lock", want: "deploy.lock"},
		{lock: "/", wantErr: "not a file name"},
		{lock: ".", wantErr: "not a file name"},
		{lock: "locks/..", wantErr: "not a file name"},
	}
	for _, tt := range tests {
		got, err := cleanLock(tt.lock)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("cleanLock(%q) = %q, %v; want an error containing %q", tt.lock, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("cleanLock(%q) = %q, %v; want %q", tt.lock, got, err, tt.want)
		}
	}
}
