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

// scriptTransport runs each step with the function named after it, which
// writes to the step's output as it likes. Like the real transports, a step
// that runs when its context ends is killed: its function must return then
// (block helps). A step without a function prints "ran NAME".
type scriptTransport struct {
	mu    sync.Mutex
	steps map[string]func(ctx context.Context, c Command, out io.Writer) (int, error)
	calls []Command
	ctxOK []bool // whether each call's context was live when it started
}

func (s *scriptTransport) Open(ctx context.Context, target, lock string, wait time.Duration) (Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *scriptTransport) Run(ctx context.Context, c Command, out io.Writer) (int, error) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.ctxOK = append(s.ctxOK, ctx.Err() == nil)
	run := s.steps[c.Name]
	s.mu.Unlock()
	if run == nil {
		fmt.Fprintf(out, "ran %s\n", c.Name)
		return 0, nil
	}
	return run(ctx, c, out)
}

func (s *scriptTransport) Close() error { return nil }

// ran lists the steps that ran, as "NAME@N" for sha(N).
func (s *scriptTransport) ran() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		out = append(out, fmt.Sprintf("%s@%d", c.Name, shaNum(c.Env["DEPLOYHOOK_SHA"])))
	}
	return out
}

// block prints a line and waits until ctx ends, as a killed step does.
func block(ctx context.Context, c Command, out io.Writer) (int, error) {
	fmt.Fprintf(out, "%s running\n", c.Name)
	<-ctx.Done()
	return -1, ctx.Err()
}

// scriptTarget has no probes: the journal says what runs.
func scriptTarget() Target {
	return Target{
		Name: "production", Repo: "acme/app", Branch: "main", Environment: "production", Rollback: true,
		Steps: []Step{
			{Name: "preflight", Run: "check", Timeout: time.Minute},
			{Name: "checkout", Run: "checkout", Timeout: time.Minute, Checkpoint: true},
			{Name: "restart", Run: "restart", Timeout: time.Minute},
			{Name: "verify", Run: "verify", Timeout: time.Minute},
		},
	}
}

// startWith starts an executor on store with tr as its transport.
func startWith(t *testing.T, opts Options, store *memStore, tr Transport, rep *fakeReporter) *harness {
	t.Helper()
	seedSuccess(t, store, sha(1))
	if len(opts.Targets) == 0 {
		opts.Targets = []Target{scriptTarget()}
	}
	if opts.PublicURL == "" {
		opts.PublicURL = "https://deploy.example.com/"
	}
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = time.Second, 10*time.Second
	}
	ex, err := New(testLogger(t), opts, store, tr, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, store: store, rep: rep, ex: ex, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- ex.Run(ctx) }()
	synctest.Wait()
	return h
}

// enqueue asks for sha(n) by a person (kind manual or rollback) or a push.
func (h *harness) enqueue(kind Kind, n int, actor string) Job {
	h.t.Helper()
	en, err := h.ex.Enqueue(context.Background(), "production", Trigger{
		Kind: kind, Repo: "acme/app", Branch: "main", SHA: sha(n), Delivery: fmt.Sprint("d-", n),
		Actor: actor, Reason: string(kind) + " by " + actor, Force: !kind.Automatic(),
	})
	if err != nil {
		h.t.Fatalf("Enqueue: %v", err)
	}
	return en.Job
}

// job reads id from the journal.
func (h *harness) job(id string) Job {
	h.t.Helper()
	j, err := h.store.Job(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

// drain reads ch until it is closed.
func drain(ch <-chan LogEvent) []LogEvent {
	var out []LogEvent
	for ev := range ch {
		out = append(out, ev)
	}
	return out
}

// waiting returns the events waiting in ch, without blocking.
func waiting(ch <-chan LogEvent) []LogEvent {
	var out []LogEvent
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}

// brief renders events as "kind step detail" lines.
func brief(evs []LogEvent) []string {
	var out []string
	for _, ev := range evs {
		switch ev.Kind {
		case EventStep:
			out = append(out, fmt.Sprintf("step %d %s", ev.Step, ev.Name))
		case EventLine:
			out = append(out, fmt.Sprintf("line %d %s", ev.Step, ev.Line))
		case EventDone:
			out = append(out, fmt.Sprintf("done %d exit %d", ev.Step, ev.Exit))
		case EventEnd:
			out = append(out, fmt.Sprintf("end %s %s", ev.State, ev.Description))
		}
	}
	return out
}

// A follower sees a step's lines while it runs, then the rest of the job and
// its end; a reconnect with the last ID resumes; the log is kept a minute
// after the end, then Follow says ErrNotFound.
func TestExecutor_Follow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := &scriptTransport{steps: map[string]func(context.Context, Command, io.Writer) (int, error){
			"restart": func(ctx context.Context, c Command, out io.Writer) (int, error) {
				io.WriteString(out, "stopping\nstarting")
				<-release
				io.WriteString(out, "\nup\n")
				return 0, nil
			},
		}}
		h := startWith(t, Options{}, newMemStore(), tr, &fakeReporter{})
		defer h.stop()
		ctx := context.Background()
		if _, err := h.ex.Follow(ctx, "no-such-job", 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("Follow(unknown) = %v, want ErrNotFound", err)
		}
		j := h.enqueue(KindPush, 2, "octocat")
		synctest.Wait()
		ch, err := h.ex.Follow(ctx, j.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := brief(waiting(ch))
		want := []string{"step 1 preflight", "line 1 ran preflight", "done 1 exit 0",
			"step 2 checkout", "line 2 ran checkout", "done 2 exit 0", "step 3 restart", "line 3 stopping"}
		if !slices.Equal(got, want) {
			t.Errorf("while restart runs:\n%q\nwant\n%q", got, want)
		}
		// The journal has the output so far.
		if st := h.job(j.ID).Steps[2]; st.Name != "restart" || st.Output != "stopping\n" || st.ExitCode != -1 {
			t.Errorf("journal while restart runs: %+v", st)
		}
		close(release)
		synctest.Wait()
		rest := drain(ch)
		want = []string{"line 3 starting", "line 3 up", "done 3 exit 0", "step 4 verify", "line 4 ran verify", "done 4 exit 0",
			"end success deployed " + sha(2)[:7]}
		if got := brief(rest); !slices.Equal(got, want) {
			t.Errorf("after release:\n%q\nwant\n%q", got, want)
		}
		for i, ev := range rest {
			if want := int64(9 + i); ev.ID != want {
				t.Errorf("event %q has ID %d, want %d", brief(rest[i:i+1]), ev.ID, want)
			}
		}

		// A reconnect within the minute gets what followed its last ID.
		again, err := h.ex.Follow(ctx, j.ID, 13)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := brief(drain(again)), want[5:]; !slices.Equal(got, want) {
			t.Errorf("reconnect after 13: %q, want %q", got, want)
		}
		time.Sleep(feedRetain + time.Second)
		if _, err := h.ex.Follow(ctx, j.ID, 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("Follow a minute after the end = %v, want ErrNotFound (the journal has it)", err)
		}
	})
}

// A job waiting in the queue may be followed before it runs; a superseded or
// cancelled one ends its followers; a follower whose context ends is closed.
func TestExecutor_FollowQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := &scriptTransport{steps: map[string]func(context.Context, Command, io.Writer) (int, error){
			"restart": func(ctx context.Context, c Command, out io.Writer) (int, error) {
				if c.Env["DEPLOYHOOK_SHA"] == sha(2) {
					<-release
				}
				return 0, nil
			},
		}}
		h := startWith(t, Options{}, newMemStore(), tr, &fakeReporter{})
		defer h.stop()
		ctx := context.Background()
		h.enqueue(KindPush, 2, "octocat")
		synctest.Wait()
		third := h.enqueue(KindPush, 3, "octocat")
		ch3, err := h.ex.Follow(ctx, third.ID, 0)
		if err != nil {
			t.Fatalf("Follow(queued job) = %v", err)
		}
		fctx, stop := context.WithCancel(ctx)
		quitter, err := h.ex.Follow(fctx, third.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		stop()
		synctest.Wait()
		if ev, ok := <-quitter; ok {
			t.Errorf("a follower whose context ended got %+v, want its channel closed", ev)
		}
		fourth := h.enqueue(KindPush, 4, "octocat") // supersedes the third
		if got, want := brief(drain(ch3)), []string{"end superseded superseded by " + sha(4)[:7]}; !slices.Equal(got, want) {
			t.Errorf("the superseded job's follower got %q, want %q", got, want)
		}
		ch4, err := h.ex.Follow(ctx, fourth.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		close(release)
		synctest.Wait()
		evs := drain(ch4)
		if got := brief(evs); len(got) != 12 || got[0] != "step 1 preflight" || got[11] != "end success deployed "+sha(4)[:7] {
			t.Errorf("the queued job's follower got %q, want its four steps and its end", got)
		}
	})
}

// Follow knows only the jobs this process runs.
func TestExecutor_FollowOtherProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		h := startWith(t, Options{Owner: Owner{ID: "svc"}}, store, &scriptTransport{}, &fakeReporter{})
		defer h.stop()
		ctx := context.Background()
		other := Job{ID: "cli-job", Target: "production", State: StateRunning, Owner: "cli", Created: time.Now(),
			Trigger: Trigger{Kind: KindManual, Repo: "acme/app", Branch: "main", SHA: sha(5), Actor: "ann"}}
		if _, err := store.CreateJob(ctx, other); err != nil {
			t.Fatal(err)
		}
		if _, err := h.ex.Follow(ctx, other.ID, 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("Follow(another process's job) = %v, want ErrNotFound", err)
		}
		if _, err := h.ex.Follow(ctx, "seed-"+sha(1)[33:], 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("Follow(a job final before this process) = %v, want ErrNotFound", err)
		}
	})
}

// A follower that does not read is dropped and the deploy goes on; it
// resumes from its last ID, and sees the cut marker where the kept output
// has a gap.
func TestExecutor_FollowSlowReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		tr := &scriptTransport{steps: map[string]func(context.Context, Command, io.Writer) (int, error){
			"restart": func(ctx context.Context, c Command, out io.Writer) (int, error) {
				<-started
				for i := range 3 * followBuffer {
					fmt.Fprintf(out, "line %d\n", i)
				}
				return 0, nil
			},
		}}
		h := startWith(t, Options{OutputLimit: 4 << 10}, newMemStore(), tr, &fakeReporter{})
		defer h.stop()
		j := h.enqueue(KindPush, 2, "octocat")
		synctest.Wait()
		ch, err := h.ex.Follow(context.Background(), j.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		close(started)
		synctest.Wait()
		if got := h.job(j.ID); got.State != StateSuccess {
			t.Fatalf("the deploy waited for its reader: %s %q", got.State, got.Description)
		}
		evs := drain(ch)
		last := evs[len(evs)-1]
		if last.Kind == EventEnd || len(evs) > 7+followBuffer {
			t.Errorf("the slow reader got %d events ending with %+v, want at most %d and no end: it is dropped",
				len(evs), last, 7+followBuffer)
		}
		again, err := h.ex.Follow(context.Background(), j.ID, last.ID)
		if err != nil {
			t.Fatal(err)
		}
		rest := brief(drain(again))
		if !strings.HasPrefix(rest[0], "line 3 [… ") || rest[len(rest)-1] != "end success deployed "+sha(2)[:7] {
			t.Errorf("resumed: %q … %q, want the cut marker first and the end last", rest[0], rest[len(rest)-1])
		}
	})
}

// countingStore counts the step records written per seq.
type countingStore struct {
	*memStore
	mu     sync.Mutex
	writes map[int]int
}

func (c *countingStore) AddStep(ctx context.Context, s StepRun) error {
	c.mu.Lock()
	c.writes[s.Seq]++
	c.mu.Unlock()
	return c.memStore.AddStep(ctx, s)
}

// A running step's record is rewritten with its output at most every 250 ms
// while lines arrive, and once at its end; its error is redacted as its
// output is, and the output stays within OutputLimit with a marker.
func TestExecutor_StepJournal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &scriptTransport{steps: map[string]func(context.Context, Command, io.Writer) (int, error){
			"restart": func(ctx context.Context, c Command, out io.Writer) (int, error) {
				for i := range 101 { // a line every 10 ms for a second
					fmt.Fprintf(out, "line %03d\n", i)
					time.Sleep(10 * time.Millisecond)
				}
				return 0, nil
			},
			"verify": func(ctx context.Context, c Command, out io.Writer) (int, error) {
				io.WriteString(out, "token hunter2\n")
				return -1, errors.New("ssh: connection lost while sending hunter2")
			},
		}}
		mem := newMemStore()
		st := &countingStore{memStore: mem, writes: map[int]int{}}
		seedSuccess(t, mem, sha(1))
		opts := Options{Targets: []Target{scriptTarget()}, OutputLimit: 512, Redact: []string{"hunter2"},
			PublicURL: "https://deploy.example.com/", RetryMin: time.Second, RetryMax: 10 * time.Second}
		ex, err := New(testLogger(t), opts, st, tr, &fakeReporter{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- ex.Run(ctx) }()
		synctest.Wait()
		en, err := ex.Enqueue(context.Background(), "production", Trigger{Kind: KindPush, Repo: "acme/app",
			Branch: "main", SHA: sha(2), Delivery: "d-2"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ex.Wait(context.Background(), en.Job.ID); err != nil {
			t.Fatal(err)
		}
		j, _ := mem.Job(context.Background(), en.Job.ID)
		cancel()
		<-done

		st.mu.Lock()
		n := st.writes[3]
		st.mu.Unlock()
		// The start, one write per 250 ms of the second (the first at once),
		// and the end.
		if n < 1+4+1 || n > 1+5+1 {
			t.Errorf("the restart record was written %d times over a second, want 6 or 7", n)
		}
		restart := j.Steps[2]
		if len(restart.Output) > 512 || !strings.HasPrefix(restart.Output, "line 000\n") ||
			!strings.HasSuffix(restart.Output, "line 100\n") || !strings.Contains(restart.Output, "\n[… ") {
			t.Errorf("restart output (%d bytes):\n%s\nwant its start and end within 512 bytes, with the marker",
				len(restart.Output), restart.Output)
		}
		verify := j.Steps[3]
		if verify.Output != "token [redacted]\n" || verify.Error != "ssh: connection lost while sending [redacted]" {
			t.Errorf("verify: output %q error %q, want both redacted", verify.Output, verify.Error)
		}
	})
}
