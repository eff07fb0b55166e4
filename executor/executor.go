package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/deployhook/deployhook/internal/gitsha"
)

// Options configures an Executor.
type Options struct {
	Targets []Target
	// PublicURL is deployhook's public base URL; reports link to a job's page
	// at JobURL(PublicURL, ID). Empty: reports carry no link.
	PublicURL string
	// OutputLimit is how many bytes of each step's output the journal and the
	// live log keep: the first quarter and the end, with a marker line saying
	// how many bytes were cut between them. Default 16 KiB.
	OutputLimit int
	// Redact lists values that must never be stored or published (webhook
	// secrets, tokens, client secrets): each is replaced by "[redacted]" in
	// every line of a step's output, and in its error, before the journal,
	// the live log or Output sees it.
	Redact []string
	// Grace is how long a running deploy may go on after shutdown starts before it is
	// cancelled and reported as an error. Default 2 minutes.
	Grace time.Duration
	// RetryMin and RetryMax bound the backoff between attempts to send owed reports.
	// Defaults 2 s and 5 min.
	RetryMin, RetryMax time.Duration
	// Output, when set, also receives every step's output as it runs, line by
	// line and redacted (the CLI's deploy command streams it to the terminal).
	Output io.Writer
	// Heads reads branch heads and CI results from GitHub for the reconciler;
	// nil: no reconciling.
	Heads Heads
	// Commits answers commit-graph questions through GitHub for targets without
	// a Contains probe (custom steps): whether an automatic trigger's SHA is
	// older than the deployed one, and whether a SHA is on the target's branch.
	// Nil: only the journal and the target's own probes are asked.
	Commits Commits
	// NoRecover makes this process a command-line deploy that shares the journal
	// with a running service: of the jobs whose owner's lease expired, it ends the
	// queued ones as interrupted instead of running them. It never touches the
	// jobs of an owner whose lease is live.
	NoRecover bool
	// Owner is this process as the owner of its jobs in the journal. New fills
	// in a random ID when it is empty, and Kind ("serve", or "cli" with
	// NoRecover), Host and PID when they are.
	Owner Owner
	// Lease is how long this process's claim on its jobs lasts without renewal;
	// it is renewed every Lease/3, and jobs of an owner whose lease ended are
	// adopted by the next deployhook that looks (at start, then every Lease/3).
	// Default 30 s.
	Lease time.Duration
	// Retain is how long final jobs are kept in the journal; RetainJobs is how
	// many final jobs of each target are kept at most (negative: no count limit).
	// A target's last successful deploy is always kept. Defaults 90 days and 1000.
	Retain     time.Duration
	RetainJobs int
	// Observer is told what the executor does, for metrics; nil: nothing.
	Observer Observer
	// Notifiers are the channels notices go to, by name (Target.Notify names
	// them): each has its own sender and backoff in the outbox, apart from
	// GitHub's. Nil: no notices.
	Notifiers map[string]Notifier
	// Replicas makes this process one of several deployhook replicas sharing
	// the journal, which must then implement Lanes: a target's jobs run only
	// on the replica that holds its lane's lease, every write of them is
	// fenced by the lease's token, owed reports are claimed before they are
	// sent, and the reconciler runs on the holder of ReconcilerLane. See
	// lanes.go.
	Replicas bool
	// LaneLease is how long a replica's lease on a lane lasts without
	// renewal; it is renewed every LaneLease/3. Default DefaultLaneLease.
	LaneLease time.Duration
	// LanePoll is how often a replica that holds a lane looks in the journal
	// for jobs that other replicas recorded (it also looks at each renewal
	// of the lease). A journal that tells of queued jobs (QueueWatcher)
	// wakes it at once; the poll is the fallback for missed notifications.
	// Default DefaultLanePoll.
	LanePoll time.Duration
}

// Executor queues and runs deploys. Create it with New, start it with Run.
type Executor struct {
	lg    *slog.Logger
	opts  Options
	store Store
	tr    Transport
	rep   Reporter
	rl    Lanes        // the journal's lanes, when Options.Replicas; else nil
	mig   Migrator     // the journal's schema migration, when it has one; else nil
	qw    QueueWatcher // the journal's news of queued jobs, for a replica; else nil

	lanes   map[string]*lane
	owed    chan struct{} // wakes the outbox sender; capacity 1
	jr      *journal      // the journal's health and what it refused
	nt      *notices      // the notice channels
	ends    *waiters      // Wait calls, woken when a job's final state is recorded
	live    *live         // the live logs of running jobs (Follow)
	stale   staleWatches  // watch steps of live other owners, looked at again by each sweep
	stopped chan struct{} // closed when Run returns
	// attempted is closed when the first attempt of Run's start-up
	// recovery is over, whatever its outcome: until then what each target
	// runs, and which jobs are orphaned, are not known yet.
	attempted     chan struct{}
	startedCh     chan struct{} // closed when Run starts
	attemptedOnce sync.Once

	mu      sync.Mutex
	started bool
	closed  bool
	// recovering is why the last attempt of Run's start-up recovery failed;
	// nil before the first failure and once an attempt succeeds.
	recovering error
}

// lane is one target's queue: at most one running job and one pending.
//
// The worker owns the job it runs; the lane holds only immutable snapshots of
// it (running is replaced, never written through), so Enqueue never reads
// memory the worker writes.
type lane struct {
	t    Target
	wake chan struct{} // capacity 1

	mu      sync.Mutex
	running *Job   // a snapshot of the running job; nil when none runs
	pending *Job   // the waiting job, owned by the lane until the worker takes it
	current string // the SHA the target runs, as far as deployhook knows
	lastJob string // the job that deployed current
	cancel  cancelState
	// watching ends the watch of the last deploy (Watch) while one runs: a
	// newer job ends it before it starts. Nil when no watch runs.
	watching context.CancelCauseFunc

	lease laneLease // this replica's hold on the lane (Options.Replicas)
}

// publish replaces the snapshot of the running job with a copy of j.
func (l *lane) publish(j Job) {
	j.Steps = nil
	l.mu.Lock()
	l.running = &j
	l.mu.Unlock()
}

// New returns an Executor for opts.Targets. The targets must be valid as
// configuration makes them (config.Validate tells a person what to fix; New
// only refuses what breaks these preconditions, as a programming error):
// unique names, every step with a command and a Timeout > 0 (a step without
// one could hold the deploy lock for ever), and a valid DeployOn on a target
// that reconciles.
func New(lg *slog.Logger, opts Options, store Store, tr Transport, rep Reporter) (*Executor, error) {
	if opts.OutputLimit <= 0 {
		opts.OutputLimit = 16 << 10
	}
	if opts.Grace <= 0 {
		opts.Grace = 2 * time.Minute
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 2 * time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(5*time.Minute, opts.RetryMin)
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.Retain <= 0 {
		opts.Retain = 90 * 24 * time.Hour
	}
	switch {
	case opts.RetainJobs == 0:
		opts.RetainJobs = 1000
	case opts.RetainJobs < 0:
		opts.RetainJobs = 0 // Store.Prune: no count limit
	}
	opts.Owner = fillOwner(opts.Owner, opts.NoRecover)
	if opts.LaneLease <= 0 {
		opts.LaneLease = DefaultLaneLease
	}
	if opts.LanePoll <= 0 {
		opts.LanePoll = DefaultLanePoll
	}
	var rl Lanes // before the Observer's wrapper hides it (fenced writes go untimed)
	if opts.Replicas {
		var ok bool
		if rl, ok = store.(Lanes); !ok {
			return nil, errors.New("executor: replicas need a journal with lanes (PostgreSQL)")
		}
	}
	mig, _ := store.(Migrator)
	var qw QueueWatcher
	if rl != nil {
		qw, _ = store.(QueueWatcher)
	}
	opts.Observer, store = observer(opts.Observer), observeStore(store, observer(opts.Observer))
	nt, err := newNotices(opts.Notifiers, opts.Targets)
	if err != nil {
		return nil, err
	}
	e := &Executor{
		lg: lg, opts: opts, store: store, tr: tr, rep: rep, rl: rl, mig: mig, qw: qw,
		lanes:     make(map[string]*lane),
		owed:      make(chan struct{}, 1),
		jr:        newJournal(),
		nt:        nt,
		ends:      newWaiters(),
		live:      newLive(opts),
		stopped:   make(chan struct{}),
		attempted: make(chan struct{}),
		startedCh: make(chan struct{}),
	}
	for _, t := range opts.Targets {
		if _, dup := e.lanes[t.Name]; dup {
			return nil, fmt.Errorf("target %q is defined twice", t.Name)
		}
		for _, s := range t.Steps {
			if s.Run == "" || s.Timeout <= 0 {
				return nil, fmt.Errorf("executor: target %q: step %q without Run or Timeout", t.Name, s.Name)
			}
		}
		if t.Watch != nil {
			if err := t.Watch.valid(t); err != nil {
				return nil, fmt.Errorf("executor: target %q: %w", t.Name, err)
			}
		}
		if err := checkFleet(t, tr); err != nil {
			return nil, err
		}
		if t.Reconcile > 0 && !t.DeployOn.Valid() {
			return nil, fmt.Errorf("executor: target %q reconciles with DeployOn %q", t.Name, t.DeployOn)
		}
		if t.Environment == "" {
			t.Environment = t.Name
		}
		if t.Contains == nil && opts.Commits == nil {
			lg.Warn("no way to tell whether a commit is older than the deployed one: automatic triggers are checked against the journal only",
				"target", t.Name)
		}
		e.lanes[t.Name] = &lane{t: t, wake: make(chan struct{}, 1)}
	}
	return e, nil
}

// Wait waits until job id is final in the journal and returns it, as
// Store.Job does (without steps). It returns at once when the job is final
// already; otherwise it is woken when this Executor records the job's final
// state (its lane ends it, a later trigger supersedes it, a sweep ends it, or
// the journal takes an outcome it refused before). A process that is not a
// replica never polls. A replica (Options.Replicas) also reads the job's
// state every waitPoll while it waits, since another replica, which holds
// the job's lane, may end it. It
// returns ctx's error when ctx ends first; an error wrapping ErrClosed when Run
// has returned and the job is still not final (a job left queued at shutdown
// is run or ended by the next deployhook; one ended by another process is
// seen then); and the journal's error otherwise (ErrNotFound for an unknown
// id). It is safe for concurrent use, before, during and after Run.
func (e *Executor) Wait(ctx context.Context, id string) (Job, error) {
	for {
		// Watch before reading, so an outcome recorded between the read and
		// the select still wakes this call.
		woken, release := e.ends.watch(id)
		j, err := e.store.Job(ctx, id)
		switch {
		case err != nil:
			release()
			return Job{}, err
		case j.State.Final():
			release()
			return j, nil
		}
		var poll <-chan time.Time // nil, unless another process may end the job
		if e.rl != nil {
			poll = time.After(waitPoll) // collected once unreferenced (Go 1.23), fired or not
		}
		select {
		case <-woken:
			release()
		case <-poll:
			release()
		case <-ctx.Done():
			release()
			return Job{}, ctx.Err()
		case <-e.stopped:
			release()
			j, err := e.store.Job(ctx, id)
			switch {
			case err != nil:
				return Job{}, err
			case j.State.Final():
				return j, nil
			}
			return Job{}, fmt.Errorf("job %s is %s: %w", id, j.State, ErrClosed)
		}
	}
}

// waitPoll is how often a replica's Wait reads the state of a job that
// another replica may end.
const waitPoll = time.Second

// waiters wakes the Wait calls of a job when its final state is recorded.
type waiters struct {
	mu sync.Mutex
	m  map[string]*waiter // job id → its waiters
}

// waiter is the channel the Wait calls of one job share, and how many there are.
type waiter struct {
	ch chan struct{} // closed by wake
	n  int
}

func newWaiters() *waiters { return &waiters{m: map[string]*waiter{}} }

// watch returns a channel that wake(id) closes, and a release that the caller
// must call once it no longer waits on it.
func (w *waiters) watch(id string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	x := w.m[id]
	if x == nil {
		x = &waiter{ch: make(chan struct{})}
		w.m[id] = x
	}
	x.n++
	return x.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		x.n--
		if x.n == 0 && w.m[id] == x {
			delete(w.m, id)
		}
	}
}

// wake wakes every Wait call of job id.
func (w *waiters) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if x := w.m[id]; x != nil {
		close(x.ch)
		delete(w.m, id)
	}
}

// Owner returns this process as the owner of its jobs (with the ID New chose).
func (e *Executor) Owner() Owner { return e.opts.Owner }

// recoverTimeout bounds Run's start-up recovery (the lease, the orphans, each
// target's current commit): a few small queries of the journal.
const recoverTimeout = time.Minute

// Run claims a lease on the journal, ends or adopts the jobs of owners whose
// lease expired, then runs the queue until ctx ends; then it stops intake, lets
// running deploys finish within the grace period, cancels them after it
// (reporting them as errors), writes what the journal could not take yet and
// sends what reports it can, gives up its lease and returns. While it runs it
// renews its lease, adopts the jobs of dead owners, prunes the journal and
// reconciles.
//
// When the journal cannot be read at start (a database that is down, failing
// over or not reachable yet), Run keeps trying its start-up recovery, with a
// backoff from recoverRetryMin to recoverRetryMax, logging each failure;
// meanwhile Ready and Enqueue fail with ErrJournal, and no lane runs. When
// ctx ends before the recovery succeeded, Run gives up its lease and returns
// nil, leaving the journal's waiting jobs to the next deployhook. Run returns
// an error only when it is called twice.
func (e *Executor) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errors.New("executor: Run called twice")
	}
	e.started = true
	e.mu.Unlock()
	close(e.startedCh)
	defer close(e.stopped)

	if !e.startUp(ctx) {
		// ctx ended while the journal could not be read: nothing ran, and
		// whatever waits in the journal is for the next deployhook.
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.lg.Info("shutting down before the journal could be read at start")
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := e.beat(flushCtx, time.Now()); err != nil {
			e.lg.Warn("give up this process's lease", "err", err)
		}
		return nil
	}

	// Deploys run under their own context: shutdown gives them a grace period.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSend()
	// The lease is renewed and the journal repaired until the deploys are over.
	keepCtx, stopKeep := context.WithCancel(context.WithoutCancel(ctx))
	defer stopKeep()

	var workers sync.WaitGroup
	for _, l := range e.lanes {
		if e.rl != nil {
			workers.Go(func() { e.replicaWork(ctx, runCtx, l) })
			continue
		}
		workers.Go(func() { e.work(ctx, runCtx, l) })
	}
	if e.qw != nil {
		workers.Go(func() { e.watchQueue(ctx) })
	}
	var sender, keepers sync.WaitGroup
	sender.Go(func() { e.send(sendCtx) })
	keepers.Go(func() { e.leaseLoop(keepCtx, ctx) })
	keepers.Go(func() { e.repairLoop(keepCtx) })
	workers.Go(func() { e.pruneLoop(ctx) })
	for _, l := range e.lanes {
		if l.t.Reconcile > 0 && e.opts.Heads != nil {
			workers.Go(func() { e.reconcileLoop(ctx, l) })
		}
	}

	<-ctx.Done()
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.lg.Info("shutting down: intake stopped", "grace", e.opts.Grace)

	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.opts.Grace):
		e.lg.Warn("grace period over: cancelling running deploys")
		cancelRuns()
		<-done
	}
	stopKeep()
	keepers.Wait()
	// Last attempts, bounded: what is left waits in the journal (reports) or is
	// lost and ended as interrupted by the next deployhook (unwritten outcomes).
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if n := e.repair(flushCtx); n > 0 {
		e.lg.Error("job outcomes the journal did not take: the next deployhook ends them as interrupted", "jobs", n)
	}
	stopSend()
	sender.Wait()
	e.flush(flushCtx)
	// Give up the lease: whatever this process leaves queued may be taken by the
	// next deployhook at once.
	if err := e.beat(flushCtx, time.Now()); err != nil {
		e.lg.Warn("give up this process's lease", "err", err)
	}
	return nil
}

// Pace of Run's start-up recovery while the journal cannot be read: the first
// retry comes soon (a database restarting), later ones every
// recoverRetryMax at most, so that an outage of hours costs a log line per
// half minute.
const (
	recoverRetryMin = time.Second
	recoverRetryMax = 30 * time.Second
)

// startUp runs Run's start-up recovery (recoverOnce) until an attempt
// succeeds, and reports whether one did before ctx ended. Between attempts
// e.recovering says why the last one failed (Ready, Enqueue). The first
// attempt runs to its end (within recoverTimeout) even when ctx ends
// meanwhile, so that a shutdown right after start finds the journal
// recovered; later ones end with ctx.
func (e *Executor) startUp(ctx context.Context) bool {
	wait := recoverRetryMin
	for attempt := 1; ; attempt++ {
		actx := ctx
		if attempt == 1 {
			actx = context.WithoutCancel(ctx)
		}
		err := e.recoverOnce(actx)
		e.mu.Lock()
		e.recovering = err
		e.mu.Unlock()
		if attempt == 1 {
			e.markAttempted()
		}
		if err == nil {
			if attempt > 1 {
				e.lg.Info("journal recovered at start", "attempts", attempt)
			}
			return true
		}
		e.lg.Error("start-up recovery failed: the journal cannot be read; not ready, trying again",
			"err", err, "attempt", attempt, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, recoverRetryMax)
	}
}

// recoverOnce is one attempt of Run's start-up recovery, bounded by
// recoverTimeout: migrate the journal's schema (Migrator), record this
// process's lease, end or adopt the jobs of owners whose lease expired, end
// the watch steps that dead owners left open (recoverWatches), and read
// what each target runs.
func (e *Executor) recoverOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	if e.mig != nil {
		if err := e.jr.wrote(e.mig.Migrate(ctx)); err != nil {
			return fmt.Errorf("recover journal: %w", err)
		}
	}
	if err := e.beat(ctx, time.Now().Add(e.opts.Lease)); err != nil {
		// Nothing of ours is in the journal yet; the lease loop tries again
		// and Ready says why deployhook is not ready meanwhile.
		e.lg.Error("record this process's lease", "err", err)
	}
	if err := e.sweep(ctx); err != nil {
		return fmt.Errorf("recover journal: %w", err)
	}
	if err := e.recoverWatches(ctx); err != nil {
		return fmt.Errorf("recover journal: %w", err)
	}
	if err := e.loadCurrent(ctx); err != nil {
		return fmt.Errorf("recover journal: %w", err)
	}
	return nil
}

// loadCurrent sets each target's current SHA from its last successful deploy.
func (e *Executor) loadCurrent(ctx context.Context) error {
	for _, l := range e.lanes {
		last, err := e.store.LastSuccess(ctx, l.t.Name)
		switch {
		case err == nil:
			l.mu.Lock()
			l.current, l.lastJob = last.Trigger.SHA, last.ID
			l.mu.Unlock()
		case !errors.Is(err, ErrNotFound):
			return err
		}
	}
	return nil
}

// requeue makes j, an orphan adopted from a dead owner, its target's pending job,
// unless another one is pending, or a newer job of the target was recorded
// meanwhile (by this process or another): then j is superseded by it, as it
// would have been had its owner lived. An orphan adopted late must never run
// after a newer request has, or it would move the target back.
func (e *Executor) requeue(ctx context.Context, l *lane, j Job) {
	var newer *Job
	if jobs, err := e.store.Jobs(ctx, j.Target, 1); err == nil && len(jobs) == 1 &&
		jobs[0].ID != j.ID && jobs[0].Created.After(j.Created) {
		newer = &jobs[0]
	} else if err != nil {
		e.jobLogger(j).Warn("read the target's newest job before requeueing", "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.pending != nil && l.pending.ID == j.ID:
		return
	case l.pending != nil:
		newer = l.pending
	case l.running != nil && l.running.Created.After(j.Created):
		newer = l.running
	case newer == nil:
		l.pending = &j
		l.stopWatch(&j)
		l.signal()
		e.jobLogger(j).Info("orphaned job requeued")
		return
	}
	j.State = StateSuperseded
	j.Description = "superseded by " + short(newer.Trigger.SHA)
	j.Finished = time.Now()
	e.end(ctx, j)
}

// Enqueue asks for trigger t to be deployed to target. It returns at once: the job
// runs on the target's worker. See the package documentation for the rules.
//
// An automatic trigger (t.Kind.Automatic) of the SHA the target runs is a
// duplicate; one of a SHA the target deployed successfully before, or whose body
// was recorded before under another delivery GUID, records nothing and returns
// Enqueued.Ignored. t.SHA must be a full SHA in lower case (gitsha.Valid):
// any other spelling is refused, not folded. An error wrapping
// ErrJournal says the journal could not record the job (or be read, or Run's
// start-up recovery could not read it yet): nothing was queued, and the
// trigger may be retried later.
func (e *Executor) Enqueue(ctx context.Context, target string, t Trigger) (Enqueued, error) {
	l := e.lanes[target]
	if l == nil {
		return Enqueued{}, fmt.Errorf("%w: %q", ErrUnknownTarget, target)
	}
	if !gitsha.Valid(t.SHA) {
		return Enqueued{}, fmt.Errorf("%q is not a full commit SHA", t.SHA)
	}
	// Run's first start-up recovery takes milliseconds: a trigger that
	// comes meanwhile waits for it rather than be decided on a lane that
	// does not know yet what its target runs. Before Run, a trigger is
	// recorded for Run to take (callers that start Run in a goroutine wait
	// for Started first).
	if isClosed(e.startedCh) {
		select {
		case <-e.attempted:
		case <-ctx.Done():
			return Enqueued{}, fmt.Errorf("%w: start-up recovery has not read the journal yet: %w", ErrJournal, ctx.Err())
		}
	}
	e.mu.Lock()
	closed, recovering := e.closed, e.recovering
	e.mu.Unlock()
	switch {
	case closed:
		return Enqueued{}, ErrClosed
	case recovering != nil:
		// Run's start-up recovery has not read the journal yet: what the
		// target runs, and which jobs are orphaned, are unknown.
		return Enqueued{}, fmt.Errorf("%w: the journal could not be read at start: %w", ErrJournal, recovering)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if j := l.running; j != nil && j.Trigger.SHA == t.SHA {
		return Enqueued{Job: *j, Duplicate: true, Reason: "already deploying " + short(t.SHA)}, nil
	}
	if j := l.pending; j != nil && j.Trigger.SHA == t.SHA {
		return Enqueued{Job: *j, Duplicate: true, Reason: short(t.SHA) + " is already queued"}, nil
	}
	// A replica that does not hold the lane knows what the target ran when
	// it last held it (or started), not now: the journal decides there.
	known := e.rl == nil || l.lease.get() != 0
	switch {
	case t.Kind.Automatic() && known && l.current == t.SHA:
		// The live commit again (a redelivery, a CI re-run): nothing to do, and
		// nothing older either, so the answer is the plain duplicate.
		return Enqueued{Job: Job{ID: l.lastJob, Target: target, Trigger: t, State: StateSuccess},
			Duplicate: true, Reason: short(t.SHA) + " is already deployed"}, nil
	case t.Kind.Automatic():
		old, err := e.store.Deployed(ctx, target, t.SHA)
		switch {
		case err == nil:
			return Enqueued{Job: old, Ignored: deployedBefore(t.SHA, old.ID)}, nil
		case !errors.Is(err, ErrNotFound):
			return Enqueued{}, fmt.Errorf("%w: look %s up: %w", ErrJournal, short(t.SHA), err)
		}
	case !t.Force && known && l.running == nil && l.pending == nil && l.current == t.SHA:
		return Enqueued{Job: Job{ID: l.lastJob, Target: target, Trigger: t, State: StateSuccess},
			Duplicate: true, Reason: short(t.SHA) + " is already deployed"}, nil
	}
	j := Job{
		ID:          newID(),
		Target:      target,
		Trigger:     t,
		State:       StateQueued,
		Description: queuedDescription(t),
		Owner:       e.jobOwner(target),
		Created:     time.Now(),
	}
	existing, err := e.store.CreateJob(ctx, j, e.report(l.t, j))
	if errors.Is(err, ErrDuplicate) {
		old, err := e.store.Job(ctx, existing)
		if err != nil {
			return Enqueued{}, fmt.Errorf("%w: read job %s: %w", ErrJournal, existing, err)
		}
		if t.Delivery != "" && old.Trigger.Delivery == t.Delivery {
			return Enqueued{Job: old, Duplicate: true, Reason: "delivery seen before"}, nil
		}
		if (t.BodyHash == "" || old.Trigger.BodyHash != t.BodyHash) && old.Trigger.SHA == t.SHA {
			// A replicated lane's unfinished job of this SHA (Lanes).
			return Enqueued{Job: old, Duplicate: true, Reason: short(t.SHA) + " is already queued or deploying"}, nil
		}
		return Enqueued{Job: old, Ignored: "this delivery's body was seen before as job " + old.ID +
			" (a replay under a new delivery id?)"}, nil
	}
	if e.jr.wrote(err) != nil {
		return Enqueued{}, fmt.Errorf("%w: record job: %w", ErrJournal, err)
	}
	if e.rl != nil {
		// The lane's holder, this replica or another, finds it in the journal.
		e.wakeSender()
		l.signal()
		e.jobLogger(j).Info("job queued", "reason", t.Reason)
		return Enqueued{Job: j}, nil
	}
	if l.pending != nil {
		old := *l.pending
		old.State = StateSuperseded
		old.Description = "superseded by " + short(t.SHA)
		old.Finished = time.Now()
		e.end(ctx, old)
	}
	l.pending = &j
	l.stopWatch(&j)
	e.wakeSender()
	l.signal()
	e.jobLogger(j).Info("job queued", "reason", t.Reason)
	return Enqueued{Job: j}, nil
}

// deployedBefore is why an automatic trigger of sha, deployed by job, is ignored.
func deployedBefore(sha, job string) string {
	return short(sha) + " was deployed before (job " + job + "); automatic triggers never redeploy an older commit"
}

// RollbackSHA returns the SHA of the newest successful deploy of target other than
// the last one (the one it runs now, unless a later deploy left it unknown): the
// default target of a rollback. It reads the journal, so it answers before Run.
func (e *Executor) RollbackSHA(ctx context.Context, target string) (string, error) {
	if e.lanes[target] == nil {
		return "", fmt.Errorf("%w: %q", ErrUnknownTarget, target)
	}
	jobs, err := e.store.Jobs(ctx, target, 200, StateSuccess)
	if err != nil {
		return "", err
	}
	for _, j := range jobs {
		if j.Trigger.SHA != jobs[0].Trigger.SHA {
			return j.Trigger.SHA, nil
		}
	}
	return "", fmt.Errorf("no earlier successful deploy of %s to roll back to: %w", target, ErrNotFound)
}

// Current returns the SHA deployhook believes target runs ("" if unknown).
func (e *Executor) Current(target string) string {
	l := e.lanes[target]
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.current
}

// Ready reports whether the queue is accepting work: it has started, is not
// shutting down, its start-up recovery is not failing, and the journal accepts writes (the last write succeeded, no
// job outcome waits to be written, and Store.Check passes). The error names
// the cause; it may carry the journal's error text.
func (e *Executor) Ready(ctx context.Context) error {
	e.mu.Lock()
	started, closed, recovering := e.started, e.closed, e.recovering
	e.mu.Unlock()
	switch {
	case !started:
		return errors.New("queue not started")
	case closed:
		return ErrClosed
	case !isClosed(e.attempted):
		return fmt.Errorf("%w: start-up recovery is reading the journal", ErrJournal)
	case recovering != nil:
		return fmt.Errorf("%w: start-up recovery: %w", ErrJournal, recovering)
	}
	if err := e.jr.health(); err != nil {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	if err := e.store.Check(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	return nil
}

// Started returns a channel closed when Run has started: from then on,
// Enqueue and Ready wait for (or report) Run's start-up recovery. A caller
// that starts Run in a goroutine waits for it before it takes triggers.
func (e *Executor) Started() <-chan struct{} { return e.startedCh }

// markAttempted says that the first attempt of the start-up recovery is
// over.
func (e *Executor) markAttempted() {
	e.attemptedOnce.Do(func() { close(e.attempted) })
}

// isClosed reports whether c is closed.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (l *lane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// work runs l's jobs one at a time until ctx ends and nothing is running.
func (e *Executor) work(ctx, runCtx context.Context, l *lane) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		}
		if ctx.Err() != nil {
			return // shutting down: a waiting job stays queued in the journal for the next start
		}
		e.resumeWatch(ctx, runCtx, l) // a watch that a stopped deployhook left, when one waits (watch.go)
		l.mu.Lock()
		if l.pending == nil {
			l.mu.Unlock()
			continue
		}
		j := *l.pending // the worker's own copy from now on
		l.pending = nil
		running := j
		l.running = &running // so that Cancel finds it before run publishes it
		l.mu.Unlock()
		if d := e.run(runCtx, l, j); d != nil {
			e.watch(ctx, runCtx, l, d) // the lane is free meanwhile: a newer job ends it
		}
	}
}

// report is the report of j's current state.
func (e *Executor) report(t Target, j Job) Report {
	return Report{
		Job:         j.ID,
		Target:      t.Name,
		Environment: t.Environment,
		Repo:        j.Trigger.Repo,
		SHA:         j.Trigger.SHA,
		State:       j.State,
		Description: j.Description,
		URL:         JobURL(e.opts.PublicURL, j.ID),
	}
}

// wakeSender tells the outbox sender that a report is owed.
func (e *Executor) wakeSender() {
	select {
	case e.owed <- struct{}{}:
	default:
	}
}

// update stores j's state and owes its report, and the notices in also, in
// one transaction (fenced by the lane's lease on a replica).
func (e *Executor) update(ctx context.Context, j Job, also ...Report) error {
	err := e.updateJob(ctx, j, append([]Report{e.report(e.target(j.Target), j)}, also...)...)
	if e.jr.wrote(err) != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	e.wakeSender()
	if j.State.Final() {
		e.ends.wake(j.ID)
	}
	return nil
}

// target returns the configured target name, or a stand-in for one that is
// no longer configured.
func (e *Executor) target(name string) Target {
	if l := e.lanes[name]; l != nil {
		return l.t
	}
	return Target{Name: name, Environment: name}
}

func (e *Executor) jobLogger(j Job) *slog.Logger {
	return e.lg.With("job", j.ID, "delivery", j.Trigger.Delivery, "repo", j.Trigger.Repo,
		"sha", j.Trigger.SHA, "target", j.Target)
}

// newID returns a job id that sorts by creation time: base-36 milliseconds and 4
// random bytes.
func newID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + hex.EncodeToString(b[:])
}

// short returns the 7-character form of a SHA, as GitHub shows it.
func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
