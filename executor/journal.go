package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// journalRetryMax bounds the backoff between attempts to write job outcomes the
// journal refused: a full disk freed by an operator should be noticed soon.
const journalRetryMax = 30 * time.Second

// journal tracks whether the journal accepts writes, and keeps in memory the
// final job states it refused, so they are written (with their owed reports)
// as soon as it accepts writes again. A deploy never waits for the journal
// while it runs; its lane waits before starting the next one.
type journal struct {
	mu      sync.Mutex
	err     error                // the last write's error; nil once one succeeds
	backlog map[string]unwritten // job id → its final state, not written yet
	wake    chan struct{}        // capacity 1: the backlog grew
	changed chan struct{}        // closed (and replaced) when the backlog shrinks
}

// unwritten is a job's final state and the step records the journal refused,
// with the notices owed with that state (noticesFor).
type unwritten struct {
	job     Job
	steps   []StepRun
	notices []Report
}

func newJournal() *journal {
	return &journal{backlog: map[string]unwritten{}, wake: make(chan struct{}, 1), changed: make(chan struct{})}
}

// wrote records the outcome of a journal write and returns err. ErrNotFound and
// ErrDuplicate are answers of a working journal, not faults.
func (jr *journal) wrote(err error) error {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrFenced) {
		jr.err = err
	} else {
		jr.err = nil
	}
	return err
}

// health returns why the journal is not known to accept writes, or nil.
func (jr *journal) health() error {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if n := len(jr.backlog); n > 0 {
		cause := jr.err
		if cause == nil {
			cause = errors.New("retrying")
		}
		return fmt.Errorf("%d job outcome(s) wait to be written: %w", n, cause)
	}
	return jr.err
}

// add keeps u until it is written; a later state of the same job replaces it.
func (jr *journal) add(u unwritten) {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if old, ok := jr.backlog[u.job.ID]; ok {
		u.steps = mergeSteps(old.steps, u.steps)
	}
	jr.backlog[u.job.ID] = u
	select {
	case jr.wake <- struct{}{}:
	default:
	}
}

// remove forgets job id's entry if it is still the one written (same state).
func (jr *journal) remove(u unwritten) {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if cur, ok := jr.backlog[u.job.ID]; ok && cur.job.State == u.job.State && cur.job.Finished.Equal(u.job.Finished) {
		delete(jr.backlog, u.job.ID)
		close(jr.changed)
		jr.changed = make(chan struct{})
	}
}

// pending returns the backlog, oldest outcome first.
func (jr *journal) pending() []unwritten {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	out := make([]unwritten, 0, len(jr.backlog))
	for _, u := range jr.backlog {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b unwritten) int { return a.job.Finished.Compare(b.job.Finished) })
	return out
}

// waitWritten waits until job id has no outcome waiting to be written, or ctx ends.
func (jr *journal) waitWritten(ctx context.Context, id string) {
	for {
		jr.mu.Lock()
		_, waiting := jr.backlog[id]
		changed := jr.changed
		jr.mu.Unlock()
		if !waiting {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// mergeSteps returns the step records of a and b, b's winning on the same seq.
func mergeSteps(a, b []StepRun) []StepRun {
	out := slices.Clone(b)
	for _, s := range a {
		if !slices.ContainsFunc(b, func(t StepRun) bool { return t.Seq == s.Seq }) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(x, y StepRun) int { return x.Seq - y.Seq })
	return out
}

// end writes j's final state with its report and notices (and the step
// records steps the journal refused before); if the journal refuses it too,
// the outcome is kept in memory and written by the repair loop.
func (e *Executor) end(ctx context.Context, j Job, steps ...StepRun) {
	u := unwritten{job: j, steps: steps, notices: e.noticesFor(ctx, j)}
	err := e.write(ctx, u)
	if errors.Is(err, ErrFenced) {
		// A replica that lost the lane never writes a job's end: the lane's
		// next holder ends it.
		e.jobLogger(j).Warn("job outcome not written: this replica lost the lane", "state", j.State)
		e.live.drop(j.ID)
		return
	}
	// After the write: a page that reloads at the end reads the final
	// state from the journal (and the metrics count what was recorded, or
	// is kept to be).
	e.live.finish(j)
	e.opts.Observer.JobEnded(j)
	if err != nil {
		e.jobLogger(j).Error("journal refused the job's outcome: kept in memory until it can be written",
			"state", j.State, "err", err)
		e.jr.add(u)
	}
}

// write records u's steps and final state, owing its notices with it.
func (e *Executor) write(ctx context.Context, u unwritten) error {
	for _, s := range u.steps {
		if err := e.jr.wrote(e.addStep(ctx, u.job.Target, s)); err != nil {
			return fmt.Errorf("record step %d of job %s: %w", s.Seq, u.job.ID, err)
		}
	}
	if err := e.update(ctx, u.job, u.notices...); err != nil {
		return err
	}
	e.nt.wake(u.notices)
	return nil
}

// repair tries once to write every outcome the journal refused, and returns
// how many are still waiting.
func (e *Executor) repair(ctx context.Context) int {
	left := 0
	for _, u := range e.jr.pending() {
		err := e.write(ctx, u)
		switch {
		case err == nil:
			e.jobLogger(u.job).Info("journal took the job's outcome", "state", u.job.State)
		case errors.Is(err, ErrNotFound):
			e.jobLogger(u.job).Error("job outcome dropped: the journal no longer has the job", "state", u.job.State)
		default:
			left++
			continue
		}
		e.jr.remove(u)
	}
	return left
}

// repairLoop writes refused outcomes with backoff until ctx ends.
func (e *Executor) repairLoop(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			if !pause(ctx, backoff) {
				return
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-e.jr.wake:
			}
		}
		if left := e.repair(ctx); left > 0 {
			backoff = min(max(backoff*2, e.opts.RetryMin), max(journalRetryMax, e.opts.RetryMin))
			e.lg.Warn("journal still refuses job outcomes", "jobs", left, "retry_in", backoff)
			continue
		}
		backoff = 0
	}
}
