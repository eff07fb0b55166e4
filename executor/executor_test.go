package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// defaultSteps mimics the DESIGN sequence: a check before the checkpoint, then
// checkout, sync (conditional), two restarts and verify.
func testTarget() Target {
	return Target{
		Name: "production", Repo: "acme/app", Branch: "main", Environment: "production",
		Rollback: true,
		Changed:  &Step{Name: "changed files", Run: "git diff --name-only", Timeout: time.Minute},
		Steps: []Step{
			{Name: "preflight", Run: "check", Timeout: time.Minute},
			{Name: "checkout", Run: "checkout", Timeout: time.Minute, Checkpoint: true},
			{Name: "sync", Run: "uv sync", Timeout: time.Minute, WhenChanged: []string{"uv.lock", "pyproject.toml"}},
			{Name: "restart", Run: "restart", Timeout: time.Minute},
			{Name: "verify", Run: "verify", Timeout: time.Minute},
		},
		NotApplied: []string{"infra/**", "dagster.yaml"},
	}
}

type harness struct {
	t      *testing.T
	store  *memStore
	tr     *fakeTransport
	rep    *fakeReporter
	ex     *Executor
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, opts Options, store *memStore, tr *fakeTransport, rep *fakeReporter) *harness {
	t.Helper()
	return startOn(t, opts, store, store, tr, rep)
}

// startOn starts an executor on st, a Store that keeps its data in mem.
func startOn(t *testing.T, opts Options, st Store, store *memStore, tr *fakeTransport, rep *fakeReporter) *harness {
	t.Helper()
	if len(opts.Targets) == 0 {
		opts.Targets = []Target{testTarget()}
	}
	if opts.PublicURL == "" {
		opts.PublicURL = "https://deploy.example.com/"
	}
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = time.Second, 10*time.Second
	}
	ex, err := New(testLogger(t), opts, st, tr, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, store: store, tr: tr, rep: rep, ex: ex, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- ex.Run(ctx) }()
	synctest.Wait()
	return h
}

func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Fatalf("Run: %v", err)
	}
}

func (h *harness) push(n int, delivery string) Enqueued {
	h.t.Helper()
	en, err := h.ex.Enqueue(context.Background(), "production", Trigger{
		Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(n), Delivery: delivery,
		Actor: "octocat", Reason: "push by octocat",
	})
	if err != nil {
		h.t.Fatalf("Enqueue: %v", err)
	}
	return en
}

// settle waits until the queue is idle and the outbox is empty.
func (h *harness) settle() {
	h.t.Helper()
	for range 1000 {
		synctest.Wait()
		if h.ex.idle() && h.store.owedCount() == 0 {
			return
		}
		time.Sleep(time.Second)
	}
	h.t.Fatal("executor did not settle")
}

func TestExecutor_DeploySuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{}
		rep := &fakeReporter{}
		h := start(t, Options{}, newMemStore(), tr, rep)
		defer h.stop()
		en := h.push(1, "d-1")
		h.settle()

		// A running report made stale by the final one in the same batch is
		// skipped; the fake deploy takes no time, so whether it is varies.
		if got, want := rep.statesOf(sha(1)), []State{StateQueued, StateRunning, StateSuccess}; !endsSubsequence(got, want) || got[0] != StateQueued {
			t.Errorf("reported states = %v, want in the order of %v, ending with it", got, want)
		}
		last := rep.last(sha(1))
		if last.Description != "deployed "+sha(1)[:7] {
			t.Errorf("description = %q", last.Description)
		}
		if last.URL != "https://deploy.example.com/jobs/"+en.Job.ID {
			t.Errorf("URL = %q", last.URL)
		}
		if last.Deployment != 1 {
			t.Errorf("the final report carries deployment %d, want the one created by the first report (1)", last.Deployment)
		}
		// No previous commit is known: when_changed cannot be decided, so sync runs.
		if got, want := stepNames(tr.commands()), []string{"preflight", "checkout", "sync", "restart", "verify"}; !slices.Equal(got, want) {
			t.Errorf("steps = %v, want %v", got, want)
		}
		for _, c := range tr.commands() {
			if c.Env["DEPLOYHOOK_SHA"] != sha(1) || c.Env["DEPLOYHOOK_TARGET"] != "production" ||
				c.Env["DEPLOYHOOK_JOB"] != en.Job.ID || c.Env["DEPLOYHOOK_BRANCH"] != "main" {
				t.Errorf("step %s env = %v", c.Name, c.Env)
			}
		}
		j, err := h.store.Job(context.Background(), en.Job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != StateSuccess || len(j.Steps) != 5 || j.Steps[0].Output != "ran preflight\n" {
			t.Errorf("journal: state %s, %d steps, first output %q", j.State, len(j.Steps), j.Steps[0].Output)
		}
		if tr.opens != 1 || tr.closes != 1 {
			t.Errorf("opens=%d closes=%d, want one session opened and closed", tr.opens, tr.closes)
		}
		if h.ex.Current("production") != sha(1) {
			t.Errorf("current = %q", h.ex.Current("production"))
		}
	})
}

func TestExecutor_Failures(t *testing.T) {
	tests := []struct {
		name      string
		fail      func(c Command) (int, error) // nil: succeed
		changed   string                       // output of the changed-files command
		wantState State
		wantDesc  string
		wantSteps []string
	}{
		{
			name:      "before checkpoint",
			fail:      func(c Command) (int, error) { return exitIf(c.Name == "preflight", 1) },
			wantState: StateFailure,
			wantDesc:  "preflight failed (exit 1); nothing was changed",
			wantSteps: []string{"preflight"},
		},
		{
			name: "verify fails, rollback works",
			fail: func(c Command) (int, error) {
				return exitIf(c.Name == "verify" && c.Env["DEPLOYHOOK_SHA"] == sha(2), 3)
			},
			changed:   "app.py\n",
			wantState: StateFailure,
			wantDesc:  "verify failed (exit 3); rolled back to " + sha(1)[:7],
			wantSteps: []string{"preflight", "checkout", "restart", "verify", "preflight", "checkout", "restart", "verify"},
		},
		{
			name: "step times out, rollback works",
			fail: func(c Command) (int, error) {
				if c.Name == "restart" && c.Env["DEPLOYHOOK_SHA"] == sha(2) {
					return -1, ErrTimeout
				}
				return 0, nil
			},
			changed:   "uv.lock\n",
			wantState: StateFailure,
			wantDesc:  "restart timed out; rolled back to " + sha(1)[:7],
			wantSteps: []string{"preflight", "checkout", "sync", "restart", "preflight", "checkout", "sync", "restart", "verify"},
		},
		{
			name:      "rollback fails",
			fail:      func(c Command) (int, error) { return exitIf(c.Name == "restart", 1) },
			changed:   "app.py\n",
			wantState: StateError,
			wantDesc:  "restart failed (exit 1); rollback to " + sha(1)[:7] + " failed at rollback: restart: target state unknown",
			wantSteps: []string{"preflight", "checkout", "restart", "preflight", "checkout", "restart"},
		},
		{
			name: "connection lost",
			fail: func(c Command) (int, error) {
				if c.Name == "checkout" {
					return -1, errors.New("ssh: connection reset")
				}
				return 0, nil
			},
			wantState: StateError,
			wantDesc:  "connection lost during checkout; target state unknown",
			wantSteps: []string{"preflight", "checkout"},
		},
		{
			name:      "success names what is not applied",
			changed:   "dagster.yaml\ninfra/main.tf\nsrc/app.py\n",
			wantState: StateSuccess,
			wantDesc:  "deployed " + sha(2)[:7] + "; not applied: dagster.yaml; infra/ changed: terraform apply needed",
			wantSteps: []string{"preflight", "checkout", "restart", "verify"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemStore()
				// The target runs sha(1), deployed earlier.
				seedSuccess(t, store, sha(1))
				var deploying bool
				var mu sync.Mutex
				tr := &fakeTransport{changed: tc.changed, behave: func(ctx context.Context, c Command) (int, error) {
					mu.Lock()
					defer mu.Unlock()
					if !deploying || tc.fail == nil {
						return 0, nil
					}
					return tc.fail(c)
				}}
				rep := &fakeReporter{}
				h := start(t, Options{}, store, tr, rep)
				defer h.stop()
				mu.Lock()
				deploying = true
				mu.Unlock()
				h.push(2, "d-2")
				h.settle()
				last := rep.last(sha(2))
				if last.State != tc.wantState || last.Description != tc.wantDesc {
					t.Errorf("final report = %s %q, want %s %q", last.State, last.Description, tc.wantState, tc.wantDesc)
				}
				var names []string
				for _, c := range tr.commands() {
					if c.Name != "changed files" {
						names = append(names, c.Name)
					}
				}
				if !slices.Equal(names, tc.wantSteps) {
					t.Errorf("steps = %v, want %v", names, tc.wantSteps)
				}
				for _, c := range tr.commands() {
					if c.Env["DEPLOYHOOK_SHA"] == sha(1) && c.Env["DEPLOYHOOK_PREVIOUS_SHA"] != sha(2) {
						t.Errorf("rollback step %s has previous %q, want the failed SHA", c.Name, c.Env["DEPLOYHOOK_PREVIOUS_SHA"])
					}
				}
				want := sha(2)
				if tc.wantState != StateSuccess {
					want = sha(1)
				}
				if tc.wantState == StateError {
					want = sha(1) // unknown: deployhook keeps its last certain knowledge
				}
				if got := h.ex.Current("production"); got != want {
					t.Errorf("current = %s, want %s", got, want)
				}
			})
		})
	}
}

func exitIf(cond bool, code int) (int, error) {
	if cond {
		return code, nil
	}
	return 0, nil
}

func seedSuccess(t *testing.T, s *memStore, sha string) {
	t.Helper()
	j := Job{ID: "seed-" + sha[33:], Target: "production", State: StateSuccess,
		Trigger: Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha}, Created: time.Now()}
	if _, err := s.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
}

func TestExecutor_Coalescing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
			if c.Name == "verify" && c.Env["DEPLOYHOOK_SHA"] == sha(0) {
				<-release // the first deploy runs while 50 pushes arrive
			}
			return 0, nil
		}}
		rep := &fakeReporter{}
		h := start(t, Options{}, newMemStore(), tr, rep)
		defer h.stop()
		h.push(0, "d-0")
		synctest.Wait()
		for i := 1; i <= 50; i++ {
			h.push(i, "d-"+string(rune('a'+i%26))+time.Duration(i).String())
		}
		close(release)
		h.settle()

		deployed := map[string]bool{}
		for _, c := range tr.commands() {
			deployed[c.Env["DEPLOYHOOK_SHA"]] = true
		}
		if len(deployed) > 2 || !deployed[sha(0)] || !deployed[sha(50)] {
			t.Errorf("deployed %d SHAs (%v), want the running one and the newest", len(deployed), deployed)
		}
		for i := 0; i <= 50; i++ {
			states := rep.statesOf(sha(i))
			if len(states) == 0 {
				t.Fatalf("sha %d: no report", i)
			}
			if final := states[len(states)-1]; !final.Final() {
				t.Errorf("sha %d left %s", i, final)
			}
			if i > 0 && i < 50 {
				if r := rep.last(sha(i)); r.State != StateSuperseded || !strings.HasPrefix(r.Description, "superseded by ") {
					t.Errorf("sha %d: final %s %q, want superseded", i, r.State, r.Description)
				}
			}
		}
	})
}

func TestExecutor_Duplicates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
			if c.Name == "verify" {
				<-release
			}
			return 0, nil
		}}
		rep := &fakeReporter{}
		h := start(t, Options{}, newMemStore(), tr, rep)
		defer h.stop()
		first := h.push(1, "d-1")
		synctest.Wait()
		tests := []struct {
			name     string
			n        int
			delivery string
			wantDup  bool
			wantWhy  string
		}{
			{"same delivery", 9, "d-1", true, "delivery seen before"},
			{"same SHA, other delivery (workflow_run after push)", 1, "d-2", true, "already deploying " + sha(1)[:7]},
			{"new SHA", 2, "d-3", false, ""},
			{"new SHA again", 2, "d-4", true, sha(2)[:7] + " is already queued"},
		}
		for _, tc := range tests {
			en := h.push(tc.n, tc.delivery)
			if en.Duplicate != tc.wantDup || en.Reason != tc.wantWhy {
				t.Errorf("%s: duplicate=%v %q, want %v %q", tc.name, en.Duplicate, en.Reason, tc.wantDup, tc.wantWhy)
			}
			if tc.name == "same delivery" && en.Job.ID != first.Job.ID {
				t.Errorf("%s: job %s, want %s", tc.name, en.Job.ID, first.Job.ID)
			}
		}
		close(release)
		h.settle()
		// A CI re-run of the live SHA is answered as a duplicate, and nothing is
		// recorded.
		before, _ := h.store.Jobs(context.Background(), "", 0)
		en := h.push(2, "d-5")
		want := sha(2)[:7] + " is already deployed"
		if !en.Duplicate || en.Reason != want || en.Ignored != "" || en.Job.Trigger.SHA != sha(2) {
			t.Errorf("re-run of the deployed SHA: %+v, want duplicate %q", en, want)
		}
		if after, _ := h.store.Jobs(context.Background(), "", 0); len(after) != len(before) {
			t.Errorf("an ignored trigger recorded %d jobs", len(after)-len(before))
		}
		forced, err := h.ex.Enqueue(context.Background(), "production", Trigger{Kind: KindWorkflowDispatch,
			Repo: "acme/app", Branch: "main", SHA: sha(2), Delivery: "d-6", Force: true, Reason: "manual"})
		if err != nil || forced.Duplicate {
			t.Errorf("a forced redeploy must queue: %+v %v", forced, err)
		}
		h.settle()
	})
}

func TestExecutor_Recovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		ctx := context.Background()
		mk := func(id string, n int, st State) {
			j := Job{ID: id, Target: "production", State: st, Created: time.Now(),
				Trigger: Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(n)}}
			if _, err := store.CreateJob(ctx, j); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		mk("a", 1, StateSuccess)
		mk("b", 2, StateRunning) // the process died during this deploy
		mk("c", 3, StateQueued)
		mk("d", 4, StateQueued)
		tr := &fakeTransport{}
		rep := &fakeReporter{}
		h := start(t, Options{}, store, tr, rep)
		defer h.stop()
		h.settle()
		if r := rep.last(sha(2)); r.State != StateError || r.Description != "interrupted: the deployhook that ran it stopped; target state unknown" {
			t.Errorf("interrupted job reported %s %q", r.State, r.Description)
		}
		if r := rep.last(sha(3)); r.State != StateSuperseded {
			t.Errorf("older queued job reported %s, want superseded", r.State)
		}
		if r := rep.last(sha(4)); r.State != StateSuccess {
			t.Errorf("newest queued job reported %s, want it deployed", r.State)
		}
	})
}

func TestExecutor_GitHubOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{}
		outageEnds := time.Now().Add(time.Minute)
		rep := &fakeReporter{fail: func(Report) error {
			if time.Now().Before(outageEnds) {
				return errors.New("500 Internal Server Error")
			}
			return nil
		}}
		h := start(t, Options{}, newMemStore(), tr, rep)
		defer h.stop()
		h.push(1, "d-1")
		h.settle()
		if !time.Now().After(outageEnds) {
			t.Fatal("settled before the outage ended")
		}
		// The deploy ended during the outage: its stale running report is
		// skipped; queued (pending) and the final one are sent.
		if got, want := rep.statesOf(sha(1)), []State{StateQueued, StateSuccess}; !slices.Equal(got, want) {
			t.Errorf("states after the outage = %v, want %v", got, want)
		}
		if len(tr.commands()) != 5 {
			t.Errorf("the deploy ran %d steps during the outage, want all 5 (a GitHub outage never blocks a deploy)", len(tr.commands()))
		}
		if rep.attempts < 3 {
			t.Errorf("only %d attempts: the sender did not retry", rep.attempts)
		}
	})
}

func TestExecutor_PermanentReportFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rep := &fakeReporter{fail: func(r Report) error {
			if r.State == StateQueued {
				return errors.Join(ErrPermanent, errors.New("422"))
			}
			return nil
		}}
		h := start(t, Options{}, newMemStore(), &fakeTransport{}, rep)
		defer h.stop()
		h.push(1, "d-1")
		h.settle()
		// The refused report is dropped, not retried for ever, and the ones
		// after it are sent (the running one may be skipped as stale).
		got := rep.statesOf(sha(1))
		if len(got) == 0 || got[len(got)-1] != StateSuccess || slices.Contains(got, StateQueued) {
			t.Errorf("states = %v, want the final success and no queued", got)
		}
		if h.store.owedCount() != 0 {
			t.Errorf("%d reports still owed", h.store.owedCount())
		}
	})
}

func TestExecutor_ShutdownCancelsAfterGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
			if c.Name == "restart" {
				<-ctx.Done() // hangs until cancelled
				return -1, ctx.Err()
			}
			return 0, nil
		}}
		rep := &fakeReporter{}
		h := start(t, Options{Grace: 30 * time.Second}, newMemStore(), tr, rep)
		en := h.push(1, "d-1")
		synctest.Wait()
		began := time.Now()
		h.stop()
		if waited := time.Since(began); waited < 30*time.Second {
			t.Errorf("shutdown waited %v, want the 30s grace period", waited)
		}
		j, _ := h.store.Job(context.Background(), en.Job.ID)
		if j.State != StateError || !strings.Contains(j.Description, "interrupted: deployhook shutting down during restart") {
			t.Errorf("job = %s %q", j.State, j.Description)
		}
		if r := rep.last(sha(1)); r.State != StateError {
			t.Errorf("final report %s, want error sent during shutdown", r.State)
		}
		if _, err := h.ex.Enqueue(context.Background(), "production", Trigger{SHA: sha(2)}); !errors.Is(err, ErrClosed) {
			t.Errorf("Enqueue after shutdown: %v, want ErrClosed", err)
		}
	})
}

func TestExecutor_OpenFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tests := []struct {
			err  error
			want string
		}{
			{ErrLocked, "another deploy holds the target's lock; nothing ran"},
			{errors.New("ssh: handshake failed: host key mismatch for 10.0.0.5"), "could not reach the target; nothing ran (see the job page)"},
		}
		for i, tc := range tests {
			rep := &fakeReporter{}
			h := start(t, Options{}, newMemStore(), &fakeTransport{openErr: tc.err}, rep)
			h.push(i, "d")
			h.settle()
			h.stop()
			if r := rep.last(sha(i)); r.State != StateError || r.Description != tc.want {
				t.Errorf("%v: reported %s %q, want error %q", tc.err, r.State, r.Description, tc.want)
			}
		}
	})
}

func TestExecutor_RollbackSHA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		seedSuccess(t, store, sha(1))
		time.Sleep(time.Millisecond)
		seedSuccess(t, store, sha(2))
		h := start(t, Options{}, store, &fakeTransport{}, &fakeReporter{})
		defer h.stop()
		got, err := h.ex.RollbackSHA(context.Background(), "production")
		if err != nil || got != sha(1) {
			t.Errorf("RollbackSHA = %q, %v; want %s", got, err, sha(1))
		}
	})
}

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		glob, file string
		want       bool
	}{
		{"uv.lock", "uv.lock", true},
		{"uv.lock", "sub/uv.lock", true},
		{"infra/**", "infra/files/dagster.service", true},
		{"infra/", "infra/main.tf", true},
		{"infra/**", "src/infra.py", false},
		{"*.toml", "pyproject.toml", true},
		{"src/*.py", "src/a/b.py", false},
		{"dagster.yaml", "dagster.yaml.bak", false},
	}
	for _, tc := range tests {
		if got := matchGlob(tc.glob, tc.file); got != tc.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tc.glob, tc.file, got, tc.want)
		}
	}
}

// After an outage, a job's pending reports that its final one makes stale are
// not sent: the commits get their final status with fewer requests.
func TestExecutor_StaleReportsSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		outageEnds := time.Now().Add(time.Minute)
		rep := &fakeReporter{fail: func(Report) error {
			if time.Now().Before(outageEnds) {
				return errors.New("503")
			}
			return nil
		}}
		release := make(chan struct{})
		tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
			if c.Name == "verify" && c.Env["DEPLOYHOOK_SHA"] == sha(0) {
				<-release
			}
			return 0, nil
		}}
		h := start(t, Options{}, newMemStore(), tr, rep)
		defer h.stop()
		for i := 0; i <= 10; i++ {
			h.push(i, fmt.Sprint("d-", i))
			synctest.Wait()
		}
		close(release)
		h.settle()
		for i := 1; i < 10; i++ {
			if got := rep.statesOf(sha(i)); !slices.Equal(got, []State{StateSuperseded}) {
				t.Errorf("sha %d: sent %v, want only its final superseded report", i, got)
			}
		}
		if got := rep.statesOf(sha(10)); got[len(got)-1] != StateSuccess {
			t.Errorf("newest: %v", got)
		}
	})
}

// endsSubsequence reports whether got is want with some elements left out, and
// ends with want's last.
func endsSubsequence(got, want []State) bool {
	if len(got) == 0 || got[len(got)-1] != want[len(want)-1] {
		return false
	}
	i := 0
	for _, g := range got {
		for i < len(want) && want[i] != g {
			i++
		}
		if i == len(want) {
			return false
		}
		i++
	}
	return true
}
