package executor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// reportTimeout bounds one attempt to send one report (the Reporter retries inside it).
const reportTimeout = 45 * time.Second

// pause waits d, or until ctx ends; it reports false when ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	return pauseOr(ctx.Done(), d)
}

// noticeTimeout bounds one attempt to send one notice. A chat webhook answers
// in well under a second; one that hangs must not hold its channel's queue,
// nor a shutdown for long (an attempt under way then is let finish: cut
// short, it may have reached the channel and would be sent again).
const noticeTimeout = 10 * time.Second

// recordTimeout bounds recording what an attempt to send a notice did.
const recordTimeout = 10 * time.Second

// noticeBatch is how many owed notices of one channel one pass reads.
const noticeBatch = 20

// send delivers owed reports until ctx ends: GitHub's in this goroutine, and
// each notice channel's in one of its own, so that a channel that fails (and
// backs off) never holds up GitHub or another channel, nor they it. It
// returns when all of them have stopped.
func (e *Executor) send(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range e.nt.channels {
		wg.Go(func() {
			e.deliver(ctx, e.lg.With("channel", c.name), "notices delayed", c.wake,
				func(ctx context.Context) (bool, error) { return e.sendNotices(ctx, c) })
		})
	}
	e.deliver(ctx, e.lg, "reports to GitHub delayed", e.owed, e.sendOwed)
	wg.Wait()
}

// deliver runs pass until ctx ends: again at once while it reports more to
// do, then when wake fires. When pass fails, it backs off exponentially
// between RetryMin and RetryMax, logging msg; the reports wait in the
// journal, so nothing is lost across a restart.
func (e *Executor) deliver(ctx context.Context, lg *slog.Logger, msg string, wake <-chan struct{}, pass func(context.Context) (done bool, err error)) {
	backoff := time.Duration(0)
	for {
		if backoff > 0 && !pause(ctx, backoff) {
			return
		}
		ok, err := pass(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			backoff = min(max(backoff*2, e.opts.RetryMin), e.opts.RetryMax)
			lg.Warn(msg, "err", err, "retry_in", backoff)
			continue
		case !ok:
			backoff = 0
			continue // there may be more
		}
		backoff = 0
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
	}
}

// flush makes one bounded pass over the outbox, at shutdown: GitHub's
// reports and each channel's notices at the same time, so that an
// unreachable GitHub does not use up the time the notices have.
func (e *Executor) flush(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range e.nt.channels {
		wg.Go(func() {
			e.flushPass(ctx, e.lg.With("channel", c.name), "notices left in the journal for the next start",
				func(ctx context.Context) (bool, error) { return e.sendNotices(ctx, c) })
		})
	}
	e.flushPass(ctx, e.lg, "reports left in the journal for the next start", e.sendOwed)
	wg.Wait()
}

// flushPass runs pass until it is done, fails (logging msg) or ctx ends.
func (e *Executor) flushPass(ctx context.Context, lg *slog.Logger, msg string, pass func(context.Context) (bool, error)) {
	for ctx.Err() == nil {
		done, err := pass(ctx)
		if err != nil {
			lg.Warn(msg, "err", err)
			return
		}
		if done {
			return
		}
	}
}

// owedTo returns the oldest reports owed to channel ("" GitHub), at most
// limit, and the notices owed to channels this Executor has no Notifier for
// (a channel removed from the configuration). The outbox holds every
// channel's reports in one order: when the oldest limit rows are not all the
// channel's, it reads them all, so a backlog of another channel's never hides
// this one's.
func (e *Executor) owedTo(ctx context.Context, channel string, limit int) (mine, lost []OwedReport, err error) {
	all, err := e.owedBatch(ctx, limit)
	if err != nil {
		return nil, nil, err
	}
	mine, lost = e.splitOwed(all, channel)
	// A full batch (on a replica, fewer than limit) that is not all this
	// channel's may hide its reports behind another channel's backlog.
	if full := e.batchCap(limit); len(all) == full && len(mine) < full {
		if all, err = e.owedBatch(ctx, 0); err != nil {
			return nil, nil, err
		}
		mine, lost = e.splitOwed(all, channel)
	}
	return mine[:min(len(mine), limit)], lost, nil
}

// splitOwed returns the reports of owed that are channel's, and the notices
// to channels that have no Notifier.
func (e *Executor) splitOwed(owed []OwedReport, channel string) (mine, lost []OwedReport) {
	for _, o := range owed {
		switch n := o.Report.Notify; {
		case n == channel:
			mine = append(mine, o)
		case n != "" && e.nt.channel(n) == nil:
			lost = append(lost, o)
		}
	}
	return mine, lost
}

// sendNotices sends channel c's owed notices oldest first. It returns done
// when none was owed, and the error that stopped it (the notice stays owed,
// its tries counted). A notice the channel refused for good is logged and
// settled.
func (e *Executor) sendNotices(ctx context.Context, c *channel) (done bool, err error) {
	owed, _, err := e.owedTo(ctx, c.name, noticeBatch)
	if err != nil {
		return false, err
	}
	if len(owed) == 0 {
		return true, nil
	}
	for _, o := range owed {
		r := o.Report
		lg := e.lg.With("job", r.Job, "sha", r.SHA, "target", r.Target, "channel", c.name, "event", r.Event)
		if ctx.Err() != nil {
			return false, ctx.Err() // shutting down: start no new attempt
		}
		// An attempt, and the record of what it did, run to their end even
		// when ctx ends meanwhile (a shutdown): a notice that reached the
		// channel but was not settled would be sent again.
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), noticeTimeout)
		nerr := c.n.Notify(nctx, r)
		cancel()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		if nerr != nil && !errors.Is(nerr, ErrPermanent) {
			if err := e.store.Retry(rctx, o.ID); err != nil && !errors.Is(err, ErrNotFound) {
				lg.Error("count notice retry", "err", err)
			}
			cancel()
			return false, nerr
		}
		err := e.store.Settle(rctx, o.ID)
		cancel()
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, err // ErrNotFound: another process sent and settled it
		}
		if nerr != nil {
			lg.Error("the channel refused a notice; dropped it", "err", nerr, "tries", o.Tries+1)
		} else {
			lg.Info("notice sent", "tries", o.Tries+1)
		}
	}
	return false, nil
}

// sendOwed sends the reports owed to GitHub oldest first, and settles the
// notices owed to channels that have no Notifier. It returns done when no
// report was owed to GitHub, and the error that stopped it (the report stays
// owed).
func (e *Executor) sendOwed(ctx context.Context) (done bool, err error) {
	owed, lost, err := e.owedTo(ctx, "", 50)
	if err != nil {
		return false, err
	}
	for _, o := range lost {
		if err := e.store.Settle(ctx, o.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return false, err
		}
		e.lg.Warn("notice dropped: its channel is not configured", "channel", o.Report.Notify,
			"job", o.Report.Job, "target", o.Report.Target, "event", o.Report.Event)
	}
	if len(owed) == 0 {
		return true, nil
	}
	// Stale reports are settled without sending: GitHub limits
	// content-creating requests (about 80 a minute), and a storm of pushes
	// supersedes many jobs at once.
	stale := staleReports(owed)
	deployments := make(map[string]int64)
	for i, o := range owed {
		r := o.Report
		if stale[i] {
			if err := e.store.Settle(ctx, o.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return false, err
			}
			e.lg.Debug("stale report skipped", "job", r.Job, "state", r.State)
			continue
		}
		dep, seen := deployments[r.Job]
		if !seen {
			if j, err := e.store.Job(ctx, r.Job); err == nil {
				dep = j.Deployment
			}
		}
		r.Deployment = dep
		rctx, cancel := context.WithTimeout(ctx, reportTimeout)
		got, err := e.rep.Report(rctx, r)
		cancel()
		lg := e.lg.With("job", r.Job, "sha", r.SHA, "target", r.Target, "state", r.State)
		if got != 0 && got != dep {
			// Kept even when the report failed after creating the Deployment, so
			// the retry does not create a second one.
			if serr := e.store.SetDeployment(ctx, r.Job, got); serr != nil {
				return false, serr
			}
			deployments[r.Job] = got
		}
		if errors.Is(err, ErrPermanent) {
			lg.Error("GitHub refused a report; dropping it", "err", err)
		} else if err != nil {
			if rerr := e.store.Retry(ctx, o.ID); rerr != nil && !errors.Is(rerr, ErrNotFound) {
				lg.Error("count report retry", "err", rerr)
			}
			return false, err
		}
		if got == 0 {
			deployments[r.Job] = dep
		}
		if err := e.store.Settle(ctx, o.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return false, err // ErrNotFound: another process sent and settled it
		}
		lg.Debug("report sent", "tries", o.Tries+1)
	}
	return false, nil
}

// staleReports decides which of owed (oldest first, as Store.Owed returns
// them) a later final report of the same job makes stale, so they need not be
// sent: stale[i] is true for owed[i]. Stale are the pending reports (queued,
// running) of a job whose last final report in owed is superseded: GitHub
// would show the commit pending just before it shows it superseded; and the
// running report of a job whose final report comes later in owed: the run is
// over. A deployed job's queued report is never stale, so its commit shows
// pending before its final state; nor is a final report, nor a report after
// the job's last final one.
func staleReports(owed []OwedReport) []bool {
	last := make(map[string]int, len(owed)) // job → index of its last final report
	for i, o := range owed {
		if o.Report.State.Final() {
			last[o.Report.Job] = i
		}
	}
	stale := make([]bool, len(owed))
	for i, o := range owed {
		r := o.Report
		f, ok := last[r.Job]
		stale[i] = ok && i < f && !r.State.Final() &&
			(r.State == StateRunning || owed[f].Report.State == StateSuperseded)
	}
	return stale
}
