package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"time"
)

// pruneEvery is how often the journal is pruned.
const pruneEvery = time.Hour

// fillOwner completes o with what this process knows of itself.
func fillOwner(o Owner, cli bool) Owner {
	if o.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.ID = hex.EncodeToString(b[:])
	}
	if o.Kind == "" {
		o.Kind = "serve"
		if cli {
			o.Kind = "cli"
		}
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	return o
}

// beat records this process's lease as lasting until until.
func (e *Executor) beat(ctx context.Context, until time.Time) error {
	o := e.opts.Owner
	o.Until = until
	return e.jr.wrote(e.store.Beat(ctx, o))
}

// leaseLoop renews the lease every Lease/3 until ctx ends and, until intake
// (also ending with the process's own context) stops, adopts the jobs of dead owners.
func (e *Executor) leaseLoop(ctx, intake context.Context) {
	t := time.NewTicker(e.opts.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.beat(ctx, time.Now().Add(e.opts.Lease)); err != nil {
			e.lg.Error("renew this process's lease", "err", err)
		}
		if intake.Err() == nil {
			if err := e.sweep(ctx); err != nil {
				e.lg.Warn("look for orphaned jobs", "err", err)
			}
		}
	}
}

// orphan is what to do with a job whose owner's lease expired.
type orphan struct {
	requeue     bool   // queue it again on its target
	state       State  // else end it in this state
	description string // with this public description
}

// orphanAction decides the fate of an orphaned job in state st: a running one
// was interrupted, and what its target runs now is unknown; a queued one is
// queued again by a service whose configuration has its target, and ended by a
// command-line deploy (which runs only its own job) or when its target is gone.
func orphanAction(st State, target string, cli, configured bool) orphan {
	switch {
	case st == StateRunning:
		return orphan{state: StateError, description: "interrupted: the deployhook that ran it stopped; target state unknown"}
	case cli:
		return orphan{state: StateError, description: "interrupted: the deployhook that queued it stopped"}
	case !configured:
		return orphan{state: StateError, description: "target " + target + " is no longer configured"}
	}
	return orphan{requeue: true}
}

// sweep adopts the jobs whose owner's lease expired (each by compare-and-set,
// so of two processes only one acts on a job) and ends or requeues them, and
// ends the watch steps that Run's start-up recovery left to owners alive
// then, once their lease has expired (recheckWatches). It returns an error
// only when the journal cannot be read; a job the journal refuses to end is
// kept and written later.
func (e *Executor) sweep(ctx context.Context) error {
	orphans, err := e.store.Orphans(ctx, time.Now())
	if err != nil {
		return err
	}
	me := e.opts.Owner.ID
	ended, requeued := 0, 0
	for _, j := range orphans { // newest first: the newest queued one is requeued
		if j.State.Final() || j.Owner == me || (e.rl != nil && e.lanes[j.Target] != nil) {
			continue // a replica's lanes adopt their own orphans (laneOrphans)
		}
		if err := e.jr.wrote(e.store.Adopt(ctx, j.ID, j.Owner, me)); err != nil {
			if !errors.Is(err, ErrNotFound) {
				e.jobLogger(j).Warn("adopt orphaned job", "owner", j.Owner, "err", err)
			}
			continue // another process took it, or it ended meanwhile
		}
		e.jobLogger(j).Info("adopted orphaned job", "state", j.State, "from", j.Owner)
		j.Owner = me
		l := e.lanes[j.Target]
		act := orphanAction(j.State, j.Target, e.opts.NoRecover, l != nil)
		if act.requeue {
			e.requeue(ctx, l, j)
			requeued++
			continue
		}
		j.State, j.Description, j.Finished = act.state, act.description, time.Now()
		e.end(ctx, j)
		ended++
	}
	if ended+requeued > 0 {
		e.lg.Info("orphaned jobs adopted", "ended", ended, "requeued", requeued)
	}
	e.recheckWatches(ctx)
	return nil
}

// pruneLoop prunes the journal at start and every pruneEvery until ctx ends.
func (e *Executor) pruneLoop(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		n, err := e.store.Prune(ctx, time.Now().Add(-e.opts.Retain), e.opts.RetainJobs)
		if e.jr.wrote(err) != nil {
			e.lg.Warn("prune the journal", "err", err)
		} else {
			e.lg.Info("journal pruned", "jobs", n, "retain", e.opts.Retain, "retain_jobs", e.opts.RetainJobs)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
