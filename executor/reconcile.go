package executor

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Heads reads GitHub for the reconciler. Implementation: executor/ghstatus.
type Heads interface {
	// BranchHead returns the SHA the branch points at.
	BranchHead(ctx context.Context, repo, branch string) (string, error)
	// WorkflowSucceeded reports whether the latest run of the workflow file on a
	// push of sha concluded success.
	WorkflowSucceeded(ctx context.Context, repo, sha, workflowPath string) (bool, error)
}

// reconcileLoop compares the target's branch head with what deployhook knows of
// it every Reconcile interval, until ctx ends. GitHub does not redeliver a lost
// webhook by itself (GITHUB-FACTS.md, "Redelivery"); this catches the push.
func (e *Executor) reconcileLoop(ctx context.Context, l *lane) {
	t := time.NewTicker(l.t.Reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !e.mayReconcile(ctx, l.t.Reconcile) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := e.reconcile(rctx, l); err != nil {
			e.lg.Warn("reconcile", "target", l.t.Name, "err", err)
		}
		cancel()
	}
}

// reconcile enqueues the branch head of l's target if it was never queued for
// the target and the trigger rules allow it. A head that was deployed, failed,
// rolled back or superseded is left alone: it had its job.
func (e *Executor) reconcile(ctx context.Context, l *lane) error {
	t := l.t
	head, err := e.opts.Heads.BranchHead(ctx, t.Repo, t.Branch)
	if err != nil {
		return fmt.Errorf("read the head of %s: %w", t.Branch, err)
	}
	l.mu.Lock()
	known := head == l.current || (l.running != nil && l.running.Trigger.SHA == head) ||
		(l.pending != nil && l.pending.Trigger.SHA == head)
	l.mu.Unlock()
	if known {
		return nil
	}
	recent, err := e.store.Jobs(ctx, t.Name, 50)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(recent, func(j Job) bool { return j.Trigger.SHA == head }) {
		return nil
	}
	if t.DeployOn == DeployOnWorkflowRun {
		passed := false
		for _, w := range t.Workflows {
			ok, err := e.opts.Heads.WorkflowSucceeded(ctx, t.Repo, head, w)
			if err != nil {
				return fmt.Errorf("read the CI result of %s: %w", short(head), err)
			}
			passed = passed || ok
		}
		if !passed {
			e.lg.Debug("reconcile: the head has not passed CI", "target", t.Name, "sha", head)
			return nil
		}
	}
	en, err := e.Enqueue(ctx, t.Name, Trigger{
		Kind: KindReconcile, Repo: t.Repo, Branch: t.Branch, SHA: head, Actor: "deployhook",
		Reason: "missed webhook: " + t.Branch + " is at " + short(head),
	})
	if err != nil {
		return err
	}
	if en.Ignored != "" {
		e.lg.Info("reconcile: the head is not deployed", "target", t.Name, "sha", head, "why", en.Ignored)
		return nil
	}
	if !en.Duplicate {
		e.lg.Warn("reconcile: a push was missed, deploying the branch head", "target", t.Name, "sha", head, "job", en.Job.ID)
	}
	return nil
}
