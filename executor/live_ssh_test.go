package executor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/remote/remotetest"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// logReporter is a Reporter that keeps what it was told.
type logReporter struct {
	mu   sync.Mutex
	sent []executor.Report
}

func (r *logReporter) Report(_ context.Context, rep executor.Report) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, rep)
	return 0, nil
}

// liveVM is an executor deploying to a real sshd on 127.0.0.1 whose "VM" is dir.
type liveVM struct {
	ex   *executor.Executor
	dir  string
	stop func()
}

// startVM starts an executor whose target's steps run over SSH on a real
// sshd: checkout records the SHA in dir/current; migrate, for a SHA listed in
// dir/hold, prints a line and waits for dir/release; for one listed in
// dir/sleep, prints a line and sleeps (marker); restart records the SHA.
func startVM(t *testing.T, marker string) *liveVM {
	t.Helper()
	return startVMWith(t, func(step func(name, run string) executor.Step) []executor.Step {
		return []executor.Step{
			step("checkout", `echo "$DEPLOYHOOK_SHA" > DIR/current; echo "checked out $DEPLOYHOOK_SHA"`),
			step("migrate", `[ "$DEPLOYHOOK_ROLLBACK" = true ] && exit 0
if grep -q "$DEPLOYHOOK_SHA" DIR/hold 2>/dev/null; then
  echo "first line"
  while [ ! -e DIR/release ]; do sleep 0.05; done
  echo "released"
fi
if grep -q "$DEPLOYHOOK_SHA" DIR/sleep 2>/dev/null; then
  echo "migrating"
  sleep `+marker+`
  echo "not killed"
fi`),
			step("restart", `echo "$DEPLOYHOOK_SHA" >> DIR/restarts`),
		}
	})
}

// startVMWith starts an executor whose target's steps (made with step, which
// puts the VM's directory for DIR in their script) run over SSH on a real
// sshd. The first step is the checkpoint.
func startVMWith(t testing.TB, steps func(step func(name, run string) executor.Step) []executor.Step) *liveVM {
	t.Helper()
	srv := sshdtest.Start(t, sshdtest.Options{})
	sshdtest.Require(t, "flock", "/usr/bin/flock")
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	tr, err := remote.NewSSH(lg, remote.SSHOptions{Addr: srv.Addr, User: srv.User, PrivateKey: srv.ClientPEM,
		KnownHostsFile: srv.KnownHosts, KillGrace: 500 * time.Millisecond, Target: "vm"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	step := func(name, run string) executor.Step {
		return executor.Step{Name: name, Run: strings.ReplaceAll(run, "DIR", dir), Timeout: 10 * time.Minute}
	}
	target := executor.Target{
		Name: "vm", Repo: "acme/app", Branch: "main", Rollback: true,
		Lock: filepath.Join(dir, "lock", "deploy.lock"), LockWait: time.Minute,
		Steps: steps(step),
	}
	target.Steps[0].Checkpoint = true
	ex, err := executor.New(lg, executor.Options{Targets: []executor.Target{target}}, executor.NewMemStore(), tr, &logReporter{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	v := &liveVM{ex: ex, dir: dir}
	var once sync.Once
	v.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(v.stop)
	return v
}

func (v *liveVM) deploy(t testing.TB, sha, actor string) executor.Job {
	t.Helper()
	en, err := v.ex.Enqueue(context.Background(), "vm", executor.Trigger{Kind: executor.KindManual, Repo: "acme/app",
		Branch: "main", SHA: sha, Actor: actor, Reason: "manual deploy by " + actor, Force: true, AnyCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	return en.Job
}

func (v *liveVM) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (v *liveVM) write(t *testing.T, name, s string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(v.dir, name), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// next reads the next event, failing the test after a generous deadline
// (the bound only turns a hang into a failure).
func next(t testing.TB, ch <-chan executor.LogEvent) (executor.LogEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(time.Minute):
		t.Fatal("no event for a minute")
		return executor.LogEvent{}, false
	}
}

// until reads events until one satisfies match, and returns those read.
func until(t testing.TB, ch <-chan executor.LogEvent, what string, match func(executor.LogEvent) bool) []executor.LogEvent {
	t.Helper()
	var seen []executor.LogEvent
	for {
		ev, ok := next(t, ch)
		if !ok {
			t.Fatalf("the live log closed before %s; read %+v", what, seen)
		}
		seen = append(seen, ev)
		if match(ev) {
			return seen
		}
	}
}

func line(s string) func(executor.LogEvent) bool {
	return func(ev executor.LogEvent) bool { return ev.Kind == executor.EventLine && ev.Line == s }
}

func isEnd(ev executor.LogEvent) bool { return ev.Kind == executor.EventEnd }

// On a real sshd: a line a step prints reaches Follow while the step still
// runs; a Cancel kills the running step's process tree on the VM and rolls
// the target back (invariant 3: no process of the cancelled deploy is left).
func TestExecutor_LiveOverSSH(t *testing.T) {
	marker := remotetest.Marker(t)
	t.Cleanup(func() { remotetest.KillAll(marker) })
	v := startVM(t, marker)
	sha1, sha2 := strings.Repeat("1", 40), strings.Repeat("2", 40)
	ctx := context.Background()

	v.write(t, "hold", sha1+"\n")
	j1 := v.deploy(t, sha1, "bob")
	ch, err := v.ex.Follow(ctx, j1.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := until(t, ch, `"first line"`, line("first line"))
	// The step waits for dir/release, which does not exist yet: it is running.
	for _, ev := range seen {
		if ev.Kind == executor.EventDone && ev.Step == 2 {
			t.Errorf("migrate ended before its first line arrived: %+v", seen)
		}
	}
	if _, err := os.Stat(filepath.Join(v.dir, "release")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("release exists")
	}
	v.write(t, "release", "")
	rest := until(t, ch, "the end", isEnd)
	if end := rest[len(rest)-1]; end.State != executor.StateSuccess || end.Description != "deployed 1111111 by bob" {
		t.Errorf("end = %+v", end)
	}
	if _, ok := next(t, ch); ok {
		t.Error("the live log stayed open after the end")
	}

	// A deploy of sha2 sleeps in migrate, past the checkpoint: cancel it.
	v.write(t, "sleep", sha2+"\n")
	j2 := v.deploy(t, sha2, "bob")
	ch, err = v.ex.Follow(ctx, j2.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	until(t, ch, `"migrating"`, line("migrating"))
	remotetest.WaitFor(t, "the step's sleep on the VM", func() bool { return remotetest.Pgrep(t, marker) != "" })
	got, err := v.ex.Cancel(ctx, j2.ID, "alice")
	if err != nil || got.State != executor.StateRunning {
		t.Fatalf("Cancel = %s, %v", got.State, err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	end, err := v.ex.Wait(wctx, j2.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := "deploy by bob: cancelled by alice during migrate; rolled back to 1111111"
	if end.State != executor.StateError || end.Description != want {
		t.Errorf("job ended %s %q, want error %q", end.State, end.Description, want)
	}
	remotetest.RequireGone(t, marker)
	if cur := strings.TrimSpace(v.read(t, "current")); cur != sha1 {
		t.Errorf("the VM runs %s, want the rolled-back %s", cur, sha1)
	}
	if restarts := v.read(t, "restarts"); restarts != sha1+"\n"+sha1+"\n" {
		t.Errorf("restarts:\n%s\nwant sha1's deploy and its rollback, never sha2", restarts)
	}
	evs := until(t, ch, "the end", isEnd)
	var lines []string
	for _, ev := range evs {
		if ev.Kind == executor.EventLine {
			lines = append(lines, fmt.Sprintf("%d %s", ev.Step, ev.Line))
		}
		if ev.Line == "not killed" {
			t.Error("the step went on after its cancel")
		}
	}
	if want := []string{"3 checked out " + sha1}; !equal(lines, want) {
		t.Errorf("lines after the cancel: %q, want %q (the rollback's)", lines, want)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// BenchmarkStream_SSHLatency is the time from a line printed by a step on the
// VM (a real sshd on this machine) to the follower of its live log: a step
// prints its clock 200 times, as fast as date(1) runs, and the follower
// compares it with its own. Reported: the mean (ms-print-to-follower) and
// the slowest line (max-ms). Run it with -benchtime=1x.
func BenchmarkStream_SSHLatency(b *testing.B) {
	v := startVMWith(b, func(step func(name, run string) executor.Step) []executor.Step {
		return []executor.Step{step("print", `for i in $(seq 200); do date +%s%N; done`)}
	})
	var sum, worst time.Duration
	n := 0
	for i := 0; b.Loop(); i++ {
		j := v.deploy(b, fmt.Sprintf("%040x", i+1), "bench")
		ch, err := v.ex.Follow(context.Background(), j.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		for {
			ev, ok := next(b, ch)
			if !ok || ev.Kind == executor.EventEnd {
				break
			}
			if ev.Kind != executor.EventLine {
				continue
			}
			var ns int64
			if _, err := fmt.Sscan(ev.Line, &ns); err != nil {
				b.Fatalf("line %q: %v", ev.Line, err)
			}
			d := time.Since(time.Unix(0, ns))
			sum += d
			worst = max(worst, d)
			n++
		}
	}
	if n == 0 {
		b.Fatal("no line arrived")
	}
	b.ReportMetric(float64(sum.Microseconds())/float64(n)/1000, "ms-print-to-follower")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
}
