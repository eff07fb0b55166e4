package executor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// waitMark marks the context of a test's Wait call, so waitReads counts only
// the journal reads that Wait makes (the outbox reads jobs too).
type waitMark struct{}

// waitReads is a Store that counts the Job reads made under waitMark.
type waitReads struct {
	Store
	mu sync.Mutex
	n  int
}

func (w *waitReads) Job(ctx context.Context, id string) (Job, error) {
	if ctx.Value(waitMark{}) != nil {
		w.mu.Lock()
		w.n++
		w.mu.Unlock()
	}
	return w.Store.Job(ctx, id)
}

func (w *waitReads) reads() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// waitResult is what a Wait call returned.
type waitResult struct {
	job Job
	err error
}

// goWait calls ex.Wait(ctx, id) in a goroutine and returns where its answer arrives.
func goWait(ctx context.Context, ex *Executor, id string) <-chan waitResult {
	out := make(chan waitResult, 1)
	go func() {
		j, err := ex.Wait(context.WithValue(ctx, waitMark{}, true), id)
		out <- waitResult{j, err}
	}()
	return out
}

// Wait returns the job once its lane records the outcome, and does not read
// the journal in between: it is woken, it does not poll (the CLI polled every
// 200 ms before).
func TestExecutor_Wait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
			if c.Name == "verify" {
				<-release
			}
			return 0, nil
		}}
		mem := newMemStore()
		st := &waitReads{Store: mem}
		h := startOn(t, Options{}, st, mem, tr, &fakeReporter{})
		defer h.stop()
		en := h.push(1, "d-1")
		got := goWait(t.Context(), h.ex, en.Job.ID)
		synctest.Wait()
		reads := st.reads()
		if reads != 1 {
			t.Errorf("Wait read the journal %d times before blocking, want 1", reads)
		}
		time.Sleep(time.Hour) // a poll of any period would read again
		synctest.Wait()
		select {
		case r := <-got:
			t.Fatalf("Wait returned while the deploy runs: %+v, %v", r.job, r.err)
		default:
		}
		if n := st.reads(); n != reads {
			t.Errorf("Wait read the journal %d times while the deploy ran: it polls", n-reads)
		}
		close(release)
		r := <-got
		if r.err != nil {
			t.Fatalf("Wait: %v", r.err)
		}
		if r.job.ID != en.Job.ID || r.job.State != StateSuccess || r.job.Description != "deployed "+sha(1)[:7] {
			t.Errorf("Wait = %s %s %q, want %s success %q", r.job.ID, r.job.State, r.job.Description, en.Job.ID, "deployed "+sha(1)[:7])
		}
		if n := st.reads(); n != reads+1 {
			t.Errorf("Wait read the journal %d times after it was woken, want 1", n-reads)
		}
	})
}

// Wait returns a job that is final already without waiting, and a job that a
// later trigger supersedes as soon as it is superseded.
func TestExecutor_Wait_final(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
			if c.Name == "verify" && c.Env["DEPLOYHOOK_SHA"] == sha(1) {
				<-release
			}
			return 0, nil
		}}
		mem := newMemStore()
		seedSuccess(t, mem, sha(0))
		h := start(t, Options{}, mem, tr, &fakeReporter{})
		defer h.stop()
		defer close(release)

		old, err := mem.LastSuccess(t.Context(), "production")
		if err != nil {
			t.Fatal(err)
		}
		if j, err := h.ex.Wait(t.Context(), old.ID); err != nil || j.ID != old.ID || j.State != StateSuccess {
			t.Errorf("Wait(final job) = %s %s, %v; want %s success", j.ID, j.State, err, old.ID)
		}

		h.push(1, "d-1") // runs, held in verify
		synctest.Wait()
		queued := h.push(2, "d-2")
		got := goWait(t.Context(), h.ex, queued.Job.ID)
		synctest.Wait()
		select {
		case r := <-got:
			t.Fatalf("Wait returned for a queued job: %+v, %v", r.job, r.err)
		default:
		}
		h.push(3, "d-3") // supersedes sha(2)
		r := <-got
		if r.err != nil || r.job.ID != queued.Job.ID || r.job.State != StateSuperseded ||
			r.job.Description != "superseded by "+sha(3)[:7] {
			t.Errorf("Wait = %s %s %q, %v; want %s superseded by %s", r.job.ID, r.job.State, r.job.Description, r.err, queued.Job.ID, sha(3)[:7])
		}
	})
}

// Wait's other exits: ctx ends, the id is unknown, the journal refused the
// outcome until it takes it, Run returned with the job not final.
func TestExecutor_Wait_exits(t *testing.T) {
	t.Run("ctx ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			release := make(chan struct{})
			tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
				<-release
				return 0, nil
			}}
			h := start(t, Options{}, newMemStore(), tr, &fakeReporter{})
			defer h.stop()
			defer close(release)
			en := h.push(1, "d-1")
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			j, err := h.ex.Wait(ctx, en.Job.ID)
			if !errors.Is(err, context.DeadlineExceeded) || j.ID != "" {
				t.Errorf("Wait = %+v, %v; want context.DeadlineExceeded", j, err)
			}
			h.ex.ends.mu.Lock()
			n := len(h.ex.ends.m)
			h.ex.ends.mu.Unlock()
			if n != 0 {
				t.Errorf("%d waiters left behind after Wait returned", n)
			}
		})
	})
	t.Run("unknown job", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := start(t, Options{}, newMemStore(), &fakeTransport{}, &fakeReporter{})
			defer h.stop()
			if _, err := h.ex.Wait(t.Context(), "no-such-job"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Wait(unknown) = %v, want ErrNotFound", err)
			}
		})
	})
	t.Run("outcome written late", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			mem := newMemStore()
			fs := &faultStore{memStore: mem}
			release := make(chan struct{})
			tr := &fakeTransport{behave: func(ctx context.Context, c Command) (int, error) {
				if c.Name == "verify" {
					<-release
				}
				return 0, nil
			}}
			h := startOn(t, Options{}, fs, mem, tr, &fakeReporter{})
			defer h.stop()
			en := h.push(1, "d-1")
			got := goWait(t.Context(), h.ex, en.Job.ID)
			synctest.Wait()
			fs.fail("UpdateJob") // the outcome waits in memory
			close(release)
			synctest.Wait()
			select {
			case r := <-got:
				t.Fatalf("Wait returned before the journal took the outcome: %+v, %v", r.job, r.err)
			default:
			}
			fs.fail() // the repair loop writes it
			r := <-got
			if r.err != nil || r.job.State != StateSuccess {
				t.Errorf("Wait = %s, %v; want success", r.job.State, r.err)
			}
		})
	})
	t.Run("run returned", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ex, err := New(testLogger(t), Options{Targets: []Target{testTarget()}}, newMemStore(), &fakeTransport{}, &fakeReporter{})
			if err != nil {
				t.Fatal(err)
			}
			en, err := ex.Enqueue(t.Context(), "production", Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(1), Delivery: "d-1"})
			if err != nil {
				t.Fatal(err)
			}
			got := goWait(t.Context(), ex, en.Job.ID)
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // Run stops at once: the job stays queued for the next start
			if err := ex.Run(ctx); err != nil {
				t.Fatalf("Run: %v", err)
			}
			r := <-got
			if !errors.Is(r.err, ErrClosed) || r.err.Error() != "job "+en.Job.ID+" is queued: deployhook is shutting down" {
				t.Errorf("Wait = %v, want %q", r.err, "job "+en.Job.ID+" is queued: deployhook is shutting down")
			}
		})
	})
}
