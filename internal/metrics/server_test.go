package metrics_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/ghstatus"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/store"
	"github.com/deployhook/deployhook/internal/metrics"
	"github.com/deployhook/deployhook/server"
	"github.com/deployhook/deployhook/webhook"
)

const testSecret = "metrics-test-secret-0123456789"

// payload returns GitHub's sample delivery of event, rewritten to push to
// repo's main at sha when it is a push.
func payload(t *testing.T, event, repo, sha string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "server", "testdata", "github-payloads", event, "payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	if event != "push" {
		return b
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	p["ref"], p["after"], p["deleted"] = "refs/heads/main", sha, false
	r := p["repository"].(map[string]any)
	r["full_name"] = repo
	b, _ = json.Marshal(p)
	return b
}

// post delivers body as event with delivery id and a signature made with
// secret ("" sends none); it returns the status code.
func post(t *testing.T, url, event, delivery string, body []byte, secret string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	if secret != "" {
		req.Header.Set("X-Hub-Signature-256", webhook.Sign(body, []byte(secret)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestMetrics_Server drives the webhook handler over HTTP through every
// answer it can give a delivery (the queue is a real executor's, not
// running) and scrapes exact counts by result. A delivery is counted once,
// under the answer it got.
func TestMetrics_Server(t *testing.T) {
	ctx := t.Context()
	lg := testLogger(t)
	st, err := store.Open(ctx, lg, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ex, err := executor.New(lg, executor.Options{Targets: []executor.Target{web}}, st,
		remote.NewLocal(lg, remote.LocalOptions{}), ghstatus.LogOnly(lg))
	if err != nil {
		t.Fatal(err)
	}
	m := mustNew(t, metrics.Options{Targets: []executor.Target{web}})
	srv, err := server.New(lg, server.Options{
		Secrets: [][]byte{[]byte(testSecret)}, MaxBody: 64 << 10, Observer: m,
		Routes: []server.Route{{Target: "web", Repo: "acme/app", Branch: "main", DeployOn: executor.DeployOnPush}},
	}, server.Deps{Queue: ex, Journal: st, Auth: server.AllowAll("anyone")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	push := payload(t, "push", "acme/app", sha(1))
	steps := []struct {
		name     string
		event    string
		delivery string
		body     []byte
		secret   string
		code     int
	}{
		{"unsigned", "push", "d-1", push, "", http.StatusUnauthorized},
		{"wrong secret", "push", "d-2", push, "another-secret-0123456789", http.StatusUnauthorized},
		{"ping", "ping", "d-3", payload(t, "ping", "", ""), testSecret, http.StatusOK},
		{"other repository", "push", "d-4", payload(t, "push", "acme/other", sha(1)), testSecret, http.StatusOK},
		{"deploys", "push", "d-5", push, testSecret, http.StatusAccepted},
		{"redelivered", "push", "d-5", push, testSecret, http.StatusOK},
		{"malformed", "push", "d-6", []byte(`{"ref":`), testSecret, http.StatusBadRequest},
		{"too large", "push", "d-7", bytes.Repeat([]byte(" "), 65<<10), testSecret, http.StatusRequestEntityTooLarge},
	}
	for _, s := range steps {
		if got := post(t, hs.URL, s.event, s.delivery, s.body, s.secret); got != s.code {
			t.Fatalf("%s: %d, want %d", s.name, got, s.code)
		}
	}
	srv.Drain()
	if got := post(t, hs.URL, "push", "d-8", payload(t, "push", "acme/app", sha(2)), testSecret); got != http.StatusServiceUnavailable {
		t.Fatalf("while draining: %d, want 503", got)
	}
	// Other routes are no deliveries.
	if resp, err := http.Get(hs.URL + "/healthz"); err == nil {
		resp.Body.Close()
	}

	text := scrape(t, m)
	got := samples(t, text)
	want(t, got, map[string]float64{
		`deployhook_webhook_deliveries_total{result="unauthorized"}`:  2,
		`deployhook_webhook_deliveries_total{result="ping"}`:          1,
		`deployhook_webhook_deliveries_total{result="ignored"}`:       1,
		`deployhook_webhook_deliveries_total{result="deployed"}`:      1,
		`deployhook_webhook_deliveries_total{result="duplicate"}`:     1,
		`deployhook_webhook_deliveries_total{result="bad_request"}`:   1,
		`deployhook_webhook_deliveries_total{result="too_large"}`:     1,
		`deployhook_webhook_deliveries_total{result="shutting_down"}`: 1,
		`deployhook_webhook_deliveries_total{result="busy"}`:          0,
		`deployhook_webhook_deliveries_total{result="timeout"}`:       0,
		`deployhook_webhook_deliveries_total{result="error"}`:         0,
	})
	// Invariant 6: what arrives before authentication costs bounded memory.
	// Unsigned and foreign deliveries only count up the fixed series.
	if n := strings.Count(text, "\ndeployhook_webhook_deliveries_total{"); n != len(server.Deliveries()) {
		t.Errorf("%d delivery series, want the %d fixed ones", n, len(server.Deliveries()))
	}
	if hasSeries(got, `deployhook_queue_jobs{target="web"}`) {
		t.Error("queue depth exported without a Queue to read")
	}
}
