// Package remotetest is the conformance suite for the transports of package
// executor/remote: every promise of the executor.Transport and
// executor.Session contracts, and of the remote package doc, as one subtest.
// Run it against each transport (Local, SSH over TCP, SSH through an IAP
// tunnel):
//
//	func TestLocal(t *testing.T) {
//		remotetest.Run(t, func(t *testing.T) executor.Transport {
//			return remote.NewLocal(lg, remote.LocalOptions{})
//		}, remotetest.Options{Home: home})
//	}
//
// The target must be this machine (Local, or an sshd on 127.0.0.1) and the
// login user the user running the test: the suite checks the steps' processes
// with pgrep and the locks with flock(1) and /proc, from outside the
// transport. It needs pgrep and flock(1) (and sudo and useradd for the sudo
// subtests, which run as root only): without them it fails when the CI
// environment variable is set and skips otherwise.
//
// The package also exports the helpers the suite looks at the target with, for
// the transport-specific tests of the same promises.
package remotetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// StepsSuffix names the steps lock beside the deploy lock (LOCK + StepsSuffix),
// which every step holds shared while its wrapper runs (see the remote
// package doc).
const StepsSuffix = ".steps"

// Options tells the suite what it cannot learn from the transport.
type Options struct {
	// Home is the login user's home directory on the target: a relative lock
	// path is relative to it, and steps see it as $HOME. Required.
	Home string
	// Sudo says that the login user may run sudo -n, without a password, as
	// root and as any user, as deployhook's login user on a VM can: the
	// subtests of steps with User and Sudo run (as root only, because they
	// create a user).
	Sudo bool
}

// step is a command with the suite's default timeout.
func step(name, run string) executor.Command {
	return executor.Command{Name: name, Run: run, Timeout: time.Minute}
}

// Run runs the suite. open returns a new transport for a subtest; it is called
// once or more per subtest, and may use t (its logger, its cleanup). Transports
// should be made with a short kill grace (500 ms), since several subtests wait
// for it.
func Run(t *testing.T, open func(t *testing.T) executor.Transport, opts Options) {
	if opts.Home == "" {
		t.Fatal("remotetest: Options.Home is required")
	}
	sshdtest.Require(t, "pgrep", "/usr/bin/pgrep")
	sshdtest.Require(t, "flock", "/usr/bin/flock")
	r := &runner{open: open, opts: opts}
	t.Run("ExitCodes", r.exitCodes)
	t.Run("OutputCombinedInOrder", r.outputInOrder)
	t.Run("OutputStreams", r.outputStreams)
	t.Run("Dir", r.dir)
	t.Run("Env", r.env)
	t.Run("InvalidCommand", r.invalidCommand)
	t.Run("Close", r.close)
	t.Run("Lock", r.lock)
	t.Run("Sudo", r.sudo)
	// The slow ones wait for kill graces; they run side by side, after the
	// others.
	t.Run("TimeoutKillsTree", r.timeoutKillsTree)
	t.Run("CancelKillsTree", r.cancelKillsTree)
	t.Run("CloseMidStep", r.closeMidStep)
}

type runner struct {
	open func(t *testing.T) executor.Transport
	opts Options
}

// session opens a session without a lock, closed when the test ends.
func (r *runner) session(t *testing.T) executor.Session {
	t.Helper()
	return r.locked(t, "", 0)
}

// locked opens a session holding lock, closed when the test ends.
func (r *runner) locked(t *testing.T, lock string, wait time.Duration) executor.Session {
	t.Helper()
	s, err := r.open(t).Open(t.Context(), "test-vm", lock, wait)
	if err != nil {
		t.Fatalf("Open(%q) error = %v", lock, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// run runs cmd on s and returns its output, failing the test on an error.
func run(t *testing.T, s executor.Session, cmd executor.Command) (int, string) {
	t.Helper()
	var out strings.Builder
	code, err := s.Run(t.Context(), cmd, &out)
	if err != nil {
		t.Fatalf("Run(%q) error = %v (output %q)", cmd.Name, err, out.String())
	}
	return code, out.String()
}

// check runs cmd on s and checks its exit code and exact output.
func check(t *testing.T, s executor.Session, cmd executor.Command, wantCode int, wantOut string) {
	t.Helper()
	code, out := run(t, s, cmd)
	if code != wantCode || out != wantOut {
		t.Errorf("Run(%q) = %d, output %q; want %d, %q", cmd.Name, code, out, wantCode, wantOut)
	}
}

// exitCodes: Run returns the step's exit code, 128+n for a step killed by
// signal n, and a nil error for all of them.
func (r *runner) exitCodes(t *testing.T) {
	s := r.session(t)
	for _, tt := range []struct {
		name string
		run  string
		want int
	}{
		{"success", "true", 0},
		{"failure", "false", 1},
		{"exit 42", "exit 42", 42},
		{"exit 124 early is not a timeout", "exit 124", 124},
		{"killed by SIGTERM", "kill -TERM $$; sleep 10", 128 + 15},
		// 137 too is what a timeout ends in: early, it is not one.
		{"killed by SIGKILL", "kill -KILL $$; sleep 10", 128 + 9},
		{"set -e", "set -e\nx=1\necho $((x+1))\nfalse\necho no", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out := run(t, s, step(tt.name, tt.run))
			if code != tt.want {
				t.Errorf("Run() code = %d, want %d (output %q)", code, tt.want, out)
			}
		})
	}
}

// outputInOrder: stdout and stderr reach out as one stream, in the order the
// step wrote them.
func (r *runner) outputInOrder(t *testing.T) {
	s := r.session(t)
	var want strings.Builder
	for i := range 200 {
		fmt.Fprintf(&want, "out %d\nerr %d\n", i, i)
	}
	check(t, s, step("interleaved", `i=0; while [ $i -lt 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`),
		0, want.String())
	check(t, s, step("failing", "echo out; echo err >&2; exit 3"), 3, "out\nerr\n")
}

// outputStreams: output reaches out while the step still runs.
func (r *runner) outputStreams(t *testing.T) {
	s := r.session(t)
	goOn := filepath.Join(t.TempDir(), "go-on")
	out := NewSignalWriter("first")
	done := make(chan error, 1)
	go func() {
		// The step cannot finish before the test has seen "first" and created
		// the file the step waits for.
		_, err := s.Run(t.Context(), step("stream",
			"echo first; while [ ! -e '"+goOn+"' ]; do sleep 0.05; done; echo second"), out)
		done <- err
	}()
	select {
	case <-out.Seen():
	case err := <-done:
		t.Fatalf("the step ended before its first line reached out: %v (output %q)", err, out.String())
	}
	if err := os.WriteFile(goOn, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "first\nsecond\n" {
		t.Errorf("output = %q, want %q", got, "first\nsecond\n")
	}
}

// dir: the step runs in Dir; a missing Dir fails the step before its script
// runs.
func (r *runner) dir(t *testing.T) {
	s := r.session(t)
	dir := filepath.Join(t.TempDir(), "it's a $(dir)")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := step("pwd", "pwd")
	cmd.Dir = dir
	check(t, s, cmd, 0, dir+"\n")

	ran := filepath.Join(t.TempDir(), "ran")
	cmd = step("missing dir", "touch '"+ran+"'")
	cmd.Dir = filepath.Join(dir, "nope")
	if code, _ := run(t, s, cmd); code == 0 {
		t.Errorf("Run() in a missing directory: code 0, want a failure")
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the script ran although its directory is missing")
	}
}

// env: the step gets its Env (values are data, never code) and $HOME, and
// nothing of the deployhook process's environment.
func (r *runner) env(t *testing.T) {
	t.Setenv("DEPLOYHOOK_WEBHOOK_SECRET", "hook-secret-value")
	t.Setenv("DEPLOYHOOK_GITHUB_TOKEN", "ghp_token-value")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/secret/key.json")
	s := r.session(t)
	pwned := filepath.Join(t.TempDir(), "pwned")
	odd := `it's "$(touch ` + pwned + `)" ` + "`touch " + pwned + "`\n$HOME"
	cmd := step("env", "env")
	cmd.Env = map[string]string{"DEPLOYHOOK_SHA": "0123abc", "ODD": odd, "lower_case": "ok"}
	_, out := run(t, s, cmd)
	for _, secret := range []string{"hook-secret-value", "ghp_token-value", "/secret/key.json"} {
		if strings.Contains(out, secret) {
			t.Errorf("the step's environment holds %q of deployhook's:\n%s", secret, out)
		}
	}
	cmd = step("printf", `printf '%s|%s|%s|%s\n' "$DEPLOYHOOK_SHA" "$ODD" "$lower_case" "$HOME"`)
	cmd.Env = map[string]string{"DEPLOYHOOK_SHA": "0123abc", "ODD": odd, "lower_case": "ok"}
	check(t, s, cmd, 0, "0123abc|"+odd+"|ok|"+r.opts.Home+"\n")
	if _, err := os.Stat(pwned); err == nil {
		t.Error("a piece of an environment value was executed")
	}
}

// invalidCommand: a command Run cannot express safely is refused with an
// error, and nothing of it runs.
func (r *runner) invalidCommand(t *testing.T) {
	s := r.session(t)
	ran := filepath.Join(t.TempDir(), "ran")
	touch := step("touch", "touch '"+ran+"'")
	for _, tt := range []struct {
		name string
		mod  func(c *executor.Command)
	}{
		{"env name with a semicolon", func(c *executor.Command) { c.Env = map[string]string{"PATH;id": "x"} }},
		{"env name with a dash", func(c *executor.Command) { c.Env = map[string]string{"A-B": "x"} }},
		{"env name with a digit first", func(c *executor.Command) { c.Env = map[string]string{"1X": "x"} }},
		{"env name with =", func(c *executor.Command) { c.Env = map[string]string{"A=B": "x"} }},
		{"empty env name", func(c *executor.Command) { c.Env = map[string]string{"": "x"} }},
		{"user with options", func(c *executor.Command) { c.User = "root -s" }},
		{"user with a quote", func(c *executor.Command) { c.User = "app'" }},
		{"no timeout", func(c *executor.Command) { c.Timeout = 0 }},
		{"negative timeout", func(c *executor.Command) { c.Timeout = -time.Second }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := touch
			tt.mod(&cmd)
			var out strings.Builder
			code, err := s.Run(t.Context(), cmd, &out)
			if err == nil || code != -1 {
				t.Errorf("Run() = %d, %v; want -1 and an error", code, err)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Fatal("the refused command ran")
			}
		})
	}
	// The session is still usable.
	check(t, s, step("after", "echo ok"), 0, "ok\n")
}

// close: Close is safe to call twice, and Run after Close fails without
// running anything.
func (r *runner) close(t *testing.T) {
	for _, lock := range []string{"", filepath.Join(t.TempDir(), "deploy.lock")} {
		t.Run(map[bool]string{true: "without lock", false: "with lock"}[lock == ""], func(t *testing.T) {
			s := r.locked(t, lock, time.Minute)
			check(t, s, step("before", "echo ok"), 0, "ok\n")
			if err := s.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close() = %v", err)
			}
			ran := filepath.Join(t.TempDir(), "ran")
			var out strings.Builder
			code, err := s.Run(t.Context(), step("after", "touch '"+ran+"'"), &out)
			if err == nil || code != -1 || errors.Is(err, executor.ErrTimeout) {
				t.Errorf("Run() after Close = %d, %v; want -1 and an error", code, err)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Error("Run() after Close ran the step")
			}
		})
	}
}

// treeScript starts a background grandchild and a grandchild that ignores
// SIGTERM, says "started" and sleeps: all of them must be gone after a kill.
func treeScript(m string) string {
	return "sleep " + m + " & (trap '' TERM; sleep " + m + ") & echo started; sleep " + m
}

// timeoutKillsTree: a step still running after its Timeout is killed with its
// whole process tree, Run returns ErrTimeout with code -1, and the session is
// still usable.
func (r *runner) timeoutKillsTree(t *testing.T) {
	t.Parallel()
	s := r.session(t)
	m := Marker(t)
	t.Cleanup(func() { KillAll(m) })
	var out strings.Builder
	code, err := s.Run(t.Context(), executor.Command{Name: "slow", Run: treeScript(m), Timeout: time.Second}, &out)
	if !errors.Is(err, executor.ErrTimeout) || code != -1 {
		t.Fatalf("Run() = %d, %v, want -1, ErrTimeout (output %q)", code, err, out.String())
	}
	if !strings.Contains(out.String(), "started") {
		t.Errorf("output %q: the step did not run", out.String())
	}
	RequireGone(t, m)
	check(t, s, step("after", "echo ok"), 0, "ok\n")
}

// cancelKillsTree: a step running when ctx ends is killed with its whole
// process tree (as the login user, and as another user through sudo), Run
// returns ctx.Err() with code -1, and the session is still usable.
func (r *runner) cancelKillsTree(t *testing.T) {
	t.Parallel()
	t.Run("login user", func(t *testing.T) {
		t.Parallel()
		r.cancelTree(t, "")
	})
	t.Run("sudo to another user", func(t *testing.T) {
		t.Parallel()
		if !r.canSudo(t) {
			return
		}
		r.cancelTree(t, AddUser(t, "dh-app-"))
	})
}

func (r *runner) cancelTree(t *testing.T, user string) {
	s := r.session(t)
	m := Marker(t)
	t.Cleanup(func() { KillAll(m) })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := NewSignalWriter("started")
	go func() {
		<-out.Seen()
		cancel()
	}()
	cmd := executor.Command{Name: "slow", Run: treeScript(m), User: user, Timeout: time.Hour}
	code, err := s.Run(ctx, cmd, out)
	if !errors.Is(err, context.Canceled) || code != -1 {
		t.Fatalf("Run() = %d, %v, want -1, context.Canceled (output %q)", code, err, out.String())
	}
	RequireGone(t, m)
	check(t, s, step("after", "echo ok"), 0, "ok\n")
}

// canSudo reports whether the sudo subtests can run here, and skips (or, on
// CI, fails) the test when they cannot.
func (r *runner) canSudo(t *testing.T) bool {
	t.Helper()
	if !r.opts.Sudo {
		t.Skip("the transport's login user cannot sudo")
	}
	sshdtest.Require(t, "sudo", "/usr/bin/sudo")
	if !IsRoot() {
		t.Skip("creating users needs root")
	}
	return true
}

// sudo: a step with User runs as that user, with its Env and Dir, one with Sudo
// as root, and a sudo that would ask for a password fails at once.
func (r *runner) sudo(t *testing.T) {
	if !r.canSudo(t) {
		return
	}
	app := AddUser(t, "dh-app-")
	s := r.session(t)
	t.Run("as user", func(t *testing.T) {
		dir := MarkerDir(t) // the app user can enter it
		cmd := step("id", `id -un; echo "$GREETING"; pwd`)
		cmd.User, cmd.Dir, cmd.Env = app, dir, map[string]string{"GREETING": "it's $(id)"}
		check(t, s, cmd, 0, app+"\nit's $(id)\n"+dir+"\n")
	})
	t.Run("as root", func(t *testing.T) {
		cmd := step("id", "id -u")
		cmd.Sudo = true
		check(t, s, cmd, 0, "0\n")
	})
	t.Run("sudo that would prompt fails at once", func(t *testing.T) {
		// app has no sudo rights: sudo -n must fail instead of waiting for a
		// password. A hang would end in ErrTimeout, not in an exit code.
		cmd := step("restart", "sudo -n true")
		cmd.User = app
		code, out := run(t, s, cmd)
		if code == 0 || !strings.Contains(out, "password is required") {
			t.Errorf("Run() = %d, output %q; want a failure saying a password is required", code, out)
		}
	})
}

// lockPath returns a lock path in a new directory that only the login user
// can write, as Open requires.
func lockPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "locks", "deploy.lock")
}

// lock: the deploy lock (Transport.Open).
func (r *runner) lock(t *testing.T) {
	t.Run("held by a session", r.lockHeldBySession)
	t.Run("held by flock(1)", r.lockHeldByFlock)
	t.Run("cancelled while waiting", r.lockCancelled)
	t.Run("steps of an earlier deploy", r.lockStepsHeld)
	t.Run("relative to the home", r.lockRelative)
	t.Run("unsafe locations", r.lockUnsafe)
	t.Run("hostile path", r.lockHostile)
}

// lockHeldBySession: while a session holds the lock, flock(1) cannot take it
// and a second Open waits and fails with ErrLocked; a second Open waiting
// gets it once the first session is closed; Close releases it.
func (r *runner) lockHeldBySession(t *testing.T) {
	lock := lockPath(t)
	tr := r.open(t)
	first := r.locked(t, lock, time.Second)
	if FlockFree(t, lock) {
		t.Fatal("flock -n took the lock an open session holds")
	}
	_, err := tr.Open(t.Context(), "test-vm", lock, 300*time.Millisecond)
	if !errors.Is(err, executor.ErrLocked) {
		t.Fatalf("second Open() error = %v, want ErrLocked", err)
	}

	var closed atomic.Bool
	opened := make(chan error, 1)
	before := OpenCount(lock)
	go func() {
		s, err := tr.Open(t.Context(), "test-vm", lock, time.Minute)
		if err == nil {
			if !closed.Load() {
				err = errors.New("the second Open got the lock while the first held it")
			}
			if cerr := s.Close(); err == nil {
				err = cerr
			}
		}
		opened <- err
	}()
	WaitFor(t, "the second Open waits for the lock", func() bool { return OpenCount(lock) > before })
	closed.Store(true)
	if err := first.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("second Open() after the first session closed: %v", err)
	}
	if !FlockFree(t, lock) {
		t.Error("the lock is still held after both sessions closed")
	}
}

// lockHeldByFlock: a person deploying by hand with flock(1) keeps Open waiting
// until the wait runs out (ErrLocked), or until they are done.
func (r *runner) lockHeldByFlock(t *testing.T) {
	lock := lockPath(t)
	tr := r.open(t)
	release := HoldFlock(t, lock)
	_, err := tr.Open(t.Context(), "test-vm", lock, 200*time.Millisecond)
	if !errors.Is(err, executor.ErrLocked) {
		t.Fatalf("Open() with the lock held by flock(1): error = %v, want ErrLocked", err)
	}
	before := OpenCount(lock)
	opened := make(chan error, 1)
	var released atomic.Bool
	go func() {
		s, err := tr.Open(t.Context(), "test-vm", lock, time.Minute)
		if err == nil {
			if !released.Load() {
				err = errors.New("Open got the lock while flock(1) held it")
			} else if FlockFree(t, lock) {
				err = errors.New("flock(1) could take the lock Open holds")
			}
			if cerr := s.Close(); err == nil {
				err = cerr
			}
		}
		opened <- err
	}()
	WaitFor(t, "Open waits for the lock", func() bool { return OpenCount(lock) > before })
	released.Store(true)
	release()
	if err := <-opened; err != nil {
		t.Fatalf("Open() after the manual deploy ended: %v", err)
	}
}

// lockCancelled: Open waiting for the lock returns ctx.Err() when ctx ends,
// and leaves nothing behind that holds or waits for the lock.
func (r *runner) lockCancelled(t *testing.T) {
	lock := lockPath(t)
	release := HoldFlock(t, lock)
	before := OpenCount(lock)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for OpenCount(lock) <= before && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	_, err := r.open(t).Open(ctx, "test-vm", lock, time.Hour)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open() error = %v, want context.Canceled", err)
	}
	release()
	// Nothing of the cancelled Open waits on, or takes, the lock any more.
	RequireGone(t, lock)
	r.locked(t, lock, time.Minute).Close()
}

// lockStepsHeld: a process that holds the steps lock (a step of an earlier
// deploy whose wrapper is still killing its group) keeps Open waiting, then
// failing with ErrLocked, without holding the deploy lock.
func (r *runner) lockStepsHeld(t *testing.T) {
	lock := lockPath(t)
	tr := r.open(t)
	release := HoldFlock(t, lock+StepsSuffix)
	_, err := tr.Open(t.Context(), "test-vm", lock, 200*time.Millisecond)
	if !errors.Is(err, executor.ErrLocked) || !strings.Contains(err.Error(), "earlier deploy") {
		t.Fatalf("Open() error = %v, want ErrLocked naming an earlier deploy", err)
	}
	if !FlockFree(t, lock) {
		t.Error("the deploy lock stayed held after Open failed")
	}
	release()
	s, err := tr.Open(t.Context(), "test-vm", lock, time.Minute)
	if err != nil {
		t.Fatalf("Open() after the steps lock was released: %v", err)
	}
	s.Close()
}

// checkCreated checks the modes of a lock's directory and files that Open
// created.
func checkCreated(t *testing.T, lock string) {
	t.Helper()
	for p, want := range map[string]os.FileMode{
		filepath.Dir(lock): os.ModeDir | 0o700,
		lock:               0o600,
		lock + StepsSuffix: 0o600,
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

// lockRelative: a relative lock is relative to the login user's home; its
// directory and files are created private to the login user; steps run under
// it; Close releases it.
func (r *runner) lockRelative(t *testing.T) {
	rel := filepath.Join(".deployhook", RandomName(t, "rel-"), "deploy.lock")
	lock := filepath.Join(r.opts.Home, rel)
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(lock)) })
	s := r.locked(t, rel, time.Second)
	if FlockFree(t, lock) {
		t.Errorf("the lock %s in the login user's home is not held", lock)
	}
	checkCreated(t, lock)
	check(t, s, step("step", "echo ok"), 0, "ok\n")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !FlockFree(t, lock) {
		t.Error("the lock is still held after Close")
	}
}

// lockHostile: the lock path is data wherever the transport uses it (the lock
// session, every step's command line), never code.
func (r *runner) lockHostile(t *testing.T) {
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	evil := "it's $(touch " + pwned + ") `touch " + pwned + "` \"; touch " + pwned + " #"
	base := filepath.Join(".deployhook", RandomName(t, "evil-"))
	rel := filepath.Join(base, evil, "deploy.lock")
	t.Cleanup(func() { os.RemoveAll(filepath.Join(r.opts.Home, base)) })
	for _, lock := range []string{filepath.Join(dir, evil, "deploy.lock"), rel} {
		s := r.locked(t, lock, time.Second)
		check(t, s, step("step", "echo ok"), 0, "ok\n")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if !filepath.IsAbs(lock) {
			lock = filepath.Join(r.opts.Home, lock)
		}
		checkCreated(t, lock)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Errorf("a piece of the lock path was executed: %s exists", pwned)
	}
}

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
			mkfifo(t, l+StepsSuffix)
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

// lockUnsafe: Open refuses, at once and with an error that names the problem
// (not ErrLocked), a lock that other users could replace or hold, and one
// whose open would block; nothing is left waiting on it. (Issue 8, item 10:
// each was accepted before, and a FIFO blocked Open for ever.)
func (r *runner) lockUnsafe(t *testing.T) {
	tr := r.open(t)
	for _, tt := range unsafeLocks() {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && !IsRoot() {
				t.Skip("chown needs root")
			}
			lock := tt.setup(t, t.TempDir())
			t.Cleanup(func() {
				// Unblock an open(2) that is stuck on a FIFO, if any.
				for _, p := range []string{lock, lock + StepsSuffix} {
					if fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
						unix.Close(fd)
					}
				}
			})
			done := make(chan error, 1)
			go func() {
				s, err := tr.Open(t.Context(), "test-vm", lock, time.Hour)
				if err == nil {
					s.Close()
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				t.Fatal("Open() blocked although its lock is unsafe")
			}
			if err == nil || errors.Is(err, executor.ErrLocked) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open() error = %v, want one containing %q", err, tt.wantErr)
			}
			if out := Pgrep(t, lock); out != "" {
				t.Errorf("a process was left behind on the lock:\n%s", out)
			}
		})
	}
}

// closeMidStep: Close while a step runs whose child ignores SIGTERM ends the
// step (Run returns an error, code -1, not ErrTimeout), and the lock stays
// held until no process of the step is left: the next deploy's first step
// runs after the last marker of the old one. (Issue 8, item 4: before, Close
// released the lock and left the step running.)
func (r *runner) closeMidStep(t *testing.T) {
	t.Parallel()
	dir := MarkerDir(t)
	oldMarks := filepath.Join(dir, "old.marks")
	t.Cleanup(func() { KillAll(oldMarks) })
	lock := lockPath(t)
	tr := r.open(t)
	s, err := tr.Open(t.Context(), "test-vm", lock, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct {
		code int
		err  error
	}, 1)
	out := NewSignalWriter("started")
	go func() {
		code, err := s.Run(t.Context(), executor.Command{Name: "writes markers", Run: MarkerScript(oldMarks), Timeout: time.Hour}, out)
		done <- struct {
			code int
			err  error
		}{code, err}
	}()
	select {
	case <-out.Seen():
	case res := <-done:
		t.Fatalf("marker step ended before it started: %d, %v (output %q)", res.code, res.err, out.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.err == nil || res.code != -1 || errors.Is(res.err, executor.ErrTimeout) {
			t.Errorf("Run() of a step ended by Close = %d, %v; want -1 and an error", res.code, res.err)
		}
	case <-time.After(time.Minute):
		// The step runs for an hour unless Close ends it.
		t.Fatal("Run() did not return after Close")
	}
	s2, err := tr.Open(t.Context(), "test-vm", lock, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	CheckNoOverlap(t, s2, dir, oldMarks)
}
