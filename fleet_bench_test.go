package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// benchFleet is the Transport of the benchmark's targets: each fleet target
// is a prefix of the fleet's VMs; the single-VM target opens the first VM.
type benchFleet struct {
	targets map[string][]executor.Member
	single  executor.Transport
}

func (f *benchFleet) Open(ctx context.Context, target, lock string, wait time.Duration) (executor.Session, error) {
	return f.single.Open(ctx, target, lock, wait)
}

func (f *benchFleet) Members(_ context.Context, target string) ([]executor.Member, error) {
	return f.targets[target], nil
}

// benchGit runs git in dir and returns its trimmed output.
func benchGit(b *testing.B, dir string, args ...string) string {
	b.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@localhost",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@localhost")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// BenchmarkFleet measures a rollout to 10 local sshd VMs with canary 1 and
// batch 5 (a prepare phase on every VM, then three stages: 1, 5, 4 VMs)
// against the deploy of the same steps to one VM (a target without a
// rollout), and how long a failing canary takes to halt the job (its steps,
// then its rollback; the other VMs only prepared).
//
// Each VM has its own home with a clone of one real git repository (200
// files) and its own SSH session and lock. Each round commits to the origin
// (a bare repository on this machine) and deploys the new commit. Each VM's
// steps: preflight (git status), fetch (a real git fetch of the new commit
// and a check that it arrived, after 100 ms standing for the round trips to
// GitHub that a local origin does not have), checkout (the checkpoint: git
// checkout of the commit), a restart that takes 100 ms and a verify.
// Durations are the journal's, from the job's start to its end; the
// *-precheckout and *-prepare metrics end where the (first VM's) checkout
// starts. Metrics are means over b.N rounds.
func BenchmarkFleet(b *testing.B) {
	sshdtest.Require(b, "flock", "/usr/bin/flock")
	sshdtest.Require(b, "git", "/usr/bin/git")
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))

	dir := b.TempDir()
	origin, src := filepath.Join(dir, "origin.git"), filepath.Join(dir, "src")
	benchGit(b, dir, "init", "--quiet", "--bare", "--initial-branch=main", origin)
	benchGit(b, dir, "clone", "--quiet", origin, src)
	for i := range 200 {
		body := strings.Repeat(fmt.Sprintf("line %d of module %d\n", i, i), 100)
		p := filepath.Join(src, fmt.Sprintf("pkg%d", i%10), fmt.Sprintf("mod%d.py", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	benchGit(b, src, "add", ".")
	benchGit(b, src, "commit", "--quiet", "-m", "initial")
	benchGit(b, src, "push", "--quiet", "origin", "HEAD:main")

	f := sshdtest.StartN(b, 10, sshdtest.Options{})
	var vms []executor.Member
	for i, s := range f.Servers {
		tr, err := remote.NewSSH(lg, remote.SSHOptions{Addr: s.Addr, User: s.User, PrivateKey: f.ClientPEM, KnownHostsFile: f.KnownHosts})
		if err != nil {
			b.Fatal(err)
		}
		vms = append(vms, executor.Member{Name: fmt.Sprintf("vm-%d", i+1), Transport: tr})
		benchGit(b, s.Home, "clone", "--quiet", origin, "app")
	}
	step := func(name, run string) executor.Step {
		return executor.Step{Name: name, Run: `cd "$HOME/app" || exit 1` + "\n" + run, Timeout: time.Minute}
	}
	steps := []executor.Step{
		step("preflight", `[ -z "$(git status --porcelain --untracked-files=no)" ]`),
		step("fetch", `sleep 0.1
git fetch --quiet origin "+refs/heads/$DEPLOYHOOK_BRANCH:refs/remotes/origin/$DEPLOYHOOK_BRANCH" || exit 1
git cat-file -e "$DEPLOYHOOK_SHA^{commit}"`),
		step("checkout", `git -c advice.detachedHead=false checkout --quiet --detach "$DEPLOYHOOK_SHA"`),
		step("restart", `sleep 0.1`),
		step("verify", `[ "$(git rev-parse HEAD)" = "$DEPLOYHOOK_SHA" ] && [ ! -e "$HOME/fail-$DEPLOYHOOK_SHA" ]`),
	}
	steps[2].Checkpoint = true
	cur := step("current", `git rev-parse HEAD`)
	target := func(name string, o *executor.Rollout) executor.Target {
		return executor.Target{Name: name, Repo: "acme/app", Branch: "main", Rollback: true,
			Lock: ".deployhook/deploy.lock", LockWait: time.Minute, Steps: steps, Current: &cur, Rollout: o}
	}
	tr := &benchFleet{targets: map[string][]executor.Member{"fleet": vms, "canary": vms}, single: vms[0].Transport}
	st, err := store.Open(context.Background(), lg, filepath.Join(b.TempDir(), "journal.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ex, err := executor.New(lg, executor.Options{Targets: []executor.Target{
		target("one", nil),
		target("fleet", &executor.Rollout{Canary: 1, Batch: 5}),
		target("canary", &executor.Rollout{Canary: 1, Batch: 5}),
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
	// deploy runs a job and returns its duration, and the time from its
	// start to the start of the (first VM's) checkout: the preparation.
	deploy := func(target string, want executor.State) (total, prepare time.Duration) {
		n++
		p := filepath.Join(src, "pkg0", "mod0.py")
		if err := os.WriteFile(p, []byte(fmt.Sprintf("version = %d\n", n)), 0o644); err != nil {
			b.Fatal(err)
		}
		benchGit(b, src, "commit", "--quiet", "-am", fmt.Sprintf("change %d", n))
		benchGit(b, src, "push", "--quiet", "origin", "HEAD:main")
		sha := benchGit(b, src, "rev-parse", "HEAD")
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
		if _, err := ex.Wait(wctx, en.Job.ID); err != nil {
			b.Fatal(err)
		}
		j, err := st.Job(ctx, en.Job.ID)
		if err != nil || j.State != want {
			b.Fatalf("%s job: %s %q (%v), want %s", target, j.State, j.Description, err, want)
		}
		for _, s := range j.Steps {
			if s.Name == "checkout" || s.Name == "vm-1: checkout" {
				prepare = s.Started.Sub(j.Started)
				break
			}
		}
		return j.Finished.Sub(j.Started), prepare
	}
	var one, onePrep, all, allPrep, halt time.Duration
	for b.Loop() {
		t, p := deploy("one", executor.StateSuccess)
		one, onePrep = one+t, onePrep+p
		t, p = deploy("fleet", executor.StateSuccess)
		all, allPrep = all+t, allPrep+p
		t, _ = deploy("canary", executor.StateFailure)
		halt += t
	}
	per := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N) }
	b.ReportMetric(per(one), "one-vm-ms")
	b.ReportMetric(per(onePrep), "one-vm-precheckout-ms")
	b.ReportMetric(per(all), "fleet10-ms")
	b.ReportMetric(per(allPrep), "fleet10-prepare-ms")
	b.ReportMetric(float64(all)/float64(one), "fleet/one")
	b.ReportMetric(per(halt), "canary-halt-ms")
}
