package executor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrFinal says a job has ended, or is past the point where a cancel could
// change its end (its steps are over: it is rolling back after a failed step,
// or recording its outcome).
var ErrFinal = errors.New("job already final")

// cancelState is a lane's record of a person's cancel of its running job.
// The lane's lock guards it.
type cancelState struct {
	job   string                  // the job the other fields are about
	stop  context.CancelCauseFunc // ends the job's steps; nil before and after they run
	actor string                  // who cancelled it; "" while nobody has
	over  bool                    // the job's steps are over: its outcome is decided
}

// cancelCause is why a job's steps were cancelled: a person asked for it.
type cancelCause struct{ actor string }

func (c *cancelCause) Error() string { return "cancelled by " + c.actor }

// Cancel ends job on behalf of actor (a person's login, named in the job's
// description). A job waiting in the queue ends at once in StateError,
// "cancelled by ACTOR before it ran", reported as every end is. A running
// job's steps are cancelled: the running step is killed with its process tree
// on the target, no further step runs, and when a checkpoint step had
// started, the target rolls back as after a failed step (the cancel does not
// end the rollback); the job then ends in StateError, "cancelled by ACTOR
// during STEP; rolled back to abc1234" or "…; nothing had changed". For a
// running job Cancel returns once the cancel is recorded, with the job as it
// stands (running); Wait tells its end. Cancelling a job twice is no error;
// the first actor is the one named.
//
// Cancel returns an error wrapping ErrNotFound for a job the journal does not
// know, or that another deployhook process runs, and one wrapping ErrFinal,
// with the job as it stands, when the job has ended or its steps are over (a
// cancel then changes nothing). It decides under the job's lane lock, so the
// worker sees either the cancel or none, and decides the outcome once. It is
// safe for concurrent use.
func (e *Executor) Cancel(ctx context.Context, job, actor string) (Job, error) {
	actor = publicActor(actor)
	if actor == "" {
		return Job{}, errors.New("cancel: say who cancels")
	}
	for _, l := range e.lanes {
		j, found, decided := e.cancelIn(ctx, l, job, actor)
		switch {
		case decided:
			return j, fmt.Errorf("job %s is finishing: %w", job, ErrFinal)
		case found:
			return j, nil
		}
	}
	j, err := e.store.Job(ctx, job)
	switch {
	case err != nil:
		return Job{}, err
	case j.State.Final():
		return j, fmt.Errorf("job %s is %s: %w", job, j.State, ErrFinal)
	case j.Owner != e.opts.Owner.ID:
		return Job{}, fmt.Errorf("job %s runs in another deployhook process: %w", job, ErrNotFound)
	}
	// This process's job, neither waiting nor running: its outcome is
	// decided and being written.
	return j, fmt.Errorf("job %s is finishing: %w", job, ErrFinal)
}

// cancelIn cancels job if it waits or runs in l. found says it did (j is the
// job, ended or as it stands); decided says the job's steps are over, so its
// outcome no longer depends on a cancel.
func (e *Executor) cancelIn(ctx context.Context, l *lane, job, actor string) (j Job, found, decided bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.pending != nil && l.pending.ID == job:
		j = *l.pending
		l.pending = nil
		j.State, j.Finished = StateError, time.Now()
		j.Description = credit(j.Trigger.Kind, requester(j.Trigger), actor, "cancelled by "+actor+" before it ran")
		e.end(context.WithoutCancel(ctx), j)
		e.jobLogger(j).Info("queued job cancelled", "by", actor)
		return j, true, false
	case l.running != nil && l.running.ID == job:
		c := &l.cancel
		if c.job != job {
			*c = cancelState{job: job} // the worker has not armed it yet: arm sees the cancel
		}
		if c.over {
			return *l.running, false, true
		}
		if c.actor == "" {
			c.actor = actor
			if c.stop != nil {
				c.stop(&cancelCause{actor: actor})
			}
			e.jobLogger(*l.running).Info("running job cancelled", "by", actor)
		}
		return *l.running, true, false
	}
	return Job{}, false, false
}

// arm returns the context that job's steps run under: ctx, ended also by a
// person's Cancel (with a *cancelCause). disarm marks the steps over; call it
// once they are, before the outcome is decided.
func (e *Executor) arm(ctx context.Context, target, job string) (steps context.Context, disarm func()) {
	sctx, stop := context.WithCancelCause(ctx)
	l := e.lanes[target]
	if l == nil {
		return sctx, func() { stop(nil) }
	}
	l.mu.Lock()
	if l.cancel.job != job {
		l.cancel = cancelState{job: job}
	}
	l.cancel.stop = stop
	if a := l.cancel.actor; a != "" {
		stop(&cancelCause{actor: a})
	}
	l.mu.Unlock()
	return sctx, func() {
		l.mu.Lock()
		if l.cancel.job == job {
			l.cancel.stop, l.cancel.over = nil, true
		}
		l.mu.Unlock()
		stop(nil)
	}
}

// canceller returns who cancelled the steps that ran under ctx, or "".
func canceller(ctx context.Context) string {
	var c *cancelCause
	if errors.As(context.Cause(ctx), &c) {
		return c.actor
	}
	return ""
}

// cancelled decides the outcome of a run that a person cancelled (r.cancelBy):
// StateError, saying who cancelled it, during which step, and what became of
// the target.
func cancelled(r runResult) (st State, description, now string) {
	by := "cancelled by " + r.cancelBy
	f := r.failed
	if f == nil {
		return StateError, by + " before it ran", ""
	}
	cause := by + " during " + f.step
	if f.unstarted {
		cause = by + " before " + f.step
	}
	switch {
	case f.transport:
		if r.checkpoint {
			return StateError, cause + "; connection lost, target state unknown", ""
		}
		return StateError, cause + "; connection lost, nothing had changed", ""
	case !r.checkpoint:
		return StateError, cause + "; nothing had changed", ""
	case !r.rollbackOn:
		return StateError, cause + "; rollback is off, target state unknown", ""
	case r.prev == "":
		return StateError, cause + "; no previous commit to roll back to, target state unknown", ""
	}
	description, ok := rollbackEnd(r, cause)
	if !ok {
		return StateError, description, ""
	}
	return StateError, description, r.prev
}
