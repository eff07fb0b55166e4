package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain_SignalEndsServeCleanly: SIGINT (Ctrl-C) and SIGTERM (kill, systemd,
// a container runtime) end deployhook serve in order, and the process exits 0:
// a clean shutdown asked for by a signal is no failure. make run execs the
// binary and relies on it to end quietly. Before issue 9 a signal in the first
// milliseconds, while the executor recovered the journal, cancelled that
// recovery, and deployhook exited 1 with "recover journal: list orphaned jobs:
// context canceled".
func TestMain_SignalEndsServeCleanly(t *testing.T) {
	if args := os.Getenv("DEPLOYHOOK_TEST_MAIN"); args != "" {
		// The child: the real main, with its own signal handling and exit.
		os.Args = append([]string{"deployhook"}, strings.Split(args, "\n")...)
		main()
		return
	}
	for _, tc := range []struct {
		name  string
		sig   syscall.Signal
		ready bool // signal once /readyz answers 200, else as soon as it listens
	}{
		{"SIGINT at once", syscall.SIGINT, false},
		{"SIGTERM at once", syscall.SIGTERM, false},
		{"SIGINT when ready", syscall.SIGINT, true},
		{"SIGTERM when ready", syscall.SIGTERM, true},
	} {
		sig := tc.sig
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "deployhook.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
log: {format: json, level: info}
github: {report: false}
ui: {auth: none}
targets:
  - name: demo
    repo: acme/app
    branch: main
    transport: local
    lock: %s/deploy.lock
    steps:
      - {name: deploy, run: "true", timeout: 30s}
`, dir)), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"serve", "--config", cfg, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}
			child := exec.Command(os.Args[0], "-test.run=^TestMain_SignalEndsServeCleanly$")
			child.Env = append(os.Environ(), "DEPLOYHOOK_TEST_MAIN="+strings.Join(args, "\n"),
				"DEPLOYHOOK_WEBHOOK_SECRET="+testSecret)
			var stderr bytes.Buffer
			child.Stderr = &stderr
			out, err := child.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			url := readURL(t, out)
			if tc.ready {
				waitReady(t, url)
			}
			if err := child.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			go func() { done <- child.Wait() }()
			select {
			case err = <-done:
			case <-time.After(2 * time.Minute): // a hang guard only
				child.Process.Kill()
				<-done
				t.Fatalf("deployhook did not stop after %v\n%s", sig, stderr.String())
			}
			if err != nil {
				t.Errorf("after %v: %v, want exit status 0\n%s", sig, err, stderr.String())
			}
			if log := stderr.String(); !strings.Contains(log, `"message":"stopped"`) || strings.Contains(log, "deployhook:") {
				t.Errorf("after %v the log does not end with a clean stop:\n%s", sig, log)
			}
		})
	}
}

// waitReady polls url/readyz until it answers 200 (a minute at most).
func waitReady(t *testing.T, url string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz: not ready within a minute (%v)", url, err)
		}
	}
}
