package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// liveScript is jrun's live log as the executor would send it.
func liveScript() []executor.LogEvent {
	at := testNow.Add(-4 * time.Minute)
	return []executor.LogEvent{
		{ID: 1, Kind: "step", Step: 1, Name: "fetch", Time: at},
		{ID: 2, Kind: "line", Step: 1, Line: "Fetching origin", Time: at},
		{ID: 3, Kind: "line", Step: 1, Line: `<script>alert("x")</script>`, Time: at},
		{ID: 4, Kind: "done", Step: 1, Exit: 0, Millis: 1500, Time: at},
		{ID: 5, Kind: "end", State: executor.StateSuccess, Description: "deployed d00dfee", Time: at},
	}
}

// sse is the wire form of events: id, event and data lines, each event
// ended by a blank line.
func sse(tb testing.TB, evs ...executor.LogEvent) string {
	tb.Helper()
	var b strings.Builder
	b.WriteString("retry: 2000\n\n")
	for _, ev := range evs {
		data, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		if ev.ID > 0 {
			b.WriteString("id: " + strconv.FormatInt(ev.ID, 10) + "\n")
		}
		b.WriteString("event: " + ev.Kind + "\ndata: " + string(data) + "\n\n")
	}
	return b.String()
}

// TestConsole_events_resume: the stream starts after Last-Event-ID (a
// reconnect), else ?after= (the page), else from the start, and ends
// after "end".
func TestConsole_events_resume(t *testing.T) {
	script := liveScript()
	tests := []struct {
		name       string
		path       string
		lastID     string
		wantAfter  string
		wantEvents []executor.LogEvent
		wantCode   int
	}{
		{name: "from the start", path: "/jobs/jrun/events", wantAfter: "jrun after 0", wantEvents: script, wantCode: 200},
		{name: "Last-Event-ID", path: "/jobs/jrun/events", lastID: "2", wantAfter: "jrun after 2", wantEvents: script[2:], wantCode: 200},
		{name: "after", path: "/jobs/jrun/events?after=3", wantAfter: "jrun after 3", wantEvents: script[3:], wantCode: 200},
		{name: "the header wins", path: "/jobs/jrun/events?after=1", lastID: "4", wantAfter: "jrun after 4", wantEvents: script[4:], wantCode: 200},
		{name: "not a number", path: "/jobs/jrun/events", lastID: "x", wantCode: 400},
		{name: "negative", path: "/jobs/jrun/events?after=-1", wantCode: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, nil)
			c.live.events["jrun"] = script
			h := map[string]string{"Accept": "text/event-stream"}
			if tt.lastID != "" {
				h["Last-Event-ID"] = tt.lastID
			}
			rec := c.do(t, req{path: tt.path, login: "rita", header: h})
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			follows, _ := c.live.calls()
			if tt.wantCode != 200 {
				if len(follows) != 0 {
					t.Errorf("followed %v", follows)
				}
				return
			}
			if !slices.Equal(follows, []string{tt.wantAfter}) {
				t.Errorf("follows %v, want [%s]", follows, tt.wantAfter)
			}
			if got, want := rec.Body.String(), sse(t, tt.wantEvents...); got != want {
				t.Errorf("stream\n%s\nwant\n%s", got, want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// TestConsole_events_fromJournal: a job that has ended, and that this
// process does not follow, gets one "end" event with the journal's state.
// (One that has not ended is tailed: TestConsole_events_tail.)
func TestConsole_events_fromJournal(t *testing.T) {
	tests := []struct {
		name        string
		job         string
		noLive      bool
		wantFollows []string
		want        executor.LogEvent
	}{
		{name: "ended", job: "j3", wantFollows: []string{"j3 after 0"},
			want: executor.LogEvent{Kind: "end", State: executor.StateSuccess, Description: "deployed", Time: testNow}},
		{name: "ended, no Live", job: "j2", noLive: true,
			want: executor.LogEvent{Kind: "end", State: executor.StateFailure, Description: "deployed", Time: testNow}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, nil)
			if tt.noLive {
				c.srv.deps.Live = nil
			}
			rec := c.do(t, req{path: "/jobs/" + tt.job + "/events", login: "rita"})
			if got, want := rec.Body.String(), sse(t, tt.want); rec.Code != 200 || got != want {
				t.Errorf("got %d\n%s\nwant\n%s", rec.Code, got, want)
			}
			if follows, _ := c.live.calls(); !slices.Equal(follows, tt.wantFollows) {
				t.Errorf("follows %v, want %v", follows, tt.wantFollows)
			}
		})
	}
}

// TestConsole_events_output: "line" events carry step output, so the
// "none" mode sends them only with ShowOutput.
func TestConsole_events_output(t *testing.T) {
	for _, show := range []bool{false, true} {
		live := &fakeLive{events: map[string][]executor.LogEvent{"jrun": liveScript()}}
		f := newFixtureWith(t, func(o *Options) { o.ShowOutput = show }, func(d *Deps) { d.Live = live })
		f.journal.jobs = historyJobs()
		rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/jobs/jrun/events", nil))
		want := liveScript()
		if !show {
			want = slices.DeleteFunc(want, func(ev executor.LogEvent) bool { return ev.Kind == "line" })
		}
		if got := rec.Body.String(); got != sse(t, want...) {
			t.Errorf("ShowOutput %v: stream\n%s\nwant\n%s", show, got, sse(t, want...))
		}
	}
}

// streamRecorder is an http.ResponseWriter and Flusher safe to read while
// the handler writes.
type streamRecorder struct {
	mu      sync.Mutex
	header  http.Header
	code    int
	buf     bytes.Buffer
	flushes int
}

func (r *streamRecorder) Header() http.Header { return r.header }
func (r *streamRecorder) WriteHeader(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.code = code
}
func (r *streamRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}
func (r *streamRecorder) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes++
}
func (r *streamRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// TestConsole_events_heartbeat: an idle stream gets a comment every 15 s,
// events are flushed as they come, and Shutdown ends the stream.
func TestConsole_events_heartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newConsole(t, nil)
		ch := make(chan executor.LogEvent)
		c.live.open["jrun"] = ch
		w := &streamRecorder{header: http.Header{}}
		reqCtx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := httptest.NewRequestWithContext(reqCtx, http.MethodGet, "/jobs/jrun/events", nil)
		r.AddCookie(&http.Cookie{Name: "session", Value: "alice"})
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.h.ServeHTTP(w, r)
		}()
		synctest.Wait()
		if got := w.String(); got != "retry: 2000\n\n" {
			t.Fatalf("stream before any event: %q", got)
		}
		time.Sleep(heartbeatEvery - time.Millisecond)
		synctest.Wait()
		if strings.Contains(w.String(), "heartbeat") {
			t.Fatal("a heartbeat before 15 s")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := w.String(); got != "retry: 2000\n\n: heartbeat\n\n" {
			t.Fatalf("stream after 15 s: %q", got)
		}
		ev := executor.LogEvent{ID: 7, Kind: "line", Step: 2, Line: "restarted", Time: time.Now()}
		ch <- ev
		synctest.Wait()
		if got, want := w.String(), sse(t, ev); got != "retry: 2000\n\n: heartbeat\n\n"+strings.TrimPrefix(want, "retry: 2000\n\n") {
			t.Fatalf("stream after an event: %q", got)
		}
		select {
		case <-done:
			t.Fatal("the stream ended before Shutdown")
		default:
		}
		if err := c.srv.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done: // with Shutdown, not at some timeout
		case <-time.After(time.Hour): // the bubble's clock: no real wait
			cancel()
			<-done
			t.Fatal("the stream outlived Shutdown")
		}
	})
}

// TestConsole_events_realHTTP: over a real connection, each event arrives
// as it is sent (flushed), before the job ends; the stream closes after
// "end".
func TestConsole_events_realHTTP(t *testing.T) {
	c := newConsole(t, nil)
	ch := make(chan executor.LogEvent, 1)
	c.live.open["jrun"] = ch
	ts := httptest.NewServer(c.h)
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/jobs/jrun/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Accept", "text/event-stream")
	r.AddCookie(&http.Cookie{Name: "session", Value: "alice"})
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readEvent := func() string {
		var b strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, b.String())
			}
			if line == "\n" {
				return b.String()
			}
			b.WriteString(line)
		}
	}
	if got := readEvent(); got != "retry: 2000\n" {
		t.Fatalf("first %q", got)
	}
	script := liveScript()
	for _, ev := range script {
		ch <- ev
		want := strings.TrimSuffix(strings.TrimPrefix(sse(t, ev), "retry: 2000\n\n"), "\n")
		if got := readEvent(); got != want {
			t.Fatalf("event %d: %q, want %q", ev.ID, got, want)
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after end: %q, %v; want EOF", rest, err)
	}
}

// TestConsole_events_followError: a Follow that fails otherwise is a 503
// without its detail.
func TestConsole_events_followError(t *testing.T) {
	c := newConsole(t, nil)
	c.srv.deps.Live = failingLive{}
	rec := c.do(t, req{path: "/jobs/jrun/events", login: "alice"})
	if rec.Code != http.StatusServiceUnavailable || strings.TrimSpace(rec.Body.String()) != `{"error":"cannot follow the job now: reload the page"}` {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
}

type failingLive struct{}

func (failingLive) Follow(context.Context, string, int64) (<-chan executor.LogEvent, error) {
	return nil, errors.New("follower table full at 10.0.0.5")
}

func (failingLive) Cancel(context.Context, string, string) (executor.Job, error) {
	return executor.Job{}, errors.New("no")
}

// TestConsole_events_outlivesWriteTimeout: the server's WriteTimeout (a
// minute in Serve) would cut a stream that lasts as long as the deploy;
// each write of the stream moves the deadline. Here it is 200 ms, and the
// event comes well after it.
func TestConsole_events_outlivesWriteTimeout(t *testing.T) {
	c := newConsole(t, nil)
	ch := make(chan executor.LogEvent, 1)
	c.live.open["jrun"] = ch
	ts := httptest.NewUnstartedServer(c.h)
	ts.Config.WriteTimeout = 200 * time.Millisecond
	ts.Start()
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/jobs/jrun/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.AddCookie(&http.Cookie{Name: "session", Value: "alice"})
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "retry: 2000\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	time.Sleep(500 * time.Millisecond) // past the first write deadline: not a synchronisation
	ev := executor.LogEvent{ID: 1, Kind: "end", State: executor.StateSuccess, Time: testNow}
	ch <- ev
	rest, err := io.ReadAll(br)
	if want := "\n" + strings.TrimPrefix(sse(t, ev), "retry: 2000\n\n"); err != nil || string(rest) != want {
		t.Errorf("after the write deadline: %q, %v; want %q", rest, err, want)
	}
}

// TestConsole_events_accessRechecked: an open stream, live or tailed, asks
// Access again every minute and watches the session's expiry; when the
// person may no longer read the job (access taken away, signed out, an
// access that cannot be decided, the session or IAP assertion expired) it
// closes, without an "end" event, and the page's reconnect is refused.
// Safety invariant 5: what a stream shows stops when the right to see it
// does.
func TestConsole_events_accessRechecked(t *testing.T) {
	revoke := func(a *fakeAuth) { delete(a.access, "rita "+prodRepo) }
	tests := []struct {
		name    string
		live    bool
		expires time.Duration     // rita's session ends this long after testNow; 0: never
		change  func(a *fakeAuth) // made after the first check, which passes
		wantEnd time.Duration     // when the stream closes; 0: not within 5 minutes
		wantLog string
		// wantReconnect is the answer to the page's reconnect; 0: not asked.
		wantReconnect int
	}{
		{name: "access holds", live: true},
		{name: "access holds, tailed"},
		{name: "access taken away", live: true, change: revoke, wantEnd: 2 * time.Minute,
			wantLog: "event stream ended: access no longer holds", wantReconnect: http.StatusNotFound},
		{name: "access taken away, tailed", change: revoke, wantEnd: 2 * time.Minute,
			wantLog: "event stream ended: access no longer holds", wantReconnect: http.StatusNotFound},
		{name: "access undecided", live: true, change: func(a *fakeAuth) { a.err = errors.New("GitHub unreachable") },
			wantEnd: 2 * time.Minute, wantLog: "event stream ended: access no longer holds", wantReconnect: http.StatusServiceUnavailable},
		{name: "session expires", live: true, expires: 90 * time.Second, wantEnd: 90 * time.Second,
			wantLog: "event stream ended: the session expired"},
		{name: "session expires, tailed", expires: 90 * time.Second, wantEnd: 90 * time.Second,
			wantLog: "event stream ended: the session expired"},
		{name: "session expires after the stream", live: true, expires: 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newConsole(t, nil)
				if tt.live {
					c.live.open["jrun"] = make(chan executor.LogEvent)
				}
				if tt.expires > 0 {
					rita := c.auth.people["rita"]
					rita.Expires = testNow.Add(tt.expires)
					c.auth.people["rita"] = rita
				}
				w, done, stop := openStream(t, c.h, "/jobs/jrun/events", "rita", "")
				defer stop()
				open := func() bool {
					synctest.Wait()
					select {
					case <-done:
						return false
					default:
						return true
					}
				}
				time.Sleep(accessRecheckEvery)
				if !open() {
					t.Fatalf("the stream closed at the first check, with access: %q", w.String())
				}
				if tt.change != nil {
					c.auth.mu.Lock()
					tt.change(c.auth)
					c.auth.mu.Unlock()
				}
				if tt.wantEnd == 0 {
					time.Sleep(5 * time.Minute)
					if !open() {
						t.Errorf("the stream closed with access: %q", w.String())
					}
					return
				}
				time.Sleep(tt.wantEnd - accessRecheckEvery - time.Millisecond)
				if !open() {
					t.Fatalf("the stream closed before %s: %q", tt.wantEnd, w.String())
				}
				time.Sleep(time.Millisecond)
				if open() {
					t.Fatalf("the stream is open at %s, want it closed", tt.wantEnd)
				}
				if got := w.String(); !strings.HasPrefix(got, "retry: 2000\n\n") || strings.Contains(got, "event: end") {
					t.Errorf("stream %q: want it closed without an end event", got)
				}
				if l := c.logs.String(); !strings.Contains(l, tt.wantLog) || !strings.Contains(l, "login=rita") {
					t.Errorf("log %q; want %q with the login", l, tt.wantLog)
				}
				if tt.wantReconnect != 0 {
					rec := c.do(t, req{path: "/jobs/jrun/events", login: "rita", header: map[string]string{"Accept": "text/event-stream"}})
					if rec.Code != tt.wantReconnect || strings.Contains(rec.Body.String(), "unreachable") {
						t.Errorf("reconnect: %d %s; want %d", rec.Code, rec.Body, tt.wantReconnect)
					}
				}
			})
		})
	}
}
