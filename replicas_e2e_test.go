package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
)

// A replica whose PostgreSQL journal goes away says it is not ready, with a
// public reason (no host, port, database or driver error in it), and answers
// deliveries 503 so that GitHub (or the load balancer) sends them elsewhere;
// once the database is back it is ready again, without a restart. The
// database "goes away" behind a TCP proxy that cuts every connection and
// refuses new ones, as a stopped server or a failed-over Cloud SQL instance
// does. Invariant 1 (nothing recorded while the journal cannot take it) and 5
// (nothing public carries hostnames) are what it guards.
func TestReplicas_ReadyzDatabaseDown(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newSwitchProxy(t, u.Host)
	_, proxyPort, _ := strings.Cut(proxy.addr(), ":")
	u.Host = proxy.addr()
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	env := map[string]string{
		"DEPLOYHOOK_WEBHOOK_SECRET": testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN":   testToken,
		"DEPLOYHOOK_GITHUB_API_URL": gh.srv.URL + "/",
		"DEPLOYHOOK_DATABASE_URL":   u.String(),
	}
	p := startProgram(t, writeReplicaConfig(t, dir), filepath.Join(dir, "data"), func(k string) string { return env[k] })
	// Ready, and past its start-up recovery: it holds the lane.
	poll(t, "the replica to be ready and hold the lane", func() bool {
		code, body, err := readyz(p.url)
		pid, _ := laneHolder(t, db)
		return err == nil && code == http.StatusOK && body == "ready" && pid == os.Getpid()
	})

	proxy.setDown(true)
	var code int
	var body string
	poll(t, "the replica to say it is not ready", func() bool {
		code, body, err = readyz(p.url)
		return err == nil && code != http.StatusOK
	})
	var got struct{ Error string }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/readyz with the database down: %d %q: %v", code, body, err)
	}
	const want = "not ready: " + pgNotReady
	if code != http.StatusServiceUnavailable || got.Error != want {
		t.Errorf("/readyz with the database down = %d %q, want 503 %q", code, got.Error, want)
	}
	for _, secret := range []string{"127.0.0.1", proxyPort, u.Port(), strings.TrimPrefix(u.Path, "/"), "postgres", "dial", "connect"} {
		if strings.Contains(body, secret) {
			t.Errorf("/readyz body %q carries %q", body, secret)
		}
	}
	// A delivery is refused for now: GitHub redelivers it later.
	if code, out := deliver(t, p.url, "push", "down-1", pushBody(t, sha(1))); code != http.StatusServiceUnavailable {
		t.Errorf("push with the database down: %d %v, want 503", code, out)
	}

	proxy.setDown(false)
	poll(t, "the replica to be ready again", func() bool {
		code, body, err := readyz(p.url)
		return err == nil && code == http.StatusOK && body == "ready"
	})
	if code, out := deliver(t, p.url, "push", "up-1", pushBody(t, sha(1))); code != http.StatusAccepted {
		t.Errorf("push once the database is back: %d %v, want 202", code, out)
	}
	gh.waitFinal(t, sha(1), 2*time.Minute)
}
