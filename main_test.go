package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
	"github.com/deployhook/deployhook/webhook"
)

// TestMain lets a test run the whole program as a child process (to kill it),
// and stops the PostgreSQL server of the tests that started one (pgtest).
func TestMain(m *testing.M) {
	if os.Getenv("DEPLOYHOOK_TEST_CHILD") == "1" {
		err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

const (
	testSecret = "e2e-webhook-secret-0123456789"
	testToken  = "ghs_e2eTestToken0123456789"
)

// fakeGitHub is an httptest GitHub API that checks every request: method, path,
// token and the exact JSON of commit statuses. It fails the test on anything else.
type fakeGitHub struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	statuses []status
	failFor  time.Time // answer 500 until then
	failures int
	head     string // the SHA of acme/app's main, for BranchHead
	// graph, when set, answers the compare API from a real repository (the
	// TestVM_ origin): git merge-base --is-ancestor's exit code for base, head.
	graph func(base, head string) (int, error)
}

type status struct {
	SHA         string
	State       string `json:"state"`
	TargetURL   string `json:"target_url"`
	Description string `json:"description"`
	Context     string `json:"context"`
}

var (
	statusPath  = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$`)
	comparePath = regexp.MustCompile(`^/repos/acme/app/compare/([0-9a-f]{40})\.\.\.([0-9a-f]{40}|main)$`)
)

// compare answers GitHub's compare API (only "does head contain base" is
// read). Without graph, for the commits sha(n): each is the parent of the
// next, and all are on main, so head contains base when base's n is at most
// head's. With graph, from the real repository.
func (f *fakeGitHub) compare(w http.ResponseWriter, r *http.Request, base, head string) {
	if got := r.URL.Query().Get("per_page"); got != "1" {
		f.t.Errorf("compare %s...%s: per_page %q, want 1", base, head, got)
	}
	status := "ahead"
	switch {
	case base == head:
		status = "identical"
	case f.graph != nil:
		code, err := f.graph(base, head)
		switch {
		case err != nil:
			f.t.Errorf("compare %s...%s: %v", base, head, err)
			http.Error(w, `{"message":"Server Error"}`, http.StatusInternalServerError)
			return
		case code == 1:
			status = "diverged" // or behind: deployhook reads both as "not contained"
		case code != 0:
			http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
			return
		}
	case head != "main" && shaNumber(base) > shaNumber(head):
		status = "behind"
	}
	fmt.Fprintf(w, `{"status": %q, "ahead_by": 0, "behind_by": 0, "total_commits": 0}`, status)
}

// shaNumber returns n of sha(n).
func shaNumber(s string) int {
	var n int
	fmt.Sscanf(s[7:], "%x", &n)
	return n
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		f.t.Errorf("%s %s: Authorization %q", r.Method, r.URL.Path, got)
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	if time.Now().Before(f.failFor) {
		f.failures++
		http.Error(w, `{"message":"Server Error"}`, http.StatusInternalServerError)
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == "/repos/acme/app/commits/heads/main" && f.head != "" {
		io.WriteString(w, f.head) // asked for with Accept: application/vnd.github.sha
		return
	}
	if m := comparePath.FindStringSubmatch(r.URL.Path); r.Method == http.MethodGet && m != nil {
		f.compare(w, r, m[1], m[2])
		return
	}
	m := statusPath.FindStringSubmatch(r.URL.Path)
	if r.Method != http.MethodPost || m == nil || m[1] != "acme" || m[2] != "app" {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	var fields map[string]any
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &fields); err != nil {
		f.t.Errorf("status body %q: %v", body, err)
	}
	for k := range fields {
		if !slices.Contains([]string{"state", "target_url", "description", "context"}, k) {
			f.t.Errorf("status has unexpected field %q: %s", k, body)
		}
	}
	var s status
	_ = json.Unmarshal(body, &s)
	s.SHA = m[3]
	if n := len([]rune(s.Description)); n > 140 {
		f.t.Errorf("description of %d characters: GitHub would answer 422", n)
	}
	if strings.Contains(string(body), testSecret) || strings.Contains(string(body), testToken) {
		f.t.Errorf("a secret in a status: %s", body)
	}
	f.statuses = append(f.statuses, s)
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id": %d, "state": %q, "context": %q}`, len(f.statuses), s.State, s.Context)
}

func (f *fakeGitHub) of(sha string) []status {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []status
	for _, s := range f.statuses {
		if s.SHA == sha {
			out = append(out, s)
		}
	}
	return out
}

// waitFinal waits until sha has a final status and returns its statuses.
func (f *fakeGitHub) waitFinal(t *testing.T, sha string, within time.Duration) []status {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ss := f.of(sha)
		if n := len(ss); n > 0 && ss[n-1].State != "pending" {
			return ss
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no final status for %s within %v; got %+v", sha, within, f.of(sha))
	return nil
}

// program is deployhook started by a test.
type program struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

// startProgram runs the whole program in-process on 127.0.0.1:0.
func startProgram(t *testing.T, cfgPath, dataDir string, getenv func(string) string) *program {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	p := &program{cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := run(ctx, []string{"serve", "--config", cfgPath, "--listen", "127.0.0.1:0", "--data-dir", dataDir},
			getenv, strings.NewReader(""), pw, t.Output())
		pw.Close()
		p.done <- err
	}()
	url, ok := listening(pr)
	if !ok {
		t.Fatalf("deployhook did not start listening: %v", <-p.done)
	}
	p.url = url
	go io.Copy(io.Discard, pr)
	t.Cleanup(p.stop)
	return p
}

// listening reads deployhook's output until it says where it listens.
func listening(r io.Reader) (string, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "deployhook listening on "); ok {
			return u, true
		}
	}
	return "", false
}

func (p *program) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	<-p.done
	p.cancel = nil
}

func readURL(t testing.TB, r io.Reader) string {
	t.Helper()
	u, ok := listening(r)
	if !ok {
		t.Fatal("deployhook did not start listening")
	}
	return u
}

func testEnv(gh *fakeGitHub) func(string) string {
	env := map[string]string{
		"DEPLOYHOOK_WEBHOOK_SECRET": testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN":   testToken,
		"DEPLOYHOOK_GITHUB_API_URL": gh.srv.URL + "/",
	}
	return func(k string) string { return env[k] }
}

// writeConfig writes a configuration with one local target whose steps record
// their environment in dir/ran, and fail when the SHA is listed in dir/fail.
func writeConfig(t *testing.T, dir string, extraStep string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
public_url: https://deploy.example.com
lease: 2s
log: {format: text, level: debug}
github:
  deployments: false
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    branch: main
    transport: local
    lock: %[1]s/deploy.lock
    steps:
      - name: checkout
        run: echo "checkout $DEPLOYHOOK_SHA $DEPLOYHOOK_TARGET $DEPLOYHOOK_JOB" >> %[1]s/ran
        timeout: 30s
        checkpoint: true
%[2]s      - name: verify
        run: if grep -q "$DEPLOYHOOK_SHA" %[1]s/fail 2>/dev/null; then echo "verify failed"; exit 3; fi; echo "verify $DEPLOYHOOK_SHA" >> %[1]s/ran
        timeout: 30s
`, dir, extraStep)
	p := filepath.Join(dir, "deployhook.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pushBody returns GitHub's sample push, rewritten to acme/app main at sha.
func pushBody(t *testing.T, sha string) []byte {
	t.Helper()
	b, err := sampleDelivery("push", "acme/app", "main", sha)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func deliver(t *testing.T, url, event, delivery string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(body, []byte(testSecret)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func sha(n int) string { return fmt.Sprintf("%07x%033x", 0xc000000+n, n) }

func states(ss []status) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.State)
	}
	return out
}

func TestServe_PushDeploysAndReports(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	p := startProgram(t, writeConfig(t, dir, ""), filepath.Join(dir, "data"), testEnv(gh))

	code, body := deliver(t, p.url, "push", "delivery-1", pushBody(t, sha(1)))
	if code != http.StatusAccepted || body["sha"] != sha(1) || body["target"] != "production" {
		t.Fatalf("push: %d %v", code, body)
	}
	job, _ := body["job"].(string)
	ss := gh.waitFinal(t, sha(1), 30*time.Second)
	// queued and running are both "pending"; running may be skipped when the
	// deploy ended before it was sent (the outbox skips stale reports).
	if got := states(ss); !slices.Equal(got, []string{"pending", "pending", "success"}) && !slices.Equal(got, []string{"pending", "success"}) {
		t.Errorf("statuses %v, want pending then success", got)
	}
	for _, s := range ss {
		if s.Context != "deploy/production" || s.TargetURL != "https://deploy.example.com/jobs/"+job {
			t.Errorf("status %+v: want context deploy/production and the job's URL", s)
		}
	}
	ran, _ := os.ReadFile(filepath.Join(dir, "ran"))
	if want := fmt.Sprintf("checkout %s production %s\nverify %s\n", sha(1), job, sha(1)); string(ran) != want {
		t.Errorf("steps ran:\n%s\nwant:\n%s", ran, want)
	}

	// The same delivery again is one job.
	code, body = deliver(t, p.url, "push", "delivery-1", pushBody(t, sha(1)))
	if code != http.StatusOK || body["duplicate"] != job {
		t.Errorf("redelivery: %d %v, want 200 duplicate %s", code, body, job)
	}

	// The job page tells what happened.
	resp, err := http.Get(p.url + "/jobs/" + job + "?format=json")
	if err != nil {
		t.Fatal(err)
	}
	var page map[string]any
	json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if page["state"] != "success" {
		t.Errorf("job page: %v", page)
	}

	// A failing step after the checkpoint: failure naming the step, rolled back.
	os.WriteFile(filepath.Join(dir, "fail"), []byte(sha(2)+"\n"), 0o600)
	if code, body := deliver(t, p.url, "push", "delivery-2", pushBody(t, sha(2))); code != http.StatusAccepted {
		t.Fatalf("push 2: %d %v", code, body)
	}
	ss = gh.waitFinal(t, sha(2), 30*time.Second)
	last := ss[len(ss)-1]
	if last.State != "failure" || last.Description != "verify failed (exit 3); rolled back to "+sha(1)[:7] {
		t.Errorf("final status %s %q, want failure naming the step and the rollback", last.State, last.Description)
	}
}

func TestServe_RejectsBadDeliveries(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	p := startProgram(t, writeConfig(t, dir, ""), filepath.Join(dir, "data"), testEnv(gh))
	body := pushBody(t, sha(1))
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"no signature", map[string]string{"X-Hub-Signature-256": ""}, 401},
		{"bad signature", map[string]string{"X-Hub-Signature-256": webhook.Sign(body, []byte("another-secret-0123456789"))}, 401},
		{"sha1 only", map[string]string{"X-Hub-Signature-256": "", "X-Hub-Signature": "sha1=0123456789012345678901234567890123456789"}, 401},
		{"no event", map[string]string{"X-GitHub-Event": ""}, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, p.url+"/webhook", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-GitHub-Delivery", "d")
			req.Header.Set("X-Hub-Signature-256", webhook.Sign(body, []byte(testSecret)))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, answer, tc.want)
			}
			if bytes.Contains(answer, []byte(testSecret)) {
				t.Errorf("answer contains the secret")
			}
		})
	}
	if n := len(gh.of(sha(1))); n != 0 {
		t.Errorf("%d statuses for rejected deliveries", n)
	}
}

func TestServe_GitHubOutage(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	gh.failFor = time.Now().Add(3 * time.Second)
	p := startProgram(t, writeConfig(t, dir, ""), filepath.Join(dir, "data"), testEnv(gh))
	if code, body := deliver(t, p.url, "push", "d-1", pushBody(t, sha(7))); code != http.StatusAccepted {
		t.Fatalf("push: %d %v", code, body)
	}
	ss := gh.waitFinal(t, sha(7), 60*time.Second)
	if got := states(ss); got[len(got)-1] != "success" {
		t.Errorf("statuses after the outage: %v", got)
	}
	gh.mu.Lock()
	failures := gh.failures
	gh.mu.Unlock()
	if failures == 0 {
		t.Error("the fake never failed: the test did not test the outage")
	}
	ran, _ := os.ReadFile(filepath.Join(dir, "ran"))
	if !bytes.Contains(ran, []byte("verify "+sha(7))) {
		t.Error("the deploy did not run during the outage")
	}
}

// A process killed in the middle of a deploy, started again, reports the
// interrupted job as an error and runs what was queued behind it.
func TestServe_KilledMidDeploy(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	started := filepath.Join(dir, "started")
	pidFile := filepath.Join(dir, "step.pid")
	cfg := writeConfig(t, dir, fmt.Sprintf(`      - name: migrate
        run: if [ "$DEPLOYHOOK_SHA" = %s ]; then echo $$ > %s; touch %s; sleep 300; fi
        timeout: 10m
`, sha(1), pidFile, started))
	// The killed deployhook cannot end its step: the step runs in a process group
	// of its own on the "VM", and only its timeout would end it. Do it here.
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		var pid int
		fmt.Sscan(string(b), &pid)
		if pgid, err := syscall.Getpgid(pid); err == nil && pid > 0 {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
	data := filepath.Join(dir, "data")

	child := exec.Command(os.Args[0], "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--data-dir", data)
	child.Env = append(os.Environ(), "DEPLOYHOOK_TEST_CHILD=1",
		"DEPLOYHOOK_WEBHOOK_SECRET="+testSecret, "DEPLOYHOOK_GITHUB_TOKEN="+testToken,
		"DEPLOYHOOK_GITHUB_API_URL="+gh.srv.URL+"/")
	child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so the kill takes its steps too
	out, _ := child.StdoutPipe()
	child.Stderr = t.Output()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	url := readURL(t, out)
	if code, _ := deliver(t, url, "push", "d-1", pushBody(t, sha(1))); code != http.StatusAccepted {
		t.Fatalf("push 1: %d", code)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deploy did not reach its long step")
		}
	}
	if code, _ := deliver(t, url, "push", "d-2", pushBody(t, sha(2))); code != http.StatusAccepted {
		t.Fatalf("push 2: %d", code)
	}
	// Wait until both pending statuses reached GitHub, then kill -9.
	for deadline := time.Now().Add(30 * time.Second); len(gh.of(sha(1))) < 2 || len(gh.of(sha(2))) < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("statuses before the kill: %v %v", gh.of(sha(1)), gh.of(sha(2)))
		}
	}
	syscall.Kill(-child.Process.Pid, syscall.SIGKILL)
	child.Wait()

	// The killed process's lease (2 s here) must expire before the new one
	// adopts its jobs: the new one looks at start and every third of a lease.
	startProgram(t, cfg, data, testEnv(gh))
	ss := gh.waitFinal(t, sha(1), 30*time.Second)
	last := ss[len(ss)-1]
	if last.State != "error" || last.Description != "interrupted: the deployhook that ran it stopped; target state unknown" {
		t.Errorf("interrupted job: %s %q", last.State, last.Description)
	}
	if ss := gh.waitFinal(t, sha(2), 30*time.Second); ss[len(ss)-1].State != "success" {
		t.Errorf("the job queued behind it: %v", states(ss))
	}
}

func TestRun_Version(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, os.Getenv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "deployhook dev\n" {
		t.Errorf("version = %q", out.String())
	}
}

func TestRun_ConfigErrorsAreActionable(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"serve"}, func(string) string { return "" }, nil, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "set DEPLOYHOOK_WEBHOOK_SECRET") {
		t.Errorf("serve without a secret: %v", err)
	}
}

func TestRun_SendTestWebhook(t *testing.T) {
	var got *http.Request
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"job":"j"}`)
	}))
	defer srv.Close()
	env := map[string]string{"DEPLOYHOOK_WEBHOOK_SECRET": testSecret}
	var out bytes.Buffer
	err := run(context.Background(), []string{"send-test-webhook", "--url", srv.URL, "--sha", sha(3)},
		func(k string) string { return env[k] }, nil, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := webhook.Verify(gotBody, got.Header.Get("X-Hub-Signature-256"), []byte(testSecret)); err != nil {
		t.Errorf("signature: %v", err)
	}
	ev, err := webhook.Parse(got.Header.Get("X-GitHub-Event"), got.Header.Get("X-GitHub-Delivery"), gotBody)
	if err != nil || ev.SHA != sha(3) || ev.Repo != "deployhook/demo" || ev.Branch != "main" {
		t.Errorf("parsed %+v, %v", ev, err)
	}
}

// 50 signed pushes arriving while a deploy runs end in at most two more
// deploys, and every SHA that was marked pending gets a final status.
func TestServe_PushStorm(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	release := filepath.Join(dir, "release")
	cfg := writeConfig(t, dir, fmt.Sprintf(`      - name: hold
        run: while [ ! -e %s ]; do sleep 0.02; done
        timeout: 1m
`, release))
	p := startProgram(t, cfg, filepath.Join(dir, "data"), testEnv(gh))
	if code, _ := deliver(t, p.url, "push", "storm-0", pushBody(t, sha(100))); code != http.StatusAccepted {
		t.Fatalf("first push: %d", code)
	}
	waitRan(t, filepath.Join(dir, "ran"), "checkout "+sha(100))
	var wg sync.WaitGroup
	for i := 1; i <= 50; i++ {
		wg.Go(func() {
			if code, body := deliver(t, p.url, "push", fmt.Sprintf("storm-%d", i), pushBody(t, sha(100+i))); code != http.StatusAccepted {
				t.Errorf("push %d: %d %v", i, code, body)
			}
		})
	}
	wg.Wait()
	os.WriteFile(release, nil, 0o600)

	deployed := 0
	for i := 0; i <= 50; i++ {
		// Every SHA ends final; one superseded while GitHub was still being sent
		// the backlog may get only its final status (stale pendings are skipped).
		ss := gh.waitFinal(t, sha(100+i), 30*time.Second)
		if last := ss[len(ss)-1]; last.State == "success" {
			deployed++
		} else if last.State != "error" || !strings.HasPrefix(last.Description, "superseded by ") {
			t.Errorf("sha %d ended %s %q, want success or superseded", i, last.State, last.Description)
		}
	}
	ran, _ := os.ReadFile(filepath.Join(dir, "ran"))
	checkouts := strings.Count(string(ran), "checkout ")
	if checkouts > 2 || deployed != checkouts {
		t.Errorf("%d deploys ran (%d reported success) for 51 pushes, want the first and at most one more", checkouts, deployed)
	}
}

func waitRan(t *testing.T, file, line string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(file); bytes.Contains(b, []byte(line)) {
			return
		}
	}
	t.Fatalf("%q never appeared in %s", line, file)
}

// deployhook deploy streams the steps' output; deployhook rollback goes back to
// the previous successful deploy; both report to GitHub.
func TestRun_DeployAndRollback(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		args = append(args, "--config", cfg, "--data-dir", data, "--target", "production")
		err := run(context.Background(), args, testEnv(gh), nil, &out, t.Output())
		return out.String(), err
	}
	for _, n := range []int{1, 2} {
		out, err := cli("deploy", "--sha", sha(n))
		if err != nil {
			t.Fatalf("deploy %d: %v\n%s", n, err, out)
		}
		if !strings.Contains(out, "manual "+sha(n)+" to production") || !strings.Contains(out, "success: deployed "+sha(n)[:7]) {
			t.Errorf("deploy output:\n%s", out)
		}
	}
	out, err := cli("rollback")
	if err != nil {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	if !strings.Contains(out, "rollback "+sha(1)) || !strings.Contains(out, "success: rolled back to "+sha(1)[:7]+" by ") {
		t.Errorf("rollback output:\n%s", out)
	}
	ran, _ := os.ReadFile(filepath.Join(dir, "ran"))
	if got := strings.Count(string(ran), "checkout "+sha(1)); got != 2 {
		t.Errorf("%s checked out %d times, want 2 (deploy, then rollback):\n%s", sha(1)[:7], got, ran)
	}
	if ss := gh.of(sha(1)); len(ss) < 6 || ss[len(ss)-1].State != "success" {
		t.Errorf("statuses of the rolled-back-to SHA: %v", states(ss))
	}
	out, err = cli("status")
	if err != nil || !strings.Contains(out, "runs "+sha(1)[:7]) {
		t.Errorf("status: %v\n%s", err, out)
	}
	// A failing deploy makes the command fail; the step's output is streamed.
	os.WriteFile(filepath.Join(dir, "fail"), []byte(sha(3)), 0o600)
	if out, err := cli("deploy", "--sha", sha(3)); err == nil || !strings.Contains(out, "[verify] verify failed\n") ||
		!strings.Contains(out, "failure: deploy by ") || !strings.Contains(out, ": verify failed") {
		t.Errorf("failing deploy: %v\n%s", err, out)
	}
}

// BenchmarkServe_Push is a signed 7.7 KB push to the deployed branch through the
// whole program over loopback HTTP: verify, parse, match, and the journal writes
// of the enqueue (the job and its owed report; with a deploy running, also the
// superseded job), until the 202.
func BenchmarkServe_Push(b *testing.B) {
	dir := b.TempDir()
	cfg := `
log: {format: text, level: error}
shutdown_grace: 1ms
github: {report: false}
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    branch: main
    transport: local
    steps:
      - {name: hold, run: sleep 3600, timeout: 2h}
`
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte(cfg), 0o600)
	env := map[string]string{"DEPLOYHOOK_WEBHOOK_SECRET": testSecret}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", p, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")},
			func(k string) string { return env[k] }, nil, pw, io.Discard)
		pw.Close()
	}()
	url := readURL(b, pr)
	go io.Copy(io.Discard, pr)
	bodies := make([][]byte, b.N+1)
	for i := range bodies {
		bodies[i], _ = sampleDelivery("push", "acme/app", "main", fmt.Sprintf("%040x", i+1))
	}
	client := &http.Client{}
	b.SetBytes(int64(len(bodies[0])))
	b.ResetTimer()
	for i := range b.N {
		req, _ := http.NewRequest(http.MethodPost, url+"/webhook", bytes.NewReader(bodies[i]))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprint("bench-", i))
		req.Header.Set("X-Hub-Signature-256", webhook.Sign(bodies[i], []byte(testSecret)))
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	cancel()
	<-done
}
