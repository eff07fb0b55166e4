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
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/shell"
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
// own process group, with a minimal environment (see stepEnv). It is safe for
// concurrent use.
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
// file lock, the same lock flock(1) takes, so a manual "flock LOCK ./deploy.sh"
// and deployhook exclude each other. A relative lock is relative to $HOME. The
// directory is created (mode 0700) when missing; Open refuses a directory that is
// a symlink, is owned by another user than deployhook's or root, or is writable
// by group or others, and a lock file that is a symlink or not a regular file (a
// FIFO is refused at once). It then waits until no step process of an earlier
// deploy is left (the steps lock, see the package doc). Each wait is bounded by
// lockWait together: when it runs out Open returns an error wrapping
// executor.ErrLocked; it returns ctx.Err() when ctx ends first. target only names
// the session in logs.
func (l *Local) Open(ctx context.Context, target, lock string, lockWait time.Duration) (executor.Session, error) {
	s := &localSession{l: l, target: target}
	if lock == "" {
		return s, nil
	}
	path, err := localLock(lock)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", target, err)
	}
	f, steps, err := l.lockFiles(ctx, path, lockWait)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", target, err)
	}
	s.lock, s.steps = f, steps
	l.lg.Debug("deploy lock taken", "target", target, "lock", path)
	return s, nil
}

// lockFiles takes the deploy lock path and waits for its steps lock to be free;
// it returns both files, the deploy lock held, the steps lock not.
func (l *Local) lockFiles(ctx context.Context, path string, wait time.Duration) (lock, steps *os.File, err error) {
	if err := prepareLockDir(filepath.Dir(path)); err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(wait)
	lock, err = openLockFile(path)
	if err != nil {
		return nil, nil, err
	}
	if err := flockUntil(ctx, lock, unix.LOCK_EX, deadline, l.opts.LockPoll, lockedError(path, wait)); err != nil {
		lock.Close()
		return nil, nil, err
	}
	steps, err = openLockFile(path + stepsSuffix)
	if err == nil {
		err = flockUntil(ctx, steps, unix.LOCK_EX, deadline, l.opts.LockPoll, stepsHeldError(path, wait))
		if err == nil {
			err = unix.Flock(int(steps.Fd()), unix.LOCK_UN)
		}
		if err != nil {
			steps.Close()
		}
	}
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	return lock, steps, nil
}

type localSession struct {
	l      *Local
	target string
	lock   *os.File // the deploy lock, held; nil without a lock
	steps  *os.File // the steps lock, not held; nil without a lock

	mu      sync.Mutex
	closed  bool
	running map[*os.File]bool // the stdin pipes of the steps running now: true once Close ended the step
}

// Run implements executor.Session. The step's wrapper gets a pipe from this
// process as stdin: when it ends (the step is killed, Close, or this process
// dies) the wrapper kills the step's process group.
func (s *localSession) Run(ctx context.Context, cmd executor.Command, out io.Writer) (int, error) {
	steps := ""
	if s.steps != nil {
		steps = shell.Quote(s.steps.Name())
	}
	line, err := commandLine(cmd, s.l.opts.KillGrace, false, steps)
	if err != nil {
		return -1, err
	}
	stdin, keep, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("target %s: step %q: %w", s.target, cmd.Name, err)
	}
	defer keep.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		stdin.Close()
		return -1, fmt.Errorf("target %s: session closed", s.target)
	}
	if s.running == nil {
		s.running = make(map[*os.File]bool)
	}
	s.running[keep] = false
	s.mu.Unlock()
	ended := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		ended := s.running[keep]
		delete(s.running, keep)
		return ended
	}

	c := exec.Command(s.l.opts.Shell, "-c", line)
	c.Stdin = stdin
	c.Stdout = out
	c.Stderr = out
	c.Env = stepEnv(os.Environ())
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A background process that keeps the output pipe open must not keep Run
	// waiting after the step itself has exited.
	c.WaitDelay = s.l.opts.KillGrace
	start := time.Now()
	err = c.Start()
	stdin.Close()
	if err != nil {
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
		if ended() {
			return -1, fmt.Errorf("target %s: step %q: session closed", s.target, cmd.Name)
		}
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
	s.kill(cmd, c.Process.Pid, keep, done)
	ended()
	return -1, cause
}

// kill ends a running step: closing its stdin makes the wrapper kill the step's
// process group (TERM, KILL after the grace) and exit once the group is gone.
// (A signal to the shell's process group would also reach the flock(1) that
// holds the steps lock and release it before the step is gone.) A wrapper that
// has not exited after the grace and its own bound is SIGKILLed with its process
// group.
func (s *localSession) kill(cmd executor.Command, pgid int, stdin *os.File, done <-chan error) {
	s.l.lg.Info("killing step", "target", s.target, "step", cmd.Name)
	stdin.Close()
	t := time.NewTimer(s.l.opts.KillGrace + reapBound)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	s.l.lg.Warn("step's wrapper still running; killing its process group", "target", s.target, "step", cmd.Name)
	_ = unix.Kill(-pgid, unix.SIGKILL)
	<-done
}

// stepEnv is the environment of a local step: only what a shell needs of this
// process's environment, never deployhook's own settings and secrets
// (DEPLOYHOOK_WEBHOOK_SECRET, DEPLOYHOOK_GITHUB_TOKEN, cloud credentials). The
// step's own variables (the DEPLOYHOOK_* context, the target's env:) are
// exported by the command line.
func stepEnv(environ []string) []string {
	env := make([]string, 0, 8)
	path := false
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH":
			path = true
		case k == "HOME", k == "USER", k == "LOGNAME", k == "LANG", k == "TZ", k == "TMPDIR", strings.HasPrefix(k, "LC_"):
		default:
			continue
		}
		env = append(env, kv)
	}
	if !path {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return env
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

// Close ends running steps (closing their stdin, see Run), waits until no step
// process is left (the steps lock is free; at most twice the kill grace and the
// wrapper's own bound) and releases the deploy lock. If step processes are still
// there then, Close fails closed: it keeps the deploy lock held (until this
// process exits) and returns an error. It is safe to call twice.
func (s *localSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	running := make([]*os.File, 0, len(s.running))
	for f := range s.running {
		s.running[f] = true
		running = append(running, f)
	}
	s.mu.Unlock()
	for _, f := range running {
		f.Close()
	}
	if s.lock == nil {
		return nil
	}
	bound := 2*s.l.opts.KillGrace + reapBound
	if err := flockUntil(context.Background(), s.steps, unix.LOCK_EX, time.Now().Add(bound), s.l.opts.LockPoll, stepsHeldError(s.lock.Name(), bound)); err != nil {
		s.l.lg.Error("step processes still running; keeping the deploy lock held", "target", s.target, "err", err)
		return fmt.Errorf("target %s: release lock: %w", s.target, err)
	}
	s.steps.Close()
	// Closing the last descriptor releases the flock.
	return s.lock.Close()
}
