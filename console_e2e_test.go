package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/internal/browsertest"
	"github.com/deployhook/deployhook/internal/sshdtest"
	"github.com/deployhook/deployhook/server/auth/authtest"
	"github.com/deployhook/deployhook/webhook"
)

// The commits of acme/app in the console's end-to-end test, oldest first.
var (
	consoleOlder = consoleCommit{sha: "4c1f0a9d2e7b3c5a8f6e1d0b9c2a7e3f5d8b1a6c", message: "Add the weekly sales dashboard", login: "monalisa", name: "Mona Lisa"}
	consoleNewer = consoleCommit{sha: "9e3b7c2a1f5d8e0b4a6c3f9d7e2b1a8c5f0d6e4b", message: "Load the sales assets from S3", login: "octocat", name: "The Octocat"}
)

// writeConsoleConfig writes the configuration of the console's end-to-end
// test: GitHub sign-in against gh, reached at publicURL, and one local
// target whose build step prints a line every 300 ms, then waits until
// dir/release-SHA exists (so that the test sees the job running for as
// long as it needs), then ends.
func writeConsoleConfig(t *testing.T, dir, publicURL string, gh *consoleGitHub) string {
	t.Helper()
	cfg := fmt.Sprintf(`
public_url: %[2]s
lease: 2s
log: {format: text, level: info}
github:
  web_url: %[3]s
  deployments: false
ui:
  auth: github
  github: {client_id: %[4]s}
targets:
  - name: production
    repo: acme/app
    branch: main
    transport: local
    lock: %[1]s/deploy.lock
    steps:
      - name: build
        run: |
          echo "building $(echo "$DEPLOYHOOK_SHA" | cut -c1-7)"
          for i in 1 2 3 4 5 6 7 8; do echo "compiled package $i of 8"; sleep 0.3; done
          while [ ! -e %[1]s/release-$DEPLOYHOOK_SHA ]; do sleep 0.1; done
          echo "wrote dist/app.tar.gz"
        timeout: 2m
        checkpoint: true
      - name: restart
        run: echo "restarted app.service"
        timeout: 30s
`, dir, publicURL, gh.URL, gh.ClientID)
	p := filepath.Join(dir, "deployhook.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// release lets the build step of sha end.
func release(t *testing.T, dir, sha string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "release-"+sha), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsole_Browser is the console end to end: deployhook serve with
// GitHub sign-in (a fake GitHub behind github.web_url and api_url), a local
// target, and headless Chromium. Alice (push access) opens a running job's
// page, is sent through the OAuth flow and back, watches the build's lines
// arrive while it runs and the page turn into the final one, then rolls
// the target back from its history page. Bob (read access) sees the same
// pages without a button, and his POST with his own valid token is
// refused. A program without a session gets 401. It writes the README's
// screenshots (see screenshot).
func TestConsole_Browser(t *testing.T) {
	dir, shots := t.TempDir(), t.TempDir()
	gh := newConsoleGitHub(t, consoleOlder, consoleNewer)
	gh.Grant("alice", "acme/app", authtest.Perm{Pull: true, Push: true})
	gh.Grant("bob", "acme/app", authtest.Perm{Pull: true})
	door := newFrontDoor(t)
	gh.Callback = door.URL + "/auth/callback"
	env := map[string]string{
		"DEPLOYHOOK_WEBHOOK_SECRET":      testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN":        testToken,
		"DEPLOYHOOK_GITHUB_API_URL":      gh.URL + authtest.APIPath + "/",
		"DEPLOYHOOK_OAUTH_CLIENT_SECRET": gh.ClientSecret,
	}
	p := startProgram(t, writeConsoleConfig(t, dir, door.URL, gh), filepath.Join(dir, "data"), func(k string) string { return env[k] })
	door.to(t, p.url)
	base := door.URL

	// The older commit is deployed first: the rollback's destination.
	release(t, dir, consoleOlder.sha)
	first := consolePush(t, base, "delivery-1", consoleOlder.sha)
	waitStatus(t, gh, consoleOlder.sha, "success")
	running := consolePush(t, base, "delivery-2", consoleNewer.sha)

	// Without a session: a page redirects to sign-in, JSON and the live log get 401.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		path, accept string
		wantCode     int
		wantLocation string
		wantBody     string
	}{
		{"/jobs/" + running, "text/html", http.StatusSeeOther, "/auth/signin?next=%2Fjobs%2F" + running, ""},
		{"/jobs/" + running + "?format=json", "", http.StatusUnauthorized, "", `{"error":"sign in: this needs a signed-in session"}`},
		{"/jobs/" + running + "/events", "text/event-stream", http.StatusUnauthorized, "", `{"error":"sign in: this needs a signed-in session"}`},
		{"/targets/production", "text/html", http.StatusSeeOther, "/auth/signin?next=%2Ftargets%2Fproduction", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+tt.path, nil)
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantCode || resp.Header.Get("Location") != tt.wantLocation ||
			(tt.wantBody != "" && strings.TrimSpace(string(body)) != tt.wantBody) {
			t.Errorf("GET %s without a session: %d %q %s; want %d %q %s", tt.path, resp.StatusCode, resp.Header.Get("Location"), body,
				tt.wantCode, tt.wantLocation, tt.wantBody)
		}
	}

	b := browsertest.New(t, 2*time.Minute)

	// Alice opens the running job's page and signs in on the way.
	gh.SignInAs(authtest.User{Login: "alice", Name: "Alice Liddell"})
	b.Do("open the running job", chromedp.Navigate(base+"/jobs/"+running))
	waitPage(t, b, "the job page, signed in",
		`location.href === "`+base+`/jobs/`+running+`" && document.querySelector(".who strong").textContent === "alice"`)
	for _, call := range []string{"GET /login/oauth/authorize", "POST /login/oauth/access_token", "GET /user"} {
		if n := gh.Calls(call); n != 1 {
			t.Errorf("fake GitHub answered %q %d times, want once", call, n)
		}
	}

	// The build's lines arrive while it runs: it waits for its release
	// file, which only the test writes, after it has seen them.
	b.Do("see the lines arrive", chromedp.Poll[chromedp.Void](
		`(p => p && p.textContent.split("\n").filter(l => /^compiled package [0-9] of 8$/.test(l)).length >= 3)(document.querySelector("#steps .step[data-seq='1'] pre"))`,
		chromedp.WithPollingTimeout(time.Minute)))
	if got := browsertest.Get(b, "read the state", chromedp.Evaluate[string](
		`document.querySelector("h1 .state").textContent + " · " + document.querySelector("#live-note").textContent + " · " + document.querySelector("#steps .step[data-seq='1'] pre").textContent.split("\n")[0]`)); got != "running · Live: lines appear as the VM prints them. · building 9e3b7c2" {
		t.Errorf("the running job's page: %q", got)
	}
	// The picture: every line printed, the step still running.
	b.Do("see every line", chromedp.Poll[chromedp.Void](
		`document.querySelector("#steps .step[data-seq='1'] pre").textContent.endsWith("compiled package 8 of 8\n") && /^running · [1-9]/.test(document.querySelector("#steps .step[data-seq='1'] .meta").textContent)`,
		chromedp.WithPollingTimeout(time.Minute)))
	screenshot(t, b, shots, "job-running.png")
	release(t, dir, consoleNewer.sha)
	waitPage(t, b, "the final page",
		`document.querySelector("h1 .state").textContent === "success" && !document.querySelector("script") && `+
			`document.querySelector("#steps .step[data-seq='2'] pre").textContent === "restarted app.service\n" && `+
			`document.querySelector("#steps .step[data-seq='1'] pre").textContent.endsWith("compiled package 8 of 8\nwrote dist/app.tar.gz\n")`)
	waitStatus(t, gh, consoleNewer.sha, "success")

	// The history: a redeploy of the current commit, a rollback to the older one.
	b.Do("open the history", chromedp.Navigate(base+"/targets/production"),
		chromedp.WaitVisible(chromedp.CSS(`table.history`)))
	buttons := browsertest.Get(b, "read the buttons", chromedp.Evaluate[[]string](`[...document.querySelectorAll(".button")].map(a => a.textContent)`))
	if want := []string{"Redeploy 9e3b7c2", "Roll back to 4c1f0a9"}; fmt.Sprint(buttons) != fmt.Sprint(want) {
		t.Errorf("alice's buttons %q, want %q", buttons, want)
	}
	if got := browsertest.Get(b, "read a commit", chromedp.Text(chromedp.CSS(`table.history tbody tr:last-child td:nth-child(2)`))); !strings.Contains(got, "Add the weekly sales dashboard by monalisa") {
		t.Errorf("the older deploy's commit: %q", got)
	}
	screenshot(t, b, shots, "history.png")
	b.Do("press roll back", chromedp.Click(chromedp.CSS(`a[href="/targets/production/deploy?sha=`+consoleOlder.sha+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)))
	q := browsertest.Get(b, "read the question", chromedp.Text(chromedp.CSS("form p")))
	if !regexp.MustCompile(`^Roll back production to 4c1f0a9 \(deployed (just now|[0-9]+m ago) by Codertocat\)\?$`).MatchString(q) {
		t.Errorf("question %q", q)
	}
	screenshot(t, b, shots, "confirm.png")
	b.Do("confirm", chromedp.Click(chromedp.CSS(`button[type=submit]`)))
	waitPage(t, b, "the rollback's page", `/^\/jobs\/[^\/]+$/.test(location.pathname) && location.pathname !== "/jobs/`+running+`" && location.pathname !== "/jobs/`+first+`"`)
	rollback := strings.TrimPrefix(browsertest.Get(b, "read the location", chromedp.Evaluate[string](`location.pathname`)), "/jobs/")
	waitPage(t, b, "the rollback succeed", `document.querySelector("h1 .state").textContent === "success" && !document.querySelector("script")`)
	job := browsertest.Get(b, "read the rollback", chromedp.Evaluate[string](
		`fetch("/jobs/`+rollback+`?format=json").then(r => r.json()).then(j => [j.state, j.trigger.kind, j.trigger.sha, j.trigger.actor, j.trigger.reason].join(" | "))`,
		chromedp.EvalAwaitPromise))
	if want := "success | rollback | " + consoleOlder.sha + " | alice | rollback by alice in the console"; job != want {
		t.Errorf("the rollback job: %q, want %q", job, want)
	}
	// The commit status says who rolled back.
	want := status{SHA: consoleOlder.sha, State: "success", TargetURL: base + "/jobs/" + rollback,
		Description: "rolled back to 4c1f0a9 by alice", Context: "deploy/production"}
	if got := waitJobStatus(t, gh, want.TargetURL); got != want {
		t.Errorf("the rollback's status %+v, want %+v", got, want)
	}

	// Alice signs out; Bob, who may only read, signs in.
	b.Do("sign out", chromedp.Navigate(base+"/auth/signout"), chromedp.Click(chromedp.CSS(`button[type=submit]`)))
	waitPage(t, b, "signed out", `document.title === "Signed out" || (document.querySelector("h1") && document.querySelector("h1").textContent === "Signed out")`)
	gh.SignInAs(authtest.User{Login: "bob", Name: "Bob"})
	b.Do("open the history as bob", chromedp.Navigate(base+"/targets/production"))
	waitPage(t, b, "the history, signed in as bob",
		`location.pathname === "/targets/production" && document.querySelector(".who strong").textContent === "bob" && !!document.querySelector("table.history")`)
	if n := browsertest.Get(b, "count the buttons", chromedp.Evaluate[int](`document.querySelectorAll(".button, button, form").length`)); n != 0 {
		t.Errorf("bob sees %d buttons or forms", n)
	}
	// Bob's own token is valid (it signs him out), but not for a deploy.
	got := browsertest.Get(b, "post as bob", chromedp.Evaluate[string](`(async () => {
		const count = async () => (await (await fetch("/jobs?target=production")).json()).jobs.length;
		const before = await count();
		const csrf = (await (await fetch("/auth/signout")).text()).match(/name="csrf" value="([^"]+)"/)[1];
		const deploy = await fetch("/targets/production/deploy", {method: "POST", body: new URLSearchParams({csrf, sha: "`+consoleOlder.sha+`"}), redirect: "manual"});
		const after = await count();
		const signOut = await fetch("/auth/signout", {method: "POST", body: new URLSearchParams({csrf})});
		return [deploy.status, before, after, signOut.status].join(" ");
	})()`, chromedp.EvalAwaitPromise))
	if got != "403 3 3 200" {
		t.Errorf("bob's deploy, jobs before and after, sign-out: %q, want 403 3 3 200", got)
	}
}

// consolePush delivers a signed push of sha to acme/app main and returns its job.
func consolePush(t *testing.T, base, delivery, sha string) string {
	t.Helper()
	code, body := deliver(t, base, "push", delivery, pushBody(t, sha))
	job, _ := body["job"].(string)
	if code != http.StatusAccepted || job == "" {
		t.Fatalf("push %s: %d %v", sha, code, body)
	}
	return job
}

// waitStatus waits until sha's last commit status is final, and wants it state.
func waitStatus(t *testing.T, gh *consoleGitHub, sha, state string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s, ok := gh.final(sha)
		if ok {
			if s.State != state {
				t.Fatalf("%.7s: final status %+v, want %s", sha, s, state)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%.7s: no final status within a minute", sha)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, not a synchronisation
	}
}

// BenchmarkConsole_LineToPage measures how long a line printed on the VM
// takes to reach an open job page, through the real path: a step on a real
// sshd prints each line it reads from a FIFO (the signal), deployhook's
// executor reads it from the SSH session into the job's live log, the HTTP
// server sends it as a Server-Sent Event, and an HTTP client reads the
// stream as a browser's EventSource does. One op is one line, from the
// write into the FIFO to the event read; it reports the mean and the 99th
// percentile in milliseconds.
func BenchmarkConsole_LineToPage(b *testing.B) {
	srv := sshdtest.Start(b, sshdtest.Options{})
	dir := b.TempDir()
	lockDir := filepath.Join(dir, "lock")
	fifo := filepath.Join(dir, "signal")
	if err := os.Mkdir(lockDir, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := fmt.Sprintf(`
public_url: http://127.0.0.1
show_output: true
log: {format: text, level: error}
shutdown_grace: 1s
github: {report: false}
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    branch: main
    transport: ssh
    ssh:
      address: %s
      user: %s
      private_key_file: %s
      known_hosts_file: %s
      timeout: 20s
    lock: %s/deploy.lock
    steps:
      - name: print
        run: echo ready; while IFS= read -r line; do echo "$line"; done < %s
        timeout: 1h
`, srv.Addr, srv.User, srv.ClientKeyFile(b), srv.KnownHosts, lockDir, fifo)
	cfgPath := filepath.Join(dir, "deployhook.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	env := map[string]string{"DEPLOYHOOK_WEBHOOK_SECRET": testSecret}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")},
			func(k string) string { return env[k] }, nil, pw, io.Discard)
		pw.Close()
	}()
	defer func() {
		cancel()
		<-done
	}()
	base := readURL(b, pr)
	go io.Copy(io.Discard, pr)

	body, err := sampleDelivery("push", "acme/app", "main", consoleNewer.sha)
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "bench-line")
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(body, []byte(testSecret)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var queued struct{ Job string }
	err = json.NewDecoder(resp.Body).Decode(&queued)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusAccepted {
		b.Fatalf("push: %d %v", resp.StatusCode, err)
	}

	// The page's stream, read as EventSource does: each "line" event's line.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	sreq, _ := http.NewRequestWithContext(sctx, http.MethodGet, base+"/jobs/"+queued.Job+"/events", nil)
	sreq.Header.Set("Accept", "text/event-stream")
	sresp, err := http.DefaultClient.Do(sreq)
	if err != nil || sresp.StatusCode != http.StatusOK {
		b.Fatalf("events: %v %v", sresp, err)
	}
	defer sresp.Body.Close()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(sresp.Body)
		var kind string
		for sc.Scan() {
			switch t := sc.Text(); {
			case strings.HasPrefix(t, "event: "):
				kind = strings.TrimPrefix(t, "event: ")
			case strings.HasPrefix(t, "data: ") && kind == "line":
				var ev struct{ Line string }
				if json.Unmarshal([]byte(strings.TrimPrefix(t, "data: ")), &ev) == nil {
					lines <- ev.Line
				}
			}
		}
	}()
	next := func(what string) {
		select {
		case l, ok := <-lines:
			if !ok || l != what {
				b.Fatalf("read %q (stream open: %v), want %q", l, ok, what)
			}
		case <-time.After(time.Minute):
			b.Fatalf("no line %q within a minute", what)
		}
	}
	next("ready")
	signal, err := os.OpenFile(fifo, os.O_WRONLY, 0) // the step has it open for reading: no wait
	if err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for i := 0; b.Loop(); i++ {
		line := fmt.Sprintf("line %d", i)
		start := time.Now()
		if _, err := io.WriteString(signal, line+"\n"); err != nil {
			b.Fatal(err)
		}
		next(line)
		took = append(took, time.Since(start))
	}
	signal.Close() // the step reads the end of its input and ends
	slices.Sort(took)
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(sum/time.Duration(len(took))), "mean-ms")
	b.ReportMetric(ms(took[(len(took)*99)/100]), "p99-ms")
}

// waitJobStatus waits for the final commit status that links to jobURL.
func waitJobStatus(t *testing.T, gh *consoleGitHub, jobURL string) status {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		gh.mu.Lock()
		for _, s := range gh.statuses {
			if s.TargetURL == jobURL && s.State != "pending" {
				gh.mu.Unlock()
				return s
			}
		}
		gh.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no final status for %s within a minute", jobURL)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, not a synchronisation
	}
}

// README, "The console": its two YAML examples (GitHub sign-in, IAP) load
// as written, with the client secret from the environment.
func TestReadme_ConsoleExamplesLoad(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## The console\n")
	section, _, ok2 := strings.Cut(rest, "\n## ")
	if !ok || !ok2 {
		t.Fatal("no section \"The console\" in the README")
	}
	var blocks []string
	for {
		var block string
		var found bool
		if _, section, found = strings.Cut(section, "```yaml\n"); !found {
			break
		}
		block, section, _ = strings.Cut(section, "```")
		blocks = append(blocks, block)
	}
	if len(blocks) != 2 {
		t.Fatalf("%d YAML examples in \"The console\", want 2", len(blocks))
	}
	const target = `targets:
  - name: production
    repo: acme/app
    branch: main
    transport: local
    steps: [{name: hello, run: echo hello, timeout: 10s}]
`
	env := map[string]string{"DEPLOYHOOK_WEBHOOK_SECRET": testSecret, "DEPLOYHOOK_OAUTH_CLIENT_SECRET": "s3cret", "DEPLOYHOOK_GITHUB_TOKEN": testToken}
	for i, want := range []string{config.AuthGitHub, config.AuthIAP} {
		yaml := blocks[i]
		if !strings.Contains(yaml, "public_url:") {
			yaml = "public_url: https://deploy.example.com\n" + yaml
		}
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(yaml+target), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(p, func(k string) string { return env[k] })
		if err != nil {
			t.Errorf("example %d: %v", i+1, err)
			continue
		}
		if cfg.UI.Auth != want {
			t.Errorf("example %d: ui.auth %q, want %q", i+1, cfg.UI.Auth, want)
		}
	}
}
