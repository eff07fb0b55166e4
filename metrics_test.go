package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startServe runs serve like startProgram and also returns the address of
// /metrics' own listener, "" when serve opened none.
func startServe(t *testing.T, cfgPath, dataDir string, getenv func(string) string) (*program, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	p := &program{cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := run(ctx, []string{"serve", "--config", cfgPath, "--listen", "127.0.0.1:0", "--data-dir", dataDir},
			getenv, strings.NewReader(""), pw, t.Output())
		pw.Close()
		p.done <- err
	}()
	t.Cleanup(p.stop)
	metricsURL := ""
	sc := bufio.NewScanner(pr)
	for p.url == "" && sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "deployhook metrics on "); ok {
			metricsURL = u
		}
		if u, ok := strings.CutPrefix(sc.Text(), "deployhook listening on "); ok {
			p.url = u
		}
	}
	if p.url == "" {
		t.Fatal("deployhook did not start listening")
	}
	go io.Copy(io.Discard, pr)
	return p, metricsURL
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServe_MetricsOnMainListener: without metrics_listen, and with pages
// open to everyone, /metrics is on the main listener and counts what serve
// did: the delivery, the deploy, the journal's writes, the version.
func TestServe_MetricsOnMainListener(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	p, own := startServe(t, writeConfig(t, dir, ""), filepath.Join(dir, "data"), testEnv(gh))
	if own != "" {
		t.Errorf("serve opened a metrics listener at %s without metrics_listen", own)
	}
	if code, _ := deliver(t, p.url, "push", "delivery-1", pushBody(t, sha(1))); code != http.StatusAccepted {
		t.Fatalf("push: %d", code)
	}
	gh.waitFinal(t, sha(1), 30*time.Second)
	code, body := get(t, p.url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, line := range []string{
		`deployhook_webhook_deliveries_total{result="deployed"} 1`,
		`deployhook_deploys_total{outcome="success",target="production"} 1`,
		`deployhook_queue_jobs{target="production"} 0`,
		`deployhook_github_api_errors_total{kind="server"} 0`,
		`deployhook_journal_write_errors_total{op="create_job"} 0`,
		`deployhook_journal_write_duration_seconds_count{op="create_job"} 1`,
		`,version="dev"} 1`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics has no line %q", line)
		}
	}
}

// TestServe_MetricsOwnListener: with metrics_listen, /metrics is served there
// alone, and the main (public) listener answers 404 for it.
func TestServe_MetricsOwnListener(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append([]byte("metrics_listen: 127.0.0.1:0\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	p, own := startServe(t, cfg, filepath.Join(dir, "data"), testEnv(gh))
	if own == "" {
		t.Fatal("serve opened no metrics listener")
	}
	if code, _ := get(t, p.url+"/metrics"); code != http.StatusNotFound {
		t.Errorf("GET /metrics on the main listener: %d, want 404", code)
	}
	code, body := get(t, own)
	if code != http.StatusOK || !strings.Contains(body, `deployhook_deploys_total{outcome="success",target="production"} 0`+"\n") {
		t.Errorf("GET %s: %d, want 200 with the metrics", own, code)
	}
	if code, _ := get(t, strings.TrimSuffix(own, "/metrics")+"/jobs"); code != http.StatusNotFound {
		t.Errorf("the metrics listener served /jobs: %d, want 404", code)
	}
	p.stop()
	if _, err := http.Get(own); err == nil {
		t.Error("the metrics listener still answers after serve returned")
	}
}
