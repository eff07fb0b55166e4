package metrics_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/ghstatus"
	"github.com/deployhook/deployhook/internal/metrics"
)

// TestMetrics_GitHub sends a commit status through the real ghstatus client
// to a fake GitHub that answers 502, then 403 rate-limited, then 201, each
// with rate limit headers, and a status to a GitHub that is not there: the
// scrape counts each failed try by kind and shows the last answer's rate
// limit, which is not exported before GitHub said it.
func TestMetrics_GitHub(t *testing.T) {
	const token = "ghs_metricsTestToken0123"
	s := sha(7)
	m := mustNew(t, metrics.Options{Targets: []executor.Target{web}})
	if got := samples(t, scrape(t, m)); hasSeries(got, "deployhook_github_rate_limit_remaining_requests") {
		t.Fatal("rate limit exported before GitHub answered")
	}

	var mu sync.Mutex
	calls := 0
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/repos/acme/app/statuses/"+s || r.Header.Get("Authorization") != "Bearer "+token {
			t.Errorf("request %s %s (auth %q)", r.Method, r.URL.Path, r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusNotFound)
			return
		}
		var body map[string]string
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil || len(body) != 4 || body["state"] != "success" ||
			body["context"] != "deploy/web" || body["description"] != "deployed" || body["target_url"] != "https://deploy.example.com/jobs/j1" {
			t.Errorf("status body %s", b)
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-RateLimit-Limit", "5000")
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10))
		switch n {
		case 1:
			h.Set("X-RateLimit-Remaining", "4999")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, `{"message":"Server Error"}`)
		case 2:
			h.Set("X-RateLimit-Remaining", "0")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"message":"API rate limit exceeded"}`)
		default:
			h.Set("X-RateLimit-Remaining", "4998")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id":1,"state":"success"}`)
		}
	}))
	defer gh.Close()
	client := func(base string, tries int) *ghstatus.Client {
		c, err := ghstatus.New(testLogger(t), ghstatus.Options{BaseURL: base + "/", TokenSource: ghstatus.StaticToken(token),
			MaxTries: tries, Backoff: time.Millisecond, MaxWait: time.Second, Observer: m})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	r := executor.Report{Job: "j1", Target: "web", Environment: "web", Repo: "acme/app", SHA: s,
		State: executor.StateSuccess, Description: "deployed", URL: "https://deploy.example.com/jobs/j1"}
	if _, err := client(gh.URL, 3).Report(t.Context(), r); err != nil {
		t.Fatalf("report: %v", err)
	}
	if calls != 3 {
		t.Fatalf("GitHub saw %d requests, want 3", calls)
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	if _, err := client(gone.URL, 1).Report(t.Context(), r); err == nil {
		t.Fatal("report to a closed server succeeded")
	}

	want(t, samples(t, scrape(t, m)), map[string]float64{
		`deployhook_github_api_errors_total{kind="server"}`:       1,
		`deployhook_github_api_errors_total{kind="rate_limited"}`: 1,
		`deployhook_github_api_errors_total{kind="network"}`:      1,
		`deployhook_github_api_errors_total{kind="client"}`:       0,
		`deployhook_github_rate_limit_remaining_requests`:         4998,
		`deployhook_github_rate_limit_requests`:                   5000,
	})
}
