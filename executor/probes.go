package executor

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deployhook/deployhook/internal/shell"
)

// Probe is one application-level check of a target after a deploy (the
// configuration's verify:), run on the target itself through the deploy's
// SSH session. Exactly one of HTTP, TCP, Command and DagsterCodeLocation is
// set (Validate).
type Probe struct {
	// Name names the probe in its step ("probe: NAME"), in the log and in the
	// public status description; default DefaultName. It is public text.
	Name string
	// HTTP passes when a GET of the URL answers the expected status (and body).
	HTTP *HTTPProbe
	// TCP (host:port) passes when a TCP connection to it opens.
	TCP string
	// Command passes when a shell command exits 0.
	Command *CommandProbe
	// DagsterCodeLocation passes when a Dagster code server answers its gRPC
	// health check and, with a webserver, the webserver says the location
	// loaded without error.
	DagsterCodeLocation *DagsterCodeLocationProbe
}

// HTTPProbe is a GET of URL, without proxies and without following redirects,
// through curl (or python3's urllib where the target has no curl).
type HTTPProbe struct {
	URL      string // http or https, without credentials
	Expect   int    // the status that passes; default 200
	Contains string // when set, the body must contain it
}

// CommandProbe runs Run with sh in the app directory, as User (default: the
// sequence's app user).
type CommandProbe struct {
	Run  string
	User string
}

// DagsterCodeLocationProbe checks a Dagster code server (dagster api grpc or
// dagster code-server) on Host:Port: with APP_DIR/.venv/bin/dagster (Venv)
// present, "dagster api grpc-health-check" must answer SERVING; else a TCP
// connection must open. With Webserver, the webserver's GraphQL API
// (POST Webserver/graphql, workspaceOrError) must list Location as loaded
// without a load error; a location still loading is retried.
type DagsterCodeLocationProbe struct {
	Host      string // default 127.0.0.1
	Port      int
	Location  string // required with Webserver
	Webserver string // http(s)://HOST:PORT of dagster-webserver, without credentials; empty: no GraphQL check
	Venv      string // the project's virtualenv; Sequence.Steps defaults it to AppDir/.venv
}

// FailedMarker starts the line a probe prints when it gave up, followed by
// "NAME<TAB>REASON": the executor puts "probe NAME: REASON" in the job's
// status description (reduced to public-safe words by publicReason). The
// reason is deployhook's own text, never a URL, host or command output.
const FailedMarker = "deployhook: probe failed: "

// Probe defaults.
const (
	// DefaultVerifyWithin is how long each probe is retried (every second)
	// before it fails the deploy, when the configuration does not say.
	DefaultVerifyWithin = time.Minute
	// probeAttempt bounds one attempt of an http, tcp or GraphQL check, in
	// seconds (a string: it is written into the scripts).
	probeAttempt = "5"
	// probeCommandAttempt bounds one attempt of a command probe or of the
	// dagster CLI (whose Python start-up alone can take seconds).
	probeCommandAttempt = 60
)

// Kind returns the probe's kind as the configuration spells it: http, tcp,
// command or dagster_code_location ("" when none is set).
func (p Probe) Kind() string {
	switch {
	case p.HTTP != nil:
		return "http"
	case p.TCP != "":
		return "tcp"
	case p.Command != nil:
		return "command"
	case p.DagsterCodeLocation != nil:
		return "dagster_code_location"
	}
	return ""
}

// DefaultName is the probe's name when Name is empty: the kind and what it
// checks, without host or address ("http /server_info", "tcp port 4000",
// "dagster_code_location etl", "command").
func (p Probe) DefaultName() string {
	switch {
	case p.HTTP != nil:
		name := "http /"
		if u, err := url.Parse(p.HTTP.URL); err == nil && u.Path != "" {
			name = "http " + u.Path
		}
		if !publicName(name) {
			name = "http"
		}
		return name
	case p.TCP != "":
		_, port, _ := net.SplitHostPort(p.TCP)
		return "tcp port " + port
	case p.DagsterCodeLocation != nil:
		if l := p.DagsterCodeLocation.Location; l != "" {
			return "dagster_code_location " + l
		}
		return "dagster_code_location port " + strconv.Itoa(p.DagsterCodeLocation.Port)
	}
	return "command"
}

// name is Name, or DefaultName.
func (p Probe) name() string {
	if p.Name != "" {
		return p.Name
	}
	return p.DefaultName()
}

// Validate reports every problem of the probe, joined (errors.Join): not
// exactly one kind, a URL that is not absolute http(s) or carries
// credentials (they would end up in logs and, through the name, in public
// text), a port out of range, a command without a command, and a name that
// does not fit in a status line.
func (p Probe) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	n := 0
	for _, set := range []bool{p.HTTP != nil, p.TCP != "", p.Command != nil, p.DagsterCodeLocation != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		bad("give exactly one of http, tcp, command and dagster_code_location (%d given)", n)
	}
	if p.Name != "" && !publicName(p.Name) {
		bad("name %q: use at most 60 printable ASCII characters, without @, =, \\ or :// (it appears in the public status)", p.Name)
	}
	if h := p.HTTP; h != nil {
		if err := probeURL(h.URL); err != nil {
			bad("http url: %v", err)
		}
		if h.Expect != 0 && (h.Expect < 100 || h.Expect > 599) {
			bad("http expect %d: an HTTP status, 100 to 599 (default 200)", h.Expect)
		}
		if strings.ContainsAny(h.Contains, "\n\r") {
			bad("http contains: one line of text")
		}
	}
	if p.TCP != "" {
		host, port, err := net.SplitHostPort(p.TCP)
		if err != nil || host == "" || !validPort(port) {
			bad("tcp %q: write HOST:PORT, e.g. 127.0.0.1:4000", p.TCP)
		}
	}
	if c := p.Command; c != nil && strings.TrimSpace(c.Run) == "" {
		bad("command needs run: the shell command that must exit 0")
	}
	if d := p.DagsterCodeLocation; d != nil {
		if d.Port < 1 || d.Port > 65535 {
			bad("dagster_code_location port %d: the code server's port, 1 to 65535 (e.g. 4000)", d.Port)
		}
		if d.Webserver != "" {
			if err := probeURL(d.Webserver); err != nil {
				bad("dagster_code_location webserver: %v", err)
			}
			if d.Location == "" {
				bad("dagster_code_location with a webserver needs location: the code location's name as the webserver lists it")
			}
		}
		if strings.ContainsAny(d.Location, "\t\n\r") || !publicName(d.Location) && d.Location != "" {
			bad("dagster_code_location location %q: a code location name", d.Location)
		}
	}
	return errors.Join(errs...)
}

// probeURL checks an URL a probe fetches.
func probeURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("%q must be an absolute http(s) URL, e.g. http://127.0.0.1:3000/server_info", s)
	case u.User != nil:
		return errors.New("the URL carries credentials: probes must not (logs and the job page would show them)")
	case u.Fragment != "":
		return fmt.Errorf("%q: remove the #fragment", s)
	}
	return nil
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// publicName reports whether s is a probe name that may appear in a status
// line: at most 60 printable ASCII characters, none of which could make it
// an URL with credentials or an assignment (@, =, \\, ://).
func publicName(s string) bool {
	if s == "" || len(s) > 60 || strings.Contains(s, "://") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || strings.IndexByte("@=\\", c) >= 0 {
			return false
		}
	}
	return true
}

// ProbeScript returns a POSIX sh script that runs probes in order, in the
// calling shell as the user who runs it (a command probe names its user in
// CommandProbe.User: run probes of different users in separate scripts), and
// exits 0 when all passed, 1 when one failed. Each probe is tried once when
// within <= 0, else every second until it passes or within has passed since
// its first attempt. For each probe it prints "probe NAME: passed" or, last,
// FailedMarker NAME TAB REASON; what the tools said goes to the output too.
// A probe whose tools are missing (neither curl nor python3 for http, neither
// bash nor python3 for tcp) fails at once, naming both.
//
// The watch after a deploy uses it with within 0 for its periodic checks.
func ProbeScript(probes []Probe, within time.Duration) string {
	secs := int((within + time.Second - 1) / time.Second)
	var b strings.Builder
	b.WriteString(probePrelude)
	for i, p := range probes {
		fmt.Fprintf(&b, "try_%d() {\n%s}\n", i, probeAttemptScript(p))
		fmt.Fprintf(&b, "retry %s try_%d %d || fail=1\n", shell.Quote(p.name()), i, max(secs, 0))
	}
	b.WriteString("exit $fail\n")
	return b.String()
}

// probePrelude defines what every probe script uses: a scratch directory,
// the retry loop, and the http and tcp checks with their fallbacks. An
// attempt sets reason and returns 0 (passed), 1 (retry) or 2 (give up now).
const probePrelude = `fail=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
retry() { # NAME FUNCTION SECONDS
  end=$(( $(date +%s) + $3 )); n=0; last=
  while :; do
    n=$((n+1)); reason=
    $2 > "$tmp/out" 2>&1; rc=$?
    if [ $rc = 0 ]; then cat "$tmp/out"; echo "probe $1: passed (attempt $n)"; return 0; fi
    # What the tools said, and why, each time it changes.
    if [ "$reason" != "$last" ]; then cat "$tmp/out"; echo "probe $1: attempt $n: $reason"; last=$reason; fi
    if [ $rc != 1 ] || [ "$(date +%s)" -ge "$end" ]; then break; fi
    sleep 1
  done
  printf '` + FailedMarker + `%s\t%s\n' "$1" "$reason"
  return 1
}
have() { command -v "$1" >/dev/null 2>&1; }
pyhttp='import sys, urllib.request, urllib.error
class Keep(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), Keep())
try:
    r = opener.open(urllib.request.Request(sys.argv[1]), timeout=float(sys.argv[3]))
except urllib.error.HTTPError as e:
    r = e
code, body = r.getcode(), r.read(1 << 20)
open(sys.argv[2], "wb").write(body)
print(code)'
http_get() { # URL BODYFILE: prints the status, 000 when there was no answer
  if have curl; then
    curl -sS -g --noproxy '*' --max-time ` + probeAttempt + ` -o "$2" -w '%{http_code}' -- "$1" 2>>"$tmp/err" || true
  elif have python3; then
    python3 -c "$pyhttp" "$1" "$2" ` + probeAttempt + ` 2>>"$tmp/err" || echo 000
  else
    return 2
  fi
}
http_try() { # URL EXPECT CONTAINS
  rm -f "$tmp/body"; : > "$tmp/err"
  code=$(http_get "$1" "$tmp/body")
  if [ $? = 2 ]; then reason="neither curl nor python3 on the target: install one of them"; return 2; fi
  case $code in ''|000*) reason="no answer"; cat "$tmp/err"; return 1 ;; esac
  if [ "$code" != "$2" ]; then reason="answered $code, want $2"; return 1; fi
  if [ -n "$3" ] && ! grep -qF -e "$3" "$tmp/body" 2>/dev/null; then reason="answered $code without \"$3\""; return 1; fi
  return 0
}
tcp_try() { # HOST PORT
  if have bash; then
    timeout ` + probeAttempt + ` bash -c 'exec 3<>"/dev/tcp/$1/$2"' bash "$1" "$2" 2>/dev/null && return 0
  elif have python3; then
    python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), ` + probeAttempt + `).close()' "$1" "$2" 2>/dev/null && return 0
  else
    reason="neither bash nor python3 on the target: install one of them"; return 2
  fi
  reason="no connection to port $2"; return 1
}
`

// pyWorkspace asks dagster-webserver's GraphQL API whether a code location
// loaded. It prints one line, deployhook's own words plus, for a load error,
// the error's type (the first line of the message goes to stderr, which the
// step's output keeps); exit 0 loaded, 1 failed, 3 not yet (retry).
const pyWorkspace = `import json, re, sys, urllib.request, urllib.error
url, loc = sys.argv[1].rstrip("/") + "/graphql", sys.argv[2]
query = "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } ... on PythonError { message } } }"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}, method="POST")
try:
    with opener.open(req, timeout=float(sys.argv[3])) as r:
        doc = json.loads(r.read(8 << 20))
except urllib.error.HTTPError as e:
    print("webserver answered %d" % e.code); sys.exit(3)
except Exception as e:
    print("webserver did not answer"); print(e, file=sys.stderr); sys.exit(3)
ws = (doc.get("data") or {}).get("workspaceOrError") or {}
if ws.get("__typename") != "Workspace":
    print("webserver could not read its workspace"); print((ws.get("message") or "").strip(), file=sys.stderr); sys.exit(3)
for entry in ws.get("locationEntries") or []:
    if entry.get("name") != loc:
        continue
    if entry.get("loadStatus") == "LOADING":
        print("location %s still loading" % loc); sys.exit(3)
    got = entry.get("locationOrLoadError") or {}
    if got.get("__typename") == "PythonError":
        first = ((got.get("message") or "").strip().splitlines() or ["no message"])[0]
        print(first, file=sys.stderr)
        kinds = re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*(?:Error|Exception))\b", first)
        inner = [k for k in kinds if not k.startswith("Dagster")]
        kind = (inner or kinds or ["an error"])[0]
        print("location %s failed to load: %s" % (loc, kind)); sys.exit(1)
    if not got:
        print("location %s not loaded" % loc); sys.exit(3)
    sys.exit(0)
print("location %s not in the webserver's workspace" % loc); sys.exit(1)
`

// probeAttemptScript is the body of one attempt of p.
func probeAttemptScript(p Probe) string {
	q := shell.Quote
	switch {
	case p.HTTP != nil:
		expect := p.HTTP.Expect
		if expect == 0 {
			expect = 200
		}
		return fmt.Sprintf("  http_try %s %d %s\n", q(p.HTTP.URL), expect, q(p.HTTP.Contains))
	case p.TCP != "":
		host, port, _ := net.SplitHostPort(p.TCP)
		return fmt.Sprintf("  tcp_try %s %s\n", q(host), q(port))
	case p.Command != nil:
		return fmt.Sprintf(`  timeout %d sh -c %s; rc=$?
  [ $rc = 0 ] && return 0
  reason="exited $rc"; return 1
`, probeCommandAttempt, q(p.Command.Run))
	case p.DagsterCodeLocation != nil:
		d := p.DagsterCodeLocation
		host := d.Host
		if host == "" {
			host = "127.0.0.1"
		}
		s := fmt.Sprintf(`  venv=%s; host=%s; port=%d
  if [ -x "$venv/bin/dagster" ]; then
    if ! timeout %d "$venv/bin/dagster" api grpc-health-check --host "$host" --port "$port"; then
      reason="gRPC health check of port $port failed"; return 1
    fi
  else
    tcp_try "$host" "$port" || return $?
  fi
`, q(d.Venv), q(host), d.Port, probeCommandAttempt)
		if d.Webserver == "" {
			return s + "  return 0\n"
		}
		return s + fmt.Sprintf(`  py=python3; have python3 || py="$venv/bin/python"
  if ! have "$py"; then reason="neither python3 nor $venv/bin/python on the target"; return 2; fi
  reason=$("$py" -c %s %s %s %s); rc=$?
  case $rc in 0) return 0 ;; 3) return 1 ;; esac
  [ -n "$reason" ] || reason="the GraphQL check failed (exit $rc)"
  return 1
`, q(pyWorkspace), q(d.Webserver), q(d.Location), probeAttempt)
	}
	return "  reason=\"no check configured\"; return 2\n"
}

// probeFailure returns the public "probe NAME: REASON" of the last
// FailedMarker line in a step's output, or "".
func probeFailure(output string) string {
	var last string
	for line := range strings.Lines(output) {
		if rest, ok := strings.CutPrefix(line, FailedMarker); ok {
			last = strings.TrimRight(rest, "\r\n")
		}
	}
	if last == "" {
		return ""
	}
	name, reason, _ := strings.Cut(last, "\t")
	if !publicName(name) {
		name = "?"
	}
	if r := publicReason(reason); r != "" {
		return "probe " + name + ": " + r
	}
	return "probe " + name + " failed"
}

// maxReason bounds a probe's reason in the status description, which GitHub
// caps at 140 characters with the rollback's words still to come.
const maxReason = 70

// publicReason reduces a probe's reason to words that may be public: printable
// ASCII, cut before the first word that could be a URL, a path, an address,
// a user or an assignment (://, /, \, @, =, an IPv4 or IPv6 address), and at
// maxReason bytes. The scripts never print such words in a reason; this
// holds when a tool's words get there anyway.
func publicReason(s string) string {
	var out []string
	n, cut := 0, false
	for _, w := range strings.Fields(s) {
		if !safeWord(w) || n+len(w)+1 > maxReason {
			cut = true
			break
		}
		out = append(out, w)
		n += len(w) + 1
	}
	r := strings.Join(out, " ")
	if cut && r != "" {
		r += " …"
	}
	return r
}

func safeWord(w string) bool {
	if strings.ContainsAny(w, "/\\@=") || strings.Count(w, ":") >= 2 {
		return false
	}
	digits, dots := 0, 0
	for i := 0; i < len(w); i++ {
		switch c := w[i]; {
		case c < 0x20 || c > 0x7e:
			return false
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		}
	}
	return dots < 3 || digits < 4 // 10.0.0.5 is an address
}
