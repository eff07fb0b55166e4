package remote

// Issue 8, item 4: no overlap on the target, ever. A step whose connection is
// cut, or whose deployhook is killed with SIGKILL, must be killed with its whole
// process tree on the target before the next deploy can take the lock. Each test
// here failed before the steps lock and the stdin watcher (the next Open got the
// lock at once, and the old step went on writing markers after the new step's
// start marker) and passes now.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/sshdtest"

	"github.com/deployhook/deployhook/internal/shell"
)

// proxy is a TCP proxy between the transport and sshd that a test can cut, as a
// network would: every connection through it is closed on both sides at once.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// cut closes the listener and every connection, and waits for the copiers.
func (p *proxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// markerScript is a step that writes a line "main NANOS" to file every 50 ms
// for ever, with a background child that ignores SIGTERM and writes "child
// NANOS" lines; it says "started" once both have written.
func markerScript(file string) string {
	q := shell.Quote(file)
	return `m() { while :; do echo "$1 $(date +%s%N)" >>` + q + `; sleep 0.05; done; }
(trap '' TERM; m child) &
echo "main $(date +%s%N)" >>` + q + `
while ! grep -q '^child ' ` + q + `; do sleep 0.01; done
echo started
m main`
}

// startScript is the next deploy's step: it writes "start NANOS" to file first,
// lists the processes whose command line names old, which must be none, and
// runs for a few of the old step's 50 ms periods, so that an old process still
// alive would write a marker newer than the start. The pattern is a regular
// expression that matches old but not itself, so that pgrep does not find this
// step.
func startScript(file, old string) string {
	pattern := filepath.Join(filepath.Dir(old), strings.ReplaceAll(filepath.Base(old), ".", "[.]"))
	return `echo "start $(date +%s%N)" >>` + shell.Quote(file) + `
pgrep -af ` + shell.Quote(pattern) + ` || true
sleep 0.3`
}

// markers reads the lines of a marker file: what wrote them, and when.
func markers(t testing.TB, file string) (last map[string]int64, lines int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	last = make(map[string]int64)
	for l := range strings.Lines(string(b)) {
		who, ns, ok := strings.Cut(strings.TrimSpace(l), " ")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil {
			t.Fatalf("marker file %s: bad line %q", file, l)
		}
		last[who] = max(last[who], n)
		lines++
	}
	return last, lines
}

// checkNoOverlap runs the next deploy's first step on s and checks that every
// process of the old step was gone when it started: no marker of the old step
// is newer than the new step's start, and pgrep found none of them.
func checkNoOverlap(t *testing.T, s executor.Session, dir, oldMarks string) {
	t.Helper()
	newMarks := filepath.Join(dir, "new.marks")
	var out strings.Builder
	code, err := s.Run(t.Context(), executor.Command{Name: "first step of the next deploy",
		Run: startScript(newMarks, oldMarks), Timeout: time.Minute}, &out)
	if err != nil || code != 0 {
		t.Fatalf("next deploy's step: %d, %v (output %q)", code, err, out.String())
	}
	if out.String() != "" {
		t.Errorf("processes of the old step were alive when the next deploy's step ran:\n%s", out.String())
	}
	start, _ := markers(t, newMarks)
	old, n := markers(t, oldMarks)
	for _, who := range []string{"main", "child"} {
		if old[who] == 0 {
			t.Fatalf("no %q marker among the %d old ones: the old step did not run as meant", who, n)
		}
		if old[who] >= start["start"] {
			t.Errorf("the old step's %s wrote a marker %v after the next deploy's step started",
				who, time.Duration(old[who]-start["start"]))
		}
	}
	// And nothing of the old step comes back later.
	requireGone(t, oldMarks)
}

// markerDir is a directory for marker files that the step's user can write.
func markerDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "dh-marks")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runUntilStarted runs the marker step on s in the background and returns when
// it said "started"; the returned channel gets Run's error.
func runUntilStarted(t *testing.T, s executor.Session, cmd executor.Command) <-chan error {
	t.Helper()
	out := newSignalWriter("started")
	done := make(chan error, 1)
	go func() {
		_, err := s.Run(t.Context(), cmd, out)
		done <- err
	}()
	select {
	case <-out.seen:
	case err := <-done:
		t.Fatalf("marker step ended before it started: %v (output %q)", err, out.String())
	}
	return done
}

func TestSSH_connectionCutMidStep(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	tests := []struct {
		name string
		user bool // run the step as another user, through sudo
	}{
		{name: "login user"},
		{name: "sudo to the app user", user: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := executor.Command{Name: "writes markers", Timeout: time.Hour}
			if tt.user {
				sshdtest.Require(t, "sudo", "/usr/bin/sudo")
				if !isRoot() {
					t.Skip("creating users needs root")
				}
				cmd.User = addUser(t, "dh-app-")
			}
			dir := markerDir(t)
			oldMarks := filepath.Join(dir, "old.marks")
			cmd.Run = markerScript(oldMarks)
			t.Cleanup(func() { killAll(oldMarks) })
			lock := ".deployhook/" + randomName(t, "cut-") + ".lock"

			p := startProxy(t, srv.Addr)
			opts := sshOptions(t, srv)
			opts.Addr, opts.HostKeyAlias = p.addr(), srv.Addr
			s := openSSH(t, newSSH(t, opts), lock, time.Minute)
			done := runUntilStarted(t, s, cmd)
			if pgrep(t, oldMarks) == "" {
				t.Fatal("pgrep does not find the running step: the test proves nothing")
			}
			p.cut()
			if err := <-done; err == nil || !strings.Contains(err.Error(), "connection lost") {
				t.Errorf("Run() on the cut connection = %v, want a connection lost error", err)
			}

			p2 := startProxy(t, srv.Addr)
			opts.Addr = p2.addr()
			s2 := openSSH(t, newSSH(t, opts), lock, time.Minute)
			checkNoOverlap(t, s2, dir, oldMarks)
		})
	}
}

// helperEnv names the environment variable that turns the test binary into a
// deployhook that opens a session and runs the marker step, for the kill -9
// tests: "ssh" or "local".
const helperEnv = "DEPLOYHOOK_REMOTE_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	os.Exit(m.Run())
}

// helperMain opens the transport named by mode with the lock in
// DH_HELPER_LOCK, runs the marker step writing to DH_HELPER_MARKS with its
// output on stdout, and waits to be killed.
func helperMain(mode string) int {
	lg := slog.New(slog.DiscardHandler)
	var tr executor.Transport
	switch mode {
	case "local":
		tr = NewLocal(lg, LocalOptions{KillGrace: 500 * time.Millisecond})
	case "ssh":
		t, err := NewSSH(lg, SSHOptions{Addr: os.Getenv("DH_HELPER_ADDR"), User: os.Getenv("DH_HELPER_USER"),
			PrivateKeyFile: os.Getenv("DH_HELPER_KEY"), KnownHostsFile: os.Getenv("DH_HELPER_KNOWN_HOSTS"),
			KillGrace: 500 * time.Millisecond})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		tr = t
	}
	ctx := context.Background()
	s, err := tr.Open(ctx, "helper", os.Getenv("DH_HELPER_LOCK"), time.Minute)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	code, err := s.Run(ctx, executor.Command{Name: "writes markers", Run: markerScript(os.Getenv("DH_HELPER_MARKS")),
		Timeout: time.Hour}, os.Stdout)
	fmt.Fprintln(os.Stderr, "the marker step ended:", code, err)
	return 2
}

// killedMidStep starts the helper (a deployhook of its own), waits until its
// marker step runs, and kills it with SIGKILL.
func killedMidStep(t *testing.T, mode string, env ...string) {
	t.Helper()
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), append(env, helperEnv+"="+mode)...)
	var stderr strings.Builder
	c.Stderr = &stderr
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "started" {
			break
		}
	}
	if sc.Err() != nil || sc.Text() != "started" {
		_ = c.Wait()
		t.Fatalf("the helper did not start its step: %v\n%s", sc.Err(), stderr.String())
	}
	if err := c.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err = c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.String() != "signal: killed" {
		t.Fatalf("helper: %v, want killed\n%s", err, stderr.String())
	}
	// Drain what the orphan may still write (nothing reads it).
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
}

func TestSSH_killedMidStep(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	dir := markerDir(t)
	oldMarks := filepath.Join(dir, "old.marks")
	t.Cleanup(func() { killAll(oldMarks) })
	lock := ".deployhook/" + randomName(t, "kill9-") + ".lock"
	killedMidStep(t, "ssh", "DH_HELPER_ADDR="+srv.Addr, "DH_HELPER_USER="+srv.User,
		"DH_HELPER_KEY="+srv.ClientKeyFile(t), "DH_HELPER_KNOWN_HOSTS="+srv.KnownHosts,
		"DH_HELPER_LOCK="+lock, "DH_HELPER_MARKS="+oldMarks)
	s := openSSH(t, newSSH(t, sshOptions(t, srv)), lock, time.Minute)
	checkNoOverlap(t, s, dir, oldMarks)
}

func TestLocal_killedMidStep(t *testing.T) {
	sshdtest.Require(t, "flock", "/usr/bin/flock")
	dir := markerDir(t)
	oldMarks := filepath.Join(dir, "old.marks")
	t.Cleanup(func() { killAll(oldMarks) })
	lock := filepath.Join(t.TempDir(), "locks", "deploy.lock")
	killedMidStep(t, "local", "DH_HELPER_LOCK="+lock, "DH_HELPER_MARKS="+oldMarks)
	s, err := NewLocal(testLogger(t), LocalOptions{LockPoll: 10 * time.Millisecond}).Open(t.Context(), "local", lock, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkNoOverlap(t, s, dir, oldMarks)
}

// TestLocal_closeMidStep closes the session while a step whose child ignores
// SIGTERM runs: Close ends the step, and the lock stays held until the child is
// gone. (Before, Close released the lock and left the step running.)
func TestLocal_closeMidStep(t *testing.T) {
	dir := markerDir(t)
	oldMarks := filepath.Join(dir, "old.marks")
	t.Cleanup(func() { killAll(oldMarks) })
	lock := filepath.Join(t.TempDir(), "deploy.lock")
	tr := NewLocal(testLogger(t), LocalOptions{KillGrace: 500 * time.Millisecond, LockPoll: 10 * time.Millisecond})
	s, err := tr.Open(t.Context(), "local", lock, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	done := runUntilStarted(t, s, executor.Command{Name: "writes markers", Run: markerScript(oldMarks), Timeout: time.Hour})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "session closed") {
			t.Errorf("Run() of a step ended by Close = %v, want a session closed error", err)
		}
	case <-time.After(time.Minute):
		// The step runs for an hour unless Close ends it.
		t.Fatal("Run() did not return after Close")
	}
	s2, err := tr.Open(t.Context(), "local", lock, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	checkNoOverlap(t, s2, dir, oldMarks)
}
