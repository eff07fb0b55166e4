package executor_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

const (
	yamlV1     = "telemetry: {enabled: false}\n"
	yamlV2     = "telemetry: {enabled: true}\n"
	yamlBroken = "run_coordinator: broken\n"
)

// webserver is a stand-in dagster-webserver on 127.0.0.1: GET /server_info
// answers 503 while DAGSTER_HOME's dagster.yaml says "broken" or for the
// first failFirst requests, and 200 with a body naming the version after.
type webserver struct {
	t         *testing.T
	dagster   string
	failFirst int
	mu        sync.Mutex
	seen      []string // dagster.yaml as each request found it
}

func (w *webserver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/server_info" || r.URL.RawQuery != "" {
		w.t.Errorf("webserver: %s %s, want GET /server_info", r.Method, r.URL)
		http.Error(rw, "no", http.StatusNotFound)
		return
	}
	b, _ := os.ReadFile(filepath.Join(w.dagster, "dagster.yaml"))
	w.mu.Lock()
	w.seen = append(w.seen, string(b))
	n := len(w.seen)
	w.mu.Unlock()
	if n <= w.failFirst || strings.Contains(string(b), "broken") {
		http.Error(rw, "starting", http.StatusServiceUnavailable)
		return
	}
	rw.Write([]byte(`{"dagster_webserver_version": "1.9.0"}`))
}

func (w *webserver) requests() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

func dagsterFiles() map[string]string {
	return map[string]string{"app.py": "print('one')\n", "uv.lock": "v1\n", "dagster.yaml": yamlV1}
}

// A changed dagster.yaml is installed in DAGSTER_HOME as the app user, the
// previous one kept; a probe that answers 503 twice is retried until it
// passes (issue 13: "a probe that passes only after a few seconds").
func TestApplyDeploy_DagsterYAMLAppliedProbeRetried(t *testing.T) {
	v := newVM(t, dagsterFiles())
	write(t, filepath.Join(v.dagster, "dagster.yaml"), yamlV1, 0o644)
	os.Chown(filepath.Join(v.dagster, "dagster.yaml"), v.uid, v.gid)
	ws := &webserver{t: t, dagster: v.dagster, failFirst: 2}
	srv := httptest.NewServer(ws)
	defer srv.Close()
	c2 := v.commit("config", map[string]string{"dagster.yaml": yamlV2, "app.py": "print('two')\n"})

	seq := v.sequence()
	seq.Apply.DagsterYAML = &executor.ApplyDagsterYAML{To: v.dagster}
	seq.Probes = []executor.Probe{{HTTP: &executor.HTTPProbe{URL: srv.URL + "/server_info", Contains: "dagster_webserver_version"}}}
	seq.VerifyWithin = time.Minute
	j := v.deploy(seq, c2)

	if want := "deployed " + c2[:7] + "; applied: dagster.yaml"; j.State != executor.StateSuccess || j.Description != want {
		t.Errorf("job %s %q, want success %q", j.State, j.Description, want)
	}
	if want := []string{"preflight", "fetch", "checkout", "sync", "apply dagster.yaml", "restart app", "verify", "probe: http /server_info"}; !slices.Equal(stepNames(j), want) {
		t.Errorf("steps %q, want %q", stepNames(j), want)
	}
	if body, uid, mode := file(t, filepath.Join(v.dagster, "dagster.yaml")); body != yamlV2 || uid != v.uid || mode != 0o644 {
		t.Errorf("dagster.yaml %q uid %d mode %o, want the commit's, the app user's (%d), 0644", body, uid, mode, v.uid)
	}
	if body, uid, _ := file(t, filepath.Join(v.dagster, "dagster.yaml.prev")); body != yamlV1 || uid != v.uid {
		t.Errorf("dagster.yaml.prev %q uid %d, want the previous one, the app user's", body, uid)
	}
	if body, uid, _ := file(t, filepath.Join(v.backup, j.ID, "dagster_yaml", "old", "dagster.yaml")); body != yamlV1 || uid != 0 {
		t.Errorf("backup %q uid %d, want the previous one, root's", body, uid)
	}
	for _, d := range []string{v.backup, filepath.Join(v.backup, j.ID)} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", d, fi.Mode(), err)
		}
	}
	got := ws.requests()
	if len(got) != 3 || got[2] != yamlV2 {
		t.Errorf("the webserver saw %d requests (dagster.yaml %q), want 2 answered 503 and a third with the new dagster.yaml", len(got), got)
	}
	if out := step(j, "probe: http /server_info").Output; !strings.Contains(out, "attempt 1: answered 503, want 200") || !strings.Contains(out, "passed (attempt 3)") {
		t.Errorf("probe output %q, want the 503s and the pass at attempt 3", out)
	}
}

// A probe that never passes fails the deploy, which rolls back: the job's
// dagster.yaml is restored before the previous commit's restart, and the
// description names the probe and why (issue 13: "a probe that never
// passes"; "dagster.yaml applied and restored").
func TestApplyDeploy_DagsterYAMLRestoredOnFailedProbe(t *testing.T) {
	v := newVM(t, dagsterFiles())
	write(t, filepath.Join(v.dagster, "dagster.yaml"), yamlV1, 0o644)
	os.Chown(filepath.Join(v.dagster, "dagster.yaml"), v.uid, v.gid)
	ws := &webserver{t: t, dagster: v.dagster}
	srv := httptest.NewServer(ws)
	defer srv.Close()
	c2 := v.commit("broken config", map[string]string{"dagster.yaml": yamlBroken})

	seq := v.sequence()
	seq.Apply.DagsterYAML = &executor.ApplyDagsterYAML{To: v.dagster}
	seq.Probes = []executor.Probe{{Name: "webserver", HTTP: &executor.HTTPProbe{URL: srv.URL + "/server_info"}}}
	j := v.deploy(seq, c2)

	want := "probe webserver: answered 503, want 200; rolled back to " + v.first[:7]
	if j.State != executor.StateFailure || j.Description != want {
		t.Errorf("job %s %q, want failure %q", j.State, j.Description, want)
	}
	if body, uid, _ := file(t, filepath.Join(v.dagster, "dagster.yaml")); body != yamlV1 || uid != v.uid {
		t.Errorf("dagster.yaml %q uid %d after the rollback, want the previous one, the app user's", body, uid)
	}
	if v.head() != v.first {
		t.Errorf("checkout at %s, want %s", v.head(), v.first)
	}
	rb := step(j, "rollback: apply dagster.yaml")
	if rb == nil || rb.ExitCode != 0 || !strings.Contains(rb.Output, "restored "+filepath.Join(v.dagster, "dagster.yaml")) {
		t.Errorf("rollback step %+v, want it to restore dagster.yaml", rb)
	}
	names := stepNames(j)
	if i, k := slices.Index(names, "rollback: apply dagster.yaml"), slices.Index(names, "rollback: restart app"); i < 0 || k < i {
		t.Errorf("steps %q: the restore must come before the previous commit's restart", names)
	}
	// The deploy's probe saw the broken file; the rollback's the restored one.
	got := ws.requests()
	if len(got) < 2 || got[0] != yamlBroken || got[len(got)-1] != yamlV1 {
		t.Errorf("the webserver saw %q, want the broken dagster.yaml first and the restored one last", got)
	}
	if strings.Contains(j.Description, "127.0.0.1") || strings.Contains(j.Description, v.dagster) {
		t.Errorf("description %q carries an address or a path", j.Description)
	}
}

func unitFiles() map[string]string {
	return map[string]string{
		"app.py":                  "print('one')\n",
		"uv.lock":                 "v1\n",
		"infra/files/a.service":   "[Service]\nExecStart=/bin/true a1\n",
		"infra/files/app.service": "[Service]\nExecStart=/bin/true app1\n",
		"infra/files/old.timer":   "[Timer]\nOnCalendar=daily\n",
		"infra/main.tf":           "# v1\n",
	}
}

// installUnits puts the first commit's unit files where systemd reads them.
func installUnits(t *testing.T, v *vm) {
	for name, body := range unitFiles() {
		if dir, base := filepath.Split(name); dir == "infra/files/" {
			write(t, filepath.Join(v.units, base), body, 0o644)
		}
	}
}

// withoutShow drops the verify step's queries from the stand-ins' log.
func withoutShow(calls []string) []string {
	return slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return strings.HasPrefix(c, "systemctl show ") })
}

// Changed unit files are verified under their real names, backed up and
// installed, systemd is reloaded once, and the applied units restarted in
// the configured order after the sequence's own restarts (which they are not
// repeated for); a removed unit file stays installed and is named.
func TestApplyDeploy_UnitsApplied(t *testing.T) {
	v := newVM(t, unitFiles())
	installUnits(t, v)
	c2 := v.commit("units", map[string]string{
		"infra/files/a.service":   "[Service]\nExecStart=/bin/true a2\n",
		"infra/files/b.service":   "[Service]\nExecStart=/bin/true b2\n",
		"infra/files/app.service": "[Service]\nExecStart=/bin/true app2\n",
		"infra/files/old.timer":   "",
		"infra/files/notes.txt":   "not a unit\n",
		"infra/main.tf":           "# v2\n",
	})
	seq := v.sequence()
	seq.Apply.Units = &executor.ApplyUnits{To: v.units, Order: []string{"b.service", "a.service"}}
	j := v.deploy(seq, c2)

	want := "deployed " + c2[:7] + "; applied: a.service, app.service, b.service; infra/files/old.timer removed: not uninstalled; infra/ changed: terraform apply needed"
	if j.State != executor.StateSuccess || j.Description != want {
		t.Errorf("job %s %q, want success %q", j.State, j.Description, want)
	}
	wantCalls := []string{
		"systemd-analyze verify a.service app.service b.service",
		"systemctl --no-ask-password daemon-reload",
		"systemctl --no-ask-password restart app",
		"systemctl --no-ask-password try-restart b.service",
		"systemctl --no-ask-password try-restart a.service",
	}
	if got := withoutShow(v.calls()); !slices.Equal(got, wantCalls) {
		t.Errorf("calls\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	for name, wantBody := range map[string]string{
		"a.service": "[Service]\nExecStart=/bin/true a2\n", "b.service": "[Service]\nExecStart=/bin/true b2\n",
		"app.service": "[Service]\nExecStart=/bin/true app2\n", "old.timer": "[Timer]\nOnCalendar=daily\n",
	} {
		if body, uid, mode := file(t, filepath.Join(v.units, name)); body != wantBody || uid != 0 || mode != 0o644 {
			t.Errorf("%s: %q uid %d mode %o, want %q, root's, 0644", name, body, uid, mode, wantBody)
		}
	}
	if body, _, _ := file(t, filepath.Join(v.backup, j.ID, "units", "old", "a.service")); body != "[Service]\nExecStart=/bin/true a1\n" {
		t.Errorf("backup of a.service %q, want the one installed before", body)
	}
	if body, _, _ := file(t, filepath.Join(v.backup, j.ID, "units", "new")); body != "b.service\n" {
		t.Errorf("the job's new units %q, want b.service", body)
	}
	if entries, _ := os.ReadDir(v.units); len(entries) != 4 {
		t.Errorf("%d files in the units directory, want 4 (no temporary file left)", len(entries))
	}
}

// A failed probe rolls the units back with the code: the replaced files are
// restored, the new one removed, systemd reloaded, and only then the previous
// commit's restarts run (issue 13: "a unit change applied and rolled back on
// a failed probe").
func TestApplyDeploy_UnitsRestoredOnFailedProbe(t *testing.T) {
	v := newVM(t, unitFiles())
	installUnits(t, v)
	c2 := v.commit("broken unit", map[string]string{
		"infra/files/app.service": "[Service]\nExecStart=/bin/true BROKEN\n",
		"infra/files/b.service":   "[Service]\nExecStart=/bin/true b2\n",
	})
	seq := v.sequence()
	seq.Apply.Units = &executor.ApplyUnits{To: v.units, Order: []string{"b.service"}}
	seq.Probes = []executor.Probe{{Command: &executor.CommandProbe{Run: "! grep -q BROKEN " + filepath.Join(v.units, "app.service")}}}
	j := v.deploy(seq, c2)

	want := "probe command: exited 1; rolled back to " + v.first[:7]
	if j.State != executor.StateFailure || j.Description != want {
		t.Errorf("job %s %q, want failure %q", j.State, j.Description, want)
	}
	wantCalls := []string{
		"systemd-analyze verify app.service b.service",
		"systemctl --no-ask-password daemon-reload",
		"systemctl --no-ask-password restart app",
		"systemctl --no-ask-password try-restart b.service",
		// the rollback
		"systemctl --no-ask-password daemon-reload",
		"systemctl --no-ask-password restart app",
	}
	if got := withoutShow(v.calls()); !slices.Equal(got, wantCalls) {
		t.Errorf("calls\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	if body, _, _ := file(t, filepath.Join(v.units, "app.service")); body != "[Service]\nExecStart=/bin/true app1\n" {
		t.Errorf("app.service %q after the rollback, want the one before", body)
	}
	if _, uid, _ := file(t, filepath.Join(v.units, "b.service")); uid != -1 {
		t.Errorf("b.service is still installed after the rollback")
	}
	if rb := step(j, "rollback: probe: command"); rb == nil || rb.ExitCode != 0 {
		t.Errorf("the rollback's probe %+v, want it to pass with the restored unit", rb)
	}
}

// systemd-analyze verify refusing a unit fails the step before anything is
// installed; the rollback has nothing to restore and reloads nothing.
func TestApplyDeploy_UnitsRefusedByVerify(t *testing.T) {
	v := newVM(t, unitFiles())
	installUnits(t, v)
	c2 := v.commit("invalid unit", map[string]string{"infra/files/app.service": "[INVALID]\n"})
	seq := v.sequence()
	seq.Apply.Units = &executor.ApplyUnits{To: v.units}
	j := v.deploy(seq, c2)

	if want := "apply units failed (exit 1); rolled back to " + v.first[:7]; j.State != executor.StateFailure || j.Description != want {
		t.Errorf("job %s %q, want failure %q", j.State, j.Description, want)
	}
	wantCalls := []string{"systemd-analyze verify app.service", "systemctl --no-ask-password restart app"}
	if got := withoutShow(v.calls()); !slices.Equal(got, wantCalls) {
		t.Errorf("calls %q, want %q", got, wantCalls)
	}
	if body, _, _ := file(t, filepath.Join(v.units, "app.service")); body != "[Service]\nExecStart=/bin/true app1\n" {
		t.Errorf("app.service %q, want it untouched", body)
	}
	if out := step(j, "rollback: apply units").Output; !strings.Contains(out, "this job installed no unit file: nothing to restore") {
		t.Errorf("rollback: apply units said %q", out)
	}
}

// graphql is a stand-in dagster-webserver GraphQL endpoint: the location etl
// fails to load while the checkout's app.py imports a missing module, is
// LOADING for the first loading requests, and loaded otherwise.
type graphql struct {
	t       *testing.T
	app     string
	loading int
	mu      sync.Mutex
	n       int
}

func (g *graphql) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		Query string `json:"query"`
	}
	if r.Method != http.MethodPost || r.URL.Path != "/graphql" || r.Header.Get("Content-Type") != "application/json" {
		g.t.Errorf("graphql: %s %s (%s), want POST /graphql application/json", r.Method, r.URL, r.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !strings.Contains(req.Query, "workspaceOrError") ||
		!strings.Contains(req.Query, "locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } }") {
		g.t.Errorf("graphql query %q (%v)", req.Query, err)
	}
	g.mu.Lock()
	g.n++
	n := g.n
	g.mu.Unlock()
	code, _ := os.ReadFile(filepath.Join(g.app, "app.py"))
	entry := `{"name": "etl", "loadStatus": "LOADED", "locationOrLoadError": {"__typename": "RepositoryLocation"}}`
	switch {
	case n <= g.loading:
		entry = `{"name": "etl", "loadStatus": "LOADING", "locationOrLoadError": null}`
	case strings.Contains(string(code), "import missing_module"):
		entry = `{"name": "etl", "loadStatus": "LOADED", "locationOrLoadError": {"__typename": "PythonError",
			"message": "dagster._core.errors.DagsterImportError: Encountered ImportError: No module named 'missing_module' while importing module etl from /home/dagster/app\n  File x"}}`
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Write([]byte(`{"data": {"workspaceOrError": {"__typename": "Workspace", "locationEntries": [
		{"name": "other", "loadStatus": "LOADED", "locationOrLoadError": {"__typename": "PythonError", "message": "not ours"}}, ` + entry + `]}}}`))
}

// dagster_code_location: the venv's dagster checks the code server's gRPC
// health and the webserver says whether the location loaded; a location that
// failed to load fails the deploy, named with the error's type, and the
// rollback's probe passes (issue 13).
func TestApplyDeploy_DagsterCodeLocation(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		want       func(c2, c1 string) (executor.State, string)
	}{
		{"loaded after loading", "print('two')\n", func(c2, _ string) (executor.State, string) {
			return executor.StateSuccess, "deployed " + c2[:7]
		}},
		{"failed to load", "import missing_module\n", func(_, c1 string) (executor.State, string) {
			return executor.StateFailure, "probe dagster_code_location etl: location etl failed to load: ImportError; rolled back to " + c1[:7]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVM(t, dagsterFiles())
			venv := filepath.Join(v.app, ".venv", "bin")
			if err := os.MkdirAll(venv, 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(venv, "dagster"), "#!/bin/sh\necho \"dagster $*\" >> '"+v.log+"'\necho 'gRPC connection successful'\n", 0o755)
			g := &graphql{t: t, app: v.app, loading: 1}
			srv := httptest.NewServer(g)
			defer srv.Close()
			c2 := v.commit("code", map[string]string{"app.py": tc.code})
			seq := v.sequence()
			seq.VerifyWithin = 5 * time.Second
			seq.Probes = []executor.Probe{{DagsterCodeLocation: &executor.DagsterCodeLocationProbe{Port: 4000, Location: "etl", Webserver: srv.URL}}}
			j := v.deploy(seq, c2)

			state, desc := tc.want(c2, v.first)
			if j.State != state || j.Description != desc {
				t.Errorf("job %s %q, want %s %q", j.State, j.Description, state, desc)
			}
			if n := count(v.calls(), "dagster api grpc-health-check --host 127.0.0.1 --port 4000"); n < 1 {
				t.Errorf("the venv's dagster was not asked for the gRPC health: %q", v.calls())
			}
			out := step(j, "probe: dagster_code_location etl").Output
			if !strings.Contains(out, "location etl still loading") {
				t.Errorf("probe output %q, want the LOADING answer retried", out)
			}
			if state == executor.StateFailure && !strings.Contains(out, "No module named 'missing_module'") {
				t.Errorf("probe output %q, want the error's first line on the job page", out)
			}
		})
	}
}
