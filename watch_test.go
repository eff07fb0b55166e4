package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/internal/dagstertest"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// The post-deploy watch on the VM of the TestVM_ tests (real sshd, git,
// sudo and flock), with a fake Dagster GraphQL endpoint on 127.0.0.1 that
// the check reaches with the VM's curl: runs that start failing after the
// deploy roll it back, and the commit, first reported success, ends failure.
func TestVM_WatchRollsBackOnFailingRuns(t *testing.T) {
	sshdtest.Require(t, "curl", "/usr/bin/curl")
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	gql := dagstertest.Start(t)
	cfg := v.writeConfig(t, vmConfig{app: true})
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "    watch: {for: 10m, every: 5s, trips: 2, failed_runs: {url: %q, max_share: 0.5, min_runs: 3}}\n", gql.URL)
	f.Close()
	p := startProgram(t, cfg, filepath.Join(v.dir, "data"), testEnv(gh))

	c2 := v.commit(t, "breaks a job", map[string]string{"app.py": "print('two')\n"})
	job := push(t, p, c2)
	if s := final(t, gh, c2); s.State != "success" || s.Description != "deployed "+c2[:7] {
		t.Fatalf("status %s %q, want success first", s.State, s.Description)
	}
	// Final at once: the job page shows the watch running as the last step.
	j := getJob(t, p, job)
	if names := j.stepNames(); j.State != "success" || names[len(names)-1] != "watch" {
		t.Fatalf("job %s with steps %v, want success ending with the watch", j.State, names)
	}
	// Dagster's runs start failing after the deploy: stamped later than the
	// VM's clock reading at the deploy, which the watch takes after its
	// success (an hour ahead, so no race with it).
	later := time.Now().Add(time.Hour)
	for i, st := range []string{"FAILURE", "FAILURE", "SUCCESS", "FAILURE", "FAILURE"} {
		gql.Add(dagstertest.Run{ID: fmt.Sprint("run-", i), Status: st, Created: later, Updated: later})
	}
	// Two checks 5 s apart, then the rollback: bounded generously, never timed.
	var last status
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		ss := gh.of(c2)
		if last = ss[len(ss)-1]; last.State != "success" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rollback within 2 minutes; watch output:\n%s", getJob(t, p, job).output("watch"))
		}
	}
	if re := regexp.MustCompile(`^rolled back after \d+ s: 4 of 5 runs failed since deploy, 0 of 0 before$`); last.State != "failure" || !re.MatchString(last.Description) {
		t.Errorf("status %s %q, want failure %s", last.State, last.Description, re)
	}
	if got := v.head(t); got != v.first {
		t.Errorf("checkout at %s after the rollback, want %s", got, v.first)
	}
	var restarted []string
	for _, c := range v.calls(t, "systemctl restart") {
		restarted = append(restarted, c.sha[:7]+" "+strings.TrimPrefix(c.cmd, "systemctl restart "))
	}
	want := []string{c2[:7] + " dagster-code", c2[:7] + " dagster", v.first[:7] + " dagster-code", v.first[:7] + " dagster"}
	if !slices.Equal(restarted, want) {
		t.Errorf("restarts %v, want %v", restarted, want)
	}
	j = getJob(t, p, job)
	out := j.output("watch")
	if j.State != "failure" || !strings.Contains(out, "degraded (2 of 2): 4 of 5 runs failed since deploy, 0 of 0 before") ||
		!strings.Contains(out, "rolling back to "+v.first[:7]+" under the deploy lock") {
		t.Errorf("job %s, watch output:\n%s", j.State, out)
	}
	if names := j.stepNames(); names[len(names)-1] != "rollback: verify" {
		t.Errorf("steps %v, want the rollback after the watch", names)
	}
	if gql.Requests() < 2 {
		t.Errorf("%d GraphQL requests, want one per check", gql.Requests())
	}
}

// The target's verify: probes join every watch check, but for command probes,
// which run as their own user in the deploy while a check runs as the login
// user.
func TestTargetWatch_Probes(t *testing.T) {
	tg := config.Target{
		AppDir: "/srv/app", AppUser: "app", Units: []string{"dagster"},
		Watch: &config.Watch{For: config.Duration(15 * time.Minute)},
	}
	tg.Verify = []config.Probe{
		{Name: "webserver", HTTP: &config.HTTPProbe{URL: "http://127.0.0.1:3000/server_info"}},
		{Name: "migrations", Command: &config.CommandProbe{Run: "./check-migrations"}},
	}
	w := targetWatch(&tg, targetSequence(tg))
	if w == nil {
		t.Fatal("no watch")
	}
	if !strings.Contains(w.Check.Run, "http://127.0.0.1:3000/server_info") || !strings.Contains(w.Check.Run, "webserver") {
		t.Errorf("the watch check does not run the http probe:\n%s", w.Check.Run)
	}
	if strings.Contains(w.Check.Run, "check-migrations") {
		t.Errorf("the watch check runs the command probe as the login user:\n%s", w.Check.Run)
	}
	tg.Verify = nil
	if w := targetWatch(&tg, targetSequence(tg)); strings.Contains(w.Check.Run, "probes=") {
		t.Errorf("a target without probes gets a probe block:\n%s", w.Check.Run)
	}
}
