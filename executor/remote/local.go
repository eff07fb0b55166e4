package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deployhook/deployhook/executor"
)

// LocalOptions configures a Local transport.
type LocalOptions struct {
	// Shell runs the command line; default /bin/sh.
	Shell string
	// KillGrace is the time between SIGTERM and SIGKILL for a step that timed out or
	// was cancelled; default DefaultKillGrace.
	KillGrace time.Duration
	// LockPoll is how often Open retries a held lock; default 50ms.
	LockPoll time.Duration
}

// Local is a Transport that runs commands on this machine (transport: local), for
// running deployhook on the target itself and for trying it out. Each step runs as
// "/bin/sh -c" with the same command line as over SSH (see the package doc), in its
// own process group. It is safe for concurrent use.
type Local struct {
	lg   *slog.Logger
	opts LocalOptions
}

// NewLocal returns a Local transport.
func NewLocal(lg *slog.Logger, opts LocalOptions) *Local {
	if opts.Shell == "" {
		opts.Shell = "/bin/sh"
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.LockPoll <= 0 {
		opts.LockPoll = 50 * time.Millisecond
	}
	return &Local{lg: lg, opts: opts}
}

// Open takes the deploy lock when lock is not empty: an exclusive flock(2) on the
// file lock (created, with its directory, if missing), the same lock flock(1) takes,
// so a manual "flock LOCK ./deploy.sh" and deployhook exclude each other. It waits at
// most lockWait and then returns an error wrapping executor.ErrLocked; it returns
// ctx.Err() when ctx ends first. target only names the session in logs.
func (l *Local) Open(ctx context.Context, target, lock string, lockWait time.Duration) (executor.Session, error) {
	s := &localSession{l: l, target: target}
	if lock == "" {
		return s, nil
	}
	f, err := lockFile(ctx, lock, lockWait, l.opts.LockPoll)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", target, err)
	}
	s.lock = f
	l.lg.Debug("deploy lock taken", "target", target, "lock", lock)
	return s, nil
}

func lockFile(ctx context.Context, path string, wait, poll time.Duration) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	// Read-only is enough for flock(2), and lets a lock file owned by another
	// user (the one who deploys by hand) be used as long as it is readable.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("flock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-deadline.C:
			f.Close()
			return nil, fmt.Errorf("%w: %s still held after %v (a manual deploy, or another deployhook?)", executor.ErrLocked, path, wait)
		case <-tick.C:
		}
	}
}

type localSession struct {
	l      *Local
	target string

	mu     sync.Mutex
	lock   *os.File
	closed bool
}

// Run implements executor.Session.
func (s *localSession) Run(ctx context.Context, cmd executor.Command, out io.Writer) (int, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return -1, fmt.Errorf("target %s: session closed", s.target)
	}
	line, err := commandLine(cmd, s.l.opts.KillGrace, false)
	if err != nil {
		return -1, err
	}
	c := exec.Command(s.l.opts.Shell, "-c", line)
	c.Stdout = out
	c.Stderr = out
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A background process that keeps the output pipe open must not keep Run
	// waiting after the step itself has exited.
	c.WaitDelay = s.l.opts.KillGrace
	start := time.Now()
	if err := c.Start(); err != nil {
		return -1, fmt.Errorf("target %s: start %s: %w", s.target, s.l.opts.Shell, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()

	// The wrapper's timeout(1) kills the step; this timer is the backstop for a
	// wrapper that cannot (timeout missing, a stuck sudo).
	backstop := time.NewTimer(cmd.Timeout + 2*s.l.opts.KillGrace + time.Second)
	defer backstop.Stop()
	var cause error
	select {
	case err := <-done:
		code, err := localExit(err)
		if err != nil {
			return -1, fmt.Errorf("target %s: step %q: %w", s.target, cmd.Name, err)
		}
		if timedOut(code, time.Since(start), cmd.Timeout) {
			return -1, executor.ErrTimeout
		}
		return code, nil
	case <-ctx.Done():
		cause = ctx.Err()
	case <-backstop.C:
		cause = executor.ErrTimeout
	}
	s.killGroup(c.Process.Pid, done)
	return -1, cause
}

// killGroup sends SIGTERM to the step's process group (the wrapper forwards it
// to the group of timeout(1)), then SIGKILL after the grace, and waits for the
// shell.
func (s *localSession) killGroup(pgid int, done <-chan error) {
	_ = unix.Kill(-pgid, unix.SIGTERM)
	t := time.NewTimer(s.l.opts.KillGrace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	_ = unix.Kill(-pgid, unix.SIGKILL)
	<-done
}

func localExit(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		// The step exited; something it started kept the output open.
		return 0, nil
	}
	return -1, err
}

// Close releases the lock. It is safe to call twice.
func (s *localSession) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.lock != nil {
		// Closing the last descriptor releases the flock.
		return s.lock.Close()
	}
	return nil
}
