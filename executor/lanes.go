package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Replicas: several deployhook processes share one journal (Options.Replicas).
// Any of them records the jobs of any delivery; each target's lane runs its
// jobs only on the process that holds the lane's lease (Lanes.ClaimLane),
// and every write of one of those jobs is fenced by the lease's token, so a
// process that lost the lane never writes a job's end. The jobs of a lane
// are owned by LaneOwner(target), an owner whose lease the holder renews, so
// that Orphans and the processes that are not replicas (a command-line
// deploy) see them alive while some replica holds the lane.

// Defaults and pace of the replica lanes.
const (
	// DefaultLaneLease is Options.LaneLease's default: after a replica dies,
	// another one takes its lanes over within it.
	DefaultLaneLease = 15 * time.Second
	// DefaultLanePoll is Options.LanePoll's default.
	DefaultLanePoll = time.Second
	// claimOwed is how many owed reports a replica claims at once.
	claimOwed = 10
	// claimAll bounds a claim of every owed report (limit <= 0), which a
	// channel's sender makes when the oldest reports are other channels'.
	claimAll = 1000
)

// errLaneLost is the cause of a run cancelled because its replica lost the
// lane's lease.
var errLaneLost = errors.New("lane lease lost")

// laneLease is a replica's hold on one lane: the token its job writes are
// fenced with, 0 when it does not hold the lane.
type laneLease struct {
	mu    sync.Mutex
	token int64
}

func (ll *laneLease) get() int64 {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	return ll.token
}

func (ll *laneLease) set(token int64) {
	ll.mu.Lock()
	ll.token = token
	ll.mu.Unlock()
}

// jobOwner is the owner recorded for the jobs of target: its lane's when
// this process is a replica, else this process.
func (e *Executor) jobOwner(target string) string {
	if e.rl != nil && e.lanes[target] != nil {
		return LaneOwner(target)
	}
	return e.opts.Owner.ID
}

// updateJob is Store.UpdateJob; as a replica, fenced by the token of the
// lane of j's target (ErrFenced when this process does not hold it).
func (e *Executor) updateJob(ctx context.Context, j Job, owe ...Report) error {
	l := e.lanes[j.Target]
	if e.rl == nil || l == nil {
		return e.store.UpdateJob(ctx, j, owe...)
	}
	tok := l.lease.get()
	if tok == 0 {
		return fmt.Errorf("update job %s: %w", j.ID, ErrFenced)
	}
	return e.rl.UpdateJobFenced(ctx, tok, j, owe...)
}

// addStep is Store.AddStep; as a replica, fenced by the token of target's
// lane, as updateJob is.
func (e *Executor) addStep(ctx context.Context, target string, s StepRun) error {
	l := e.lanes[target]
	if e.rl == nil || l == nil {
		return e.store.AddStep(ctx, s)
	}
	tok := l.lease.get()
	if tok == 0 {
		return fmt.Errorf("add step %d of job %s: %w", s.Seq, s.Job, ErrFenced)
	}
	return e.rl.AddStepFenced(ctx, tok, s)
}

// owedBatch returns owed reports to send: as a replica, at most claimOwed
// that it claims for 4 LaneLeases (a minute by default): ample time to send
// them in the normal case, and how long the reports a dead replica claimed
// wait before another one sends them.
func (e *Executor) owedBatch(ctx context.Context, limit int) ([]OwedReport, error) {
	if e.rl == nil {
		return e.store.Owed(ctx, limit)
	}
	return e.rl.ClaimOwed(ctx, e.opts.Owner.ID, e.batchCap(limit), time.Now().Add(4*e.opts.LaneLease))
}

// batchCap is how many owed reports owedBatch(limit) reads at most: limit
// (all when <= 0), or on a replica at most claimOwed (claimAll for all).
func (e *Executor) batchCap(limit int) int {
	switch {
	case e.rl == nil:
		return limit
	case limit <= 0:
		return claimAll // every channel's backlog, read past another's (owedTo)
	}
	return min(limit, claimOwed)
}

// mayReconcile reports whether this process runs the reconciler now, whose
// ticks come every every: always, unless it is a replica, which then must
// hold (take or renew) the ReconcilerLane lease, for two ticks.
func (e *Executor) mayReconcile(ctx context.Context, every time.Duration) bool {
	if e.rl == nil {
		return true
	}
	now := time.Now()
	_, err := e.rl.ClaimLane(ctx, ReconcilerLane, e.opts.Owner.ID, now, now.Add(2*every))
	if err != nil && !errors.Is(err, ErrLaneHeld) {
		e.lg.Warn("claim the reconciler's lease", "err", err)
	}
	return err == nil
}

// replicaWork is work for a replica: it claims l's lane and renews it every
// LaneLease/3; while it holds it, it runs the lane's queued jobs one at a
// time, newest first (older ones are superseded), looking for them every
// LanePoll, at each renewal, and when Enqueue signals or the journal tells
// of a queued job (QueueWatcher, watchQueue). When the lease is lost (another replica
// took it, or renewals failed until it was about to end), the running deploy
// is cancelled and its end is not written (the fence refuses it): the next
// holder ends it. When ctx ends it starts nothing more; once nothing runs it
// releases the lane and returns. runCtx bounds the deploys (shutdown's
// grace).
func (e *Executor) replicaWork(ctx, runCtx context.Context, l *lane) {
	lg := e.lg.With("target", l.t.Name)
	lease := e.opts.LaneLease
	// Lease calls go on during shutdown's grace, until the deploy ends.
	keep := context.WithoutCancel(ctx)
	renew := time.NewTicker(lease / 3)
	defer renew.Stop()
	poll := time.NewTicker(e.opts.LanePoll)
	defer poll.Stop()

	var (
		held      bool
		until     time.Time     // the end of this process's lease, as it last set it
		done      chan struct{} // closed when the running deploy ends; nil when none runs
		cancelRun context.CancelCauseFunc
	)
	lose := func(why string, err error) {
		held = false
		l.lease.set(0)
		lg.Warn("lane lost: the running deploy is cancelled, and the next holder ends it", "why", why, "err", err)
		if cancelRun != nil {
			cancelRun(errLaneLost)
		}
	}
	claim := func() {
		if !held && done != nil {
			return // the deploy of a lost lease is still ending: its writes must stay fenced off
		}
		cctx, cancel := context.WithTimeout(keep, lease/3)
		defer cancel()
		now := time.Now()
		tok, err := e.rl.ClaimLane(cctx, l.t.Name, e.opts.Owner.ID, now, now.Add(lease))
		switch {
		case err == nil && held:
			until = now.Add(lease)
		case err == nil:
			held, until = true, now.Add(lease)
			l.lease.set(tok)
			lg.Info("lane taken", "token", tok)
			e.beatLane(cctx, l, until)
			e.takeOver(cctx, l)
			return
		case errors.Is(err, ErrLaneHeld):
			if held {
				lose("another replica took the lane", err)
			}
			return
		case held && time.Now().After(until.Add(-lease/3)):
			lose("the lease could not be renewed before its end", err)
			return
		default:
			lg.Warn("renew the lane's lease", "err", err)
			return
		}
		e.beatLane(cctx, l, until)
	}
	start := func() {
		if !held || done != nil || ctx.Err() != nil {
			return
		}
		// The watch the lane's last holder left (takeOver), when it may go
		// on, comes first: any newer job ends it instead (noResume).
		d := e.resumeDeploy(keep, l)
		resumed := d != nil
		var j Job
		if !resumed {
			var ok bool
			if j, ok = e.nextJob(keep, l); !ok {
				return
			}
		}
		var rctx context.Context
		rctx, cancelRun = context.WithCancelCause(runCtx)
		done = make(chan struct{})
		go func(done chan struct{}) { // waited for below, before replicaWork returns
			defer close(done)
			if !resumed {
				d = e.run(rctx, l, j)
			}
			if d != nil {
				// The watch holds this lane's worker: a newer job, recorded
				// by any replica, ends it at its next check (the journal).
				// It ends at shutdown, as a single process's does, and when
				// the lane is lost; a rollback under way goes on within
				// shutdown's grace.
				wctx, stopWatch := context.WithCancelCause(rctx)
				stopAfter := context.AfterFunc(ctx, func() { stopWatch(context.Cause(ctx)) })
				e.watchJob(wctx, rctx, l, d, resumed)
				stopAfter()
				stopWatch(nil)
			}
		}(done)
	}

	claim()
	start()
	for {
		var ended <-chan struct{} = done
		stopping := ctx.Done()
		if ctx.Err() != nil {
			if done == nil {
				break
			}
			stopping = nil
		}
		select {
		case <-stopping:
			continue
		case <-ended:
			done, cancelRun = nil, nil
		case <-renew.C:
			claim()
		case <-poll.C:
		case <-l.wake:
		}
		start()
	}
	if held {
		l.lease.set(0)
		cctx, cancel := context.WithTimeout(keep, lease/3)
		defer cancel()
		if err := e.rl.ReleaseLane(cctx, l.t.Name, e.opts.Owner.ID); err != nil {
			lg.Warn("release the lane", "err", err)
		}
	}
}

// watchQueue wakes this replica's lanes when the journal tells of a queued
// job (QueueWatcher), until ctx ends: a job recorded by another replica then
// starts at once on the holder of its lane, not at its next look
// (LanePoll), which stays as the fallback for missed notifications.
func (e *Executor) watchQueue(ctx context.Context) {
	e.qw.WatchQueue(ctx, func(target string) {
		if target == "" {
			for _, l := range e.lanes {
				l.signal()
			}
			return
		}
		if l := e.lanes[target]; l != nil {
			l.signal()
		}
	})
}

// beatLane renews the lease of the lane's job owner, LaneOwner, until until.
func (e *Executor) beatLane(ctx context.Context, l *lane, until time.Time) {
	o := e.opts.Owner
	o.ID, o.Kind, o.Until = LaneOwner(l.t.Name), "lane", until
	if err := e.jr.wrote(e.store.Beat(ctx, o)); err != nil {
		e.lg.Warn("renew the lane's job owner", "target", l.t.Name, "err", err)
	}
}

// takeOver is what a replica does when it takes l's lane: it reads what the
// target runs from the journal, and ends the lane's running jobs (whoever ran
// them lost the lane: its writes are fenced off) and the running jobs of
// dead owners as interrupted, as the orphan sweep does; the queued ones of
// dead owners become the lane's (nextJob adopts them). It ends the watch
// step left open by the lane's previous holder, or by a dead owner
// (ErrWatchStopped), or hands it to the lane to resume (start, resumeDeploy)
// when the watch may go on.
func (e *Executor) takeOver(ctx context.Context, l *lane) {
	if last, err := e.store.LastSuccess(ctx, l.t.Name); err == nil {
		l.mu.Lock()
		l.current, l.lastJob = last.Trigger.SHA, last.ID
		l.mu.Unlock()
	} else if !errors.Is(err, ErrNotFound) {
		e.lg.Warn("read the target's last deploy", "target", l.t.Name, "err", err)
	}
	running, err := e.store.Jobs(ctx, l.t.Name, 0, StateRunning)
	if err != nil {
		e.lg.Warn("read the lane's running jobs", "target", l.t.Name, "err", err)
	}
	orphans, err := e.laneOrphans(ctx, l)
	if err != nil {
		e.lg.Warn("read the lane's orphaned jobs", "target", l.t.Name, "err", err)
	}
	for _, j := range append(running, orphans...) {
		if j.State != StateRunning || (j.Owner != LaneOwner(l.t.Name) && !contains(orphans, j.ID)) {
			continue // a live command-line deploy's own job
		}
		act := orphanAction(j.State, j.Target, false, true)
		j.Owner = LaneOwner(l.t.Name)
		j.State, j.Description, j.Finished = act.state, act.description, time.Now()
		e.jobLogger(j).Warn("interrupted job ended by the lane's new holder")
		e.end(ctx, j)
	}
	// Whoever watched the lane's last deploy lost the lane (its writes are
	// fenced off) or died: its open watch step is ended or resumed here, by
	// the holder only, never by a replica that merely starts.
	if err := e.endStaleWatches(ctx, l.t.Name, false, true); err != nil {
		e.lg.Warn("look for the lane's watch left running", "target", l.t.Name, "err", err)
	}
}

// laneOrphans adopts for l's lane the unfinished jobs of l's target whose
// owner's lease ended (compare-and-set: one process wins each) and returns
// them.
func (e *Executor) laneOrphans(ctx context.Context, l *lane) ([]Job, error) {
	all, err := e.store.Orphans(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	var out []Job
	for _, j := range all {
		if j.Target != l.t.Name || j.State.Final() {
			continue
		}
		if err := e.store.Adopt(ctx, j.ID, j.Owner, LaneOwner(l.t.Name)); err != nil {
			if errors.Is(err, ErrDuplicate) {
				e.endDuplicateOrphan(ctx, j)
				continue
			}
			if !errors.Is(err, ErrNotFound) {
				e.jobLogger(j).Warn("adopt orphaned job for the lane", "owner", j.Owner, "err", err)
			}
			continue
		}
		e.jobLogger(j).Info("adopted orphaned job for the lane", "state", j.State, "from", j.Owner)
		j.Owner = LaneOwner(l.t.Name)
		out = append(out, j)
	}
	return out, nil
}

// endDuplicateOrphan ends j, an orphan (of a command-line deploy, or of a
// process from before the target had a lane) whose SHA the lane already has
// unfinished: the journal refuses it to the lane, which keeps one job per
// SHA. This process adopts it as its own and ends it now, as the sweep ends
// any orphan: a running one interrupted (what it did to the target is
// unknown), a queued one superseded by the lane's job. Its final report goes
// out before the lane's job ends, so the commit's last word is that job's.
func (e *Executor) endDuplicateOrphan(ctx context.Context, j Job) {
	me := e.opts.Owner.ID
	if err := e.jr.wrote(e.store.Adopt(ctx, j.ID, j.Owner, me)); err != nil {
		if !errors.Is(err, ErrNotFound) {
			e.jobLogger(j).Warn("adopt orphaned job to end it", "owner", j.Owner, "err", err)
		}
		return
	}
	e.jobLogger(j).Info("adopted orphaned job: its commit is the lane's already", "state", j.State, "from", j.Owner)
	j.Owner = me
	if act := orphanAction(j.State, j.Target, false, true); !act.requeue {
		j.State, j.Description = act.state, act.description
	} else {
		j.State, j.Description = StateSuperseded, "superseded by the lane's job of "+short(j.Trigger.SHA)
	}
	j.Finished = time.Now()
	e.end(ctx, j)
}

// nextJob returns the lane's next job to run: the newest queued job of the
// lane (any replica may have recorded it), after superseding the older
// queued ones, as a newer trigger supersedes the pending job of a single
// process. ok is false when none waits or the journal cannot be read.
func (e *Executor) nextJob(ctx context.Context, l *lane) (j Job, ok bool) {
	if _, err := e.laneOrphans(ctx, l); err != nil {
		e.lg.Warn("read the lane's orphaned jobs", "target", l.t.Name, "err", err)
	}
	queued, err := e.store.Jobs(ctx, l.t.Name, 0, StateQueued)
	if err != nil {
		e.lg.Warn("read the lane's queued jobs", "target", l.t.Name, "err", err)
		return Job{}, false
	}
	var mine []Job
	for _, q := range queued { // newest first
		if q.Owner == LaneOwner(l.t.Name) {
			mine = append(mine, q)
		}
	}
	if len(mine) == 0 {
		return Job{}, false
	}
	for _, old := range mine[1:] {
		old.State = StateSuperseded
		old.Description = "superseded by " + short(mine[0].Trigger.SHA)
		old.Finished = time.Now()
		e.end(ctx, old)
	}
	return mine[0], true
}

// contains reports whether jobs has a job with id.
func contains(jobs []Job, id string) bool {
	for _, j := range jobs {
		if j.ID == id {
			return true
		}
	}
	return false
}
