package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The watch's tests and the safety invariants it could break:
//   - 3 (one deploy's processes on a VM): its checks run without the deploy
//     lock, but only read; its rollback takes the lock and checks under it
//     that the target still runs the job's commit (TestWatch_TripRollsBack,
//     TestWatch_MovedBeforeRollback).
//   - 4 (every pending commit ends final, one owner): the job is final at
//     once and changes state once more, with its report owed
//     (TestWatch_HealthyStaysSuccess, TestWatch_TripRollsBack).
//   - 5 (nothing public carries output): only a degraded check's last line
//     reaches the description, cleaned and bounded (TestPublicReason).
//   - 2 (production moves forward only): a rollback by the watch restores
//     the commit the target ran before the job, as a failed deploy's does.
//   - 4 again: the watch step recorded before the job's end is written
//     (announceWatch) is one more step record, kept with the outcome when
//     the journal refuses it, and the watcher ends that same record
//     (TestWatch_StepRecordedBeforeEnd).

// watchVM is a fakeTransport that also knows the commit the target runs
// (head: a checkout step that succeeds moves it), answers the current probe
// from it, and runs the watch's baseline and check as the test says.
type watchVM struct {
	*fakeTransport
	mu        sync.Mutex
	head      string
	locks     []string // the lock of every Open, in order
	baselines int
	checks    int
	checkEnv  []map[string]string
	// check answers the n-th check (from 1); nil: healthy.
	check func(ctx context.Context, n int, out io.Writer) (int, error)
}

func (v *watchVM) Open(ctx context.Context, target, lock string, wait time.Duration) (Session, error) {
	v.mu.Lock()
	v.locks = append(v.locks, lock)
	v.mu.Unlock()
	s, err := v.fakeTransport.Open(ctx, target, lock, wait)
	if err != nil {
		return nil, err
	}
	return &watchSession{Session: s, v: v}, nil
}

func (v *watchVM) setHead(sha string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.head = sha
}

func (v *watchVM) state() (head string, checks, baselines int, locks []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.head, v.checks, v.baselines, slices.Clone(v.locks)
}

type watchSession struct {
	Session
	v *watchVM
}

func (s *watchSession) Run(ctx context.Context, c Command, out io.Writer) (int, error) {
	v := s.v
	switch c.Name {
	case "current":
		v.mu.Lock()
		defer v.mu.Unlock()
		fmt.Fprintln(out, v.head)
		return 0, nil
	case "watch baseline":
		v.mu.Lock()
		defer v.mu.Unlock()
		v.baselines++
		fmt.Fprintln(out, "restarts: 0 0")
		fmt.Fprintln(out, "since=1000 n0=0")
		return 0, nil
	case "watch check":
		v.mu.Lock()
		v.checks++
		n, check := v.checks, v.check
		v.checkEnv = append(v.checkEnv, c.Env)
		v.mu.Unlock()
		if check == nil {
			fmt.Fprintln(out, "units active; 0 of 3 runs failed since deploy, 0 of 9 before")
			return 0, nil
		}
		return check(ctx, n, out)
	}
	code, err := s.Session.Run(ctx, c, out)
	if c.Name == "checkout" && code == 0 && err == nil {
		v.setHead(c.Env["DEPLOYHOOK_SHA"])
	}
	return code, err
}

// watchTarget is testTarget with a current probe, a deploy lock and a watch
// of 15 minutes, a check every 30 s, two degraded in a row rolling back.
func watchTarget() Target {
	t := testTarget()
	t.Lock = "deploy.lock"
	t.Current = &Step{Name: "current", Run: "git rev-parse HEAD", Timeout: time.Minute}
	t.Watch = &Watch{
		For: 15 * time.Minute, Every: 30 * time.Second, Trips: 2,
		Check:    Step{Name: "watch check", Run: "check", Timeout: time.Minute},
		Baseline: &Step{Name: "watch baseline", Run: "baseline", Timeout: time.Minute},
	}
	return t
}

// watchStep returns the job's watch step record.
func watchStep(t *testing.T, h *harness, id string) StepRun {
	t.Helper()
	j, err := h.store.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range j.Steps {
		if s.Name == "watch" {
			return s
		}
	}
	t.Fatalf("job %s has no watch step: %+v", id, j.Steps)
	return StepRun{}
}

// lines returns the lines of a step's output.
func outLines(s StepRun) []string { return strings.Split(strings.TrimSuffix(s.Output, "\n"), "\n") }

func TestWatch_HealthyStaysSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := &watchVM{}
		h, rep := startWatchOn(t, Options{}, v)
		defer h.stop()
		en := h.push(2, "d-2")
		h.settle()
		time.Sleep(31 * time.Second) // past the first check
		synctest.Wait()

		// Final at once: the success is recorded and reported while the
		// watch goes on.
		if _, checks, _, _ := v.state(); checks != 1 {
			t.Fatalf("%d checks after 31 s, want 1", checks)
		}
		j, err := h.ex.Wait(context.Background(), en.Job.ID)
		if err != nil || j.State != StateSuccess {
			t.Fatalf("Wait = %s, %v; want success while the watch runs", j.State, err)
		}
		if got := rep.last(sha(2)); got.State != StateSuccess || got.Description != "deployed "+sha(2)[:7] {
			t.Errorf("report during the watch = %s %q, want success", got.State, got.Description)
		}
		if got := h.ex.Current("production"); got != sha(2) {
			t.Errorf("current during the watch = %s, want %s", got, sha(2))
		}
		if s := watchStep(t, h, en.Job.ID); s.ExitCode != -1 || len(outLines(s)) != 2 ||
			outLines(s)[1] != "+30s healthy: units active; 0 of 3 runs failed since deploy, 0 of 9 before" {
			t.Errorf("watch step while watching: exit %d, output %q", s.ExitCode, s.Output)
		}

		time.Sleep(15 * time.Minute)
		h.settle()
		head, checks, baselines, locks := v.state()
		if checks != 30 || baselines != 1 {
			t.Errorf("%d checks and %d baselines in 15 min, want 30 and 1", checks, baselines)
		}
		for i, env := range v.checkEnv {
			if env["DEPLOYHOOK_WATCH_BASELINE"] != "since=1000 n0=0" || env["DEPLOYHOOK_SHA"] != sha(2) ||
				env["DEPLOYHOOK_PREVIOUS_SHA"] != sha(1) {
				t.Fatalf("check %d env = %v", i+1, env)
			}
		}
		// The deploy took the lock; the checks' one session did not.
		if want := []string{"deploy.lock", ""}; !slices.Equal(locks, want) {
			t.Errorf("sessions opened with locks %q, want %q", locks, want)
		}
		s := watchStep(t, h, en.Job.ID)
		ls := outLines(s)
		if s.ExitCode != 0 || len(ls) != 32 || ls[0] != "watching for 15m0s: a check every 30s; 2 degraded in a row roll back to "+sha(1)[:7] ||
			ls[31] != "watch passed: healthy for 15m0s" {
			t.Errorf("watch step: exit %d, %d lines: %q", s.ExitCode, len(ls), s.Output)
		}
		if got := rep.statesOf(sha(2)); slices.Contains(got, StateFailure) || got[len(got)-1] != StateSuccess {
			t.Errorf("reported %v, want success only", got)
		}
		if head != sha(2) || h.ex.Current("production") != sha(2) {
			t.Errorf("target at %s, current %s; want %s", head, h.ex.Current("production"), sha(2))
		}
	})
}

// startWatchOn starts an executor on a target that runs sha(1) (deployed by
// the seeded job) and watches its deploys, with v as the transport.
func startWatchOn(t *testing.T, opts Options, v *watchVM) (*harness, *fakeReporter) {
	t.Helper()
	v.setHead(sha(1))
	store := newMemStore()
	return startWatchStore(t, opts, v, store, store)
}

// startWatchStore starts an executor on st, a Store keeping its data in
// store, with v as the transport, on the watched target; the seeded job
// deployed sha(1).
func startWatchStore(t *testing.T, opts Options, v *watchVM, st Store, store *memStore) (*harness, *fakeReporter) {
	t.Helper()
	if v.fakeTransport == nil {
		v.fakeTransport = &fakeTransport{changed: "app.py\n"}
	}
	seedSuccess(t, store, sha(1))
	if len(opts.Targets) == 0 {
		opts.Targets = []Target{watchTarget()}
	}
	if opts.PublicURL == "" {
		opts.PublicURL = "https://deploy.example.com/"
	}
	opts.RetryMin, opts.RetryMax = time.Second, 10*time.Second
	rep := &fakeReporter{}
	ex, err := New(testLogger(t), opts, st, v, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, store: store, tr: v.fakeTransport, rep: rep, ex: ex, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- ex.Run(ctx) }()
	synctest.Wait()
	return h, rep
}

// degradedFrom answers checks from the n-th on as degraded with reason.
func degradedFrom(from int, reason string) func(context.Context, int, io.Writer) (int, error) {
	return func(_ context.Context, n int, out io.Writer) (int, error) {
		if n < from {
			fmt.Fprintln(out, "all good")
			return 0, nil
		}
		fmt.Fprintln(out, "curl: some detail that stays in the log")
		fmt.Fprintln(out, reason)
		return 1, nil
	}
}

func TestWatch_TripRollsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const reason = "4 of 5 runs failed since deploy, 0 of 9 before"
		v := &watchVM{check: degradedFrom(11, reason)} // degraded at +5m30s and +6m
		h, rep := startWatchOn(t, Options{}, v)
		defer h.stop()
		en := h.push(2, "d-2")
		h.settle()
		time.Sleep(6*time.Minute + time.Second)
		h.settle()

		want := "rolled back after 6 min: " + reason
		j, err := h.store.Job(context.Background(), en.Job.ID)
		if err != nil || j.State != StateFailure || j.Description != want {
			t.Fatalf("job = %s %q, %v; want failure %q", j.State, j.Description, err, want)
		}
		// Owed and sent: success at once, then failure, on the same Deployment.
		var finals []Report
		for _, r := range rep.reports() {
			if r.SHA == sha(2) && r.State.Final() {
				finals = append(finals, r)
			}
		}
		if len(finals) != 2 || finals[0].State != StateSuccess || finals[1].State != StateFailure ||
			finals[1].Description != want || finals[1].Deployment != finals[0].Deployment || finals[1].Deployment == 0 {
			t.Errorf("final reports = %+v, want success then failure %q on one Deployment", finals, want)
		}
		// The rollback ran the job's rollback steps under the lock, to sha(1).
		head, checks, _, locks := v.state()
		if head != sha(1) || checks != 12 {
			t.Errorf("target at %s after %d checks, want %s after 12", head, checks, sha(1))
		}
		if want := []string{"deploy.lock", "", "deploy.lock"}; !slices.Equal(locks, want) {
			t.Errorf("sessions opened with locks %q, want %q", locks, want)
		}
		var rolled []string
		for _, c := range h.tr.commands() {
			if c.Env["DEPLOYHOOK_SHA"] == sha(1) && c.Env["DEPLOYHOOK_ROLLBACK"] == "true" {
				rolled = append(rolled, c.Name)
			}
		}
		if want := []string{"preflight", "checkout", "restart", "verify"}; !slices.Equal(rolled, want) {
			t.Errorf("rollback steps %v, want %v", rolled, want)
		}
		var names []string
		for _, s := range j.Steps {
			names = append(names, s.Name)
		}
		if want := []string{"preflight", "checkout", "sync", "restart", "verify", "watch",
			"rollback: preflight", "rollback: checkout", "rollback: sync", "rollback: restart", "rollback: verify"}; !slices.Equal(names, want) {
			t.Errorf("journal steps %v, want %v", names, want)
		}
		s := watchStep(t, h, en.Job.ID)
		ls := outLines(s)
		if s.ExitCode != 1 || ls[len(ls)-1] != want || ls[len(ls)-2] != "rolling back to "+sha(1)[:7]+" under the deploy lock" ||
			ls[len(ls)-3] != "+6m0s degraded (2 of 2): "+reason || strings.Contains(s.Output, "curl") {
			t.Errorf("watch step: exit %d, output %q", s.ExitCode, s.Output)
		}
		// What the target runs goes back: the lane, LastSuccess and Deployed.
		if got := h.ex.Current("production"); got != sha(1) {
			t.Errorf("current = %s, want %s", got, sha(1))
		}
		if last, err := h.store.LastSuccess(context.Background(), "production"); err != nil || last.Trigger.SHA != sha(1) {
			t.Errorf("LastSuccess = %s, %v; want the job of %s", last.ID, err, sha(1)[:7])
		}
		if _, err := h.store.Deployed(context.Background(), "production", sha(2)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Deployed(sha2) = %v, want ErrNotFound: the rolled-back job is no deploy", err)
		}
		// A redelivered push of the live commit is the plain duplicate again.
		if en := h.push(1, "d-again"); !en.Duplicate || en.Job.ID != "seed-"+sha(1)[33:] {
			t.Errorf("push of the live commit after the rollback = %+v, want a duplicate of its job", en)
		}
	})
}

func TestWatch_RollbackFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := &watchVM{check: degradedFrom(1, "dagster-code restarted 3 times since deploy")}
		v.fakeTransport = &fakeTransport{changed: "app.py\n", behave: func(_ context.Context, c Command) (int, error) {
			return exitIf(c.Name == "restart" && c.Env["DEPLOYHOOK_ROLLBACK"] == "true", 1)
		}}
		h, rep := startWatchOn(t, Options{}, v)
		defer h.stop()
		h.push(2, "d-2")
		h.settle()
		time.Sleep(time.Minute + time.Second)
		h.settle()
		want := "degraded after 60 s: dagster-code restarted 3 times since deploy; rollback to " + sha(1)[:7] +
			" failed at rollback: restart: target state unknown"
		if got := rep.last(sha(2)); got.State != StateError || got.Description != want {
			t.Errorf("last report = %s %q, want error %q", got.State, got.Description, want)
		}
	})
}

func TestWatch_NewerDeployEndsWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The third check hangs until it is cancelled: the newer job cuts it.
		v := &watchVM{check: func(ctx context.Context, n int, out io.Writer) (int, error) {
			if n == 3 {
				<-ctx.Done()
				return -1, ctx.Err()
			}
			fmt.Fprintln(out, "fine")
			return 0, nil
		}}
		h, rep := startWatchOn(t, Options{}, v)
		defer h.stop()
		first := h.push(2, "d-2")
		h.settle()
		time.Sleep(91 * time.Second) // the third check hangs
		synctest.Wait()
		second := h.push(3, "d-3")
		h.settle()

		s := watchStep(t, h, first.Job.ID)
		ls := outLines(s)
		if s.ExitCode != 0 || ls[len(ls)-1] != "watch ended: newer deploy "+second.Job.ID || len(ls) != 4 {
			t.Errorf("first watch: exit %d, output %q", s.ExitCode, s.Output)
		}
		if j, _ := h.store.Job(context.Background(), first.Job.ID); j.State != StateSuccess {
			t.Errorf("first job %s, want success", j.State)
		}
		if got := rep.last(sha(3)); got.State != StateSuccess {
			t.Errorf("second deploy reported %s %q", got.State, got.Description)
		}
		// The second job watches in turn, from its own previous commit.
		if s := watchStep(t, h, second.Job.ID); !strings.HasSuffix(outLines(s)[0], "roll back to "+sha(2)[:7]) || s.ExitCode != -1 {
			t.Errorf("second watch: exit %d, output %q", s.ExitCode, s.Output)
		}
		if head, _, _, _ := v.state(); head != sha(3) {
			t.Errorf("target at %s, want %s", head, sha(3))
		}
	})
}

func TestWatch_MovedOutsideEndsWatch(t *testing.T) {
	tests := []struct {
		name string
		move func(h *harness, v *watchVM) // between the first and second check
		want string                       // the watch step's last line
	}{
		{
			name: "a checkout by hand",
			move: func(h *harness, v *watchVM) { v.setHead(sha(7)) },
			want: "watch ended: the target runs " + sha(7)[:7] + " now, deployed outside this job",
		},
		{
			name: "a command-line deploy in the journal",
			move: func(h *harness, v *watchVM) {
				j := Job{ID: "cli-job", Target: "production", State: StateRunning, Created: time.Now(),
					Trigger: Trigger{Kind: KindManual, Repo: "acme/app", Branch: "main", SHA: sha(7)}}
				if _, err := h.store.CreateJob(context.Background(), j); err != nil {
					h.t.Fatal(err)
				}
			},
			want: "watch ended: newer deploy cli-job",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Every check is degraded: only the move keeps the rollback away.
				v := &watchVM{check: degradedFrom(1, "dagster is failed")}
				h, rep := startWatchOn(t, Options{}, v)
				defer h.stop()
				en := h.push(2, "d-2")
				h.settle()
				time.Sleep(31 * time.Second)
				synctest.Wait()
				tt.move(h, v)
				time.Sleep(5 * time.Minute)
				h.settle()
				s := watchStep(t, h, en.Job.ID)
				if ls := outLines(s); ls[len(ls)-1] != tt.want || s.ExitCode != 0 {
					t.Errorf("watch step: exit %d, output %q; want last line %q", s.ExitCode, s.Output, tt.want)
				}
				if _, checks, _, locks := v.state(); checks != 1 || len(locks) != 2 {
					t.Errorf("%d checks, sessions %q: want 1 check and no rollback session", checks, locks)
				}
				if got := rep.last(sha(2)); got.State != StateSuccess {
					t.Errorf("last report %s %q, want success", got.State, got.Description)
				}
				for _, c := range h.tr.commands() {
					if c.Env["DEPLOYHOOK_ROLLBACK"] != "" {
						t.Errorf("rollback step %s ran", c.Name)
					}
				}
			})
		})
	}
}

// A manual checkout between the tripping check and the rollback is seen
// under the lock: nothing is rolled back.
func TestWatch_MovedBeforeRollback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := &watchVM{}
		v.check = func(_ context.Context, n int, out io.Writer) (int, error) {
			if n == 2 {
				v.setHead(sha(7)) // a person checks out another commit
			}
			fmt.Fprintln(out, "dagster is failed")
			return 1, nil
		}
		h, rep := startWatchOn(t, Options{}, v)
		defer h.stop()
		en := h.push(2, "d-2")
		h.settle()
		time.Sleep(61 * time.Second)
		h.settle()
		s := watchStep(t, h, en.Job.ID)
		want := "watch ended: the target runs " + sha(7)[:7] + " now, deployed outside this job; nothing rolled back"
		if ls := outLines(s); ls[len(ls)-1] != want {
			t.Errorf("watch step output %q, want last line %q", s.Output, want)
		}
		if _, _, _, locks := v.state(); !slices.Equal(locks, []string{"deploy.lock", "", "deploy.lock"}) {
			t.Errorf("sessions %q: the rollback must look under the lock", locks)
		}
		if got := rep.last(sha(2)); got.State != StateSuccess {
			t.Errorf("last report %s %q, want success", got.State, got.Description)
		}
		for _, c := range h.tr.commands() {
			if c.Env["DEPLOYHOOK_ROLLBACK"] != "" {
				t.Errorf("rollback step %s ran", c.Name)
			}
		}
	})
}

func TestWatch_UnknownsDoNotTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// degraded, unknown, degraded, then unknowns: never two degraded in
		// a row, and the fifth unknown in a row ends the watch.
		v := &watchVM{check: func(_ context.Context, n int, out io.Writer) (int, error) {
			switch n {
			case 1, 3:
				fmt.Fprintln(out, "dagster is failed")
				return 1, nil
			case 2:
				return 3, nil
			case 4:
				return -1, errors.New("ssh: connection lost")
			case 5:
				return -1, ErrTimeout
			}
			return 2, nil
		}}
		h, rep := startWatchOn(t, Options{}, v)
		defer h.stop()
		en := h.push(2, "d-2")
		h.settle()
		time.Sleep(10 * time.Minute)
		h.settle()
		s := watchStep(t, h, en.Job.ID)
		want := []string{
			"+30s degraded (1 of 2): dagster is failed",
			"+1m0s unknown (1 of 5): check exited 3",
			"+1m30s degraded (1 of 2): dagster is failed",
			"+2m0s unknown (1 of 5): check did not finish",
			"+2m30s unknown (2 of 5): check timed out",
			"+3m0s unknown (3 of 5): check exited 2",
			"+3m30s unknown (4 of 5): check exited 2",
			"+4m0s unknown (5 of 5): check exited 2",
			"watch ended: 5 checks in a row could not tell (see the log)",
		}
		if got := outLines(s)[1:]; !slices.Equal(got, want) {
			t.Errorf("watch step output\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// The broken connection was replaced for the next check.
		if _, checks, _, locks := v.state(); checks != 8 || !slices.Equal(locks, []string{"deploy.lock", "", ""}) {
			t.Errorf("%d checks, sessions %q; want 8 and a second check session after the broken one", checks, locks)
		}
		if got := rep.last(sha(2)); got.State != StateSuccess {
			t.Errorf("last report %s %q, want success", got.State, got.Description)
		}
	})
}

// Shutdown stops the watch at once, the job staying success: its step says
// so and stays open (exit -1, no error) for the next deployhook to resume
// or end, as a kill leaves it.
func TestWatch_ShutdownEndsQuietly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := &watchVM{}
		h, rep := startWatchOn(t, Options{}, v)
		en := h.push(2, "d-2")
		h.settle()
		time.Sleep(95 * time.Second)
		h.stop()
		s := watchStep(t, h, en.Job.ID)
		ls := outLines(s)
		if s.ExitCode != -1 || s.Error != "" || len(ls) != 5 || ls[4] != watchShutdownLine {
			t.Errorf("watch step: exit %d, output %q", s.ExitCode, s.Output)
		}
		if j, _ := h.store.Job(context.Background(), en.Job.ID); j.State != StateSuccess {
			t.Errorf("job %s after shutdown, want success", j.State)
		}
		if got := rep.statesOf(sha(2)); got[len(got)-1] != StateSuccess {
			t.Errorf("reports %v", got)
		}
	})
}

// A command-line deploy ends with its job: it never watches.
func TestWatch_NotInCommandLineDeploys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := &watchVM{}
		h, _ := startWatchOn(t, Options{NoRecover: true}, v)
		defer h.stop()
		en := h.push(2, "d-2")
		h.settle()
		time.Sleep(time.Hour)
		synctest.Wait()
		j, _ := h.store.Job(context.Background(), en.Job.ID)
		if _, checks, _, _ := v.state(); checks != 0 || j.State != StateSuccess || slices.ContainsFunc(j.Steps, func(s StepRun) bool { return s.Name == "watch" }) {
			t.Errorf("command-line deploy: %d checks, state %s, steps %+v", checks, j.State, j.Steps)
		}
	})
}

// A first deploy has nothing to roll back to: the step says it is not watched.
func TestWatch_NoPreviousCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := &watchVM{}
		h, _ := startWatchOn(t, Options{}, v)
		defer h.stop()
		v.setHead("")
		en := h.push(2, "d-2")
		h.settle()
		time.Sleep(time.Hour)
		synctest.Wait()
		s := watchStep(t, h, en.Job.ID)
		if _, checks, _, _ := v.state(); checks != 0 || s.Output != "not watched: no previous commit to roll back to\n" || s.ExitCode != 0 {
			t.Errorf("%d checks; watch step exit %d, output %q", checks, s.ExitCode, s.Output)
		}
	})
}

func TestNew_RefusesWatchWithoutRollback(t *testing.T) {
	tg := watchTarget()
	tg.Rollback = false
	if _, err := New(testLogger(t), Options{Targets: []Target{tg}}, newMemStore(), &fakeTransport{}, &fakeReporter{}); err == nil ||
		!strings.Contains(err.Error(), "rollback") {
		t.Errorf("New = %v, want an error naming the rollback", err)
	}
	tg = watchTarget()
	tg.Watch.Every = time.Hour
	if _, err := New(testLogger(t), Options{Targets: []Target{tg}}, newMemStore(), &fakeTransport{}, &fakeReporter{}); err == nil {
		t.Error("New accepted a check interval longer than the watch")
	}
}

func TestJudge(t *testing.T) {
	const trips, unknowns = 2, 3
	tests := []struct {
		name  string
		kinds []checkKind
		want  watchAction
		count watchCount
	}{
		{"healthy", []checkKind{checkHealthy, checkHealthy}, watchGoOn, watchCount{}},
		{"one degraded", []checkKind{checkDegraded}, watchGoOn, watchCount{degraded: 1}},
		{"two degraded trip", []checkKind{checkDegraded, checkDegraded}, watchRollBack, watchCount{degraded: 2}},
		{"healthy between", []checkKind{checkDegraded, checkHealthy, checkDegraded}, watchGoOn, watchCount{degraded: 1}},
		{"unknown between", []checkKind{checkDegraded, checkUnknown, checkDegraded}, watchGoOn, watchCount{degraded: 1}},
		{"unknowns never trip", []checkKind{checkUnknown, checkUnknown}, watchGoOn, watchCount{unknown: 2}},
		{"unknowns end the watch", []checkKind{checkUnknown, checkUnknown, checkUnknown}, watchGiveUp, watchCount{unknown: 3}},
		{"degraded ends an unknown streak", []checkKind{checkUnknown, checkUnknown, checkDegraded, checkUnknown}, watchGoOn, watchCount{unknown: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c watchCount
			var act watchAction
			for _, k := range tt.kinds {
				c, act = judge(c, k, trips, unknowns)
			}
			if act != tt.want || c != tt.count {
				t.Errorf("judge = %v %+v, want %v %+v", act, c, tt.want, tt.count)
			}
		})
	}
}

func TestWatchOutcome(t *testing.T) {
	prev := sha(1)
	fitsTail := "; rollback to " + prev[:7] + " failed at rollback: restart dagster-code: target state unknown"
	long := strings.Repeat("x", 100)
	tests := []struct {
		name      string
		r         tripped
		wantState State
		wantDesc  string
	}{
		{"rolled back", tripped{after: 6*time.Minute + 10*time.Second, reason: "4 of 5 runs failed since deploy, 0 of 9 before", prev: prev},
			StateFailure, "rolled back after 6 min: 4 of 5 runs failed since deploy, 0 of 9 before"},
		{"seconds", tripped{after: 61 * time.Second, reason: "dagster is failed", prev: prev},
			StateFailure, "rolled back after 61 s: dagster is failed"},
		{"rollback failed", tripped{after: 3 * time.Minute, reason: "dagster is failed", prev: prev, rollback: &stepError{step: "rollback: restart", exitCode: 1}},
			StateError, "degraded after 3 min: dagster is failed; rollback to " + prev[:7] + " failed at rollback: restart: target state unknown"},
		{"rollback cut off", tripped{after: 3 * time.Minute, reason: "r", prev: prev, rollback: &stepError{step: "rollback: sync", err: context.Canceled}},
			StateError, "degraded after 3 min: r; rollback to " + prev[:7] + " cut off at rollback: sync: target state unknown"},
		{"lock held", tripped{after: 3 * time.Minute, reason: "r", prev: prev, open: fmt.Errorf("x: %w", ErrLocked)},
			StateError, "degraded after 3 min: r; the deploy lock was held: nothing rolled back"},
		{"unreachable", tripped{after: 3 * time.Minute, reason: "r", prev: prev, open: errors.New("dial: refused 10.0.0.1")},
			StateError, "degraded after 3 min: r; could not reach the target: nothing rolled back"},
		{"commit unread", tripped{after: 3 * time.Minute, reason: "r", prev: prev, unread: true},
			StateError, "degraded after 3 min: r; the target's commit could not be read: nothing rolled back"},
		{"fits 140", tripped{after: 3 * time.Minute, reason: long, prev: prev, rollback: &stepError{step: "rollback: restart dagster-code", exitCode: 1}},
			StateError, "degraded after 3 min: " + strings.Repeat("x", 140-len("degraded after 3 min: ")-len(fitsTail)-1) + "…" + fitsTail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, desc := watchOutcome(tt.r)
			if st != tt.wantState || desc != tt.wantDesc {
				t.Errorf("watchOutcome = %s %q\nwant %s %q", st, desc, tt.wantState, tt.wantDesc)
			}
			if n := len([]rune(desc)); n > maxDescription {
				t.Errorf("description is %d characters, over GitHub's %d", n, maxDescription)
			}
		})
	}
}

func TestPublicReason(t *testing.T) {
	tests := []struct{ out, want string }{
		{"detail from curl\n4 of 5 runs failed since deploy, 0 of 9 before\n", "4 of 5 runs failed since deploy, 0 of 9 before"},
		{"reason\n\n  \n", "reason"},
		{"", "the watch check failed"},
		{"bell\a and \x1b[31mcolour\x1b[0m", "bell and [31mcolour[0m"},
		// No address, path or URL a tool printed reaches GitHub (invariant 5).
		{"curl: (7) Failed to connect to 10.0.0.5 port 3000", "curl: (7) Failed to connect to …"},
		{"GET http://10.0.0.5:3000/graphql answered 500", "GET …"},
		{strings.Repeat("é", 150), "the watch check failed"},
	}
	for _, tt := range tests {
		if got := watchReason(tt.out); got != tt.want {
			t.Errorf("watchReason(%q) = %q, want %q", tt.out, got, tt.want)
		}
	}
}

// endStore is a memStore that keeps, for each job, the steps the journal held
// when the job's final state was written: what a page that reloads at that
// moment reads.
type endStore struct {
	*memStore
	mu    sync.Mutex
	atEnd map[string][]StepRun
}

func (s *endStore) UpdateJob(ctx context.Context, j Job, owe ...Report) error {
	if j.State.Final() {
		old, err := s.memStore.Job(ctx, j.ID)
		if err != nil {
			return err
		}
		s.mu.Lock()
		if _, ok := s.atEnd[j.ID]; !ok {
			s.atEnd[j.ID] = slices.Clone(old.Steps)
		}
		s.mu.Unlock()
	}
	return s.memStore.UpdateJob(ctx, j, owe...)
}

func (s *endStore) stepsAtEnd(id string) ([]StepRun, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.atEnd[id]
	return st, ok
}

// The watch step is in the journal, running and started at the job's end,
// before the end is written and published (the journal write comes first:
// e.end), so that a page reloading right then follows the watch instead of
// showing the final page; the watcher takes that record over rather than
// adding a second one. A first deploy, which is not watched, gets no such
// record before its end.
func TestWatch_StepRecordedBeforeEnd(t *testing.T) {
	tests := []struct {
		name    string
		head    string // the commit the target runs before the deploy
		want    bool   // the watch step is there at the end
		wantOut string // the watch step's last line once the watch is over
	}{
		{"watched", sha(1), true, "watch passed: healthy for 15m0s"},
		{"no previous commit", "", false, "not watched: no previous commit to roll back to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				v := &watchVM{}
				v.setHead(tt.head)
				mem := newMemStore()
				st := &endStore{memStore: mem, atEnd: map[string][]StepRun{}}
				h, _ := startWatchStore(t, Options{}, v, st, mem)
				defer h.stop()

				en := h.push(2, "d-2")
				events, err := h.ex.Follow(t.Context(), en.Job.ID, 0)
				if err != nil {
					t.Fatal(err)
				}
				var end LogEvent
				for ev := range events {
					if ev.Kind == EventEnd {
						end = ev
						break
					}
				}
				if end.State != StateSuccess {
					t.Fatalf("live log ended %+v, want success", end)
				}
				steps, ok := st.stepsAtEnd(en.Job.ID)
				if !ok {
					t.Fatal("the job's end was published before it was written")
				}
				j := h.job(en.Job.ID)
				i := slices.IndexFunc(steps, func(s StepRun) bool { return s.Name == "watch" })
				if !tt.want {
					if i >= 0 {
						t.Errorf("an unwatched job had a watch step at its end: %+v", steps[i])
					}
				} else if i != len(steps)-1 || steps[i].ExitCode != -1 || !steps[i].Started.Equal(j.Finished) ||
					steps[i].Seq != len(steps) {
					t.Errorf("steps when the end was written: %+v; want the last one the watch, exit -1, started at the end %s",
						steps, j.Finished)
				}

				time.Sleep(16 * time.Minute)
				h.settle()
				j = h.job(en.Job.ID)
				var watches []StepRun
				for _, s := range j.Steps {
					if s.Name == "watch" {
						watches = append(watches, s)
					}
				}
				if len(watches) != 1 || watches[0].ExitCode != 0 || outLines(watches[0])[len(outLines(watches[0]))-1] != tt.wantOut {
					t.Fatalf("watch steps after the watch: %+v, want one ending %q", watches, tt.wantOut)
				}
				if tt.want && i >= 0 && (watches[0].Seq != steps[i].Seq || !watches[0].Started.Equal(j.Finished)) {
					t.Errorf("the watcher did not take the announced record over: %+v, announced %+v", watches[0], steps[i])
				}
			})
		})
	}
}
