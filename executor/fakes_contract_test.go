package executor

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// The memStore fake keeps the Store contract of types.go (issue 9: a fake that
// disagrees with its contract makes every test that uses it lie).
func TestMemStore_Contract(t *testing.T) {
	ctx := context.Background()
	m := newMemStore()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id, target string, n int, st State, created time.Time, owner string) Job {
		return Job{ID: id, Target: target, State: st, Created: created, Owner: owner,
			Trigger: Trigger{Kind: KindPush, SHA: sha(n), Delivery: "d-" + id, BodyHash: "h-" + id}}
	}
	for _, j := range []Job{
		mk("old-ok", "production", 1, StateSuccess, t0, ""),
		mk("old-fail", "production", 2, StateFailure, t0.Add(time.Minute), ""),
		mk("ok", "production", 3, StateSuccess, t0.Add(2*time.Minute), ""),
		mk("skipped", "production", 1, StateSkipped, t0.Add(3*time.Minute), ""),
		mk("run-dead", "production", 4, StateRunning, t0.Add(4*time.Minute), "dead"),
		mk("run-live", "staging", 4, StateRunning, t0.Add(5*time.Minute), "live"),
		mk("q-none", "staging", 5, StateQueued, t0.Add(6*time.Minute), ""),
	} {
		if _, err := m.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}

	// Body hash: the same target refuses it; another target takes it.
	again := mk("again", "production", 9, StateQueued, t0, "")
	again.Trigger.Delivery = "fresh"
	again.Trigger.BodyHash = "h-ok"
	if id, err := m.CreateJob(ctx, again); !errors.Is(err, ErrDuplicate) || id != "ok" {
		t.Errorf("CreateJob(same body) = %q, %v; want ok, ErrDuplicate", id, err)
	}
	again.Target = "staging"
	if _, err := m.CreateJob(ctx, again); err != nil {
		t.Errorf("CreateJob(same body, other target) = %v", err)
	}

	if j, err := m.Deployed(ctx, "production", sha(1)); err != nil || j.ID != "old-ok" {
		t.Errorf("Deployed(sha 1) = %s, %v; want old-ok (skipped does not count)", j.ID, err)
	}
	if _, err := m.Deployed(ctx, "production", sha(2)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Deployed(failed sha) = %v, want ErrNotFound", err)
	}

	now := t0.Add(time.Hour)
	m.Beat(ctx, Owner{ID: "dead", Until: now.Add(-time.Second)})
	m.Beat(ctx, Owner{ID: "live", Until: now.Add(time.Minute)})
	orphans, _ := m.Orphans(ctx, now)
	var ids []string
	for _, j := range orphans {
		ids = append(ids, j.ID)
	}
	if want := []string{"again", "q-none", "run-dead"}; !slices.Equal(ids, want) {
		t.Errorf("Orphans = %v, want %v (newest first, live owner's job left out)", ids, want)
	}
	if err := m.Adopt(ctx, "run-dead", "dead", "me"); err != nil {
		t.Errorf("Adopt = %v", err)
	}
	for _, tc := range []struct{ id, from string }{{"run-dead", "dead"}, {"ok", ""}, {"nope", ""}} {
		if err := m.Adopt(ctx, tc.id, tc.from, "other"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Adopt(%s from %q) = %v, want ErrNotFound", tc.id, tc.from, err)
		}
	}

	m.Owe(ctx, Report{Job: "old-fail"})
	m.Owe(ctx, Report{Job: "ok"})
	if owed, _ := m.Owed(ctx, 0); len(owed) != 2 {
		t.Errorf("Owed(0) = %d reports, want all 2", len(owed))
	}
	if err := m.Settle(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Settle(unknown) = %v", err)
	}
	if err := m.Retry(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Retry(unknown) = %v", err)
	}

	// Prune: final jobs before t0+90s go, and all but the newest final one
	// of each target; never a target's newest success; owed reports stay.
	n, err := m.Prune(ctx, t0.Add(90*time.Second), 1)
	if err != nil || n != 2 {
		t.Errorf("Prune = %d, %v; want 2 (old-ok and old-fail; ok stays as the newest success, skipped as the newest final job)", n, err)
	}
	left, _ := m.Jobs(ctx, "", 0)
	ids = nil
	for _, j := range left {
		ids = append(ids, j.ID)
	}
	if want := []string{"again", "q-none", "run-live", "run-dead", "skipped", "ok"}; !slices.Equal(ids, want) {
		t.Errorf("after Prune: %v, want %v", ids, want)
	}
	if owed, _ := m.Owed(ctx, 0); len(owed) != 2 {
		t.Errorf("Prune deleted owed reports: %d left", len(owed))
	}
	// The pruned job's delivery and body are forgotten with it.
	if _, err := m.CreateJob(ctx, mk("old-fail", "production", 2, StateQueued, now, "")); err != nil {
		t.Errorf("CreateJob after its delivery was pruned: %v", err)
	}
}
