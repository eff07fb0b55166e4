package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// shaD is a fourth commit.
const shaD = "d00dfeedd00dfeedd00dfeedd00dfeedd00dfeed"

// The repositories of testRoutes' targets.
const (
	prodRepo    = "Codertocat/Hello-World"
	stagingRepo = "octo-org/octo-repo"
)

// fakeAuth signs in the people of its sessions by the cookie "session"
// (their login) and answers Access from a table.
type fakeAuth struct {
	mu     sync.Mutex
	people map[string]Person // login → person
	access map[string]Access // login + " " + repo
	err    error             // Access fails with it when set
	as     string            // when set, everyone is this person, cookie or not (a browser)
	asked  int               // Access calls
}

// newFakeAuth knows alice (write to everything), rita (read production's
// repository only) and nora (nothing), all signed in through GitHub.
func newFakeAuth() *fakeAuth {
	return &fakeAuth{
		people: map[string]Person{
			"alice": {Login: "alice", Name: "Alice", Provider: "github", CSRF: "alice-token"},
			"rita":  {Login: "rita", Provider: "github", CSRF: "rita-token"},
			"nora":  {Login: "nora", Provider: "github", CSRF: "nora-token"},
		},
		access: map[string]Access{
			"alice " + prodRepo: AccessWrite, "alice " + stagingRepo: AccessWrite,
			"rita " + prodRepo: AccessRead,
		},
	}
}

func (a *fakeAuth) Who(r *http.Request) (Person, bool) {
	if a.as != "" {
		return a.people[a.as], true
	}
	ck, err := r.Cookie("session")
	if err != nil {
		return Person{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.people[ck.Value]
	return p, ok
}

func (a *fakeAuth) Access(ctx context.Context, p Person, repo string) (Access, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked++
	if a.err != nil {
		return AccessNone, a.err
	}
	return a.access[p.Login+" "+repo], nil
}

func (a *fakeAuth) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "sign-in flow at "+r.URL.Path)
	})
}

func (a *fakeAuth) SignIn(next string) string { return "/auth/signin?next=" + url.QueryEscape(next) }

// fakeLive holds a script of events per job, as Follow's contract says:
// Follow sends those with an ID above after and closes the channel after
// "end"; a job with an open channel gets that one instead, fed by the test.
// A job with neither is not live (ErrNotFound).
type fakeLive struct {
	mu        sync.Mutex
	events    map[string][]executor.LogEvent
	open      map[string]chan executor.LogEvent
	follows   []string // "JOB after N"
	cancels   []string // "JOB by ACTOR"
	cancelErr error
}

func (l *fakeLive) Follow(ctx context.Context, job string, after int64) (<-chan executor.LogEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.follows = append(l.follows, fmt.Sprintf("%s after %d", job, after))
	if ch, ok := l.open[job]; ok {
		return ch, nil
	}
	evs, ok := l.events[job]
	if !ok {
		return nil, fmt.Errorf("follow %s: %w", job, executor.ErrNotFound)
	}
	ch := make(chan executor.LogEvent, len(evs))
	for _, ev := range evs {
		if ev.ID > after {
			ch <- ev
		}
	}
	close(ch)
	return ch, nil
}

func (l *fakeLive) Cancel(ctx context.Context, job, actor string) (executor.Job, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancelErr != nil {
		return executor.Job{}, l.cancelErr
	}
	l.cancels = append(l.cancels, job+" by "+actor)
	return executor.Job{ID: job, State: executor.StateError}, nil
}

func (l *fakeLive) calls() (follows, cancels []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.follows), slices.Clone(l.cancels)
}

// fakeCommits knows the commits in known and counts every question.
type fakeCommits struct {
	mu    sync.Mutex
	known map[string]CommitInfo // repo@sha
	asked map[string]int
}

func (f *fakeCommits) Commit(ctx context.Context, repo, sha string) (CommitInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked[repo+"@"+sha]++
	if ci, ok := f.known[repo+"@"+sha]; ok {
		return ci, nil
	}
	return CommitInfo{}, errors.New("GitHub answered 502 from api.internal.example")
}

// console is a test server with the console's fakes.
type console struct {
	*fixture
	auth    *fakeAuth
	live    *fakeLive
	commits *fakeCommits
	logs    *syncBuffer
}

// newConsole is a server whose people fakeAuth signs in, with production's
// history (historyJobs) in the journal.
func newConsole(tb testing.TB, edit func(*Options)) *console {
	tb.Helper()
	c := &console{
		auth: newFakeAuth(),
		live: &fakeLive{events: map[string][]executor.LogEvent{}, open: map[string]chan executor.LogEvent{}},
		commits: &fakeCommits{asked: map[string]int{}, known: map[string]CommitInfo{
			prodRepo + "@" + shaA: {Message: "Load the sales assets from S3", Login: "monalisa", Name: "Mona Lisa"},
			prodRepo + "@" + shaC: {Message: "First deploy <b>", Name: "Some One"},
		}},
		logs: &syncBuffer{},
	}
	c.fixture = newFixtureWith(tb, edit, func(d *Deps) {
		d.Auth, d.Live, d.Commits = c.auth, c.live, c.commits
	})
	c.srv.lg = slog.New(slog.NewTextHandler(io.MultiWriter(c.logs, tb.Output()), nil))
	c.journal.jobs = historyJobs()
	return c
}

// historyJobs is production's history, newest first, and a staging job:
//
//	jrun  running  shaD  (cancellable)
//	j3    success  shaA  current
//	j2    failure  shaD
//	j1    success  shaB  3 days ago by hubot
//	j0    success  shaC  4 days ago by octocat
//	js    success  shaA  staging
func historyJobs() []executor.Job {
	job := func(id, target string, st executor.State, sha, actor string, created time.Duration) executor.Job {
		j := executor.Job{
			ID: id, Target: target, State: st, Description: "deployed",
			Trigger: executor.Trigger{Kind: executor.KindPush, Repo: prodRepo, Branch: "main", SHA: sha, Actor: actor,
				Reason: "push by " + actor},
			Created: testNow.Add(-created), Started: testNow.Add(-created + time.Second),
		}
		if target == "staging" {
			j.Trigger.Repo = stagingRepo
		}
		if st.Final() {
			j.Finished = testNow.Add(-created + time.Hour)
		}
		return j
	}
	run := job("jrun", "production", executor.StateRunning, shaD, "octocat", 5*time.Minute)
	run.Steps = []executor.StepRun{{Job: "jrun", Seq: 1, Name: "fetch", Output: "Fetching origin"}}
	return []executor.Job{
		run,
		job("j3", "production", executor.StateSuccess, shaA, "octocat", 3*time.Hour),
		job("j2", "production", executor.StateFailure, shaD, "octocat", 2*24*time.Hour),
		job("j1", "production", executor.StateSuccess, shaB, "hubot", 3*24*time.Hour+time.Hour),
		job("j0", "production", executor.StateSuccess, shaC, "octocat", 4*24*time.Hour+time.Hour),
		job("js", "staging", executor.StateSuccess, shaA, "octocat", time.Hour),
	}
}

// req is a request by login ("" for nobody), with a form for POSTs and
// extra headers.
type req struct {
	method, path, login string
	form                url.Values
	header              map[string]string
}

func (c *console) do(tb testing.TB, r req) *httptest.ResponseRecorder {
	tb.Helper()
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	}
	hr := httptest.NewRequest(cmpOr(r.method, http.MethodGet), r.path, body)
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.login != "" {
		hr.AddCookie(&http.Cookie{Name: "session", Value: r.login})
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	return serve(tb, c.h, hr)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// form is a console form with the csrf token and more fields.
func form(csrf string, kv ...string) url.Values {
	v := url.Values{}
	if csrf != "" {
		v.Set("csrf", csrf)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// TestConsole_signIn: every route but the public ones needs a session; a
// browser is sent to sign in and comes back to the same path and query,
// a program gets 401 JSON. Nothing is queued or cancelled.
func TestConsole_signIn(t *testing.T) {
	const unauthorized = `{"error":"sign in: this needs a signed-in session"}`
	tests := []struct {
		name         string
		r            req
		wantCode     int
		wantLocation string
		wantBody     string
	}{
		{name: "index", r: req{path: "/"}, wantCode: 303, wantLocation: "/auth/signin?next=%2F"},
		{name: "job page", r: req{path: "/jobs/j1"}, wantCode: 303, wantLocation: "/auth/signin?next=%2Fjobs%2Fj1"},
		{name: "job page, browser", r: req{path: "/jobs/j1", header: map[string]string{"Accept": "text/html,*/*"}}, wantCode: 303,
			wantLocation: "/auth/signin?next=%2Fjobs%2Fj1"},
		{name: "unknown job", r: req{path: "/jobs/nope"}, wantCode: 303, wantLocation: "/auth/signin?next=%2Fjobs%2Fnope"},
		{name: "job JSON by format", r: req{path: "/jobs/j1?format=json"}, wantCode: 401, wantBody: unauthorized},
		{name: "job JSON by Accept", r: req{path: "/jobs/j1", header: map[string]string{"Accept": "application/json"}}, wantCode: 401, wantBody: unauthorized},
		{name: "job list", r: req{path: "/jobs?target=production", header: map[string]string{"Accept": "application/json"}}, wantCode: 401, wantBody: unauthorized},
		{name: "events", r: req{path: "/jobs/jrun/events", header: map[string]string{"Accept": "text/event-stream"}}, wantCode: 401, wantBody: unauthorized},
		{name: "history", r: req{path: "/targets/production?page=2"}, wantCode: 303, wantLocation: "/auth/signin?next=%2Ftargets%2Fproduction%3Fpage%3D2"},
		{name: "deploy confirmation", r: req{path: "/targets/production/deploy?sha=" + shaB}, wantCode: 303,
			wantLocation: "/auth/signin?next=" + url.QueryEscape("/targets/production/deploy?sha="+shaB)},
		{name: "deploy", r: req{method: "POST", path: "/targets/production/deploy", form: form("alice-token", "sha", shaB)}, wantCode: 303,
			wantLocation: "/auth/signin?next=%2Ftargets%2Fproduction%2Fdeploy"},
		{name: "cancel confirmation", r: req{path: "/jobs/jrun/cancel"}, wantCode: 303, wantLocation: "/auth/signin?next=%2Fjobs%2Fjrun%2Fcancel"},
		{name: "cancel", r: req{method: "POST", path: "/jobs/jrun/cancel", form: form("alice-token")}, wantCode: 303,
			wantLocation: "/auth/signin?next=%2Fjobs%2Fjrun%2Fcancel"},
		{name: "unknown session", r: req{path: "/", login: "mallory"}, wantCode: 303, wantLocation: "/auth/signin?next=%2F"},

		// Public.
		{name: "healthz", r: req{path: "/healthz"}, wantCode: 200, wantBody: "ok"},
		{name: "readyz", r: req{path: "/readyz"}, wantCode: 200, wantBody: "ready"},
		{name: "sign-in flow", r: req{path: "/auth/signin?next=%2F"}, wantCode: 200, wantBody: "sign-in flow at /auth/signin"},
		{name: "sign-in callback", r: req{path: "/auth/callback", method: "POST"}, wantCode: 200, wantBody: "sign-in flow at /auth/callback"},
		{name: "webhook", r: req{method: "POST", path: "/webhook"}, wantCode: 401,
			wantBody: `{"error":"missing X-Hub-Signature-256: set a secret on the webhook"}`},
		{name: "badge", r: req{path: "/badge/production.svg"}, wantCode: 200},
		{name: "badge JSON", r: req{path: "/badge/production.json"}, wantCode: 200},
		{name: "script", r: req{path: "/static/console.js"}, wantCode: 200},
		{name: "style", r: req{path: "/static/console.css"}, wantCode: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, nil)
			rec := c.do(t, tt.r)
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			if got := rec.Header().Get("Location"); got != tt.wantLocation {
				t.Errorf("Location %q, want %q", got, tt.wantLocation)
			}
			if tt.wantBody != "" && strings.TrimSpace(rec.Body.String()) != tt.wantBody {
				t.Errorf("body %q, want %q", rec.Body, tt.wantBody)
			}
			if tt.wantCode != 200 && strings.Contains(rec.Body.String(), "production") {
				t.Errorf("the answer names a target: %s", rec.Body)
			}
			if n := len(c.queue.calls()); n != 0 {
				t.Errorf("%d jobs queued", n)
			}
			if _, cancels := c.live.calls(); len(cancels) != 0 {
				t.Errorf("cancelled %v", cancels)
			}
		})
	}
}

// TestConsole_privateBadges: with badges: private, a badge needs a session
// and read access; one the person may not read is an unknown target.
func TestConsole_privateBadges(t *testing.T) {
	tests := []struct {
		name, path, login string
		wantCode          int
		wantLocation      string
		wantBody          string
	}{
		{name: "svg, nobody", path: "/badge/production.svg", wantCode: 303, wantLocation: "/auth/signin?next=%2Fbadge%2Fproduction.svg"},
		{name: "json, nobody", path: "/badge/production.json", wantCode: 401, wantBody: `{"error":"sign in: this needs a signed-in session"}`},
		{name: "reader", path: "/badge/production.json", login: "rita", wantCode: 200, wantBody: `"message":"running · d00dfee · 4m ago"`},
		{name: "not a reader", path: "/badge/staging.json", login: "rita", wantCode: 404, wantBody: `"message":"unknown target"`},
		{name: "no access", path: "/badge/production.json", login: "nora", wantCode: 404, wantBody: `"message":"unknown target"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, func(o *Options) { o.PrivateBadges = true })
			rec := c.do(t, req{path: tt.path, login: tt.login})
			if rec.Code != tt.wantCode || rec.Header().Get("Location") != tt.wantLocation || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("got %d %q %s; want %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body, tt.wantCode, tt.wantLocation, tt.wantBody)
			}
		})
	}
}

// TestConsole_noAccessIs404: a person without read access to a target's
// repository gets the answer of a target or job that does not exist, on
// every route.
func TestConsole_noAccessIs404(t *testing.T) {
	tests := []struct {
		name    string
		r       req
		hidden  string // the path of something that does not exist: the same answer
		wantMsg string
	}{
		{name: "job page", r: req{path: "/jobs/j1", login: "nora"}, hidden: "/jobs/nope", wantMsg: "no job "},
		{name: "job JSON", r: req{path: "/jobs/j1?format=json", login: "nora"}, hidden: "/jobs/nope?format=json", wantMsg: "no job "},
		{name: "events", r: req{path: "/jobs/jrun/events", login: "nora"}, hidden: "/jobs/nope/events", wantMsg: "no job "},
		{name: "cancel confirmation", r: req{path: "/jobs/jrun/cancel", login: "nora"}, hidden: "/jobs/nope/cancel", wantMsg: "no job "},
		{name: "cancel", r: req{method: "POST", path: "/jobs/jrun/cancel", login: "nora", form: form("nora-token")},
			hidden: "/jobs/nope/cancel", wantMsg: "no job "},
		{name: "history", r: req{path: "/targets/production", login: "nora"}, hidden: "/targets/nope", wantMsg: "no target "},
		{name: "other target's history", r: req{path: "/targets/staging", login: "rita"}, hidden: "/targets/nope", wantMsg: "no target "},
		{name: "other target's job", r: req{path: "/jobs/js", login: "rita"}, hidden: "/jobs/nope", wantMsg: "no job "},
		{name: "job list", r: req{path: "/jobs?target=staging", login: "rita"}, hidden: "/jobs?target=nope", wantMsg: "no target "},
		{name: "deploy confirmation", r: req{path: "/targets/production/deploy?sha=" + shaB, login: "nora"},
			hidden: "/targets/nope/deploy?sha=" + shaB, wantMsg: "no target "},
		{name: "deploy", r: req{method: "POST", path: "/targets/production/deploy", login: "nora", form: form("nora-token", "sha", shaB)},
			hidden: "/targets/nope/deploy", wantMsg: "no target "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, nil)
			rec := c.do(t, tt.r)
			hr := tt.r
			hr.path = tt.hidden
			missing := c.do(t, hr)
			if rec.Code != http.StatusNotFound || missing.Code != http.StatusNotFound {
				t.Fatalf("status %d (missing: %d), want 404: %s", rec.Code, missing.Code, rec.Body)
			}
			id := strings.Split(strings.TrimPrefix(strings.TrimPrefix(tt.r.path, "/jobs/"), "/targets/"), "/")[0]
			id, _, _ = strings.Cut(id, "?")
			if strings.HasPrefix(tt.r.path, "/jobs?target=") {
				id = strings.TrimPrefix(tt.r.path, "/jobs?target=")
			}
			nope := "nope"
			want := `{"error":"` + tt.wantMsg + id + `"}`
			if got := strings.TrimSpace(rec.Body.String()); got != want {
				t.Errorf("body %s, want %s", got, want)
			}
			if got, want := strings.TrimSpace(missing.Body.String()), `{"error":"`+tt.wantMsg+nope+`"}`; got != want {
				t.Errorf("missing: body %s, want %s", got, want)
			}
			follows, cancels := c.live.calls()
			if len(c.queue.calls()) != 0 || len(cancels) != 0 || len(follows) != 0 {
				t.Errorf("acted: queued %v, cancelled %v, followed %v", c.queue.calls(), cancels, follows)
			}
		})
	}
}

// TestConsole_lists: the index and the job list show only the targets and
// jobs the person may read.
func TestConsole_lists(t *testing.T) {
	tests := []struct {
		login       string
		wantTargets []string
		wantJobs    []string
	}{
		{login: "alice", wantTargets: []string{"production", "staging"}, wantJobs: []string{"jrun", "js", "j3", "j2", "j1", "j0"}},
		{login: "rita", wantTargets: []string{"production"}, wantJobs: []string{"jrun", "j3", "j2", "j1", "j0"}},
		{login: "nora"},
	}
	for _, tt := range tests {
		t.Run(tt.login, func(t *testing.T) {
			c := newConsole(t, nil)
			rec := c.do(t, req{path: "/jobs", login: tt.login, header: map[string]string{"Accept": "application/json"}})
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var out struct{ Jobs []jobView }
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, j := range out.Jobs {
				ids = append(ids, j.ID)
			}
			if !slices.Equal(ids, tt.wantJobs) {
				t.Errorf("jobs %v, want %v", ids, tt.wantJobs)
			}

			rec = c.do(t, req{path: "/", login: tt.login})
			body := rec.Body.String()
			for _, target := range []string{"production", "staging"} {
				link := `href="/targets/` + target + `"`
				if got, want := strings.Contains(body, link), slices.Contains(tt.wantTargets, target); got != want {
					t.Errorf("index links %s: %v, want %v", target, got, want)
				}
			}
			if strings.Contains(body, "octo-org") != slices.Contains(tt.wantTargets, "staging") {
				t.Errorf("index names staging's repository to %s", tt.login)
			}
			if !strings.Contains(body, "signed in as <strong>"+tt.login+`</strong> · <a href="/auth/signout">sign out</a>`) {
				t.Errorf("index does not say who is signed in, or how to sign out")
			}
		})
	}
}

// TestConsole_accessUndecided: when access cannot be decided (GitHub
// unreachable), pages are refused with 503 and lists show nothing.
func TestConsole_accessUndecided(t *testing.T) {
	c := newConsole(t, nil)
	c.auth.err = errors.New("GET https://api.github.com/repos: connection refused")
	rec := c.do(t, req{path: "/jobs/j1?format=json", login: "alice"})
	if rec.Code != http.StatusServiceUnavailable || strings.TrimSpace(rec.Body.String()) != `{"error":"cannot check your access now: try again in a minute"}` {
		t.Errorf("job: %d %s", rec.Code, rec.Body)
	}
	rec = c.do(t, req{path: "/jobs?format=json", login: "alice"})
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"jobs":[]}` {
		t.Errorf("list: %d %s", rec.Code, rec.Body)
	}
	rec = c.do(t, req{method: "POST", path: "/targets/production/deploy", login: "alice", form: form("alice-token", "sha", shaB)})
	if rec.Code != http.StatusServiceUnavailable || len(c.queue.calls()) != 0 {
		t.Errorf("deploy: %d %s, queued %v", rec.Code, rec.Body, c.queue.calls())
	}
}

// TestConsole_readOnly: a reader sees no buttons, and gets 403 on every
// action and its confirmation page.
func TestConsole_readOnly(t *testing.T) {
	c := newConsole(t, nil)
	for _, path := range []string{"/targets/production", "/jobs/jrun"} {
		rec := c.do(t, req{path: path, login: "rita"})
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d", path, rec.Code)
		}
		for _, button := range []string{"/deploy?sha=", "/cancel", "Roll back", "Redeploy"} {
			if strings.Contains(rec.Body.String(), button) {
				t.Errorf("%s shows a reader %q", path, button)
			}
		}
	}
	const forbidden = `{"error":"you have read access only: this needs write access to Codertocat/Hello-World"}`
	for _, r := range []req{
		{method: "POST", path: "/targets/production/deploy", login: "rita", form: form("rita-token", "sha", shaB)},
		{method: "POST", path: "/jobs/jrun/cancel", login: "rita", form: form("rita-token")},
		{path: "/targets/production/deploy?sha=" + shaB, login: "rita"},
		{path: "/jobs/jrun/cancel", login: "rita"},
	} {
		rec := c.do(t, r)
		if rec.Code != http.StatusForbidden || strings.TrimSpace(rec.Body.String()) != forbidden {
			t.Errorf("%s %s: %d %s, want 403 %s", r.method, r.path, rec.Code, rec.Body, forbidden)
		}
	}
	if _, cancels := c.live.calls(); len(c.queue.calls()) != 0 || len(cancels) != 0 {
		t.Errorf("a reader acted: queued %v, cancelled %v", c.queue.calls(), cancels)
	}
}

// A target's page and a job's page ask the person's access once, for the
// check and the buttons both: with GitHub sign-in an access decision is an
// API call with the person's token when it is not cached.
func TestConsole_accessAskedOnce(t *testing.T) {
	c := newConsole(t, nil)
	for _, path := range []string{"/targets/production", "/jobs/jrun"} {
		c.auth.mu.Lock()
		c.auth.asked = 0
		c.auth.mu.Unlock()
		rec := c.do(t, req{path: path, login: "alice"})
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "/cancel") {
			t.Fatalf("%s: status %d, or no cancel button for a writer", path, rec.Code)
		}
		c.auth.mu.Lock()
		asked := c.auth.asked
		c.auth.mu.Unlock()
		if asked != 1 {
			t.Errorf("%s asked Access %d times, want 1", path, asked)
		}
	}
}

// TestConsole_forgedActions: an action without the session's CSRF token,
// with another's, or from another site is refused, and nothing happens.
func TestConsole_forgedActions(t *testing.T) {
	const stale = `{"error":"refused: the form is stale or forged; reload the page and try again"}`
	const crossSite = `{"error":"refused: the request came from another site"}`
	tests := []struct {
		name     string
		csrf     string
		header   map[string]string
		wantBody string
	}{
		{name: "no token", wantBody: stale},
		{name: "wrong token", csrf: "alice-tokeN", wantBody: stale},
		{name: "another person's token", csrf: "rita-token", wantBody: stale},
		{name: "token prefix", csrf: "alice", wantBody: stale},
		{name: "cross-site fetch", csrf: "alice-token", header: map[string]string{"Sec-Fetch-Site": "cross-site"}, wantBody: crossSite},
		{name: "same-site fetch", csrf: "alice-token", header: map[string]string{"Sec-Fetch-Site": "same-site"}, wantBody: crossSite},
		{name: "foreign origin", csrf: "alice-token", header: map[string]string{"Origin": "https://evil.example"}, wantBody: crossSite},
		{name: "null origin", csrf: "alice-token", header: map[string]string{"Origin": "null"}, wantBody: crossSite},
		{name: "lookalike origin", csrf: "alice-token", header: map[string]string{"Origin": "https://deploy.example.com.evil.example"}, wantBody: crossSite},
	}
	for _, tt := range tests {
		for _, r := range []req{
			{method: "POST", path: "/targets/production/deploy", form: form(tt.csrf, "sha", shaB)},
			{method: "POST", path: "/jobs/jrun/cancel", form: form(tt.csrf)},
		} {
			t.Run(tt.name+" "+r.path, func(t *testing.T) {
				c := newConsole(t, func(o *Options) { o.PublicURL = "https://deploy.example.com" })
				r.login, r.header = "alice", tt.header
				rec := c.do(t, r)
				if rec.Code != http.StatusForbidden || strings.TrimSpace(rec.Body.String()) != tt.wantBody {
					t.Errorf("got %d %s, want 403 %s", rec.Code, rec.Body, tt.wantBody)
				}
				if _, cancels := c.live.calls(); len(c.queue.calls()) != 0 || len(cancels) != 0 {
					t.Errorf("acted: queued %v, cancelled %v", c.queue.calls(), cancels)
				}
			})
		}
	}
}

// TestConsole_deploy: a writer's confirmed redeploy or rollback queues a
// forced trigger in their name, logs it, and sends them to the job.
func TestConsole_deploy(t *testing.T) {
	tests := []struct {
		name   string
		sha    string
		header map[string]string
		want   executor.Trigger
	}{
		{name: "rollback", sha: shaB, header: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://deploy.example.com"},
			want: executor.Trigger{Kind: executor.KindRollback, Repo: prodRepo, Branch: "main", SHA: shaB, Actor: "alice",
				Reason: "rollback by alice in the console", Force: true}},
		{name: "redeploy", sha: shaA, header: map[string]string{"Origin": "http://example.com"}, // the request's own host
			want: executor.Trigger{Kind: executor.KindManual, Repo: prodRepo, Branch: "main", SHA: shaA, Actor: "alice",
				Reason: "redeploy by alice in the console", Force: true}},
		{name: "a commit never deployed", sha: shaD, // the executor decides whether it may run
			want: executor.Trigger{Kind: executor.KindRollback, Repo: prodRepo, Branch: "main", SHA: shaD, Actor: "alice",
				Reason: "rollback by alice in the console", Force: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, func(o *Options) { o.PublicURL = "https://deploy.example.com" })
			rec := c.do(t, req{method: "POST", path: "/targets/production/deploy", login: "alice", form: form("alice-token", "sha", tt.sha), header: tt.header})
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/jobs/job-1" {
				t.Fatalf("got %d %q %s, want 303 to /jobs/job-1", rec.Code, rec.Header().Get("Location"), rec.Body)
			}
			if got := c.queue.calls(); !reflect.DeepEqual(got, []enqueued{{"production", tt.want}}) {
				t.Errorf("queued %+v, want %+v", got, tt.want)
			}
			logs := c.logs.String()
			if want := fmt.Sprintf("msg=\"console action\" action=%s login=alice target=production sha=%s job=job-1", tt.want.Kind, tt.sha); !strings.Contains(logs, want) {
				t.Errorf("log lacks %s:\n%s", want, logs)
			}
		})
	}
}

// TestConsole_deploy_refused: what the queue refuses is said plainly, with
// no internal detail.
func TestConsole_deploy_refused(t *testing.T) {
	tests := []struct {
		name     string
		sha      string
		err      error
		wantCode int
		wantBody string
	}{
		{name: "short sha", sha: "89abcde", wantCode: 400, wantBody: `{"error":"sha must be a full commit SHA (40 lower-case hex digits)"}`},
		{name: "no sha", wantCode: 400, wantBody: `{"error":"sha must be a full commit SHA (40 lower-case hex digits)"}`},
		{name: "shutting down", sha: shaB, err: executor.ErrClosed, wantCode: 503, wantBody: `{"error":"deployhook is shutting down: try again in a minute"}`},
		{name: "journal", sha: shaB, err: fmt.Errorf("%w: record job: sqlite: disk full at /var/lib/deployhook/journal.db", executor.ErrJournal),
			wantCode: 503, wantBody: `{"error":"the journal cannot record the deploy now: try again later"}`},
		{name: "other", sha: shaB, err: errors.New("boom at 10.0.0.5"), wantCode: 500, wantBody: `{"error":"could not queue the deploy"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, nil)
			c.queue.err = tt.err
			rec := c.do(t, req{method: "POST", path: "/targets/production/deploy", login: "alice", form: form("alice-token", "sha", tt.sha)})
			if rec.Code != tt.wantCode || strings.TrimSpace(rec.Body.String()) != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestConsole_confirmPages: each action has a page that asks first, works
// without JavaScript (a form) and carries the session's token.
func TestConsole_confirmPages(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		wantCode int
		want     []string
	}{
		{name: "rollback", path: "/targets/production/deploy?sha=" + shaB, wantCode: 200, want: []string{
			"Roll back production to 89abcde (deployed 3d ago by hubot)?",
			`<form method="post" action="/targets/production/deploy">`,
			`<input type="hidden" name="csrf" value="alice-token">`,
			`<input type="hidden" name="sha" value="` + shaB + `">`,
			`<button type="submit">Confirm</button>`, `<a href="/targets/production">Go back</a>`}},
		{name: "redeploy", path: "/targets/production/deploy?sha=" + shaA, wantCode: 200, want: []string{
			"Redeploy production&#39;s current commit 0123456 (deployed 2h ago by octocat)?"}},
		{name: "never deployed", path: "/targets/production/deploy?sha=" + shaD, wantCode: 200, want: []string{
			"Roll back production to d00dfee (never deployed successfully here: it runs only if it is on branch main)?"}},
		{name: "cancel", path: "/jobs/jrun/cancel", wantCode: 200, want: []string{
			"Cancel the deploy of d00dfee to production (job jrun, running since 4m ago)? Its steps are stopped; if it had changed the target, it rolls back.",
			`<form method="post" action="/jobs/jrun/cancel">`, `<input type="hidden" name="csrf" value="alice-token">`}},
		{name: "cancel a finished job", path: "/jobs/j3/cancel", wantCode: 409, want: []string{"job j3 has ended: success"}},
		{name: "bad sha", path: "/targets/production/deploy?sha=main", wantCode: 400, want: []string{"sha must be a full commit SHA"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, nil)
			rec := c.do(t, req{path: tt.path, login: "alice", header: map[string]string{"Accept": "text/html"}})
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			for _, w := range tt.want {
				if !strings.Contains(rec.Body.String(), w) {
					t.Errorf("page lacks %s:\n%s", w, rec.Body)
				}
			}
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self'") {
				t.Errorf("CSP %q", csp)
			}
			if len(c.queue.calls()) != 0 {
				t.Error("a confirmation page queued a deploy")
			}
		})
	}
}

// TestConsole_cancel: a writer's confirmed cancel goes to Live in their
// name; Live's refusals are said plainly.
func TestConsole_cancel(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		err      error
		wantCode int
		wantBody string
		want     []string
	}{
		{name: "running", path: "/jobs/jrun/cancel", wantCode: 303, want: []string{"jrun by alice"}},
		{name: "ended meanwhile", path: "/jobs/jrun/cancel", err: fmt.Errorf("cancel jrun: %w", executor.ErrFinal), wantCode: 409,
			wantBody: `{"error":"job jrun has already ended"}`},
		{name: "run elsewhere", path: "/jobs/jrun/cancel", err: fmt.Errorf("cancel jrun: %w", executor.ErrNotFound), wantCode: 409,
			wantBody: `{"error":"job jrun is not run by this deployhook process: try again in a minute"}`},
		{name: "final in the journal", path: "/jobs/j3/cancel", wantCode: 409, wantBody: `{"error":"job j3 has ended: success"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(t, nil)
			c.live.cancelErr = tt.err
			rec := c.do(t, req{method: "POST", path: tt.path, login: "alice", form: form("alice-token")})
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantBody != "" && strings.TrimSpace(rec.Body.String()) != tt.wantBody {
				t.Errorf("body %s, want %s", rec.Body, tt.wantBody)
			}
			if _, cancels := c.live.calls(); !slices.Equal(cancels, tt.want) {
				t.Errorf("cancels %v, want %v", cancels, tt.want)
			}
			if tt.wantCode == 303 {
				if loc := rec.Header().Get("Location"); loc != "/jobs/jrun" {
					t.Errorf("Location %q", loc)
				}
				if !strings.Contains(c.logs.String(), `msg="console action" action=cancel login=alice target=production sha=`+shaD+` job=jrun`) {
					t.Errorf("the cancel is not logged:\n%s", c.logs)
				}
			}
		})
	}
}

// TestConsole_history: the target's deploys with commits linked on the
// configured GitHub, messages and authors where GitHub answered, compare
// links between successive successful deploys, and a writer's buttons.
func TestConsole_history(t *testing.T) {
	c := newConsole(t, func(o *Options) { o.WebURL = "https://ghe.example.com/" })
	rec := c.do(t, req{path: "/targets/production", login: "alice"})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	const web = "https://ghe.example.com/Codertocat/Hello-World"
	for _, want := range []string{
		`<a href="` + web + `/commit/` + shaA + `"><code>0123456</code></a> Load the sales assets from S3 <span class="muted">by monalisa</span>`,
		`<a href="` + web + `/commit/` + shaC + `"><code>fedcba9</code></a> First deploy &lt;b&gt; <span class="muted">by Some One</span>`,
		`<a href="` + web + `/commit/` + shaB + `"><code>89abcde</code></a> <a href="` + web + `/compare/` + shaC + `...` + shaB + `" class="muted">compare</a>`,
		`<a href="` + web + `/compare/` + shaB + `...` + shaA + `" class="muted">compare</a>`,
		`href="/targets/production/deploy?sha=` + shaA + `">Redeploy 0123456</a>`,
		`href="/targets/production/deploy?sha=` + shaB + `">Roll back to 89abcde</a>`,
		`href="/targets/production/deploy?sha=` + shaC + `">Roll back to fedcba9</a>`,
		`href="/jobs/jrun/cancel">Cancel</a>`,
		"push by octocat", "<td>push by hubot</td>", "<td>59m59s</td>", // trigger and actor, duration
	} {
		if !strings.Contains(body, want) {
			t.Errorf("history lacks %s", want)
		}
	}
	// Only successful deploys of other commits than the current one may be
	// rolled back to; the failure, the current deploy and staging's job have
	// no button, and compare links join successful deploys only.
	if n := strings.Count(body, ">Roll back to "); n != 2 {
		t.Errorf("%d rollback buttons, want 2", n)
	}
	if n := strings.Count(body, ">compare</a>"); n != 2 {
		t.Errorf("%d compare links, want 2", n)
	}
	if strings.Contains(body, `/jobs/js"`) {
		t.Errorf("history shows another target's job")
	}
	if strings.Contains(body, "api.internal.example") {
		t.Error("history shows GitHub's error")
	}
	// Order: newest first.
	order := []string{`<td><a href="/jobs/jrun">`, `<td><a href="/jobs/j3">`, `<td><a href="/jobs/j2">`, `<td><a href="/jobs/j1">`, `<td><a href="/jobs/j0">`}
	last := -1
	for _, o := range order {
		i := strings.Index(body, o)
		if i <= last {
			t.Errorf("%s is out of order", o)
		}
		last = i
	}
}

// TestConsole_history_commitCache: GitHub is asked once per commit; a
// failed answer is not asked again at once.
func TestConsole_history_commitCache(t *testing.T) {
	c := newConsole(t, nil)
	for range 3 {
		if rec := c.do(t, req{path: "/targets/production", login: "rita"}); rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
	}
	want := map[string]int{prodRepo + "@" + shaA: 1, prodRepo + "@" + shaB: 1, prodRepo + "@" + shaC: 1, prodRepo + "@" + shaD: 1}
	c.commits.mu.Lock()
	defer c.commits.mu.Unlock()
	if !reflect.DeepEqual(c.commits.asked, want) {
		t.Errorf("asked %v, want %v", c.commits.asked, want)
	}
}

// TestConsole_history_pages: 25 deploys a page, newest first, with links
// to the newer and older pages.
func TestConsole_history_pages(t *testing.T) {
	c := newConsole(t, nil)
	c.srv.commits = nil // SHAs alone
	var jobs []executor.Job
	for i := range 30 {
		jobs = append(jobs, executor.Job{ID: fmt.Sprintf("p%02d", i), Target: "production", State: executor.StateSuccess,
			Trigger: executor.Trigger{Kind: executor.KindPush, Repo: prodRepo, SHA: shaA},
			Created: testNow.Add(-time.Duration(i) * time.Hour)})
	}
	c.journal.jobs = jobs
	tests := []struct {
		path                 string
		wantFirst, wantLast  string
		wantRows             int
		wantNewer, wantOlder bool
		wantCode             int
	}{
		{path: "/targets/production", wantFirst: "p00", wantLast: "p24", wantRows: 25, wantOlder: true, wantCode: 200},
		{path: "/targets/production?page=2", wantFirst: "p25", wantLast: "p29", wantRows: 5, wantNewer: true, wantCode: 200},
		{path: "/targets/production?page=0", wantCode: 400},
		{path: "/targets/production?page=41", wantCode: 400},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := c.do(t, req{path: tt.path, login: "rita"})
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantCode)
			}
			if tt.wantCode != 200 {
				return
			}
			body := rec.Body.String()
			if n := strings.Count(body, `<td><a href="/jobs/p`); n != tt.wantRows {
				t.Errorf("%d rows, want %d", n, tt.wantRows)
			}
			if !strings.Contains(body, `href="/jobs/`+tt.wantFirst+`"`) || !strings.Contains(body, `href="/jobs/`+tt.wantLast+`"`) {
				t.Errorf("page lacks %s or %s", tt.wantFirst, tt.wantLast)
			}
			if got := strings.Contains(body, ">newer</a>"); got != tt.wantNewer {
				t.Errorf("newer link %v, want %v", got, tt.wantNewer)
			}
			if got := strings.Contains(body, `<a href="/targets/production?page=2">older</a>`); got != tt.wantOlder {
				t.Errorf("older link %v, want %v", got, tt.wantOlder)
			}
		})
	}
}

// TestConsole_output: people signed in through a provider see step output
// and error texts; in the "none" mode only with ShowOutput.
func TestConsole_output(t *testing.T) {
	c := newConsole(t, nil)
	c.journal.jobs = []executor.Job{testJob()}
	rec := c.do(t, req{path: "/jobs/j1?format=json", login: "rita"})
	for _, want := range []string{`"output":"HEAD is now at 0123456"`, `"error":"ssh: dial 10.0.0.5:22: internal detail"`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("a signed-in reader does not see %s", want)
		}
	}
}

// TestConsole_errorPage: a browser gets errors on a page, with the
// console's headers.
func TestConsole_errorPage(t *testing.T) {
	c := newConsole(t, nil)
	rec := c.do(t, req{path: "/targets/nope", login: "alice", header: map[string]string{"Accept": "text/html,application/xhtml+xml"}})
	body := rec.Body.String()
	if rec.Code != http.StatusNotFound || !strings.Contains(body, "<h1>404 Not Found</h1>") || !strings.Contains(body, "<p>no target nope</p>") {
		t.Errorf("got %d %s", rec.Code, body)
	}
	if rec.Header().Get("Content-Security-Policy") != contentSecurityPolicy {
		t.Errorf("no CSP on the error page")
	}
}

// TestConsole_static: the script and style sheet are served with their
// types and an ETag; nothing else is.
func TestConsole_static(t *testing.T) {
	c := newConsole(t, nil)
	for file, ctype := range map[string]string{"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"} {
		rec := c.do(t, req{path: "/static/" + file})
		if rec.Code != 200 || rec.Header().Get("Content-Type") != ctype || rec.Header().Get("ETag") == "" {
			t.Errorf("%s: %d %q", file, rec.Code, rec.Header().Get("Content-Type"))
		}
		again := c.do(t, req{path: "/static/" + file, header: map[string]string{"If-None-Match": rec.Header().Get("ETag")}})
		if again.Code != http.StatusNotModified {
			t.Errorf("%s: %d with its ETag, want 304", file, again.Code)
		}
	}
	for _, p := range []string{"/static/nope.js", "/static/..%2fserver.go", "/static/"} {
		if rec := c.do(t, req{path: p}); rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
	}
}
