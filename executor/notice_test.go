package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Safety invariants these tests guard: 4 (every commit told pending ends
// final: a notice channel that is down, or refuses, never holds up the
// GitHub reports, nor the deploy) and 5 (a notice carries only the public
// description, never step output).

func TestNoticeEvent(t *testing.T) {
	tests := []struct {
		name        string
		state       State
		description string
		prev        State
		want        Event
	}{
		{name: "failure before the checkpoint", state: StateFailure,
			description: "preflight failed (exit 1); nothing was changed", want: EventFailure},
		{name: "failure rolled back", state: StateFailure,
			description: "verify failed (exit 3); rolled back to abc1234", want: EventRollback},
		{name: "rolled back by the watch", state: StateFailure,
			description: "rolled back after 6 min: 4 of 5 runs failed since deploy, 0 of 9 before", want: EventRollback},
		{name: "cancelled and rolled back", state: StateError,
			description: "cancelled by octocat during restart; rolled back to abc1234", want: EventRollback},
		{name: "rollback failed is a failure", state: StateError,
			description: "restart failed (exit 1); rollback to abc1234 failed at rollback: restart: target state unknown", want: EventFailure},
		{name: "rollback off is a failure", state: StateFailure,
			description: "verify failed (exit 1); rollback is off, target state unknown", want: EventFailure},
		{name: "a step named like a rollback is not one", state: StateFailure,
			description: "rolled backup failed (exit 1); nothing was changed", want: EventFailure},
		{name: "error", state: StateError,
			description: "could not reach the target; nothing ran (see the job page)", want: EventFailure},
		{name: "success after a failure", state: StateSuccess, description: "deployed abc1234", prev: StateFailure, want: EventRecovery},
		{name: "success after an error", state: StateSuccess, description: "deployed abc1234", prev: StateError, want: EventRecovery},
		{name: "success after a success", state: StateSuccess, description: "deployed abc1234", prev: StateSuccess, want: ""},
		{name: "first success", state: StateSuccess, description: "deployed abc1234", want: ""},
		{name: "superseded", state: StateSuperseded, description: "superseded by abc1234", prev: StateFailure, want: ""},
		{name: "skipped", state: StateSkipped, description: "already live: contained in deployed def5678", prev: StateFailure, want: ""},
		{name: "running", state: StateRunning, description: "deploying abc1234", prev: StateFailure, want: ""},
		{name: "queued", state: StateQueued, description: "queued: push by octocat", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := noticeEvent(tt.state, tt.description, tt.prev); got != tt.want {
				t.Errorf("noticeEvent(%s, %q, %q) = %q, want %q", tt.state, tt.description, tt.prev, got, tt.want)
			}
		})
	}
}

func TestNoticeRule_wants(t *testing.T) {
	tests := []struct {
		name string
		on   []Event
		ev   Event
		want bool
	}{
		{name: "listed", on: []Event{EventRecovery}, ev: EventRecovery, want: true},
		{name: "not listed", on: []Event{EventFailure}, ev: EventRecovery, want: false},
		{name: "a rollback is a failure", on: []Event{EventFailure}, ev: EventRollback, want: true},
		{name: "a failure is not a rollback", on: []Event{EventRollback}, ev: EventFailure, want: false},
		{name: "rollback alone", on: []Event{EventRollback}, ev: EventRollback, want: true},
		{name: "no event", on: Events(), ev: "", want: false},
		{name: "nothing on", on: nil, ev: EventFailure, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (NoticeRule{On: tt.on}).wants(tt.ev); got != tt.want {
				t.Errorf("%v wants %q = %v, want %v", tt.on, tt.ev, got, tt.want)
			}
		})
	}
}

// fakeNotifier records the notices it took; fail decides whether an attempt
// fails (attempt counts from 1 per notice).
type fakeNotifier struct {
	mu       sync.Mutex
	sent     []Report
	attempts map[string]int // job + event → attempts
	fail     func(r Report, attempt int) error
	// hold, when set, is called with Notify's context before it takes a
	// notice, without the lock: it may block.
	hold func(ctx context.Context)
}

func (f *fakeNotifier) Notify(ctx context.Context, r Report) error {
	if f.hold != nil {
		f.hold(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attempts == nil {
		f.attempts = map[string]int{}
	}
	key := r.Job + " " + string(r.Event)
	f.attempts[key]++
	if f.fail != nil {
		if err := f.fail(r, f.attempts[key]); err != nil {
			return err
		}
	}
	f.sent = append(f.sent, r)
	return nil
}

func (f *fakeNotifier) notices() []Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

func (f *fakeNotifier) tries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.attempts {
		n += a
	}
	return n
}

// events lists "sha7 event" of the notices sent.
func (f *fakeNotifier) events() []string {
	var out []string
	for _, r := range f.notices() {
		out = append(out, r.SHA[:7]+" "+string(r.Event))
	}
	return out
}

// logSink collects log lines, safe for concurrent writes.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// noticeTarget is testTarget announcing every event on slack and chat.
func noticeTarget() Target {
	t := testTarget()
	t.Notify = NoticeRule{On: Events(), Channels: []string{"chat", "slack"}}
	return t
}

// startNotices starts an executor on st with the notifiers slack and chat,
// logging to t and, when sink is not nil, to it too.
func startNotices(t *testing.T, st Store, store *memStore, tr *fakeTransport, rep *fakeReporter, slack, chat *fakeNotifier, sink io.Writer) *harness {
	t.Helper()
	var w io.Writer = t.Output()
	if sink != nil {
		w = io.MultiWriter(w, sink)
	}
	lg := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ex, err := New(lg, Options{
		Targets:   []Target{noticeTarget()},
		PublicURL: "https://deploy.example.com/",
		RetryMin:  time.Second, RetryMax: 10 * time.Second,
		Notifiers: map[string]Notifier{"slack": slack, "chat": chat},
	}, st, tr, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, store: store, tr: tr, rep: rep, ex: ex, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- ex.Run(ctx) }()
	synctest.Wait()
	return h
}

// waitFor sleeps (in the bubble's fake time) until cond holds, for at most an hour.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3600 {
		synctest.Wait()
		if cond() {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// owedTo counts the reports owed to channel ("" GitHub).
func (m *memStore) owedTo(channel string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, o := range m.outbox {
		if o.Report.Notify == channel {
			n++
		}
	}
	return n
}

// seedJob records job id, a failure of sha, whose reports a test owes.
func seedJob(t *testing.T, s *memStore, id, sha string) {
	t.Helper()
	j := Job{ID: id, Target: "production", State: StateFailure, Created: time.Now(),
		Trigger: Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha}}
	if _, err := s.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// failOn returns a transport behaviour that fails step on sha with exit 1.
func failOn(cases map[string]string) func(context.Context, Command) (int, error) {
	return func(_ context.Context, c Command) (int, error) {
		return exitIf(cases[c.Env["DEPLOYHOOK_SHA"]] == c.Name, 1)
	}
}

// A run of deploys announces a rollback, then the recovery, nothing for a
// success after a success, then a failure: once on each channel, with the
// job's public fields, and never to GitHub.
func TestExecutor_NoticeEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		seedSuccess(t, store, sha(1))
		tr := &fakeTransport{changed: "app.py\n", behave: failOn(map[string]string{
			sha(2): "verify",    // after the checkpoint: rolled back
			sha(5): "preflight", // before it: a plain failure
		})}
		rep := &fakeReporter{}
		slack, chat := &fakeNotifier{}, &fakeNotifier{}
		h := startNotices(t, store, store, tr, rep, slack, chat, nil)
		defer h.stop()
		var jobs []string
		for n := 2; n <= 5; n++ {
			jobs = append(jobs, h.push(n, "d-"+sha(n)[:7]).Job.ID)
			h.settle()
		}
		want := []string{sha(2)[:7] + " rollback", sha(3)[:7] + " recovery", sha(5)[:7] + " failure"}
		for name, n := range map[string]*fakeNotifier{"slack": slack, "chat": chat} {
			if got := n.events(); !slices.Equal(got, want) {
				t.Errorf("%s got %v, want %v", name, got, want)
			}
			if got := n.tries(); got != len(want) {
				t.Errorf("%s was tried %d times, want %d", name, got, len(want))
			}
		}
		if len(slack.notices()) == 0 || len(chat.notices()) == 0 {
			t.FailNow()
		}
		got := slack.notices()[0]
		wantReport := Report{
			Job: jobs[0], Target: "production", Environment: "production", Repo: "acme/app", SHA: sha(2),
			State: StateFailure, Description: "verify failed (exit 1); rolled back to " + sha(1)[:7],
			URL: "https://deploy.example.com/jobs/" + jobs[0], Notify: "slack", Event: EventRollback, Actor: "octocat",
		}
		if got != wantReport {
			t.Errorf("slack notice =\n%+v\nwant\n%+v", got, wantReport)
		}
		if c := chat.notices()[0]; c.Notify != "chat" || c.Job != jobs[0] {
			t.Errorf("chat notice = %+v, want job %s to chat", c, jobs[0])
		}
		for _, r := range rep.reports() {
			if r.Notify != "" || r.Event != "" || r.Actor != "" {
				t.Errorf("GitHub got a notice: %+v", r)
			}
		}
	})
}

// GitHub is down and Slack answers the first attempt with a server error:
// the deploy ends, Slack gets the notice on its retry and Chat at once,
// exactly once each, while GitHub's reports wait in the outbox.
func TestExecutor_NoticesRetriedWhileGitHubDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		seedSuccess(t, store, sha(1))
		tr := &fakeTransport{behave: failOn(map[string]string{sha(2): "preflight"})}
		rep := &fakeReporter{fail: func(Report) error { return errors.New("502 Bad Gateway") }}
		slack := &fakeNotifier{fail: func(_ Report, attempt int) error {
			if attempt == 1 {
				return errors.New("slack webhook answered 500 Internal Server Error")
			}
			return nil
		}}
		chat := &fakeNotifier{}
		h := startNotices(t, store, store, tr, rep, slack, chat, nil)
		defer h.stop()
		en := h.push(2, "d-2")
		waitFor(t, "both notices", func() bool { return len(slack.notices()) == 1 && len(chat.notices()) == 1 })
		time.Sleep(time.Hour) // every sender keeps trying meanwhile
		synctest.Wait()
		if j, _ := store.Job(context.Background(), en.Job.ID); j.State != StateFailure {
			t.Errorf("job %s, want failure: a GitHub outage never blocks a deploy", j.State)
		}
		if got := slack.events(); !slices.Equal(got, []string{sha(2)[:7] + " failure"}) {
			t.Errorf("slack got %v, want one failure notice", got)
		}
		if got := chat.events(); !slices.Equal(got, []string{sha(2)[:7] + " failure"}) {
			t.Errorf("chat got %v, want one failure notice", got)
		}
		if slack.tries() != 2 || chat.tries() != 1 {
			t.Errorf("tries: slack %d, chat %d; want 2 (one retry) and 1", slack.tries(), chat.tries())
		}
		if n := store.owedTo("slack") + store.owedTo("chat"); n != 0 {
			t.Errorf("%d notices still owed", n)
		}
		var waiting []State
		for _, o := range must(store.Owed(context.Background(), 0)) {
			waiting = append(waiting, o.Report.State)
		}
		if want := []State{StateQueued, StateRunning, StateFailure}; !slices.Equal(waiting, want) {
			t.Errorf("owed to GitHub: %v, want %v waiting", waiting, want)
		}
		if len(rep.reports()) != 0 {
			t.Errorf("GitHub took %v while down", rep.reports())
		}
	})
}

// A channel that refuses a notice for good (a 404: the webhook was deleted)
// is tried once; the notice is settled and logged, and the other channel and
// GitHub go on.
func TestExecutor_NoticePermanentRefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		tr := &fakeTransport{behave: failOn(map[string]string{sha(1): "preflight", sha(2): "preflight"})}
		rep := &fakeReporter{}
		slack := &fakeNotifier{fail: func(Report, int) error {
			return errors.Join(ErrPermanent, errors.New("slack webhook answered 404 Not Found"))
		}}
		chat := &fakeNotifier{}
		var logs logSink
		h := startNotices(t, store, store, tr, rep, slack, chat, &logs)
		defer h.stop()
		h.push(1, "d-1")
		h.settle()
		h.push(2, "d-2")
		h.settle() // the outbox is empty: nothing waits for a retry
		time.Sleep(time.Hour)
		synctest.Wait()
		if slack.tries() != 2 || len(slack.notices()) != 0 {
			t.Errorf("slack: %d tries, %d taken; want each notice tried once, none taken", slack.tries(), len(slack.notices()))
		}
		if got := chat.events(); len(got) != 2 {
			t.Errorf("chat got %v, want both failures", got)
		}
		if r := rep.last(sha(2)); r.State != StateFailure {
			t.Errorf("GitHub's last report for %s is %s, want failure", sha(2)[:7], r.State)
		}
		if got := strings.Count(logs.String(), "the channel refused a notice; dropped it"); got != 2 {
			t.Errorf("%d refusals logged, want 2:\n%s", got, logs.String())
		}
		if !strings.Contains(logs.String(), "404 Not Found") || !strings.Contains(logs.String(), "channel=slack") {
			t.Errorf("the refusal's log line does not name the channel and status:\n%s", logs.String())
		}
	})
}

// Notices owed when deployhook stops are sent by the next one, once.
func TestExecutor_NoticesAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		tr := &fakeTransport{behave: failOn(map[string]string{sha(1): "preflight"})}
		rep := &fakeReporter{}
		down := func(Report, int) error { return errors.New("dial tcp: connection refused") }
		slack1, chat1 := &fakeNotifier{fail: down}, &fakeNotifier{fail: down}
		h := startNotices(t, store, store, tr, rep, slack1, chat1, nil)
		h.push(1, "d-1")
		waitFor(t, "GitHub's final report", func() bool { return rep.last(sha(1)).State == StateFailure })
		waitFor(t, "a retry of each notice", func() bool { return slack1.tries() >= 2 && chat1.tries() >= 2 })
		h.stop()
		if n := store.owedTo("slack") + store.owedTo("chat"); n != 2 {
			t.Fatalf("%d notices owed after the stop, want 2", n)
		}

		slack2, chat2 := &fakeNotifier{}, &fakeNotifier{}
		h = startNotices(t, store, store, tr, rep, slack2, chat2, nil)
		defer h.stop()
		waitFor(t, "the owed notices", func() bool { return len(slack2.notices()) == 1 && len(chat2.notices()) == 1 })
		time.Sleep(time.Hour)
		synctest.Wait()
		if slack2.tries() != 1 || chat2.tries() != 1 {
			t.Errorf("after the restart: slack tried %d, chat %d times; want once each", slack2.tries(), chat2.tries())
		}
		if n := store.owedCount(); n != 0 {
			t.Errorf("%d reports still owed", n)
		}
	})
}

// When the journal refuses a job's final state, no notice is owed either;
// once it takes the state, the notice is owed with it and sent, once.
func TestExecutor_NoticeOwedWithTheFinalState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemStore()
		fs := &faultStore{memStore: mem}
		tr := &fakeTransport{behave: failOn(map[string]string{sha(1): "preflight"})}
		rep := &fakeReporter{}
		slack, chat := &fakeNotifier{}, &fakeNotifier{}
		h := startNotices(t, fs, mem, tr, rep, slack, chat, nil)
		defer h.stop()
		fs.fail("UpdateJob")
		en, err := h.ex.Enqueue(context.Background(), "production", Trigger{
			Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(1), Delivery: "d-1", Actor: "octocat", Reason: "push by octocat"})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the deploy to end", func() bool { return h.ex.jr.health() != nil && h.ex.idle() })
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := mem.owedTo("slack") + len(slack.notices()) + len(chat.notices()); n != 0 {
			t.Fatalf("%d notices owed or sent while the journal refused the final state, want none", n)
		}
		fs.fail()
		waitFor(t, "the notices", func() bool { return len(slack.notices()) == 1 && len(chat.notices()) == 1 })
		time.Sleep(time.Hour)
		synctest.Wait()
		if j, _ := mem.Job(context.Background(), en.Job.ID); j.State != StateFailure {
			t.Errorf("job %s, want failure", j.State)
		}
		if slack.tries() != 1 || chat.tries() != 1 {
			t.Errorf("slack tried %d, chat %d times; want once each", slack.tries(), chat.tries())
		}
	})
}

// An outbox row written before notices existed has no "notify" field: it is
// GitHub's, and goes there, not to a channel.
func TestExecutor_OldOutboxRowGoesToGitHub(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := `{"job":"j1","target":"production","environment":"production","repo":"acme/app",` +
			`"sha":"` + sha(7) + `","state":"failure","description":"verify failed (exit 1); nothing was changed",` +
			`"url":"https://deploy.example.com/jobs/j1","deployment":0}`
		var r Report
		if err := json.Unmarshal([]byte(old), &r); err != nil {
			t.Fatal(err)
		}
		store := newMemStore()
		seedJob(t, store, "j1", sha(7))
		if err := store.Owe(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		rep := &fakeReporter{}
		slack, chat := &fakeNotifier{}, &fakeNotifier{}
		h := startNotices(t, store, store, &fakeTransport{}, rep, slack, chat, nil)
		defer h.stop()
		h.settle()
		if got := rep.reports(); len(got) != 1 || got[0].Job != "j1" || got[0].State != StateFailure {
			t.Errorf("GitHub got %+v, want the old row's report", got)
		}
		if slack.tries()+chat.tries() != 0 {
			t.Errorf("the old row went to a channel: slack %v, chat %v", slack.notices(), chat.notices())
		}
	})
}

// A notice owed to a channel that is no longer configured is settled with a
// warning, and does not stop GitHub's reports.
func TestExecutor_NoticeToRemovedChannel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		seedJob(t, store, "j1", sha(7))
		ctx := context.Background()
		base := Report{Job: "j1", Target: "production", Environment: "production", Repo: "acme/app", SHA: sha(7),
			State: StateFailure, Description: "preflight failed (exit 1); nothing was changed"}
		gone := base
		gone.Notify, gone.Event = "teams", EventFailure
		for _, r := range []Report{gone, base} {
			if err := store.Owe(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		rep := &fakeReporter{}
		slack, chat := &fakeNotifier{}, &fakeNotifier{}
		var logs logSink
		h := startNotices(t, store, store, &fakeTransport{}, rep, slack, chat, &logs)
		defer h.stop()
		h.settle()
		if got := rep.reports(); len(got) != 1 || got[0].Job != "j1" || got[0].Notify != "" || got[0].Description != base.Description {
			t.Errorf("GitHub got %+v, want only %+v", got, base)
		}
		if !strings.Contains(logs.String(), "notice dropped: its channel is not configured") || !strings.Contains(logs.String(), "channel=teams") {
			t.Errorf("the dropped notice is not logged:\n%s", logs.String())
		}
	})
}

// New refuses a rule that names a channel without a Notifier or an event
// that does not exist.
func TestNew_NoticeRules(t *testing.T) {
	tests := []struct {
		name      string
		rule      NoticeRule
		notifiers map[string]Notifier
		want      string
	}{
		{name: "fine", rule: NoticeRule{On: Events(), Channels: []string{"slack"}},
			notifiers: map[string]Notifier{"slack": &fakeNotifier{}}},
		{name: "no rule, no notifiers"},
		{name: "unknown channel", rule: NoticeRule{On: Events(), Channels: []string{"teams"}},
			notifiers: map[string]Notifier{"slack": &fakeNotifier{}}, want: `notifies channel "teams", which has no Notifier`},
		{name: "unknown event", rule: NoticeRule{On: []Event{"success"}, Channels: []string{"slack"}},
			notifiers: map[string]Notifier{"slack": &fakeNotifier{}}, want: `announces unknown event "success"`},
		{name: "nil notifier", notifiers: map[string]Notifier{"slack": nil}, want: `notifier "slack"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := testTarget()
			target.Notify = tt.rule
			_, err := New(testLogger(t), Options{Targets: []Target{target}, Notifiers: tt.notifiers},
				newMemStore(), &fakeTransport{}, &fakeReporter{})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("New: %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("New: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// BenchmarkNotice measures owing a job's notice with its final state and one
// pass of its channel's sender that sends and settles it (the journal is
// the in-memory fake: the outbox's own cost, not SQLite's).
func BenchmarkNotice(b *testing.B) {
	store := newMemStore()
	n := &fakeNotifier{}
	lg := slog.New(slog.DiscardHandler)
	e, err := New(lg, Options{Targets: []Target{noticeTarget()}, PublicURL: "https://deploy.example.com/",
		Notifiers: map[string]Notifier{"slack": n, "chat": &fakeNotifier{}}}, store, &fakeTransport{}, &fakeReporter{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	j := Job{ID: "j1", Target: "production", State: StateRunning, Created: time.Now(),
		Trigger: Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(1), Actor: "octocat"}}
	if _, err := store.CreateJob(ctx, j); err != nil {
		b.Fatal(err)
	}
	j.State, j.Description = StateFailure, "preflight failed (exit 1); nothing was changed"
	slack := e.nt.channel("slack")
	b.ReportAllocs()
	for b.Loop() {
		notices := e.noticesFor(ctx, j)
		if err := store.UpdateJob(ctx, j, notices[1]); err != nil {
			b.Fatal(err)
		}
		if _, err := e.sendNotices(ctx, slack); err != nil {
			b.Fatal(err)
		}
	}
	if store.owedCount() != 0 {
		b.Fatalf("%d notices left", store.owedCount())
	}
}

// A shutdown that begins while a notice is being sent does not make it sent
// twice: the attempt is not cut short (it may have reached the channel), and
// it is settled although the sender's context has ended, so the flush at
// shutdown (and the next start) does not send it again.
func TestExecutor_NoticeSentDuringShutdownIsSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		tr := &fakeTransport{behave: failOn(map[string]string{sha(1): "preflight"})}
		var h *harness
		var once sync.Once
		var cut error
		// Shutdown starts while Slack takes the notice; Slack answers 200 a
		// second later, when the sender's own context has ended.
		slack := &fakeNotifier{hold: func(ctx context.Context) {
			once.Do(func() {
				h.cancel()
				time.Sleep(time.Second)
				cut = ctx.Err()
			})
		}}
		chat := &fakeNotifier{}
		h = startNotices(t, ctxStore{store}, store, tr, &fakeReporter{}, slack, chat, nil)
		h.push(1, "d-1")
		waitFor(t, "the shutdown", func() bool {
			select {
			case err := <-h.done:
				h.done <- err
				return true
			default:
				return false
			}
		})
		h.stop()
		if slack.tries() != 1 || store.owedTo("slack") != 0 || cut != nil {
			t.Errorf("slack tried %d times, %d still owed, attempt cut by %v; want it sent once, uncut, and settled",
				slack.tries(), store.owedTo("slack"), cut)
		}
	})
}

// ctxStore is a memStore whose outbox writes fail once their context has
// ended, as the SQL stores' do.
type ctxStore struct{ *memStore }

func (c ctxStore) Settle(ctx context.Context, id int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.memStore.Settle(ctx, id)
}

func (c ctxStore) Retry(ctx context.Context, id int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.memStore.Retry(ctx, id)
}
