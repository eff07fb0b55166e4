package executor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// errDown is what downStore's calls fail with while its database is down.
var errDown = errors.New("dial tcp: connection refused")

// downStore is a memStore behind a database that can be down: while it is,
// every call fails, reads included, as a PostgreSQL journal whose server
// does not answer. It is a Migrator, and counts its migrations and the
// recovery's reads (Orphans).
type downStore struct {
	*memStore
	mu       sync.Mutex
	down     bool
	migrated int // successful Migrate calls
	orphans  int // Orphans calls, failed ones included
}

func (d *downStore) setDown(down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = down
}

func (d *downStore) err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return errDown
	}
	return nil
}

func (d *downStore) counts() (migrated, orphans int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.migrated, d.orphans
}

func (d *downStore) Migrate(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return errDown
	}
	d.migrated++
	return nil
}

func (d *downStore) Orphans(ctx context.Context, now time.Time) ([]Job, error) {
	d.mu.Lock()
	d.orphans++
	d.mu.Unlock()
	if err := d.err(); err != nil {
		return nil, err
	}
	return d.memStore.Orphans(ctx, now)
}

func (d *downStore) Beat(ctx context.Context, o Owner) error {
	if err := d.err(); err != nil {
		return err
	}
	return d.memStore.Beat(ctx, o)
}

func (d *downStore) LastSuccess(ctx context.Context, target string) (Job, error) {
	if err := d.err(); err != nil {
		return Job{}, err
	}
	return d.memStore.LastSuccess(ctx, target)
}

func (d *downStore) CreateJob(ctx context.Context, j Job, owe ...Report) (string, error) {
	if err := d.err(); err != nil {
		return "", err
	}
	return d.memStore.CreateJob(ctx, j, owe...)
}

func (d *downStore) Deployed(ctx context.Context, target, sha string) (Job, error) {
	if err := d.err(); err != nil {
		return Job{}, err
	}
	return d.memStore.Deployed(ctx, target, sha)
}

func (d *downStore) Check(ctx context.Context) error {
	if err := d.err(); err != nil {
		return err
	}
	return d.memStore.Check(ctx)
}

// A journal that cannot be read when Run starts (its database is down) does
// not end Run: it retries its start-up recovery with a backoff, migrating
// the journal first (Migrator), says meanwhile that it is not ready
// (ErrJournal, with the cause) and refuses deliveries with ErrJournal,
// records and runs nothing; once the journal answers it recovers, is ready,
// and deploys. Before issue 11's follow-up Run returned "recover journal"
// and deployhook serve exited. Invariant 1 (nothing recorded while the
// journal cannot take it) and 4 (every job final) are what it guards.
func TestExecutor_RunWaitsForJournalAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ds := &downStore{memStore: newMemStore(), down: true}
		tr := &fakeTransport{}
		rep := &fakeReporter{}
		h := startOn(t, Options{}, ds, ds.memStore, tr, rep)
		defer h.stop()

		// Three attempts: at start, after the first backoff and after the
		// second (1 s, then 2 s).
		time.Sleep(recoverRetryMin + 2*recoverRetryMin)
		synctest.Wait()
		select {
		case err := <-h.done:
			t.Fatalf("Run returned while the journal was down: %v", err)
		default:
		}
		if mig, orph := ds.counts(); mig != 0 || orph != 0 {
			t.Errorf("while down: %d migrations, %d orphan reads; want none (Migrate fails first)", mig, orph)
		}
		err := h.ex.Ready(t.Context())
		if !errors.Is(err, ErrJournal) || !errors.Is(err, errDown) {
			t.Errorf("Ready while the journal is down = %v, want ErrJournal with its cause", err)
		}
		_, err = h.ex.Enqueue(t.Context(), "production", Trigger{
			Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(1), Delivery: "d-down", Reason: "push"})
		if !errors.Is(err, ErrJournal) {
			t.Errorf("Enqueue while the journal is down = %v, want ErrJournal", err)
		}
		if jobs, _ := ds.memStore.Jobs(t.Context(), "production", 0); len(jobs) != 0 {
			t.Errorf("jobs recorded while the journal was down: %+v", jobs)
		}
		if n := len(tr.commands()); n != 0 {
			t.Errorf("%d commands ran while the journal was down", n)
		}

		ds.setDown(false)
		time.Sleep(4 * recoverRetryMin) // the fourth attempt, after the third backoff
		synctest.Wait()
		if err := h.ex.Ready(t.Context()); err != nil {
			t.Fatalf("Ready once the journal is back = %v, want nil", err)
		}
		if mig, orph := ds.counts(); mig != 1 || orph != 1 {
			t.Errorf("once back: %d migrations, %d orphan reads; want 1 and 1 (one successful attempt, the first after the failed ones)", mig, orph)
		}
		en := h.push(1, "d-up")
		h.settle()
		j, err := ds.Job(t.Context(), en.Job.ID)
		if err != nil || j.State != StateSuccess {
			t.Fatalf("job once the journal is back: %s %q %v, want success", j.State, j.Description, err)
		}
		if got := rep.last(sha(1)); got.State != StateSuccess {
			t.Errorf("last report of %s = %s, want success", sha(1)[:7], got.State)
		}
	})
}

// A shutdown while the journal cannot be read at start ends Run at once,
// without an error: nothing ran, and nothing is left to finish.
func TestExecutor_RunStopsWhileJournalDownAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ds := &downStore{memStore: newMemStore(), down: true}
		h := startOn(t, Options{}, ds, ds.memStore, &fakeTransport{}, &fakeReporter{})
		time.Sleep(recoverRetryMin / 2)
		h.cancel()
		synctest.Wait()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		default:
			t.Fatal("Run did not return when its context ended during the start-up recovery")
		}
		if err := h.ex.Ready(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("Ready after Run returned = %v, want ErrClosed", err)
		}
	})
}

// gatedStore is a memStore whose first Orphans call, the start-up
// recovery's read of the orphans, waits until open is closed.
type gatedStore struct {
	*memStore
	open chan struct{}
	once sync.Once
}

func (g *gatedStore) Orphans(ctx context.Context, now time.Time) ([]Job, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		<-g.open
	}
	return g.memStore.Orphans(ctx, now)
}

// While Run's first start-up recovery reads the journal, deployhook is not
// ready, and a trigger waits for the recovery instead of being decided on a
// lane that does not know yet what its target runs, or which of its jobs
// are orphaned; then it is taken as usual.
func TestExecutor_EnqueueWaitsForStartUpRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gs := &gatedStore{memStore: newMemStore(), open: make(chan struct{})}
		h := startOn(t, Options{}, gs, gs.memStore, &fakeTransport{}, &fakeReporter{})
		defer h.stop()

		if err := h.ex.Ready(t.Context()); !errors.Is(err, ErrJournal) {
			t.Errorf("Ready during the start-up recovery = %v, want ErrJournal", err)
		}
		type result struct {
			en  Enqueued
			err error
		}
		got := make(chan result, 1)
		go func() {
			en, err := h.ex.Enqueue(t.Context(), "production", Trigger{
				Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(1), Delivery: "d-1", Reason: "push"})
			got <- result{en, err}
		}()
		synctest.Wait()
		select {
		case r := <-got:
			t.Fatalf("Enqueue during the start-up recovery returned %+v, %v; want it to wait", r.en, r.err)
		default:
		}
		if jobs, _ := gs.memStore.Jobs(t.Context(), "production", 0); len(jobs) != 0 {
			t.Errorf("jobs recorded during the start-up recovery: %+v", jobs)
		}

		close(gs.open)
		synctest.Wait()
		r := <-got
		if r.err != nil || r.en.Job.ID == "" || r.en.Ignored != "" || r.en.Duplicate {
			t.Fatalf("Enqueue after the recovery = %+v, %v; want a new job", r.en, r.err)
		}
		if err := h.ex.Ready(t.Context()); err != nil {
			t.Errorf("Ready after the recovery = %v", err)
		}
		h.settle()
		if j, err := gs.Job(t.Context(), r.en.Job.ID); err != nil || j.State != StateSuccess {
			t.Errorf("the job: %s %q %v, want success", j.State, j.Description, err)
		}
	})
}

// A caller that starts Run in a goroutine (serve, a command-line deploy)
// waits for Started, and its trigger then waits for the start-up recovery
// like any other; before Run, Started is open and Enqueue records the job
// for Run to take.
func TestExecutor_StartedThenEnqueueWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gs := &gatedStore{memStore: newMemStore(), open: make(chan struct{})}
		ex, err := New(testLogger(t), Options{Targets: []Target{testTarget()}, PublicURL: "https://deploy.example.com/"},
			gs, &fakeTransport{}, &fakeReporter{})
		if err != nil {
			t.Fatal(err)
		}
		if isClosed(ex.Started()) {
			t.Fatal("Started is closed before Run")
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- ex.Run(ctx) }()
		<-ex.Started()
		got := make(chan error, 1)
		go func() {
			_, err := ex.Enqueue(t.Context(), "production", Trigger{
				Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(1), Delivery: "d-1", Reason: "push"})
			got <- err
		}()
		synctest.Wait()
		select {
		case err := <-got:
			t.Fatalf("Enqueue after Started, during the recovery, returned %v; want it to wait", err)
		default:
		}
		close(gs.open)
		if err := <-got; err != nil {
			t.Errorf("Enqueue once recovered: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
