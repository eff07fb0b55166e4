package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
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
