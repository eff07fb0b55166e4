package executor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/store"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// The fleet tests deploy to N real OpenSSH sshd "VMs" on 127.0.0.1, each with
// its own home ($HOME: its checkout, its lock), through one SQLite journal.
// Invariants they guard: 2 (a failed rollout leaves the fleet on the
// previous commit), 3 (each VM's steps run under its own lock, one session
// per VM) and 5 (public text names VMs, never addresses).

// fleetTransport is the Transport of one fleet target: a member per sshd,
// each its own remote.SSH, as main builds them for ssh.addresses.
type fleetTransport struct {
	members []executor.Member
	calls   int // Members calls
	mu      sync.Mutex
}

func (f *fleetTransport) Open(context.Context, string, string, time.Duration) (executor.Session, error) {
	return nil, errors.New("a fleet target opens its VMs' sessions, never the target's")
}

func (f *fleetTransport) Members(context.Context, string) ([]executor.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.members) == 0 {
		return nil, fmt.Errorf("no addresses: %w", executor.ErrNoMembers)
	}
	return slices.Clone(f.members), nil
}

// owedStore records the descriptions of the reports the executor owes, in
// the order it owes them.
type owedStore struct {
	executor.Store
	mu   sync.Mutex
	owed []string
}

func (s *owedStore) note(owe []executor.Report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range owe {
		if r.Notify == "" {
			s.owed = append(s.owed, r.Description)
		}
	}
}

func (s *owedStore) CreateJob(ctx context.Context, j executor.Job, owe ...executor.Report) (string, error) {
	id, err := s.Store.CreateJob(ctx, j, owe...)
	if err == nil {
		s.note(owe)
	}
	return id, err
}

func (s *owedStore) UpdateJob(ctx context.Context, j executor.Job, owe ...executor.Report) error {
	err := s.Store.UpdateJob(ctx, j, owe...)
	if err == nil {
		s.note(owe)
	}
	return err
}

func (s *owedStore) descriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.owed)
}

// fleet is an executor deploying target "fleet" to the VMs of srv.
type fleet struct {
	ex  *executor.Executor
	st  *owedStore
	tr  *fleetTransport
	srv *sshdtest.Fleet
	log string // every VM's steps append "VM STEP SHA" here
}

func fleetSHA(n int) string { return fmt.Sprintf("%07x%033x", 0xf000000+n, n) }

// fleetSteps are the steps of the test fleet: checkout (the checkpoint)
// records the SHA in $HOME/current; verify fails for a SHA named by a file
// $HOME/fail-SHA, and for one named by $HOME/hold-SHA waits until that file
// is gone. Every step appends "VM STEP SHA" to log.
func fleetSteps(log string) []executor.Step {
	step := func(name, run string) executor.Step {
		return executor.Step{Name: name, Timeout: time.Minute,
			Run: `echo "$DEPLOYHOOK_VM ` + name + ` $DEPLOYHOOK_SHA" >> '` + log + "'\n" + run}
	}
	st := []executor.Step{
		step("checkout", `echo "$DEPLOYHOOK_SHA" > "$HOME/current"`),
		step("verify", `while [ -e "$HOME/hold-$DEPLOYHOOK_SHA" ]; do sleep 0.02; done
[ ! -e "$HOME/fail-$DEPLOYHOOK_SHA" ] || { echo "verify failed on $(hostname)"; exit 1; }`),
	}
	st[0].Checkpoint = true
	return st
}

// startFleet starts n VMs, each at commit fleetSHA(0), and an executor
// whose target "fleet" deploys to them with rollout o.
func startFleet(t testing.TB, n int, o executor.Rollout) *fleet {
	t.Helper()
	sshdtest.Require(t, "flock", "/usr/bin/flock")
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	f := &fleet{srv: sshdtest.StartN(t, n, sshdtest.Options{}), tr: &fleetTransport{}, log: filepath.Join(t.TempDir(), "steps.log")}
	for i, s := range f.srv.Servers {
		if err := os.WriteFile(filepath.Join(s.Home, "current"), []byte(fleetSHA(0)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tr, err := remote.NewSSH(lg, remote.SSHOptions{Addr: s.Addr, User: s.User, PrivateKey: f.srv.ClientPEM,
			KnownHostsFile: f.srv.KnownHosts, KillGrace: 500 * time.Millisecond, Target: "fleet"})
		if err != nil {
			t.Fatal(err)
		}
		f.tr.members = append(f.tr.members, executor.Member{Name: fmt.Sprintf("vm-%d", i+1), Transport: tr})
	}
	cur := executor.Step{Name: "current", Run: `cat "$HOME/current"`, Timeout: time.Minute}
	target := executor.Target{
		Name: "fleet", Repo: "acme/app", Branch: "main", Rollback: true,
		Lock: ".deployhook/deploy.lock", LockWait: time.Minute,
		Steps: fleetSteps(f.log), Current: &cur, Rollout: &o,
	}
	sq, err := store.Open(context.Background(), lg, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	f.st = &owedStore{Store: sq}
	f.ex, err = executor.New(lg, executor.Options{Targets: []executor.Target{target}}, f.st, f.tr, &logReporter{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.ex.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return f
}

// deploy pushes sha and waits for the job's end.
func (f *fleet) deploy(t testing.TB, sha string) executor.Job {
	t.Helper()
	return f.wait(t, f.push(t, sha))
}

// push pushes sha and returns the job's id.
func (f *fleet) push(t testing.TB, sha string) string {
	t.Helper()
	en, err := f.ex.Enqueue(context.Background(), "fleet", executor.Trigger{Kind: executor.KindPush, Repo: "acme/app",
		Branch: "main", SHA: sha, Actor: "octocat", Reason: "push by octocat"})
	if err != nil {
		t.Fatal(err)
	}
	return en.Job.ID
}

// wait waits for job id's end and returns it with its steps.
func (f *fleet) wait(t testing.TB, id string) executor.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang fails, it is no timing assertion
	defer cancel()
	if _, err := f.ex.Wait(ctx, id); err != nil {
		t.Fatalf("wait for job %s: %v", id, err)
	}
	j, err := f.st.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// waitStep waits until job id's step record name has ended with exit code.
func (f *fleet) waitStep(t testing.TB, id, name string, code int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		j, err := f.st.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range j.Steps {
			if s.Name == name && s.ExitCode == code && s.Duration > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("step %s never ended with exit %d: %+v", name, code, j.Steps)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// current is the commit VM i (from 0) runs.
func (f *fleet) current(t testing.TB, i int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.srv.Servers[i].Home, "current"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// mark creates $HOME/NAME on VM i.
func (f *fleet) mark(t testing.TB, i int, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.srv.Servers[i].Home, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lines returns the step log: "VM STEP SHA", in the order the steps ran.
func (f *fleet) lines(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(f.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func stepNamesOf(j executor.Job) []string {
	var out []string
	for _, s := range j.Steps {
		out = append(out, s.Name)
	}
	return out
}

// A rollout with a canary and batches of two deploys every VM, stage after
// stage: the canary's steps all end before any other VM starts, and each
// batch's before the next one's. The commit status says the progress once
// per VM, then the success.
func TestFleet_AllSucceedInStages(t *testing.T) {
	f := startFleet(t, 5, executor.Rollout{Canary: 1, Batch: 2})
	next := fleetSHA(1)
	j := f.deploy(t, next)
	if want := "deployed " + next[:7] + " to 5 VMs"; j.State != executor.StateSuccess || j.Description != want {
		t.Fatalf("job %s %q, want success %q; steps %v", j.State, j.Description, want, stepNamesOf(j))
	}
	if j.PreviousSHA != fleetSHA(0) {
		t.Errorf("previous SHA %s, want %s (read on the first VM)", j.PreviousSHA, fleetSHA(0))
	}
	for i := range 5 {
		if got := f.current(t, i); got != next {
			t.Errorf("vm-%d runs %s, want %s", i+1, got, next)
		}
	}
	stage := map[string]int{"vm-1": 0, "vm-2": 1, "vm-3": 1, "vm-4": 2, "vm-5": 2}
	lines := f.lines(t)
	if len(lines) != 10 {
		t.Fatalf("%d steps ran, want 10 (two on each VM): %q", len(lines), lines)
	}
	last := 0
	for _, l := range lines {
		vm := strings.Fields(l)[0]
		if stage[vm] < last {
			t.Errorf("a step of %s (stage %d) ran after one of stage %d: %q", vm, stage[vm], last, lines)
		}
		last = stage[vm]
	}
	names := stepNamesOf(j)
	for i := range 5 {
		for _, s := range []string{"checkout", "verify"} {
			if n := fmt.Sprintf("vm-%d: %s", i+1, s); !slices.Contains(names, n) {
				t.Errorf("no step record %q among %q", n, names)
			}
		}
	}
	want := []string{"queued: push by octocat", "deploying " + next[:7],
		"deploying 1/5", "deploying 2/5", "deploying 3/5", "deploying 4/5", "deployed " + next[:7] + " to 5 VMs"}
	if got := f.st.descriptions(); !slices.Equal(got, want) {
		t.Errorf("reports owed:\n%q\nwant\n%q", got, want)
	}
	if f.tr.calls != 1 {
		t.Errorf("the fleet was resolved %d times for one job, want once", f.tr.calls)
	}
}

// A canary that fails stops the rollout before any other VM is touched:
// no session, no step, no change on them; the canary is rolled back.
func TestFleet_CanaryFailsNothingElseTouched(t *testing.T) {
	f := startFleet(t, 5, executor.Rollout{Canary: 1, Batch: 2})
	next := fleetSHA(1)
	f.mark(t, 0, "fail-"+next)
	j := f.deploy(t, next)
	if want := "0/5 deployed, rolled back; vm-1: verify failed (exit 1)"; j.State != executor.StateFailure || j.Description != want {
		t.Fatalf("job %s %q, want failure %q", j.State, j.Description, want)
	}
	for i := range 5 {
		if got := f.current(t, i); got != fleetSHA(0) {
			t.Errorf("vm-%d runs %s, want the previous %s", i+1, got, fleetSHA(0))
		}
	}
	for _, l := range f.lines(t) {
		if !strings.HasPrefix(l, "vm-1 ") {
			t.Errorf("a step ran on another VM than the canary: %q", l)
		}
	}
	want := []string{"vm-1: checkout", "vm-1: verify", "vm-1: rollback: checkout", "vm-1: rollback: verify"}
	if got := stepNamesOf(j); !slices.Equal(got, want) {
		t.Errorf("steps %q, want %q", got, want)
	}
}

// A VM of the second batch fails: the batch's other VM finishes, no VM
// starts after it, and every VM the job moved is rolled back with the
// rollback steps; the description counts and names the failed VM.
func TestFleet_BatchFailureRollsBackMoved(t *testing.T) {
	f := startFleet(t, 6, executor.Rollout{Canary: 1, Batch: 2})
	next := fleetSHA(1)
	f.mark(t, 3, "fail-"+next) // vm-4, in the second batch with vm-5
	f.mark(t, 4, "hold-"+next) // vm-5 verifies only once vm-4 has failed
	id := f.push(t, next)
	f.waitStep(t, id, "vm-4: verify", 1)
	if err := os.Remove(filepath.Join(f.srv.Servers[4].Home, "hold-"+next)); err != nil {
		t.Fatal(err)
	}
	j := f.wait(t, id)
	if want := "4/6 deployed, rolled back; vm-4: verify failed (exit 1)"; j.State != executor.StateFailure || j.Description != want {
		t.Fatalf("job %s %q, want failure %q; steps %q", j.State, j.Description, want, stepNamesOf(j))
	}
	for i := range 6 {
		if got := f.current(t, i); got != fleetSHA(0) {
			t.Errorf("vm-%d runs %s, want the previous %s", i+1, got, fleetSHA(0))
		}
	}
	names := stepNamesOf(j)
	for i := range 5 {
		if n := fmt.Sprintf("vm-%d: rollback: checkout", i+1); !slices.Contains(names, n) {
			t.Errorf("vm-%d was not rolled back: no %q among %q", i+1, n, names)
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, "vm-6:") {
			t.Errorf("vm-6, after the failed batch, was touched: %q", n)
		}
	}
	for _, l := range f.lines(t) {
		if strings.HasPrefix(l, "vm-6 ") {
			t.Errorf("a step ran on vm-6: %q", l)
		}
	}
	owed := f.st.descriptions()
	if want := []string{"deploying 1/6", "deploying 2/6", "deploying 3/6", "deploying 4/6"}; !slices.Equal(progressOf(owed), want) {
		t.Errorf("progress owed %q, want %q", progressOf(owed), want)
	}
	if got := owed[len(owed)-1]; got != j.Description {
		t.Errorf("last report owed %q, want the outcome %q", got, j.Description)
	}
}

// An empty fleet is an error that says so; nothing runs.
func TestFleet_Empty(t *testing.T) {
	f := startFleet(t, 1, executor.Rollout{})
	f.tr.mu.Lock()
	f.tr.members = nil
	f.tr.mu.Unlock()
	j := f.deploy(t, fleetSHA(1))
	if j.State != executor.StateError || j.Description != "the fleet has no VMs; nothing ran" {
		t.Fatalf("job %s %q, want error saying the fleet is empty", j.State, j.Description)
	}
	if got := stepNamesOf(j); !slices.Equal(got, []string{"members"}) || !strings.Contains(j.Steps[0].Error, "no addresses") {
		t.Errorf("steps %q (%+v), want one members record with the detail", got, j.Steps)
	}
	if got := f.current(t, 0); got != fleetSHA(0) {
		t.Errorf("the VM moved to %s", got)
	}
}

func progressOf(descs []string) []string {
	var out []string
	for _, d := range descs {
		if strings.HasPrefix(d, "deploying ") && strings.Contains(d, "/") {
			out = append(out, d)
		}
	}
	return out
}
