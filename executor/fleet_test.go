package executor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
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
// Invariants they guard: 2 (a failed rollout, or one stopped while the VMs
// are prepared, leaves the fleet on the previous commit), 3 (each VM's
// steps run under its own lock, one session per VM, held from the
// preparation to the job's end and released on every path) and 5 (public
// text names VMs, never addresses).

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
	ex    *executor.Executor
	st    *owedStore
	tr    *fleetTransport
	srv   *sshdtest.Fleet
	log   string // every VM's steps append "VM STEP SHA" here
	flock string // flock(1)
	stop  func() // shuts the executor down and waits for Run to return
}

func fleetSHA(n int) string { return fmt.Sprintf("%07x%033x", 0xf000000+n, n) }

// fleetSteps are the steps of the test fleet: fetch (before the checkpoint:
// it changes nothing), checkout (the checkpoint) records the SHA in
// $HOME/current, verify. Every step appends "VM STEP SHA" to log, then
// waits while a file $HOME/hold-STEP-SHA exists, then fails if a file
// $HOME/fail-STEP-SHA exists.
func fleetSteps(log string) []executor.Step {
	step := func(name, run string) executor.Step {
		return executor.Step{Name: name, Timeout: time.Minute,
			Run: `echo "$DEPLOYHOOK_VM ` + name + ` $DEPLOYHOOK_SHA" >> '` + log + `'
while [ -e "$HOME/hold-` + name + `-$DEPLOYHOOK_SHA" ]; do sleep 0.02; done
[ ! -e "$HOME/fail-` + name + `-$DEPLOYHOOK_SHA" ] || { echo "` + name + ` failed on $(hostname)"; exit 1; }
` + run}
	}
	st := []executor.Step{
		step("fetch", `true`),
		step("checkout", `echo "$DEPLOYHOOK_SHA" > "$HOME/current"`),
		step("verify", `true`),
	}
	st[1].Checkpoint = true
	return st
}

// startFleet starts n VMs, each at commit fleetSHA(0), and an executor
// whose target "fleet" deploys to them with rollout o; with changes, after
// they changed its options (the target is Targets[0]).
func startFleet(t testing.TB, n int, o executor.Rollout, changes ...func(*executor.Options)) *fleet {
	t.Helper()
	flock := sshdtest.Require(t, "flock", "/usr/bin/flock")
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	f := &fleet{srv: sshdtest.StartN(t, n, sshdtest.Options{}), tr: &fleetTransport{}, log: filepath.Join(t.TempDir(), "steps.log"), flock: flock}
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
	opts := executor.Options{Targets: []executor.Target{target}}
	for _, c := range changes {
		c(&opts)
	}
	f.ex, err = executor.New(lg, opts, f.st, f.tr, &logReporter{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.ex.Run(ctx) }()
	f.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(f.stop)
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

// waitLine waits until the step log has line ("VM STEP SHA").
func (f *fleet) waitLine(t testing.TB, line string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !slices.Contains(f.lines(t), line) {
		if time.Now().After(deadline) {
			t.Fatalf("no step logged %q: %q", line, f.lines(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// locked reports whether VM i's deploy lock is held: flock -n cannot take it.
func (f *fleet) locked(t testing.TB, i int) bool {
	t.Helper()
	p := filepath.Join(f.srv.Servers[i].Home, ".deployhook", "deploy.lock")
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return false // never taken
	}
	err := exec.Command(f.flock, "-n", "-E", "75", p, "true").Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return false
	case errors.As(err, &ee) && ee.ExitCode() == 75:
		return true
	}
	t.Fatalf("flock %s: %v", p, err)
	return false
}

// checkUnlocked checks that no VM's deploy lock is held but those of skip.
func (f *fleet) checkUnlocked(t testing.TB, skip ...int) {
	t.Helper()
	for i := range f.srv.Servers {
		if !slices.Contains(skip, i) && f.locked(t, i) {
			t.Errorf("vm-%d's lock is still held after the job", i+1)
		}
	}
}

// checkUnchanged checks that every VM still runs fleetSHA(0) and that no
// step from the checkpoint on ran anywhere.
func (f *fleet) checkUnchanged(t testing.TB) {
	t.Helper()
	for i := range f.srv.Servers {
		if got := f.current(t, i); got != fleetSHA(0) {
			t.Errorf("vm-%d runs %s, want the previous %s", i+1, got, fleetSHA(0))
		}
	}
	for _, l := range f.lines(t) {
		if strings.Fields(l)[1] != "fetch" {
			t.Errorf("a step past the preparation ran: %q", l)
		}
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

// A rollout with a canary and batches of two prepares every VM (its fetch)
// before the canary's checkout, then deploys stage after stage: the canary's
// steps all end before any other VM's checkout, and each batch's before the
// next one's. The commit status says the progress once per VM, then the
// success. Every lock is released at the end.
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
	lines := f.lines(t)
	if len(lines) != 15 {
		t.Fatalf("%d steps ran, want 15 (three on each VM): %q", len(lines), lines)
	}
	// Stage 0 is the preparation; then the canary, then the batches.
	stage := map[string]int{"vm-1": 1, "vm-2": 2, "vm-3": 2, "vm-4": 3, "vm-5": 3}
	last := 0
	for _, l := range lines {
		fs := strings.Fields(l)
		s := stage[fs[0]]
		if fs[1] == "fetch" {
			s = 0
		}
		if s < last {
			t.Errorf("%q (stage %d) ran after a step of stage %d: %q", l, s, last, lines)
		}
		last = s
	}
	names := stepNamesOf(j)
	for i := range 5 {
		for _, s := range []string{"fetch", "checkout", "verify"} {
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
	f.checkUnlocked(t)
}

// Every VM's lock is held from its preparation to the job's end: while the
// canary verifies, no other deploy can reach the VMs of the later batches.
func TestFleet_LocksHeldForTheWholeRollout(t *testing.T) {
	f := startFleet(t, 4, executor.Rollout{Canary: 1, Batch: 2})
	next := fleetSHA(1)
	f.mark(t, 0, "hold-verify-"+next)
	id := f.push(t, next)
	f.waitLine(t, "vm-1 verify "+next)
	for i := range 4 {
		if !f.locked(t, i) {
			t.Errorf("vm-%d's lock is free while the canary verifies: another deploy could reach it", i+1)
		}
	}
	if err := os.Remove(filepath.Join(f.srv.Servers[0].Home, "hold-verify-"+next)); err != nil {
		t.Fatal(err)
	}
	if j := f.wait(t, id); j.State != executor.StateSuccess {
		t.Fatalf("job %s %q, want success", j.State, j.Description)
	}
	f.checkUnlocked(t)
}

// A canary that fails stops the rollout before any other VM changes: they
// ran only their preparation (fetch, which changes nothing); the canary is
// rolled back, and every lock released.
func TestFleet_CanaryFailsNothingElseTouched(t *testing.T) {
	f := startFleet(t, 5, executor.Rollout{Canary: 1, Batch: 2})
	next := fleetSHA(1)
	f.mark(t, 0, "fail-verify-"+next)
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
		if fs := strings.Fields(l); fs[0] != "vm-1" && fs[1] != "fetch" {
			t.Errorf("a step other than the preparation ran on another VM than the canary: %q", l)
		}
	}
	names := stepNamesOf(j)
	var prepared []string
	for i := range 5 {
		prepared = append(prepared, fmt.Sprintf("vm-%d: fetch", i+1))
	}
	if got := names[:min(5, len(names))]; !sameSet(got, prepared) {
		t.Errorf("first steps %q, want every VM's fetch %q", got, prepared)
	}
	want := []string{"vm-1: checkout", "vm-1: verify", "vm-1: rollback: fetch", "vm-1: rollback: checkout", "vm-1: rollback: verify"}
	if got := names[min(5, len(names)):]; !slices.Equal(got, want) {
		t.Errorf("steps after the preparation %q, want %q", got, want)
	}
	f.checkUnlocked(t)
}

// A VM of the second batch fails: the batch's other VM finishes, no VM
// starts after it, and every VM the job moved is rolled back with the
// rollback steps; the description counts and names the failed VM.
func TestFleet_BatchFailureRollsBackMoved(t *testing.T) {
	f := startFleet(t, 6, executor.Rollout{Canary: 1, Batch: 2})
	next := fleetSHA(1)
	f.mark(t, 3, "fail-verify-"+next) // vm-4, in the second batch with vm-5
	f.mark(t, 4, "hold-verify-"+next) // vm-5 verifies only once vm-4 has failed
	id := f.push(t, next)
	f.waitStep(t, id, "vm-4: verify", 1)
	if err := os.Remove(filepath.Join(f.srv.Servers[4].Home, "hold-verify-"+next)); err != nil {
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
		if strings.HasPrefix(n, "vm-6:") && n != "vm-6: fetch" {
			t.Errorf("vm-6, after the failed batch, ran more than its preparation: %q", n)
		}
	}
	for _, l := range f.lines(t) {
		if strings.HasPrefix(l, "vm-6 ") && !strings.HasPrefix(l, "vm-6 fetch ") {
			t.Errorf("a step past the preparation ran on vm-6: %q", l)
		}
	}
	owed := f.st.descriptions()
	if want := []string{"deploying 1/6", "deploying 2/6", "deploying 3/6", "deploying 4/6"}; !slices.Equal(progressOf(owed), want) {
		t.Errorf("progress owed %q, want %q", progressOf(owed), want)
	}
	if got := owed[len(owed)-1]; got != j.Description {
		t.Errorf("last report owed %q, want the outcome %q", got, j.Description)
	}
	f.checkUnlocked(t)
}

// A VM whose preparation fails ends the job before the canary: no VM
// changed, the description names the VM and the step, nothing is rolled
// back, no progress is reported, and every lock is released.
func TestFleet_PrepareFailureChangesNothing(t *testing.T) {
	f := startFleet(t, 5, executor.Rollout{Canary: 1, Batch: 2})
	next := fleetSHA(1)
	f.mark(t, 3, "fail-fetch-"+next)
	j := f.deploy(t, next)
	if want := "vm-4: fetch failed (exit 1); no VM changed"; j.State != executor.StateFailure || j.Description != want {
		t.Fatalf("job %s %q, want failure %q; steps %q", j.State, j.Description, want, stepNamesOf(j))
	}
	f.checkUnchanged(t)
	var fetch4 *executor.StepRun
	for i, s := range j.Steps {
		if strings.Contains(s.Name, "rollback") || strings.Contains(s.Name, "checkout") {
			t.Errorf("step %q recorded: nothing past the preparation may run", s.Name)
		}
		if s.Name == "vm-4: fetch" {
			fetch4 = &j.Steps[i]
		}
	}
	if fetch4 == nil || fetch4.ExitCode != 1 || !strings.Contains(fetch4.Output, "fetch failed on") {
		t.Errorf("vm-4's fetch record %+v, want exit 1 with its output on the job page", fetch4)
	}
	if p := progressOf(f.st.descriptions()); len(p) > 0 {
		t.Errorf("progress reported %q, though no VM deployed", p)
	}
	if j.PreviousSHA != fleetSHA(0) {
		t.Errorf("previous SHA %s, want %s", j.PreviousSHA, fleetSHA(0))
	}
	f.checkUnlocked(t)

	// The fleet deploys once the VM is mended: nothing was left behind.
	if err := os.Remove(filepath.Join(f.srv.Servers[3].Home, "fail-fetch-"+next)); err != nil {
		t.Fatal(err)
	}
	if j := f.deploy(t, fleetSHA(2)); j.State != executor.StateSuccess {
		t.Errorf("the next job %s %q, want success", j.State, j.Description)
	}
}

// A VM that another deploy holds fails the preparation once the lock wait
// runs out: the job ends before the canary, naming the VM and no address,
// and releases the locks it took, leaving the other deploy's alone.
func TestFleet_PrepareLockedVM(t *testing.T) {
	f := startFleet(t, 4, executor.Rollout{Canary: 1, Batch: 2}, func(o *executor.Options) {
		o.Targets[0].LockWait = time.Second
	})
	other, err := f.tr.members[2].Transport.Open(context.Background(), "fleet", ".deployhook/deploy.lock", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	j := f.deploy(t, fleetSHA(1))
	if want := "vm-3: another deploy holds the VM's lock; no VM changed"; j.State != executor.StateError || j.Description != want {
		t.Fatalf("job %s %q, want error %q; steps %q", j.State, j.Description, want, stepNamesOf(j))
	}
	if strings.Contains(j.Description, "127.0.0.1") {
		t.Errorf("description %q carries an address", j.Description)
	}
	f.checkUnchanged(t)
	f.checkUnlocked(t, 2)
	if !f.locked(t, 2) {
		t.Error("the other deploy's lock on vm-3 was released")
	}
}

// A person's cancel while the VMs are prepared kills the running fetch,
// ends the job before the canary in error, names who cancelled, and
// releases every lock.
func TestFleet_CancelDuringPrepare(t *testing.T) {
	f := startFleet(t, 4, executor.Rollout{Canary: 1, Batch: 2})
	next := fleetSHA(1)
	f.mark(t, 1, "hold-fetch-"+next)
	id := f.push(t, next)
	for _, vm := range []string{"vm-1", "vm-3", "vm-4"} {
		f.waitStep(t, id, vm+": fetch", 0)
	}
	f.waitLine(t, "vm-2 fetch "+next)
	if _, err := f.ex.Cancel(context.Background(), id, "octocat"); err != nil {
		t.Fatal(err)
	}
	j := f.wait(t, id)
	if want := "cancelled by octocat during vm-2: fetch; no VM changed"; j.State != executor.StateError || j.Description != want {
		t.Fatalf("job %s %q, want error %q; steps %q", j.State, j.Description, want, stepNamesOf(j))
	}
	f.checkUnchanged(t)
	f.checkUnlocked(t)
}

// A shutdown while the VMs are prepared (its grace period over) kills the
// running fetch, ends the job before the canary in error, and releases
// every lock.
func TestFleet_ShutdownDuringPrepare(t *testing.T) {
	f := startFleet(t, 3, executor.Rollout{Canary: 1}, func(o *executor.Options) { o.Grace = time.Millisecond })
	next := fleetSHA(1)
	f.mark(t, 2, "hold-fetch-"+next)
	id := f.push(t, next)
	f.waitStep(t, id, "vm-1: fetch", 0)
	f.waitStep(t, id, "vm-2: fetch", 0)
	f.waitLine(t, "vm-3 fetch "+next)
	f.stop()
	j, err := f.st.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if want := "interrupted: deployhook shutting down during vm-3: fetch; no VM changed"; j.State != executor.StateError || j.Description != want {
		t.Fatalf("job %s %q, want error %q; steps %q", j.State, j.Description, want, stepNamesOf(j))
	}
	f.checkUnchanged(t)
	f.checkUnlocked(t)
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

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
