package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/browsertest"
)

// watchedJob is j3 (production's current deploy, a success) while its
// post-deploy watch runs: the watch is its last step, started after the
// job's end and not ended (exit code -1).
func watchedJob() executor.Job {
	j := historyJobs()[1]
	j.Steps = []executor.StepRun{
		{Job: j.ID, Seq: 1, Name: "fetch", ExitCode: 0, Started: j.Started, Duration: 2 * time.Second},
		{Job: j.ID, Seq: 2, Name: "watch", ExitCode: -1, Started: j.Finished.Add(time.Millisecond), Duration: time.Minute,
			Output: "watching for 10m0s"},
	}
	return j
}

// watchScript is the watch's live log: the deploy's events, then the
// watch's, which go on after the journal's job is final, up to the watch's
// "end".
func watchScript() []executor.LogEvent {
	at := testNow.Add(-time.Minute)
	return []executor.LogEvent{
		{ID: 1, Kind: "step", Step: 1, Name: "fetch", Time: at},
		{ID: 2, Kind: "done", Step: 1, Exit: 0, Millis: 2000, Time: at},
		{ID: 3, Kind: "end", State: executor.StateSuccess, Description: "deployed", Time: at},
		{ID: 4, Kind: "step", Step: 2, Name: "watch", Time: at},
		{ID: 5, Kind: "line", Step: 2, Line: "+1m0s healthy: 200 OK", Time: at},
		{ID: 6, Kind: "done", Step: 2, Exit: 0, Millis: 60000, Time: at},
		{ID: 7, Kind: "end", State: executor.StateSuccess, Description: "deployed", Time: at},
	}
}

func TestAfterEnd(t *testing.T) {
	w := watchedJob()
	edit := func(f func(j *executor.Job)) executor.Job {
		j := watchedJob()
		j.Steps = slices.Clone(j.Steps)
		f(&j)
		return j
	}
	tests := []struct {
		name string
		job  executor.Job
		want bool
	}{
		{"the watch runs", w, true},
		{"the watch started as the job ended", edit(func(j *executor.Job) { j.Steps[1].Started = j.Finished }), true},
		{"the watch ended", edit(func(j *executor.Job) { j.Steps[1].ExitCode = 0 }), false},
		{"the watch rolled back", edit(func(j *executor.Job) { j.Steps[1].ExitCode = 1; j.State = executor.StateFailure }), false},
		{"the watch's deployhook stopped", edit(func(j *executor.Job) { j.Steps[1].Error = executor.ErrWatchStopped.Error() }), false},
		{"a killed last step", edit(func(j *executor.Job) { j.Steps[1].Started = j.Finished.Add(-time.Second) }), false},
		{"a step that never started", edit(func(j *executor.Job) { j.Steps[1].Started = time.Time{} }), false},
		{"a skipped step", edit(func(j *executor.Job) { j.Steps[1].Skipped = "no change" }), false},
		{"running", edit(func(j *executor.Job) { j.State, j.Finished = executor.StateRunning, time.Time{} }), false},
		{"no steps", edit(func(j *executor.Job) { j.Steps = nil }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := afterEnd(tt.job); got != tt.want {
				t.Errorf("afterEnd = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestConsole_events_watch: a job final in the journal whose watch runs is
// followed through Live to the watch's "end", not ended from the journal.
func TestConsole_events_watch(t *testing.T) {
	c := newConsole(t, nil)
	jobs := historyJobs()
	jobs[1] = watchedJob()
	c.journal.set(jobs)
	c.live.events["j3"] = watchScript()
	rec := c.do(t, req{path: "/jobs/j3/events?after=3", login: "rita"})
	if got, want := rec.Body.String(), sse(t, watchScript()[3:]...); rec.Code != http.StatusOK || got != want {
		t.Errorf("got %d\n%s\nwant\n%s", rec.Code, got, want)
	}
	if follows, _ := c.live.calls(); !slices.Equal(follows, []string{"j3 after 3"}) {
		t.Errorf("follows %v", follows)
	}
}

// TestConsole_Job_watch: the page of a final job whose watch runs loads the
// live log script and says the watch runs; a final job whose last step was
// killed (exit -1, started before the end) stays a static page.
func TestConsole_Job_watch(t *testing.T) {
	c := newConsole(t, nil)
	killed := watchedJob()
	killed.ID = "j2"
	killed.State = executor.StateFailure
	killed.Steps[1].Name, killed.Steps[1].Started = "migrate", killed.Finished.Add(-time.Second)
	jobs := historyJobs()
	jobs[1], jobs[2] = watchedJob(), killed
	c.journal.set(jobs)

	body := c.do(t, req{path: "/jobs/j3", login: "alice"}).Body.String()
	for _, want := range []string{`<script src="/static/console.js"></script>`, `data-events="/jobs/j3/events"`, `data-final="success"`,
		"This deploy has ended; its post-deploy watch is running: reload to see its checks."} {
		if !strings.Contains(body, want) {
			t.Errorf("the watched job's page lacks %s", want)
		}
	}
	if strings.Contains(body, "/jobs/j3/cancel") {
		t.Error("a final job has a cancel button")
	}
	body = c.do(t, req{path: "/jobs/j2", login: "alice"}).Body.String()
	if strings.Contains(body, "<script") || strings.Contains(body, "data-events") || strings.Contains(body, "live-note") {
		t.Errorf("a final job with a killed step follows a live log:\n%s", body)
	}
}

// TestConsole_browser_watch follows a watch in headless Chromium: the page
// of a final job whose watch runs takes the watch's checks as they come and,
// at the watch's end (here a rollback), shows the job's new state in place,
// without reloading: a reload would find the same page, and reload again,
// for ever. When the watch runs on another replica (Follow: not found), the
// page follows it from the journal, to its end, in place too.
func TestConsole_browser_watch(t *testing.T) {
	c := newConsole(t, nil)
	c.auth.as = "alice"
	jobs := historyJobs()
	jobs[1] = watchedJob()
	elsewhere := watchedJob()
	elsewhere.ID = "j2"
	elsewhere.Steps[1].Output += "\n"
	jobs[2] = elsewhere
	c.journal.set(jobs)
	ch := make(chan executor.LogEvent, 16)
	c.live.open["j3"] = ch
	ts := httptest.NewServer(c.h)
	t.Cleanup(ts.Close)
	b := browsertest.New(t, time.Minute)

	b.Do("open the watched job", chromedp.Navigate(ts.URL+"/jobs/j3"),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	at := testNow.Add(-time.Minute)
	ch <- executor.LogEvent{ID: 4, Kind: "step", Step: 2, Name: "watch", Time: at}
	ch <- executor.LogEvent{ID: 5, Kind: "line", Step: 2, Line: "+30s healthy: 200 OK", Time: at}
	ch <- executor.LogEvent{ID: 6, Kind: "line", Step: 2, Line: "+1m0s degraded (1 of 1): 502 from /health", Time: at}
	b.Do("see the checks", chromedp.Poll[chromedp.Void](
		`(p => p && p.textContent === "+30s healthy: 200 OK\n+1m0s degraded (1 of 1): 502 from /health\n")(document.querySelector("#steps .step[data-seq='2'] pre"))`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if got := browsertest.Get(b, "read the note", chromedp.Text(chromedp.CSS("#live-note"))); got != "Live: the watch's checks appear as they run." {
		t.Errorf("note while the watch runs: %q", got)
	}
	ch <- executor.LogEvent{ID: 7, Kind: "done", Step: 2, Exit: 1, Millis: 61000, Time: at}
	ch <- executor.LogEvent{ID: 8, Kind: "end", State: executor.StateFailure, Description: "rolled back after 1 min: 502 from /health", Time: at}
	b.Do("see the end in place", chromedp.Poll[chromedp.Void](
		`document.querySelector("h1 .state").textContent === "failure" && document.querySelector("h1 .state").className === "state failure" && `+
			`document.getElementById("description").textContent === "rolled back after 1 min: 502 from /health" && `+
			`document.querySelector("#live-note").textContent === "The post-deploy watch has ended." && `+
			`document.querySelector("#steps .step[data-seq='2'] .meta").textContent === "exit 1 · 1m1s" && window.notReloaded === true`,
		chromedp.WithPollingTimeout(30*time.Second)))

	b.Do("open a watched job that another replica runs", chromedp.Navigate(ts.URL+"/jobs/j2"),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	b.Do("see the watch from the journal", chromedp.Poll[chromedp.Void](
		`(p => p && p.textContent === "watching for 10m0s\n")(document.querySelector("#steps .step[data-seq='2'] pre")) && `+
			`document.querySelector("#live-note").textContent === "Live: the watch's checks appear as they run."`,
		chromedp.WithPollingTimeout(30*time.Second)))
	c.journal.update("j2", func(j *executor.Job) {
		j.Steps[1].Output += "watch passed: healthy for 10m0s\n"
		j.Steps[1].ExitCode, j.Steps[1].Duration = 0, 10*time.Minute
	})
	b.Do("see the watch's end in place", chromedp.Poll[chromedp.Void](
		`document.querySelector("#steps .step[data-seq='2'] pre").textContent === "watching for 10m0s\nwatch passed: healthy for 10m0s\n" && `+
			`document.querySelector("#steps .step[data-seq='2'] .meta").textContent === "exit 0 · 10m0s" && `+
			`document.querySelector("#live-note").textContent === "The post-deploy watch has ended." && `+
			`document.querySelector("h1 .state").textContent === "success" && window.notReloaded === true`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if follows, _ := c.live.calls(); !slices.Equal(follows, []string{"j3 after 0", "j2 after 0"}) {
		t.Errorf("follows %v, want one per page", follows)
	}
}

// TestConsole_watchStopped: a final job whose watch's deployhook stopped
// (the step ended by another process with executor.ErrWatchStopped, exit
// -1) is over: its page is static, and its event stream is the journal's
// one "end", not a tail of a watch that no one runs.
func TestConsole_watchStopped(t *testing.T) {
	c := newConsole(t, nil)
	stopped := watchedJob()
	stopped.Steps[1].Error = executor.ErrWatchStopped.Error()
	stopped.Steps[1].Output += "\nwatch ended: deployhook stopped before the watch finished; the deploy stays a success\n"
	jobs := historyJobs()
	jobs[1] = stopped
	c.journal.set(jobs)
	if afterEnd(stopped) {
		t.Fatal("afterEnd reads a stopped watch as running: its stream would tail the journal for ever")
	}

	body := c.do(t, req{path: "/jobs/j3", login: "alice"}).Body.String()
	if strings.Contains(body, "<script") || strings.Contains(body, "data-events") || strings.Contains(body, "live-note") {
		t.Errorf("the page of a job whose watch stopped follows a live log:\n%s", body)
	}
	rec := c.do(t, req{path: "/jobs/j3/events", login: "alice"})
	want := sse(t, executor.LogEvent{Kind: executor.EventEnd, State: stopped.State, Description: stopped.Description, Time: testNow})
	if got := rec.Body.String(); rec.Code != http.StatusOK || got != want {
		t.Errorf("got %d\n%s\nwant\n%s", rec.Code, got, want)
	}
}

// TestConsole_watchResumed: a job whose watch a stopped deployhook left and
// the next one resumed has two watch steps, the first ended with
// executor.ErrWatchStopped, the second (its last step) running: its page
// follows the live log, and a stream tailing the journal (the watch runs
// on another replica) shows both steps, the first one done, and ends with
// the resumed watch, not before.
func TestConsole_watchResumed(t *testing.T) {
	c := newConsole(t, nil)
	j := watchedJob()
	stopped := "watching for 10m0s\nwatch interrupted: deployhook stopped; resumed in the next step\n"
	resumed := "watch resumed after deployhook stopped: 7m0s of 10m0s left\n"
	at := j.Finished.Add(3 * time.Minute)
	j.Steps[1].Output, j.Steps[1].Error = stopped, executor.ErrWatchStopped.Error()
	j.Steps = append(j.Steps, executor.StepRun{Job: j.ID, Seq: 3, Name: "watch", ExitCode: -1, Started: at, Output: resumed})
	if !afterEnd(j) {
		t.Fatal("afterEnd reads a resumed watch as over")
	}
	jobs := historyJobs()
	jobs[1] = j
	c.journal.set(jobs)
	body := c.do(t, req{path: "/jobs/j3", login: "alice"}).Body.String()
	if !strings.Contains(body, `data-events="/jobs/j3/events"`) || !strings.Contains(body, "its post-deploy watch is running") {
		t.Errorf("the page of a job whose watch was resumed does not follow it:\n%s", body)
	}

	tl := &tailer{final: true}
	wat := j.Steps[1].Started
	line1 := len("watching for 10m0s\n")
	want := []tailEvent{evStep("j1.0", 1, "fetch", j.Started), evDone("j1.done", 1, 0, 2*time.Second, j.Started),
		evStep("j2.0", 2, "watch", wat), evLine(fmt.Sprintf("j2.%d", line1), 2, "watching for 10m0s", wat),
		evLine(fmt.Sprintf("j2.%d", len(stopped)), 2, "watch interrupted: deployhook stopped; resumed in the next step", wat),
		evDone("j2.done", 2, -1, time.Minute, wat),
		evStep("j3.0", 3, "watch", at), evLine(fmt.Sprintf("j3.%d", len(resumed)), 3, strings.TrimSuffix(resumed, "\n"), at)}
	if got, end := tl.next(j); end || !reflect.DeepEqual(got, want) {
		t.Fatalf("tail of the resumed watch: end %v\n got %v\nwant %v", end, got, want)
	}
	j.Steps[2].ExitCode, j.Steps[2].Duration = 0, 7*time.Minute
	want = []tailEvent{evDone("j3.done", 3, 0, 7*time.Minute, at), evEnd(j.State, j.Description, j.Finished)}
	if got, end := tl.next(j); !end || !reflect.DeepEqual(got, want) {
		t.Errorf("tail once the resumed watch passed: end %v\n got %v\nwant %v", end, got, want)
	}
}
