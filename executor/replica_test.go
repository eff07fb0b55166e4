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
	"github.com/deployhook/deployhook/executor/store/pgstore"
	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// replica is one deployhook process of TestReplicas: its journal connection,
// its executor and what its reporter sent.
type replica struct {
	name  string
	store *pgstore.Store
	ex    *executor.Executor
	rep   *recorder
	stop  context.CancelFunc
	done  chan error
}

// recorder is a Reporter that keeps what it was asked to send.
type recorder struct {
	mu   sync.Mutex
	sent []executor.Report
}

func (r *recorder) Report(_ context.Context, rep executor.Report) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, rep)
	return 0, nil
}

func (r *recorder) reports() []executor.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]executor.Report(nil), r.sent...)
}

// TestReplicas runs three replicas sharing one real PostgreSQL journal and
// one local target, sends pushes of six SHAs spread across them (each SHA to
// every live replica at once, under its own delivery GUID), and kills the
// replica that holds the lane in the middle of a deploy (its journal
// connection closes and its context ends, as a kill -9 leaves things: no
// write, no release). Then: each SHA is one job; no two deploys overlap on
// the target; every job is final; the killed deploy is ended as interrupted
// by another replica; the last SHA is deployed and reported final.
// Invariants 3 and 4 of DESIGN.md are what it guards.
func TestReplicas(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "runs.log")
	target := executor.Target{
		Name: "production", Repo: "acme/app", Branch: "main",
		Lock: filepath.Join(dir, "lock", "deploy.lock"), LockWait: time.Minute,
		Steps: []executor.Step{{
			Name: "deploy", Timeout: time.Minute,
			// The step records its start and end on the target; one killed
			// by its deployhook's end records "stop".
			Run: `echo "start $DEPLOYHOOK_JOB" >> ` + logFile + `
trap 'echo "stop $DEPLOYHOOK_JOB" >> ` + logFile + `; exit 143' TERM
sleep 0.4 & wait
echo "end $DEPLOYHOOK_JOB" >> ` + logFile,
		}},
	}
	const lease = 2 * time.Second
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	tr := remote.NewLocal(lg, remote.LocalOptions{KillGrace: time.Second})
	var reps []*replica
	for i := range 3 {
		name := fmt.Sprintf("r%d", i)
		st, err := pgstore.Open(t.Context(), lg.With("replica", name), url)
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		ex, err := executor.New(lg.With("replica", name), executor.Options{
			Targets: []executor.Target{target}, Replicas: true, LaneLease: lease,
			Lease: 3 * time.Second, Grace: 50 * time.Millisecond, RetryMin: 50 * time.Millisecond,
			Owner: executor.Owner{ID: "owner-" + name},
		}, st, tr, rec)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &replica{name: name, store: st, ex: ex, rep: rec, stop: cancel, done: make(chan error, 1)}
		go func() { r.done <- ex.Run(ctx) }()
		reps = append(reps, r)
	}
	killed := -1
	t.Cleanup(func() {
		for i, r := range reps {
			r.stop()
			if err := <-r.done; err != nil {
				t.Errorf("replica %s: Run: %v", r.name, err)
			}
			if i != killed {
				r.store.Close()
			}
		}
	})
	// Ready answers once each replica has started.
	for _, r := range reps {
		waitFor(t, "replica "+r.name+" ready", func() bool { return r.ex.Ready(t.Context()) == nil })
	}

	shas := []string{}
	for i := range 6 {
		shas = append(shas, fmt.Sprintf("%040x", 0xa0+i))
	}
	jobOf := map[string]string{} // SHA → its one job
	var killedJob string
	var moved time.Duration
	for i, sha := range shas {
		// Four pushes of sha at once, spread across the live replicas.
		var live []*replica
		for k, r := range reps {
			if k != killed {
				live = append(live, r)
			}
		}
		results := make([]executor.Enqueued, 4)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for k := range 4 {
			r := live[k%len(live)]
			wg.Go(func() {
				results[k], errs[k] = r.ex.Enqueue(t.Context(), "production", executor.Trigger{
					Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: sha,
					Delivery: fmt.Sprintf("guid-%d-%d", i, k), Reason: "push",
				})
			})
		}
		wg.Wait()
		created := 0
		for k := range 4 {
			if errs[k] != nil {
				t.Fatalf("push %d of %s: %v", k, sha[:7], errs[k])
			}
			if !results[k].Duplicate && results[k].Ignored == "" {
				created++
				jobOf[sha] = results[k].Job.ID
			}
		}
		if created != 1 {
			t.Fatalf("four pushes of %s created %d jobs, want 1: %+v", sha[:7], created, results)
		}
		for k := range 4 {
			if id := results[k].Job.ID; id != jobOf[sha] && results[k].Ignored == "" {
				t.Errorf("push %d of %s answered with job %s, want %s", k, sha[:7], id, jobOf[sha])
			}
		}
		// The job's deploy starts before the next SHA is pushed.
		waitFor(t, "the deploy of "+sha[:7]+" to start", func() bool {
			return strings.Contains(readFile(t, logFile), "start "+jobOf[sha]+"\n")
		})
		if i != 2 {
			continue
		}
		// Kill the lane's holder in the middle of this deploy.
		holder, token := laneHolder(t, url)
		for k, r := range reps {
			if r.ex.Owner().ID == holder {
				killed = k
			}
		}
		if killed < 0 {
			t.Fatalf("lane held by %q, none of the replicas", holder)
		}
		killedJob = jobOf[sha]
		start := time.Now()
		reps[killed].store.Close()
		reps[killed].stop()
		waitFor(t, "another replica to take the lane", func() bool {
			h, tok := laneHolder(t, url)
			return h != holder && h != "" && tok > token
		})
		moved = time.Since(start)
		t.Logf("the lane moved %v after the kill (lease %v)", moved.Round(time.Millisecond), lease)
	}

	// Every job ends; the last SHA is deployed.
	check := reps[(killed+1)%len(reps)].store
	waitFor(t, "every job to end", func() bool {
		jobs, err := check.Jobs(t.Context(), "production", 0, executor.StateQueued, executor.StateRunning)
		return err == nil && len(jobs) == 0
	})
	all, err := check.Jobs(t.Context(), "production", 0)
	if err != nil {
		t.Fatal(err)
	}
	bySHA := map[string][]executor.Job{}
	for _, j := range all {
		bySHA[j.Trigger.SHA] = append(bySHA[j.Trigger.SHA], j)
	}
	for _, sha := range shas {
		js := bySHA[sha]
		if len(js) != 1 || js[0].ID != jobOf[sha] {
			t.Errorf("jobs of %s = %+v, want exactly job %s", sha[:7], js, jobOf[sha])
		}
	}
	k, err := check.Job(t.Context(), killedJob)
	if err != nil {
		t.Fatal(err)
	}
	if k.State != executor.StateError || k.Description != "interrupted: the deployhook that ran it stopped; target state unknown" {
		t.Errorf("killed job ended %s %q, want error, interrupted", k.State, k.Description)
	}
	last, err := check.LastSuccess(t.Context(), "production")
	if err != nil || last.Trigger.SHA != shas[len(shas)-1] {
		t.Errorf("LastSuccess = %s, %v; want %s", last.Trigger.SHA, err, shas[len(shas)-1][:7])
	}

	// No two deploys overlapped on the target: each start follows the end
	// (or stop) of the run before it.
	running := ""
	for line := range strings.Lines(readFile(t, logFile)) {
		ev, job, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch {
		case ev == "start" && running != "":
			t.Errorf("job %s started while job %s ran", job, running)
		case ev == "start":
			running = job
		case job != running:
			t.Errorf("%s of job %s, but job %q ran", ev, job, running)
		default:
			running = ""
		}
	}

	// Every job's final state reaches GitHub, from one replica or another.
	waitFor(t, "every job's final state reported", func() bool {
		final := map[string]executor.State{}
		for _, r := range reps {
			for _, rep := range r.rep.reports() {
				if rep.State.Final() {
					final[rep.Job] = rep.State
				}
			}
		}
		for _, j := range all {
			if final[j.ID] != j.State {
				return false
			}
		}
		return true
	})
}

// laneHolder reads who holds the production lane, and its token.
func laneHolder(t *testing.T, url string) (string, int64) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var owner string
	var token int64
	err = conn.QueryRow(t.Context(), `SELECT owner, token FROM lanes WHERE name = 'production'`).Scan(&owner, &token)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return owner, token
}

// waitFor polls cond until it holds, and fails t after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readFile returns the file's content, "" when it does not exist yet.
func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// A replica whose lane is taken from it in the middle of a deploy (another
// replica claimed it: here the test moves the lane in the journal) cancels
// the deploy and writes nothing of its end: the job stays running in the
// journal, with no final report owed, for the new holder to end.
func TestReplicas_lostLaneWritesNoEnd(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "runs.log")
	target := executor.Target{
		Name: "production", Repo: "acme/app", Branch: "main",
		Steps: []executor.Step{{
			Name: "deploy", Timeout: time.Minute,
			Run: `echo "start $DEPLOYHOOK_JOB" >> ` + logFile + `
trap 'echo "stop $DEPLOYHOOK_JOB" >> ` + logFile + `; exit 143' TERM
i=0
while [ $i -lt 1200 ]; do i=$((i+1)); echo "tick $i"; sleep 0.05 & wait; done`,
		}},
	}
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := pgstore.Open(t.Context(), lg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ex, err := executor.New(lg, executor.Options{
		Targets: []executor.Target{target}, Replicas: true, LaneLease: time.Second,
		Grace: time.Minute, Owner: executor.Owner{ID: "replica-a"},
	}, st, remote.NewLocal(lg, remote.LocalOptions{KillGrace: time.Second}), &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "ready", func() bool { return ex.Ready(t.Context()) == nil })

	en, err := ex.Enqueue(t.Context(), "production", executor.Trigger{
		Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: fmt.Sprintf("%040x", 1), Delivery: "g1", Reason: "push"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deploy to start", func() bool { return strings.Contains(readFile(t, logFile), "start "+en.Job.ID) })
	// The running step's output reaches the journal while it runs, through
	// the lane's fence like every other write of the job.
	step := func() executor.StepRun {
		j, err := st.Job(t.Context(), en.Job.ID)
		if err != nil || len(j.Steps) == 0 {
			return executor.StepRun{}
		}
		return j.Steps[0]
	}
	output := func() string { return step().Output }
	waitFor(t, "the running step's output in the journal", func() bool { return strings.Contains(output(), "tick 3\n") })
	_, token := laneHolder(t, url)
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `UPDATE lanes SET owner = 'thief', token = token + 1, lease_until = $1 WHERE name = 'production'`,
		time.Now().Add(time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	// Our UPDATE waited for any write holding the lane row: what the journal
	// has now is all the replica may ever write of the step.
	atTheft := step()
	waitFor(t, "the deploy to be killed", func() bool { return strings.Contains(readFile(t, logFile), "stop "+en.Job.ID) })
	cancel() // and Run returns once the cancelled deploy has ended
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil

	j, err := st.Job(t.Context(), en.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != executor.StateRunning || !j.Finished.IsZero() {
		t.Errorf("job after the lane was lost: %s %q finished %v; want still running, no end written", j.State, j.Description, j.Finished)
	}
	if len(j.Steps) != 1 || j.Steps[0].ExitCode != -1 {
		t.Errorf("steps after the lane was lost = %+v, want only the running record of deploy", j.Steps)
	} else if got := j.Steps[0]; got.Output != atTheft.Output || got.Duration != atTheft.Duration {
		t.Errorf("the step's record changed after the lane was lost: %v %q at the theft, %v %q now",
			atTheft.Duration, atTheft.Output, got.Duration, got.Output)
	}
	owed, err := st.Owed(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range owed {
		if o.Report.State.Final() {
			t.Errorf("a final report was owed by the replica that lost the lane: %+v", o.Report)
		}
	}
	if h, tok := laneHolder(t, url); h != "thief" || tok != token+1 {
		t.Errorf("lane = %s %d, want thief's, token %d (untouched by the replica that lost it)", h, tok, token+1)
	}
}

// startReplica starts one replica executor of target on its own connection
// to the journal at url (lane lease 3 s, unless set changes it or other
// options), and waits until it is ready; the test's cleanup stops it (if the
// test did not: then it must put a result back in done) and closes its
// journal.
func startReplica(t *testing.T, url, name string, target executor.Target, set func(*executor.Options)) *replica {
	t.Helper()
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", name)
	st, err := pgstore.Open(t.Context(), lg, url)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	opts := executor.Options{
		Targets: []executor.Target{target}, Replicas: true, LaneLease: 3 * time.Second,
		Lease: 3 * time.Second, Grace: time.Minute, RetryMin: 50 * time.Millisecond,
		Owner: executor.Owner{ID: "owner-" + name},
	}
	if set != nil {
		set(&opts)
	}
	ex, err := executor.New(lg, opts, st, remote.NewLocal(lg, remote.LocalOptions{KillGrace: time.Second}), rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: name, store: st, ex: ex, rep: rec, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- ex.Run(ctx) }()
	t.Cleanup(func() {
		r.stop()
		if err := <-r.done; err != nil {
			t.Errorf("replica %s: Run: %v", name, err)
		}
		r.done <- nil
		st.Close()
	})
	waitFor(t, "replica "+name+" ready", func() bool { return ex.Ready(t.Context()) == nil })
	return r
}

// A job recorded by one replica and run by another (the holder of its
// lane) ends the Wait call made on the first: it reads the job's state while
// it waits, since no end it records itself would wake it. Before issue 11's
// follow-up such a Wait hung until its context ended. Invariant 4 (every
// job final, and seen so) is what it guards.
func TestReplicas_WaitSeesAnotherReplicasEnd(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	target := executor.Target{Name: "production", Repo: "acme/app", Branch: "main",
		Steps: []executor.Step{{Name: "deploy", Run: "true", Timeout: time.Minute}}}
	a := startReplica(t, url, "a", target, nil)
	waitFor(t, "replica a to hold the lane", func() bool {
		h, _ := laneHolder(t, url)
		return h == a.ex.Owner().ID
	})
	_, token := laneHolder(t, url)
	b := startReplica(t, url, "b", target, nil)

	en, err := b.ex.Enqueue(t.Context(), "production", executor.Trigger{
		Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: fmt.Sprintf("%040x", 0xb1), Delivery: "g1", Reason: "push"})
	if err != nil {
		t.Fatal(err)
	}
	// A generous deadline for an outcome, not a timed assertion: without
	// the journal's watch, Wait returns only when it ends.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	j, err := b.ex.Wait(ctx, en.Job.ID)
	if err != nil {
		t.Fatalf("Wait on the replica that recorded the job: %v", err)
	}
	if j.ID != en.Job.ID || j.State != executor.StateSuccess {
		t.Errorf("Wait = job %s %s %q, want %s success", j.ID, j.State, j.Description, en.Job.ID)
	}
	if h, tok := laneHolder(t, url); h != a.ex.Owner().ID || tok != token {
		t.Errorf("lane = %s token %d, want still replica a's, token %d (so a, not b, ran the job)", h, tok, token)
	}
}

// headsOf is a Heads whose every call is counted for its replica: the
// branch head is always head, and CI has passed.
type headsOf struct {
	name  string
	head  string
	calls *callCount
}

// callCount counts Heads calls by replica, in order.
type callCount struct {
	mu sync.Mutex
	by []string // the replica of each call
}

func (c *callCount) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.by = append(c.by, name)
}

func (c *callCount) calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.by...)
}

func (h headsOf) BranchHead(context.Context, string, string) (string, error) {
	h.calls.add(h.name)
	return h.head, nil
}

func (h headsOf) WorkflowSucceeded(context.Context, string, string, string) (bool, error) {
	return true, nil
}

// Of two replicas that both reconcile a target, only the holder of the
// reconciler's lease (ReconcilerLane) asks GitHub for the branch head: its
// calls go on tick after tick while the other's reconcile loop, which runs
// as well, calls nothing. Once the holder stops, the other takes the lease
// over and reconciles, so its silence before was the lease's doing. The
// missed head is one job, deployed once.
func TestReplicas_ReconcilerOnOneReplica(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	target := executor.Target{Name: "production", Repo: "acme/app", Branch: "main",
		// The reconciler's lease lasts two ticks: ticks of 2 s let the holder
		// stall up to 4 s (a loaded CI machine) before the other may take it,
		// which would be a correct handover and fail this test.
		Reconcile: 2 * time.Second, DeployOn: executor.DeployOnPush,
		Steps: []executor.Step{{Name: "deploy", Run: "true", Timeout: time.Minute}}}
	head := fmt.Sprintf("%040x", 0xc1)
	calls := &callCount{}
	reps := map[string]*replica{}
	for _, name := range []string{"a", "b"} {
		heads := headsOf{name: name, head: head, calls: calls}
		reps[name] = startReplica(t, url, name, target, func(o *executor.Options) { o.Heads = heads })
	}
	waitFor(t, "four reconciles", func() bool { return len(calls.calls()) >= 4 })
	by := calls.calls()
	holder := by[0]
	for i, name := range by {
		if name != holder {
			t.Fatalf("reconcile %d was made by replica %s, after %s's: two replicas reconciled (calls %v)", i, name, holder, by)
		}
	}
	if owner, _ := reconcilerHolder(t, url); owner != reps[holder].ex.Owner().ID {
		t.Errorf("the reconciler's lease is held by %q, want replica %s, which reconciled", owner, holder)
	}

	other := "a"
	if holder == "a" {
		other = "b"
	}
	n := len(calls.calls())
	reps[holder].stop()
	if err := <-reps[holder].done; err != nil {
		t.Fatal(err)
	}
	reps[holder].done <- nil
	waitFor(t, "replica "+other+" to reconcile once "+holder+" stopped", func() bool {
		return slices.Contains(calls.calls()[n:], other)
	})

	jobs, err := reps[other].store.Jobs(t.Context(), "production", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Trigger.SHA != head || jobs[0].Trigger.Kind != executor.KindReconcile {
		t.Fatalf("jobs = %+v, want one reconcile job of %s", jobs, head[:7])
	}
	waitFor(t, "the reconciled head to be deployed", func() bool {
		j, err := reps[other].store.Job(t.Context(), jobs[0].ID)
		return err == nil && j.State == executor.StateSuccess
	})
}

// reconcilerHolder reads who holds the reconciler's lease, and its token.
func reconcilerHolder(t *testing.T, url string) (string, int64) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var owner string
	var token int64
	err = conn.QueryRow(t.Context(), `SELECT owner, token FROM lanes WHERE name = $1`, executor.ReconcilerLane).Scan(&owner, &token)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return owner, token
}

// A job that one replica records starts on the holder of its lane when the
// journal tells of it (PostgreSQL's NOTIFY, pgstore.WatchQueue), not at the
// holder's next look at the journal: here the holder looks only every hour
// (LanePoll) and renews its lease every 20 minutes, so only the notification
// can start the jobs before the test's deadline.
func TestReplicas_QueuedJobWakesTheHolder(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	target := executor.Target{Name: "production", Repo: "acme/app", Branch: "main",
		Steps: []executor.Step{{Name: "deploy", Run: "true", Timeout: time.Minute}}}
	a := startReplica(t, url, "a", target, func(o *executor.Options) {
		o.LanePoll, o.LaneLease = time.Hour, time.Hour
	})
	waitFor(t, "replica a to hold the lane", func() bool {
		h, _ := laneHolder(t, url)
		return h == a.ex.Owner().ID
	})
	b := startReplica(t, url, "b", target, func(o *executor.Options) { o.LaneLease = time.Hour })

	for i := range 3 { // each one after the last ended: each must be woken
		en, err := b.ex.Enqueue(t.Context(), "production", executor.Trigger{
			Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: fmt.Sprintf("%040x", 0xd0+i),
			Delivery: fmt.Sprintf("g%d", i), Reason: "push"})
		if err != nil {
			t.Fatal(err)
		}
		// A generous deadline for an outcome, not a timed assertion.
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		j, err := b.ex.Wait(ctx, en.Job.ID)
		cancel()
		if err != nil || j.State != executor.StateSuccess {
			t.Fatalf("job %d recorded on replica b: %s %q, %v; want success, run by a", i, j.State, j.Description, err)
		}
	}
}

// An orphan of a process without a lane (a command-line deploy that died)
// whose SHA the lane already has unfinished cannot become the lane's (the
// journal keeps one lane job per SHA): the lane's holder ends it at once,
// the running one interrupted and the queued one superseded, and runs the
// lane's own job of that SHA, which ends last. Without that, the orphans
// stayed unfinished, their adoption refused and retried every second.
func TestReplicas_duplicateOrphanEnded(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	st, err := pgstore.Open(t.Context(), slog.New(slog.DiscardHandler), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sha := fmt.Sprintf("%040x", 0xd0)
	at := time.Now().Add(-time.Minute)
	mk := func(id, owner string, state executor.State, created time.Time) executor.Job {
		return executor.Job{ID: id, Target: "production", State: state, Created: created, Owner: owner,
			Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: sha, Delivery: "d-" + id, Reason: "push"}}
	}
	jobs := []executor.Job{
		mk("900001", "dead-cli", executor.StateRunning, at),
		mk("900002", "dead-cli", executor.StateQueued, at.Add(time.Second)),
		mk("900003", executor.LaneOwner("production"), executor.StateQueued, at.Add(2*time.Second)),
	}
	for _, j := range jobs {
		if _, err := st.CreateJob(t.Context(), j); err != nil {
			t.Fatalf("CreateJob(%s): %v", j.ID, err)
		}
	}
	target := executor.Target{Name: "production", Repo: "acme/app", Branch: "main",
		Steps: []executor.Step{{Name: "deploy", Run: "true", Timeout: time.Minute}}}
	a := startReplica(t, url, "a", target, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	lane, err := a.ex.Wait(ctx, "900003")
	if err != nil {
		t.Fatalf("Wait for the lane's job: %v", err)
	}
	if lane.State != executor.StateSuccess {
		t.Errorf("the lane's job: %s %q, want success", lane.State, lane.Description)
	}
	want := map[string]executor.State{"900001": executor.StateError, "900002": executor.StateSuperseded}
	for id, state := range want {
		j, err := a.ex.Wait(ctx, id)
		if err != nil {
			t.Fatalf("Wait(%s): %v", id, err)
		}
		if j.State != state || j.Owner != a.ex.Owner().ID || j.Finished.After(lane.Finished) {
			t.Errorf("orphan %s: %s %q owner %q finished %v; want %s, adopted by %q, ended before the lane's job (%v)",
				id, j.State, j.Description, j.Owner, j.Finished, state, a.ex.Owner().ID, lane.Finished)
		}
	}
}

// A replica that does not hold the lane knows what the target ran when it
// started, not what the holder deployed since: a person's dispatch of that
// old commit, landing there, is recorded and deployed, not answered
// "already deployed" while the target runs another commit.
func TestReplicas_dispatchOnNonHolderUsesTheJournal(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	target := executor.Target{Name: "production", Repo: "acme/app", Branch: "main",
		Steps: []executor.Step{{Name: "deploy", Run: "true", Timeout: time.Minute}}}
	a := startReplica(t, url, "a", target, nil)
	waitFor(t, "replica a to hold the lane", func() bool {
		h, _ := laneHolder(t, url)
		return h == a.ex.Owner().ID
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	deploy := func(r *replica, kind executor.Kind, n int, delivery string) executor.Job {
		t.Helper()
		en, err := r.ex.Enqueue(ctx, "production", executor.Trigger{Kind: kind, Repo: "acme/app", Branch: "main",
			SHA: fmt.Sprintf("%040x", n), Delivery: delivery, Reason: string(kind)})
		if err != nil || en.Duplicate || en.Ignored != "" {
			t.Fatalf("Enqueue %s of %d on %s = %+v, %v; want a new job", kind, n, r.name, en, err)
		}
		j, err := r.ex.Wait(ctx, en.Job.ID)
		if err != nil || j.State != executor.StateSuccess {
			t.Fatalf("job of %d: %s %q %v, want success", n, j.State, j.Description, err)
		}
		return j
	}
	deploy(a, executor.KindPush, 0xa1, "g1")
	b := startReplica(t, url, "b", target, nil) // b's view: the target runs 0xa1
	deploy(a, executor.KindPush, 0xa2, "g2")
	j := deploy(b, executor.KindWorkflowDispatch, 0xa1, "g3")
	if j.Trigger.SHA != fmt.Sprintf("%040x", 0xa1) {
		t.Errorf("the dispatch deployed %s", j.Trigger.SHA)
	}
}
