package executor

import (
	"context"
	"errors"
	"time"
)

// reportTimeout bounds one attempt to send one report (the Reporter retries inside it).
const reportTimeout = 45 * time.Second

// pause waits d, or until ctx ends; it reports false when ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// send delivers owed reports in order until ctx ends. When GitHub fails, it backs
// off exponentially between RetryMin and RetryMax; the reports wait in the journal,
// so nothing is lost across a restart.
func (e *Executor) send(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		if backoff > 0 && !pause(ctx, backoff) {
			return
		}
		ok, err := e.sendOwed(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			backoff = min(max(backoff*2, e.opts.RetryMin), e.opts.RetryMax)
			e.lg.Warn("reports to GitHub delayed", "err", err, "retry_in", backoff)
			continue
		case !ok:
			backoff = 0
			continue // there may be more
		}
		backoff = 0
		select {
		case <-ctx.Done():
			return
		case <-e.owed:
		}
	}
}

// flush makes one bounded pass over the outbox, at shutdown.
func (e *Executor) flush(ctx context.Context) {
	for ctx.Err() == nil {
		done, err := e.sendOwed(ctx)
		if err != nil {
			e.lg.Warn("reports left in the journal for the next start", "err", err)
			return
		}
		if done {
			return
		}
	}
}

// sendOwed sends owed reports oldest first. It returns done when the outbox was
// empty, and the error that stopped it (the report stays owed).
func (e *Executor) sendOwed(ctx context.Context) (done bool, err error) {
	owed, err := e.owedBatch(ctx, 50)
	if err != nil {
		return false, err
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
