package executor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store"
	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
)

// The tests of a watch whose deployhook stopped before it ended, and the
// safety invariants they could break:
//   - 4 (every job final, one owner at a time): a watch step is ended only
//     once its watcher can no longer run: its owner's lease expired, an
//     earlier life of this process, or, with replicas, by the lane's new
//     holder only (TestWatchRecover_StartEndsDeadOwnersWatch,
//     TestWatchRecover_ReplicaHolderEndsIt); the job stays the success it
//     was, with no report owed or sent.
//   - 3 (one deploy's processes on a VM): ending the record never opens a
//     session on the target.
//   - 5 (nothing public carries output): the record's error is a fixed
//     text (executor.ErrWatchStopped), which the console shows as
//     "interrupted: deployhook stopped" (server's TestStepSummary), and
//     after which it reads the job as over (server's TestAfterEnd).

// watchStoppedLine is the line a watch ended by another process gets.
const watchStoppedLine = "watch ended: deployhook stopped before the watch finished; the deploy stays a success"

// noTarget is a Transport that counts its Open calls and refuses them: the
// recovery of a watch's record has no business on the target.
type noTarget struct{ opened atomic.Int32 }

func (n *noTarget) Open(context.Context, string, string, time.Duration) (executor.Session, error) {
	n.opened.Add(1)
	return nil, errors.New("no target in this test")
}

// watchedTarget is a target that watches its deploys for 15 minutes.
func watchedTarget(name string) executor.Target {
	return executor.Target{
		Name: name, Repo: "acme/app", Branch: "main", Rollback: true,
		Steps:   []executor.Step{{Name: "deploy", Run: "true", Timeout: time.Minute}},
		Current: &executor.Step{Name: "current", Run: "git rev-parse HEAD", Timeout: time.Minute},
		Watch: &executor.Watch{For: 15 * time.Minute, Every: 30 * time.Second, Trips: 2,
			Check: executor.Step{Name: "watch check", Run: "check", Timeout: time.Minute}},
	}
}

// seedWatched records in st job id of target, a success of SHA n owned by
// owner, deployed from SHA n-1, whose watch step (end is its exit code) ran
// for a minute after the job's end at at.
func seedWatched(t *testing.T, st executor.Store, id, target, owner string, n int, at time.Time, end int) executor.Job {
	t.Helper()
	j := executor.Job{
		ID: id, Target: target, State: executor.StateSuccess, Description: "deployed " + fmt.Sprintf("%040x", n)[:7],
		Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main",
			SHA: fmt.Sprintf("%040x", n), Delivery: "d-" + id, Reason: "push"},
		PreviousSHA: fmt.Sprintf("%040x", n-1), Owner: owner,
		Created: at.Add(-time.Minute), Started: at.Add(-50 * time.Second), Finished: at,
		Steps: []executor.StepRun{
			{Job: id, Seq: 1, Name: "deploy", ExitCode: 0, Output: "ok\n", Started: at.Add(-40 * time.Second), Duration: 40 * time.Second},
			{Job: id, Seq: 2, Name: "watch", ExitCode: end, Started: at, Duration: time.Minute,
				Output: "watching for 15m0s: a check every 30s; 2 degraded in a row roll back to 0000000\n" +
					"+30s healthy: ok\n+1m0s healthy: ok\n"},
		},
	}
	if _, err := st.CreateJob(t.Context(), j); err != nil {
		t.Fatalf("seed job %s: %v", id, err)
	}
	return j
}

// mustRead reads job id from st.
func mustRead(t *testing.T, st executor.Store, id string) executor.Job {
	t.Helper()
	j, err := st.Job(t.Context(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

// wantStopped checks that job id is before, its watch step ended by
// another process: exit -1, ErrWatchStopped, the stopped line after its
// output, nothing else changed.
func wantStopped(t *testing.T, st executor.Store, before executor.Job) {
	t.Helper()
	want := before
	want.Steps = append([]executor.StepRun(nil), before.Steps...)
	w := &want.Steps[len(want.Steps)-1]
	w.Error = executor.ErrWatchStopped.Error()
	w.Output += watchStoppedLine + "\n"
	if got := mustRead(t, st, before.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("job %s after its watch's deployhook stopped:\n got %+v\nwant %+v", before.ID, got, want)
	}
}

// A journal (a SQLite file) holds final successes whose watch step is open
// (exit -1) as kill -9 leaves them, their 15 minutes over (a watch still in
// its window is resumed: TestWatchResume_StartResumesAndRollsBack). Run's
// start-up recovery ends the steps
// of a dead owner (lease expired, or no lease at all) and of an earlier
// life of this process (its own owner id, its lease still live), and
// leaves the one of a live other owner, which the lease loop's sweep ends
// once that lease has expired. The jobs stay success, their reports
// untouched; a watch that had ended is not rewritten; the target is never
// opened. Without the recovery every open step stays open.
func TestWatchRecover_StartEndsDeadOwnersWatch(t *testing.T) {
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := store.Open(t.Context(), lg, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	for _, o := range []executor.Owner{
		{ID: "dead", Kind: "serve", Host: "vm-1", PID: 10, Until: now.Add(-time.Minute)},
		{ID: "live", Kind: "serve", Host: "vm-2", PID: 20, Until: now.Add(time.Hour)},
		{ID: "me", Kind: "serve", Host: "vm-1", PID: 30, Until: now.Add(time.Hour)},
	} {
		if err := st.Beat(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	at := now.Add(-20 * time.Minute)
	older := seedWatched(t, st, "p-older", "production", "dead", 1, at.Add(-time.Hour), 0)
	dead := seedWatched(t, st, "p-dead", "production", "dead", 2, at, -1)
	live := seedWatched(t, st, "s-live", "staging", "live", 2, at, -1)
	mine := seedWatched(t, st, "c-mine", "canary", "me", 2, at, -1)
	gone := seedWatched(t, st, "q-gone", "qa", "no-such-owner", 2, at, -1)
	passed := seedWatched(t, st, "e-passed", "eu", "dead", 2, at, 0)

	tr := &noTarget{}
	rec := &recorder{}
	ex, err := executor.New(lg, executor.Options{
		Targets: []executor.Target{watchedTarget("production"), watchedTarget("staging"), watchedTarget("canary"),
			watchedTarget("qa"), watchedTarget("eu")},
		Owner: executor.Owner{ID: "me"}, Lease: 600 * time.Millisecond, RetryMin: 50 * time.Millisecond,
	}, st, tr, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	// The recovery's last part reads what each target runs: production
	// runs p-dead's SHA once it is over.
	waitFor(t, "the start-up recovery", func() bool { return ex.Current("production") == dead.Trigger.SHA })

	// After the start-up recovery, before any sweep could matter: the dead,
	// ownerless and earlier-life watches are ended; the live one is not.
	wantStopped(t, st, dead)
	wantStopped(t, st, mine)
	wantStopped(t, st, gone)
	for _, j := range []executor.Job{live, older, passed} {
		if got := mustRead(t, st, j.ID); !reflect.DeepEqual(got, j) {
			t.Errorf("job %s changed by the recovery:\n got %+v\nwant %+v", j.ID, got, j)
		}
	}

	// The live owner dies: its lease ends, and a sweep ends its watch.
	if err := st.Beat(t.Context(), executor.Owner{ID: "live", Kind: "serve", Host: "vm-2", PID: 20,
		Until: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sweep to end the watch of the owner that died", func() bool {
		j := mustRead(t, st, live.ID)
		return j.Steps[len(j.Steps)-1].Error != ""
	})
	wantStopped(t, st, live)

	owed, err := st.Owed(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(owed) != 0 || len(rec.reports()) != 0 {
		t.Errorf("reports owed %+v, sent %+v; want none: the jobs stay what they were", owed, rec.reports())
	}
	if n := tr.opened.Load(); n != 0 {
		t.Errorf("the target was opened %d times, want never", n)
	}
}

// replicaWatchTarget is a target of the local machine whose deploy writes
// the SHA to a file that its current probe reads, watched for an hour with
// a check every half hour (none runs during the test).
func replicaWatchTarget(t *testing.T) executor.Target {
	head := filepath.Join(t.TempDir(), "head")
	return executor.Target{
		Name: "production", Repo: "acme/app", Branch: "main", Rollback: true,
		Steps: []executor.Step{{Name: "deploy", Run: `printf '%s\n' "$DEPLOYHOOK_SHA" > ` + head,
			Timeout: time.Minute, Checkpoint: true}},
		Current: &executor.Step{Name: "current", Run: "cat " + head, Timeout: time.Minute},
		Watch: &executor.Watch{For: time.Hour, Every: 30 * time.Minute, Trips: 1,
			Check: executor.Step{Name: "watch check", Run: "true", Timeout: time.Minute}},
	}
}

// deployWatched deploys two SHAs through r, and returns the second job,
// once its watch step is recorded open: the first deploy has no previous
// commit and is not watched.
func deployWatched(t *testing.T, r *replica) string {
	t.Helper()
	var id string
	for n := 1; n <= 2; n++ {
		en, err := r.ex.Enqueue(t.Context(), "production", executor.Trigger{Kind: executor.KindPush, Repo: "acme/app",
			Branch: "main", SHA: fmt.Sprintf("%040x", 0xc0+n), Delivery: fmt.Sprintf("g%d", n), Reason: "push"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		j, err := r.ex.Wait(ctx, en.Job.ID)
		cancel()
		if err != nil || j.State != executor.StateSuccess {
			t.Fatalf("deploy %d: %s %q, %v; want success", n, j.State, j.Description, err)
		}
		id = j.ID
	}
	waitFor(t, "the watch to start", func() bool {
		j := mustRead(t, r.store, id)
		w := j.Steps[len(j.Steps)-1]
		return w.Name == "watch" && w.ExitCode == -1 && strings.HasPrefix(w.Output, "watching for 1h0m0s")
	})
	return id
}

// Two replicas share a PostgreSQL journal. Replica a deploys and watches;
// replica b starts meanwhile and leaves a's watch alone (its start-up
// recovery does not touch it, and it cannot take the lane). Then a dies as
// kill -9 leaves it (its journal connection closed, its context ended: no
// write, no release): b takes the lane over and ends the watch step, the
// job staying success with no other state reported. b's configuration no
// longer watches the target, so it does not resume the watch
// (TestWatchResume_ReplicaHolderResumes).
func TestWatchRecover_ReplicaHolderEndsIt(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	target := replicaWatchTarget(t)
	a := startReplica(t, url, "a", target, nil)
	waitFor(t, "replica a to hold the lane", func() bool {
		h, _ := laneHolder(t, url)
		return h == a.ex.Owner().ID
	})
	id := deployWatched(t, a)
	watched := mustRead(t, a.store, id)

	unwatched := target
	unwatched.Watch = nil
	b := startReplica(t, url, "b", unwatched, nil)
	if got := mustRead(t, b.store, id); !reflect.DeepEqual(got, watched) {
		t.Errorf("a starting replica changed the job that another watches:\n got %+v\nwant %+v", got, watched)
	}
	if h, _ := laneHolder(t, url); h != a.ex.Owner().ID {
		t.Fatalf("lane held by %q while a watches, want a's", h)
	}

	a.store.Close()
	a.stop()
	waitFor(t, "replica b to take the lane", func() bool {
		h, _ := laneHolder(t, url)
		return h == b.ex.Owner().ID
	})
	waitFor(t, "the new holder to end the watch step", func() bool {
		j := mustRead(t, b.store, id)
		return j.Steps[len(j.Steps)-1].Error != ""
	})
	// The step is a's last record of it, ended: a's writes after the kill
	// never landed.
	j := mustRead(t, b.store, id)
	w := j.Steps[len(j.Steps)-1]
	if w.ExitCode != -1 || w.Error != executor.ErrWatchStopped.Error() || !strings.HasPrefix(w.Output, "watching for 1h0m0s") ||
		!strings.HasSuffix(w.Output, "\n"+watchStoppedLine+"\n") {
		t.Errorf("watch step after the holder died: exit %d, error %q, output %q", w.ExitCode, w.Error, w.Output)
	}
	if j.State != watched.State || j.Description != watched.Description || !j.Finished.Equal(watched.Finished) {
		t.Errorf("job after its watch was ended: %s %q %v, want %s %q %v", j.State, j.Description, j.Finished,
			watched.State, watched.Description, watched.Finished)
	}
	owed, err := b.store.Owed(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	reports := b.rep.reports()
	for _, o := range owed {
		reports = append(reports, o.Report)
	}
	for _, r := range reports {
		if r.Job == id && r.State != executor.StateSuccess && r.State.Final() {
			t.Errorf("report of the watched job %s %q, want it to stay success", r.State, r.Description)
		}
	}
}

// A replica shutting down stops its watch at once, quietly: the step says
// so and stays open (exit -1, no error), the job stays success, and Run
// returns without waiting for shutdown's grace (3 minutes here: longer
// than waitFor's deadline). Before, a replica's watch ran on the deploy's
// context, which ends only with the grace. The replica that takes the lane
// next resumes the watch.
func TestWatchRecover_ReplicaShutdownEndsWatch(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a := startReplica(t, url, "a", replicaWatchTarget(t), func(o *executor.Options) { o.Grace = 3 * time.Minute })
	waitFor(t, "replica a to hold the lane", func() bool {
		h, _ := laneHolder(t, url)
		return h == a.ex.Owner().ID
	})
	id := deployWatched(t, a)
	a.stop()
	var err error
	waitFor(t, "Run to return at shutdown", func() bool {
		select {
		case err = <-a.done:
			return true
		default:
			return false
		}
	})
	a.done <- err // for the cleanup
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	j := mustRead(t, a.store, id)
	w := j.Steps[len(j.Steps)-1]
	const shutdown = "watch interrupted: deployhook shutting down; the next deployhook resumes it, or ends it"
	if w.Name != "watch" || w.ExitCode != -1 || w.Error != "" || !strings.HasSuffix(w.Output, "\n"+shutdown+"\n") {
		t.Errorf("watch step after shutdown: %s exit %d, error %q, output %q", w.Name, w.ExitCode, w.Error, w.Output)
	}
	if j.State != executor.StateSuccess {
		t.Errorf("job after shutdown %s %q, want success", j.State, j.Description)
	}

	b := startReplica(t, url, "b", replicaWatchTarget(t), nil)
	waitFor(t, "replica b to resume the watch", func() bool {
		steps := mustRead(t, b.store, id).Steps
		// The new step is recorded first, its first line written after.
		return len(steps) == len(j.Steps)+1 && strings.HasPrefix(steps[len(steps)-1].Output, "watch resumed after")
	})
	got := mustRead(t, b.store, id)
	old, resumed := got.Steps[len(j.Steps)-1], got.Steps[len(j.Steps)]
	if old.Error != executor.ErrWatchStopped.Error() || old.Output != w.Output+watchResumedLine+"\n" ||
		resumed.Name != "watch" || resumed.ExitCode != -1 || !strings.HasPrefix(resumed.Output, "watch resumed after deployhook stopped: ") ||
		got.State != executor.StateSuccess {
		t.Errorf("after b took the lane: job %s, old watch %+v, new %+v", got.State, old, resumed)
	}
}

// A deployhook stopped in the middle of a watch's rollback (kill -9 while
// the rollback's steps ran, or while it waited for the deploy lock) leaves
// a success whose watch tripped: the target may run either commit. The
// next start ends the job error, "rollback … cut off; target state
// unknown", reported to GitHub, the watch and rollback steps closed; it
// neither resumes the watch (its window is not over) nor leaves the
// success standing. Invariant 4: the commit's final mark tells the truth.
func TestWatchRecover_CutRollbackEndsError(t *testing.T) {
	const cut = "interrupted: the watch's rollback to 1111111 was cut off; target state unknown"
	for _, tc := range []struct {
		name     string
		rollback bool // a rollback step had started
		done     bool // the rollback ran to its end, the watch step ended 1
		state    executor.State
		desc     string
	}{
		{"during the rollback's steps", true, false, executor.StateError, cut},
		{"waiting for the deploy lock", false, false, executor.StateError, cut},
		{"after the rollback, before the job's end", true, true, executor.StateFailure, "rolled back after 2 min: dagster is failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			st, err := store.Open(t.Context(), lg, filepath.Join(t.TempDir(), "journal.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			now := time.Now().UTC()
			at := now.Add(-3 * time.Minute) // within the watch's 15 minutes
			j := executor.Job{
				ID: "p-cut", Target: "production", State: executor.StateSuccess, Description: "deployed 2222222",
				Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main",
					SHA: strings.Repeat("2", 40), Delivery: "d-cut", Reason: "push"},
				PreviousSHA: strings.Repeat("1", 40), Owner: "dead",
				Created: at.Add(-time.Minute), Started: at.Add(-50 * time.Second), Finished: at,
				Steps: []executor.StepRun{
					{Job: "p-cut", Seq: 1, Name: "deploy", ExitCode: 0, Output: "ok\n", Started: at.Add(-40 * time.Second), Duration: 40 * time.Second},
					{Job: "p-cut", Seq: 2, Name: "watch", ExitCode: -1, Started: at, Duration: time.Minute,
						Output: "watching for 15m0s\n+30s degraded: dagster is failed\n+1m0s degraded: dagster is failed\n" +
							"rolling back to 1111111 under the deploy lock\n"},
				},
			}
			if tc.rollback {
				j.Steps = append(j.Steps, executor.StepRun{Job: "p-cut", Seq: 3, Name: "rollback: deploy", ExitCode: -1,
					Started: at.Add(time.Minute), Output: "half done\n"})
			}
			if tc.done {
				j.Steps[1].ExitCode = 1
				j.Steps[1].Output += tc.desc + "\n"
				j.Steps[2].ExitCode, j.Steps[2].Output, j.Steps[2].Duration = 0, "done\n", time.Second
			}
			if _, err := st.CreateJob(t.Context(), j); err != nil {
				t.Fatal(err)
			}
			tr := &noTarget{}
			rec := &recorder{}
			ex, err := executor.New(lg, executor.Options{
				Targets: []executor.Target{watchedTarget("production")},
				Owner:   executor.Owner{ID: "me"}, Lease: time.Minute, RetryMin: 50 * time.Millisecond,
			}, st, tr, rec)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- ex.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			desc := tc.desc
			waitFor(t, "the cut rollback's job to end", func() bool {
				for _, r := range rec.reports() {
					if r.Job == "p-cut" && r.State == tc.state {
						return true
					}
				}
				return false
			})
			got := mustRead(t, st, "p-cut")
			if got.State != tc.state || got.Description != desc {
				t.Errorf("job: %s %q, want %s %q", got.State, got.Description, tc.state, desc)
			}
			if len(got.Steps) != len(j.Steps) {
				t.Fatalf("steps %+v, want the %d seeded (no watch resumed)", got.Steps, len(j.Steps))
			}
			w := got.Steps[1]
			if tc.done {
				if !reflect.DeepEqual(got.Steps, j.Steps) {
					t.Errorf("steps of a rollback that ended: %+v, want untouched %+v", got.Steps, j.Steps)
				}
			} else if w.ExitCode != -1 || w.Error != executor.ErrWatchStopped.Error() ||
				!strings.HasSuffix(w.Output, "rolling back to 1111111 under the deploy lock\n"+
					"watch ended: deployhook stopped during the watch's rollback; the target's state is unknown\n") {
				t.Errorf("watch step: exit %d, error %q, output %q", w.ExitCode, w.Error, w.Output)
			}
			if tc.rollback && !tc.done {
				if r := got.Steps[2]; r.ExitCode != -1 || r.Error != executor.ErrWatchStopped.Error() || r.Output != "half done\n" {
					t.Errorf("rollback step: %+v, want closed with ErrWatchStopped", r)
				}
			}
			for _, r := range rec.reports() {
				if r.Job == "p-cut" && r.State == tc.state && r.Description != desc {
					t.Errorf("report %q, want %q", r.Description, desc)
				}
			}
			if n := tr.opened.Load(); n != 0 {
				t.Errorf("the target was opened %d times, want never (nothing resumed, nothing rolled back)", n)
			}
		})
	}
}
