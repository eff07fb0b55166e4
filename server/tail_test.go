package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// These tests hold safety invariant 5: a tailed stream sends step output
// only to a person who may see it (TestConsole_events_tailOutput), as the
// live one does.

// update changes job id in the journal while requests may be served: f
// gets a copy whose Steps it may change.
func (j *fakeJournal) update(id string, f func(*executor.Job)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range j.jobs {
		if j.jobs[i].ID == id {
			job := j.jobs[i]
			job.Steps = slices.Clone(job.Steps)
			f(&job)
			j.jobs[i] = job
			return
		}
	}
	panic("no job " + id)
}

func (j *fakeJournal) jobReads() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.reads
}

// ssev is the wire form of events with string IDs ("" for none), after the
// retry line.
func ssev(tb testing.TB, evs ...tailEvent) string {
	tb.Helper()
	var b strings.Builder
	for _, e := range evs {
		data, err := json.Marshal(e.ev)
		if err != nil {
			tb.Fatal(err)
		}
		if e.id != "" {
			b.WriteString("id: " + e.id + "\n")
		}
		b.WriteString("event: " + e.ev.Kind + "\ndata: " + string(data) + "\n\n")
	}
	return b.String()
}

// Event constructors for the tests: at is a step's start.
func evStep(id string, seq int, name string, at time.Time) tailEvent {
	return tailEvent{id, executor.LogEvent{Kind: "step", Step: seq, Name: name, Time: at}}
}
func evLine(id string, seq int, line string, at time.Time) tailEvent {
	return tailEvent{id, executor.LogEvent{Kind: "line", Step: seq, Line: line, Time: at}}
}
func evDone(id string, seq, exit int, d time.Duration, at time.Time) tailEvent {
	return tailEvent{id, executor.LogEvent{Kind: "done", Step: seq, Exit: exit, Millis: d.Milliseconds(), Time: at.Add(d)}}
}
func evEnd(st executor.State, desc string, at time.Time) tailEvent {
	return tailEvent{"", executor.LogEvent{Kind: "end", State: st, Description: desc, Time: at}}
}
func evReset(at time.Time) tailEvent {
	return tailEvent{"", executor.LogEvent{Kind: "reset", Time: at}}
}

// openStream starts GET path by login in a goroutine of the synctest
// bubble, with Last-Event-ID lastID when set. stop ends the request and
// waits for the handler.
func openStream(t *testing.T, h http.Handler, path, login, lastID string) (w *streamRecorder, done <-chan struct{}, stop func()) {
	t.Helper()
	w = &streamRecorder{header: http.Header{}}
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if login != "" {
		r.AddCookie(&http.Cookie{Name: "session", Value: login})
	}
	if lastID != "" {
		r.Header.Set("Last-Event-ID", lastID)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		h.ServeHTTP(w, r)
	}()
	return w, ch, func() { cancel(); <-ch }
}

// expect checks that the stream so far is the retry line and want.
func expect(t *testing.T, w *streamRecorder, what string, want ...tailEvent) {
	t.Helper()
	if got, w := w.String(), "retry: 2000\n\n"+ssev(t, want...); got != w {
		t.Fatalf("%s: stream\n%s\nwant\n%s", what, got, w)
	}
}

// TestConsole_events_tail: a running job that another replica runs
// (Follow: not found) is tailed from the journal: a read every 500 ms, and
// on each the events of what changed: lines as they arrive (the last one
// once it has its newline, or its step ended), a step's end, the next
// step, and "end" when the job is final, after which the stream closes.
// An idle stream reads the journal once per interval and sends heartbeats.
func TestConsole_events_tail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newConsole(t, nil)
		at := testNow.Add(-5 * time.Minute)
		c.journal.update("jrun", func(j *executor.Job) {
			j.Steps = []executor.StepRun{{Job: "jrun", Seq: 1, Name: "fetch", ExitCode: -1, Started: at, Output: "Fetching origin\nremote: Count"}}
		})
		w, done, stop := openStream(t, c.h, "/jobs/jrun/events", "rita", "")
		defer stop()
		synctest.Wait()
		sent := []tailEvent{evStep("j1.0", 1, "fetch", at), evLine("j1.16", 1, "Fetching origin", at)}
		expect(t, w, "at first", sent...)
		if follows, _ := c.live.calls(); !slices.Equal(follows, []string{"jrun after 0"}) {
			t.Errorf("follows %v", follows)
		}

		// Idle: one read per interval, a heartbeat after 15 s, no event.
		reads := c.journal.jobReads()
		time.Sleep(heartbeatEvery)
		synctest.Wait()
		if got, want := c.journal.jobReads()-reads, int(heartbeatEvery/tailEvery); got != want {
			t.Errorf("%d journal reads in %v, want %d", got, heartbeatEvery, want)
		}
		if got, want := w.String(), "retry: 2000\n\n"+ssev(t, sent...)+": heartbeat\n\n"; got != want {
			t.Fatalf("idle stream\n%q\nwant\n%q", got, want)
		}
		w.mu.Lock()
		w.buf.Reset()
		w.buf.WriteString("retry: 2000\n\n" + ssev(t, sent...))
		w.mu.Unlock()

		c.journal.update("jrun", func(j *executor.Job) {
			j.Steps[0].Output = "Fetching origin\nremote: Counting objects: 3, done.\nHEAD is now at d00dfee"
		})
		time.Sleep(tailEvery)
		synctest.Wait()
		sent = append(sent, evLine("j1.51", 1, "remote: Counting objects: 3, done.", at))
		expect(t, w, "a line", sent...)

		c.journal.update("jrun", func(j *executor.Job) {
			j.Steps[0].ExitCode, j.Steps[0].Duration = 0, 2*time.Second
			j.Steps = append(j.Steps, executor.StepRun{Job: "jrun", Seq: 2, Name: "test", Skipped: "no change to *.go"},
				executor.StepRun{Job: "jrun", Seq: 3, Name: "restart", ExitCode: -1, Started: at.Add(3 * time.Second)})
		})
		time.Sleep(tailEvery)
		synctest.Wait()
		sent = append(sent, evLine("j1.74", 1, "HEAD is now at d00dfee", at), evDone("j1.done", 1, 0, 2*time.Second, at),
			evStep("j3.0", 3, "restart", at.Add(3*time.Second)))
		expect(t, w, "a step's end and the next (the skipped one left out, as the live log does)", sent...)

		c.journal.update("jrun", func(j *executor.Job) {
			j.Steps[2].ExitCode, j.Steps[2].Duration, j.Steps[2].Output = 0, time.Second, "restarted\n"
			j.State, j.Description, j.Finished = executor.StateSuccess, "deployed d00dfee", testNow
		})
		time.Sleep(tailEvery)
		synctest.Wait()
		sent = append(sent, evLine("j3.10", 3, "restarted", at.Add(3*time.Second)), evDone("j3.done", 3, 0, time.Second, at.Add(3*time.Second)),
			evEnd(executor.StateSuccess, "deployed d00dfee", testNow))
		expect(t, w, "the end", sent...)
		select {
		case <-done:
		default:
			t.Fatal("the stream goes on after end")
		}
	})
}

// runningJob is jrun as the journal has it while its step 2 runs; resume
// tests start from it.
func runningJob(j *executor.Job) {
	at := testNow.Add(-time.Minute)
	j.Steps = []executor.StepRun{
		{Job: "jrun", Seq: 1, Name: "fetch", ExitCode: 0, Started: at, Duration: time.Second, Output: "a\n"},
		{Job: "jrun", Seq: 2, Name: "build", ExitCode: -1, Started: at.Add(time.Second), Output: "b1\nb2\n"},
	}
}

// TestConsole_events_tailResume: a tailed stream resumes after its own
// Last-Event-ID ("jN"), on any replica, since the ID is its position in the
// journal's record; a live stream's ID (a number) starts it over with
// "reset"; and a tailed stream's ID on the replica that runs the job starts
// the live log over with "reset".
func TestConsole_events_tailResume(t *testing.T) {
	at := testNow.Add(-time.Minute)
	all := []tailEvent{evStep("j1.0", 1, "fetch", at), evLine("j1.2", 1, "a", at), evDone("j1.done", 1, 0, time.Second, at),
		evStep("j2.0", 2, "build", at.Add(time.Second)), evLine("j2.3", 2, "b1", at.Add(time.Second)), evLine("j2.6", 2, "b2", at.Add(time.Second))}
	tests := []struct {
		name   string
		lastID string
		want   []tailEvent
	}{
		{name: "from the start", want: all},
		{name: "after a step's start", lastID: "j1.0", want: all[1:]},
		{name: "after a line", lastID: "j2.3", want: all[5:]},
		{name: "after a step's end", lastID: "j1.done", want: all[3:]},
		{name: "after all", lastID: "j2.6", want: nil},
		{name: "a live stream's id", lastID: "5", want: append([]tailEvent{evReset(testNow)}, all...)},
		{name: "a live stream's 0", lastID: "0", want: all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newConsole(t, nil)
				c.journal.update("jrun", runningJob)
				w, _, stop := openStream(t, c.h, "/jobs/jrun/events", "rita", tt.lastID)
				defer stop()
				synctest.Wait()
				expect(t, w, "stream", tt.want...)
			})
		})
	}

	t.Run("a tailed id on the live replica", func(t *testing.T) {
		c := newConsole(t, nil)
		c.live.events["jrun"] = liveScript()
		rec := c.do(t, req{path: "/jobs/jrun/events", login: "rita", header: map[string]string{"Last-Event-ID": "j2.3"}})
		want := sse(t, append([]executor.LogEvent{{Kind: "reset", Time: testNow}}, liveScript()...)...)
		if got := rec.Body.String(); rec.Code != http.StatusOK || got != want {
			t.Errorf("got %d\n%s\nwant\n%s", rec.Code, got, want)
		}
		if follows, _ := c.live.calls(); !slices.Equal(follows, []string{"jrun after 0"}) {
			t.Errorf("follows %v, want the live log from its start", follows)
		}
	})

	for _, id := range []string{"j", "j0.0", "j1", "j1.", "j1.-1", "j-1.0", "j1.x", "j1.done.", "jx.0", "j+1.0", "j1.+2"} {
		t.Run("malformed "+id, func(t *testing.T) {
			c := newConsole(t, nil)
			rec := c.do(t, req{path: "/jobs/jrun/events", login: "rita", header: map[string]string{"Last-Event-ID": id}})
			if rec.Code != http.StatusBadRequest {
				t.Errorf("Last-Event-ID %q: %d %s", id, rec.Code, rec.Body)
			}
		})
	}
}

// TestConsole_events_tailCut: when a running step outgrows the output
// limit, the journal keeps its head, a marker for the cut middle and its
// tail. A stream that sent lines now cut sends a marker for what it did not
// send, and the tail lines after it: no line twice. A line it sent that is
// cut since stays on the page, and the marker does not count it.
func TestConsole_events_tailCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newConsole(t, nil)
		at := testNow.Add(-time.Minute)
		set := func(out string) {
			c.journal.update("jrun", func(j *executor.Job) {
				j.Steps = []executor.StepRun{{Job: "jrun", Seq: 1, Name: "build", ExitCode: -1, Started: at, Output: out}}
			})
		}
		set("a1\na2\na3\n")
		w, _, stop := openStream(t, c.h, "/jobs/jrun/events", "rita", "")
		defer stop()
		synctest.Wait()
		sent := []tailEvent{evStep("j1.0", 1, "build", at), evLine("j1.3", 1, "a1", at), evLine("j1.6", 1, "a2", at), evLine("j1.9", 1, "a3", at)}
		expect(t, w, "before the cut", sent...)

		steps := []struct {
			out  string
			want []tailEvent
		}{
			// a2..a4 cut (9 bytes): a4 was never sent.
			{"a1\n[… 9 bytes cut …]\na5\na6\n", []tailEvent{evLine("j1.12", 1, "[… 3 bytes cut …]", at), evLine("j1.15", 1, "a5", at), evLine("j1.18", 1, "a6", at)}},
			// a5 and a6 cut too, but this stream sent them: no marker.
			{"a1\n[… 15 bytes cut …]\na7\na8\n", []tailEvent{evLine("j1.21", 1, "a7", at), evLine("j1.24", 1, "a8", at)}},
			// a9 cut before it was sent; a10 is new.
			{"a1\n[… 24 bytes cut …]\na10\n", []tailEvent{evLine("j1.27", 1, "[… 3 bytes cut …]", at), evLine("j1.31", 1, "a10", at)}},
			// Nothing new: nothing sent.
			{"a1\n[… 24 bytes cut …]\na10\n", nil},
		}
		for _, st := range steps {
			set(st.out)
			time.Sleep(tailEvery)
			synctest.Wait()
			sent = append(sent, st.want...)
			expect(t, w, st.out, sent...)
		}

		// A new stream shows the journal's record as it is.
		w2, _, stop2 := openStream(t, c.h, "/jobs/jrun/events", "rita", "")
		defer stop2()
		synctest.Wait()
		expect(t, w2, "a new stream", evStep("j1.0", 1, "build", at), evLine("j1.3", 1, "a1", at),
			evLine("j1.27", 1, "[… 24 bytes cut …]", at), evLine("j1.31", 1, "a10", at))
	})
}

// TestConsole_events_tailWatch: the page of a final job whose post-deploy
// watch runs on another replica tails the watch from the journal and ends
// with the watch (here a rollback: the job's end is the rollback's), not at
// the job's end.
func TestConsole_events_tailWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newConsole(t, nil)
		j := watchedJob()
		j.Steps[1].Output += "\n" // the watch prints whole lines
		c.journal.update("j3", func(x *executor.Job) { *x = j })
		w, done, stop := openStream(t, c.h, "/jobs/j3/events", "rita", "")
		defer stop()
		synctest.Wait()
		wat := j.Steps[1].Started
		sent := []tailEvent{evStep("j1.0", 1, "fetch", j.Started), evDone("j1.done", 1, 0, 2*time.Second, j.Started),
			evStep("j2.0", 2, "watch", wat), evLine("j2.19", 2, "watching for 10m0s", wat)}
		expect(t, w, "the watch runs", sent...)

		c.journal.update("j3", func(j *executor.Job) {
			j.Steps[1].Output = "watching for 10m0s\n+1m0s degraded (1 of 1): 502 from /health\n"
			j.Steps = append(j.Steps, executor.StepRun{Job: "j3", Seq: 3, Name: "rollback: fetch", ExitCode: -1, Started: wat.Add(time.Minute)})
			j.Steps[1].ExitCode, j.Steps[1].Duration = 1, time.Minute
		})
		time.Sleep(tailEvery)
		synctest.Wait()
		sent = append(sent, evLine("j2.61", 2, "+1m0s degraded (1 of 1): 502 from /health", wat), evDone("j2.done", 2, 1, time.Minute, wat),
			evStep("j3.0", 3, "rollback: fetch", wat.Add(time.Minute)))
		expect(t, w, "the rollback runs", sent...)

		end := wat.Add(2 * time.Minute)
		c.journal.update("j3", func(j *executor.Job) {
			j.Steps[2].ExitCode, j.Steps[2].Duration = 0, time.Second
			j.State, j.Description, j.Finished = executor.StateFailure, "rolled back after 1 min: 502 from /health", end
		})
		time.Sleep(tailEvery)
		synctest.Wait()
		sent = append(sent, evDone("j3.done", 3, 0, time.Second, wat.Add(time.Minute)),
			evEnd(executor.StateFailure, "rolled back after 1 min: 502 from /health", end))
		expect(t, w, "the watch's end", sent...)
		select {
		case <-done:
		default:
			t.Fatal("the stream goes on after end")
		}
	})
}

// TestConsole_events_tailOutput: without permission to see output (the
// "none" mode without ShowOutput), a tailed stream leaves out "line"
// events, as the live one does; without Live at all, running jobs are
// tailed; and a job read that fails ends the stream (the browser
// reconnects).
func TestConsole_events_tailOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixtureWith(t, nil, nil) // no Live
		f.journal.jobs = historyJobs()
		f.journal.update("jrun", runningJob)
		w, done, stop := openStream(t, f.h, "/jobs/jrun/events", "", "")
		defer stop()
		synctest.Wait()
		at := testNow.Add(-time.Minute)
		expect(t, w, "without output", evStep("j1.0", 1, "fetch", at), evDone("j1.done", 1, 0, time.Second, at), evStep("j2.0", 2, "build", at.Add(time.Second)))

		f.journal.mu.Lock()
		f.journal.err = context.DeadlineExceeded
		f.journal.mu.Unlock()
		time.Sleep(tailEvery)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the stream goes on after the journal failed")
		}
	})
}

// TestTailer_clipped: the watch's output, once it outgrows the limit, keeps
// only its end after "…", its first line cut anywhere. A stream places its
// lines after the last one it sent; when that was dropped too, it marks the
// gap with "…" again; a stream resuming inside such an output (no line
// sent by it) starts over with a reset.
func TestTailer_clipped(t *testing.T) {
	at := testNow
	job := func(out string, exit int) executor.Job {
		return executor.Job{ID: "j", State: executor.StateRunning, Created: testNow.Add(-time.Hour),
			Steps: []executor.StepRun{{Seq: 1, Name: "watch", ExitCode: exit, Started: at, Output: out}}}
	}
	tr := &tailer{}
	steps := []struct {
		out  string
		want []tailEvent
	}{
		{"c1\nc2\n", []tailEvent{evStep("j1.0", 1, "watch", at), evLine("j1.3", 1, "c1", at), evLine("j1.6", 1, "c2", at)}},
		{"…\n1\nc2\nc3\n", []tailEvent{evLine("j1.9", 1, "c3", at)}},
		{"…\nc3\nc4\nc5\n", []tailEvent{evLine("j1.12", 1, "c4", at), evLine("j1.15", 1, "c5", at)}},
		{"…\n6\nc7\nc8\n", []tailEvent{evLine("j1.4", 1, "…", at), evLine("j1.7", 1, "c7", at), evLine("j1.10", 1, "c8", at)}},
		{"…\n6\nc7\nc8\n", nil},
	}
	for i, st := range steps {
		got, end := tr.next(job(st.out, -1))
		if end || !reflect.DeepEqual(got, st.want) {
			t.Fatalf("step %d (%q): %v, end %v; want %v", i, st.out, got, end, st.want)
		}
	}

	resumed := &tailer{pos: tailPos{seq: 1, off: 10}}
	got, _ := resumed.next(job("…\n6\nc7\nc8\n", -1))
	want := []tailEvent{evReset(testNow.Add(-time.Hour)), evStep("j1.0", 1, "watch", at), evLine("j1.4", 1, "…", at),
		evLine("j1.7", 1, "c7", at), evLine("j1.10", 1, "c8", at)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resume inside a clipped output: %v\nwant %v", got, want)
	}
	// The reset stream goes on from where it is.
	if got, _ := resumed.next(job("…\n7\nc8\nc9\n", -1)); !reflect.DeepEqual(got, []tailEvent{evLine("j1.13", 1, "c9", at)}) {
		t.Errorf("after the reset: %v", got)
	}
}

// TestTailPos_id: every position's ID parses back to it.
func TestTailPos_id(t *testing.T) {
	for _, p := range []tailPos{{seq: 1}, {seq: 3, off: 1024}, {seq: 12, done: true}} {
		if got, ok := parseTailPos(p.id()); !ok || got != p {
			t.Errorf("parseTailPos(%q) = %+v, %v; want %+v", p.id(), got, ok, p)
		}
	}
}

// BenchmarkTailer_next is one read of a stream that is up to date with a
// running step whose output is at the executor's default limit (16 KiB,
// cut): what each tailed page costs per 500 ms besides the journal read.
func BenchmarkTailer_next(b *testing.B) {
	var out strings.Builder
	for out.Len() < 4<<10 {
		out.WriteString("head line of some build output\n")
	}
	out.WriteString(executor.CutMarker(1 << 20))
	out.WriteByte('\n')
	for out.Len() < 16<<10 {
		out.WriteString("tail line of some build output\n")
	}
	j := executor.Job{ID: "j", State: executor.StateRunning, Steps: []executor.StepRun{
		{Seq: 1, Name: "fetch", ExitCode: 0, Output: "done\n"},
		{Seq: 2, Name: "build", ExitCode: -1, Output: out.String()}}}
	t := &tailer{}
	if evs, _ := t.next(j); len(evs) < 100 {
		b.Fatalf("%d events", len(evs))
	}
	b.ReportAllocs()
	for b.Loop() {
		if evs, _ := t.next(j); len(evs) != 0 {
			b.Fatalf("%d events on an unchanged record", len(evs))
		}
	}
}
