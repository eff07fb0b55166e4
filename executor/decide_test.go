package executor

import (
	"context"
	"errors"
	"testing"
)

// The run's outcome is a pure function of what happened (issue 8 item 6):
// each case names its inputs and the one final state, description and "now"
// it must give. Invariant 2 (production moves forward only) and 4 (every job
// ends final) rest on it.
func TestOutcome(t *testing.T) {
	a, b := sha(1), sha(2) // the target ran a; the job deploys b
	exit1 := &stepError{step: "verify", exitCode: 1}
	tests := []struct {
		name     string
		res      runResult
		want     State
		wantDesc string
		wantNow  string
	}{
		{name: "success", res: runResult{sha: b, prev: a},
			want: StateSuccess, wantDesc: "deployed " + b[:7], wantNow: b},
		{name: "success with what is not applied", res: runResult{sha: b, prev: a, notApplied: "; not applied: infra/"},
			want: StateSuccess, wantDesc: "deployed " + b[:7] + "; not applied: infra/", wantNow: b},
		{name: "lock held", res: runResult{sha: b, open: ErrLocked},
			want: StateError, wantDesc: "another deploy holds the target's lock; nothing ran"},
		{name: "open cancelled by shutdown", res: runResult{sha: b, open: context.Canceled, cancelled: true},
			want: StateError, wantDesc: "interrupted: deployhook shutting down; nothing ran"},
		{name: "unreachable: no address in public text", res: runResult{sha: b, open: errors.New("dial tcp 10.1.2.3:22: i/o timeout")},
			want: StateError, wantDesc: "could not reach the target; nothing ran (see the job page)"},
		{name: "current unreadable", res: runResult{sha: b, current: errors.New("ssh: broken pipe")},
			want: StateError, wantDesc: "could not read the target's current commit; nothing ran"},
		{name: "skipped: contained", res: runResult{sha: a, prev: b, verdict: verdict{StateSkipped, "already live: contained in deployed " + b[:7]}},
			want: StateSkipped, wantDesc: "already live: contained in deployed " + b[:7]},
		{name: "refused before any step", res: runResult{sha: b, prev: a, verdict: verdict{StateFailure, "x is not on branch main; nothing ran"}},
			want: StateFailure, wantDesc: "x is not on branch main; nothing ran"},
		{name: "failed before checkpoint", res: runResult{sha: b, prev: a, rollbackOn: true,
			failed: &stepError{step: "preflight", exitCode: 1}},
			want: StateFailure, wantDesc: "preflight failed (exit 1); nothing was changed"},
		{name: "connection lost after checkpoint", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true,
			failed: &stepError{step: "restart", exitCode: -1, err: errors.New("EOF"), transport: true}},
			want: StateError, wantDesc: "connection lost during restart; target state unknown"},
		{name: "connection lost before checkpoint", res: runResult{sha: b, prev: a,
			failed: &stepError{step: "fetch", exitCode: -1, err: errors.New("EOF"), transport: true}},
			want: StateError, wantDesc: "connection lost during fetch"},
		{name: "cancelled by shutdown", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true,
			failed: &stepError{step: "sync", exitCode: -1, err: context.Canceled}},
			want: StateError, wantDesc: "interrupted: deployhook shutting down during sync; target state unknown"},
		{name: "rollback off", res: runResult{sha: b, prev: a, checkpoint: true, failed: exit1},
			want: StateFailure, wantDesc: "verify failed (exit 1); rollback is off, target state unknown"},
		{name: "no previous commit", res: runResult{sha: b, rollbackOn: true, checkpoint: true, failed: exit1},
			want: StateFailure, wantDesc: "verify failed (exit 1); no previous commit to roll back to"},
		{name: "rolled back", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true, failed: exit1, rolledBack: true},
			want: StateFailure, wantDesc: "verify failed (exit 1); rolled back to " + a[:7], wantNow: a},
		{name: "rollback failed", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true, failed: exit1, rolledBack: true,
			rollback: &stepError{step: "rollback: restart", exitCode: 1}},
			want: StateError, wantDesc: "verify failed (exit 1); rollback to " + a[:7] + " failed at rollback: restart: target state unknown"},
		{name: "rollback needed but not run", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true, failed: exit1},
			want: StateError, wantDesc: "verify failed (exit 1); rollback did not run: target state unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, desc, now := outcome(tc.res)
			if st != tc.want || desc != tc.wantDesc || now != tc.wantNow {
				t.Errorf("outcome = %s %q now %q, want %s %q now %q", st, desc, now, tc.want, tc.wantDesc, tc.wantNow)
			}
			if !st.Final() {
				t.Errorf("outcome %s is not final", st)
			}
			if len(desc) > 140 {
				t.Errorf("description has %d characters; GitHub takes 140", len(desc))
			}
		})
	}
}

func TestNeedsRollback(t *testing.T) {
	exit1 := &stepError{step: "verify", exitCode: 1}
	tests := []struct {
		name string
		res  runResult
		want bool
	}{
		{"failed after checkpoint", runResult{prev: sha(1), rollbackOn: true, checkpoint: true, failed: exit1}, true},
		{"success", runResult{prev: sha(1), rollbackOn: true, checkpoint: true}, false},
		{"before checkpoint", runResult{prev: sha(1), rollbackOn: true, failed: exit1}, false},
		{"rollback off", runResult{prev: sha(1), checkpoint: true, failed: exit1}, false},
		{"no previous", runResult{rollbackOn: true, checkpoint: true, failed: exit1}, false},
		{"connection lost", runResult{prev: sha(1), rollbackOn: true, checkpoint: true,
			failed: &stepError{step: "x", exitCode: -1, err: errors.New("EOF"), transport: true}}, false},
		{"shutdown", runResult{prev: sha(1), rollbackOn: true, checkpoint: true,
			failed: &stepError{step: "x", exitCode: -1, err: context.Canceled}}, false},
		{"timeout", runResult{prev: sha(1), rollbackOn: true, checkpoint: true,
			failed: &stepError{step: "x", exitCode: -1, err: ErrTimeout}}, true},
	}
	for _, tc := range tests {
		if got := needsRollback(tc.res); got != tc.want {
			t.Errorf("%s: needsRollback = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// admit holds invariant 2: automatic triggers never move a target back, and a
// person moves it back only to a commit on the branch or deployed before.
func TestAdmit(t *testing.T) {
	old, live := sha(3), sha(4)
	go_ := verdict{}
	tests := []struct {
		name string
		f    facts
		want verdict
	}{
		{"automatic, newer", facts{automatic: true, sha: sha(5), prev: live, contained: answerNo}, go_},
		{"automatic, contained", facts{automatic: true, sha: old, prev: live, contained: answerYes},
			verdict{StateSkipped, "already live: contained in deployed " + live[:7]}},
		{"automatic, ancestry unknown", facts{automatic: true, sha: old, prev: live, contained: answerUnknown},
			verdict{StateError, "could not tell whether " + old[:7] + " is older than the deployed " + live[:7] + "; nothing ran"}},
		{"automatic, nothing deployed yet", facts{automatic: true, sha: old, contained: answerUnasked}, go_},
		{"automatic, no one to ask", facts{automatic: true, sha: old, prev: live, contained: answerUnasked}, go_},
		{"automatic, off the branch", facts{automatic: true, sha: sha(60), prev: live, branch: "main", contained: answerNo, onBranch: answerNo},
			verdict{StateFailure, sha(60)[:7] + " is not on branch main; nothing ran"}},
		{"automatic, branch unknown", facts{automatic: true, sha: sha(5), prev: live, branch: "main", contained: answerNo, onBranch: answerUnknown},
			verdict{StateError, "could not tell whether " + sha(5)[:7] + " is on branch main; nothing ran"}},
		{"automatic, deployed before does not excuse the branch", facts{automatic: true, sha: sha(61), branch: "main", deployedBefore: true, onBranch: answerNo},
			verdict{StateFailure, sha(61)[:7] + " is not on branch main; nothing ran"}},
		{"person, older commit on the branch", facts{sha: old, prev: live, branch: "main", contained: answerYes, onBranch: answerYes}, go_},
		{"person, deployed before", facts{sha: sha(60), prev: live, branch: "main", deployedBefore: true, onBranch: answerNo}, go_},
		{"person, any commit", facts{sha: sha(60), prev: live, branch: "main", anyCommit: true, onBranch: answerNo}, go_},
		{"person, off the branch", facts{sha: sha(60), prev: live, branch: "main", target: "production", onBranch: answerNo},
			verdict{StateFailure, sha(60)[:7] + " is neither on branch main nor deployed to production before; nothing ran"}},
		{"person, branch unknown", facts{sha: sha(60), prev: live, branch: "main", onBranch: answerUnknown},
			verdict{StateError, "could not tell whether " + sha(60)[:7] + " is on branch main; nothing ran"}},
		{"person, branch checked by the steps", facts{sha: sha(60), prev: live, branch: "main", onBranch: answerUnasked}, go_},
	}
	for _, tc := range tests {
		if got := admit(tc.f); got != tc.want {
			t.Errorf("%s: admit = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// orphanAction holds invariant 4: a job whose owner died ends or is queued
// again, never stays pending.
func TestOrphanAction(t *testing.T) {
	tests := []struct {
		name            string
		st              State
		cli, configured bool
		want            orphan
	}{
		{"service, running", StateRunning, false, true,
			orphan{state: StateError, description: "interrupted: the deployhook that ran it stopped; target state unknown"}},
		{"cli, running", StateRunning, true, true,
			orphan{state: StateError, description: "interrupted: the deployhook that ran it stopped; target state unknown"}},
		{"service, queued", StateQueued, false, true, orphan{requeue: true}},
		{"cli, queued", StateQueued, true, true,
			orphan{state: StateError, description: "interrupted: the deployhook that queued it stopped"}},
		{"service, queued, target gone", StateQueued, false, false,
			orphan{state: StateError, description: "target staging is no longer configured"}},
		{"service, running, target gone", StateRunning, false, false,
			orphan{state: StateError, description: "interrupted: the deployhook that ran it stopped; target state unknown"}},
	}
	for _, tc := range tests {
		if got := orphanAction(tc.st, "staging", tc.cli, tc.configured); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
