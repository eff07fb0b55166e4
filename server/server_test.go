package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// testSecret signs every test delivery; no response may contain it.
var testSecret = []byte("It's a Secret to Everybody")

const (
	shaA = "0123456789abcdef0123456789abcdef01234567"
	shaB = "89abcdef0123456789abcdef0123456789abcdef"
	shaC = "fedcba9876543210fedcba9876543210fedcba98"
)

// testNow is the clock of every test server.
var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// enqueued is one call of fakeQueue.Enqueue.
type enqueued struct {
	Target  string
	Trigger executor.Trigger
}

// fakeQueue records what it is given; it knows deliveries it has seen and, as
// the Queue contract says, ignores an automatic trigger whose body it has seen
// under another delivery GUID.
type fakeQueue struct {
	mu     sync.Mutex
	got    []enqueued
	err    error
	seen   map[string]string // delivery+target → job id
	bodies map[string]string // body hash+target → the delivery it came in
	known  map[string]bool   // targets; nil: all
}

func (q *fakeQueue) Enqueue(ctx context.Context, target string, t executor.Trigger) (executor.Enqueued, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return executor.Enqueued{}, q.err
	}
	if q.known != nil && !q.known[target] {
		return executor.Enqueued{}, fmt.Errorf("enqueue %s: %w", target, executor.ErrUnknownTarget)
	}
	if q.seen == nil {
		q.seen = map[string]string{}
	}
	key := t.Delivery + "/" + target
	if id, ok := q.seen[key]; ok {
		return executor.Enqueued{Job: executor.Job{ID: id, Target: target, Trigger: t}, Duplicate: true, Reason: "delivery seen before"}, nil
	}
	if q.bodies == nil {
		q.bodies = map[string]string{}
	}
	if t.BodyHash != "" {
		bkey := t.BodyHash + "/" + target
		if d, ok := q.bodies[bkey]; ok && t.Kind.Automatic() {
			return executor.Enqueued{Ignored: "replay: this body was delivered before as " + d}, nil
		}
		q.bodies[bkey] = t.Delivery
	}
	q.got = append(q.got, enqueued{target, t})
	id := fmt.Sprintf("job-%d", len(q.got))
	q.seen[key] = id
	return executor.Enqueued{Job: executor.Job{ID: id, Target: target, Trigger: t, State: executor.StateQueued}}, nil
}

func (q *fakeQueue) calls() []enqueued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]enqueued(nil), q.got...)
}

// fakeJournal serves jobs from a slice, as the journal would: Job with its
// steps, Jobs newest first by creation (of jobs created at the same time, the
// earlier in the slice first) and without steps. It passes the read side of
// the journal's conformance suite (TestFakeJournal).
type fakeJournal struct {
	mu    sync.Mutex     // for set while a server runs
	jobs  []executor.Job // the last recorded first
	err   error          // every call fails with it when set
	panic bool           // Job panics when set
	reads int            // Job calls
}

// set replaces the jobs while requests may be served.
func (j *fakeJournal) set(jobs []executor.Job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.jobs = jobs
}

func (j *fakeJournal) Job(ctx context.Context, id string) (executor.Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.reads++
	if j.panic {
		panic("journal exploded")
	}
	if j.err != nil {
		return executor.Job{}, j.err
	}
	for _, job := range j.jobs {
		if job.ID == id {
			return job, nil
		}
	}
	return executor.Job{}, fmt.Errorf("job %s: %w", id, executor.ErrNotFound)
}

func (j *fakeJournal) Jobs(ctx context.Context, target string, limit int, states ...executor.State) ([]executor.Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return nil, j.err
	}
	sorted := slices.Clone(j.jobs)
	slices.SortStableFunc(sorted, func(a, b executor.Job) int { return b.Created.Compare(a.Created) })
	var out []executor.Job
	for _, job := range sorted {
		if target != "" && job.Target != target {
			continue
		}
		if len(states) > 0 && !slices.Contains(states, job.State) {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		job.Steps = nil
		out = append(out, job)
	}
	return out, nil
}

// fakeResolver answers BranchHead with sha or err and records its calls.
type fakeResolver struct {
	sha   string
	err   error
	calls []string
}

func (r *fakeResolver) BranchHead(ctx context.Context, repo, branch string) (string, error) {
	r.calls = append(r.calls, repo+"@"+branch)
	if _, ok := ctx.Deadline(); !ok {
		return "", errors.New("no deadline on the resolver's context")
	}
	return r.sha, r.err
}

// fakeRollbacks answers RollbackSHA with sha or err.
type fakeRollbacks struct {
	sha   string
	err   error
	calls []string
}

func (r *fakeRollbacks) RollbackSHA(ctx context.Context, target string) (string, error) {
	r.calls = append(r.calls, target)
	return r.sha, r.err
}

// fakeChecker answers Ready with err.
type fakeChecker struct{ err error }

func (c *fakeChecker) Ready(ctx context.Context) error { return c.err }

// testRoutes: production deploys pushes of Codertocat/Hello-World main;
// staging deploys octo-org/octo-repo main after CI (test.yml), and by dispatch.
func testRoutes() []Route {
	return []Route{
		{Target: "production", Repo: "Codertocat/Hello-World", Branch: "main", DeployOn: executor.DeployOnPush,
			DispatchWorkflow: ".github/workflows/deploy.yml"},
		{Target: "staging", Repo: "octo-org/octo-repo", Branch: "main", DeployOn: executor.DeployOnWorkflowRun,
			Workflows:        []string{".github/workflows/test.yml"},
			DispatchWorkflow: ".github/workflows/hello-world-workflow.yml"},
	}
}

// fixture is a test server with its fakes.
type fixture struct {
	srv       *Server
	h         http.Handler
	queue     *fakeQueue
	journal   *fakeJournal
	resolver  *fakeResolver
	rollbacks *fakeRollbacks
	checker   *fakeChecker
}

// testLogger writes to the test's output.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newFixture(tb testing.TB, edit func(*Options)) *fixture {
	tb.Helper()
	return newFixtureWith(tb, edit, nil)
}

// newFixtureWith is newFixture whose Deps editDeps may change (nil: none).
func newFixtureWith(tb testing.TB, edit func(*Options), editDeps func(*Deps)) *fixture {
	tb.Helper()
	f := &fixture{
		queue:     &fakeQueue{},
		journal:   &fakeJournal{},
		resolver:  &fakeResolver{sha: shaB},
		rollbacks: &fakeRollbacks{sha: shaC},
		checker:   &fakeChecker{},
	}
	opts := Options{
		Secrets: [][]byte{testSecret},
		Routes:  testRoutes(),
		Badges:  true,
		Version: "v1.2.3",
	}
	if edit != nil {
		edit(&opts)
	}
	deps := Deps{
		Queue: f.queue, Journal: f.journal, Resolver: f.resolver, Rollbacks: f.rollbacks,
		Checker: f.checker, Now: func() time.Time { return testNow }, Auth: AllowAll("tester"),
	}
	if editDeps != nil {
		editDeps(&deps)
	}
	srv, err := New(testLogger(tb), opts, deps)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	f.srv, f.h = srv, srv.Handler()
	return f
}

// bodyHash is Trigger.BodyHash of body signed with testSecret.
func bodyHash(body []byte) string {
	return bodyID(sign(testSecret, body))
}

// sign returns the X-Hub-Signature-256 value of body under secret.
func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// delivery is a request to POST /webhook.
type delivery struct {
	event   string
	body    []byte
	headers map[string]string // override; "" deletes
}

func (d delivery) request() *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(d.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	req.Header.Set(hdrEvent, d.event)
	req.Header.Set(hdrDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	req.Header.Set(hdrSignature256, sign(testSecret, d.body))
	for k, v := range d.headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return req
}

// serve sends req and checks that no answer ever leaks the secret or a MAC.
func serve(tb testing.TB, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	tb.Helper()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := rec.Body.String()
	leaks := []string{string(testSecret), "second secret", hex.EncodeToString(testSecret)}
	if body != nil {
		for _, s := range [][]byte{testSecret, []byte("second secret")} {
			leaks = append(leaks, strings.TrimPrefix(sign(s, body), "sha256="))
		}
	}
	if sig := req.Header.Get(hdrSignature256); len(sig) > 20 {
		leaks = append(leaks, strings.TrimPrefix(sig, "sha256="))
	}
	for _, l := range leaks {
		if strings.Contains(out, l) {
			tb.Fatalf("answer leaks %q: %s", l, out)
		}
	}
	return rec
}

// payload reads a testdata payload.
func payload(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "github-payloads", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// edited returns the payload with edits applied: "a.b.c" → value.
func edited(tb testing.TB, name string, edits map[string]any) []byte {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload(tb, name), &m); err != nil {
		tb.Fatal(err)
	}
	for path, v := range edits {
		keys := strings.Split(path, ".")
		cur := m
		for _, k := range keys[:len(keys)-1] {
			next, ok := cur[k].(map[string]any)
			if !ok {
				tb.Fatalf("edit %s: %s is not an object", path, k)
			}
			cur = next
		}
		cur[keys[len(keys)-1]] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// pushTo is the real new-branch push payload, edited to push sha to branch of repo.
func pushTo(tb testing.TB, repo, branch, sha string) []byte {
	return edited(tb, "push/with-new-branch.payload.json", map[string]any{
		"ref": "refs/heads/" + branch, "after": sha, "repository.full_name": repo,
	})
}

// runOf is the real completed workflow_run, made a successful run on a push to main.
func runOf(tb testing.TB, edits map[string]any) []byte {
	e := map[string]any{"workflow_run.head_branch": "main", "workflow_run.event": "push"}
	for k, v := range edits {
		e[k] = v
	}
	return edited(tb, "workflow_run/completed.payload.json", e)
}

// dispatch is the real workflow_dispatch payload on main with inputs.
func dispatch(tb testing.TB, inputs map[string]any) []byte {
	return edited(tb, "workflow_dispatch/payload.json", map[string]any{"ref": "refs/heads/main", "inputs": inputs})
}

func decode(tb testing.TB, rec *httptest.ResponseRecorder) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		tb.Fatalf("answer %d is not JSON: %v: %s", rec.Code, err, rec.Body)
	}
	return m
}

// TestServer_Webhook_realPayloads sends every stored GitHub payload, unchanged: none
// of them deploys against the test routes (branch main), and each says why.
func TestServer_Webhook_realPayloads(t *testing.T) {
	var files []string
	err := filepath.WalkDir(filepath.Join("testdata", "github-payloads"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".json") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("found %d payloads, want the whole set", len(files))
	}
	// wantReason by event, or by event/file where files differ.
	wantReason := map[string]string{
		"check_suite":                       "event check_suite is not a deploy trigger",
		"deployment":                        "event deployment is not a deploy trigger",
		"deployment_status":                 "event deployment_status is not a deploy trigger",
		"repository_dispatch":               "event repository_dispatch is not a deploy trigger",
		"status":                            "event status is not a deploy trigger",
		"push":                              "tag deleted: refs/tags/simple-tag",
		"push/with-new-branch.payload.json": "push to refs/heads/master: no target deploys Codertocat/Hello-World branch master",
		"push/with-no-username-committer.payload.json":           "push to refs/heads/master: no target deploys Codertocat/Hello-World branch master",
		"workflow_run/completed.payload.json":                    "workflow run triggered by repository_dispatch, not push",
		"workflow_run/completed.with-pull-requests.payload.json": "workflow run triggered by repository_dispatch, not push",
		"workflow_run":      "workflow run requested",
		"workflow_dispatch": "workflow_dispatch on refs/heads/master: no target deploys octo-org/octo-repo branch master",
	}
	for _, p := range files {
		event := filepath.Base(filepath.Dir(p))
		t.Run(event+"/"+filepath.Base(p), func(t *testing.T) {
			f := newFixture(t, nil)
			body, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			rec := serve(t, f.h, delivery{event: event, body: body}.request())
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", rec.Code, rec.Body)
			}
			m := decode(t, rec)
			if event == "ping" {
				if m["pong"] != true {
					t.Errorf("ping answered %s, want pong", rec.Body)
				}
			} else {
				want, ok := wantReason[event+"/"+filepath.Base(p)]
				if !ok {
					want = wantReason[event]
				}
				if got, _ := m["ignored"].(string); got != want {
					t.Errorf("ignored %q, want %q", got, want)
				}
			}
			if got := f.queue.calls(); len(got) != 0 {
				t.Errorf("queued %+v, want nothing", got)
			}
		})
	}
}

func TestServer_Webhook(t *testing.T) {
	const guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	tests := []struct {
		name      string
		opts      func(*Options)
		setup     func(*fixture)
		d         func(t *testing.T) delivery
		wantCode  int
		wantBody  string // a substring of the answer
		wantQueue []enqueued
		check     func(t *testing.T, f *fixture)
	}{
		{
			name: "push to the configured branch",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}
			},
			wantCode: http.StatusAccepted,
			wantBody: `{"job":"job-1","target":"production","sha":"` + shaA + `"}`,
			wantQueue: []enqueued{{"production", executor.Trigger{Kind: executor.KindPush, Repo: "Codertocat/Hello-World",
				Branch: "main", SHA: shaA, Delivery: guid, Actor: "Codertocat", Reason: "push by Codertocat"}}},
		},
		{
			name: "repository compared case-insensitively",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "codertocat/hello-world", "main", shaA)}
			},
			wantCode: http.StatusAccepted,
			wantBody: `"target":"production"`,
			wantQueue: []enqueued{{"production", executor.Trigger{Kind: executor.KindPush, Repo: "codertocat/hello-world",
				Branch: "main", SHA: shaA, Delivery: guid, Actor: "Codertocat", Reason: "push by Codertocat"}}},
		},
		{
			name: "push to another branch",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "dev", shaA)}
			},
			wantCode: http.StatusOK,
			wantBody: `{"ignored":"push to refs/heads/dev: no target deploys Codertocat/Hello-World branch dev"}`,
		},
		{
			name: "branch compared exactly",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "Main", shaA)}
			},
			wantCode: http.StatusOK,
			wantBody: `no target deploys Codertocat/Hello-World branch Main`,
		},
		{
			name:     "push to another repository",
			d:        func(t *testing.T) delivery { return delivery{event: "push", body: pushTo(t, "a/b", "main", shaA)} },
			wantCode: http.StatusOK,
			wantBody: `{"ignored":"repository a/b is not configured"}`,
		},
		{
			name: "push to a workflow_run target",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "octo-org/octo-repo", "main", shaA)}
			},
			wantCode: http.StatusOK,
			wantBody: `{"ignored":"target staging deploys on workflow_run, not push"}`,
		},
		{
			name:     "push of a tag",
			d:        func(t *testing.T) delivery { return delivery{event: "push", body: payload(t, "push/payload.json")} },
			wantCode: http.StatusOK,
			wantBody: `"ignored":`,
		},
		{
			name: "two targets deploy one push",
			opts: func(o *Options) {
				o.Routes = append(o.Routes, Route{Target: "mirror", Repo: "Codertocat/Hello-World", Branch: "main", DeployOn: executor.DeployOnPush})
			},
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}
			},
			wantCode: http.StatusAccepted,
			wantBody: `{"jobs":[{"job":"job-1","target":"production","sha":"` + shaA + `"},{"job":"job-2","target":"mirror","sha":"` + shaA + `"}]}`,
			wantQueue: []enqueued{
				{"production", executor.Trigger{Kind: executor.KindPush, Repo: "Codertocat/Hello-World", Branch: "main", SHA: shaA, Delivery: guid, Actor: "Codertocat", Reason: "push by Codertocat"}},
				{"mirror", executor.Trigger{Kind: executor.KindPush, Repo: "Codertocat/Hello-World", Branch: "main", SHA: shaA, Delivery: guid, Actor: "Codertocat", Reason: "push by Codertocat"}},
			},
		},
		{
			name:     "workflow_run success on a push to main",
			d:        func(t *testing.T) delivery { return delivery{event: "workflow_run", body: runOf(t, nil)} },
			wantCode: http.StatusAccepted,
			wantBody: `{"job":"job-1","target":"staging","sha":"3484a3fb816e0859fd6e1cea078d76385ff50625"}`,
			wantQueue: []enqueued{{"staging", executor.Trigger{Kind: executor.KindWorkflowRun, Repo: "octo-org/octo-repo",
				Branch: "main", SHA: "3484a3fb816e0859fd6e1cea078d76385ff50625", Delivery: guid, Actor: "Codertocat", Reason: "CI run #163 passed"}}},
		},
		{
			name: "workflow_run re-run",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_run", body: runOf(t, map[string]any{"workflow_run.run_attempt": 2})}
			},
			wantCode: http.StatusAccepted,
			wantQueue: []enqueued{{"staging", executor.Trigger{Kind: executor.KindWorkflowRun, Repo: "octo-org/octo-repo",
				Branch: "main", SHA: "3484a3fb816e0859fd6e1cea078d76385ff50625", Delivery: guid, Actor: "Codertocat", Reason: "CI run #163 passed (attempt 2)"}}},
		},
		{
			name: "workflow_run of another workflow",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_run", body: runOf(t, map[string]any{"workflow_run.path": ".github/workflows/lint.yml", "workflow.path": ".github/workflows/lint.yml"})}
			},
			wantCode: http.StatusOK,
			wantBody: `{"ignored":"workflow .github/workflows/lint.yml is not in target staging's workflows"}`,
		},
		{
			name: "workflow_run for a push target",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_run", body: runOf(t, map[string]any{"repository.full_name": "Codertocat/Hello-World", "workflow_run.head_repository.full_name": "Codertocat/Hello-World"})}
			},
			wantCode: http.StatusOK,
			wantBody: `{"ignored":"target production deploys on push, not workflow_run"}`,
		},
		{
			name: "workflow_run that failed",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_run", body: runOf(t, map[string]any{"workflow_run.conclusion": "failure"})}
			},
			wantCode: http.StatusOK,
			wantBody: `"ignored":`,
		},
		{
			// server.New used to refuse such a route, repeating config's rule;
			// now config alone refuses it, and the server deploys nothing on it.
			name:     "workflow_run for a target without workflows",
			opts:     func(o *Options) { o.Routes[1].Workflows = nil },
			d:        func(t *testing.T) delivery { return delivery{event: "workflow_run", body: runOf(t, nil)} },
			wantCode: http.StatusOK,
			wantBody: `{"ignored":"workflow .github/workflows/test.yml is not in target staging's workflows"}`,
		},
		{
			// One rule for a SHA (gitsha.Valid): the server used to take an
			// upper-case head from the resolver and queue it.
			name:  "workflow_dispatch whose branch head is not lower-case hex",
			setup: func(f *fixture) { f.resolver.sha = strings.ToUpper(shaB) },
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{})}
			},
			wantCode: http.StatusServiceUnavailable,
			wantBody: `{"error":"cannot resolve the head of branch main on GitHub; redeliver from the webhook's Recent Deliveries"}`,
		},
		{
			name: "workflow_dispatch with a sha",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{"sha": strings.ToUpper(shaA)})}
			},
			wantCode: http.StatusAccepted,
			wantBody: `{"job":"job-1","target":"staging","sha":"` + shaA + `"}`,
			wantQueue: []enqueued{{"staging", executor.Trigger{Kind: executor.KindWorkflowDispatch, Repo: "octo-org/octo-repo",
				Branch: "main", SHA: shaA, Delivery: guid, Actor: "Codertocat", Reason: "manual deploy by Codertocat from Actions", Force: true}}},
			check: func(t *testing.T, f *fixture) {
				if len(f.resolver.calls) != 0 {
					t.Errorf("resolver called %v for a dispatch with a sha", f.resolver.calls)
				}
			},
		},
		{
			name: "workflow_dispatch without a sha deploys the branch head",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{"name": "Mona"})}
			},
			wantCode: http.StatusAccepted,
			wantBody: `"sha":"` + shaB + `"`,
			wantQueue: []enqueued{{"staging", executor.Trigger{Kind: executor.KindWorkflowDispatch, Repo: "octo-org/octo-repo",
				Branch: "main", SHA: shaB, Delivery: guid, Actor: "Codertocat", Reason: "manual deploy by Codertocat from Actions", Force: true}}},
			check: func(t *testing.T, f *fixture) {
				if want := []string{"octo-org/octo-repo@main"}; !reflect.DeepEqual(f.resolver.calls, want) {
					t.Errorf("resolver calls %v, want %v", f.resolver.calls, want)
				}
			},
		},
		{
			name:     "workflow_dispatch when the branch head cannot be resolved",
			setup:    func(f *fixture) { f.resolver.err = errors.New("GET https://api.github.com/...: 502") },
			d:        func(t *testing.T) delivery { return delivery{event: "workflow_dispatch", body: dispatch(t, nil)} },
			wantCode: http.StatusServiceUnavailable,
			wantBody: `redeliver from the webhook's Recent Deliveries`,
		},
		{
			name: "workflow_dispatch rollback",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{"action": "rollback", "sha": ""})}
			},
			wantCode: http.StatusAccepted,
			wantBody: `"sha":"` + shaC + `"`,
			wantQueue: []enqueued{{"staging", executor.Trigger{Kind: executor.KindRollback, Repo: "octo-org/octo-repo",
				Branch: "main", SHA: shaC, Delivery: guid, Actor: "Codertocat", Reason: "rollback by Codertocat from Actions", Force: true}}},
			check: func(t *testing.T, f *fixture) {
				if want := []string{"staging"}; !reflect.DeepEqual(f.rollbacks.calls, want) {
					t.Errorf("rollback lookups %v, want %v", f.rollbacks.calls, want)
				}
				if len(f.resolver.calls) != 0 {
					t.Errorf("a rollback resolved the branch head: %v", f.resolver.calls)
				}
			},
		},
		{
			name: "workflow_dispatch rollback to a given sha",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{"action": "rollback", "sha": shaA})}
			},
			wantCode: http.StatusAccepted,
			wantQueue: []enqueued{{"staging", executor.Trigger{Kind: executor.KindRollback, Repo: "octo-org/octo-repo",
				Branch: "main", SHA: shaA, Delivery: guid, Actor: "Codertocat", Reason: "rollback by Codertocat from Actions", Force: true}}},
		},
		{
			name:  "workflow_dispatch rollback with nothing to roll back to",
			setup: func(f *fixture) { f.rollbacks.err = fmt.Errorf("last success: %w", executor.ErrNotFound) },
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{"action": "rollback"})}
			},
			wantCode: http.StatusConflict,
			wantBody: `{"error":"target staging has no previous successful deploy to roll back to"}`,
		},
		{
			name: "workflow_dispatch with a bad sha",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{"sha": "main"})}
			},
			wantCode: http.StatusBadRequest,
			wantBody: `{"error":"input sha \"main\" is not a full 40-hex commit SHA"}`,
		},
		{
			name: "workflow_dispatch with a short sha",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{"sha": shaA[:7]})}
			},
			wantCode: http.StatusBadRequest,
			wantBody: `is not a full 40-hex commit SHA`,
		},
		{
			name: "workflow_dispatch with an unknown action",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: dispatch(t, map[string]any{"action": "destroy"})}
			},
			wantCode: http.StatusBadRequest,
			wantBody: `{"error":"input action \"destroy\": want deploy or rollback"}`,
		},
		{
			name: "workflow_dispatch of another workflow",
			d: func(t *testing.T) delivery {
				return delivery{event: "workflow_dispatch", body: edited(t, "workflow_dispatch/payload.json", map[string]any{"ref": "refs/heads/main", "workflow": ".github/workflows/other.yml"})}
			},
			wantCode: http.StatusOK,
			wantBody: `{"ignored":"workflow .github/workflows/other.yml is not target staging's dispatch workflow (.github/workflows/hello-world-workflow.yml)"}`,
		},
		{
			name: "bad signature",
			d: func(t *testing.T) delivery {
				body := pushTo(t, "Codertocat/Hello-World", "main", shaA)
				return delivery{event: "push", body: body, headers: map[string]string{hdrSignature256: sign([]byte("wrong"), body)}}
			},
			wantCode: http.StatusUnauthorized,
			wantBody: `{"error":"signature does not match: check the webhook's secret"}`,
		},
		{
			name: "signature of another body",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA),
					headers: map[string]string{hdrSignature256: sign(testSecret, pushTo(t, "Codertocat/Hello-World", "main", shaB))}}
			},
			wantCode: http.StatusUnauthorized,
			wantBody: `signature does not match`,
		},
		{
			name: "SHA-1 signature only",
			d: func(t *testing.T) delivery {
				body := pushTo(t, "Codertocat/Hello-World", "main", shaA)
				m := hmac.New(sha1.New, testSecret)
				m.Write(body)
				return delivery{event: "push", body: body, headers: map[string]string{
					hdrSignature256: "", hdrSignatureSHA: "sha1=" + hex.EncodeToString(m.Sum(nil))}}
			},
			wantCode: http.StatusUnauthorized,
			wantBody: `deployhook requires the sha256 signature`,
		},
		{
			name: "no signature",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA), headers: map[string]string{hdrSignature256: ""}}
			},
			wantCode: http.StatusUnauthorized,
			wantBody: `{"error":"missing X-Hub-Signature-256: set a secret on the webhook"}`,
		},
		{
			name: "malformed signature",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA), headers: map[string]string{hdrSignature256: "sha256=xyz"}}
			},
			wantCode: http.StatusUnauthorized,
			wantBody: `malformed X-Hub-Signature-256`,
		},
		{
			name: "malformed JSON",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: []byte(`{"ref": "refs/heads/main", `)}
			},
			wantCode: http.StatusBadRequest,
			wantBody: `{"error":"malformed payload: parse push delivery 72d3162e-cc78-11e3-81ab-4c9367dc0958: `,
		},
		{
			name: "body over the limit",
			opts: func(o *Options) { o.MaxBody = 1024 },
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}
			},
			wantCode: http.StatusRequestEntityTooLarge,
			wantBody: `{"error":"payload larger than 1024 bytes (GitHub caps payloads at 25 MB)"}`,
		},
		{
			name: "missing event header",
			d: func(t *testing.T) delivery {
				return delivery{event: "", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}
			},
			wantCode: http.StatusBadRequest,
			wantBody: `{"error":"missing X-GitHub-Event or X-GitHub-Delivery header"}`,
		},
		{
			name: "missing delivery header",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA), headers: map[string]string{hdrDelivery: ""}}
			},
			wantCode: http.StatusBadRequest,
			wantBody: `missing X-GitHub-Event or X-GitHub-Delivery header`,
		},
		{
			name:     "unknown event",
			d:        func(t *testing.T) delivery { return delivery{event: "issues", body: []byte(`{"action":"opened"}`)} },
			wantCode: http.StatusOK,
			wantBody: `"ignored":`,
		},
		{
			name: "form-encoded delivery",
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: []byte("payload=%7B%7D"), headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}
			},
			wantCode: http.StatusUnsupportedMediaType,
			wantBody: `set the webhook's content type to application/json`,
		},
		{
			name: "duplicate delivery",
			setup: func(f *fixture) {
				f.queue.seen = map[string]string{guid + "/production": "job-0"}
			},
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}
			},
			wantCode: http.StatusOK,
			wantBody: `{"duplicate":"job-0","target":"production","sha":"` + shaA + `","reason":"delivery seen before"}`,
		},
		{
			name:  "queue closed",
			setup: func(f *fixture) { f.queue.err = fmt.Errorf("enqueue: %w", executor.ErrClosed) },
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}
			},
			wantCode: http.StatusServiceUnavailable,
			wantBody: `deployhook is shutting down`,
		},
		{
			name:  "target unknown to the queue",
			setup: func(f *fixture) { f.queue.known = map[string]bool{"staging": true} },
			d: func(t *testing.T) delivery {
				return delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}
			},
			wantCode: http.StatusInternalServerError,
			wantBody: `target production is configured for routing but unknown to the queue`,
		},
		{
			name: "rotation: signed with the second secret",
			opts: func(o *Options) { o.Secrets = [][]byte{testSecret, []byte("second secret")} },
			d: func(t *testing.T) delivery {
				body := pushTo(t, "Codertocat/Hello-World", "main", shaA)
				return delivery{event: "push", body: body, headers: map[string]string{hdrSignature256: sign([]byte("second secret"), body)}}
			},
			wantCode: http.StatusAccepted,
			wantBody: `"job":"job-1"`,
			wantQueue: []enqueued{{"production", executor.Trigger{Kind: executor.KindPush, Repo: "Codertocat/Hello-World",
				Branch: "main", SHA: shaA, Delivery: guid, Actor: "Codertocat", Reason: "push by Codertocat"}}},
		},
		{
			name: "rotation: signed with neither secret",
			opts: func(o *Options) { o.Secrets = [][]byte{testSecret, []byte("second secret")} },
			d: func(t *testing.T) delivery {
				body := pushTo(t, "Codertocat/Hello-World", "main", shaA)
				return delivery{event: "push", body: body, headers: map[string]string{hdrSignature256: sign([]byte("third"), body)}}
			},
			wantCode: http.StatusUnauthorized,
			wantBody: `signature does not match`,
		},
		{
			name:     "ping",
			d:        func(t *testing.T) delivery { return delivery{event: "ping", body: payload(t, "ping/payload.json")} },
			wantCode: http.StatusOK,
			wantBody: `{"pong":true}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.opts)
			if tt.setup != nil {
				tt.setup(f)
			}
			d := tt.d(t)
			rec := serve(t, f.h, d.request())
			if rec.Code != tt.wantCode {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			for i := range tt.wantQueue { // every trigger carries the id of the body it came in
				tt.wantQueue[i].Trigger.BodyHash = bodyHash(d.body)
				if sig, ok := d.headers[hdrSignature256]; ok {
					tt.wantQueue[i].Trigger.BodyHash = bodyID(sig)
				}
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("answer %s, want it to contain %s", strings.TrimSpace(rec.Body.String()), tt.wantBody)
			}
			if got := f.queue.calls(); !reflect.DeepEqual(got, tt.wantQueue) {
				t.Errorf("queued\n%+v\nwant\n%+v", got, tt.wantQueue)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

// TestServer_Webhook_redelivery sends one delivery twice: one job, then a duplicate.
func TestServer_Webhook_redelivery(t *testing.T) {
	f := newFixture(t, nil)
	d := delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}
	first := serve(t, f.h, d.request())
	second := serve(t, f.h, d.request())
	if first.Code != http.StatusAccepted || second.Code != http.StatusOK {
		t.Fatalf("statuses %d, %d; want 202, 200", first.Code, second.Code)
	}
	if got := decode(t, second)["duplicate"]; got != "job-1" {
		t.Errorf("duplicate = %v, want job-1", got)
	}
	if n := len(f.queue.calls()); n != 1 {
		t.Errorf("%d jobs queued, want 1", n)
	}
}

func TestNew(t *testing.T) {
	deps := Deps{Queue: &fakeQueue{}, Journal: &fakeJournal{}, Auth: AllowAll("tester")}
	tests := []struct {
		name    string
		opts    Options
		deps    Deps
		wantErr string
	}{
		{name: "no secret", opts: Options{}, deps: deps, wantErr: "no webhook secret"},
		{name: "empty secret", opts: Options{Secrets: [][]byte{{}}}, deps: deps, wantErr: "secret 1 is empty"},
		{name: "empty second secret", opts: Options{Secrets: [][]byte{testSecret, nil}}, deps: deps, wantErr: "secret 2 is empty"},
		{name: "three secrets", opts: Options{Secrets: [][]byte{testSecret, testSecret, testSecret}}, deps: deps, wantErr: "3 webhook secrets"},
		{name: "no queue", opts: Options{Secrets: [][]byte{testSecret}}, deps: Deps{Journal: &fakeJournal{}, Auth: AllowAll("tester")}, wantErr: "Queue and Journal are required"},
		{name: "no auth", opts: Options{Secrets: [][]byte{testSecret}}, deps: Deps{Queue: &fakeQueue{}, Journal: &fakeJournal{}},
			wantErr: "server: Auth is required: configure a sign-in mode (for the local demo, AllowAll)"},
		{name: "bad deploy_on", opts: Options{Secrets: [][]byte{testSecret},
			Routes: []Route{{Target: "p", Repo: "a/b", Branch: "main", DeployOn: "tag"}}}, deps: deps, wantErr: `server: route 1 (p): DeployOn "tag" is not an executor.DeployOn value`},
		{name: "no deploy_on", opts: Options{Secrets: [][]byte{testSecret},
			Routes: []Route{{Target: "p", Repo: "a/b", Branch: "main"}}}, deps: deps, wantErr: `server: route 1 (p): DeployOn "" is not an executor.DeployOn value`},
		{name: "dispatch without a resolver", opts: Options{Secrets: [][]byte{testSecret},
			Routes: []Route{{Target: "p", Repo: "a/b", Branch: "main", DeployOn: executor.DeployOnPush, DispatchWorkflow: "d.yml"}}}, deps: deps, wantErr: "Resolver and Rollbacks are required"},
		{name: "route without a branch", opts: Options{Secrets: [][]byte{testSecret},
			Routes: []Route{{Target: "p", Repo: "a/b", DeployOn: executor.DeployOnPush}}}, deps: deps, wantErr: "target, repo and branch are required"},
		{name: "valid", opts: Options{Secrets: [][]byte{testSecret}, Routes: []Route{{Target: "p", Repo: "a/b", Branch: "main", DeployOn: executor.DeployOnPush}}}, deps: deps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(testLogger(t), tt.opts, tt.deps)
			if tt.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("New: %v", err)
				}
				if s.opts.MaxBody != MaxPayload {
					t.Errorf("MaxBody %d, want the default %d", s.opts.MaxBody, MaxPayload)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestServer_templates checks what New no longer checks at start: the page
// templates, parsed on the first page view, parse and define every page the
// server renders, and are parsed once.
func TestServer_templates(t *testing.T) {
	s, err := New(testLogger(t), Options{Secrets: [][]byte{testSecret}}, Deps{Queue: &fakeQueue{}, Journal: &fakeJournal{}, Auth: AllowAll("tester")})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := s.tmpl()
	if err != nil {
		t.Fatalf("parse templates: %v", err)
	}
	for _, name := range []string{"index.html", "job.html", "target.html", "confirm.html", "error.html"} {
		if tmpl.Lookup(name) == nil {
			t.Errorf("no template %s", name)
		}
	}
	if again, _ := s.tmpl(); again != tmpl {
		t.Error("the templates were parsed twice")
	}
}

func TestServer_Readyz(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		shutdown bool
		wantCode int
		wantBody string
	}{
		{name: "ready", wantCode: http.StatusOK, wantBody: "ready"},
		{name: "not ready", err: errors.New("journal unavailable"), wantCode: http.StatusServiceUnavailable, wantBody: `{"error":"not ready: journal unavailable"}`},
		{name: "shutting down", shutdown: true, wantCode: http.StatusServiceUnavailable, wantBody: `{"error":"not ready: shutting down"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.checker.err = tt.err
			if tt.shutdown {
				if err := f.srv.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
			rec = serve(t, f.h, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			if rec.Code != http.StatusOK || rec.Body.String() != "ok" {
				t.Errorf("healthz: %d %s, want 200 ok", rec.Code, rec.Body)
			}
		})
	}
}

// testJob is a finished job with a hostile step name and output.
func testJob() executor.Job {
	return executor.Job{
		ID: "j1", Target: "production", State: executor.StateFailure,
		Description: "failed at sync: rolled back to " + shaC[:7],
		Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "Codertocat/Hello-World", Branch: "main", SHA: shaA,
			Delivery: "d-1", Actor: "octocat", Reason: "push by octocat"},
		PreviousSHA: shaC,
		Created:     testNow.Add(-3 * time.Hour),
		Started:     testNow.Add(-3 * time.Hour).Add(time.Second),
		Finished:    testNow.Add(-2 * time.Hour),
		Steps: []executor.StepRun{
			{Seq: 1, Name: "fetch", ExitCode: 0, Duration: 1500 * time.Millisecond, Output: "HEAD is now at 0123456"},
			{Seq: 2, Name: `<script>alert("x")</script>`, ExitCode: 2, Duration: 3 * time.Second,
				Error: "ssh: dial 10.0.0.5:22: internal detail", Output: "<b>boom</b>"},
			{Seq: 3, Name: "restart", ExitCode: -1, Skipped: "an earlier step failed"},
		},
	}
}

func TestServer_Job(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		accept     string
		showOutput bool
		wantCode   int
		want       []string
		notWant    []string
	}{
		{
			name: "JSON by Accept", path: "/jobs/j1", accept: "application/json", wantCode: http.StatusOK,
			want: []string{`"state":"failure"`, `"actor":"octocat"`, `"exit_code":2`, `"skipped":"an earlier step failed"`,
				`"duration":"1.5s"`, `"sha":"` + shaA + `"`, `"age":"2h ago"`, `"reason":"push by octocat"`,
				`"error":"connection lost"`},
			notWant: []string{"10.0.0.5", "internal detail", "boom", "HEAD is now"},
		},
		{
			name: "JSON by format, with output", path: "/jobs/j1?format=json", showOutput: true, wantCode: http.StatusOK,
			want: []string{`"output":"HEAD is now at 0123456"`, `"output":"\u003cb\u003eboom\u003c/b\u003e"`,
				`"error":"ssh: dial 10.0.0.5:22: internal detail"`},
		},
		{
			name: "HTML escapes everything", path: "/jobs/j1", accept: "text/html", showOutput: true, wantCode: http.StatusOK,
			want: []string{"<!doctype html>", "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "&lt;b&gt;boom&lt;/b&gt;",
				"push by octocat", "octocat", shaA, "skipped: an earlier step failed", "failed at sync: rolled back to",
				"ssh: dial 10.0.0.5:22: internal detail"},
			notWant: []string{"<script>", "<b>boom", `http-equiv="refresh"`},
		},
		{
			name: "HTML hides output by default", path: "/jobs/j1", wantCode: http.StatusOK,
			want: []string{"fetch", "restart"}, notWant: []string{"HEAD is now", "boom", "internal detail"},
		},
		{
			name: "unknown job", path: "/jobs/nope", accept: "application/json", wantCode: http.StatusNotFound,
			want: []string{`{"error":"no job nope"}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.ShowOutput = tt.showOutput })
			f.journal.jobs = []executor.Job{testJob()}
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			rec := serve(t, f.h, req)
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			body := rec.Body.String()
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %s", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("page contains %s", w)
				}
			}
			if t.Failed() {
				t.Log(body)
			}
		})
	}
}

// TestServer_Job_running: a running job's page no longer reloads itself
// (the old meta refresh); it loads the live log script, which the
// Content-Security-Policy allows from this server only, and says to reload
// when there is no JavaScript. A finished job's page has no script.
func TestServer_Job_running(t *testing.T) {
	f := newFixture(t, nil)
	j := testJob()
	j.State, j.Finished = executor.StateRunning, time.Time{}
	done := testJob()
	done.ID = "j2"
	f.journal.jobs = []executor.Job{j, done}

	rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/jobs/j1", nil))
	body := rec.Body.String()
	for _, want := range []string{`<script src="/static/console.js"></script>`, `data-events="/jobs/j1/events"`,
		"reload to see progress", fmt.Sprintf(`data-now="%d"`, testNow.UnixMilli())} {
		if !strings.Contains(body, want) {
			t.Errorf("a running job's page lacks %s", want)
		}
	}
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("a running job's page still reloads itself")
	}
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(body, "<style") {
		t.Errorf("CSP %q (or an inline style) allows inline code", csp)
	}

	rec = serve(t, f.h, httptest.NewRequest(http.MethodGet, "/jobs/j2", nil))
	if body := rec.Body.String(); strings.Contains(body, "<script") || strings.Contains(body, "reload to see progress") || strings.Contains(body, "data-events") {
		t.Errorf("a finished job's page follows a live log:\n%s", body)
	}
}

func TestServer_Jobs(t *testing.T) {
	other := testJob()
	other.ID, other.Target = "j2", "staging"
	tests := []struct {
		name     string
		query    string
		wantCode int
		wantIDs  []string
	}{
		{name: "all", query: "", wantCode: http.StatusOK, wantIDs: []string{"j2", "j1"}},
		{name: "one target", query: "?target=production", wantCode: http.StatusOK, wantIDs: []string{"j1"}},
		{name: "limit", query: "?limit=1", wantCode: http.StatusOK, wantIDs: []string{"j2"}},
		{name: "bad limit", query: "?limit=x", wantCode: http.StatusBadRequest},
		{name: "unknown target", query: "?target=nope", wantCode: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.journal.jobs = []executor.Job{other, testJob()}
			rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/jobs"+tt.query, nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantCode != http.StatusOK {
				return
			}
			var out struct{ Jobs []jobView }
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, j := range out.Jobs {
				ids = append(ids, j.ID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("jobs %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

func TestServer_Index(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.PublicURL = "https://deploy.example.com/" })
	j := testJob()
	j.Trigger.Reason = `push by <img src=x>`
	f.journal.jobs = []executor.Job{j}
	rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	for _, w := range []string{"production", "staging", `href="/jobs/j1"`, shaA[:7], "2h ago", "no deploys",
		"[![deploy production](https://deploy.example.com/badge/production.svg)](https://deploy.example.com/)",
		"push by &lt;img src=x&gt;", "v1.2.3"} {
		if !strings.Contains(body, w) {
			t.Errorf("index lacks %s", w)
		}
	}
	if strings.Contains(body, "<img") {
		t.Errorf("index does not escape the trigger reason")
	}
	if strings.Contains(body, "sign out") {
		t.Errorf("the none mode offers to sign out")
	}
}

// svgText parses an SVG and returns the text of its visible <text> elements and title.
func svgText(t *testing.T, b []byte) (title string, texts []string) {
	t.Helper()
	var doc struct {
		XMLName xml.Name `xml:"http://www.w3.org/2000/svg svg"`
		Title   string   `xml:"title"`
		G       []struct {
			Text []struct {
				Hidden string `xml:"aria-hidden,attr"`
				Value  string `xml:",chardata"`
			} `xml:"text"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("badge is not XML: %v\n%s", err, b)
	}
	for _, g := range doc.G {
		for _, tx := range g.Text {
			if tx.Hidden == "" {
				texts = append(texts, tx.Value)
			}
		}
	}
	return doc.Title, texts
}

func TestServer_Badge(t *testing.T) {
	job := func(st executor.State) []executor.Job {
		j := testJob()
		j.State = st
		return []executor.Job{j}
	}
	tests := []struct {
		name      string
		jobs      []executor.Job
		target    string
		wantCode  int
		wantMsg   string
		wantColor string
	}{
		{name: "success", jobs: job(executor.StateSuccess), target: "production", wantCode: 200, wantMsg: "success · 0123456 · 2h ago", wantColor: "brightgreen"},
		{name: "failure", jobs: job(executor.StateFailure), target: "production", wantCode: 200, wantMsg: "failure · 0123456 · 2h ago", wantColor: "red"},
		{name: "error", jobs: job(executor.StateError), target: "production", wantCode: 200, wantMsg: "error · 0123456 · 2h ago", wantColor: "orange"},
		{name: "running", jobs: job(executor.StateRunning), target: "production", wantCode: 200, wantMsg: "running · 0123456 · 2h ago", wantColor: "blue"},
		{name: "queued", jobs: job(executor.StateQueued), target: "production", wantCode: 200, wantMsg: "queued · 0123456 · 2h ago", wantColor: "yellow"},
		{name: "none", target: "staging", wantCode: 200, wantMsg: "no deploys", wantColor: "lightgrey"},
		// Superseded and skipped jobs changed nothing on the target: the badge
		// shows the job before them.
		{name: "skipped after success", jobs: append(job(executor.StateSkipped), job(executor.StateSuccess)...), target: "production", wantCode: 200, wantMsg: "success · 0123456 · 2h ago", wantColor: "brightgreen"},
		{name: "superseded after failure", jobs: append(job(executor.StateSuperseded), job(executor.StateFailure)...), target: "production", wantCode: 200, wantMsg: "failure · 0123456 · 2h ago", wantColor: "red"},
		{name: "only skipped", jobs: job(executor.StateSkipped), target: "production", wantCode: 200, wantMsg: "no deploys", wantColor: "lightgrey"},
		{name: "unknown target", target: "nope", wantCode: 404, wantMsg: "unknown target", wantColor: "lightgrey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.journal.jobs = tt.jobs

			rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/badge/"+tt.target+".svg", nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("svg status %d, want %d", rec.Code, tt.wantCode)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "image/svg+xml") {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-cache, no-store, must-revalidate, max-age=0" {
				t.Errorf("Cache-Control %q", cc)
			}
			title, texts := svgText(t, rec.Body.Bytes())
			if want := []string{"deploy", tt.wantMsg}; !reflect.DeepEqual(texts, want) {
				t.Errorf("svg texts %q, want %q", texts, want)
			}
			if want := "deploy: " + tt.wantMsg; title != want {
				t.Errorf("svg title %q, want %q", title, want)
			}
			if !strings.Contains(rec.Body.String(), `fill="`+colorHex(tt.wantColor)+`"`) {
				t.Errorf("svg lacks colour %s", tt.wantColor)
			}

			rec = serve(t, f.h, httptest.NewRequest(http.MethodGet, "/badge/"+tt.target+".json", nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("json status %d, want %d", rec.Code, tt.wantCode)
			}
			var b badge
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			want := badge{SchemaVersion: 1, Label: "deploy", Message: tt.wantMsg, Color: tt.wantColor, IsError: tt.wantCode == 404}
			if b != want {
				t.Errorf("json badge %+v, want %+v", b, want)
			}
		})
	}
}

func TestServer_Badge_etag(t *testing.T) {
	f := newFixture(t, nil)
	rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/badge/production.svg", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest(http.MethodGet, "/badge/production.svg", nil)
	req.Header.Set("If-None-Match", etag)
	if rec := serve(t, f.h, req); rec.Code != http.StatusNotModified {
		t.Errorf("status %d with the current ETag, want 304", rec.Code)
	}
	f.journal.jobs = []executor.Job{testJob()}
	if rec := serve(t, f.h, req); rec.Code != http.StatusOK {
		t.Errorf("status %d after a new job, want 200", rec.Code)
	}
}

func TestServer_Badge_off(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Badges = false })
	for _, p := range []string{"/badge/production.svg", "/badge/production.json"} {
		if rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, p, nil)); rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d with badges off, want 404", p, rec.Code)
		}
	}
}

func TestServer_handleError(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		path     string
		setup    func(*fixture)
		wantCode int
		wantBody string
	}{
		{name: "unknown route", method: "GET", path: "/nope", wantCode: 404, wantBody: `{"error":"not found"}`},
		{name: "wrong method", method: "GET", path: "/webhook", wantCode: 405, wantBody: `{"error":"method not allowed"}`},
		{name: "journal fails", method: "GET", path: "/jobs/j1", setup: func(f *fixture) { f.journal.err = errors.New("sqlite: disk I/O error at /var/lib/x") },
			wantCode: 500, wantBody: `{"error":"cannot read the journal"}`},
		{name: "panic", method: "GET", path: "/jobs/j1", setup: func(f *fixture) { f.journal.panic = true },
			wantCode: 500, wantBody: `{"error":"internal error"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			if tt.setup != nil {
				tt.setup(f)
			}
			rec := serve(t, f.h, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode || strings.TrimSpace(rec.Body.String()) != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestServer_Serve serves on a real listener and shuts down.
func TestServer_Serve(t *testing.T) {
	f := newFixture(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ln) }()

	body := pushTo(t, "Codertocat/Hello-World", "main", shaA)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+ln.Addr().String()+"/webhook", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = delivery{event: "push", body: body}.request().Header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("status %d, want 202", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v after Shutdown, want nil", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("still serving after Shutdown")
	}
}

// TestServer_JobLinks: the index links a job at the path executor.JobURL
// gives GitHub, and the server serves the job there. The layout used to be
// written in three places (the executor's reports, the server's route, the
// index template), and nothing checked that they agreed.
func TestServer_JobLinks(t *testing.T) {
	const base = "https://deploy.example.com/"
	f := newFixture(t, func(o *Options) { o.PublicURL = base })
	j := testJob()
	j.ID = "mb1x2k9q-0a1b2c3d" // as the executor makes them
	f.journal.jobs = []executor.Job{j}

	reported := executor.JobURL(base, j.ID)
	if want := "https://deploy.example.com/jobs/mb1x2k9q-0a1b2c3d"; reported != want {
		t.Fatalf("executor.JobURL = %q, want %q", reported, want)
	}
	path := strings.TrimPrefix(reported, strings.TrimRight(base, "/"))

	rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("index: status %d: %s", rec.Code, rec.Body)
	}
	// Twice: the target's last job, and the recent jobs.
	if n := strings.Count(rec.Body.String(), `href="`+path+`"`); n != 2 {
		t.Errorf("index links %s %d times, want 2", path, n)
	}

	rec = serve(t, f.h, httptest.NewRequest(http.MethodGet, path+"?format=json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, rec.Code, rec.Body)
	}
	var got struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.ID != j.ID {
		t.Errorf("GET %s: id %q (%v), want %q", path, got.ID, err, j.ID)
	}
}

// TestServer_Webhook_oversizedUnknownLength sends a body without Content-Length:
// the cap holds while reading, not only on the header.
func TestServer_Webhook_oversizedUnknownLength(t *testing.T) {
	tests := []struct {
		name     string
		maxBody  int64
		wantCode int
	}{
		{name: "over the cap", maxBody: 1024, wantCode: http.StatusRequestEntityTooLarge},
		{name: "under the cap", maxBody: 1 << 20, wantCode: http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.MaxBody = tt.maxBody })
			req := delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}.request()
			req.ContentLength = -1
			req.Body = io.NopCloser(struct{ io.Reader }{req.Body}) // hide the length
			rec := serve(t, f.h, req)
			if rec.Code != tt.wantCode {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
		})
	}
}

// syncBuffer is a log sink safe for the server's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServer_logRequests checks the request log: method, path, status, delivery
// and event; never the signature, the secret or the body.
func TestServer_logRequests(t *testing.T) {
	var logs syncBuffer
	f := newFixture(t, nil)
	f.srv.lg = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, secret := range [][]byte{testSecret, []byte("wrong")} {
		body := pushTo(t, "Codertocat/Hello-World", "main", shaA)
		sig := sign(secret, body)
		serve(t, f.h, delivery{event: "push", body: body, headers: map[string]string{hdrSignature256: sig}}.request())
		out := logs.String()
		for _, w := range []string{"method=POST", "path=/webhook", "delivery=72d3162e-cc78-11e3-81ab-4c9367dc0958", "event=push"} {
			if !strings.Contains(out, w) {
				t.Errorf("log lacks %s:\n%s", w, out)
			}
		}
		for _, leak := range []string{strings.TrimPrefix(sig, "sha256="), string(testSecret), `"commits"`, "Initial commit"} {
			if strings.Contains(out, leak) {
				t.Errorf("log contains %q", leak)
			}
		}
	}
	if out := logs.String(); !strings.Contains(out, "status=202") || !strings.Contains(out, "status=401") {
		t.Errorf("log lacks the statuses 202 and 401:\n%s", out)
	}
}
