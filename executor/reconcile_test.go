package executor

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeHeads is GitHub's branch head and CI results.
type fakeHeads struct {
	mu     sync.Mutex
	head   string
	passed map[string]bool // sha → CI succeeded
}

func (f *fakeHeads) BranchHead(ctx context.Context, repo, branch string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.head, nil
}

func (f *fakeHeads) WorkflowSucceeded(ctx context.Context, repo, sha, path string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.passed[sha] && path == ".github/workflows/ci.yml", nil
}

func (f *fakeHeads) set(sha string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.head = sha
}

func TestExecutor_Reconcile(t *testing.T) {
	tests := []struct {
		name     string
		deployOn DeployOn
		passed   bool
		want     bool // the missed head is deployed
	}{
		{"push target deploys a missed push", "push", false, true},
		{"workflow_run target deploys a head that passed CI", "workflow_run", true, true},
		{"workflow_run target waits for CI", "workflow_run", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemStore()
				seedSuccess(t, store, sha(1))
				heads := &fakeHeads{head: sha(1), passed: map[string]bool{sha(2): tc.passed}}
				tg := testTarget()
				tg.Reconcile, tg.DeployOn, tg.Workflows = 5*time.Minute, tc.deployOn, []string{".github/workflows/ci.yml"}
				tr := &fakeTransport{}
				h := start(t, Options{Targets: []Target{tg}, Heads: heads}, store, tr, &fakeReporter{})
				defer h.stop()

				time.Sleep(6 * time.Minute) // the head is deployed: nothing to do
				h.settle()
				if n := len(tr.commands()); n != 0 {
					t.Fatalf("reconciling a deployed head ran %d steps", n)
				}
				heads.set(sha(2)) // a push whose webhook was lost
				time.Sleep(5 * time.Minute)
				h.settle()
				deployed := slices.ContainsFunc(tr.commands(), func(c Command) bool { return c.Env["DEPLOYHOOK_SHA"] == sha(2) })
				if deployed != tc.want {
					t.Errorf("deployed the missed head: %v, want %v", deployed, tc.want)
				}
				if !tc.want {
					return
				}
				jobs, _ := store.Jobs(context.Background(), "production", 1)
				if jobs[0].Trigger.Kind != KindReconcile || jobs[0].Trigger.Reason != "missed webhook: main is at "+sha(2)[:7] {
					t.Errorf("job trigger = %+v", jobs[0].Trigger)
				}
				n := len(tr.commands())
				time.Sleep(30 * time.Minute) // later rounds do not deploy it again
				h.settle()
				if len(tr.commands()) != n {
					t.Errorf("the reconciler deployed %s again", sha(2)[:7])
				}
			})
		})
	}
}

// A head whose deploy failed and was rolled back is not retried by the reconciler.
func TestExecutor_ReconcileLeavesFailedHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		seedSuccess(t, store, sha(1))
		heads := &fakeHeads{head: sha(1)}
		tg := testTarget()
		tg.Reconcile, tg.DeployOn = time.Minute, "push"
		tr := &fakeTransport{changed: "app.py\n", behave: func(ctx context.Context, c Command) (int, error) {
			return exitIf(c.Name == "verify" && c.Env["DEPLOYHOOK_SHA"] == sha(2), 1)
		}}
		rep := &fakeReporter{}
		h := start(t, Options{Targets: []Target{tg}, Heads: heads}, store, tr, rep)
		defer h.stop()
		heads.set(sha(2))
		h.push(2, "d-2")
		h.settle()
		if r := rep.last(sha(2)); r.State != StateFailure {
			t.Fatalf("deploy of sha 2: %s %q", r.State, r.Description)
		}
		n := len(tr.commands())
		time.Sleep(10 * time.Minute)
		h.settle()
		if len(tr.commands()) != n {
			t.Errorf("the reconciler redeployed a head that failed")
		}
	})
}
