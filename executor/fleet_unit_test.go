package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The stages of a rollout: canaries first, then batches of a count or a
// percentage of the fleet, the last one what is left.
func TestPlan(t *testing.T) {
	tests := []struct {
		name string
		n    int
		o    Rollout
		want string
	}{
		{name: "defaults: all at once", n: 5, o: Rollout{}, want: "[[0 1 2 3 4]]"},
		{name: "canary then the rest", n: 5, o: Rollout{Canary: 1}, want: "[[0] [1 2 3 4]]"},
		{name: "canary and batches of 2", n: 5, o: Rollout{Canary: 1, Batch: 2}, want: "[[0] [1 2] [3 4]]"},
		{name: "ten with canary 1, batch 5", n: 10, o: Rollout{Canary: 1, Batch: 5}, want: "[[0] [1 2 3 4 5] [6 7 8 9]]"},
		{name: "25% of 10 rounds up to 3", n: 10, o: Rollout{BatchPercent: 25}, want: "[[0 1 2] [3 4 5] [6 7 8] [9]]"},
		{name: "1% is at least one", n: 3, o: Rollout{BatchPercent: 1}, want: "[[0] [1] [2]]"},
		{name: "canary larger than the fleet", n: 2, o: Rollout{Canary: 3, Batch: 1}, want: "[[0 1]]"},
		{name: "one VM", n: 1, o: Rollout{Canary: 1, Batch: 2}, want: "[[0]]"},
		{name: "batch larger than the rest", n: 4, o: Rollout{Canary: 1, Batch: 9}, want: "[[0] [1 2 3]]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(plan(tt.n, tt.o)); got != tt.want {
				t.Errorf("plan(%d, %+v) = %s, want %s", tt.n, tt.o, got, tt.want)
			}
		})
	}
}

// What becomes of each VM once a rollout stops (invariant 2 and 4: a VM
// the job moved is rolled back or named as unknown, never forgotten).
func TestFateOf(t *testing.T) {
	fail := &stepError{step: "vm-2: verify", exitCode: 1}
	lost := &stepError{step: "vm-2: checkout", exitCode: -1, err: errors.New("eof"), transport: true}
	shut := &stepError{step: "vm-2: checkout", exitCode: -1, err: context.Canceled}
	tests := []struct {
		name                     string
		v                        vmResult
		failed, halt, canRollBck bool
		cancelBy                 string
		want                     fate
	}{
		{name: "never started", v: vmResult{}, failed: true, halt: true, canRollBck: true, want: fateKeep},
		{name: "unreachable: unchanged", v: vmResult{ran: true, open: ErrLocked}, failed: true, halt: true, canRollBck: true, want: fateKeep},
		{name: "deployed, nothing failed", v: vmResult{ran: true}, halt: true, canRollBck: true, want: fateKeep},
		{name: "deployed, another failed, halt", v: vmResult{ran: true}, failed: true, halt: true, canRollBck: true, want: fateRollBack},
		{name: "deployed, another failed, keep going", v: vmResult{ran: true}, failed: true, canRollBck: true, want: fateKeep},
		{name: "deployed, rollback impossible", v: vmResult{ran: true}, failed: true, halt: true, want: fateNew},
		{name: "failed before checkpoint", v: vmResult{ran: true, failed: fail}, failed: true, halt: true, canRollBck: true, want: fateKeep},
		{name: "failed past checkpoint", v: vmResult{ran: true, failed: fail, checkpoint: true}, failed: true, halt: true, canRollBck: true, want: fateRollBack},
		{name: "failed past checkpoint, keep going", v: vmResult{ran: true, failed: fail, checkpoint: true}, failed: true, canRollBck: true, want: fateRollBack},
		{name: "failed past checkpoint, rollback off", v: vmResult{ran: true, failed: fail, checkpoint: true}, failed: true, halt: true, want: fateUnknown},
		{name: "connection lost past checkpoint", v: vmResult{ran: true, failed: lost, checkpoint: true}, failed: true, halt: true, canRollBck: true, want: fateUnknown},
		{name: "shutdown past checkpoint", v: vmResult{ran: true, failed: shut, checkpoint: true}, failed: true, halt: true, canRollBck: true, want: fateUnknown},
		{name: "a person's cancel past checkpoint", v: vmResult{ran: true, failed: shut, checkpoint: true}, failed: true, halt: true, canRollBck: true, cancelBy: "octocat", want: fateRollBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fateOf(tt.v, tt.failed, tt.halt, tt.canRollBck, tt.cancelBy); got != tt.want {
				t.Errorf("fateOf = %d, want %d", got, tt.want)
			}
		})
	}
}

// A fleet job's final state and public description: counts and VM names,
// never an address, and what the fleet runs afterwards.
func TestDecideFleet(t *testing.T) {
	a, b := sha(1), sha(2)
	verify4 := vmResult{vm: "vm-4", ran: true, checkpoint: true, failed: &stepError{step: "vm-4: verify", exitCode: 1}}
	fetch1 := vmResult{vm: "vm-1", ran: true, failed: &stepError{step: "vm-1: fetch", exitCode: 1}}
	verify1 := vmResult{vm: "vm-1", ran: true, checkpoint: true, failed: &stepError{step: "vm-1: verify", exitCode: 1}}
	lost3 := vmResult{vm: "vm-3", ran: true, checkpoint: true, failed: &stepError{step: "vm-3: checkout", exitCode: -1, err: errors.New("dial 10.0.0.3:22: eof"), transport: true}}
	unreachable := vmResult{vm: "vm-5", ran: true, open: errors.New("dial tcp 10.0.0.5:22: i/o timeout")}
	fetch4 := vmResult{vm: "vm-4", ran: true, failed: &stepError{step: "vm-4: fetch", exitCode: 1}}
	fetch2Cancelled := vmResult{vm: "vm-2", ran: true, failed: &stepError{step: "vm-2: fetch", exitCode: -1, err: context.Canceled}}
	base := func(f fleetRun) runResult {
		f.started = true
		return runResult{sha: b, prev: a, rollbackOn: true, kind: KindPush, fleet: &f}
	}
	tests := []struct {
		name     string
		res      runResult
		want     State
		wantDesc string
		wantNow  string
	}{
		{name: "all deployed", res: base(fleetRun{n: 5, deployed: []string{"vm-1", "vm-2", "vm-3", "vm-4", "vm-5"}}),
			want: StateSuccess, wantDesc: "deployed " + b[:7] + " to 5 VMs", wantNow: b},
		{name: "a person's deploy", res: func() runResult {
			r := base(fleetRun{n: 1, deployed: []string{"vm-1"}})
			r.kind, r.by = KindManual, "octocat"
			return r
		}(), want: StateSuccess, wantDesc: "deployed " + b[:7] + " to 1 VM by octocat", wantNow: b},
		{name: "a VM of batch 2 failed, the moved ones rolled back", res: base(fleetRun{n: 5,
			deployed: []string{"vm-1", "vm-2", "vm-3"}, failed: []vmResult{verify4},
			rolledBack: []string{"vm-1", "vm-2", "vm-3", "vm-4"}}),
			want: StateFailure, wantDesc: "3/5 deployed, rolled back; vm-4: verify failed (exit 1)", wantNow: a},
		{name: "canary failed before the checkpoint", res: base(fleetRun{n: 5, failed: []vmResult{fetch1}}),
			want: StateFailure, wantDesc: "0/5 deployed; vm-1: fetch failed (exit 1); nothing was changed"},
		{name: "canary failed past the checkpoint", res: base(fleetRun{n: 5, failed: []vmResult{verify1}, rolledBack: []string{"vm-1"}}),
			want: StateFailure, wantDesc: "0/5 deployed, rolled back; vm-1: verify failed (exit 1)", wantNow: a},
		{name: "two failed", res: base(fleetRun{n: 5, deployed: []string{"vm-1"}, failed: []vmResult{verify1, verify4},
			rolledBack: []string{"vm-1", "vm-4"}}),
			want: StateFailure, wantDesc: "1/5 deployed, rolled back; vm-1: verify failed (exit 1) (+1 more)", wantNow: a},
		{name: "a rollback failed", res: base(fleetRun{n: 5, deployed: []string{"vm-1", "vm-2", "vm-3"}, failed: []vmResult{verify4},
			rolledBack:     []string{"vm-1", "vm-3", "vm-4"},
			rollbackFailed: []*stepError{{step: "vm-2: rollback: checkout", exitCode: 1}}}),
			want: StateError, wantDesc: "3/5 deployed, rollback failed at vm-2: rollback: checkout; vm-4: verify failed (exit 1); fleet state unknown"},
		{name: "rollback off", res: func() runResult {
			r := base(fleetRun{n: 5, deployed: []string{"vm-1", "vm-2"}, failed: []vmResult{verify4},
				leftNew: []string{"vm-1", "vm-2"}, unknown: []string{"vm-4"}, why: "rollback is off"})
			r.rollbackOn = false
			return r
		}(), want: StateError, wantDesc: "2/5 deployed, not rolled back (rollback is off); vm-4: verify failed (exit 1); fleet state unknown"},
		{name: "connection lost: no address", res: base(fleetRun{n: 5, deployed: []string{"vm-1", "vm-2"}, failed: []vmResult{lost3},
			rolledBack: []string{"vm-1", "vm-2"}, unknown: []string{"vm-3"}}),
			want: StateError, wantDesc: "2/5 deployed, rolled back; connection lost during vm-3: checkout; fleet state unknown"},
		{name: "unreachable VM: no address", res: base(fleetRun{n: 5, deployed: []string{"vm-1", "vm-2", "vm-3", "vm-4"}, failed: []vmResult{unreachable},
			rolledBack: []string{"vm-1", "vm-2", "vm-3", "vm-4"}}),
			want: StateError, wantDesc: "4/5 deployed, rolled back; vm-5: could not reach the VM", wantNow: a},
		{name: "keep going: the failed VM rolled back, the others stay", res: base(fleetRun{n: 5, keepGoing: true,
			deployed: []string{"vm-1", "vm-2", "vm-3", "vm-5"}, failed: []vmResult{verify4}, rolledBack: []string{"vm-4"}}),
			want: StateFailure, wantDesc: "4/5 deployed, failed VMs rolled back; vm-4: verify failed (exit 1)"},
		{name: "cancelled by a person", res: func() runResult {
			r := base(fleetRun{n: 3, deployed: []string{"vm-1"}, failed: []vmResult{{vm: "vm-2", ran: true, checkpoint: true,
				failed: &stepError{step: "vm-2: migrate", exitCode: -1, err: context.Canceled}}}, rolledBack: []string{"vm-1", "vm-2"}})
			r.cancelBy = "octocat"
			return r
		}(), want: StateError, wantDesc: "1/3 deployed, rolled back; cancelled by octocat during vm-2: migrate", wantNow: a},
		{name: "a stage cancelled before its first step", res: func() runResult {
			r := base(fleetRun{n: 5, deployed: []string{"vm-1"}, failed: []vmResult{
				{vm: "vm-2", ran: true, failed: &stepError{step: "vm-2: checkout", exitCode: -1, err: context.Canceled, unstarted: true}},
				{vm: "vm-3", ran: true, failed: &stepError{step: "vm-3: checkout", exitCode: -1, err: context.Canceled, unstarted: true}}},
				rolledBack: []string{"vm-1"}})
			r.cancelBy = "octocat"
			return r
		}(), want: StateError, wantDesc: "1/5 deployed, rolled back; cancelled by octocat before vm-2: checkout", wantNow: a},
		{name: "prepare: a fetch failed", res: base(fleetRun{n: 10, prepare: true, failed: []vmResult{fetch4}}),
			want: StateFailure, wantDesc: "vm-4: fetch failed (exit 1); no VM changed"},
		{name: "prepare: two failed", res: base(fleetRun{n: 10, prepare: true, failed: []vmResult{fetch1, fetch4}}),
			want: StateFailure, wantDesc: "vm-1: fetch failed (exit 1) (+1 more); no VM changed"},
		{name: "prepare: a VM locked by another deploy", res: base(fleetRun{n: 10, prepare: true,
			failed: []vmResult{{vm: "vm-3", ran: true, open: fmt.Errorf("target fleet: %w", ErrLocked)}}}),
			want: StateError, wantDesc: "vm-3: another deploy holds the VM's lock; no VM changed"},
		{name: "prepare: a VM unreachable, no address", res: base(fleetRun{n: 10, prepare: true, failed: []vmResult{unreachable}}),
			want: StateError, wantDesc: "vm-5: could not reach the VM; no VM changed"},
		{name: "prepare: connection lost during a fetch", res: base(fleetRun{n: 10, prepare: true, failed: []vmResult{
			{vm: "vm-3", ran: true, failed: &stepError{step: "vm-3: fetch", exitCode: -1, err: errors.New("dial 10.0.0.3:22: eof"), transport: true}}}}),
			want: StateError, wantDesc: "connection lost during vm-3: fetch; no VM changed"},
		{name: "prepare: cancelled by a person during a fetch", res: func() runResult {
			r := base(fleetRun{n: 3, prepare: true, failed: []vmResult{fetch2Cancelled, {vm: "vm-3", ran: true, open: context.Canceled}}})
			r.cancelBy = "octocat"
			return r
		}(), want: StateError, wantDesc: "cancelled by octocat during vm-2: fetch; no VM changed"},
		{name: "prepare: cancelled by a person while connecting", res: func() runResult {
			r := base(fleetRun{n: 3, prepare: true, failed: []vmResult{{vm: "vm-3", ran: true, open: &cancelCause{actor: "octocat"}}}})
			r.cancelBy = "octocat"
			return r
		}(), want: StateError, wantDesc: "cancelled by octocat while connecting to vm-3; no VM changed"},
		{name: "prepare: a person's deploy cancelled by another", res: func() runResult {
			r := base(fleetRun{n: 3, prepare: true, failed: []vmResult{fetch2Cancelled}})
			r.kind, r.by, r.cancelBy = KindManual, "alice", "octocat"
			return r
		}(), want: StateError, wantDesc: "deploy by alice: cancelled by octocat during vm-2: fetch; no VM changed"},
		{name: "prepare: shutdown during a fetch", res: base(fleetRun{n: 3, prepare: true, failed: []vmResult{fetch2Cancelled}}),
			want: StateError, wantDesc: "interrupted: deployhook shutting down during vm-2: fetch; no VM changed"},
		{name: "prepare: shutdown while connecting", res: base(fleetRun{n: 3, prepare: true,
			failed: []vmResult{{vm: "vm-3", ran: true, open: fmt.Errorf("connect to fleet: dial: %w", context.Canceled)}}}),
			want: StateError, wantDesc: "interrupted: deployhook shutting down while connecting to vm-3; no VM changed"},
		{name: "no VMs", res: runResult{sha: b, fleet: &fleetRun{resolve: fmt.Errorf("group dagster in us-central1-a: %w", ErrNoMembers)}},
			want: StateError, wantDesc: "the fleet has no VMs; nothing ran"},
		{name: "members unreadable: no detail", res: runResult{sha: b, fleet: &fleetRun{resolve: errors.New("403 compute.instanceGroupManagers.get")}},
			want: StateError, wantDesc: "could not list the fleet's VMs; nothing ran (see the job page)"},
		{name: "first VM unreachable: as for one VM", res: runResult{sha: b, open: ErrLocked, fleet: &fleetRun{n: 3}},
			want: StateError, wantDesc: "another deploy holds the target's lock; nothing ran"},
		{name: "skipped on the first VM's answer", res: runResult{sha: a, prev: b, fleet: &fleetRun{n: 3},
			verdict: verdict{StateSkipped, "already live: contained in deployed " + b[:7]}},
			want: StateSkipped, wantDesc: "already live: contained in deployed " + b[:7]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, desc, now := outcome(tt.res)
			if st != tt.want || desc != tt.wantDesc || now != tt.wantNow {
				t.Errorf("outcome = %s %q now %q\nwant       %s %q now %q", st, desc, now, tt.want, tt.wantDesc, tt.wantNow)
			}
			for _, addr := range []string{"10.0.0", ":22"} {
				if strings.Contains(desc, addr) {
					t.Errorf("description %q carries an address", desc)
				}
			}
		})
	}
}

// The steps before the first checkpoint are the ones a fleet prepares on
// every VM; without a checkpoint, none is.
func TestSplitSteps(t *testing.T) {
	st := func(name string, checkpoint bool) Step { return Step{Name: name, Checkpoint: checkpoint} }
	names := func(ss []Step) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name          string
		steps         []Step
		wantPre, want string
	}{
		{name: "default sequence", steps: []Step{st("preflight", false), st("fetch", false), st("checkout", true), st("sync", false), st("verify", false)},
			wantPre: "preflight,fetch", want: "checkout,sync,verify"},
		{name: "checkpoint first", steps: []Step{st("checkout", true), st("verify", false)}, wantPre: "", want: "checkout,verify"},
		{name: "no checkpoint: nothing is known unchanged", steps: []Step{st("fetch", false), st("restart", false)}, wantPre: "", want: "fetch,restart"},
		{name: "two checkpoints: the first splits", steps: []Step{st("fetch", false), st("migrate", true), st("checkout", true)},
			wantPre: "fetch", want: "migrate,checkout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pre, post := splitSteps(tt.steps)
			if names(pre) != tt.wantPre || names(post) != tt.want {
				t.Errorf("splitSteps = %q | %q, want %q | %q", names(pre), names(post), tt.wantPre, tt.want)
			}
		})
	}
}

// fakeFleet is a Transport and Fleet of fake VMs: the target "production"
// resolves to them. A VM's fetch blocks until release is closed (or its
// context ends), and counts how many fetches run at once.
type fakeFleet struct {
	mu          sync.Mutex
	vms         []*fakeVM
	release     chan struct{}
	fetching    int
	maxFetching int
	ran         []string // "vm-N STEP", in the order the steps started
}

type fakeVM struct {
	f              *fakeFleet
	name           string
	opens, closes  int
	failFetch      bool
	lockHeldByMore bool // Open fails with ErrLocked
}

func newFakeFleet(n int) *fakeFleet {
	f := &fakeFleet{release: make(chan struct{})}
	for i := range n {
		f.vms = append(f.vms, &fakeVM{f: f, name: fmt.Sprintf("vm-%d", i+1)})
	}
	return f
}

func (f *fakeFleet) Open(context.Context, string, string, time.Duration) (Session, error) {
	return nil, errors.New("a fleet target opens its VMs' sessions")
}

func (f *fakeFleet) Members(context.Context, string) ([]Member, error) {
	var ms []Member
	for _, v := range f.vms {
		ms = append(ms, Member{Name: v.name, Transport: v})
	}
	return ms, nil
}

// steps returns the steps that ran, "vm-N STEP", in the order they started.
func (f *fakeFleet) steps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ran)
}

// locked counts the VMs whose session is open: whose lock is held.
func (f *fakeFleet) locked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.vms {
		n += v.opens - v.closes
	}
	return n
}

func (v *fakeVM) Open(ctx context.Context, _, _ string, _ time.Duration) (Session, error) {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if v.lockHeldByMore {
		return nil, fmt.Errorf("target production: %w", ErrLocked)
	}
	v.opens++
	return &fakeVMSession{v: v}, nil
}

type fakeVMSession struct {
	v      *fakeVM
	closed bool
}

func (s *fakeVMSession) Run(ctx context.Context, c Command, out io.Writer) (int, error) {
	f := s.v.f
	f.mu.Lock()
	f.ran = append(f.ran, s.v.name+" "+c.Name)
	if c.Name != "fetch" {
		f.mu.Unlock()
		return 0, nil
	}
	if s.v.failFetch {
		f.mu.Unlock()
		fmt.Fprintln(out, "fatal: could not read from remote repository")
		return 1, nil
	}
	f.fetching++
	f.maxFetching = max(f.maxFetching, f.fetching)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.fetching--
		f.mu.Unlock()
	}()
	select {
	case <-f.release:
		return 0, nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

func (s *fakeVMSession) Close() error {
	s.v.f.mu.Lock()
	defer s.v.f.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.v.closes++
	}
	return nil
}

// fleetTarget is the target "production" as a fleet: fetch, then checkout
// (the checkpoint) and verify.
func fleetTarget(o Rollout) Target {
	t := scriptTarget()
	t.Steps = []Step{
		{Name: "fetch", Run: "fetch", Timeout: time.Minute},
		{Name: "checkout", Run: "checkout", Timeout: time.Minute, Checkpoint: true},
		{Name: "verify", Run: "verify", Timeout: time.Minute},
	}
	t.Rollout = &o
	return t
}

// A fleet of 12 is prepared at most prepareParallel (10) VMs at once, all of
// them before the canary's checkout; each VM's lock is taken once and held
// until the job ends (invariant 3: the sessions are closed on the way out).
func TestFleet_PrepareBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet(12)
		h := startWith(t, Options{Targets: []Target{fleetTarget(Rollout{Canary: 1, Batch: 5})}}, newMemStore(), f, &fakeReporter{})
		defer h.stop()
		j := h.enqueue(KindPush, 2, "octocat")
		synctest.Wait()
		f.mu.Lock()
		fetching := f.fetching
		f.mu.Unlock()
		if fetching != prepareParallel {
			t.Errorf("%d fetches run at once, want %d", fetching, prepareParallel)
		}
		if got := f.locked(); got != prepareParallel {
			t.Errorf("%d VMs locked while the first ten prepare, want %d", got, prepareParallel)
		}
		close(f.release)
		h.settle()
		if end := h.job(j.ID); end.State != StateSuccess || end.Description != "deployed "+sha(2)[:7]+" to 12 VMs" {
			t.Fatalf("job %s %q, want success", end.State, end.Description)
		}
		f.mu.Lock()
		most := f.maxFetching
		f.mu.Unlock()
		if most != prepareParallel {
			t.Errorf("at most %d fetches ran at once, want %d", most, prepareParallel)
		}
		ran := f.steps()
		firstCheckout := slices.IndexFunc(ran, func(s string) bool { return strings.HasSuffix(s, " checkout") })
		if firstCheckout < 0 {
			t.Fatalf("no checkout ran: %q", ran)
		}
		if fetches := slices.DeleteFunc(ran[:firstCheckout], func(s string) bool { return !strings.HasSuffix(s, " fetch") }); len(fetches) != 12 {
			t.Errorf("%d VMs fetched before the canary's checkout, want all 12: %q", len(fetches), f.steps())
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, v := range f.vms {
			if v.opens != 1 || v.closes != 1 {
				t.Errorf("%s: %d sessions opened, %d closed; want one, closed", v.name, v.opens, v.closes)
			}
		}
	})
}

// A VM whose preparation fails stops the others' and ends the job before
// the canary: no checkout anywhere, every lock released, the VM and step
// named. A locked VM says so.
func TestFleet_PrepareFails(t *testing.T) {
	tests := []struct {
		name     string
		breakVM  func(v *fakeVM)
		want     State
		wantDesc string
	}{
		{name: "fetch failed", breakVM: func(v *fakeVM) { v.failFetch = true }, want: StateFailure,
			wantDesc: "vm-4: fetch failed (exit 1); no VM changed"},
		{name: "locked by another deploy", breakVM: func(v *fakeVM) { v.lockHeldByMore = true }, want: StateError,
			wantDesc: "vm-4: another deploy holds the VM's lock; no VM changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeFleet(6)
				tt.breakVM(f.vms[3])
				h := startWith(t, Options{Targets: []Target{fleetTarget(Rollout{Canary: 1, Batch: 2})}}, newMemStore(), f, &fakeReporter{})
				defer h.stop()
				j := h.enqueue(KindPush, 2, "octocat")
				h.settle() // the other VMs' fetches block until the failure stops them
				end := h.job(j.ID)
				if end.State != tt.want || end.Description != tt.wantDesc {
					t.Fatalf("job %s %q, want %s %q", end.State, end.Description, tt.want, tt.wantDesc)
				}
				for _, s := range f.steps() {
					if !strings.HasSuffix(s, " fetch") {
						t.Errorf("%q ran: only fetches may run before the canary", s)
					}
				}
				if n := f.locked(); n != 0 {
					t.Errorf("%d VMs still locked after the job", n)
				}
				if cur := h.ex.Current("production"); cur != sha(1) {
					t.Errorf("current = %s, want the unchanged %s", cur, sha(1)[:7])
				}
			})
		})
	}
}

// New refuses a fleet that watches, as the configuration does: the watch
// checks and rolls back through one session, one VM of the fleet.
func TestNew_fleetWithWatch(t *testing.T) {
	tg := fleetTarget(Rollout{Batch: 1})
	if _, err := New(testLogger(t), Options{Targets: []Target{tg}}, newMemStore(), newFakeFleet(2), &fakeReporter{}); err != nil {
		t.Fatalf("New with a fleet: %v", err)
	}
	tg.Watch = &Watch{For: time.Minute, Every: time.Second, Trips: 1,
		Check: Step{Name: "watch check", Run: "true", Timeout: time.Minute}}
	_, err := New(testLogger(t), Options{Targets: []Target{tg}}, newMemStore(), newFakeFleet(2), &fakeReporter{})
	if err == nil || !strings.Contains(err.Error(), "cannot have a watch") {
		t.Errorf("New with a fleet that watches: %v, want it refused", err)
	}
}
