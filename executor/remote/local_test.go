package remote

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// runCase is one Run of the shared exit code / env / dir table.
type runCase struct {
	name     string
	cmd      executor.Command
	wantCode int
	wantOut  string
}

func runCases(dir string) []runCase {
	return []runCase{
		{name: "echo", cmd: executor.Command{Run: "echo hello"}, wantOut: "hello\n"},
		{name: "exit code", cmd: executor.Command{Run: "echo out; echo err >&2; exit 3"}, wantCode: 3, wantOut: "out\nerr\n"},
		{name: "exit 124 is not a timeout", cmd: executor.Command{Run: "exit 124"}, wantCode: 124},
		{name: "env", cmd: executor.Command{Run: `printf '%s|%s\n' "$DEPLOYHOOK_SHA" "$ODD"`,
			Env: map[string]string{"DEPLOYHOOK_SHA": "0123abc", "ODD": `it's "$(id)"`}},
			wantOut: "0123abc|it's \"$(id)\"\n"},
		{name: "dir", cmd: executor.Command{Run: "pwd", Dir: dir}, wantOut: dir + "\n"},
		{name: "missing dir", cmd: executor.Command{Run: "pwd", Dir: filepath.Join(dir, "nope")}, wantCode: 1},
		{name: "multi-line script", cmd: executor.Command{Run: "set -e\nx=1\necho $((x+1))\nfalse\necho no"}, wantCode: 1, wantOut: "2\n"},
	}
}

func checkRun(t *testing.T, s executor.Session, tt runCase) {
	t.Helper()
	tt.cmd.Name = tt.name
	if tt.cmd.Timeout == 0 {
		tt.cmd.Timeout = 30 * time.Second
	}
	var out strings.Builder
	code, err := s.Run(t.Context(), tt.cmd, &out)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if code != tt.wantCode {
		t.Errorf("Run() code = %d, want %d (output %q)", code, tt.wantCode, out.String())
	}
	if tt.wantOut != "" && out.String() != tt.wantOut {
		t.Errorf("Run() output = %q, want %q", out.String(), tt.wantOut)
	}
}

func TestLocal_Run(t *testing.T) {
	dir := t.TempDir()
	s, err := NewLocal(testLogger(t), LocalOptions{}).Open(t.Context(), "local", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tt := range runCases(dir) {
		t.Run(tt.name, func(t *testing.T) { checkRun(t, s, tt) })
	}
}

// treeScript starts a background grandchild, a grandchild that ignores SIGTERM,
// says "started" and sleeps: all of them must be gone after a kill.
func treeScript(m string) string {
	return "sleep " + m + " & (trap '' TERM; sleep " + m + ") & echo started; sleep " + m
}

func TestLocal_Run_timeoutKillsTree(t *testing.T) {
	m := marker(t)
	s, err := NewLocal(testLogger(t), LocalOptions{KillGrace: 500 * time.Millisecond}).Open(t.Context(), "local", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out strings.Builder
	code, err := s.Run(t.Context(), executor.Command{Name: "slow", Run: treeScript(m), Timeout: time.Second}, &out)
	if !errors.Is(err, executor.ErrTimeout) || code != -1 {
		t.Fatalf("Run() = %d, %v, want -1, ErrTimeout (output %q)", code, err, out.String())
	}
	if !strings.Contains(out.String(), "started") {
		t.Errorf("output %q: the step did not run", out.String())
	}
	requireGone(t, m)
}

func TestLocal_Run_cancelKillsTree(t *testing.T) {
	m := marker(t)
	s, err := NewLocal(testLogger(t), LocalOptions{KillGrace: 500 * time.Millisecond}).Open(t.Context(), "local", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	out := newSignalWriter("started")
	go func() {
		<-out.seen
		cancel()
	}()
	code, err := s.Run(ctx, executor.Command{Name: "slow", Run: treeScript(m), Timeout: time.Hour}, out)
	if !errors.Is(err, context.Canceled) || code != -1 {
		t.Fatalf("Run() = %d, %v, want -1, context.Canceled", code, err)
	}
	requireGone(t, m)
}

func TestLocal_Open_lock(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "locks", "deploy.lock")
	tr := NewLocal(testLogger(t), LocalOptions{LockPoll: 10 * time.Millisecond})

	// A manual deploy holds the lock: Open waits, then gives up with ErrLocked.
	release := holdFlock(t, lock)
	_, err := tr.Open(t.Context(), "local", lock, 200*time.Millisecond)
	if !errors.Is(err, executor.ErrLocked) {
		t.Fatalf("Open() with the lock held by flock(1): error = %v, want ErrLocked", err)
	}

	// Released while Open waits: Open gets it.
	opened := make(chan error, 1)
	go func() {
		s, err := tr.Open(t.Context(), "local", lock, time.Minute)
		if err == nil {
			defer s.Close()
			if flockFree(t, lock) {
				err = errors.New("flock(1) could take the lock Open holds")
			}
		}
		opened <- err
	}()
	release()
	if err := <-opened; err != nil {
		t.Fatalf("Open() after the manual deploy ended: %v", err)
	}

	// Open holds it: a manual flock cannot take it; Close releases it, twice safely.
	s, err := tr.Open(t.Context(), "local", lock, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if flockFree(t, lock) {
		t.Error("flock -n took the lock while a session holds it")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if !flockFree(t, lock) {
		t.Error("the lock is still held after Close")
	}
	if _, err := s.Run(t.Context(), executor.Command{Run: "true", Timeout: time.Second}, &strings.Builder{}); err == nil {
		t.Error("Run() after Close succeeded")
	}
}

func TestLocal_Open_cancelled(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "deploy.lock")
	holdFlock(t, lock)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := NewLocal(testLogger(t), LocalOptions{}).Open(ctx, "local", lock, time.Hour)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open() = %v, want context.Canceled", err)
	}
}

// TestLocal_Run_env: a local step gets none of deployhook's own environment
// (its secrets above all), only what a shell needs and the step's variables.
// Before, steps inherited all of it (issue 8, item 10).
func TestLocal_Run_env(t *testing.T) {
	t.Setenv("DEPLOYHOOK_WEBHOOK_SECRET", "hook-secret-value")
	t.Setenv("DEPLOYHOOK_GITHUB_TOKEN", "ghp_token-value")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/secret/key.json")
	t.Setenv("LC_TIME", "C")
	t.Setenv("TZ", "UTC")
	s, err := NewLocal(testLogger(t), LocalOptions{}).Open(t.Context(), "local", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out strings.Builder
	code, err := s.Run(t.Context(), executor.Command{Name: "env", Run: "env", Timeout: 30 * time.Second,
		Env: map[string]string{"DEPLOYHOOK_SHA": "0123abc", "APP_MODE": "prod"}}, &out)
	if err != nil || code != 0 {
		t.Fatalf("Run() = %d, %v", code, err)
	}
	env := map[string]string{}
	for l := range strings.Lines(out.String()) {
		k, v, _ := strings.Cut(strings.TrimSuffix(l, "\n"), "=")
		env[k] = v
	}
	for _, secret := range []string{"hook-secret-value", "ghp_token-value", "/secret/key.json"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("the step's environment holds %q:\n%s", secret, out.String())
		}
	}
	for k, want := range map[string]string{"DEPLOYHOOK_SHA": "0123abc", "APP_MODE": "prod", "LC_TIME": "C", "TZ": "UTC",
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")} {
		if env[k] != want {
			t.Errorf("%s = %q in the step, want %q", k, env[k], want)
		}
	}
}

func TestStepEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{
			name: "keeps what a shell needs",
			environ: []string{"PATH=/bin", "HOME=/home/d", "USER=d", "LOGNAME=d", "LANG=C.UTF-8", "LC_ALL=C",
				"TZ=UTC", "TMPDIR=/tmp/d", "SHELL=/bin/bash"},
			want: []string{"PATH=/bin", "HOME=/home/d", "USER=d", "LOGNAME=d", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC", "TMPDIR=/tmp/d"},
		},
		{
			name: "drops secrets and settings",
			environ: []string{"PATH=/bin", "DEPLOYHOOK_WEBHOOK_SECRET=x", "DEPLOYHOOK_GITHUB_TOKEN=y",
				"DEPLOYHOOK_SSH_KEY=z", "AWS_SECRET_ACCESS_KEY=w", "PATHX=1", "LC=2"},
			want: []string{"PATH=/bin"},
		},
		{
			name:    "a default PATH",
			environ: []string{"HOME=/root"},
			want:    []string{"HOME=/root", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stepEnv(tt.environ); !slices.Equal(got, tt.want) {
				t.Errorf("stepEnv() = %q, want %q", got, tt.want)
			}
		})
	}
}
