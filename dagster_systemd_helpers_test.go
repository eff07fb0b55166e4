package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/internal/sshdtest"
	"github.com/deployhook/deployhook/internal/systemdtest"
)

// dsVM is the "VM" of the TestDagsterSystemd_ tests: the sdVM of
// systemd_helpers_test.go (a real systemd in its own namespaces, reached
// through the sshd inside them), whose app is a real server: its
// Restart=always unit runs the checkout's start.sh, which execs this test
// binary as a tiny Dagster-like app (appServer) listening on 127.0.0.1:port.
// The namespaces share the machine's network, so the probes and the watch
// on the "VM" and the test itself reach it there.
//
// What the server does is decided by what a deploy changes: start.sh
// (the code: its version, a start-up delay, a failing webserver, a code
// location that fails to load), the unit file (its Environment=) and
// DAGSTER_HOME/dagster.yaml, read when the server starts.
type dsVM struct {
	*sdVM
	port     int    // the app's server: http://127.0.0.1:port
	server   string // the server binary on the VM: a copy of this test binary
	home     string // DAGSTER_HOME, the app user's
	backup   string // apply_backup_dir
	requests string // the server appends "PATH STATUS" for every request it answers
	dagster  string // the stand-in dagster appends "USER dagster ARGS" for every call
}

// The server's first dagster.yaml, and the later ones.
const (
	dsYAML1      = "telemetry: {enabled: false}\n"
	dsYAML2      = "telemetry: {enabled: true}\n"
	dsYAMLBroken = "run_coordinator: broken\n"
)

// dsLocation is the code location the server reports on (Dagster's
// definitions module in a real project).
const dsLocation = "etl"

// newDagsterVM boots the VM and starts the app's unit on the first commit:
// start.sh with the marker "one", the unit file installed in
// /etc/systemd/system as the checkout's infra/files has it, and dsYAML1 in
// DAGSTER_HOME. The app's virtualenv (.venv, untracked) has the stand-in
// dagster.
func newDagsterVM(t *testing.T) *dsVM {
	t.Helper()
	sd := systemdtest.Start(t, systemdtest.Options{})
	sshdtest.Require(t, "curl", "/usr/bin/curl")
	v, home := vmOn(t, sd)
	s := &dsVM{
		sdVM: &sdVM{vm: v, sd: sd, unit: "dhtest-" + randomMarker(t) + ".service", ran: filepath.Join(v.ctl, "ran")},
		port: dsFreePort(t), server: filepath.Join(v.bin, "appserver"), home: filepath.Join(v.dir, "dagster-home"),
		backup: filepath.Join(v.dir, "backup"), requests: filepath.Join(v.ctl, "requests"), dagster: filepath.Join(v.ctl, "dagster.log"),
	}
	copyExecutable(t, s.server)
	for _, f := range []string{s.requests, s.dagster} {
		writeFile(t, f, "", 0o666)
	}
	mkdir(t, s.home, 0o755)
	writeFile(t, filepath.Join(s.home, "dagster.yaml"), dsYAML1, 0o644)
	for _, p := range []string{s.home, filepath.Join(s.home, "dagster.yaml")} {
		if err := os.Chown(p, v.uid, v.gid); err != nil {
			t.Fatal(err)
		}
	}

	v.first = v.commit(t, "initial", map[string]string{
		"start.sh":              s.startScript("one"),
		"uv.lock":               "version = 1\n",
		"dagster.yaml":          dsYAML1,
		"infra/files/" + s.unit: s.unitFile1(),
	})
	v.run(t, home, "clone", "--quiet", v.origin, v.app)
	venv := filepath.Join(v.app, ".venv", "bin")
	for _, d := range []string{filepath.Join(v.app, ".venv"), venv} {
		mkdir(t, d, 0o755)
		if err := os.Chown(d, v.uid, v.gid); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(venv, "dagster"), fmt.Sprintf(dagsterStandIn, s.dagster), 0o755)
	if err := os.Chown(filepath.Join(venv, "dagster"), v.uid, v.gid); err != nil {
		t.Fatal(err)
	}

	sd.InstallUnit(t, s.unit, s.unitFile1())
	if out, err := sd.Systemctl("start", s.unit); err != nil {
		t.Fatalf("start %s: %v\n%s", s.unit, err, out)
	}
	s.waitServing(t, "one")
	return s
}

// copyExecutable copies this test binary to dst, where the app user can run
// it (go test keeps it in a directory of root's).
func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// dsFreePort returns a port of 127.0.0.1 that nothing listens on.
func dsFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startScript is an app's start.sh: it appends marker to $RAN and execs the
// server as version marker, with env (APP_DELAY=5, APP_STATUS=500, …) set.
func (s *dsVM) startScript(marker string, env ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\necho %s >> \"$RAN\"\nAPP_VERSION=%s; export APP_VERSION\n", marker, marker)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "%s; export %s\n", shellAssign(kv), k)
	}
	b.WriteString("exec \"$SERVER\"\n")
	return b.String()
}

// shellAssign writes NAME=VALUE with VALUE single-quoted.
func shellAssign(kv string) string {
	k, v, _ := strings.Cut(kv, "=")
	return k + "='" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// unitFile returns the app's unit file at revision rev, with extra lines in
// [Service]: the server's address, DAGSTER_HOME and UNIT_REV=rev in its
// environment.
func (s *dsVM) unitFile(rev int, extra string) string {
	return s.sdVM.unitFile(fmt.Sprintf(`Environment=SERVER=%s DHTEST_APP_SERVER=1 APP_LISTEN=127.0.0.1:%d
Environment=APP_REQUESTS=%s DAGSTER_HOME=%s APP_LOCATION=%s
Environment=UNIT_REV=%d
%s`, s.server, s.port, s.requests, s.home, dsLocation, rev, extra))
}

// unitFile1 is the unit file the VM starts with.
func (s *dsVM) unitFile1() string { return s.unitFile(1, "") }

// appInfo is what the server's /server_info says.
type appInfo struct {
	Version     string `json:"version"`      // start.sh's marker
	UnitRev     string `json:"unit_rev"`     // the unit file's UNIT_REV
	DagsterYAML string `json:"dagster_yaml"` // DAGSTER_HOME/dagster.yaml as the server read it at its start
}

// info asks the server for /server_info, as the test (not the probes) sees
// it: the status code and, for a 200, what it said.
func (s *dsVM) info(t *testing.T) (int, appInfo) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/server_info", s.port))
	if err != nil {
		return 0, appInfo{}
	}
	defer resp.Body.Close()
	var i appInfo
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&i); err != nil {
			t.Fatalf("/server_info: %v", err)
		}
	}
	return resp.StatusCode, i
}

// waitServing waits until the server answers /server_info 200 as version.
func (s *dsVM) waitServing(t *testing.T, version string) {
	t.Helper()
	waitFor(t, s.unit+" serves version "+version, func() bool {
		code, i := s.info(t)
		return code == http.StatusOK && i.Version == version
	})
}

// served returns the server's request log: "PATH STATUS" per answer.
func (s *dsVM) served(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(s.requests)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// installedUnit returns the app's unit file as systemd reads it.
func (s *dsVM) installedUnit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/etc/systemd/system", s.unit))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// config writes deployhook's configuration: one ssh target on the VM
// running the default sequence on the app's unit (settle 1s), with extra
// target keys (YAML lines indented 4 spaces).
func (s *dsVM) config(t *testing.T, extra string) string {
	t.Helper()
	keys := fmt.Sprintf("    app_dir: %s\n    app_user: %s\n    units: [%s]\n    settle: 1s\n", s.app, s.user, s.name())
	return writeSSHConfig(t, s.dir, sshTarget{addr: s.sd.Addr, user: s.sd.User, keyFile: s.keyFile,
		knownHosts: s.sd.KnownHosts, lock: s.lock, keys: keys + extra})
}

// webserverProbe is the verify: entry of the server's /server_info.
func (s *dsVM) webserverProbe() string {
	return fmt.Sprintf("      - name: webserver\n        http: {url: \"http://127.0.0.1:%d/server_info\", expect: 200, contains: '\"version\"'}\n", s.port)
}

// waitState waits until the last status of sha is state (the watch changes
// a final success to failure after a while) and returns it.
func waitState(t *testing.T, gh *fakeGitHub, sha, state string, within time.Duration) status {
	t.Helper()
	var last status
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		if ss := gh.of(sha); len(ss) > 0 {
			if last = ss[len(ss)-1]; last.State == state {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s %q after %s, want %s", sha[:7], last.State, last.Description, within, state)
		}
	}
}

// waitOutput waits until the job's step name says want and returns its
// output.
func waitOutput(t *testing.T, p *program, job, name, want string, within time.Duration) string {
	t.Helper()
	var out string
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if out = getJob(t, p, job).output(name); strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: step %s does not say %q after %s:\n%s", job, name, want, within, out)
		}
	}
}

// dagsterStandIn stands in for the project's dagster CLI in the app's
// virtualenv: "dagster api grpc-health-check --host H --port P" asks the code
// server on H:P whether its location loaded, exits 0 when it is SERVING, 1
// otherwise, printing what the server said. It logs every call.
const dagsterStandIn = `#!/bin/sh
echo "$(id -un) dagster $*" >> '%s'
[ "$1 $2" = "api grpc-health-check" ] || { echo "dagster stand-in: unexpected call: $*" >&2; exit 2; }
shift 2
host=localhost; port=4000
while [ $# -gt 0 ]; do
  case $1 in
  --host) host=$2; shift 2 ;;
  --port) port=$2; shift 2 ;;
  *) echo "dagster stand-in: unknown option $1" >&2; exit 2 ;;
  esac
done
out=$(curl -sS --noproxy '*' --max-time 5 "http://$host:$port/location" 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] && [ "$out" = SERVING ]
`

// The test binary is the app's server when the unit runs it with
// DHTEST_APP_SERVER=1: it never gets to the tests.
func init() {
	if os.Getenv("DHTEST_APP_SERVER") == "1" {
		os.Exit(appServer(os.Getenv))
	}
}

// appServer is a tiny stand-in for a Dagster project's servers, configured
// by its environment:
//   - APP_LISTEN: its address; APP_DELAY: seconds to wait before it listens
//     (a server slow to start: its unit is active long before);
//   - GET /server_info (dagster-webserver's): 200 with appInfo as JSON;
//     APP_STATUS (or a dagster.yaml that says "broken") makes it answer that
//     status (500) instead; with APP_WARMUP, the first request starts a
//     warm-up of that many seconds, during which it answers 503;
//   - GET /location (the code server's health, asked by the stand-in
//     dagster): "SERVING", or 500 naming APP_LOCATION and APP_LOCATION_ERROR
//     when that is set (the definitions failed to import);
//   - every answer is appended to APP_REQUESTS as "PATH STATUS".
func appServer(env func(string) string) int {
	if d, err := strconv.Atoi(env("APP_DELAY")); err == nil && d > 0 {
		time.Sleep(time.Duration(d) * time.Second)
	}
	yaml := ""
	if h := env("DAGSTER_HOME"); h != "" {
		b, err := os.ReadFile(filepath.Join(h, "dagster.yaml"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		yaml = strings.TrimSpace(string(b))
	}
	status := http.StatusOK
	if n, err := strconv.Atoi(env("APP_STATUS")); err == nil {
		status = n
	}
	if strings.Contains(yaml, "broken") {
		status = http.StatusInternalServerError
	}
	warmup, _ := strconv.Atoi(env("APP_WARMUP"))
	var mu sync.Mutex
	var first time.Time
	logf, err := os.OpenFile(env("APP_REQUESTS"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	answer := func(w http.ResponseWriter, r *http.Request, code int, body string) {
		mu.Lock()
		fmt.Fprintf(logf, "%s %d\n", r.URL.Path, code)
		mu.Unlock()
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /server_info", func(w http.ResponseWriter, r *http.Request) {
		if warmup > 0 {
			mu.Lock()
			if first.IsZero() {
				first = time.Now()
			}
			warm := time.Since(first) >= time.Duration(warmup)*time.Second
			mu.Unlock()
			if !warm {
				answer(w, r, http.StatusServiceUnavailable, "loading code locations\n")
				return
			}
		}
		if status != http.StatusOK {
			answer(w, r, status, "the webserver cannot serve\n")
			return
		}
		b, _ := json.Marshal(appInfo{Version: env("APP_VERSION"), UnitRev: env("UNIT_REV"), DagsterYAML: yaml})
		answer(w, r, http.StatusOK, string(b))
	})
	mux.HandleFunc("GET /location", func(w http.ResponseWriter, r *http.Request) {
		if e := env("APP_LOCATION_ERROR"); e != "" {
			answer(w, r, http.StatusInternalServerError, fmt.Sprintf("location %s failed to load: %s", env("APP_LOCATION"), e))
			return
		}
		answer(w, r, http.StatusOK, "SERVING")
	})
	fmt.Fprintf(os.Stderr, "version %s listening on %s\n", env("APP_VERSION"), env("APP_LISTEN"))
	err = http.ListenAndServe(env("APP_LISTEN"), mux)
	fmt.Fprintln(os.Stderr, err)
	return 1
}
