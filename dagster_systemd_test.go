package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/internal/dagstertest"
)

// The TestDagsterSystemd_ tests run issue 13's cases (apply, probes, the
// post-deploy watch) through the whole program on a real systemd booted in
// its own namespaces (internal/systemdtest), over the sshd inside them: real
// systemd-analyze verify, daemon-reload and restarts, real NRestarts read
// through D-Bus, and a real server run by the app's unit (dsVM), which the
// probes, the watch and the test reach on 127.0.0.1. Each test boots its own
// VM (about a second).

// A changed unit file is verified, backed up, installed, systemd reloaded and
// the unit restarted under it; the next change breaks the webserver, its probe
// fails, and the rollback restores the previous unit file and reloads systemd
// before the previous commit's restart: the unit runs the old version again.
func TestDagsterSystemd_UnitAppliedAndRolledBack(t *testing.T) {
	s := newDagsterVM(t)
	gh := s.github(t)
	cfg := s.config(t, fmt.Sprintf("    apply: [units]\n    apply_backup_dir: %s\n    verify_within: 3s\n    verify:\n%s", s.backup, s.webserverProbe()))
	p := startProgram(t, cfg, filepath.Join(s.dir, "data"), testEnv(gh))
	before := s.show(t, "InvocationID")

	unit2 := s.unitFile(2, "")
	c2 := s.commit(t, "unit rev 2", map[string]string{"infra/files/" + s.unit: unit2, "start.sh": s.startScript("two")})
	job2 := push(t, p, c2)
	if st, want := final(t, gh, c2), "deployed "+c2[:7]+"; applied: "+s.unit; st.State != "success" || st.Description != want {
		t.Fatalf("status %s %q, want success %q", st.State, st.Description, want)
	}
	if got := s.installedUnit(t); got != unit2 {
		t.Errorf("installed unit file:\n%s\nwant the commit's:\n%s", got, unit2)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "two" || i.UnitRev != "2" {
		t.Errorf("the server answers %d %+v, want version two under unit rev 2", code, i)
	}
	for prop, want := range map[string]string{"ActiveState": "active", "NeedDaemonReload": "no", "NRestarts": "0"} {
		if got := s.show(t, prop); got != want {
			t.Errorf("%s %q, want %q", prop, got, want)
		}
	}
	if got := s.show(t, "InvocationID"); got == before {
		t.Errorf("InvocationID unchanged: the unit was not restarted")
	}
	backup := filepath.Join(s.backup, getJobID(t, job2), "units", "old", s.unit)
	if b, err := os.ReadFile(backup); err != nil || string(b) != s.unitFile1() {
		t.Errorf("backup %s: %v\n%s\nwant the unit file installed before", backup, err, b)
	}
	j := getJob(t, p, job2)
	if want := []string{"preflight", "fetch", "checkout", "sync", "apply units", "restart " + s.name(), "restart applied units", "verify", "probe: webserver"}; !slices.Equal(j.stepNames(), want) {
		t.Errorf("steps %v, want %v", j.stepNames(), want)
	}
	out := j.output("apply units")
	for _, want := range []string{"systemd-analyze verify " + s.unit + "\n", "installed /etc/systemd/system/" + s.unit, "\nsystemctl daemon-reload\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply units output does not say %q:\n%s", want, out)
		}
	}
	if out := j.output("restart applied units"); !strings.Contains(out, s.unit+": restarted by its own step") {
		t.Errorf("restart applied units output %q, want the unit left to its own restart", out)
	}

	// Rev 3 makes the webserver answer 503: the probe fails, and the
	// rollback puts rev 2 back.
	c3 := s.commit(t, "unit rev 3", map[string]string{"infra/files/" + s.unit: s.unitFile(3, "Environment=APP_STATUS=503\n"), "start.sh": s.startScript("three")})
	job3 := push(t, p, c3)
	if st, want := final(t, gh, c3), "probe webserver: answered 503, want 200; rolled back to "+c2[:7]; st.State != "failure" || st.Description != want {
		t.Errorf("status %s %q, want failure %q", st.State, st.Description, want)
	}
	if got := s.installedUnit(t); got != unit2 {
		t.Errorf("installed unit file after the rollback:\n%s\nwant rev 2:\n%s", got, unit2)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "two" || i.UnitRev != "2" {
		t.Errorf("after the rollback the server answers %d %+v, want version two under unit rev 2", code, i)
	}
	if got := s.show(t, "Environment"); strings.Contains(got, "APP_STATUS") || !strings.Contains(got, "UNIT_REV=2") {
		t.Errorf("Environment %q after the rollback: rev 2 is not loaded", got)
	}
	for prop, want := range map[string]string{"ActiveState": "active", "NeedDaemonReload": "no", "NRestarts": "0"} {
		if got := s.show(t, prop); got != want {
			t.Errorf("%s %q after the rollback, want %q", prop, got, want)
		}
	}
	if got, want := s.runs(t), []string{"one", "two", "three", "two"}; !slices.Equal(got, want) {
		t.Errorf("the unit ran %v, want %v", got, want)
	}
	if got := s.head(t); got != c2 {
		t.Errorf("checkout at %s, want %s", got, c2)
	}
	j = getJob(t, p, job3)
	if out := j.output("probe: webserver"); !strings.Contains(out, "attempt 1: answered 503, want 200") {
		t.Errorf("probe output %q, want the 503", out)
	}
	rb := j.output("rollback: apply units")
	if !strings.Contains(rb, "restored /etc/systemd/system/"+s.unit) || !strings.HasSuffix(rb, "systemctl daemon-reload\n") {
		t.Errorf("rollback: apply units output %q, want the restore and the reload", rb)
	}
	names := j.stepNames()
	if i, k := slices.Index(names, "rollback: apply units"), slices.Index(names, "rollback: restart "+s.name()); i < 0 || k < i {
		t.Errorf("steps %v: the unit file must be restored before the previous commit's restart", names)
	}
	if out := j.output("rollback: probe: webserver"); !strings.Contains(out, "probe webserver: passed") {
		t.Errorf("the rollback's probe output %q, want it passed", out)
	}
}

// getJobID returns job, checked to be a job ID a backup directory may be
// named after.
func getJobID(t *testing.T, job string) string {
	t.Helper()
	if !regexp.MustCompile(`^[A-Za-z0-9-]+$`).MatchString(job) {
		t.Fatalf("job ID %q", job)
	}
	return job
}

var _ = dagstertest.Start
var _ = time.Second
