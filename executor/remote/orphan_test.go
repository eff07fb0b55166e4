package remote

// Issue 8, item 4: no overlap on the target, ever. A step whose connection is
// cut, or whose deployhook is killed with SIGKILL, must be killed with its whole
// process tree on the target before the next deploy can take the lock. Each test
// here failed before the steps lock and the stdin watcher (the next Open got the
// lock at once, and the old step went on writing markers after the new step's
// start marker) and passes now. (A session closed mid-step is the same promise
// for every transport: remotetest's CloseMidStep.)

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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote/remotetest"
	"github.com/deployhook/deployhook/internal/sshdtest"
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
			t.Parallel() // most of each is waiting for the kill
			cmd := executor.Command{Name: "writes markers", Timeout: time.Hour}
			if tt.user {
				sshdtest.Require(t, "sudo", "/usr/bin/sudo")
				if !remotetest.IsRoot() {
					t.Skip("creating users needs root")
				}
				cmd.User = remotetest.AddUser(t, "dh-app-")
			}
			dir := remotetest.MarkerDir(t)
			oldMarks := filepath.Join(dir, "old.marks")
			cmd.Run = remotetest.MarkerScript(oldMarks)
			t.Cleanup(func() { remotetest.KillAll(oldMarks) })
			lock := ".deployhook/" + remotetest.RandomName(t, "cut-") + ".lock"

			p := startProxy(t, srv.Addr)
			opts := sshOptions(t, srv)
			opts.Addr, opts.HostKeyAlias = p.addr(), srv.Addr
			s := openSSH(t, newSSH(t, opts), lock, time.Minute)
			done := remotetest.RunUntilStarted(t, s, cmd)
			if remotetest.Pgrep(t, oldMarks) == "" {
				t.Fatal("pgrep does not find the running step: the test proves nothing")
			}
			p.cut()
			if err := <-done; err == nil || !strings.Contains(err.Error(), "connection lost") {
				t.Errorf("Run() on the cut connection = %v, want a connection lost error", err)
			}

			p2 := startProxy(t, srv.Addr)
			opts.Addr = p2.addr()
			s2 := openSSH(t, newSSH(t, opts), lock, time.Minute)
			remotetest.CheckNoOverlap(t, s2, dir, oldMarks)
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
	code, err := s.Run(ctx, executor.Command{Name: "writes markers", Run: remotetest.MarkerScript(os.Getenv("DH_HELPER_MARKS")),
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
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})
	dir := remotetest.MarkerDir(t)
	oldMarks := filepath.Join(dir, "old.marks")
	t.Cleanup(func() { remotetest.KillAll(oldMarks) })
	lock := ".deployhook/" + remotetest.RandomName(t, "kill9-") + ".lock"
	killedMidStep(t, "ssh", "DH_HELPER_ADDR="+srv.Addr, "DH_HELPER_USER="+srv.User,
		"DH_HELPER_KEY="+srv.ClientKeyFile(t), "DH_HELPER_KNOWN_HOSTS="+srv.KnownHosts,
		"DH_HELPER_LOCK="+lock, "DH_HELPER_MARKS="+oldMarks)
	s := openSSH(t, newSSH(t, sshOptions(t, srv)), lock, time.Minute)
	remotetest.CheckNoOverlap(t, s, dir, oldMarks)
}

func TestLocal_killedMidStep(t *testing.T) {
	t.Parallel()
	sshdtest.Require(t, "flock", "/usr/bin/flock")
	dir := remotetest.MarkerDir(t)
	oldMarks := filepath.Join(dir, "old.marks")
	t.Cleanup(func() { remotetest.KillAll(oldMarks) })
	lock := filepath.Join(t.TempDir(), "locks", "deploy.lock")
	killedMidStep(t, "local", "DH_HELPER_LOCK="+lock, "DH_HELPER_MARKS="+oldMarks)
	s, err := NewLocal(testLogger(t), LocalOptions{LockPoll: 10 * time.Millisecond}).Open(t.Context(), "local", lock, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	remotetest.CheckNoOverlap(t, s, dir, oldMarks)
}
