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
	"strings"
	"sync"
	"time"
)

// Options configures an Executor.
type Options struct {
	Targets []Target
	// PublicURL is deployhook's public base URL; a job's page is PublicURL/jobs/ID.
	PublicURL string
	// OutputLimit is how many bytes of each step's output the journal keeps (the
	// tail). Default 16 KiB.
	OutputLimit int
	// Grace is how long a running deploy may go on after shutdown starts before it is
	// cancelled and reported as an error. Default 2 minutes.
	Grace time.Duration
	// RetryMin and RetryMax bound the backoff between attempts to send owed reports.
	// Defaults 2 s and 5 min.
	RetryMin, RetryMax time.Duration
	// Output, when set, also receives every step's output as it runs (the CLI's
	// deploy command streams it to the terminal).
	Output io.Writer
	// Heads reads branch heads and CI results from GitHub for the reconciler;
	// nil: no reconciling.
	Heads Heads
	// NoRecover leaves jobs that the journal shows running or queued alone: for a
	// command-line deploy that shares the journal with a running service.
	NoRecover bool
}

// Executor queues and runs deploys. Create it with New, start it with Run.
type Executor struct {
	lg    *slog.Logger
	opts  Options
	store Store
	tr    Transport
	rep   Reporter

	lanes map[string]*lane
	owed  chan struct{} // wakes the outbox sender; capacity 1

	mu      sync.Mutex
	started bool
	closed  bool
}

// lane is one target's queue: at most one running job and one pending.
type lane struct {
	t    Target
	wake chan struct{} // capacity 1

	mu      sync.Mutex
	running *Job
	pending *Job
	current string // the SHA the target runs, as far as deployhook knows
	lastJob string // the job that deployed current
}

// New returns an Executor for opts.Targets. Target names must be unique and every
// step must have a command and a timeout.
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
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	e := &Executor{
		lg: lg, opts: opts, store: store, tr: tr, rep: rep,
		lanes: make(map[string]*lane),
		owed:  make(chan struct{}, 1),
	}
	for _, t := range opts.Targets {
		if _, dup := e.lanes[t.Name]; dup {
			return nil, fmt.Errorf("target %q is defined twice", t.Name)
		}
		for _, s := range t.Steps {
			if s.Run == "" || s.Timeout <= 0 {
				return nil, fmt.Errorf("target %q: step %q needs a command and a timeout", t.Name, s.Name)
			}
		}
		if t.Environment == "" {
			t.Environment = t.Name
		}
		e.lanes[t.Name] = &lane{t: t, wake: make(chan struct{}, 1)}
	}
	return e, nil
}

// Run recovers the journal, then runs the queue until ctx ends; then it stops
// intake, lets running deploys finish within the grace period, cancels them after
// it (reporting them as errors), sends what reports it can, and returns. It returns
// an error only if the journal cannot be read at start.
func (e *Executor) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errors.New("executor: Run called twice")
	}
	e.started = true
	e.mu.Unlock()

	if err := e.recover(ctx); err != nil {
		return fmt.Errorf("recover journal: %w", err)
	}

	// Deploys run under their own context: shutdown gives them a grace period.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSend()

	var workers sync.WaitGroup
	for _, l := range e.lanes {
		workers.Go(func() { e.work(ctx, runCtx, l) })
	}
	var sender sync.WaitGroup
	sender.Go(func() { e.send(sendCtx) })
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
	// A last attempt to send what is owed, bounded; the rest waits in the journal.
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	stopSend()
	sender.Wait()
	e.flush(flushCtx)
	return nil
}

// recover closes jobs a previous process left running and re-queues the newest
// queued job of each target.
func (e *Executor) recover(ctx context.Context) error {
	if e.opts.NoRecover {
		return e.loadCurrent(ctx)
	}
	running, err := e.store.Jobs(ctx, "", 0, StateRunning)
	if err != nil {
		return err
	}
	for _, j := range running {
		j.State = StateError
		j.Description = "interrupted: deployhook restarted; target state unknown"
		j.Finished = time.Now()
		if err := e.update(ctx, &j); err != nil {
			return err
		}
	}
	queued, err := e.store.Jobs(ctx, "", 0, StateQueued)
	if err != nil {
		return err
	}
	for _, j := range queued { // newest first
		if err := e.requeue(ctx, j); err != nil {
			return err
		}
	}
	if len(running) > 0 || len(queued) > 0 {
		e.lg.Info("journal recovered", "interrupted", len(running), "requeued", len(queued))
	}
	return e.loadCurrent(ctx)
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

// requeue makes j, found queued in the journal at start, its target's pending job,
// unless a newer one is pending (then j is superseded) or its target is gone.
func (e *Executor) requeue(ctx context.Context, j Job) error {
	l := e.lanes[j.Target]
	if l == nil {
		j.State = StateError
		j.Description = "target " + j.Target + " is no longer configured"
		j.Finished = time.Now()
		return e.update(ctx, &j)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.pending != nil && l.pending.ID == j.ID:
		return nil // enqueued by this process while it recovered
	case l.pending == nil:
		l.pending = &j
		l.signal()
		return nil
	}
	j.State = StateSuperseded
	j.Description = "superseded by " + short(l.pending.Trigger.SHA)
	j.Finished = time.Now()
	return e.update(ctx, &j)
}

// Enqueue asks for trigger t to be deployed to target. It returns at once: the job
// runs on the target's worker. See the package documentation for the rules.
func (e *Executor) Enqueue(ctx context.Context, target string, t Trigger) (Enqueued, error) {
	l := e.lanes[target]
	if l == nil {
		return Enqueued{}, fmt.Errorf("%w: %q", ErrUnknownTarget, target)
	}
	if !isSHA(t.SHA) {
		return Enqueued{}, fmt.Errorf("%q is not a full commit SHA", t.SHA)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return Enqueued{}, ErrClosed
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if j := l.running; j != nil && j.Trigger.SHA == t.SHA {
		return Enqueued{Job: *j, Duplicate: true, Reason: "already deploying " + short(t.SHA)}, nil
	}
	if j := l.pending; j != nil && j.Trigger.SHA == t.SHA {
		return Enqueued{Job: *j, Duplicate: true, Reason: short(t.SHA) + " is already queued"}, nil
	}
	if !t.Force && l.running == nil && l.pending == nil && l.current == t.SHA {
		return Enqueued{Job: Job{ID: l.lastJob, Target: target, Trigger: t, State: StateSuccess},
			Duplicate: true, Reason: short(t.SHA) + " is already deployed"}, nil
	}
	j := Job{
		ID:          newID(),
		Target:      target,
		Trigger:     t,
		State:       StateQueued,
		Description: "queued: " + t.Reason,
		Created:     time.Now(),
	}
	existing, err := e.store.CreateJob(ctx, j, e.report(l.t, j))
	if errors.Is(err, ErrDuplicate) {
		old, err := e.store.Job(ctx, existing)
		if err != nil {
			return Enqueued{}, fmt.Errorf("read job %s: %w", existing, err)
		}
		return Enqueued{Job: old, Duplicate: true, Reason: "delivery seen before"}, nil
	}
	if err != nil {
		return Enqueued{}, fmt.Errorf("record job: %w", err)
	}
	if old := l.pending; old != nil {
		old.State = StateSuperseded
		old.Description = "superseded by " + short(t.SHA)
		old.Finished = time.Now()
		if err := e.update(ctx, old); err != nil {
			e.lg.Error("record superseded job", "job", old.ID, "err", err)
		}
	}
	l.pending = &j
	e.wakeSender()
	l.signal()
	e.jobLogger(j).Info("job queued", "reason", t.Reason)
	return Enqueued{Job: j}, nil
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

// Ready reports whether the queue is accepting work.
func (e *Executor) Ready(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.started:
		return errors.New("queue not started")
	case e.closed:
		return ErrClosed
	}
	return nil
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
		l.mu.Lock()
		j := l.pending
		l.pending = nil
		l.running = j
		l.mu.Unlock()
		if j == nil {
			continue
		}
		e.run(runCtx, l, j)
		l.mu.Lock()
		l.running = nil
		l.mu.Unlock()
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
		URL:         e.JobURL(j.ID),
	}
}

// wakeSender tells the outbox sender that a report is owed.
func (e *Executor) wakeSender() {
	select {
	case e.owed <- struct{}{}:
	default:
	}
}

// update stores j's state and owes its report, in one transaction.
func (e *Executor) update(ctx context.Context, j *Job) error {
	t := Target{Name: j.Target, Environment: j.Target}
	if l := e.lanes[j.Target]; l != nil {
		t = l.t
	}
	if err := e.store.UpdateJob(ctx, *j, e.report(t, *j)); err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	e.wakeSender()
	return nil
}

// JobURL returns the public URL of a job's page.
func (e *Executor) JobURL(id string) string {
	if e.opts.PublicURL == "" {
		return ""
	}
	return e.opts.PublicURL + "/jobs/" + id
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

func isSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
