package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// This file holds the README's claims true, each test naming the claim.

// getCode answers GET url's status code and body, or fails the test.
func getCode(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// README, "How it behaves on bad input": "deployhook shutting down | 503".
// On SIGTERM deployhook drains: a delivery is answered 503 with the reason
// and /readyz is 503 while the running deploy finishes, which it does and
// reports; the refused delivery was not recorded, so its redelivery after the
// restart deploys. Before issue 12 serve closed the listener first: the
// delivery was refused a connection (or, with its body in flight, answered
// 202 and left queued until the next start), and this test failed.
func TestReadme_ShuttingDownIs503(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	release := filepath.Join(dir, "release")
	hold := fmt.Sprintf(`      - name: hold
        run: echo "holding $DEPLOYHOOK_SHA" >> %[1]s/ran; while [ ! -e %[2]s ]; do sleep 0.05; done
        timeout: 60s
`, dir, release)
	cfg := writeConfig(t, dir, hold)
	data := filepath.Join(dir, "data")
	p := startProgram(t, cfg, data, testEnv(gh))

	if code, body := deliver(t, p.url, "push", "delivery-1", pushBody(t, sha(1))); code != http.StatusAccepted {
		t.Fatalf("push 1: %d %v", code, body)
	}
	waitRan(t, filepath.Join(dir, "ran"), "holding "+sha(1))

	p.cancel() // SIGTERM
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := getCode(t, p.url+"/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after shutdown started, want 503", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := deliver(t, p.url, "push", "delivery-2", pushBody(t, sha(2)))
	if want := "deployhook is shutting down; redeliver from the webhook's Recent Deliveries once it is back"; code != http.StatusServiceUnavailable || body["error"] != want {
		t.Errorf("delivery while shutting down: %d %v, want 503 %q", code, body, want)
	}
	if code, _ := getCode(t, p.url+"/"); code != http.StatusOK {
		t.Errorf("index while draining: %d, want 200 (pages still answer)", code)
	}
	select {
	case err := <-p.done:
		t.Fatalf("deployhook exited (%v) while a deploy was running", err)
	default:
	}

	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.cancel = nil
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("deployhook did not stop after the running deploy finished")
	}
	if ss := gh.of(sha(1)); len(ss) == 0 || ss[len(ss)-1].State != "success" {
		t.Errorf("running deploy's statuses %+v, want it finished and reported success", ss)
	}
	if ss := gh.of(sha(2)); len(ss) != 0 {
		t.Errorf("the refused delivery was reported: %+v, want nothing recorded", ss)
	}

	// Nothing is lost: the redelivery, after the restart, deploys.
	p = startProgram(t, cfg, data, testEnv(gh))
	code, body = deliver(t, p.url, "push", "delivery-2", pushBody(t, sha(2)))
	if code != http.StatusAccepted || body["sha"] != sha(2) {
		t.Fatalf("redelivery after restart: %d %v, want 202", code, body)
	}
	if ss := gh.waitFinal(t, sha(2), 30*time.Second); ss[len(ss)-1].State != "success" {
		t.Errorf("redelivered deploy: %+v, want success", ss)
	}
}
