package executor

import (
	"context"
	"time"
)

// Observer is told what the executor does, for metrics (internal/metrics
// implements it). Its methods are called on the executor's goroutines, some
// while a deploy runs or a lane's lock is held: they must be safe for
// concurrent use, return at once and do no I/O. Options.Observer nil observes
// nothing.
type Observer interface {
	// JobEnded is called once for every job this process ends, with its final
	// state (whatever ended it: its run, a newer trigger superseding it, the
	// sweep of a dead owner's jobs), when the journal is asked to record it.
	JobEnded(j Job)
	// StepEnded is called when a step of target's deploy ended: its name as
	// recorded (StepRun.Name: "rollback: NAME" during the automatic rollback),
	// how long it ran, and whether it exited 0.
	StepEnded(target, step string, d time.Duration, ok bool)
	// RolledBack is called when the automatic rollback of target ran after a
	// failed deploy; ok says it succeeded.
	RolledBack(target string, ok bool)
	// JournalWrite is called after each write the executor makes to the
	// journal: op names it (JournalOps), d is how long it took, err its result
	// (ErrNotFound and ErrDuplicate are answers, not faults).
	JournalWrite(op string, d time.Duration, err error)
}

// JournalOps returns the op names Observer.JournalWrite is called with, one
// for each Store method that writes.
func JournalOps() []string {
	return []string{
		"create_job", "update_job", "set_deployment", "add_step", "beat", "adopt",
		"prune", "owe", "settle", "retry",
	}
}

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) JobEnded(Job)                                  {}
func (nopObserver) StepEnded(string, string, time.Duration, bool) {}
func (nopObserver) RolledBack(string, bool)                       {}
func (nopObserver) JournalWrite(string, time.Duration, error)     {}

// observer returns o, or an Observer that observes nothing when o is nil.
func observer(o Observer) Observer {
	if o == nil {
		return nopObserver{}
	}
	return o
}

// observeStore returns s, its writes timed and told to o; s itself when o
// observes nothing.
func observeStore(s Store, o Observer) Store {
	if _, nop := o.(nopObserver); nop {
		return s
	}
	return timedStore{Store: s, o: o}
}

// timedStore is a Store whose writes are timed for an Observer.
type timedStore struct {
	Store
	o Observer
}

func (s timedStore) done(op string, start time.Time, err error) {
	s.o.JournalWrite(op, time.Since(start), err)
}

func (s timedStore) CreateJob(ctx context.Context, j Job, owe ...Report) (string, error) {
	start := time.Now()
	id, err := s.Store.CreateJob(ctx, j, owe...)
	s.done("create_job", start, err)
	return id, err
}

func (s timedStore) UpdateJob(ctx context.Context, j Job, owe ...Report) error {
	start := time.Now()
	err := s.Store.UpdateJob(ctx, j, owe...)
	s.done("update_job", start, err)
	return err
}

func (s timedStore) SetDeployment(ctx context.Context, job string, deployment int64) error {
	start := time.Now()
	err := s.Store.SetDeployment(ctx, job, deployment)
	s.done("set_deployment", start, err)
	return err
}

func (s timedStore) AddStep(ctx context.Context, st StepRun) error {
	start := time.Now()
	err := s.Store.AddStep(ctx, st)
	s.done("add_step", start, err)
	return err
}

func (s timedStore) Beat(ctx context.Context, o Owner) error {
	start := time.Now()
	err := s.Store.Beat(ctx, o)
	s.done("beat", start, err)
	return err
}

func (s timedStore) AdoptSuccess(ctx context.Context, id, from, to string) error {
	start := time.Now()
	err := s.Store.AdoptSuccess(ctx, id, from, to)
	s.done("adopt", start, err)
	return err
}

func (s timedStore) Adopt(ctx context.Context, id, from, to string) error {
	start := time.Now()
	err := s.Store.Adopt(ctx, id, from, to)
	s.done("adopt", start, err)
	return err
}

func (s timedStore) Prune(ctx context.Context, before time.Time, keep int) (int, error) {
	start := time.Now()
	n, err := s.Store.Prune(ctx, before, keep)
	s.done("prune", start, err)
	return n, err
}

func (s timedStore) Owe(ctx context.Context, r Report) error {
	start := time.Now()
	err := s.Store.Owe(ctx, r)
	s.done("owe", start, err)
	return err
}

func (s timedStore) Settle(ctx context.Context, id int64) error {
	start := time.Now()
	err := s.Store.Settle(ctx, id)
	s.done("settle", start, err)
	return err
}

func (s timedStore) Retry(ctx context.Context, id int64) error {
	start := time.Now()
	err := s.Store.Retry(ctx, id)
	s.done("retry", start, err)
	return err
}

// Depth returns how many jobs of target this process holds in its queue: the
// running one and the pending one (0, 1 or 2); 0 for an unknown target. Jobs
// another process (a command-line deploy) holds are not counted. It is safe
// for concurrent use, before, during and after Run.
func (e *Executor) Depth(target string) int {
	l := e.lanes[target]
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	if l.running != nil {
		n++
	}
	if l.pending != nil {
		n++
	}
	return n
}
