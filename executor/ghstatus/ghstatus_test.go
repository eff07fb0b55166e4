package ghstatus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/deployhook/deployhook/executor"
)

const (
	testToken = "ghp_TESTtoken0123456789abcdefSECRET"
	testSHA   = "0123456789abcdef0123456789abcdef01234567"
	testRepo  = "acme/data-platform"
	jobURL    = "https://deploy.example.com/jobs/j1"
	repoPath  = "/repos/acme/data-platform"
)

var bearer = "Bearer " + testToken

func report(state executor.State) executor.Report {
	return executor.Report{
		Job:         "j1",
		Target:      "production",
		Repo:        testRepo,
		SHA:         testSHA,
		State:       state,
		Description: "deploy of 0123456 by octocat",
		URL:         jobURL,
	}
}

// Expected requests.

func statusCall(state, desc string) call {
	return call{
		method: "POST", path: repoPath + "/statuses/" + testSHA,
		body: map[string]any{
			"state":       state,
			"target_url":  jobURL,
			"description": desc,
			"context":     "deploy/production",
		},
		status: http.StatusCreated,
		resp:   map[string]any{"id": 1, "state": state, "context": "deploy/production"},
	}
}

func listCall(env string, found ...map[string]any) call {
	if found == nil {
		found = []map[string]any{}
	}
	return call{
		method: "GET", path: repoPath + "/deployments",
		query:  url.Values{"sha": {testSHA}, "environment": {env}, "task": {"deploy"}, "per_page": {"100"}},
		status: http.StatusOK,
		resp:   found,
	}
}

func createCall(t *testing.T, env, desc string, id int) call {
	body := map[string]any{
		"ref":                   testSHA,
		"task":                  "deploy",
		"auto_merge":            false,
		"required_contexts":     []any{},
		"payload":               map[string]any{"job": "j1"},
		"environment":           env,
		"description":           desc,
		"transient_environment": false,
	}
	if env == "production" {
		body["production_environment"] = true
	}
	return call{
		method: "POST", path: repoPath + "/deployments",
		accept: acceptDeployment,
		body:   body,
		status: http.StatusCreated,
		resp:   deployment(t, id, env),
	}
}

func deployment(t *testing.T, id int, env string) map[string]any {
	return with(fixture(t, "deployment.json"), "id", id, "sha", testSHA, "ref", testSHA,
		"environment", env, "payload", map[string]any{"job": "j1"})
}

func dstatusCall(id int, state, desc, env string) call {
	return call{
		method: "POST", path: fmt.Sprintf("%s/deployments/%d/statuses", repoPath, id),
		accept: acceptDeployment,
		body: map[string]any{
			"state":       state,
			"log_url":     jobURL,
			"description": desc,
			"environment": env,
		},
		status: http.StatusCreated,
		resp:   map[string]any{"id": 9, "state": state},
	}
}

func errorCall(c call, status int, header map[string]string, resp any) call {
	c.status, c.header, c.resp = status, header, resp
	return c
}

// newTestClient returns a Client on the API root base with tiny retry waits.
func newTestClient(t *testing.T, base string, hc *http.Client, deployments bool) (*Client, *logBuf) {
	t.Helper()
	return newTestClientWith(t, base, hc, deployments, StaticToken(testToken))
}

func newTestClientWith(t *testing.T, base string, hc *http.Client, deployments bool, src oauth2.TokenSource) (*Client, *logBuf) {
	t.Helper()
	lg, lb := testLogger(t)
	c, err := New(lg, Options{
		BaseURL:     base,
		TokenSource: src,
		Deployments: deployments,
		HTTPClient:  hc,
		MaxTries:    4,
		Backoff:     time.Millisecond,
		MaxWait:     10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, lb
}

func TestClient_Report_states(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	tests := []struct {
		name       string
		state      executor.State
		wantStatus string
		wantDeploy string
	}{
		{"queued", executor.StateQueued, "pending", "queued"},
		{"running", executor.StateRunning, "pending", "in_progress"},
		{"success", executor.StateSuccess, "success", "success"},
		{"failure", executor.StateFailure, "failure", "failure"},
		{"error", executor.StateError, "error", "error"},
		{"superseded", executor.StateSuperseded, "error", "inactive"},
		{"skipped", executor.State("skipped"), "success", "inactive"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/deployments off", func(t *testing.T) {
			f := newFake(t, bearer, statusCall(tt.wantStatus, desc))
			c, lb := newTestClient(t, serve(t, f), nil, false)
			id, err := c.Report(t.Context(), report(tt.state))
			if err != nil || id != 0 {
				t.Fatalf("Report = %d, %v; want 0, nil", id, err)
			}
			assertNoSecrets(t, lb, nil, testToken)
		})
		t.Run(tt.name+"/deployment known", func(t *testing.T) {
			f := newFake(t, bearer, statusCall(tt.wantStatus, desc), dstatusCall(42, tt.wantDeploy, desc, "production"))
			c, _ := newTestClient(t, serve(t, f), nil, true)
			r := report(tt.state)
			r.Deployment = 42
			id, err := c.Report(t.Context(), r)
			if err != nil || id != 42 {
				t.Fatalf("Report = %d, %v; want 42, nil", id, err)
			}
		})
		if tt.state == executor.StateSuperseded || tt.state == "skipped" {
			continue // see TestClient_Report_retiredWithoutDeployment
		}
		t.Run(tt.name+"/deployment created", func(t *testing.T) {
			f := newFake(t, bearer,
				statusCall(tt.wantStatus, desc),
				listCall("production"),
				createCall(t, "production", desc, 77),
				dstatusCall(77, tt.wantDeploy, desc, "production"))
			c, _ := newTestClient(t, serve(t, f), nil, true)
			id, err := c.Report(t.Context(), report(tt.state))
			if err != nil || id != 77 {
				t.Fatalf("Report = %d, %v; want 77, nil", id, err)
			}
		})
	}
}

func TestClient_Report_retiredWithoutDeployment(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	tests := []struct {
		state      executor.State
		wantStatus string
	}{
		{executor.StateSuperseded, "error"},
		{executor.State("skipped"), "success"},
	}
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			f := newFake(t, bearer, statusCall(tt.wantStatus, desc), listCall("production"))
			c, _ := newTestClient(t, serve(t, f), nil, true)
			id, err := c.Report(t.Context(), report(tt.state))
			if err != nil || id != 0 {
				t.Fatalf("Report = %d, %v; want 0, nil (no deployment created to retire it)", id, err)
			}
		})
	}
}

func TestClient_Report_environment(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		wantEnv string
	}{
		{name: "default is the target", env: "", wantEnv: "production"},
		{name: "staging is not production", env: "staging", wantEnv: "staging"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const desc = "deploy of 0123456 by octocat"
			f := newFake(t, bearer,
				statusCall("pending", desc),
				listCall(tt.wantEnv),
				createCall(t, tt.wantEnv, desc, 5),
				dstatusCall(5, "in_progress", desc, tt.wantEnv))
			c, _ := newTestClient(t, serve(t, f), nil, true)
			r := report(executor.StateRunning)
			r.Environment = tt.env
			if id, err := c.Report(t.Context(), r); err != nil || id != 5 {
				t.Fatalf("Report = %d, %v; want 5, nil", id, err)
			}
		})
	}
}

func TestClient_Report_omitsEmptyFields(t *testing.T) {
	f := newFake(t, bearer,
		call{
			method: "POST", path: repoPath + "/statuses/" + testSHA,
			body:   map[string]any{"state": "success", "context": "deploy/production"},
			status: http.StatusCreated, resp: map[string]any{"id": 1},
		},
		call{
			method: "POST", path: repoPath + "/deployments/3/statuses", accept: acceptDeployment,
			body:   map[string]any{"state": "success", "environment": "production"},
			status: http.StatusCreated, resp: map[string]any{"id": 2},
		})
	c, _ := newTestClient(t, serve(t, f), nil, true)
	r := report(executor.StateSuccess)
	r.URL, r.Description, r.Deployment = "", "", 3
	if _, err := c.Report(t.Context(), r); err != nil {
		t.Fatal(err)
	}
}

func TestClient_Report_longDescription(t *testing.T) {
	long := strings.Repeat("déployé ", 40)[:300] // 300 bytes, multi-byte runes
	want := Truncate(long)
	if n := utf8.RuneCountInString(want); n > MaxDescription {
		t.Fatalf("Truncate gave %d characters", n)
	}
	if !strings.HasSuffix(want, "…") {
		t.Fatalf("Truncate(%q) = %q, want a trailing …", long, want)
	}
	f := newFake(t, bearer,
		statusCall("failure", want),
		listCall("production"),
		createCall(t, "production", want, 8),
		dstatusCall(8, "failure", want, "production"))
	c, _ := newTestClient(t, serve(t, f), nil, true)
	r := report(executor.StateFailure)
	r.Description = long
	if _, err := c.Report(t.Context(), r); err != nil {
		t.Fatal(err)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "short", in: "deployed", want: "deployed"},
		{name: "exactly 140", in: strings.Repeat("a", 140), want: strings.Repeat("a", 140)},
		{name: "141", in: strings.Repeat("a", 141), want: strings.Repeat("a", 139) + "…"},
		{name: "runes, not bytes", in: strings.Repeat("é", 140), want: strings.Repeat("é", 140)},
		{name: "cut runes", in: strings.Repeat("日本", 100), want: strings.Repeat("日本", 69) + "日…"},
		{name: "space before the cut", in: strings.Repeat("a", 138) + " bcdef", want: strings.Repeat("a", 138) + "…"},
		{name: "one line", in: "failed:\nstep sync\texit 1\n", want: "failed: step sync exit 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Truncate(tt.in)
			if got != tt.want {
				t.Errorf("Truncate = %q, want %q", got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > MaxDescription {
				t.Errorf("Truncate gave %d characters, more than %d", n, MaxDescription)
			}
		})
	}
}

func TestClient_Report_retries5xx(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	oops := map[string]any{"message": "Server Error"}
	f := newFake(t, bearer,
		errorCall(statusCall("success", desc), 500, nil, oops),
		errorCall(statusCall("success", desc), 502, nil, "<html>bad gateway</html>"),
		errorCall(statusCall("success", desc), 503, nil, oops),
		statusCall("success", desc))
	c, lb := newTestClient(t, serve(t, f), nil, false)
	if _, err := c.Report(t.Context(), report(executor.StateSuccess)); err != nil {
		t.Fatalf("Report after three 5xx: %v", err)
	}
	if got := strings.Count(lb.String(), "retrying"); got != 3 {
		t.Errorf("logged %d retries, want 3", got)
	}
}

func TestClient_Report_givesUp(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	oops := map[string]any{"message": "Server Error"}
	var calls []call
	for range 4 {
		calls = append(calls, errorCall(statusCall("success", desc), 500, nil, oops))
	}
	f := newFake(t, bearer, calls...)
	c, lb := newTestClient(t, serve(t, f), nil, false)
	_, err := c.Report(t.Context(), report(executor.StateSuccess))
	if err == nil || errors.Is(err, executor.ErrPermanent) {
		t.Fatalf("Report = %v, want a plain (retryable) error", err)
	}
	for _, want := range []string{"4 tries", "500", "Server Error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	assertNoSecrets(t, lb, []error{err}, testToken)
}

func TestClient_Report_networkError(t *testing.T) {
	// Every try fails to connect: retried, then a plain error.
	c, lb := newTestClient(t, "http://127.0.0.1:9/", &http.Client{Transport: refuse{}}, false)
	_, err := c.Report(t.Context(), report(executor.StateRunning))
	if err == nil || errors.Is(err, executor.ErrPermanent) {
		t.Fatalf("Report = %v, want a plain error", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q does not say why", err)
	}
	if got := strings.Count(lb.String(), "retrying"); got != 3 {
		t.Errorf("logged %d retries, want 3", got)
	}
}

// refuse is a transport whose connections are always refused.
type refuse struct{}

func (refuse) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("dial tcp: connection refused")
}

func TestClient_Report_permanent(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		resp    any
		wantMsg string
	}{
		{
			name: "description too long", status: 422,
			resp: map[string]any{
				"message": "Validation Failed",
				"errors": []any{map[string]any{
					"resource": "Status", "code": "custom", "field": "description",
					"message": "description is too long (maximum is 140 characters)",
				}},
				"documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
			},
			wantMsg: "422 Unprocessable Entity: Validation Failed: description is too long (maximum is 140 characters)",
		},
		{name: "bad request", status: 400, resp: map[string]any{"message": "Problems parsing JSON"}, wantMsg: "400 Bad Request: Problems parsing JSON"},
		{name: "bad credentials", status: 401, resp: map[string]any{"message": "Bad credentials"}, wantMsg: "401 Unauthorized: Bad credentials"},
		{name: "no permission", status: 403, resp: map[string]any{"message": "Resource not accessible by integration"}, wantMsg: "403 Forbidden: Resource not accessible by integration"},
		{name: "no repository", status: 404, resp: map[string]any{"message": "Not Found"}, wantMsg: "404 Not Found: Not Found"},
		{name: "conflict", status: 409, resp: map[string]any{"message": "Conflict"}, wantMsg: "409 Conflict: Conflict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer, errorCall(statusCall("pending", "deploy of 0123456 by octocat"), tt.status, nil, tt.resp))
			c, lb := newTestClient(t, serve(t, f), nil, false)
			_, err := c.Report(t.Context(), report(executor.StateQueued))
			if !errors.Is(err, executor.ErrPermanent) {
				t.Fatalf("Report = %v, want ErrPermanent", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), "POST "+repoPath+"/statuses/") {
				t.Errorf("error %q does not name the request", err)
			}
			if n := f.requests(); n != 1 {
				t.Errorf("GitHub got %d requests, want 1 (no retry)", n)
			}
			assertNoSecrets(t, lb, []error{err}, testToken)
		})
	}
}

func TestClient_Report_badReport(t *testing.T) {
	tests := []struct {
		name string
		edit func(*executor.Report)
	}{
		{name: "repo without owner", edit: func(r *executor.Report) { r.Repo = "data-platform" }},
		{name: "short sha", edit: func(r *executor.Report) { r.SHA = "0123456" }},
		{name: "unknown state", edit: func(r *executor.Report) { r.State = "paused" }},
		{name: "no target", edit: func(r *executor.Report) { r.Target = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer)
			c, _ := newTestClient(t, serve(t, f), nil, true)
			r := report(executor.StateRunning)
			tt.edit(&r)
			if _, err := c.Report(t.Context(), r); !errors.Is(err, executor.ErrPermanent) {
				t.Fatalf("Report = %v, want ErrPermanent", err)
			}
		})
	}
}

func TestClient_Report_rateLimit(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	secondary := map[string]any{
		"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
		"documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
	}
	primary := map[string]any{
		"message":           "API rate limit exceeded for installation ID 1.",
		"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits",
	}
	// In a synctest bubble the clock starts at 2000-01-01 00:00:00 UTC and only
	// moves while every goroutine waits, so the wait Report asks for is exactly
	// the time between the two requests.
	reset := func(after time.Duration) map[string]string {
		return map[string]string{
			"X-RateLimit-Limit":     "5000",
			"X-RateLimit-Remaining": "0",
			"X-RateLimit-Used":      "5000",
			"X-RateLimit-Resource":  "core",
			"X-RateLimit-Reset":     strconv.FormatInt(time.Now().Add(after).Unix(), 10),
		}
	}
	tests := []struct {
		name     string
		status   int
		header   func() map[string]string
		resp     any
		wantWait time.Duration
	}{
		{name: "secondary 403 Retry-After", status: 403, header: func() map[string]string { return map[string]string{"Retry-After": "1"} }, resp: secondary, wantWait: time.Second},
		{name: "secondary 429 Retry-After", status: 429, header: func() map[string]string { return map[string]string{"Retry-After": "1"} }, resp: secondary, wantWait: time.Second},
		{name: "secondary without Retry-After", status: 403, header: func() map[string]string { return nil }, resp: secondary, wantWait: time.Minute},
		{name: "primary 403 X-RateLimit-Reset", status: 403, header: func() map[string]string { return reset(7 * time.Second) }, resp: primary, wantWait: 7 * time.Second},
		{name: "primary 429 X-RateLimit-Reset", status: 429, header: func() map[string]string { return reset(9 * time.Second) }, resp: primary, wantWait: 9 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t, bearer,
					errorCall(statusCall("success", desc), tt.status, tt.header(), tt.resp),
					statusCall("success", desc))
				lg, lb := testLogger(t)
				c, err := New(lg, Options{
					TokenSource: StaticToken(testToken),
					BaseURL:     "https://api.github.com/",
					HTTPClient:  &http.Client{Transport: inMemory{f}},
					MaxTries:    3,
					Backoff:     time.Millisecond,
					MaxWait:     2 * time.Minute,
				})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Report(t.Context(), report(executor.StateSuccess)); err != nil {
					t.Fatalf("Report: %v", err)
				}
				at := f.arrivals()
				if len(at) != 2 {
					t.Fatalf("GitHub got %d requests, want 2", len(at))
				}
				if got := at[1].Sub(at[0]); got != tt.wantWait {
					t.Errorf("waited %v between tries, want %v", got, tt.wantWait)
				}
				assertNoSecrets(t, lb, nil, testToken)
			})
		})
	}
}

func TestClient_Report_rateLimitTooLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t, bearer, errorCall(statusCall("pending", "deploy of 0123456 by octocat"), 403,
			map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(time.Now().Add(40*time.Minute).Unix(), 10)},
			map[string]any{"message": "API rate limit exceeded"}))
		lg, _ := testLogger(t)
		c, err := New(lg, Options{
			TokenSource: StaticToken(testToken),
			HTTPClient:  &http.Client{Transport: inMemory{f}},
			MaxWait:     time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = c.Report(t.Context(), report(executor.StateRunning))
		if err == nil || errors.Is(err, executor.ErrPermanent) {
			t.Fatalf("Report = %v, want a plain error", err)
		}
		if !strings.Contains(err.Error(), "wait 40m0s") {
			t.Errorf("error %q does not say how long GitHub asked to wait", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Report waited %v, want 0 (the outbox retries later)", d)
		}
		// A second Report before the reset is refused by go-github without a
		// request (the fake would fail the test on a second request).
		if _, err := c.Report(t.Context(), report(executor.StateRunning)); err == nil || errors.Is(err, executor.ErrPermanent) {
			t.Fatalf("second Report = %v, want a plain error", err)
		}
	})
}

func TestClient_Report_contextDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t, bearer, errorCall(statusCall("pending", "deploy of 0123456 by octocat"), 429,
			map[string]string{"Retry-After": "30"}, map[string]any{"message": "slow down"}))
		lg, _ := testLogger(t)
		c, err := New(lg, Options{TokenSource: StaticToken(testToken), HTTPClient: &http.Client{Transport: inMemory{f}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if _, err := c.Report(ctx, report(executor.StateRunning)); err == nil || errors.Is(err, executor.ErrPermanent) {
			t.Fatalf("Report = %v, want a plain error", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Report waited %v for a retry it had no time for", d)
		}
	})
}

func TestClient_Report_partialFailure(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	oops := map[string]any{"message": "Server Error"}
	var calls []call
	// First Report: status ok, deployment created, its status fails every try.
	calls = append(calls,
		statusCall("pending", desc),
		listCall("production"),
		createCall(t, "production", desc, 77))
	for range 4 {
		calls = append(calls, errorCall(dstatusCall(77, "in_progress", desc, "production"), 500, nil, oops))
	}
	// Second Report, with the id passed back: no lookup, no second Deployment.
	calls = append(calls,
		statusCall("pending", desc),
		dstatusCall(77, "in_progress", desc, "production"))
	// Third Report, the executor having lost the id: the lookup finds it.
	calls = append(calls,
		statusCall("success", desc),
		listCall("production",
			with(deployment(t, 76, "production"), "payload", map[string]any{"job": "another"}),
			deployment(t, 77, "production")),
		dstatusCall(77, "success", desc, "production"))
	f := newFake(t, bearer, calls...)
	c, _ := newTestClient(t, serve(t, f), nil, true)

	r := report(executor.StateRunning)
	id, err := c.Report(t.Context(), r)
	if err == nil || errors.Is(err, executor.ErrPermanent) || id != 77 {
		t.Fatalf("first Report = %d, %v; want 77 and a plain error", id, err)
	}
	r.Deployment = id
	if id, err := c.Report(t.Context(), r); err != nil || id != 77 {
		t.Fatalf("second Report = %d, %v; want 77, nil", id, err)
	}
	r = report(executor.StateSuccess)
	if id, err := c.Report(t.Context(), r); err != nil || id != 77 {
		t.Fatalf("third Report = %d, %v; want 77, nil", id, err)
	}
}

func TestClient_Report_createRetryFindsDeployment(t *testing.T) {
	// The create answered 502 but GitHub had created it: the retry finds it by
	// payload.job instead of creating a second one.
	const desc = "deploy of 0123456 by octocat"
	f := newFake(t, bearer,
		statusCall("pending", desc),
		listCall("production"),
		errorCall(createCall(t, "production", desc, 0), 502, nil, "bad gateway"),
		listCall("production", deployment(t, 91, "production")),
		dstatusCall(91, "queued", desc, "production"))
	c, _ := newTestClient(t, serve(t, f), nil, true)
	if id, err := c.Report(t.Context(), report(executor.StateQueued)); err != nil || id != 91 {
		t.Fatalf("Report = %d, %v; want 91, nil", id, err)
	}
}

func TestClient_Report_enterprise(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	f := newFake(t, bearer,
		statusCall("success", desc),
		listCall("production"),
		createCall(t, "production", desc, 4),
		dstatusCall(4, "success", desc, "production"))
	f.prefix = "/api/v3"
	base := serve(t, f)
	if !strings.HasSuffix(base, "/api/v3/") {
		t.Fatalf("base %q", base)
	}
	c, _ := newTestClient(t, strings.TrimSuffix(base, "/"), nil, true) // without the trailing slash
	if id, err := c.Report(t.Context(), report(executor.StateSuccess)); err != nil || id != 4 {
		t.Fatalf("Report = %d, %v; want 4, nil", id, err)
	}
	if got := c.gh.UploadURL.Path; got != "/api/uploads/" {
		t.Errorf("upload URL path %q, want /api/uploads/", got)
	}
}

func TestNew(t *testing.T) {
	lg, _ := testLogger(t)
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no token", opts: Options{}, wantErr: "DEPLOYHOOK_GITHUB_TOKEN"},
		{name: "not a URL", opts: Options{TokenSource: StaticToken("x"), BaseURL: "api.github.com"}, wantErr: "not an http(s) URL"},
		{name: "default", opts: Options{TokenSource: StaticToken("x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(lg, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.gh.BaseURL.String(); got != DefaultBaseURL {
				t.Errorf("base URL %q, want %q", got, DefaultBaseURL)
			}
		})
	}
}

func TestClient_BranchHead(t *testing.T) {
	tests := []struct {
		name     string
		branch   string
		wantPath string
		status   int
		resp     string
		want     string
		wantErr  error
	}{
		{name: "main", branch: "main", wantPath: repoPath + "/commits/heads/main", status: 200, resp: testSHA, want: testSHA},
		{name: "refs/heads prefix", branch: "refs/heads/main", wantPath: repoPath + "/commits/heads/main", status: 200, resp: testSHA, want: testSHA},
		{name: "slash in name", branch: "release/v1", wantPath: repoPath + "/commits/heads/release/v1", status: 200, resp: testSHA, want: testSHA},
		{name: "no branch", branch: "gone", wantPath: repoPath + "/commits/heads/gone", status: 422, resp: `{"message":"No commit found for SHA: heads/gone"}`, wantErr: executor.ErrPermanent},
		{name: "no repository", branch: "main", wantPath: repoPath + "/commits/heads/main", status: 404, resp: `{"message":"Not Found"}`, wantErr: executor.ErrPermanent},
		{name: "not a sha", branch: "main", wantPath: repoPath + "/commits/heads/main", status: 200, resp: "<html>", wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer, call{method: "GET", path: tt.wantPath, accept: acceptSHA, status: tt.status, resp: tt.resp})
			c, _ := newTestClient(t, serve(t, f), nil, false)
			got, err := c.BranchHead(t.Context(), testRepo, tt.branch)
			switch {
			case tt.wantErr == errAny && err != nil:
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("BranchHead = %q, %v; want %v", got, err, tt.wantErr)
			case tt.wantErr == nil && (err != nil || got != tt.want):
				t.Fatalf("BranchHead = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")

func TestClient_WorkflowSucceeded(t *testing.T) {
	base := fixture(t, "workflow_run.json")
	run := func(id int, created, status string, conclusion any) map[string]any {
		return with(base, "id", id, "head_sha", testSHA, "event", "push", "created_at", created,
			"status", status, "conclusion", conclusion)
	}
	tests := []struct {
		name string
		runs []map[string]any
		want bool
	}{
		{name: "no run", runs: []map[string]any{}, want: false},
		{name: "success", runs: []map[string]any{run(1, "2026-11-26T10:00:00Z", "completed", "success")}, want: true},
		{name: "latest failed", runs: []map[string]any{
			run(1, "2026-11-26T10:00:00Z", "completed", "success"),
			run(2, "2026-11-26T11:00:00Z", "completed", "failure"),
		}, want: false},
		{name: "latest passed after a failure", runs: []map[string]any{
			run(3, "2026-11-26T12:00:00Z", "completed", "success"),
			run(2, "2026-11-26T11:00:00Z", "completed", "failure"),
		}, want: true},
		{name: "still running", runs: []map[string]any{run(1, "2026-11-26T10:00:00Z", "in_progress", nil)}, want: false},
		{name: "cancelled", runs: []map[string]any{run(1, "2026-11-26T10:00:00Z", "completed", "cancelled")}, want: false},
		{name: "unknown conclusion", runs: []map[string]any{run(1, "2026-11-26T10:00:00Z", "completed", "startup_failure")}, want: false},
		{name: "other sha only", runs: []map[string]any{with(run(1, "2026-11-26T10:00:00Z", "completed", "success"), "head_sha", strings.Repeat("f", 40))}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer, call{
				method: "GET", path: repoPath + "/actions/workflows/ci.yml/runs",
				query:  url.Values{"head_sha": {testSHA}, "event": {"push"}, "per_page": {"100"}},
				status: 200,
				resp:   map[string]any{"total_count": len(tt.runs), "workflow_runs": tt.runs},
			})
			c, _ := newTestClient(t, serve(t, f), nil, false)
			got, err := c.WorkflowSucceeded(t.Context(), testRepo, testSHA, ".github/workflows/ci.yml")
			if err != nil || got != tt.want {
				t.Fatalf("WorkflowSucceeded = %v, %v; want %v, nil", got, err, tt.want)
			}
		})
	}
}

func TestClient_WorkflowSucceeded_notFound(t *testing.T) {
	f := newFake(t, bearer, call{
		method: "GET", path: repoPath + "/actions/workflows/ci.yml/runs",
		query:  url.Values{"head_sha": {testSHA}, "event": {"push"}, "per_page": {"100"}},
		status: 404, resp: map[string]any{"message": "Not Found"},
	})
	c, _ := newTestClient(t, serve(t, f), nil, false)
	if _, err := c.WorkflowSucceeded(t.Context(), testRepo, testSHA, "ci.yml"); !errors.Is(err, executor.ErrPermanent) {
		t.Fatalf("WorkflowSucceeded = %v, want ErrPermanent", err)
	}
}

func TestLogOnly_Report(t *testing.T) {
	lg, lb := testLogger(t)
	r := report(executor.StateRunning)
	r.Deployment = 5
	id, err := LogOnly(lg).Report(t.Context(), r)
	if err != nil || id != 0 {
		t.Fatalf("Report = %d, %v; want 0, nil", id, err)
	}
	logs := lb.String()
	for _, want := range []string{"level=INFO", "job=j1", "target=production", "repo=" + testRepo, "sha=" + testSHA, "state=running", `description="deploy of 0123456 by octocat"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log %q lacks %q", logs, want)
		}
	}
}
