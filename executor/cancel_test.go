package executor

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The outcome of a cancelled run is decided like any other (TestOutcome):
// always StateError, naming who cancelled it and during which step, and what
// became of the target. Invariant 4 (every job ends final) and 2 (the target
// is rolled back, never left half-way without saying so) rest on it.
func TestOutcome_Cancelled(t *testing.T) {
	a, b := sha(1), sha(2)
	killed := func(step string) *stepError { return &stepError{step: step, exitCode: -1, err: context.Canceled} }
	tests := []struct {
		name     string
		res      runResult
		wantDesc string
		wantNow  string
	}{
		{name: "before it ran", res: runResult{sha: b, prev: a, cancelBy: "alice", open: context.Canceled, cancelled: true},
			wantDesc: "cancelled by alice before it ran"},
		{name: "between steps, before the checkpoint", res: runResult{sha: b, prev: a, rollbackOn: true, cancelBy: "alice",
			failed: &stepError{step: "checkout", exitCode: -1, err: context.Canceled, unstarted: true}},
			wantDesc: "cancelled by alice before checkout; nothing had changed"},
		{name: "before the checkpoint", res: runResult{sha: b, prev: a, rollbackOn: true, cancelBy: "alice", failed: killed("preflight")},
			wantDesc: "cancelled by alice during preflight; nothing had changed"},
		{name: "rolled back", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true, rolledBack: true,
			cancelBy: "alice", failed: killed("restart")},
			wantDesc: "cancelled by alice during restart; rolled back to " + a[:7], wantNow: a},
		{name: "rollback failed", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true, rolledBack: true,
			cancelBy: "alice", failed: killed("restart"), rollback: &stepError{step: "rollback: restart", exitCode: 1}},
			wantDesc: "cancelled by alice during restart; rollback to " + a[:7] + " failed at rollback: restart: target state unknown"},
		{name: "rollback off", res: runResult{sha: b, prev: a, checkpoint: true, cancelBy: "alice", failed: killed("restart")},
			wantDesc: "cancelled by alice during restart; rollback is off, target state unknown"},
		{name: "no previous commit", res: runResult{sha: b, rollbackOn: true, checkpoint: true, cancelBy: "alice", failed: killed("restart")},
			wantDesc: "cancelled by alice during restart; no previous commit to roll back to, target state unknown"},
		{name: "rollback needed but not run", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true,
			cancelBy: "alice", failed: killed("restart")},
			wantDesc: "cancelled by alice during restart; rollback did not run: target state unknown"},
		{name: "connection lost while killing", res: runResult{sha: b, prev: a, rollbackOn: true, checkpoint: true, cancelBy: "alice",
			failed: &stepError{step: "restart", exitCode: -1, err: errors.New("EOF"), transport: true}},
			wantDesc: "cancelled by alice during restart; connection lost, target state unknown"},
		{name: "a person's rollback, cancelled by another", res: runResult{sha: a, prev: b, rollbackOn: true, checkpoint: true,
			rolledBack: true, kind: KindRollback, by: "bob", cancelBy: "alice", failed: killed("restart")},
			wantDesc: "rollback by bob: cancelled by alice during restart; rolled back to " + b[:7], wantNow: b},
		{name: "a person's deploy, cancelled by them", res: runResult{sha: b, prev: a, kind: KindManual, by: "bob", cancelBy: "bob",
			failed: killed("preflight")},
			wantDesc: "cancelled by bob during preflight; nothing had changed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, desc, now := outcome(tc.res)
			if st != StateError || desc != tc.wantDesc || now != tc.wantNow {
				t.Errorf("outcome = %s %q now %q, want error %q now %q", st, desc, now, tc.wantDesc, tc.wantNow)
			}
			if len(desc) > 140 {
				t.Errorf("description has %d characters; GitHub takes 140", len(desc))
			}
		})
	}
}

// A person's cancel calls for the rollback; a shutdown does not.
func TestNeedsRollback_Cancel(t *testing.T) {
	r := runResult{prev: sha(1), rollbackOn: true, checkpoint: true,
		failed: &stepError{step: "restart", exitCode: -1, err: context.Canceled}}
	if needsRollback(r) {
		t.Error("a shutdown rolls back")
	}
	r.cancelBy = "alice"
	if !needsRollback(r) {
		t.Error("a person's cancel past the checkpoint does not roll back")
	}
}

// cancelRun sets up a target run at sha(1) whose deploy of sha(2) blocks in
// step until cancelled, and returns the harness and the job.
func cancelRun(t *testing.T, step string, more map[string]func(context.Context, Command, io.Writer) (int, error)) (*harness, *scriptTransport, Job) {
	t.Helper()
	steps := map[string]func(context.Context, Command, io.Writer) (int, error){
		step: func(ctx context.Context, c Command, out io.Writer) (int, error) {
			if c.Env["DEPLOYHOOK_SHA"] == sha(2) {
				return block(ctx, c, out)
			}
			return 0, nil
		},
	}
	for k, v := range more {
		steps[k] = v
	}
	tr := &scriptTransport{steps: steps}
	h := startWith(t, Options{}, newMemStore(), tr, &fakeReporter{})
	j := h.enqueue(KindPush, 2, "octocat")
	synctest.Wait()
	return h, tr, j
}

// Cancel during a step past the checkpoint kills it, rolls back under a
// context the cancel did not end, and ends the job in error saying so.
func TestExecutor_CancelRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, tr, j := cancelRun(t, "restart", nil)
		defer h.stop()
		got, err := h.ex.Cancel(context.Background(), j.ID, "alice")
		if err != nil || got.ID != j.ID || got.State != StateRunning {
			t.Fatalf("Cancel = %s %s, %v; want the running job", got.ID, got.State, err)
		}
		if again, err := h.ex.Cancel(context.Background(), j.ID, "mallory"); err != nil || again.ID != j.ID {
			t.Errorf("a second Cancel = %v, want no error", err)
		}
		h.settle()
		want := "cancelled by alice during restart; rolled back to " + sha(1)[:7]
		if end := h.job(j.ID); end.State != StateError || end.Description != want {
			t.Errorf("job ended %s %q, want error %q", end.State, end.Description, want)
		}
		if r := h.rep.last(sha(2)); r.State != StateError || r.Description != want {
			t.Errorf("GitHub was told %s %q", r.State, r.Description)
		}
		wantRan := []string{"preflight@2", "checkout@2", "restart@2", "preflight@1", "checkout@1", "restart@1", "verify@1"}
		if ran := tr.ran(); !slices.Equal(ran, wantRan) {
			t.Errorf("ran %v, want %v", ran, wantRan)
		}
		tr.mu.Lock()
		rollbackLive := !slices.Contains(tr.ctxOK[3:], false)
		tr.mu.Unlock()
		if !rollbackLive {
			t.Error("a rollback step started with its context ended: the cancel ended the rollback")
		}
		if cur := h.ex.Current("production"); cur != sha(1) {
			t.Errorf("current = %s, want the rolled-back %s", cur, sha(1)[:7])
		}
		if _, err := h.ex.Cancel(context.Background(), j.ID, "alice"); !errors.Is(err, ErrFinal) {
			t.Errorf("Cancel of an ended job = %v, want ErrFinal", err)
		}
	})
}

// Cancel before the checkpoint stops the deploy there: nothing had changed,
// nothing rolls back.
func TestExecutor_CancelBeforeCheckpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, tr, j := cancelRun(t, "preflight", nil)
		defer h.stop()
		if _, err := h.ex.Cancel(context.Background(), j.ID, "alice"); err != nil {
			t.Fatal(err)
		}
		h.settle()
		want := "cancelled by alice during preflight; nothing had changed"
		if end := h.job(j.ID); end.State != StateError || end.Description != want {
			t.Errorf("job ended %s %q, want error %q", end.State, end.Description, want)
		}
		if ran := tr.ran(); !slices.Equal(ran, []string{"preflight@2"}) {
			t.Errorf("ran %v, want only the cancelled preflight", ran)
		}
		if cur := h.ex.Current("production"); cur != sha(1) {
			t.Errorf("current = %s", cur)
		}
	})
}

// A queued job cancelled ends at once, never runs, and is reported.
func TestExecutor_CancelQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, tr, running := cancelRun(t, "restart", nil)
		defer h.stop()
		queued := h.enqueue(KindRollback, 3, "bob")
		got, err := h.ex.Cancel(context.Background(), queued.ID, "alice")
		want := "rollback by bob: cancelled by alice before it ran"
		if err != nil || got.State != StateError || got.Description != want {
			t.Fatalf("Cancel = %s %q, %v; want error %q", got.State, got.Description, err, want)
		}
		if j := h.job(queued.ID); j.State != StateError || j.Description != want || j.Finished.IsZero() {
			t.Errorf("journal: %s %q", j.State, j.Description)
		}
		if _, err := h.ex.Cancel(context.Background(), queued.ID, "alice"); !errors.Is(err, ErrFinal) {
			t.Errorf("Cancel again = %v, want ErrFinal", err)
		}
		if _, err := h.ex.Cancel(context.Background(), running.ID, "alice"); err != nil {
			t.Fatal(err)
		}
		h.settle()
		if r := h.rep.last(sha(3)); r.State != StateError || r.Description != want {
			t.Errorf("GitHub was told %s %q for the cancelled queued job", r.State, r.Description)
		}
		for _, s := range tr.ran() {
			if strings.HasSuffix(s, "@3") {
				t.Errorf("the cancelled queued job ran %s", s)
			}
		}
	})
}

// Cancel knows only this process's jobs, and refuses what it cannot change.
func TestExecutor_CancelRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		store := newMemStore()
		tr := &scriptTransport{steps: map[string]func(context.Context, Command, io.Writer) (int, error){
			"verify": func(ctx context.Context, c Command, out io.Writer) (int, error) {
				if c.Env["DEPLOYHOOK_SHA"] == sha(2) {
					return 1, nil // the deploy of sha(2) fails: it rolls back
				}
				return 0, nil
			},
			"restart": func(ctx context.Context, c Command, out io.Writer) (int, error) {
				if c.Env["DEPLOYHOOK_ROLLBACK"] == "true" {
					<-release
				}
				return 0, nil
			},
		}}
		h := startWith(t, Options{Owner: Owner{ID: "svc"}}, store, tr, &fakeReporter{})
		defer h.stop()
		ctx := context.Background()
		if _, err := h.ex.Cancel(ctx, "no-such-job", "alice"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Cancel(unknown) = %v, want ErrNotFound", err)
		}
		other := Job{ID: "cli-job", Target: "production", State: StateRunning, Owner: "cli", Created: time.Now(),
			Trigger: Trigger{Kind: KindManual, Repo: "acme/app", Branch: "main", SHA: sha(5), Actor: "ann"}}
		if _, err := store.CreateJob(ctx, other); err != nil {
			t.Fatal(err)
		}
		if _, err := h.ex.Cancel(ctx, other.ID, "alice"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Cancel(another process's job) = %v, want ErrNotFound", err)
		}
		if _, err := h.ex.Cancel(ctx, other.ID, " \n"); err == nil {
			t.Error("Cancel without an actor succeeded")
		}
		j := h.enqueue(KindPush, 2, "octocat")
		synctest.Wait() // rolling back after verify failed
		got, err := h.ex.Cancel(ctx, j.ID, "alice")
		if !errors.Is(err, ErrFinal) || got.ID != j.ID {
			t.Errorf("Cancel during the rollback of a failed deploy = %s, %v; want ErrFinal: its steps are over", got.ID, err)
		}
		close(release)
		h.settle()
		want := "verify failed (exit 1); rolled back to " + sha(1)[:7]
		if end := h.job(j.ID); end.State != StateFailure || end.Description != want {
			t.Errorf("job ended %s %q, want failure %q: the late cancel changed it", end.State, end.Description, want)
		}
	})
}

// A cancel that reaches the lane before the worker armed the job (between
// taking it from the queue and starting its steps) is not lost, and is the
// job's only.
func TestExecutor_CancelBeforeArm(t *testing.T) {
	ex, err := New(testLogger(t), Options{Targets: []Target{scriptTarget()}}, newMemStore(), &scriptTransport{}, &fakeReporter{})
	if err != nil {
		t.Fatal(err)
	}
	l := ex.lanes["production"]
	l.running = &Job{ID: "j1", Target: "production", State: StateQueued}
	if _, err := ex.Cancel(context.Background(), "j1", "alice"); err != nil {
		t.Fatalf("Cancel = %v", err)
	}
	ctx, disarm := ex.arm(context.Background(), "production", "j1")
	if ctx.Err() == nil || canceller(ctx) != "alice" {
		t.Errorf("armed after the cancel: err %v, canceller %q; want cancelled by alice", ctx.Err(), canceller(ctx))
	}
	disarm()
	if _, err := ex.Cancel(context.Background(), "j1", "bob"); !errors.Is(err, ErrFinal) {
		t.Errorf("Cancel after disarm = %v, want ErrFinal", err)
	}
	l.running = &Job{ID: "j2", Target: "production", State: StateQueued}
	ctx, disarm = ex.arm(context.Background(), "production", "j2")
	defer disarm()
	if ctx.Err() != nil {
		t.Errorf("the next job starts cancelled: %v", context.Cause(ctx))
	}
}
