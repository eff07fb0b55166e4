package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
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
// A unit file that systemd-analyze verify refuses is never installed.
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
	if out := j.output("probe: webserver"); !strings.HasSuffix(out, "deployhook: probe failed: webserver\tanswered 503, want 200\n") {
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

	// A unit file systemd-analyze verify refuses is not installed: the
	// deploy fails before any restart, and rev 2 stays loaded.
	broken := strings.Replace(s.unitFile(4, ""), "ExecStart=/bin/sh ", "ExecStart=bin/sh ", 1)
	c4 := s.commit(t, "unit rev 4", map[string]string{"infra/files/" + s.unit: broken, "start.sh": s.startScript("four")})
	job4 := push(t, p, c4)
	if st, want := final(t, gh, c4), "apply units failed (exit 1); rolled back to "+c2[:7]; st.State != "failure" || st.Description != want {
		t.Errorf("status %s %q, want failure %q", st.State, st.Description, want)
	}
	j = getJob(t, p, job4)
	if out := j.output("apply units"); !strings.Contains(out, "Neither a valid executable name nor an absolute path: bin/sh") ||
		!strings.HasSuffix(out, "systemd-analyze verify found errors: nothing was installed\n") {
		t.Errorf("apply units output %q, want systemd-analyze verify's complaint", out)
	}
	if got := s.installedUnit(t); got != unit2 {
		t.Errorf("installed unit file after a refused one:\n%s\nwant rev 2", got)
	}
	if got, want := s.runs(t), []string{"one", "two", "three", "two", "two"}; !slices.Equal(got, want) {
		t.Errorf("the unit ran %v, want %v (the refused commit never started)", got, want)
	}
	for prop, want := range map[string]string{"ActiveState": "active", "NeedDaemonReload": "no"} {
		if got := s.show(t, prop); got != want {
			t.Errorf("%s %q after a refused unit file, want %q", prop, got, want)
		}
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

// A changed dagster.yaml is installed in DAGSTER_HOME, the previous one kept,
// and the restarted server reads it; the next one breaks the webserver, and
// the rollback restores the previous dagster.yaml before the previous
// commit's restart.
func TestDagsterSystemd_DagsterYAMLAppliedAndRestored(t *testing.T) {
	s := newDagsterVM(t)
	gh := s.github(t)
	cfg := s.config(t, fmt.Sprintf("    apply: [dagster_yaml]\n    apply_dagster_yaml: {to: %s}\n    apply_backup_dir: %s\n    verify_within: 3s\n    verify:\n%s",
		s.home, s.backup, s.webserverProbe()))
	p := startProgram(t, cfg, filepath.Join(s.dir, "data"), testEnv(gh))
	yaml := filepath.Join(s.home, "dagster.yaml")

	c2 := s.commit(t, "enable telemetry", map[string]string{"dagster.yaml": dsYAML2, "start.sh": s.startScript("two")})
	job2 := push(t, p, c2)
	if st, want := final(t, gh, c2), "deployed "+c2[:7]+"; applied: dagster.yaml"; st.State != "success" || st.Description != want {
		t.Fatalf("status %s %q, want success %q", st.State, st.Description, want)
	}
	for f, want := range map[string]string{yaml: dsYAML2, yaml + ".prev": dsYAML1, filepath.Join(s.backup, getJobID(t, job2), "dagster_yaml", "old", "dagster.yaml"): dsYAML1} {
		if b, err := os.ReadFile(f); err != nil || string(b) != want {
			t.Errorf("%s: %v %q, want %q", f, err, b, want)
		}
	}
	if fi, err := os.Stat(yaml); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != s.uid {
		t.Errorf("dagster.yaml: %v, want it the app user's", err)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "two" || i.DagsterYAML != strings.TrimSpace(dsYAML2) {
		t.Errorf("the server answers %d %+v, want version two with the new dagster.yaml", code, i)
	}
	if out := getJob(t, p, job2).output("apply dagster.yaml"); !strings.Contains(out, "installed "+yaml) {
		t.Errorf("apply dagster.yaml output %q", out)
	}

	c3 := s.commit(t, "broken instance config", map[string]string{"dagster.yaml": dsYAMLBroken, "start.sh": s.startScript("three")})
	job3 := push(t, p, c3)
	if st, want := final(t, gh, c3), "probe webserver: answered 500, want 200; rolled back to "+c2[:7]; st.State != "failure" || st.Description != want {
		t.Errorf("status %s %q, want failure %q", st.State, st.Description, want)
	}
	if b, err := os.ReadFile(yaml); err != nil || string(b) != dsYAML2 {
		t.Errorf("dagster.yaml after the rollback: %v %q, want %q", err, b, dsYAML2)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "two" || i.DagsterYAML != strings.TrimSpace(dsYAML2) {
		t.Errorf("after the rollback the server answers %d %+v, want version two with the restored dagster.yaml", code, i)
	}
	if got, want := s.runs(t), []string{"one", "two", "three", "two"}; !slices.Equal(got, want) {
		t.Errorf("the unit ran %v, want %v", got, want)
	}
	if got := s.show(t, "ActiveState"); got != "active" {
		t.Errorf("ActiveState %q after the rollback, want active", got)
	}
	j := getJob(t, p, job3)
	if out := j.output("rollback: apply dagster.yaml"); !strings.Contains(out, "restored "+yaml+" as it was before job "+job3) {
		t.Errorf("rollback: apply dagster.yaml output %q", out)
	}
	names := j.stepNames()
	if i, k := slices.Index(names, "rollback: apply dagster.yaml"), slices.Index(names, "rollback: restart "+s.name()); i < 0 || k < i {
		t.Errorf("steps %v: dagster.yaml must be restored before the previous commit's restart", names)
	}
}

// A server that listens only a few seconds after its unit started, and whose
// webserver then warms up, passes its probes after retries: the unit is
// active long before the app answers, which is what probes are for.
func TestDagsterSystemd_ProbesPassAfterRetries(t *testing.T) {
	s := newDagsterVM(t)
	gh := s.github(t)
	cfg := s.config(t, fmt.Sprintf("    verify_within: 30s\n    verify:\n      - tcp: 127.0.0.1:%d\n%s", s.port, s.webserverProbe()))
	p := startProgram(t, cfg, filepath.Join(s.dir, "data"), testEnv(gh))

	c2 := s.commit(t, "slow start", map[string]string{"start.sh": s.startScript("two", "APP_DELAY=4", "APP_WARMUP=2")})
	job := push(t, p, c2)
	if st := final(t, gh, c2); st.State != "success" || st.Description != "deployed "+c2[:7] {
		t.Fatalf("status %s %q, want success deployed %s", st.State, st.Description, c2[:7])
	}
	j := getJob(t, p, job)
	if want := []string{"preflight", "fetch", "checkout", "sync", "restart " + s.name(), "verify", fmt.Sprintf("probe: tcp port %d", s.port), "probe: webserver"}; !slices.Equal(j.stepNames(), want) {
		t.Errorf("steps %v, want %v", j.stepNames(), want)
	}
	tcp := j.output(fmt.Sprintf("probe: tcp port %d", s.port))
	if !regexp.MustCompile(fmt.Sprintf(`probe tcp port %d: passed \(attempt \d+\)\n$`, s.port)).MatchString(tcp) {
		t.Errorf("tcp probe output %q, want it passed", tcp)
	}
	t.Logf("the tcp probe (the server listens 4 s after its start):\n%s", tcp)
	// The webserver's first answer is always a 503 (its warm-up starts then):
	// the probe passes only because it retries, seconds later.
	web := j.output("probe: webserver")
	m := regexp.MustCompile(`^probe webserver: attempt 1: answered 503, want 200\nprobe webserver: passed \(attempt (\d+)\)\n$`).FindStringSubmatch(web)
	if m == nil || atoi(t, m[1]) < 2 {
		t.Errorf("webserver probe output %q, want a 503 at attempt 1 and a pass after it", web)
	}
	served := s.served(t)
	if first, last := served[0], served[len(served)-1]; first != "/server_info 200" || !slices.Contains(served, "/server_info 503") || last != "/server_info 200" {
		t.Errorf("the server answered %v: want the first version's 200, then 503s while warming up, then 200", served)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "two" {
		t.Errorf("the server answers %d %+v, want version two", code, i)
	}
	if got := s.show(t, "NRestarts"); got != "0" {
		t.Errorf("NRestarts %q, want 0", got)
	}
}

// A webserver that never answers 200 fails its probe within verify_within:
// the deploy rolls back, the status names the probe and what it saw, and the
// unit runs the previous version again.
func TestDagsterSystemd_ProbeNeverPassesRollsBack(t *testing.T) {
	s := newDagsterVM(t)
	gh := s.github(t)
	cfg := s.config(t, "    verify_within: 3s\n    verify:\n"+s.webserverProbe())
	p := startProgram(t, cfg, filepath.Join(s.dir, "data"), testEnv(gh))

	c2 := s.commit(t, "webserver regression", map[string]string{"start.sh": s.startScript("two", "APP_STATUS=500")})
	job := push(t, p, c2)
	if st, want := final(t, gh, c2), "probe webserver: answered 500, want 200; rolled back to "+s.first[:7]; st.State != "failure" || st.Description != want {
		t.Errorf("status %s %q, want failure %q", st.State, st.Description, want)
	}
	j := getJob(t, p, job)
	out := j.output("probe: webserver")
	if !regexp.MustCompile(`^(.*\n)*probe webserver: attempt \d+: answered 500, want 200\ndeployhook: probe failed: webserver\tanswered 500, want 200\n$`).MatchString(out) {
		t.Errorf("probe output %q, want the 500s and the give-up", out)
	}
	if n := strings.Count(strings.Join(s.served(t), "\n"), "/server_info 500"); n < 2 {
		t.Errorf("the server answered %d 500s, want the probe to have retried", n)
	}
	if want := []string{"preflight", "fetch", "checkout", "sync", "restart " + s.name(), "verify", "probe: webserver",
		"rollback: preflight", "rollback: fetch", "rollback: checkout", "rollback: sync", "rollback: restart " + s.name(), "rollback: verify", "rollback: probe: webserver"}; !slices.Equal(j.stepNames(), want) {
		t.Errorf("steps %v, want %v", j.stepNames(), want)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "one" {
		t.Errorf("after the rollback the server answers %d %+v, want version one", code, i)
	}
	if got, want := s.runs(t), []string{"one", "two", "one"}; !slices.Equal(got, want) {
		t.Errorf("the unit ran %v, want %v", got, want)
	}
	if got := s.head(t); got != s.first {
		t.Errorf("checkout at %s, want %s", got, s.first)
	}
	for prop, want := range map[string]string{"ActiveState": "active", "NRestarts": "0"} {
		if got := s.show(t, prop); got != want {
			t.Errorf("%s %q after the rollback, want %q", prop, got, want)
		}
	}
}

// dagster_code_location asks the project's dagster (the stand-in in .venv)
// whether the code server's location loaded: loaded, the deploy succeeds; a
// location that fails to import fails the probe, the deploy rolls back, and
// the status names the location.
func TestDagsterSystemd_CodeLocation(t *testing.T) {
	s := newDagsterVM(t)
	gh := s.github(t)
	cfg := s.config(t, fmt.Sprintf("    verify_within: 3s\n    verify:\n      - dagster_code_location: {port: %d, location: %s}\n", s.port, dsLocation))
	p := startProgram(t, cfg, filepath.Join(s.dir, "data"), testEnv(gh))
	probe := "probe: dagster_code_location " + dsLocation

	c2 := s.commit(t, "new asset", map[string]string{"start.sh": s.startScript("two")})
	job2 := push(t, p, c2)
	if st := final(t, gh, c2); st.State != "success" || st.Description != "deployed "+c2[:7] {
		t.Fatalf("status %s %q, want success deployed %s", st.State, st.Description, c2[:7])
	}
	// What the stand-in dagster printed, then the pass (at attempt 1 unless
	// the server was slow to listen).
	passed := regexp.MustCompile(`\nSERVING\nprobe dagster_code_location ` + dsLocation + `: passed \(attempt \d+\)\n$`)
	if out := getJob(t, p, job2).output(probe); !passed.MatchString("\n" + out) {
		t.Errorf("probe output %q, want %s", out, passed)
	}
	call := fmt.Sprintf("%s dagster api grpc-health-check --host 127.0.0.1 --port %d", s.user, s.port)
	b, _ := os.ReadFile(s.dagster)
	if calls := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); len(calls) == 0 || slices.ContainsFunc(calls, func(c string) bool { return c != call }) {
		t.Errorf("the stand-in dagster was called %q, want %q (as the app user)", b, call)
	}

	c3 := s.commit(t, "broken import", map[string]string{"start.sh": s.startScript("three", "APP_LOCATION_ERROR=ImportError: cannot import name 'orders' from 'etl.assets'")})
	job3 := push(t, p, c3)
	want := fmt.Sprintf("probe dagster_code_location %s: gRPC health check of port %d failed; rolled back to %s", dsLocation, s.port, c2[:7])
	if st := final(t, gh, c3); st.State != "failure" || st.Description != want {
		t.Errorf("status %s %q, want failure %q", st.State, st.Description, want)
	}
	j := getJob(t, p, job3)
	if out := j.output(probe); !strings.Contains(out, "location "+dsLocation+" failed to load: ImportError: cannot import name 'orders'") {
		t.Errorf("probe output %q, want what the code server said", out)
	}
	if out := j.output("rollback: " + probe); !passed.MatchString("\n" + out) {
		t.Errorf("the rollback's probe output %q, want the location loaded again", out)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "two" {
		t.Errorf("after the rollback the server answers %d %+v, want version two", code, i)
	}
	if got, want := s.runs(t), []string{"one", "two", "three", "two"}; !slices.Equal(got, want) {
		t.Errorf("the unit ran %v, want %v", got, want)
	}
	if got := s.show(t, "ActiveState"); got != "active" {
		t.Errorf("ActiveState %q after the rollback, want active", got)
	}
}

// After a deploy, the watch reads the real unit's state and NRestarts, the
// probes and Dagster's runs (a fake GraphQL endpoint the VM's curl reaches on
// 127.0.0.1): healthy at first; when runs start failing it rolls the deploy
// back by itself, and the commit, first reported success, ends failure.
func TestDagsterSystemd_WatchRollsBackOnFailingRuns(t *testing.T) {
	s := newDagsterVM(t)
	gh := s.github(t)
	gql := dagstertest.Start(t)
	cfg := s.config(t, fmt.Sprintf("    verify_within: 5s\n    verify:\n%s    watch: {for: 5m, every: 5s, trips: 2, failed_runs: {url: %q, max_share: 0.5, min_runs: 3}}\n",
		s.webserverProbe(), gql.URL))
	p := startProgram(t, cfg, filepath.Join(s.dir, "data"), testEnv(gh))

	c2 := s.commit(t, "breaks a job", map[string]string{"start.sh": s.startScript("two")})
	job := push(t, p, c2)
	if st := final(t, gh, c2); st.State != "success" || st.Description != "deployed "+c2[:7] {
		t.Fatalf("status %s %q, want success first", st.State, st.Description)
	}
	// The first check sees the unit active without restarts, the probe
	// passing and no runs.
	healthy := s.name() + " active, no restarts; 0 of 0 runs failed since deploy, 0 of 0 before"
	waitOutput(t, p, job, "watch", "healthy: "+healthy, time.Minute)
	// Runs fail after the deploy: stamped an hour after the VM's clock at
	// the deploy, so that no check can count them before.
	later := time.Now().Add(time.Hour)
	for i, st := range []string{"FAILURE", "FAILURE", "SUCCESS", "FAILURE", "FAILURE"} {
		gql.Add(dagstertest.Run{ID: fmt.Sprint("run-", i), Status: st, Created: later, Updated: later})
	}
	st := waitState(t, gh, c2, "failure", 2*time.Minute)
	if re := regexp.MustCompile(`^rolled back after \d+ s: 4 of 5 runs failed since deploy, 0 of 0 before$`); !re.MatchString(st.Description) {
		t.Errorf("status %q, want %s", st.Description, re)
	}
	j := getJob(t, p, job)
	out := j.output("watch")
	for _, want := range []string{"degraded (1 of 2): 4 of 5 runs failed since deploy, 0 of 0 before", "degraded (2 of 2): 4 of 5 runs failed since deploy, 0 of 0 before",
		"rolling back to " + s.first[:7] + " under the deploy lock"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch output does not say %q:\n%s", want, out)
		}
	}
	if names := j.stepNames(); j.State != "failure" || names[len(names)-1] != "rollback: probe: webserver" || !slices.Contains(names, "rollback: restart "+s.name()) {
		t.Errorf("job %s with steps %v, want failure ending with the rollback after the watch", j.State, names)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "one" {
		t.Errorf("after the rollback the server answers %d %+v, want version one", code, i)
	}
	if got, want := s.runs(t), []string{"one", "two", "one"}; !slices.Equal(got, want) {
		t.Errorf("the unit ran %v, want %v", got, want)
	}
	if got := s.head(t); got != s.first {
		t.Errorf("checkout at %s, want %s", got, s.first)
	}
	for prop, want := range map[string]string{"ActiveState": "active", "NRestarts": "0"} {
		if got := s.show(t, prop); got != want {
			t.Errorf("%s %q after the rollback, want %q", prop, got, want)
		}
	}
}

// A newer deploy ends the watch of the one before: that one stays a success
// and nothing is rolled back. The newer one is watched in its turn: when
// systemd restarts its unit (the server was killed), the watch sees the real
// NRestarts grow and rolls back to the commit before.
func TestDagsterSystemd_WatchEndedByNewerDeploy(t *testing.T) {
	s := newDagsterVM(t)
	gh := s.github(t)
	cfg := s.config(t, "    verify_within: 5s\n    verify:\n"+s.webserverProbe()+"    watch: {for: 10m, every: 5s, trips: 1}\n")
	p := startProgram(t, cfg, filepath.Join(s.dir, "data"), testEnv(gh))
	healthy := "healthy: " + s.name() + " active, no restarts"

	c2 := s.commit(t, "two", map[string]string{"start.sh": s.startScript("two")})
	job2 := push(t, p, c2)
	if st := final(t, gh, c2); st.State != "success" {
		t.Fatalf("status %s %q, want success", st.State, st.Description)
	}
	waitOutput(t, p, job2, "watch", healthy, time.Minute)

	c3 := s.commit(t, "three", map[string]string{"start.sh": s.startScript("three")})
	job3 := push(t, p, c3)
	if st := final(t, gh, c3); st.State != "success" || st.Description != "deployed "+c3[:7] {
		t.Fatalf("status %s %q, want success deployed %s", st.State, st.Description, c3[:7])
	}
	out := waitOutput(t, p, job2, "watch", "watch ended: newer deploy "+job3, time.Minute)
	if strings.Contains(out, "rolling back") || strings.Contains(out, " degraded (") {
		t.Errorf("the older watch saw a degraded check:\n%s", out)
	}
	if got := states(gh.of(c2)); got[len(got)-1] != "success" || slices.Contains(got, "failure") || slices.Contains(got, "error") {
		t.Errorf("statuses of %s: %v, want it to stay a success", c2[:7], got)
	}
	if j := getJob(t, p, job2); j.State != "success" || slices.Contains(j.stepNames(), "rollback: checkout") {
		t.Errorf("the older job is %s with steps %v, want success without a rollback", j.State, j.stepNames())
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "three" {
		t.Errorf("the server answers %d %+v, want version three", code, i)
	}

	// The newer deploy's watch took its baseline (a healthy check says so):
	// now the server dies, and systemd restarts it (within RestartSec=100ms,
	// seconds before the next check, which sees the unit active again).
	waitOutput(t, p, job3, "watch", healthy, time.Minute)
	if out, err := s.sd.Systemctl("kill", "--signal=KILL", s.unit); err != nil {
		t.Fatalf("kill the server: %v %s", err, out)
	}
	waitFor(t, "systemd restarted "+s.unit, func() bool {
		return s.show(t, "NRestarts") == "1" && s.show(t, "ActiveState") == "active"
	})
	st := waitState(t, gh, c3, "failure", 2*time.Minute)
	if re := regexp.MustCompile(`^rolled back after \d+ s: ` + regexp.QuoteMeta(s.name()) + ` restarted 1 time since deploy$`); !re.MatchString(st.Description) {
		t.Errorf("status of %s %q, want %s", c3[:7], st.Description, re)
	}
	if out := getJob(t, p, job3).output("watch"); !strings.Contains(out, "rolling back to "+c2[:7]+" under the deploy lock") {
		t.Errorf("the newer watch output:\n%s", out)
	}
	if got, want := s.runs(t), []string{"one", "two", "three", "three", "two"}; !slices.Equal(got, want) {
		t.Errorf("the unit ran %v, want %v (the restart by systemd, then the rollback's)", got, want)
	}
	if code, i := s.info(t); code != http.StatusOK || i.Version != "two" {
		t.Errorf("after the rollback the server answers %d %+v, want version two", code, i)
	}
	if got := s.head(t); got != c2 {
		t.Errorf("checkout at %s, want %s", got, c2)
	}
	for prop, want := range map[string]string{"ActiveState": "active", "NRestarts": "0"} {
		if got := s.show(t, prop); got != want {
			t.Errorf("%s %q after the rollback, want %q", prop, got, want)
		}
	}
}
