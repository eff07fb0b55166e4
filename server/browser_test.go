package server

import (
	"context"
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

// TestConsole_browser_liveLog follows a running job's page in headless
// Chromium: under the pages' Content-Security-Policy the script runs and
// the style sheet applies; lines arrive as text (markup in them stays
// text); the running step shows its elapsed time on the server's clock;
// at "end" the page reloads into the journal's final page, which has no
// script.
func TestConsole_browser_liveLog(t *testing.T) {
	c := newConsole(t, nil)
	c.auth.as = "alice"
	ch := make(chan executor.LogEvent, 16)
	c.live.open["jrun"] = ch
	ts := httptest.NewServer(c.h)
	t.Cleanup(ts.Close)
	b := browsertest.New(t, time.Minute)

	b.Do("open the running job", chromedp.Navigate(ts.URL+"/jobs/jrun"))
	if got := browsertest.Get(b, "read the note", chromedp.Text(chromedp.CSS("#live-note"))); got != "This deploy has not ended: reload to see progress." {
		t.Errorf("note before any event: %q", got)
	}
	// The style sheet applies: the state badge is rounded.
	if got := browsertest.Get(b, "read a style", chromedp.Evaluate[string](`getComputedStyle(document.querySelector(".state")).borderTopLeftRadius`)); got != "16px" {
		t.Errorf("state badge radius %q: the style sheet did not apply", got)
	}

	start := testNow.Add(-65 * time.Second) // on the server's clock (data-now is testNow)
	ch <- executor.LogEvent{ID: 1, Kind: executor.EventStep, Step: 1, Name: "fetch", Time: start}
	ch <- executor.LogEvent{ID: 2, Kind: executor.EventLine, Step: 1, Line: "Fetching origin", Time: start}
	ch <- executor.LogEvent{ID: 3, Kind: executor.EventLine, Step: 1, Line: `<img src=x onerror="document.title='owned'">`, Time: start}
	b.Do("see the lines", chromedp.Poll[chromedp.Void](
		`document.querySelector("#steps pre") && document.querySelector("#steps pre").textContent === "Fetching origin\n<img src=x onerror=\"document.title='owned'\">\n"`,
		chromedp.WithPollingTimeout(30*time.Second)))
	meta := browsertest.Get(b, "read the running step", chromedp.Poll[string](
		`(m => /^running · 1m[0-9]+s$/.test(m) && m)(document.querySelector("#steps .step .meta").textContent)`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if !strings.HasPrefix(meta, "running · 1m") {
		t.Errorf("running step meta %q", meta)
	}
	if got := browsertest.Get(b, "read the note", chromedp.Text(chromedp.CSS("#live-note"))); got != "Live: lines appear as the VM prints them." {
		t.Errorf("note while live: %q", got)
	}
	if got := browsertest.Get(b, "read the title", chromedp.Evaluate[string](`document.title`)); got != "Job jrun · production" {
		t.Errorf("title %q: a line ran as markup", got)
	}

	ch <- executor.LogEvent{ID: 4, Kind: executor.EventDone, Step: 1, Exit: 0, Millis: 2000, Time: start}
	b.Do("see the step end", chromedp.Poll[chromedp.Void](
		`document.querySelector("#steps .step .meta").textContent === "exit 0 · 2s"`, chromedp.WithPollingTimeout(30*time.Second)))

	// The job ends: the journal has the final record before the event.
	jobs := historyJobs()
	jobs[0].State, jobs[0].Finished, jobs[0].Description = executor.StateSuccess, testNow, "deployed d00dfee"
	c.journal.set(jobs)
	ch <- executor.LogEvent{ID: 5, Kind: executor.EventEnd, State: executor.StateSuccess, Description: "deployed d00dfee", Time: testNow}
	pageShows(t, b, "the final page",
		`document.querySelector("h1 .state") && document.querySelector("h1 .state").textContent === "success" && !document.querySelector("#live-note") && !document.querySelector("script")`)
}

// TestConsole_browser_rollback presses "Roll back" on the history page and
// confirms, in headless Chromium without any script: the form carries the
// session's token, the browser's Origin and Sec-Fetch-Site pass, and the
// rollback is queued in the person's name.
func TestConsole_browser_rollback(t *testing.T) {
	c := newConsole(t, nil)
	c.auth.as = "alice"
	ts := httptest.NewServer(c.h)
	t.Cleanup(ts.Close)
	b := browsertest.New(t, time.Minute)

	b.Do("open the history and press roll back",
		chromedp.Navigate(ts.URL+"/targets/production"),
		chromedp.Click(chromedp.CSS(`a[href="/targets/production/deploy?sha=`+shaB+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)))
	q := browsertest.Get(b, "read the question", chromedp.Text(chromedp.CSS("form p")))
	if q != "Roll back production to 89abcde (deployed 3d ago by hubot)?" {
		t.Errorf("question %q", q)
	}
	b.Do("confirm", chromedp.Click(chromedp.CSS(`button[type=submit]`)))
	pageShows(t, b, "the new job's page", `location.pathname === "/jobs/job-1"`)
	want := []enqueued{{"production", executor.Trigger{Kind: executor.KindRollback, Repo: prodRepo, Branch: "main", SHA: shaB,
		Actor: "alice", Reason: "rollback by alice in the console", Force: true}}}
	if got := c.queue.calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("queued %+v, want %+v", got, want)
	}
}

// pageShows waits until expr is true in the tab, across navigations (which
// end a Poll), failing the test after 30 s.
func pageShows(t *testing.T, b *browsertest.Browser, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("browser: %s: not shown after 30 s (last error: %v)", what, err)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval, not a synchronisation
	}
}

// TestConsole_browser_replicaSwitch: a page follows the live log of a
// running job until that stream ends (the replica that runs the job went
// away from the balancer's view); the browser reconnects with the live
// stream's last ID to a replica that does not run the job, which tails the
// journal: "reset" clears the steps and the journal's record replays, so
// that no line shows twice. At the job's end the page reloads as before.
func TestConsole_browser_replicaSwitch(t *testing.T) {
	c := newConsole(t, nil)
	c.auth.as = "alice"
	start := testNow.Add(-time.Minute)
	c.journal.update("jrun", func(j *executor.Job) {
		j.Steps = []executor.StepRun{{Job: "jrun", Seq: 1, Name: "fetch", ExitCode: -1, Started: start, Output: "Fetching origin\nremote: done\n"}}
	})
	ch := make(chan executor.LogEvent, 16)
	c.live.open["jrun"] = ch
	ts := httptest.NewServer(c.h)
	t.Cleanup(ts.Close)
	b := browsertest.New(t, time.Minute)

	b.Do("open the running job", chromedp.Navigate(ts.URL+"/jobs/jrun"))
	ch <- executor.LogEvent{ID: 1, Kind: executor.EventStep, Step: 1, Name: "fetch", Time: start}
	ch <- executor.LogEvent{ID: 2, Kind: executor.EventLine, Step: 1, Line: "Fetching origin", Time: start}
	b.Do("see the live line", chromedp.Poll[chromedp.Void](
		`(p => p && p.textContent === "Fetching origin\n")(document.querySelector("#steps pre"))`, chromedp.WithPollingTimeout(30*time.Second)))

	c.live.mu.Lock()
	delete(c.live.open, "jrun")
	c.live.mu.Unlock()
	close(ch)
	b.Do("see the journal's lines once", chromedp.Poll[chromedp.Void](
		`document.querySelectorAll("#steps .step").length === 1 && document.querySelector("#steps pre").textContent === "Fetching origin\nremote: done\n" && `+
			`document.querySelector("#live-note").textContent === "Live: lines appear as the VM prints them."`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if follows, _ := c.live.calls(); !slices.Equal(follows, []string{"jrun after 0", "jrun after 2"}) {
		t.Errorf("follows %v, want the reconnect after the live stream's last id", follows)
	}

	c.journal.update("jrun", func(j *executor.Job) {
		j.Steps[0].ExitCode, j.Steps[0].Duration = 0, 2*time.Second
		j.State, j.Finished, j.Description = executor.StateSuccess, testNow, "deployed d00dfee"
	})
	pageShows(t, b, "the final page",
		`document.querySelector("h1 .state") && document.querySelector("h1 .state").textContent === "success" && !document.querySelector("#live-note") && !document.querySelector("script")`)
}
