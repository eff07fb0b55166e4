package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests hold invariant 4 (every job has one owner at a time; every
// pending commit ends final) across a command-line deploy and the service
// sharing one journal. Before issue 8 a service restart marked a running
// "deployhook deploy" job failed and the CLI then cancelled its own live step
// (no rollback), and a CLI killed with -9 left its job running, its commit
// pending, until some later restart.

// blockingStep is a step that, for sha(1) only, writes started and waits until
// release exists.
func blockingStep(started, release string) string {
	return fmt.Sprintf(`      - name: migrate
        run: if [ "$DEPLOYHOOK_SHA" = %s ]; then touch %s; while [ ! -e %s ]; do sleep 0.05; done; fi
        timeout: 2m
`, sha(1), started, release)
}

func waitFile(t *testing.T, file string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(file); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", filepath.Base(file), within)
		}
	}
}

// TestRun_CLIDeploySurvivesServiceRestarts: the service starts, and restarts,
// while deployhook deploy runs a step on the same journal: it leaves the CLI's
// job alone, and the CLI's deploy ends as it would have.
func TestRun_CLIDeploySurvivesServiceRestarts(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	cfg := writeConfig(t, dir, blockingStep(started, release))
	data := filepath.Join(dir, "data")

	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		args := []string{"deploy", "--config", cfg, "--data-dir", data, "--target", "production", "--sha", sha(1)}
		done <- run(context.Background(), args, testEnv(gh), nil, &out, t.Output())
	}()
	waitFile(t, started, 30*time.Second)

	// Two service lives, each longer than three leases (2 s in writeConfig):
	// each one's recovery at start and its sweeps saw the CLI's job.
	for range 2 {
		p := startProgram(t, cfg, data, testEnv(gh))
		time.Sleep(6 * time.Second)
		p.stop()
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("deploy: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("deployhook deploy did not finish")
	}
	ss := gh.waitFinal(t, sha(1), 30*time.Second)
	if got := states(ss); got[len(got)-1] != "success" || strings.Contains(strings.Join(got, " "), "error") || strings.Contains(strings.Join(got, " "), "failure") {
		t.Errorf("statuses of the CLI's deploy: %v, want pending ones then success only", got)
	}
	if !strings.Contains(out.String(), "success: deployed "+sha(1)[:7]) {
		t.Errorf("CLI output lacks the success:\n%s", out.String())
	}
}

// TestRun_KilledCLIJobEndedByNextProcess: deployhook deploy is killed with -9
// mid-step; the next deployhook that opens the journal (here the service)
// ends its job as interrupted once the CLI's lease has expired, so the commit
// does not stay pending.
func TestRun_KilledCLIJobEndedByNextProcess(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	cfg := writeConfig(t, dir, blockingStep(started, release))
	data := filepath.Join(dir, "data")
	// Whatever happens, let a step left behind end.
	t.Cleanup(func() { os.WriteFile(release, nil, 0o600) })

	child := exec.Command(os.Args[0], "deploy", "--config", cfg, "--data-dir", data, "--target", "production", "--sha", sha(1))
	child.Env = append(os.Environ(), "DEPLOYHOOK_TEST_CHILD=1",
		"DEPLOYHOOK_WEBHOOK_SECRET="+testSecret, "DEPLOYHOOK_GITHUB_TOKEN="+testToken,
		"DEPLOYHOOK_GITHUB_API_URL="+gh.srv.URL+"/")
	child.Stdout, child.Stderr = t.Output(), t.Output()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, started, 30*time.Second)
	// The running status reached GitHub: the commit shows pending.
	for deadline := time.Now().Add(30 * time.Second); len(gh.of(sha(1))) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("statuses before the kill: %v", gh.of(sha(1)))
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if ss := gh.of(sha(1)); ss[len(ss)-1].State != "pending" {
		t.Fatalf("before any other process ran: %v, want still pending", states(ss))
	}

	startProgram(t, cfg, data, testEnv(gh))
	ss := gh.waitFinal(t, sha(1), 30*time.Second)
	last := ss[len(ss)-1]
	if last.State != "error" || last.Description != "interrupted: the deployhook that ran it stopped; target state unknown" {
		t.Errorf("the killed CLI's job: %s %q, want error, interrupted", last.State, last.Description)
	}
}
