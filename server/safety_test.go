package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor"
)

// The tests of issue 8's server parts. Each says which safety invariant it holds
// and failed before the change it tests.

// TestServer_Webhook_replay sends GitHub's real push payload, signed, and then the
// same bytes and signature under a new X-GitHub-Delivery, as anyone holding one
// old delivery can (the GUID is not signed). The replay is answered 200
// {"ignored": ...} and queues nothing (invariant 2: production only moves
// forward). Before, triggers carried no body hash, so the queue could not tell
// and the replay was answered 202.
func TestServer_Webhook_replay(t *testing.T) {
	body := payload(t, "push/with-new-branch.payload.json") // a push to master, unchanged
	master := func(o *Options) {
		o.Routes = []Route{
			{Target: "production", Repo: "Codertocat/Hello-World", Branch: "master", DeployOn: executor.DeployOnPush},
			{Target: "mirror", Repo: "Codertocat/Hello-World", Branch: "master", DeployOn: executor.DeployOnPush},
		}
	}
	tests := []struct {
		name       string
		routes     int
		wantReplay string
	}{
		{name: "one target", routes: 1,
			wantReplay: `{"ignored":"replay: this body was delivered before as guid-1"}`},
		{name: "two targets", routes: 2,
			wantReplay: `{"jobs":[{"target":"production","sha":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","ignored":"replay: this body was delivered before as guid-1"},` +
				`{"target":"mirror","sha":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","ignored":"replay: this body was delivered before as guid-1"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { master(o); o.Routes = o.Routes[:tt.routes] })
			first := serve(t, f.h, delivery{event: "push", body: body, headers: map[string]string{hdrDelivery: "guid-1"}}.request())
			if first.Code != http.StatusAccepted {
				t.Fatalf("first delivery: %d %s, want 202", first.Code, first.Body)
			}
			replay := serve(t, f.h, delivery{event: "push", body: body, headers: map[string]string{hdrDelivery: "guid-2"}}.request())
			if got := strings.TrimSpace(replay.Body.String()); replay.Code != http.StatusOK || got != tt.wantReplay {
				t.Errorf("replay: %d %s, want 200 %s", replay.Code, got, tt.wantReplay)
			}
			calls := f.queue.calls()
			if len(calls) != tt.routes {
				t.Fatalf("queued %d jobs, want %d (the first delivery's)", len(calls), tt.routes)
			}
			for _, c := range calls {
				if c.Trigger.BodyHash != bodyHash(body) || c.Trigger.Delivery != "guid-1" {
					t.Errorf("queued %s with body hash %q from %s, want %s from guid-1", c.Target, c.Trigger.BodyHash, c.Trigger.Delivery, bodyHash(body))
				}
			}
		})
	}
}

// TestServer_Webhook_journalFault makes Enqueue fail as a journal that cannot
// write does: the delivery is answered 503 with a reason to redeliver, without
// the internal error (item 7; invariant 5). Before, it was a 500 that said to
// redeliver at once.
func TestServer_Webhook_journalFault(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantBody string
	}{
		{name: "disk full", err: fmt.Errorf("record job: %w", errors.New("sqlite: database or disk is full: /var/lib/deployhook/journal.db")),
			wantCode: http.StatusServiceUnavailable,
			wantBody: `{"error":"deployhook cannot record deliveries right now; redeliver later from the webhook's Recent Deliveries"}`},
		{name: "read-only", err: errors.New("attempt to write a readonly database"),
			wantCode: http.StatusServiceUnavailable,
			wantBody: `{"error":"deployhook cannot record deliveries right now; redeliver later from the webhook's Recent Deliveries"}`},
		{name: "shutting down", err: fmt.Errorf("enqueue: %w", executor.ErrClosed),
			wantCode: http.StatusServiceUnavailable,
			wantBody: `{"error":"deployhook is shutting down; redeliver from the webhook's Recent Deliveries once it is back"}`},
		{name: "unknown target", err: fmt.Errorf("enqueue: %w", executor.ErrUnknownTarget),
			wantCode: http.StatusInternalServerError,
			wantBody: `{"error":"target production is configured for routing but unknown to the queue"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.queue.err = tt.err
			rec := serve(t, f.h, delivery{event: "push", body: pushTo(t, "Codertocat/Hello-World", "main", shaA)}.request())
			if got := strings.TrimSpace(rec.Body.String()); rec.Code != tt.wantCode || got != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", rec.Code, got, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestServer_Readyz_journalFault: /readyz fails with the Checker's public reason
// while the journal cannot be written (item 7).
func TestServer_Readyz_journalFault(t *testing.T) {
	f := newFixture(t, nil)
	f.checker.err = errors.New("journal cannot be written: disk full")
	rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	want := `{"error":"not ready: journal cannot be written: disk full"}`
	if got := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusServiceUnavailable || got != want {
		t.Errorf("got %d %s, want 503 %s", rec.Code, got, want)
	}
	f.checker.err = nil
	if rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/readyz", nil)); rec.Code != http.StatusOK {
		t.Errorf("after the fault: %d, want 200", rec.Code)
	}
}

// TestServer_Job_stepErrors shows a job whose steps failed in every way the
// executor records, with the zero Options (ShowOutput off): each step shows a
// public summary, never the error text with its addresses (invariant 5). Before,
// the JSON and page showed nothing, or with ShowOutput everything; the summary
// replaces the raw text.
func TestServer_Job_stepErrors(t *testing.T) {
	j := testJob()
	j.Steps = []executor.StepRun{
		{Seq: 1, Name: "connect", ExitCode: -1, Error: "open tunnel to vm-1: dial tcp 10.1.2.3:22: connect: connection refused"},
		{Seq: 2, Name: "fetch", ExitCode: -1, Error: "ssh: session on deploy@10.1.2.3:22: timed out"},
		{Seq: 3, Name: "build", ExitCode: -1, Error: "wait: context canceled"},
		{Seq: 4, Name: "sync", ExitCode: -1, Error: "read tcp 10.9.8.7:5555->10.1.2.3:22: read: connection reset by peer"},
		{Seq: 5, Name: "migrate", ExitCode: 3, Output: "password=hunter2"},
	}
	f := newFixture(t, func(o *Options) { *o = Options{Secrets: o.Secrets, Routes: o.Routes} })
	f.journal.jobs = []executor.Job{j}
	for _, accept := range []string{"application/json", "text/html"} {
		req := httptest.NewRequest(http.MethodGet, "/jobs/j1", nil)
		req.Header.Set("Accept", accept)
		rec := serve(t, f.h, req)
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", accept, rec.Code, body)
		}
		for _, leak := range []string{"10.1.2.3", "10.9.8.7", "vm-1", "deploy@", "hunter2", "tunnel", "reset by peer"} {
			if strings.Contains(body, leak) {
				t.Errorf("%s page shows %q", accept, leak)
			}
		}
		want := []string{"could not connect to the target", "timed out", "interrupted", "connection lost"}
		if accept == "application/json" {
			want = []string{`"error":"could not connect to the target"`, `"error":"timed out"`, `"error":"interrupted"`,
				`"error":"connection lost"`, `"exit_code":3`}
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s page lacks %s", accept, w)
			}
		}
	}
}

func TestStepSummary(t *testing.T) {
	tests := []struct {
		name string
		st   executor.StepRun
		want string
	}{
		{name: "exit code only", st: executor.StepRun{Name: "build", ExitCode: 2}, want: ""},
		{name: "timeout", st: executor.StepRun{Name: "build", Error: "run on 10.0.0.5: " + executor.ErrTimeout.Error()}, want: "timed out"},
		{name: "deadline", st: executor.StepRun{Name: "build", Error: "ssh 10.0.0.5: context deadline exceeded"}, want: "timed out"},
		{name: "cancelled", st: executor.StepRun{Name: "build", Error: "context canceled"}, want: "interrupted"},
		{name: "lock", st: executor.StepRun{Name: "connect", Error: "flock /run/lock/x on host-1: " + executor.ErrLocked.Error()}, want: "the deploy lock is held by another deploy"},
		{name: "connect", st: executor.StepRun{Name: "connect", Error: "dial tcp 10.0.0.5:22: no route to host"}, want: "could not connect to the target"},
		{name: "transport", st: executor.StepRun{Name: "sync", Error: "ssh: unexpected packet from 10.0.0.5"}, want: "connection lost"},
		{name: "watch of a stopped deployhook", st: executor.StepRun{Name: "watch", ExitCode: -1, Error: executor.ErrWatchStopped.Error()},
			want: "interrupted: deployhook stopped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stepSummary(tt.st); got != tt.want {
				t.Errorf("stepSummary(%q) = %q, want %q", tt.st.Error, got, tt.want)
			}
		})
	}
}

// TestOptions_zeroHidesOutput: the zero Options hide step output (the server's
// own default; config's show_output is another matter).
func TestOptions_zeroHidesOutput(t *testing.T) {
	var o Options
	if o.ShowOutput {
		t.Fatal("the zero Options show output")
	}
	f := newFixture(t, func(o *Options) { *o = Options{Secrets: o.Secrets, Routes: o.Routes} })
	f.journal.jobs = []executor.Job{testJob()}
	rec := serve(t, f.h, httptest.NewRequest(http.MethodGet, "/jobs/j1?format=json", nil))
	if body := rec.Body.String(); strings.Contains(body, `"output"`) || strings.Contains(body, "boom") {
		t.Errorf("zero Options show output: %s", body)
	}
}

// TestServer_logRequests_once sends unauthenticated deliveries with huge header
// values: each request is logged in exactly one line, with every header value cut
// to 100 bytes (item 8). Before, they were logged twice and whole.
func TestServer_logRequests_once(t *testing.T) {
	long := strings.Repeat("d", 5000)
	ua := "GitHub-Hookshot/" + strings.Repeat("u", 5000)
	event := "push" + strings.Repeat("e", 5000)
	for _, secret := range [][]byte{testSecret, []byte("wrong")} {
		var logs syncBuffer
		f := newFixture(t, nil)
		f.srv.lg = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), nil))
		body := pushTo(t, "Codertocat/Hello-World", "main", shaA)
		rec := serve(t, f.h, delivery{event: "push", body: body, headers: map[string]string{
			hdrSignature256: sign(secret, body), hdrDelivery: long, "User-Agent": ua, hdrEvent: event,
		}}.request())
		out := logs.String()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 {
			t.Errorf("status %d: %d log lines, want 1:\n%s", rec.Code, len(lines), out)
		}
		for _, w := range []string{
			"delivery=" + long[:100] + "…", `user_agent=GitHub-Hookshot/` + ua[16:100] + "…",
			"event=" + event[:100] + "…", "status=",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("status %d: log lacks %.40s…:\n%s", rec.Code, w, out)
			}
		}
		if strings.Contains(out, long[:101]) || strings.Contains(out, ua[:101]) || strings.Contains(out, event[:101]) {
			t.Errorf("status %d: a header value is logged past 100 bytes", rec.Code)
		}
	}
}

// TestServer_Webhook_repoMatching: repository names match with ASCII case folding
// only, and a pinned repository id must be the payload's (item 8; invariant 1: no
// foreign event changes anything). Before, strings.EqualFold let "acme/\u212Ait"
// (KELVIN SIGN) deploy "acme/kit", and there was no pin.
func TestServer_Webhook_repoMatching(t *testing.T) {
	const realID = 186853002 // repository.id of the push payload
	routes := func(repo string, id int64) func(*Options) {
		return func(o *Options) {
			o.Routes = []Route{{Target: "production", Repo: repo, RepoID: id, Branch: "main", DeployOn: executor.DeployOnPush}}
		}
	}
	push := func(repo string, id any) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			e := map[string]any{"ref": "refs/heads/main", "after": shaA, "repository.full_name": repo}
			if id != "keep" {
				e["repository.id"] = id
			}
			return edited(t, "push/with-new-branch.payload.json", e)
		}
	}
	tests := []struct {
		name     string
		opts     func(*Options)
		body     func(t *testing.T) []byte
		wantCode int
		wantBody string
	}{
		{name: "ASCII case folds", opts: routes("Acme/Kit", 0), body: push("acme/KIT", "keep"),
			wantCode: http.StatusAccepted, wantBody: `{"job":"job-1","target":"production","sha":"` + shaA + `"}`},
		{name: "KELVIN SIGN is not k", opts: routes("acme/kit", 0), body: push("acme/\u212Ait", "keep"),
			wantCode: http.StatusOK, wantBody: "{\"ignored\":\"repository acme/\u212Ait is not configured\"}"},
		{name: "long s is not s", opts: routes("acme/site", 0), body: push("acme/\u017Fite", "keep"),
			wantCode: http.StatusOK, wantBody: "{\"ignored\":\"repository acme/\u017Fite is not configured\"}"},
		{name: "pinned id matches", opts: routes("Codertocat/Hello-World", realID), body: push("Codertocat/Hello-World", "keep"),
			wantCode: http.StatusAccepted, wantBody: `{"job":"job-1","target":"production","sha":"` + shaA + `"}`},
		{name: "pinned id differs", opts: routes("Codertocat/Hello-World", realID), body: push("Codertocat/Hello-World", 999),
			wantCode: http.StatusOK, wantBody: `{"ignored":"repository Codertocat/Hello-World has id 999; target production pins id 186853002"}`},
		{name: "pinned id absent", opts: routes("Codertocat/Hello-World", realID), body: push("Codertocat/Hello-World", nil),
			wantCode: http.StatusOK, wantBody: `{"ignored":"payload has no repository.id; target production pins repository id 186853002"}`},
		{name: "no pin, any id", opts: routes("Codertocat/Hello-World", 0), body: push("Codertocat/Hello-World", 999),
			wantCode: http.StatusAccepted, wantBody: `{"job":"job-1","target":"production","sha":"` + shaA + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.opts)
			rec := serve(t, f.h, delivery{event: "push", body: tt.body(t)}.request())
			if got := strings.TrimSpace(rec.Body.String()); rec.Code != tt.wantCode || got != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", rec.Code, got, tt.wantCode, tt.wantBody)
			}
			if n := len(f.queue.calls()); (n == 1) != (tt.wantCode == http.StatusAccepted) {
				t.Errorf("queued %d jobs", n)
			}
		})
	}
}

// TestServer_Webhook_repoPinOtherEvents pins the repository id of the
// workflow_run and workflow_dispatch targets: their real payloads' ids deploy, any
// other is ignored.
func TestServer_Webhook_repoPinOtherEvents(t *testing.T) {
	tests := []struct {
		name  string
		event string
		id    int64
		body  func(t *testing.T) []byte
		want  int
	}{
		{name: "workflow_run, its id", event: "workflow_run", id: 300029405, body: func(t *testing.T) []byte { return runOf(t, nil) }, want: http.StatusAccepted},
		{name: "workflow_run, another id", event: "workflow_run", id: 1, body: func(t *testing.T) []byte { return runOf(t, nil) }, want: http.StatusOK},
		{name: "workflow_dispatch, its id", event: "workflow_dispatch", id: 17273051, body: func(t *testing.T) []byte { return dispatch(t, map[string]any{"sha": shaA}) }, want: http.StatusAccepted},
		{name: "workflow_dispatch, another id", event: "workflow_dispatch", id: 1, body: func(t *testing.T) []byte { return dispatch(t, map[string]any{"sha": shaA}) }, want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.Routes[1].RepoID = tt.id })
			rec := serve(t, f.h, delivery{event: tt.event, body: tt.body(t)}.request())
			if rec.Code != tt.want {
				t.Errorf("got %d %s, want %d", rec.Code, rec.Body, tt.want)
			}
			if tt.want == http.StatusOK && !strings.Contains(rec.Body.String(), "target staging pins id") {
				t.Errorf("answer %s does not name the pin", rec.Body)
			}
		})
	}
}

func TestEqualFoldASCII(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"octo/Repo", "OCTO/repo", true},
		{"a", "a", true},
		{"", "", true},
		{"kit", "\u212Ait", false},
		{"k", "\u212A", false},
		{"a", "ab", false},
		{"[", "{", false}, // 0x5B and 0x7B differ by 0x20 but are not letters
		{"@", "`", false},
	}
	for _, tt := range tests {
		if got := equalFoldASCII(tt.a, tt.b); got != tt.want {
			t.Errorf("equalFoldASCII(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestTruncate cuts on a character boundary.
func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"aé", 2, "a…"}, // é is two bytes: not cut in half
		{"ééé", 4, "éé…"},
	}
	for _, tt := range tests {
		if got := truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
