package executor

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// shells returns the POSIX shells to run the scripts with: sh, and dash
// when it is installed (Debian's /bin/sh; it has none of bash's extensions).
func shells(t *testing.T) []string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sh is required under CI")
		}
		t.Skip("no sh")
	}
	out := []string{sh}
	if dash, err := exec.LookPath("dash"); err == nil {
		out = append(out, dash)
	}
	return out
}

// Every script deployhook builds for the apply steps and probes parses in
// every shell (sh -n), whatever the configuration puts into it.
func TestScripts_Parse(t *testing.T) {
	odd := `it's "odd" $(x) ` + "`y`"
	probes := []Probe{
		{HTTP: &HTTPProbe{URL: "http://127.0.0.1:3000/server_info?x=" + odd, Expect: 200, Contains: odd}},
		{TCP: "127.0.0.1:4000"},
		{Command: &CommandProbe{Run: "test -e '" + odd + "' && echo $HOME"}},
		{DagsterCodeLocation: &DagsterCodeLocationProbe{Port: 4000, Venv: "/srv/" + odd}},
		{DagsterCodeLocation: &DagsterCodeLocationProbe{Port: 4000, Location: odd, Webserver: "http://127.0.0.1:3000", Venv: "/srv/app/.venv"}},
	}
	scripts := map[string]string{
		"probes once":    ProbeScript(probes, 0),
		"probes retried": ProbeScript(probes, time.Minute),
		"units":          unitsScript("dagster", "/var/lib/"+odd, ApplyUnits{From: "infra/" + odd, To: "/etc/systemd/system", Order: []string{"a.service"}}),
		"dagster.yaml":   dagsterYAMLScript("dagster", "/var/lib/deployhook/backup", ApplyDagsterYAML{From: odd, To: "/var/dagster/home"}),
		"restart":        restartAppliedScript("/var/lib/deployhook/backup", []string{"a.service", "b.timer"}, []string{"dagster.service"}),
	}
	seq := Sequence{AppDir: "/srv/app", AppUser: "app", Units: []string{"app"},
		Apply: Apply{Units: &ApplyUnits{}, DagsterYAML: &ApplyDagsterYAML{}}, Probes: probes}
	steps, _, _, _ := seq.Steps()
	for _, st := range steps {
		scripts["step "+st.Name] = st.Run
	}
	for _, sh := range shells(t) {
		for name, s := range scripts {
			if out, err := exec.Command(sh, "-n", "-c", s).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %s: %v\n%s", sh, name, err, out)
			}
		}
	}
}

// toolbox is a directory of links to the tools named, for a PATH that has
// exactly those (a target without curl, say).
func toolbox(t *testing.T, tools ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range append([]string{"sh", "mktemp", "rm", "date", "sleep", "cat", "grep", "timeout"}, tools...) {
		// The system's own first: a PATH shim (pyenv's python3) may need
		// tools the box leaves out.
		p, err := exec.LookPath("/usr/bin/" + tool)
		if err != nil {
			p, err = exec.LookPath(tool)
		}
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required under CI", tool)
			}
			t.Skipf("%s not found", tool)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runProbes runs ProbeScript with shell sh and PATH path.
func runProbes(t *testing.T, sh, path string, probes []Probe, within time.Duration) (int, string) {
	t.Helper()
	cmd := exec.Command(sh, "-c", ProbeScript(probes, within))
	cmd.Env = []string{"PATH=" + path, "HOME=" + t.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatal(err)
	return -1, ""
}

// countingServer answers GET /health: 503 for the first fail requests, then
// 200 "ok ready".
type countingServer struct {
	t    *testing.T
	fail int
	mu   sync.Mutex
	n    int
}

func (s *countingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/health" {
		s.t.Errorf("%s %s, want GET /health", r.Method, r.URL)
	}
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	if n <= s.fail {
		http.Error(w, "not yet", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok ready\n"))
}

func (s *countingServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// closedPort returns a port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// The probes' checks and fallbacks, run by each shell with only the tools a
// case gives it: each passes, fails with its reason in the FailedMarker
// line, or gives up at once when its tools are missing.
func TestProbeScript_Checks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open, closed := ln.Addr().String(), closedPort(t)
	_, closedP, _ := net.SplitHostPort(closed)
	ok := httptest.NewServer(&countingServer{t: t})
	defer ok.Close()
	down := httptest.NewServer(&countingServer{t: t, fail: 1 << 30})
	defer down.Close()
	tests := []struct {
		name     string
		tools    []string
		probe    Probe
		want     int
		wantLine string // the FailedMarker line, or the pass line
	}{
		{"http with curl", []string{"curl"}, Probe{HTTP: &HTTPProbe{URL: ok.URL + "/health", Contains: "ready"}}, 0, "probe http /health: passed (attempt 1)"},
		{"http with python3", []string{"python3"}, Probe{HTTP: &HTTPProbe{URL: ok.URL + "/health", Contains: "ready"}}, 0, "probe http /health: passed (attempt 1)"},
		{"http status", []string{"curl"}, Probe{HTTP: &HTTPProbe{URL: down.URL + "/health"}}, 1, FailedMarker + "http /health\tanswered 503, want 200"},
		{"http status with python3", []string{"python3"}, Probe{HTTP: &HTTPProbe{URL: down.URL + "/health"}}, 1, FailedMarker + "http /health\tanswered 503, want 200"},
		{"http expected status", []string{"curl"}, Probe{HTTP: &HTTPProbe{URL: down.URL + "/health", Expect: 503}}, 0, "probe http /health: passed (attempt 1)"},
		{"http body", []string{"curl"}, Probe{Name: "body", HTTP: &HTTPProbe{URL: ok.URL + "/health", Contains: "healthy"}}, 1, FailedMarker + "body\tanswered 200 without \"healthy\""},
		{"http no answer", []string{"curl"}, Probe{Name: "down", HTTP: &HTTPProbe{URL: "http://" + closed + "/health"}}, 1, FailedMarker + "down\tno answer"},
		{"http no answer with python3", []string{"python3"}, Probe{Name: "down", HTTP: &HTTPProbe{URL: "http://" + closed + "/health"}}, 1, FailedMarker + "down\tno answer"},
		{"http without tools", nil, Probe{Name: "h", HTTP: &HTTPProbe{URL: ok.URL + "/health"}}, 1, FailedMarker + "h\tneither curl nor python3 on the target: install one of them"},
		{"tcp with bash", []string{"bash"}, Probe{TCP: open}, 0, "passed (attempt 1)"},
		{"tcp with python3", []string{"python3"}, Probe{TCP: open}, 0, "passed (attempt 1)"},
		{"tcp refused", []string{"bash"}, Probe{Name: "t", TCP: closed}, 1, FailedMarker + "t\tno connection to port " + closedP},
		{"tcp refused with python3", []string{"python3"}, Probe{Name: "t", TCP: closed}, 1, FailedMarker + "t\tno connection to port " + closedP},
		{"tcp without tools", nil, Probe{Name: "t", TCP: open}, 1, FailedMarker + "t\tneither bash nor python3 on the target: install one of them"},
		{"command", nil, Probe{Command: &CommandProbe{Run: "exit 0"}}, 0, "probe command: passed (attempt 1)"},
		{"command fails", nil, Probe{Command: &CommandProbe{Run: "echo said this; exit 3"}}, 1, FailedMarker + "command\texited 3"},
		{"dagster without a venv: tcp", []string{"bash"}, Probe{DagsterCodeLocation: &DagsterCodeLocationProbe{Port: mustPort(t, open), Venv: "/nonexistent"}}, 0, "passed (attempt 1)"},
		{"dagster without a venv: refused", []string{"bash"}, Probe{DagsterCodeLocation: &DagsterCodeLocationProbe{Port: mustPort(t, closed), Venv: "/nonexistent"}}, 1,
			FailedMarker + "dagster_code_location port " + closedP + "\tno connection to port " + closedP},
	}
	for _, sh := range shells(t) {
		for _, tc := range tests {
			t.Run(filepath.Base(sh)+" "+tc.name, func(t *testing.T) {
				path := toolbox(t, tc.tools...)
				code, out := runProbes(t, sh, path, []Probe{tc.probe}, 0)
				if code != tc.want || !strings.Contains(out, tc.wantLine+"\n") {
					t.Errorf("exit %d, output:\n%s\nwant exit %d and the line %q", code, out, tc.want, tc.wantLine)
				}
				if tc.want != 0 && strings.Count(out, FailedMarker) != 1 {
					t.Errorf("output %q: want exactly one failure line", out)
				}
			})
		}
	}
}

func mustPort(t *testing.T, addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A probe is retried every second until it passes; one whose tools are
// missing is not retried at all; several probes in one script all run.
func TestProbeScript_Retries(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			s := &countingServer{t: t, fail: 2}
			srv := httptest.NewServer(s)
			defer srv.Close()
			code, out := runProbes(t, sh, toolbox(t, "curl"), []Probe{
				{HTTP: &HTTPProbe{URL: srv.URL + "/health"}},
				{Command: &CommandProbe{Run: "true"}},
			}, time.Minute)
			if code != 0 || s.requests() != 3 || !strings.Contains(out, "probe http /health: passed (attempt 3)\n") ||
				!strings.Contains(out, "probe command: passed (attempt 1)\n") {
				t.Errorf("exit %d after %d requests:\n%s\nwant both passed, the http probe at its third attempt", code, s.requests(), out)
			}
			// Without curl and python3 the probe gives up at the first attempt.
			code, out = runProbes(t, sh, toolbox(t), []Probe{{HTTP: &HTTPProbe{URL: srv.URL + "/health"}}}, time.Hour)
			if code != 1 || strings.Count(out, "attempt") != 1 {
				t.Errorf("exit %d:\n%s\nwant one attempt, then the failure", code, out)
			}
		})
	}
}

func TestProbeFailure(t *testing.T) {
	tests := []struct{ name, output, want string }{
		{"none", "probe x: passed (attempt 1)\n", ""},
		{"reason", "noise\n" + FailedMarker + "webserver\tanswered 503, want 200\n", "probe webserver: answered 503, want 200"},
		{"last wins", FailedMarker + "a\tfirst\n" + FailedMarker + "b\tsecond\n", "probe b: second"},
		{"no reason", FailedMarker + "a\t\n", "probe a failed"},
		{"unsafe name", FailedMarker + "user@host\tno answer\n", "probe ?: no answer"},
		{"address cut", FailedMarker + "db\tcould not reach 10.0.0.5 port 5432\n", "probe db: could not reach …"},
		{"url cut", FailedMarker + "db\tfailed for postgres://u:secret@db.internal\n", "probe db: failed for …"},
		{"path cut", FailedMarker + "etl\tImportError from /home/dagster/app\n", "probe etl: ImportError from …"},
		{"assignment cut", FailedMarker + "etl\tbad password=hunter2\n", "probe etl: bad …"},
		{"ipv6 cut", FailedMarker + "etl\tno route to fe80::1\n", "probe etl: no route to …"},
		{"long", FailedMarker + "x\t" + strings.Repeat("word ", 30) + "\n", "probe x: " + strings.TrimSpace(strings.Repeat("word ", 14)) + " …"},
	}
	for _, tc := range tests {
		if got := probeFailure(tc.output); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestProbe_Validate(t *testing.T) {
	tests := []struct {
		name  string
		probe Probe
		want  string
	}{
		{"http", Probe{HTTP: &HTTPProbe{URL: "http://127.0.0.1:3000/server_info"}}, ""},
		{"none", Probe{}, "give exactly one of http, tcp, command and dagster_code_location (0 given)"},
		{"two", Probe{TCP: "127.0.0.1:1", Command: &CommandProbe{Run: "true"}}, "give exactly one of http, tcp, command and dagster_code_location (2 given)"},
		{"credentials", Probe{HTTP: &HTTPProbe{URL: "http://admin:pw@127.0.0.1:3000/"}}, "http url: the URL carries credentials: probes must not (logs and the job page would show them)"},
		{"relative url", Probe{HTTP: &HTTPProbe{URL: "/server_info"}}, `http url: "/server_info" must be an absolute http(s) URL, e.g. http://127.0.0.1:3000/server_info`},
		{"expect", Probe{HTTP: &HTTPProbe{URL: "http://x/", Expect: 42}}, "http expect 42: an HTTP status, 100 to 599 (default 200)"},
		{"tcp", Probe{TCP: "4000"}, `tcp "4000": write HOST:PORT, e.g. 127.0.0.1:4000`},
		{"tcp port", Probe{TCP: "127.0.0.1:70000"}, `tcp "127.0.0.1:70000": write HOST:PORT, e.g. 127.0.0.1:4000`},
		{"command", Probe{Command: &CommandProbe{Run: " "}}, "command needs run: the shell command that must exit 0"},
		{"dagster port", Probe{DagsterCodeLocation: &DagsterCodeLocationProbe{}}, "dagster_code_location port 0: the code server's port, 1 to 65535 (e.g. 4000)"},
		{"dagster webserver without location", Probe{DagsterCodeLocation: &DagsterCodeLocationProbe{Port: 4000, Webserver: "http://127.0.0.1:3000"}},
			"dagster_code_location with a webserver needs location: the code location's name as the webserver lists it"},
		{"dagster webserver credentials", Probe{DagsterCodeLocation: &DagsterCodeLocationProbe{Port: 4000, Location: "etl", Webserver: "https://u:p@127.0.0.1:3000"}},
			"dagster_code_location webserver: the URL carries credentials: probes must not (logs and the job page would show them)"},
		{"name", Probe{Name: "a=b", TCP: "127.0.0.1:1"}, `name "a=b": use at most 60 printable ASCII characters, without @, =, \ or :// (it appears in the public status)`},
	}
	for _, tc := range tests {
		got := ""
		if err := tc.probe.Validate(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
