package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The TestSystemd_ tests run the whole program against a real systemd booted
// in its own namespaces (internal/systemdtest), over the sshd inside them: the
// default sequence's restarts are real restarts, its verify step reads the
// real ActiveState and NRestarts through D-Bus as the login user, and a
// crash-looping unit really crash-loops. They guard safety invariant 4 (every
// pending commit ends final) on real units, and that a failed verify brings
// the previous commit back up.

// A push restarts the Restart=always unit for real and the verify step
// passes: the unit runs the new commit, active, NRestarts unchanged.
func TestSystemd_RestartVerifies(t *testing.T) {
	s := newSystemdVM(t)
	gh := s.github(t)
	p := startProgram(t, s.config(t, 2*time.Second, ""), filepath.Join(s.dir, "data"), testEnv(gh))
	before := s.show(t, "InvocationID")

	c2 := s.commit(t, "two", map[string]string{"start.sh": startScript("two")})
	job := push(t, p, c2)
	if st := final(t, gh, c2); st.State != "success" || st.Description != "deployed "+c2[:7] {
		t.Fatalf("status %s %q, want success deployed %s", st.State, st.Description, c2[:7])
	}
	if got := s.head(t); got != c2 {
		t.Errorf("checkout at %s, want %s", got, c2)
	}
	if got, want := s.runs(t), []string{"one", "two"}; !slices.Equal(got, want) {
		t.Errorf("the unit ran %v, want %v (one start per commit, no crash)", got, want)
	}
	if got := s.show(t, "InvocationID"); got == before || got == "" {
		t.Errorf("InvocationID %q after the deploy, was %q: the unit was not restarted", got, before)
	}
	if got := s.show(t, "ActiveState"); got != "active" {
		t.Errorf("ActiveState %q, want active", got)
	}
	if got := s.show(t, "NRestarts"); got != "0" {
		t.Errorf("NRestarts %q, want 0", got)
	}
	j := getJob(t, p, job)
	if out, want := j.output("verify"), s.name()+" active for 2s"; !strings.Contains(out, want) {
		t.Errorf("verify output %q, want %q", out, want)
	}
	if got, want := j.stepNames(), []string{"preflight", "fetch", "checkout", "sync", "restart " + s.name(), "verify"}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

// A commit whose start script exits 1 crash-loops under Restart=always; the
// verify step sees it through a real NRestarts, the deploy rolls back and the
// unit runs the previous commit again, stable.
func TestSystemd_CrashLoopRollsBack(t *testing.T) {
	s := newSystemdVM(t)
	gh := s.github(t)
	p := startProgram(t, s.config(t, 4*time.Second, ""), filepath.Join(s.dir, "data"), testEnv(gh))

	c2 := s.commit(t, "crashes", map[string]string{"start.sh": crashScript("crash")})
	job := push(t, p, c2)
	st := final(t, gh, c2)
	if want := "verify failed (exit 1); rolled back to " + s.first[:7]; st.State != "failure" || st.Description != want {
		t.Errorf("status %s %q, want failure %q", st.State, st.Description, want)
	}
	if got := s.head(t); got != s.first {
		t.Errorf("checkout at %s after the rollback, want %s", got, s.first)
	}
	j := getJob(t, p, job)
	out := j.output("verify")
	m := regexp.MustCompile(regexp.QuoteMeta(s.name()) + ` restarted by systemd within 4s \(NRestarts (\d+) -> (\d+)\): crash loop`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("verify output %q does not name the crash loop", out)
	}
	if n0, n1 := atoi(t, m[1]), atoi(t, m[2]); n1 <= n0 {
		t.Errorf("NRestarts %d -> %d, want it to grow", n0, n1)
	}
	if out, want := j.output("rollback: verify"), s.name()+" active for 4s"; !strings.Contains(out, want) {
		t.Errorf("rollback verify output %q, want %q", out, want)
	}
	// The unit started the crashing commit more than once (systemd restarted
	// it), then the previous commit, where it stays.
	runs := s.runs(t)
	crashes := 0
	for _, r := range runs {
		if r == "crash" {
			crashes++
		}
	}
	if crashes < 2 || runs[0] != "one" || runs[len(runs)-1] != "one" {
		t.Errorf("the unit ran %v, want one, crash at least twice, then one again", runs)
	}
	if got := s.show(t, "ActiveState"); got != "active" {
		t.Errorf("ActiveState %q after the rollback, want active", got)
	}
	// No check that NRestarts is back to 0: the rollback's restart may meet
	// systemd's own pending auto-restart of the crashing commit, which it
	// then counts (seen once in four runs). What matters is checked above:
	// the rollback's verify saw the previous commit active with an unchanged
	// NRestarts for the whole settle time.
}

// A custom step installs the unit file a commit carries, after
// systemd-analyze verify, and reloads systemd: the new unit runs. A unit file
// that does not verify fails the step before it is installed, and the
// rollback reinstalls the previous commit's. (What the apply feature does
// with infra/files/, run here by hand.)
func TestSystemd_UnitFileStepReloads(t *testing.T) {
	s := newSystemdVM(t)
	gh := s.github(t)
	src := filepath.Join(s.app, "infra", "files", s.unit)
	dst := filepath.Join("/etc/systemd/system", s.unit)
	steps := fmt.Sprintf(`      - name: checkout
        user: %[1]s
        dir: %[2]s
        run: git fetch --quiet origin && git -c advice.detachedHead=false checkout --quiet --detach "$DEPLOYHOOK_SHA"
        timeout: 1m
        checkpoint: true
      - name: apply unit
        sudo: true
        run: systemd-analyze verify %[3]s && install -m 0644 %[3]s %[4]s && systemctl daemon-reload && systemctl restart %[5]s
        timeout: 1m
`, s.user, s.app, src, dst, s.unit)
	p := startProgram(t, s.config(t, 0, steps), filepath.Join(s.dir, "data"), testEnv(gh))

	c2 := s.commit(t, "unit v2", map[string]string{
		"infra/files/" + s.unit: s.unitFile("Environment=VERSION=2\n"),
		"start.sh":              startScript("two"),
	})
	push(t, p, c2)
	if st := final(t, gh, c2); st.State != "success" {
		t.Fatalf("status %s %q, want success", st.State, st.Description)
	}
	if got := s.show(t, "Environment"); !strings.Contains(got, "VERSION=2") {
		t.Errorf("Environment %q: the new unit file is not loaded", got)
	}
	if got := s.show(t, "NeedDaemonReload"); got != "no" {
		t.Errorf("NeedDaemonReload %q, want no", got)
	}
	if got := s.lastRan(t); got != "two" {
		t.Errorf("the unit runs %q, want two", got)
	}

	c3 := s.commit(t, "broken unit", map[string]string{
		"infra/files/" + s.unit: strings.Replace(s.unitFile("Environment=VERSION=3\n"), "ExecStart=/bin/sh ", "ExecStart=bin/sh ", 1),
		"start.sh":              startScript("three"),
	})
	job := push(t, p, c3)
	st := final(t, gh, c3)
	if want := "apply unit failed (exit 1); rolled back to " + c2[:7]; st.State != "failure" || st.Description != want {
		t.Errorf("status %s %q, want failure %q", st.State, st.Description, want)
	}
	j := getJob(t, p, job)
	if out, want := j.output("apply unit"), "Neither a valid executable name nor an absolute path: bin/sh"; !strings.Contains(out, want) {
		t.Errorf("apply unit output %q does not show systemd-analyze verify's complaint", out)
	}
	if got, want := j.stepNames(), []string{"checkout", "apply unit", "rollback: checkout", "rollback: apply unit"}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	b, err := os.ReadFile(dst)
	if err != nil || !strings.Contains(string(b), "VERSION=2") {
		t.Errorf("installed unit file after the rollback: %v\n%s", err, b)
	}
	if got := s.show(t, "Environment"); !strings.Contains(got, "VERSION=2") {
		t.Errorf("Environment %q after the rollback, want VERSION=2", got)
	}
	if got := s.show(t, "ActiveState"); got != "active" || s.lastRan(t) != "two" {
		t.Errorf("after the rollback the unit is %s running %q, want active running two", got, s.lastRan(t))
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
