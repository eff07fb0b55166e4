package executor

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The resumed watch's schedule, in a synctest bubble: a job whose watch's
// deployhook stopped 5 minutes into its 15, resumed at start (its owner has
// no lease in the journal). See watch_resume_test.go for the tests on a
// real journal and target.

// startResumed seeds a success of sha(2) from sha(1), ended 5 minutes ago
// by an owner with no lease, whose watch step is open, and starts an
// executor of the watched target on it with v as the transport.
func startResumed(t *testing.T, v *watchVM) (*harness, Job) {
	t.Helper()
	v.fakeTransport = &fakeTransport{changed: "app.py\n"}
	v.setHead(sha(2))
	store := newMemStore()
	at := time.Now().Add(-5 * time.Minute)
	j := Job{ID: "p-1", Target: "production", State: StateSuccess, Description: "deployed " + sha(2)[:7],
		Trigger:     Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(2), Delivery: "d-2"},
		PreviousSHA: sha(1), Owner: "gone", Created: at.Add(-time.Minute), Started: at.Add(-50 * time.Second), Finished: at,
		Steps: []StepRun{
			{Job: "p-1", Seq: 1, Name: "checkout", Started: at.Add(-40 * time.Second), Duration: 40 * time.Second},
			{Job: "p-1", Seq: 2, Name: "watch", ExitCode: -1, Started: at, Duration: 4 * time.Minute,
				Output: "watching for 15m0s: a check every 30s; 2 degraded in a row roll back to " + sha(1)[:7] + "\n"},
		}}
	if _, err := store.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	rep := &fakeReporter{}
	ex, err := New(testLogger(t), Options{Targets: []Target{watchTarget()}, PublicURL: "https://deploy.example.com/",
		RetryMin: time.Second, RetryMax: 10 * time.Second}, store, v, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, store: store, tr: v.fakeTransport, rep: rep, ex: ex, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- ex.Run(ctx) }()
	synctest.Wait()
	return h, j
}

// The resumed watch checks at the times the first one would have, from
// the resume on (the one due then at once), with the baseline taken again,
// for the rest of the window; it passes with the job still a success.
func TestWatchResume_Schedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := &watchVM{}
		h, seeded := startResumed(t, v)
		defer h.stop()
		time.Sleep(11 * time.Minute)
		synctest.Wait()

		j := h.job(seeded.ID)
		if len(j.Steps) != 3 || j.State != StateSuccess || j.Owner != h.ex.Owner().ID {
			t.Fatalf("job %s owned by %q, steps %+v; want success, ours, with a second watch step", j.State, j.Owner, j.Steps)
		}
		old, w := j.Steps[1], j.Steps[2]
		if old.Error != ErrWatchStopped.Error() || old.ExitCode != -1 || old.Output != seeded.Steps[1].Output+watchResumedLine+"\n" {
			t.Errorf("old watch step %+v", old)
		}
		want := []string{"watch resumed after deployhook stopped: 10m0s of 15m0s left, a check every 30s; " +
			"2 degraded in a row roll back to " + sha(1)[:7] + "; unit restarts while it was stopped are not seen"}
		for d := 5 * time.Minute; d <= 15*time.Minute; d += 30 * time.Second {
			want = append(want, "+"+d.String()+" healthy: units active; 0 of 3 runs failed since deploy, 0 of 9 before")
		}
		want = append(want, "watch passed: healthy for the rest of 15m0s")
		if got := outLines(w); !slices.Equal(got, want) || w.Name != "watch" || w.Seq != 3 || w.ExitCode != 0 ||
			!w.Started.Equal(seeded.Finished.Add(5*time.Minute)) || w.Duration != 10*time.Minute {
			t.Errorf("resumed watch step %+v\noutput\n%s\nwant\n%s", w, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		_, checks, baselines, locks := v.state()
		if checks != 21 || baselines != 1 || !slices.Equal(locks, []string{""}) {
			t.Errorf("%d checks, %d baselines, sessions %q; want 21, 1 and one check session without the lock", checks, baselines, locks)
		}
		if got := v.checkEnv[0]["DEPLOYHOOK_WATCH_ELAPSED"]; got != "300" {
			t.Errorf("first check's DEPLOYHOOK_WATCH_ELAPSED = %q, want 300", got)
		}
		if r := h.rep.reports(); len(r) != 0 {
			t.Errorf("reports %+v, want none: the job stays what it was", r)
		}
	})
}

// A push during a resumed watch ends it, as it ends any watch, and deploys.
func TestWatchResume_NewerDeployEndsResumedWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := &watchVM{check: degradedFrom(2, "dagster is failed")}
		h, seeded := startResumed(t, v)
		defer h.stop()
		time.Sleep(31 * time.Second) // the second check is degraded
		synctest.Wait()
		en := h.push(3, "d-3")
		h.settle()

		w := h.job(seeded.ID).Steps[2]
		if ls := outLines(w); w.ExitCode != 0 || len(ls) != 4 || ls[3] != "watch ended: newer deploy "+en.Job.ID {
			t.Errorf("resumed watch step: exit %d, output %q", w.ExitCode, w.Output)
		}
		if j := h.job(seeded.ID); j.State != StateSuccess {
			t.Errorf("job %s %q, want success", j.State, j.Description)
		}
		if got := h.rep.last(sha(3)); got.State != StateSuccess {
			t.Errorf("newer deploy reported %s %q", got.State, got.Description)
		}
		if head, _, _, _ := v.state(); head != sha(3) {
			t.Errorf("target at %s, want %s", head, sha(3))
		}
	})
}
