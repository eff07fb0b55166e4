package executor_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/store"
	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
)

// The tests of a watch resumed after its deployhook stopped, and the safety
// invariants they could break:
//   - 4 (every job final, one owner at a time): only a process that may
//     watch resumes, only the newest job of the target whose watch window
//     is not over, and with replicas only the lane's new holder; the job
//     becomes the resuming process's (TestWatchResume_StartResumesAndRollsBack,
//     TestWatchResume_NotResumed, TestWatchResume_ReplicaHolderResumes).
//   - 3 (one deploy's processes on a VM): a resumed watch rolls back under
//     the deploy lock, as the first watch would.
//   - 2 (production moves forward only): the rollback restores the commit
//     the target ran before the job; a newer job ends the watch instead.

// watchResumedLine is the last line of a watch step that another process
// resumed in a new step.
const watchResumedLine = "watch interrupted: deployhook stopped; resumed in the next step"

// resumeVM is a target of the local machine in dir: its deploy step writes
// the SHA to dir/head (and logs each run to dir/runs), its current probe
// reads it, and its watch, for 15 minutes with a check every second, is
// degraded while dir/degraded exists. Each check writes the baseline it got
// to dir/baseline. It takes the deploy lock dir/lock/deploy.lock.
func resumeVM(dir string) executor.Target {
	f := func(name string) string { return filepath.Join(dir, name) }
	return executor.Target{
		Name: "production", Repo: "acme/app", Branch: "main", Rollback: true,
		Lock: f("lock/deploy.lock"), LockWait: time.Minute,
		Steps: []executor.Step{{Name: "deploy", Timeout: time.Minute, Checkpoint: true,
			Run: `printf '%s\n' "$DEPLOYHOOK_SHA" > ` + f("head") +
				` && printf '%s %s\n' "$DEPLOYHOOK_SHA" "${DEPLOYHOOK_ROLLBACK:-false}" >> ` + f("runs")}},
		Current: &executor.Step{Name: "current", Run: "cat " + f("head"), Timeout: time.Minute},
		Watch: &executor.Watch{For: 15 * time.Minute, Every: time.Second, Trips: 2,
			Check: executor.Step{Name: "watch check", Timeout: time.Minute,
				Run: `printf '%s\n' "$DEPLOYHOOK_WATCH_BASELINE" > ` + f("baseline") + `
if [ -e ` + f("degraded") + ` ]; then echo "curl: detail for the log"; echo "dagster is failed"; exit 1; fi
echo healthy`},
			Baseline: &executor.Step{Name: "watch baseline", Timeout: time.Minute,
				Run: `echo "elapsed=$DEPLOYHOOK_WATCH_ELAPSED"`}},
		Notify: executor.NoticeRule{On: []executor.Event{executor.EventFailure}, Channels: []string{"chat"}},
	}
}

// noticeBox is a Notifier that keeps the notices it was given.
type noticeBox struct {
	mu   sync.Mutex
	sent []executor.Report
}

func (n *noticeBox) Notify(_ context.Context, r executor.Report) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, r)
	return nil
}

func (n *noticeBox) notices() []executor.Report {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.sent)
}

// single is one deployhook process (not a replica) on a SQLite journal.
type single struct {
	ex   *executor.Executor
	st   *store.Store
	rep  *recorder
	box  *noticeBox
	stop func() // shuts it down and waits until Run returns
}

// startSingle runs an executor of target on the SQLite journal st, as
// owner, with the local transport until the test ends, and waits until it
// is ready.
func startSingle(t *testing.T, st *store.Store, target executor.Target, owner string) *single {
	t.Helper()
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := &single{st: st, rep: &recorder{}, box: &noticeBox{}}
	var err error
	s.ex, err = executor.New(lg, executor.Options{
		Targets: []executor.Target{target}, Owner: executor.Owner{ID: owner},
		Lease: 600 * time.Millisecond, RetryMin: 50 * time.Millisecond,
		Notifiers: map[string]executor.Notifier{"chat": s.box},
	}, st, remote.NewLocal(lg, remote.LocalOptions{KillGrace: time.Second}), s.rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ex.Run(ctx) }()
	s.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(s.stop)
	waitFor(t, "the executor to be ready", func() bool { return s.ex.Ready(t.Context()) == nil })
	return s
}

// openJournal opens a SQLite journal in a new file, with the owners given
// (each lease ending at its time), and closes it at the end of the test.
func openJournal(t *testing.T, owners map[string]time.Time) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), slog.New(slog.DiscardHandler), filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for id, until := range owners {
		if err := st.Beat(t.Context(), executor.Owner{ID: id, Kind: "serve", Host: "vm-1", PID: 10, Until: until}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// watchSteps returns the watch steps of j.
func watchSteps(j executor.Job) []executor.StepRun {
	var out []executor.StepRun
	for _, s := range j.Steps {
		if s.Name == "watch" {
			out = append(out, s)
		}
	}
	return out
}

// wantOldClosed checks that before's watch step, in j, was ended as
// another process ends it, with last as its last line, nothing else of it
// changed.
func wantOldClosed(t *testing.T, j, before executor.Job, last string) {
	t.Helper()
	want := before.Steps[len(before.Steps)-1]
	want.Error = executor.ErrWatchStopped.Error()
	want.Output += last + "\n"
	i := slices.IndexFunc(j.Steps, func(s executor.StepRun) bool { return s.Seq == want.Seq })
	if i < 0 || !reflect.DeepEqual(j.Steps[i], want) {
		t.Errorf("the stopped watch's step:\n got %+v\nwant %+v", j.Steps, want)
	}
}

// A journal (a SQLite file) holds a success whose watch step is open, 5
// minutes into its 15, as kill -9 leaves it; the target has degraded since.
// The next deployhook resumes the watch as a new step, for the rest of the
// window (the baseline taken again, with the deploy's end on the target's
// clock), and rolls back: the job becomes failure with the watch's
// description, reported and announced; the target runs the previous
// commit again; the live log follows the new step. This is so whether the
// watch's owner is dead at start, or still holds its lease then (a quick
// restart) and dies later: the sweep hands it over. Without the resume the
// job stays success and nothing is rolled back.
func TestWatchResume_StartResumesAndRollsBack(t *testing.T) {
	for _, tt := range []struct {
		name  string
		live  bool   // the watch's owner holds its lease at start
		owner string // the job's owner
	}{
		{"dead owner", false, "dead"},
		{"owner dies after the start", true, "old"},
		{"an earlier life of this process", true, "me"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target := resumeVM(dir)
			now := time.Now().UTC()
			until := now.Add(-time.Minute)
			if tt.live {
				until = now.Add(time.Hour)
			}
			seed := openJournal(t, map[string]time.Time{tt.owner: until})
			before := seedWatched(t, seed, "p-1", "production", tt.owner, 2, now.Add(-5*time.Minute), -1)
			writeFile(t, filepath.Join(dir, "head"), before.Trigger.SHA+"\n")
			writeFile(t, filepath.Join(dir, "degraded"), "")

			s := startSingle(t, seed, target, "me")
			if tt.live && tt.owner != "me" {
				if j := mustRead(t, s.st, before.ID); !reflect.DeepEqual(j, before) {
					t.Fatalf("a live owner's watch was touched at start:\n got %+v\nwant %+v", j, before)
				}
				if err := seed.Beat(t.Context(), executor.Owner{ID: tt.owner, Kind: "serve", Host: "vm-1", PID: 10,
					Until: time.Now().Add(-time.Second)}); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the resumed watch to roll back", func() bool {
				return mustRead(t, s.st, before.ID).State != executor.StateSuccess
			})

			const want = "rolled back after 5 min: dagster is failed"
			j := mustRead(t, s.st, before.ID)
			if j.State != executor.StateFailure || j.Description != want || j.Owner != "me" {
				t.Errorf("job %s %q owned by %q, want failure %q owned by me", j.State, j.Description, j.Owner, want)
			}
			var names []string
			for _, st := range j.Steps {
				names = append(names, st.Name)
			}
			if want := []string{"deploy", "watch", "watch", "rollback: deploy"}; !slices.Equal(names, want) {
				t.Fatalf("steps %v, want %v", names, want)
			}
			wantOldClosed(t, j, before, watchResumedLine)
			w := j.Steps[2]
			ls := strings.Split(strings.TrimSuffix(w.Output, "\n"), "\n")
			first := regexp.MustCompile(`^watch resumed after deployhook stopped: (\d+m\d+s) of 15m0s left, a check every 1s; ` +
				`2 degraded in a row roll back to 0000000; unit restarts while it was stopped are not seen$`)
			if w.Seq != 3 || w.ExitCode != 1 || w.Error != "" || !w.Started.After(j.Steps[1].Started) || len(ls) != 5 ||
				!first.MatchString(ls[0]) ||
				!regexp.MustCompile(`^\+5m\d+s degraded \(1 of 2\): dagster is failed$`).MatchString(ls[1]) ||
				!regexp.MustCompile(`^\+5m\d+s degraded \(2 of 2\): dagster is failed$`).MatchString(ls[2]) ||
				ls[3] != "rolling back to 0000000 under the deploy lock" || ls[4] != want {
				t.Errorf("resumed watch step: seq %d exit %d error %q, output %q", w.Seq, w.ExitCode, w.Error, w.Output)
			}
			if left := first.FindStringSubmatch(ls[0]); left != nil {
				if d, _ := time.ParseDuration(left[1]); d > 10*time.Minute || d < 8*time.Minute {
					t.Errorf("resumed with %s left, want about 10m0s", d)
				}
			}
			// The baseline was taken at the resume, dated back to the deploy's end.
			base := readFile(t, filepath.Join(dir, "baseline"))
			m := regexp.MustCompile(`^elapsed=(\d+)\n$`).FindStringSubmatch(base)
			if el, _ := strconv.Atoi(append(m, "", "")[1]); el < 300 || el > 420 {
				t.Errorf("baseline seen by the checks %q, want elapsed= the seconds since the deploy's end", base)
			}
			// Rolled back to the previous commit, under the lock.
			if head := readFile(t, filepath.Join(dir, "head")); head != before.PreviousSHA+"\n" {
				t.Errorf("target runs %q, want %s", head, before.PreviousSHA)
			}
			if runs := readFile(t, filepath.Join(dir, "runs")); runs != before.PreviousSHA+" true\n" {
				t.Errorf("deploy step runs %q, want the rollback to %s only", runs, before.PreviousSHA)
			}
			if got := s.ex.Current("production"); got != before.PreviousSHA {
				t.Errorf("Current = %s, want %s", got, before.PreviousSHA)
			}
			waitFor(t, "the failure to be reported and announced", func() bool {
				return slices.ContainsFunc(s.rep.reports(), func(r executor.Report) bool {
					return r.Job == before.ID && r.State == executor.StateFailure && r.Description == want
				}) && len(s.box.notices()) > 0
			})
			if n := s.box.notices(); len(n) != 1 || n[0].Event != executor.EventRollback || n[0].Description != want {
				t.Errorf("notices %+v, want one rollback notice %q", n, want)
			}
			// The live log is the resumed step's, to the job's new end.
			events, err := s.ex.Follow(t.Context(), before.ID, 0)
			if err != nil {
				t.Fatalf("Follow: %v", err)
			}
			var evs []executor.LogEvent
			for ev := range events {
				evs = append(evs, ev)
			}
			if len(evs) < 2 || evs[0].Kind != executor.EventStep || evs[0].Step != 3 || evs[0].Name != "watch" ||
				evs[len(evs)-1].Kind != executor.EventEnd || evs[len(evs)-1].State != executor.StateFailure {
				t.Errorf("live log %+v, want the resumed watch step 3 first and the failure at the end", evs)
			}
		})
	}
}

// A deployhook shut down during a watch (SIGTERM: Cloud Run replacing its
// instance, a VM rebooting) leaves the watch step open, saying so; the next
// deployhook on the journal resumes the watch and, the target having
// degraded meanwhile, rolls back.
func TestWatchResume_AfterShutdown(t *testing.T) {
	dir := t.TempDir()
	target := resumeVM(dir)
	st := openJournal(t, nil)
	first := startSingle(t, st, target, "first")
	var id string
	for n := 1; n <= 2; n++ {
		en, err := first.ex.Enqueue(t.Context(), "production", executor.Trigger{Kind: executor.KindPush, Repo: "acme/app",
			Branch: "main", SHA: fmt.Sprintf("%040x", 0xc0+n), Delivery: fmt.Sprintf("g%d", n), Reason: "push"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		j, err := first.ex.Wait(ctx, en.Job.ID)
		cancel()
		if err != nil || j.State != executor.StateSuccess {
			t.Fatalf("deploy %d: %s %q, %v; want success", n, j.State, j.Description, err)
		}
		id = j.ID
	}
	waitFor(t, "the watch to check", func() bool {
		ws := watchSteps(mustRead(t, st, id))
		return len(ws) == 1 && strings.Contains(ws[0].Output, " healthy: healthy\n")
	})
	first.stop()
	left := mustRead(t, st, id)
	w := left.Steps[len(left.Steps)-1]
	if w.Name != "watch" || w.ExitCode != -1 || w.Error != "" ||
		!strings.HasSuffix(w.Output, "\nwatch interrupted: deployhook shutting down; the next deployhook resumes it, or ends it\n") {
		t.Fatalf("watch step after shutdown: %+v", w)
	}

	writeFile(t, filepath.Join(dir, "degraded"), "")
	second := startSingle(t, st, target, "second")
	waitFor(t, "the resumed watch to roll back", func() bool { return mustRead(t, st, id).State != executor.StateSuccess })
	j := mustRead(t, st, id)
	if j.State != executor.StateFailure || !regexp.MustCompile(`^rolled back after \d+ (s|min): dagster is failed$`).MatchString(j.Description) ||
		j.Owner != second.ex.Owner().ID {
		t.Errorf("job %s %q owned by %q, want failure, rolled back, the second process's", j.State, j.Description, j.Owner)
	}
	wantOldClosed(t, j, left, watchResumedLine)
	if ws := watchSteps(j); len(ws) != 2 || ws[1].ExitCode != 1 || !strings.HasPrefix(ws[1].Output, "watch resumed after deployhook stopped: ") {
		t.Errorf("watch steps %+v, want the first one ended and a resumed one that rolled back", ws)
	}
	if head := readFile(t, filepath.Join(dir, "head")); head != fmt.Sprintf("%040x\n", 0xc1) {
		t.Errorf("target runs %q, want the first deploy's commit", head)
	}
}

// writeFile writes content to name.
func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A watch whose deployhook stopped is not resumed, but ended as before,
// when its window is over, when the target no longer watches, when the job
// has no previous commit, and when a newer job of the target is recorded
// (queued by the dead owner: it runs, and watches in its turn). The target
// is not checked for the old job: no check runs before the newer job's.
func TestWatchResume_NotResumed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		ago    time.Duration // the job's end
		edit   func(tg *executor.Target, j *executor.Job)
		newer  bool // a newer job waits in the journal
		checks bool // the target is checked (by the newer job's watch)
	}{
		{name: "window over", ago: 16 * time.Minute},
		{name: "no watch configured", ago: 5 * time.Minute, edit: func(tg *executor.Target, _ *executor.Job) { tg.Watch = nil }},
		{name: "no previous commit", ago: 5 * time.Minute, edit: func(_ *executor.Target, j *executor.Job) { j.PreviousSHA = "" }},
		{name: "a newer job queued", ago: 5 * time.Minute, newer: true, checks: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target := resumeVM(dir)
			now := time.Now().UTC()
			seed := openJournal(t, map[string]time.Time{"dead": now.Add(-time.Minute)})
			at := now.Add(-tt.ago)
			j := executor.Job{ID: "p-1", Target: "production", State: executor.StateSuccess, Description: "deployed",
				Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main",
					SHA: fmt.Sprintf("%040x", 2), Delivery: "d-1", Reason: "push"},
				PreviousSHA: fmt.Sprintf("%040x", 1), Owner: "dead",
				Created: at.Add(-time.Minute), Started: at.Add(-50 * time.Second), Finished: at,
				Steps: []executor.StepRun{
					{Job: "p-1", Seq: 1, Name: "deploy", Output: "ok\n", Started: at.Add(-40 * time.Second), Duration: 40 * time.Second},
					{Job: "p-1", Seq: 2, Name: "watch", ExitCode: -1, Started: at, Duration: time.Minute,
						Output: "watching for 15m0s: a check every 1s; 2 degraded in a row roll back to 0000000\n"},
				}}
			if tt.edit != nil {
				tt.edit(&target, &j)
			}
			if _, err := seed.CreateJob(t.Context(), j); err != nil {
				t.Fatal(err)
			}
			var newer executor.Job
			if tt.newer {
				newer = executor.Job{ID: "p-2", Target: "production", State: executor.StateQueued, Description: "queued",
					Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main",
						SHA: fmt.Sprintf("%040x", 3), Delivery: "d-2", Reason: "push"},
					Owner: "dead", Created: at.Add(time.Minute)}
				if _, err := seed.CreateJob(t.Context(), newer); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, filepath.Join(dir, "head"), j.Trigger.SHA+"\n")
			if !tt.newer { // the newer job's watch must not roll back
				writeFile(t, filepath.Join(dir, "degraded"), "") // a resumed watch would roll back
			}

			s := startSingle(t, seed, target, "me")
			// Ended by the start-up recovery, before Ready: nothing is
			// handed to the lane afterwards.
			got := mustRead(t, s.st, j.ID)
			if ws := watchSteps(got); len(ws) != 1 {
				t.Errorf("watch steps %+v, want the old one only", ws)
			}
			wantOldClosed(t, got, j, watchStoppedLine)
			if got.State != executor.StateSuccess || got.Owner != "dead" {
				t.Errorf("job %s owned by %q, want success, untouched", got.State, got.Owner)
			}
			if tt.newer {
				waitFor(t, "the newer job to deploy", func() bool { return mustRead(t, s.st, newer.ID).State.Final() })
				n := mustRead(t, s.st, newer.ID)
				if n.State != executor.StateSuccess {
					t.Errorf("newer job %s %q, want success", n.State, n.Description)
				}
				if head := readFile(t, filepath.Join(dir, "head")); head != newer.Trigger.SHA+"\n" {
					t.Errorf("target runs %q, want %s", head, newer.Trigger.SHA)
				}
				if ws := watchSteps(n); len(ws) != 1 || ws[0].ExitCode != -1 || !strings.HasPrefix(ws[0].Output, "watching for 15m0s") {
					t.Errorf("newer job's watch %+v, want its own, running", ws)
				}
				if got := mustRead(t, s.st, j.ID); got.State != executor.StateSuccess || len(watchSteps(got)) != 1 {
					t.Errorf("old job after the newer one: %s, watch steps %+v", got.State, watchSteps(got))
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "baseline")); !tt.checks && err == nil {
				t.Error("the target was checked for a watch that is not resumed")
			}
		})
	}
}

// Two replicas share a PostgreSQL journal. Replica a deploys and watches;
// replica b, which starts meanwhile, does not touch the watch. a dies as
// kill -9 leaves it; the target degrades; b takes the lane over, resumes
// the watch as a new step and rolls back: the job ends failure, still owned
// by the lane.
func TestWatchResume_ReplicaHolderResumes(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	target := resumeVM(dir)
	target.Notify = executor.NoticeRule{}
	a := startReplica(t, url, "a", target, nil)
	waitFor(t, "replica a to hold the lane", func() bool {
		h, _ := laneHolder(t, url)
		return h == a.ex.Owner().ID
	})
	var id string
	for n := 1; n <= 2; n++ {
		en, err := a.ex.Enqueue(t.Context(), "production", executor.Trigger{Kind: executor.KindPush, Repo: "acme/app",
			Branch: "main", SHA: fmt.Sprintf("%040x", 0xc0+n), Delivery: fmt.Sprintf("g%d", n), Reason: "push"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		j, err := a.ex.Wait(ctx, en.Job.ID)
		cancel()
		if err != nil || j.State != executor.StateSuccess {
			t.Fatalf("deploy %d: %s %q, %v; want success", n, j.State, j.Description, err)
		}
		id = j.ID
	}
	waitFor(t, "a's watch to check", func() bool {
		ws := watchSteps(mustRead(t, a.store, id))
		return len(ws) == 1 && strings.Contains(ws[0].Output, " healthy: healthy\n")
	})

	b := startReplica(t, url, "b", target, nil)
	if ws := watchSteps(mustRead(t, b.store, id)); len(ws) != 1 || ws[0].Error != "" {
		t.Errorf("a starting replica touched the watch that a runs: %+v", ws)
	}
	if h, _ := laneHolder(t, url); h != a.ex.Owner().ID {
		t.Fatalf("lane held by %q while a watches, want a's", h)
	}

	a.store.Close()
	a.stop()
	var err error
	waitFor(t, "replica a to stop", func() bool {
		select {
		case err = <-a.done:
			return true
		default:
			return false
		}
	})
	a.done <- err // for the cleanup
	writeFile(t, filepath.Join(dir, "degraded"), "")
	waitFor(t, "b's resumed watch to roll back", func() bool { return mustRead(t, b.store, id).State != executor.StateSuccess })

	if h, _ := laneHolder(t, url); h != b.ex.Owner().ID {
		t.Errorf("lane held by %q, want b's", h)
	}
	j := mustRead(t, b.store, id)
	if j.State != executor.StateFailure || !regexp.MustCompile(`^rolled back after \d+ (s|min): dagster is failed$`).MatchString(j.Description) ||
		j.Owner != executor.LaneOwner("production") {
		t.Errorf("job %s %q owned by %q, want failure, rolled back, the lane's", j.State, j.Description, j.Owner)
	}
	ws := watchSteps(j)
	if len(ws) != 2 || ws[0].Error != executor.ErrWatchStopped.Error() || ws[0].ExitCode != -1 ||
		!strings.HasSuffix(ws[0].Output, "\n"+watchResumedLine+"\n") ||
		!strings.HasPrefix(ws[1].Output, "watch resumed after deployhook stopped: ") || ws[1].ExitCode != 1 ||
		!strings.HasSuffix(ws[1].Output, "\n"+j.Description+"\n") {
		t.Errorf("watch steps %+v, want a's ended as resumed and b's that rolled back", ws)
	}
	if l := j.Steps[len(j.Steps)-1]; l.Name != "rollback: deploy" || l.ExitCode != 0 {
		t.Errorf("last step %+v, want the rollback's deploy", l)
	}
	if head := readFile(t, filepath.Join(dir, "head")); head != fmt.Sprintf("%040x\n", 0xc1) {
		t.Errorf("target runs %q, want the first deploy's commit", head)
	}
}
