package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deployhook/deployhook/webhook"
)

// This file holds the parts of TestChaos_Invariants (chaos_test.go): the
// stand-ins that leave markers on the "VM", the TCP proxy the test cuts,
// deployhook as a child process, GitHub's payloads rewritten for the test's
// commits, and the checks of the invariants.

// Marker lines, appended by the stand-ins to one file on the VM:
//
//	start JOB PID NS TOOL     a stand-in started (TOOL: git, uv, restart-UNIT, show)
//	tick  JOB PID NS          a restart (or its background child) is still running
//	end   JOB PID NS TOOL     the stand-in ended normally
//	co    JOB PID NS HEAD KIND ROLLBACK   git checkout succeeded; HEAD is now HEAD
//	cur   JOB PID NS HEAD     git rev-parse HEAD printed HEAD
//
// JOB is DEPLOYHOOK_JOB, PID the stand-in's $$ (its background child writes the
// parent's), NS the wall clock in nanoseconds (date +%s%N), KIND
// DEPLOYHOOK_KIND and ROLLBACK DEPLOYHOOK_ROLLBACK ("no" when unset: the
// automatic rollback after a failed deploy sets it).
const chaosMark = `m='%s'
mark() { printf '%%s %%s %%s %%s %%s\n' "$1" "${DEPLOYHOOK_JOB:--}" "$$" "$(date +%%s%%N)" "$2" >> "$m"; }
`

// chaosGit is the git on the VM's PATH: the real git, with markers.
const chaosGit = `#!/bin/sh
` + chaosMark + `real='%s'
mark start git
case " $* " in
*" checkout "*)
  "$real" "$@"; r=$?
  if [ $r = 0 ]; then mark co "$("$real" rev-parse HEAD) ${DEPLOYHOOK_KIND:--} ${DEPLOYHOOK_ROLLBACK:-no}"; fi ;;
*" rev-parse HEAD ")
  out=$("$real" "$@"); r=$?
  [ -n "$out" ] && echo "$out"
  [ $r = 0 ] && mark cur "$out" ;;
*)
  "$real" "$@"; r=$? ;;
esac
mark end git
exit $r
`

// chaosSystemctl answers "restart UNIT" by running for ctl/dur-SHA ticks of 50
// ms (4 when the file is missing), with a background child that ignores TERM
// and ticks as long, and the two "show" queries of the verify step. A
// checked-out app.py containing CRASH makes the unit crash-loop (NRestarts
// grows with every look), so verify fails and the deploy rolls back.
const chaosSystemctl = `#!/bin/sh
` + chaosMark + `ctl='%s'; app='%s'
[ "$1" = --no-ask-password ] && shift
case "$1" in
restart)
  mark start "restart-$2"
  n=$(cat "$ctl/dur-$DEPLOYHOOK_SHA" 2>/dev/null || echo 4)
  ( trap '' TERM; i=0; while [ $i -lt $n ]; do mark tick; sleep 0.05; i=$((i+1)); done ) &
  i=0; while [ $i -lt $n ]; do mark tick; sleep 0.05; i=$((i+1)); done
  wait
  mark end "restart-$2" ;;
show)
  mark start show
  prop=${2#--property=}; unit=$4
  case "$prop" in
  ActiveState) echo active ;;
  NRestarts)
    n=0
    if grep -q CRASH "$app/app.py"; then
      n=$(cat "$ctl/restarts-$unit" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$ctl/restarts-$unit"
    fi
    echo $n ;;
  *) echo "systemctl stand-in: unknown property $prop" >&2; exit 1 ;;
  esac
  mark end show ;;
*) echo "systemctl stand-in: unexpected call: $*" >&2; exit 1 ;;
esac
`

// chaosUV stands in for uv sync.
const chaosUV = `#!/bin/sh
` + chaosMark + `mark start uv
sleep 0.1
mark end uv
`

// installChaosStandIns replaces the VM's stand-ins with the marking ones.
func installChaosStandIns(t *testing.T, v *vm, markers string) {
	t.Helper()
	writeFile(t, markers, "", 0o666)
	writeFile(t, filepath.Join(v.bin, "git"), fmt.Sprintf(chaosGit, markers, v.git), 0o755)
	writeFile(t, filepath.Join(v.bin, "systemctl"), fmt.Sprintf(chaosSystemctl, markers, v.ctl, v.app), 0o755)
	writeFile(t, filepath.Join(v.bin, "uv"), fmt.Sprintf(chaosUV, markers), 0o755)
}

// cutProxy forwards TCP connections to an address until the test cuts them:
// deployhook's ssh.address points at it, so a cut is a network failure in the
// middle of whatever deployhook was doing on the VM.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.pipe(c) })
	}
}

func (p *cutProxy) pipe(c net.Conn) {
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var done sync.WaitGroup
	done.Go(func() { io.Copy(s, c); s.Close(); c.Close() })
	done.Go(func() { io.Copy(c, s); s.Close(); c.Close() })
	done.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// cut closes every connection through the proxy, both sides, and returns how
// many there were (counting both sides).
func (p *cutProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	return len(p.conns)
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// chaosProgram is deployhook serving in a child process (the test binary run
// as the program, see TestMain), so that the test can kill it with SIGKILL.
type chaosProgram struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{} // closed when the process has exited and been waited for
	err  error         // its exit, after done
}

// startChaosProgram starts deployhook serve with cfg on data, its log appended
// to logFile, and waits until it listens.
func startChaosProgram(t *testing.T, cfg, data, logFile string, env []string) (*chaosProgram, error) {
	t.Helper()
	lf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(os.Args[0], "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--data-dir", data)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "DEPLOYHOOK_TEST_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = lf
	out, err := cmd.StdoutPipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &chaosProgram{cmd: cmd, done: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "deployhook listening on "); ok {
				urls <- u
				break
			}
		}
		close(urls)
		io.Copy(io.Discard, out)
	}()
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	select {
	case u, ok := <-urls:
		if ok {
			p.url = u
			return p, nil
		}
		<-p.done
		return nil, fmt.Errorf("deployhook exited before listening: %v (log: %s)", p.err, logFile)
	case <-time.After(60 * time.Second):
		p.kill()
		return nil, fmt.Errorf("deployhook did not listen within 60s (log: %s)", logFile)
	}
}

// kill sends SIGKILL to the program's process group and waits for it.
func (p *chaosProgram) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits (at most a minute, then kills).
func (p *chaosProgram) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.kill()
	}
}

func (p *chaosProgram) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// payload returns one of GitHub's sample payloads (webhook/testdata), decoded,
// for the test to rewrite.
func payload(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("webhook", "testdata", "github-payloads", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func obj(m map[string]any, key string) map[string]any {
	o, _ := m[key].(map[string]any)
	if o == nil {
		o = map[string]any{}
		m[key] = o
	}
	return o
}

// setRepo makes a payload's repository acme/app; stamp varies its
// repository.pushed_at as GitHub's does from one delivery to the next.
func setRepo(m map[string]any, stamp int) {
	r := obj(m, "repository")
	r["full_name"], r["name"] = "acme/app", "app"
	obj(r, "owner")["login"] = "acme"
	r["pushed_at"] = 1_700_000_000 + stamp
}

func marshal(t *testing.T, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// chaosPushBody is GitHub's sample push of a new branch, rewritten to a push
// of sha (after before) to acme/app main.
func chaosPushBody(t *testing.T, sha, before string, stamp int) []byte {
	m := payload(t, "push/with-new-branch.payload.json")
	m["ref"], m["before"], m["after"] = "refs/heads/main", before, sha
	m["created"], m["deleted"], m["forced"], m["base_ref"] = false, false, false, nil
	m["compare"] = "https://github.com/acme/app/compare/" + before[:12] + "..." + sha[:12]
	m["head_commit"] = map[string]any{"id": sha, "distinct": true, "message": "chaos",
		"timestamp": "2026-06-01T00:00:00Z", "url": "https://github.com/acme/app/commit/" + sha,
		"author":    map[string]any{"name": "Dev", "email": "dev@example.com", "username": "dev"},
		"committer": map[string]any{"name": "Dev", "email": "dev@example.com", "username": "dev"},
		"added":     []any{}, "removed": []any{}, "modified": []any{"app.py"}}
	m["commits"] = []any{m["head_commit"]}
	obj(m, "pusher")["name"] = "dev"
	setRepo(m, stamp)
	return marshal(t, m)
}

// chaosRunBody is GitHub's sample completed workflow run, rewritten to a
// successful push-triggered run of the CI workflow on branch for sha.
func chaosRunBody(t *testing.T, sha, branch string, id int64, attempt, stamp int) []byte {
	m := payload(t, "workflow_run/completed.payload.json")
	m["action"] = "completed"
	setRepo(m, stamp)
	w := obj(m, "workflow")
	w["path"] = ".github/workflows/ci.yml"
	r := obj(m, "workflow_run")
	r["head_branch"], r["head_sha"], r["event"] = branch, sha, "push"
	r["status"], r["conclusion"], r["path"] = "completed", "success", ".github/workflows/ci.yml"
	r["id"], r["run_number"], r["run_attempt"] = id, id%1000, attempt
	hr := obj(r, "head_repository")
	hr["full_name"], hr["name"] = "acme/app", "app"
	obj(r, "repository")["full_name"] = "acme/app"
	if hc, ok := r["head_commit"].(map[string]any); ok {
		hc["id"] = sha
	}
	if attempt > 1 {
		r["previous_attempt_url"] = fmt.Sprintf("https://api.github.com/repos/acme/app/actions/runs/%d/attempts/%d", id, attempt-1)
	}
	return marshal(t, m)
}

// chaosDispatchBody is GitHub's sample workflow_dispatch, rewritten to a run of
// the deploy workflow on main by a person, with inputs (sha, action).
func chaosDispatchBody(t *testing.T, inputs map[string]any, stamp int) []byte {
	m := payload(t, "workflow_dispatch/payload.json")
	m["ref"], m["workflow"], m["inputs"] = "refs/heads/main", ".github/workflows/deploy.yml", inputs
	setRepo(m, stamp)
	obj(m, "sender")["login"] = "operator"
	return marshal(t, m)
}

// answer is deployhook's answer to a delivery.
type answer struct {
	code      int
	job       string // a new job
	duplicate string // an existing job
	ignored   string
	sha       string
	text      string // the body, for the log
}

// post sends a signed delivery to url. The error is a transport error.
func post(url, event, guid string, body []byte, sig string) (answer, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/webhook", bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/chaos")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", guid)
	req.Header.Set("X-Hub-Signature-256", sig)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	a := answer{code: resp.StatusCode, text: strings.TrimSpace(string(b))}
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		a.job, _ = m["job"].(string)
		a.duplicate, _ = m["duplicate"].(string)
		a.ignored, _ = m["ignored"].(string)
		a.sha, _ = m["sha"].(string)
	}
	return a, nil
}

func sign(body []byte) string { return webhook.Sign(body, []byte(testSecret)) }

// invocation is one run of a stand-in on the VM, from its markers.
type invocation struct {
	job        string
	pid        int
	tool       string
	start      int64 // ns
	last       int64 // its last marker (end, or the last tick before it died)
	ended      bool
	firstEvent int // the test's event during which it started
}

// checkout is a "co" marker: a job moved the VM's checkout.
type checkout struct {
	job      string
	at       int64
	head     string
	kind     string
	rollback bool // DEPLOYHOOK_ROLLBACK: the automatic rollback after a failure
	back     bool // it moved the VM backwards on the branch
	event    int  // the test's event during which it was seen
}

// markerLine is one parsed marker line.
type markerLine struct {
	what, job string
	pid       int
	ns        int64
	rest      []string
}

func parseMarker(l string) (markerLine, bool) {
	f := strings.Fields(l)
	if len(f) < 4 {
		return markerLine{}, false
	}
	pid, err1 := strconv.Atoi(f[2])
	ns, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return markerLine{}, false
	}
	return markerLine{what: f[0], job: f[1], pid: pid, ns: ns, rest: f[4:]}, true
}

// overlap finds two invocations of different jobs whose lifetimes overlap, in
// one sweep over the invocations sorted by start.
func overlap(invs []*invocation) (a, b *invocation) {
	sorted := slices.Clone(invs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].start < sorted[j].start })
	var top1, top2 *invocation // the latest-ending so far, and the latest-ending of another job
	for _, x := range sorted {
		if top1 != nil && x.job != top1.job && x.start < top1.last {
			return top1, x
		}
		if top1 != nil && x.job == top1.job && top2 != nil && x.start < top2.last {
			return top2, x
		}
		switch {
		case top1 == nil || x.last > top1.last:
			if top1 != nil && top1.job != x.job {
				top2 = top1
			}
			top1 = x
		case x.job != top1.job && (top2 == nil || x.last > top2.last):
			top2 = x
		}
	}
	return nil, nil
}

// stepProcess is a live process of a deploy step on the VM.
type stepProcess struct {
	pid  int
	job  string
	args string
}

// stepProcesses returns the live processes whose environment carries
// CHAOS_VM=token (the target's env: every step's processes, and only those).
func stepProcesses(token string) []stepProcess {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	mark := []byte("CHAOS_VM=" + token)
	var out []stepProcess
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, mark) {
			continue
		}
		p := stepProcess{pid: pid, job: "-"}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.Equal(kv, mark) {
				continue
			}
			if j, ok := bytes.CutPrefix(kv, []byte("DEPLOYHOOK_JOB=")); ok {
				p.job = string(j)
			}
		}
		if cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil {
			p.args = strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
		}
		out = append(out, p)
	}
	return out
}

// jobsOf returns the distinct jobs of ps, sorted.
func jobsOf(ps []stepProcess) []string {
	set := map[string]bool{}
	for _, p := range ps {
		set[p.job] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// jobView is what deployhook's job page says in JSON.
type jobView struct {
	State       string `json:"state"`
	Description string `json:"description"`
	PreviousSHA string `json:"previous_sha"`
}

func fetchJob(url, id string) (jobView, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url + "/jobs/" + id + "?format=json")
	if err != nil {
		return jobView{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jobView{}, fmt.Errorf("GET /jobs/%s: %s", id, resp.Status)
	}
	var j jobView
	err = json.NewDecoder(resp.Body).Decode(&j)
	return j, err
}

func finalState(s string) bool { return s != "" && s != "queued" && s != "running" }

// tailFile returns the last n lines of a file, for a failure message.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
