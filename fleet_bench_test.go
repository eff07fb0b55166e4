package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/store"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// nopReporter takes every report and sends nothing.
type nopReporter struct{}

func (nopReporter) Report(context.Context, executor.Report) (int64, error) { return 0, nil }

// benchFleet is the Transport of the benchmark's fleet targets: each target
// is a prefix of the fleet's VMs.
type benchFleet struct{ targets map[string][]executor.Member }

func (f *benchFleet) Open(context.Context, string, string, time.Duration) (executor.Session, error) {
	return nil, fmt.Errorf("fleet targets open their VMs")
}

func (f *benchFleet) Members(_ context.Context, target string) ([]executor.Member, error) {
	return f.targets[target], nil
}

// BenchmarkFleet measures a rollout to 10 local sshd VMs with canary 1 and
// batch 5 (three stages: 1, 5, 4 VMs) against the deploy of the same steps
// to one VM, and how long a failing canary takes to halt the job (its steps,
// then its rollback; no other VM is touched). Each VM's steps are a
// checkout, a restart that takes 100 ms and a verify, over its own SSH
// session and lock. Durations are the journal's, from the job's start to its
// end; metrics are means over b.N rounds.
func BenchmarkFleet(b *testing.B) {
	sshdtest.Require(b, "flock", "/usr/bin/flock")
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := sshdtest.StartN(b, 10, sshdtest.Options{})
	var vms []executor.Member
	for i, s := range f.Servers {
		tr, err := remote.NewSSH(lg, remote.SSHOptions{Addr: s.Addr, User: s.User, PrivateKey: f.ClientPEM, KnownHostsFile: f.KnownHosts})
		if err != nil {
			b.Fatal(err)
		}
		vms = append(vms, executor.Member{Name: fmt.Sprintf("vm-%d", i+1), Transport: tr})
		if err := os.WriteFile(filepath.Join(s.Home, "current"), []byte(fmt.Sprintf("%040x\n", 0)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	step := func(name, run string) executor.Step {
		return executor.Step{Name: name, Run: run, Timeout: time.Minute}
	}
	steps := []executor.Step{
		step("checkout", `echo "$DEPLOYHOOK_SHA" > "$HOME/current"`),
		step("restart", `sleep 0.1`),
		step("verify", `[ ! -e "$HOME/fail-$DEPLOYHOOK_SHA" ]`),
	}
	steps[0].Checkpoint = true
	cur := step("current", `cat "$HOME/current"`)
	target := func(name string, o executor.Rollout) executor.Target {
		return executor.Target{Name: name, Repo: "acme/app", Branch: "main", Rollback: true,
			Lock: ".deployhook/deploy.lock", LockWait: time.Minute, Steps: steps, Current: &cur, Rollout: &o}
	}
	tr := &benchFleet{targets: map[string][]executor.Member{"one": vms[:1], "fleet": vms, "canary": vms}}
	st, err := store.Open(context.Background(), lg, filepath.Join(b.TempDir(), "journal.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ex, err := executor.New(lg, executor.Options{Targets: []executor.Target{
		target("one", executor.Rollout{}),
		target("fleet", executor.Rollout{Canary: 1, Batch: 5}),
		target("canary", executor.Rollout{Canary: 1, Batch: 5}),
	}}, st, tr, nopReporter{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	n := 0
	deploy := func(target string, want executor.State) time.Duration {
		n++
		sha := fmt.Sprintf("%040x", n)
		if target == "canary" {
			if err := os.WriteFile(filepath.Join(f.Servers[0].Home, "fail-"+sha), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		en, err := ex.Enqueue(ctx, target, executor.Trigger{Kind: executor.KindManual, Repo: "acme/app", Branch: "main",
			SHA: sha, Actor: "bench", Reason: "bench", Force: true, AnyCommit: true})
		if err != nil {
			b.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
		defer wcancel()
		j, err := ex.Wait(wctx, en.Job.ID)
		if err != nil || j.State != want {
			b.Fatalf("%s job: %s %q (%v), want %s", target, j.State, j.Description, err, want)
		}
		return j.Finished.Sub(j.Started)
	}
	var one, all, halt time.Duration
	for b.Loop() {
		one += deploy("one", executor.StateSuccess)
		all += deploy("fleet", executor.StateSuccess)
		halt += deploy("canary", executor.StateFailure)
	}
	per := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N) }
	b.ReportMetric(per(one), "one-vm-ms")
	b.ReportMetric(per(all), "fleet10-ms")
	b.ReportMetric(float64(all)/float64(one), "fleet/one")
	b.ReportMetric(per(halt), "canary-halt-ms")
}
