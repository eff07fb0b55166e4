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

// trigger enqueues sha(n) on production as kind, and fails the test on error.
func (h *harness) trigger(kind Kind, n int, delivery, bodyHash string) Enqueued {
	h.t.Helper()
	en, err := h.ex.Enqueue(context.Background(), "production", Trigger{
		Kind: kind, Repo: "acme/app", Branch: "main", SHA: sha(n), Delivery: delivery, BodyHash: bodyHash,
		Actor: "octocat", Reason: string(kind) + " by octocat", Force: !kind.Automatic(),
	})
	if err != nil {
		h.t.Fatalf("Enqueue(%s %d): %v", kind, n, err)
	}
	return en
}

// jobCount is how many jobs the journal holds.
func (h *harness) jobCount() int {
	js, _ := h.store.Jobs(context.Background(), "", 0)
	return len(js)
}

// Issue 8 item 1, invariant 2: production is never rolled back by a replayed
// body (under a new delivery GUID) nor by a late CI run of an older commit,
// whether ancestry is asked of the target (the default sequence's contains
// probe) or of GitHub (custom steps). Before this change the replay answered
// with a new job that checked the old commit out, and the late CI run of the
// ancestor deployed it.
func TestExecutor_AutomaticTriggersOnlyMoveForward(t *testing.T) {
	for _, via := range []string{"probe", "github"} {
		t.Run(via, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tg := testTarget()
				opts := Options{Targets: []Target{tg}}
				commits := &fakeCommits{}
				if via == "probe" {
					opts.Targets[0].Contains = &Step{Name: "contains", Run: "probe", Timeout: time.Minute}
				} else {
					opts.Commits = commits
				}
				tr := &fakeTransport{}
				rep := &fakeReporter{}
				h := start(t, opts, newMemStore(), tr, rep)
				defer h.stop()

				first := h.trigger(KindPush, 1, "d-1", "body-1")
				h.settle()
				// Set before the trigger: the worker may take the job at once.
				tr.mu.Lock()
				tr.behave = func(ctx context.Context, c Command) (int, error) {
					return exitIf(c.Name == "preflight" && c.Env["DEPLOYHOOK_SHA"] == sha(2), 1)
				}
				tr.mu.Unlock()
				failing := h.trigger(KindPush, 2, "d-2", "body-2")
				h.settle()
				tr.mu.Lock()
				tr.behave = nil
				tr.mu.Unlock()
				h.trigger(KindPush, 4, "d-4", "body-4")
				h.settle()
				if got := h.ex.Current("production"); got != sha(4) {
					t.Fatalf("current = %s, want sha 4", got)
				}
				if r := rep.last(sha(2)); r.State != StateFailure {
					t.Fatalf("sha 2 = %s %q, want a failure", r.State, r.Description)
				}

				// Replays and late CI runs that the journal answers at intake.
				jobs := h.jobCount()
				intake := []struct {
					name           string
					kind           Kind
					n              int
					delivery, body string
					want           string
				}{
					{"old signed push replayed under a new GUID", KindPush, 1, "d-replay-1", "body-1",
						sha(1)[:7] + " was deployed before (job " + first.Job.ID + "); automatic triggers never redeploy an older commit"},
					{"late CI run of a commit deployed before", KindWorkflowRun, 1, "d-ci-1", "ci-1",
						sha(1)[:7] + " was deployed before (job " + first.Job.ID + "); automatic triggers never redeploy an older commit"},
					{"failed push replayed under a new GUID", KindPush, 2, "d-replay-2", "body-2",
						"this delivery's body was seen before as job " + failing.Job.ID + " (a replay under a new delivery id?)"},
				}
				for _, tc := range intake {
					en := h.trigger(tc.kind, tc.n, tc.delivery, tc.body)
					if en.Ignored != tc.want || en.Duplicate {
						t.Errorf("%s: ignored %q duplicate %v, want ignored %q", tc.name, en.Ignored, en.Duplicate, tc.want)
					}
				}
				// The same GUID again is GitHub's redelivery: a duplicate, as before.
				if en := h.trigger(KindPush, 2, "d-2", "body-2"); !en.Duplicate || en.Reason != "delivery seen before" || en.Job.ID != failing.Job.ID {
					t.Errorf("redelivery: %+v, want duplicate of %s", en, failing.Job.ID)
				}
				if n := h.jobCount(); n != jobs {
					t.Errorf("ignored triggers recorded %d jobs", n-jobs)
				}

				// A late CI run of an ancestor never deployed: decided before
				// any step, ends skipped, and changes nothing.
				late := h.trigger(KindWorkflowRun, 3, "d-ci-3", "ci-3")
				h.settle()
				j, _ := h.store.Job(context.Background(), late.Job.ID)
				if want := "already live: contained in deployed " + sha(4)[:7]; j.State != StateSkipped || j.Description != want {
					t.Errorf("late CI run of an ancestor: %s %q, want skipped %q", j.State, j.Description, want)
				}
				if got := tr.deploySteps(sha(3)); len(got) != 0 {
					t.Errorf("steps ran for the ancestor: %v", got)
				}
				if r := rep.last(sha(3)); r.State != StateSkipped {
					t.Errorf("the ancestor's commit was told %s, want the final skipped", r.State)
				}
				if got := h.ex.Current("production"); got != sha(4) {
					t.Errorf("current = %s after a skipped job, want sha 4", got)
				}
				if last, _ := h.store.LastSuccess(context.Background(), "production"); last.Trigger.SHA != sha(4) {
					t.Errorf("last success = %s, want sha 4", last.Trigger.SHA)
				}

				// A newer commit deploys; a commit off the branch never does.
				h.trigger(KindWorkflowRun, 5, "d-ci-5", "ci-5")
				h.settle()
				if r := rep.last(sha(5)); r.State != StateSuccess {
					t.Errorf("newer commit: %s %q, want success", r.State, r.Description)
				}
				if via == "github" {
					off := h.trigger(KindWorkflowRun, 60, "d-ci-60", "ci-60")
					h.settle()
					j, _ := h.store.Job(context.Background(), off.Job.ID)
					if want := sha(60)[:7] + " is not on branch main; nothing ran"; j.State != StateFailure || j.Description != want {
						t.Errorf("commit off the branch: %s %q, want failure %q", j.State, j.Description, want)
					}
					if got := tr.deploySteps(sha(60)); len(got) != 0 {
						t.Errorf("steps ran for a commit off the branch: %v", got)
					}
					if !slices.Contains(commits.asked(), "acme/app "+sha(5)+" "+sha(3)[:7]) && !slices.Contains(commits.asked(), "acme/app "+sha(4)+" "+sha(3)[:7]) {
						t.Errorf("GitHub was asked %v, want the ancestry of sha 3 in the deployed sha 4", commits.asked())
					}
				}
			})
		})
	}
}

// When the ancestry cannot be told, nothing runs (fail closed).
func TestExecutor_AncestryUnknownRunsNothing(t *testing.T) {
	for _, via := range []string{"probe", "github"} {
		t.Run(via, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemStore()
				seedSuccess(t, store, sha(4))
				tg := testTarget()
				opts := Options{Targets: []Target{tg}}
				tr := &fakeTransport{contains: func(sha, prev string) int { return 128 }}
				if via == "probe" {
					opts.Targets[0].Contains = &Step{Name: "contains", Run: "probe", Timeout: time.Minute}
				} else {
					opts.Commits = &fakeCommits{err: errors.New("compare: 502 Bad Gateway")}
				}
				rep := &fakeReporter{}
				h := start(t, opts, store, tr, rep)
				defer h.stop()
				en := h.trigger(KindPush, 5, "d-5", "b-5")
				h.settle()
				j, _ := h.store.Job(context.Background(), en.Job.ID)
				want := "could not tell whether " + sha(5)[:7] + " is older than the deployed " + sha(4)[:7] + "; nothing ran"
				if j.State != StateError || j.Description != want {
					t.Errorf("job = %s %q, want error %q", j.State, j.Description, want)
				}
				if got := tr.deploySteps(sha(5)); len(got) != 0 {
					t.Errorf("steps ran: %v", got)
				}
				if r := rep.last(sha(5)); r.State != StateError {
					t.Errorf("reported %s, want the final error", r.State)
				}
			})
		})
	}
}

// Issue 8 item 2: a person's rollback or deploy names a commit on the branch or
// one deployed before, unless they allowed any commit. For custom steps the
// executor asks GitHub; the default sequence's fetch step learns the answer
// from DEPLOYHOOK_DEPLOYED_BEFORE and DEPLOYHOOK_ANY_COMMIT (TestSequence_Fetch).
func TestExecutor_PersonOnlyToKnownCommits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		seedSuccess(t, store, sha(61)) // deployed with --force once: off the branch
		time.Sleep(time.Millisecond)
		seedSuccess(t, store, sha(4))
		commits := &fakeCommits{}
		tr := &fakeTransport{}
		rep := &fakeReporter{}
		h := start(t, Options{Commits: commits}, store, tr, rep)
		defer h.stop()
		tests := []struct {
			name      string
			kind      Kind
			n         int
			anyCommit bool
			want      State
			wantDesc  string
			wantEnv   map[string]string // in every step's environment
		}{
			{name: "rollback to a commit on the branch", kind: KindRollback, n: 2, want: StateSuccess,
				wantEnv: map[string]string{"DEPLOYHOOK_KIND": "rollback", "DEPLOYHOOK_DEPLOYED_BEFORE": "", "DEPLOYHOOK_ANY_COMMIT": ""}},
			{name: "rollback to a commit off the branch", kind: KindRollback, n: 60, want: StateFailure,
				wantDesc: "rollback by octocat: " + sha(60)[:7] + " is neither on branch main nor deployed to production before; nothing ran"},
			{name: "dispatch of a commit off the branch", kind: KindWorkflowDispatch, n: 62, want: StateFailure,
				wantDesc: "deploy by octocat: " + sha(62)[:7] + " is neither on branch main nor deployed to production before; nothing ran"},
			{name: "rollback to a commit deployed before", kind: KindRollback, n: 61, want: StateSuccess,
				wantEnv: map[string]string{"DEPLOYHOOK_DEPLOYED_BEFORE": "true", "DEPLOYHOOK_ANY_COMMIT": ""}},
			{name: "manual deploy of any commit", kind: KindManual, n: 63, anyCommit: true, want: StateSuccess,
				wantEnv: map[string]string{"DEPLOYHOOK_DEPLOYED_BEFORE": "", "DEPLOYHOOK_ANY_COMMIT": "true"}},
		}
		for i, tc := range tests {
			en, err := h.ex.Enqueue(context.Background(), "production", Trigger{
				Kind: tc.kind, Repo: "acme/app", Branch: "main", SHA: sha(tc.n), Delivery: fmt.Sprint("d-", i),
				Actor: "octocat", Reason: "by a person", Force: true, AnyCommit: tc.anyCommit,
			})
			if err != nil {
				t.Fatal(err)
			}
			h.settle()
			j, _ := h.store.Job(context.Background(), en.Job.ID)
			if j.State != tc.want || (tc.wantDesc != "" && j.Description != tc.wantDesc) {
				t.Errorf("%s: %s %q, want %s %q", tc.name, j.State, j.Description, tc.want, tc.wantDesc)
			}
			steps := 0
			for _, c := range tr.commands() {
				if c.Env["DEPLOYHOOK_SHA"] != sha(tc.n) || c.Name == "changed files" {
					continue
				}
				steps++
				for k, v := range tc.wantEnv {
					if c.Env[k] != v {
						t.Errorf("%s: step %s has %s=%q, want %q", tc.name, c.Name, k, c.Env[k], v)
					}
				}
			}
			if ran := steps > 0; ran != (tc.want == StateSuccess) {
				t.Errorf("%s: %d steps ran", tc.name, steps)
			}
		}
	})
}

// A target's env cannot claim what only the executor may say.
func TestDeploy_CommandEnvIsTheExecutors(t *testing.T) {
	tg := testTarget()
	tg.Env = map[string]string{"DEPLOYHOOK_ANY_COMMIT": "true", "DEPLOYHOOK_DEPLOYED_BEFORE": "true", "DEPLOYHOOK_ROLLBACK": "true", "APP": "1"}
	d := &deploy{t: tg, j: &Job{ID: "j", Trigger: Trigger{Kind: KindRollback, SHA: sha(2)}}}
	env := d.command(Step{Name: "x", Env: map[string]string{"DEPLOYHOOK_ANY_COMMIT": "true"}}, sha(2), sha(1)).Env
	for _, k := range []string{"DEPLOYHOOK_ANY_COMMIT", "DEPLOYHOOK_DEPLOYED_BEFORE", "DEPLOYHOOK_ROLLBACK"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s = %q from configuration, want unset", k, v)
		}
	}
	if env["APP"] != "1" || env["DEPLOYHOOK_PREVIOUS_SHA"] != sha(1) {
		t.Errorf("env = %v", env)
	}
}

// Issue 8 item 5, invariant 4: a service restart never touches a live CLI
// deploy (before this change it ended the CLI's running job), and a CLI killed
// with -9 has its job ended by the next deployhook once its lease expired.
func TestExecutor_OneOwnerPerJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		seedSuccess(t, store, sha(1))
		lease := 30 * time.Second
		release := make(chan struct{})
		cliTr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
			if c.Name == "verify" {
				<-release
			}
			return 0, nil
		}}
		cliRep := &fakeReporter{}
		cli := start(t, Options{NoRecover: true, Lease: lease, Owner: Owner{ID: "cli"}}, store, cliTr, cliRep)
		en, err := cli.ex.Enqueue(context.Background(), "production", Trigger{Kind: KindManual, Repo: "acme/app",
			Branch: "main", SHA: sha(2), Actor: "alice", Reason: "manual deploy by alice", Force: true})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the CLI's deploy is in its verify step

		// The service restarts twice while the CLI deploys.
		svcTr, svcRep := &fakeTransport{}, &fakeReporter{}
		svc := start(t, Options{Lease: lease, Owner: Owner{ID: "svc-1"}}, store, svcTr, svcRep)
		time.Sleep(3 * lease)
		svc.stop()
		svc = start(t, Options{Lease: lease, Owner: Owner{ID: "svc-2"}}, store, svcTr, svcRep)
		time.Sleep(3 * lease)
		synctest.Wait()
		if j, _ := store.Job(context.Background(), en.Job.ID); j.State != StateRunning || j.Owner != "cli" {
			t.Fatalf("the CLI's live job is %s owned by %q, want running owned by cli", j.State, j.Owner)
		}
		close(release)
		synctest.Wait()
		if j, _ := store.Job(context.Background(), en.Job.ID); j.State != StateSuccess {
			t.Errorf("the CLI's job ended %s %q, want success", j.State, j.Description)
		}
		cli.stop()

		// A CLI killed with -9: its lease ends, nothing renews it.
		dead := Owner{ID: "dead-cli", Kind: "cli", Until: time.Now().Add(lease)}
		if err := store.Beat(context.Background(), dead); err != nil {
			t.Fatal(err)
		}
		killed := Job{ID: "killed", Target: "production", State: StateRunning, Owner: dead.ID, Created: time.Now(),
			Started: time.Now(), Trigger: Trigger{Kind: KindManual, Repo: "acme/app", Branch: "main", SHA: sha(3)}}
		if _, err := store.CreateJob(context.Background(), killed); err != nil {
			t.Fatal(err)
		}
		time.Sleep(lease / 2)
		synctest.Wait()
		if j, _ := store.Job(context.Background(), "killed"); j.State != StateRunning {
			t.Fatalf("a job of a live lease was ended: %s %q", j.State, j.Description)
		}
		time.Sleep(lease)
		synctest.Wait()
		j, _ := store.Job(context.Background(), "killed")
		if j.State != StateError || j.Description != "interrupted: the deployhook that ran it stopped; target state unknown" || j.Owner != "svc-2" {
			t.Errorf("the killed CLI's job: %s %q owner %q, want ended by svc-2", j.State, j.Description, j.Owner)
		}
		svc.settle()
		if r := svcRep.last(sha(3)); r.State != StateError {
			t.Errorf("the killed CLI's commit was told %s, want error", r.State)
		}
		svc.stop()
	})
}

// A CLI sweeps too: the queued job of a service that died is ended (the CLI
// runs only its own job), never run; a live service's queued job is left alone.
func TestExecutor_CLISweepsExpiredLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		ctx := context.Background()
		for _, o := range []Owner{{ID: "dead-svc", Until: time.Now().Add(-time.Second)}, {ID: "live-svc", Until: time.Now().Add(time.Hour)}} {
			if err := store.Beat(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		for i, owner := range []string{"dead-svc", "live-svc"} {
			j := Job{ID: owner + "-job", Target: "production", State: StateQueued, Owner: owner, Created: time.Now(),
				Trigger: Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(i + 1)}}
			if _, err := store.CreateJob(ctx, j); err != nil {
				t.Fatal(err)
			}
		}
		tr := &fakeTransport{}
		cli := start(t, Options{NoRecover: true, Owner: Owner{ID: "cli"}}, store, tr, &fakeReporter{})
		cli.settle()
		cli.stop()
		if j, _ := store.Job(ctx, "dead-svc-job"); j.State != StateError || j.Description != "interrupted: the deployhook that queued it stopped" {
			t.Errorf("dead service's queued job: %s %q", j.State, j.Description)
		}
		if j, _ := store.Job(ctx, "live-svc-job"); j.State != StateQueued || j.Owner != "live-svc" {
			t.Errorf("live service's queued job: %s owner %q, want untouched", j.State, j.Owner)
		}
		if n := len(tr.commands()); n != 0 {
			t.Errorf("the CLI ran %d commands of other owners' jobs", n)
		}
	})
}

// Issue 8 item 7: with the journal refusing writes, a running deploy still
// finishes on the target; its outcome is written (with its report) once the
// journal takes writes again, and the lane starts nothing before; Ready says
// why, and Enqueue answers ErrJournal (before this change Ready said ready and
// the outcome was lost).
func TestExecutor_JournalFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemStore()
		fs := &faultStore{memStore: mem}
		release := make(chan struct{})
		tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
			if c.Name == "verify" && c.Env["DEPLOYHOOK_SHA"] == sha(1) {
				<-release
			}
			return 0, nil
		}}
		rep := &fakeReporter{}
		h := startOn(t, Options{}, fs, mem, tr, rep)
		defer h.stop()
		first := h.push(1, "d-1")
		synctest.Wait()
		h.push(2, "d-2") // waits behind the running deploy
		if err := h.ex.Ready(context.Background()); err != nil {
			t.Fatalf("Ready before the fault: %v", err)
		}

		fs.fail("*") // the disk is full
		if _, err := h.ex.Enqueue(context.Background(), "production", Trigger{Kind: KindPush, Repo: "acme/app",
			Branch: "main", SHA: sha(3), Delivery: "d-3"}); !errors.Is(err, ErrJournal) {
			t.Errorf("Enqueue with the journal full: %v, want ErrJournal", err)
		}
		close(release)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if got := tr.deploySteps(sha(1)); !slices.Equal(got, []string{"preflight", "checkout", "sync", "restart", "verify"}) {
			t.Errorf("steps of the running deploy = %v, want it to finish on the target", got)
		}
		if got := tr.deploySteps(sha(2)); len(got) != 0 {
			t.Errorf("the lane started the next job (%v) before the outcome was written", got)
		}
		if j, _ := mem.Job(context.Background(), first.Job.ID); j.State != StateRunning {
			t.Errorf("journal says %s; the fault should have kept the outcome out", j.State)
		}
		err := h.ex.Ready(context.Background())
		if err == nil || !strings.HasPrefix(err.Error(), "journal not writable: ") || !errors.Is(err, errDiskFull) {
			t.Errorf("Ready with the journal full = %v, want journal not writable naming the cause", err)
		}

		fs.fail() // space freed
		h.settle()
		j, _ := mem.Job(context.Background(), first.Job.ID)
		if j.State != StateSuccess || len(j.Steps) != 5 || j.Steps[4].Name != "verify" || j.Steps[4].ExitCode != 0 {
			t.Errorf("journal after the fault: %s with %d steps (%+v)", j.State, len(j.Steps), j.Steps)
		}
		if r := rep.last(sha(1)); r.State != StateSuccess {
			t.Errorf("sha 1 was told %s, want success", r.State)
		}
		if r := rep.last(sha(2)); r.State != StateSuccess {
			t.Errorf("the job behind it: %s %q, want deployed after the journal healed", r.State, r.Description)
		}
		if err := h.ex.Ready(context.Background()); err != nil {
			t.Errorf("Ready after the fault: %v", err)
		}
	})
}

// pruneSpy records Prune calls.
type pruneSpy struct {
	*memStore
	calls []pruneCall
}

type pruneCall struct {
	before time.Time
	keep   int
}

func (p *pruneSpy) Prune(ctx context.Context, before time.Time, keep int) (int, error) {
	p.memStore.mu.Lock()
	p.calls = append(p.calls, pruneCall{before, keep})
	p.memStore.mu.Unlock()
	return p.memStore.Prune(ctx, before, keep)
}

// Issue 8 item 9: the journal is pruned at start and every hour, by Retain
// and RetainJobs.
func TestExecutor_Prunes(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		wantAge  time.Duration
		wantKeep int
	}{
		{"defaults", Options{}, 90 * 24 * time.Hour, 1000},
		{"configured", Options{Retain: 7 * 24 * time.Hour, RetainJobs: 50}, 7 * 24 * time.Hour, 50},
		{"no count limit", Options{RetainJobs: -1}, 90 * 24 * time.Hour, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := newMemStore()
				spy := &pruneSpy{memStore: mem}
				t0 := time.Now()
				h := startOn(t, tc.opts, spy, mem, &fakeTransport{}, &fakeReporter{})
				time.Sleep(2*time.Hour + time.Minute)
				synctest.Wait()
				h.stop()
				mem.mu.Lock()
				calls := slices.Clone(spy.calls)
				mem.mu.Unlock()
				want := []pruneCall{
					{t0.Add(-tc.wantAge), tc.wantKeep},
					{t0.Add(time.Hour - tc.wantAge), tc.wantKeep},
					{t0.Add(2*time.Hour - tc.wantAge), tc.wantKeep},
				}
				if !slices.Equal(calls, want) {
					t.Errorf("Prune calls = %v, want %v", calls, want)
				}
			})
		})
	}
}

// Issue 8 item 6, invariants 3 and 4, in real time for the race detector:
// pushes, workflow_runs of the same SHAs and dispatches arrive concurrently
// while a deploy runs. One deploy runs at a time, at most one waits, and every
// job ends final with its commit told so. Before this change, Enqueue copied
// the running job while the worker wrote it (go test -race reported it).
func TestExecutor_ConcurrentIntake(t *testing.T) {
	store := newMemStore()
	gate := make(chan struct{})
	started := make(chan struct{}, 1)
	tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
		if c.Name == "verify" && c.Env["DEPLOYHOOK_SHA"] == sha(0) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-gate
		}
		time.Sleep(time.Millisecond) // a step takes a while: the worker writes its job meanwhile
		return 0, nil
	}}
	rep := &fakeReporter{}
	ex, err := New(testLogger(t), Options{Targets: []Target{testTarget()}, PublicURL: "https://deploy.example.com",
		RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond}, store, tr, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	enqueue := func(kind Kind, n int, delivery string) {
		_, err := ex.Enqueue(ctx, "production", Trigger{Kind: kind, Repo: "acme/app", Branch: "main", SHA: sha(n),
			Delivery: delivery, BodyHash: "body-" + delivery, Reason: string(kind), Force: !kind.Automatic()})
		if err != nil {
			t.Errorf("Enqueue(%s %d): %v", kind, n, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ex.Ready(ctx) != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the executor did not start")
		}
	}
	enqueue(KindPush, 0, "d-0")
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the first deploy did not start")
	}

	// A storm of triggers: some of the running SHA, most of others, under
	// fresh delivery ids.
	storm := func(round, goroutines, n, shas int) *sync.WaitGroup {
		var wg sync.WaitGroup
		kinds := []Kind{KindPush, KindWorkflowRun, KindWorkflowDispatch}
		for g := range goroutines {
			wg.Go(func() {
				for i := range n {
					enqueue(kinds[(g+i)%3], (g*7+i)%shas, fmt.Sprintf("d-%d-%d-%d", round, g, i))
					_ = ex.Current("production")
					_ = ex.Ready(ctx)
				}
			})
		}
		return &wg
	}
	storm(1, 6, 25, 13).Wait()
	if n := len(mustJobs(t, store, StateRunning)); n != 1 {
		t.Errorf("%d jobs running during the deploy, want 1", n)
	}
	if n := len(mustJobs(t, store, StateQueued)); n != 1 {
		t.Errorf("%d jobs waiting after the storm, want 1", n)
	}

	// A second storm while the worker finishes the deploy and runs the next.
	wg := storm(2, 4, 150, 13)
	close(gate)
	wg.Wait()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if ex.idle() && store.owedCount() == 0 && len(mustJobs(t, store, StateQueued, StateRunning)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the executor did not settle")
		}
	}
	tr.mu.Lock()
	maxLive := tr.maxLive
	tr.mu.Unlock()
	if maxLive != 1 {
		t.Errorf("%d sessions open at once, want 1", maxLive)
	}
	for _, j := range mustJobs(t, store) {
		if !j.State.Final() {
			t.Errorf("job %s left %s", j.ID, j.State)
		}
		if r := rep.last(j.Trigger.SHA); !r.State.Final() {
			t.Errorf("sha %s was last told %s", j.Trigger.SHA[:7], r.State)
		}
	}
}

func mustJobs(t *testing.T, s Store, states ...State) []Job {
	t.Helper()
	js, err := s.Jobs(context.Background(), "production", 0, states...)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// An orphan adopted late never runs after a newer job of its target: a dead
// service's queued dispatch rollback, adopted once its lease expired, after the
// new service already deployed a newer push, is superseded, not run (the chaos
// test found the target moved back to the old request, seed 17).
func TestExecutor_LateOrphanSuperseded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		seedSuccess(t, store, sha(1))
		ctx := context.Background()
		lease := 30 * time.Second
		dead := Owner{ID: "dead-svc", Kind: "serve", Until: time.Now().Add(lease)}
		if err := store.Beat(ctx, dead); err != nil {
			t.Fatal(err)
		}
		old := Job{ID: "old-rollback", Target: "production", State: StateQueued, Owner: dead.ID, Created: time.Now(),
			Trigger: Trigger{Kind: KindRollback, Repo: "acme/app", Branch: "main", SHA: sha(1), Actor: "alice"}}
		if _, err := store.CreateJob(ctx, old); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)

		tr, rep := &fakeTransport{}, &fakeReporter{}
		svc := start(t, Options{Lease: lease, Owner: Owner{ID: "svc"}}, store, tr, rep)
		en, err := svc.ex.Enqueue(ctx, "production", Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(2), Delivery: "d-2"})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if j, _ := store.Job(ctx, en.Job.ID); j.State != StateSuccess {
			t.Fatalf("the newer push ended %s %q, want success", j.State, j.Description)
		}
		time.Sleep(2 * lease) // the dead service's lease expires; a sweep adopts its job
		synctest.Wait()
		j, _ := store.Job(ctx, old.ID)
		if j.State != StateSuperseded || j.Description != "superseded by "+sha(2)[:7] {
			t.Errorf("the late orphan: %s %q, want superseded by %s", j.State, j.Description, sha(2)[:7])
		}
		if got := svc.ex.Current("production"); got != sha(2) {
			t.Errorf("the target runs %s, want %s: the old request ran after the newer one", got, sha(2)[:7])
		}
		svc.stop()
	})
}
