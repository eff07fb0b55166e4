package notify_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/notify"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/store"
)

// These tests run the real executor on a SQLite journal and the local
// transport (a real shell), with Slack and Google Chat stand-ins on
// 127.0.0.1 and a GitHub that is down or a fake that records. They guard
// safety invariants 4 (a channel or GitHub being down holds up neither the
// deploy nor the other) and 5 (the webhook URLs, which are secrets, appear in
// no log line).

const (
	e2eSHA     = "a000001000000000000000000000000000000001"
	slackPath  = "/services/T0001/B0001/s3cr3tSlackPathPart"
	chatPath   = "/v1/spaces/AAAA1234/messages"
	chatSecret = "s3cr3tChatToken"
	chatQuery  = "key=AIzaK3yPart&token=" + chatSecret
)

// service is a stand-in for a chat service's incoming webhook: it checks
// method, path, query and content type, answers each request with the next
// of codes (the last for ever after), and keeps the JSON bodies it took.
type service struct {
	t          *testing.T
	srv        *httptest.Server
	path, qry  string
	ctype      string
	mu         sync.Mutex
	codes      []int
	requests   int
	took       []any
	complaints []string
}

func newService(t *testing.T, path, query, ctype string, codes ...int) *service {
	s := &service{t: t, path: path, qry: query, ctype: ctype, codes: codes}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *service) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	b, _ := io.ReadAll(r.Body)
	var body any
	switch {
	case r.Method != http.MethodPost:
		s.complaints = append(s.complaints, "method "+r.Method)
	case r.URL.Path != s.path || r.URL.RawQuery != s.qry:
		s.complaints = append(s.complaints, "URL "+r.URL.String())
	case r.Header.Get("Content-Type") != s.ctype:
		s.complaints = append(s.complaints, "Content-Type "+r.Header.Get("Content-Type"))
	case json.Unmarshal(b, &body) != nil:
		s.complaints = append(s.complaints, "body "+string(b))
	default:
		code := s.codes[min(s.requests, len(s.codes))-1]
		if code == http.StatusOK {
			s.took = append(s.took, body)
		}
		w.WriteHeader(code)
		return
	}
	w.WriteHeader(http.StatusBadRequest)
}

func (s *service) url() string {
	u := s.srv.URL + s.path
	if s.qry != "" {
		u += "?" + s.qry
	}
	return u
}

// state returns the bodies taken and the number of requests, and fails t
// for every malformed request.
func (s *service) state() ([]any, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.complaints {
		s.t.Errorf("malformed request: %s", c)
	}
	s.complaints = nil
	return slices.Clone(s.took), s.requests
}

// github is the executor's Reporter: down (every report fails) or up
// (records them).
type github struct {
	mu   sync.Mutex
	down bool
	got  []executor.Report
	ties int
}

func (g *github) Report(_ context.Context, r executor.Report) (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ties++
	if g.down {
		return 0, errors.New("GitHub answered 502 Bad Gateway")
	}
	g.got = append(g.got, r)
	return 0, nil
}

func (g *github) reports() []executor.Report {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got)
}

// logs collects log lines (and copies them to the test's output).
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out.Write(p)
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// world is one deployhook process: a journal, an executor and its senders.
type world struct {
	t    *testing.T
	st   *store.Store
	ex   *executor.Executor
	stop func() []string // stops it, and returns what is left owed (owed)
}

// start opens the journal at path and runs an executor on it whose target
// "production" runs failing and announces everything to slack and chat.
func start(t *testing.T, path string, lg *slog.Logger, rep executor.Reporter, slackURL, chatURL string) *world {
	t.Helper()
	st, err := store.Open(t.Context(), lg, path)
	if err != nil {
		t.Fatal(err)
	}
	slack, err := notify.NewSlack(notify.Options{URL: slackURL})
	if err != nil {
		t.Fatal(err)
	}
	chat, err := notify.NewGoogleChat(notify.Options{URL: chatURL})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := executor.New(lg, executor.Options{
		Targets: []executor.Target{{
			Name: "production", Repo: "acme/app", Branch: "main", Environment: "production",
			Steps:  []executor.Step{{Name: "build", Run: "echo building; exit 3", Timeout: time.Minute}},
			Notify: executor.NoticeRule{On: executor.Events(), Channels: []string{"google_chat", "slack"}},
		}},
		PublicURL: "https://deploy.example.com",
		RetryMin:  10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Notifiers: map[string]executor.Notifier{"slack": slack, "google_chat": chat},
	}, st, remote.NewLocal(lg, remote.LocalOptions{}), rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	w := &world{t: t, st: st, ex: ex}
	w.stop = func() []string {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		left := w.owed()
		if err := st.Close(); err != nil {
			t.Errorf("close journal: %v", err)
		}
		return left
	}
	return w
}

// deploy pushes e2eSHA and waits until its job is final.
func (w *world) deploy() executor.Job {
	w.t.Helper()
	en, err := w.ex.Enqueue(w.t.Context(), "production", executor.Trigger{
		Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: e2eSHA,
		Delivery: "d-1", Actor: "octocat", Reason: "push by octocat"})
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(w.t.Context(), 2*time.Minute)
	defer cancel()
	j, err := w.ex.Wait(ctx, en.Job.ID)
	if err != nil {
		w.t.Fatalf("wait for the deploy: %v", err)
	}
	return j
}

// owed lists the channels ("" GitHub) of the reports owed.
func (w *world) owed() []string {
	w.t.Helper()
	owed, err := w.st.Owed(w.t.Context(), 0)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, o := range owed {
		out = append(out, o.Report.Notify)
	}
	return out
}

// eventually polls cond until it holds, for at most a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantSlack and wantChat are the messages of the failed deploy of job.
func wantSlack(t *testing.T, job string) any {
	return decode(t, `{"text": "Deploy failed: production (acme/app a000001)",
		"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text":
		"*Deploy failed*: production\n<https://github.com/acme/app/commit/`+e2eSHA+`|a000001> of acme/app by octocat\nbuild failed (exit 3); nothing was changed\n<https://deploy.example.com/jobs/`+job+`|Job page>"}}]}`)
}

func wantChat(t *testing.T, job string) any {
	return decode(t, `{"text": "Deploy failed: production (acme/app a000001)",
		"cardsV2": [{"cardId": "deployhook", "card": {"sections": [{"widgets": [{"textParagraph": {"text":
		"<b>Deploy failed</b>: production<br><a href=\"https://github.com/acme/app/commit/`+e2eSHA+`\">a000001</a> of acme/app by octocat<br>build failed (exit 3); nothing was changed<br><a href=\"https://deploy.example.com/jobs/`+job+`\">Job page</a>"}}]}]}}]}`)
}

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad want JSON: %v", err)
	}
	return v
}

// secretsIn names the parts of the webhook URLs found in s.
func secretsIn(s string, urls ...string) []string {
	var found []string
	for _, p := range append([]string{"s3cr3tSlackPathPart", chatSecret, "AIzaK3yPart", "AAAA1234", "T0001"}, urls...) {
		if strings.Contains(s, p) {
			found = append(found, p)
		}
	}
	return found
}

// A failed deploy while GitHub is down, and Slack answers its first attempt
// with 500: the deploy ends at once, Slack gets exactly one message (on the
// retry) and Google Chat exactly one, while GitHub's reports stay owed. No
// log line carries a webhook URL.
func TestNotices_FailedDeployGitHubDown(t *testing.T) {
	slack := newService(t, slackPath, "", "application/json", http.StatusInternalServerError, http.StatusOK)
	chat := newService(t, chatPath, chatQuery, "application/json; charset=UTF-8", http.StatusOK)
	lines := &logs{out: t.Output()}
	lg := slog.New(slog.NewJSONHandler(lines, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gh := &github{down: true}
	w := start(t, filepath.Join(t.TempDir(), "deployhook.db"), lg, gh, slack.url(), chat.url())

	j := w.deploy()
	if j.State != executor.StateFailure {
		t.Fatalf("job %s %q, want failure", j.State, j.Description)
	}
	eventually(t, "the notices to be settled", func() bool {
		return !slices.ContainsFunc(w.owed(), func(c string) bool { return c != "" })
	})
	w.stop()

	slackGot, slackTries := slack.state()
	chatGot, chatTries := chat.state()
	if want := wantSlack(t, j.ID); len(slackGot) != 1 || !reflect.DeepEqual(slackGot[0], want) || slackTries != 2 {
		t.Errorf("Slack took %v in %d requests,\nwant %v in 2 (a 500, then the retry)", slackGot, slackTries, want)
	}
	if want := wantChat(t, j.ID); len(chatGot) != 1 || !reflect.DeepEqual(chatGot[0], want) || chatTries != 1 {
		t.Errorf("Google Chat took %v in %d requests,\nwant %v in 1", chatGot, chatTries, want)
	}
	if len(gh.reports()) != 0 || gh.ties == 0 {
		t.Errorf("GitHub took %d reports in %d tries while down, want none but tries", len(gh.reports()), gh.ties)
	}
	if found := secretsIn(lines.String(), slack.url(), chat.url()); len(found) > 0 {
		t.Errorf("the log shows %q of the webhook URLs", found)
	}
	for _, msg := range []string{`"msg":"notices delayed"`, `the Slack webhook answered 500 Internal Server Error`, `"msg":"notice sent"`} {
		if !strings.Contains(lines.String(), msg) {
			t.Errorf("the log has no %s", msg)
		}
	}
}

// A notice owed when deployhook stops (Google Chat was down) is sent by the
// next start, once; the one already sent (Slack) is not sent again. An
// outbox row written before notices existed (no "notify" field) goes to
// GitHub. A webhook refusing with 404 is tried once and its notice settled.
func TestNotices_Restart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployhook.db")
	lines := &logs{out: t.Output()}
	lg := slog.New(slog.NewTextHandler(lines, &slog.HandlerOptions{Level: slog.LevelDebug}))
	slack := newService(t, slackPath, "", "application/json", http.StatusOK)
	chatDown := newService(t, chatPath, chatQuery, "application/json; charset=UTF-8", http.StatusServiceUnavailable)
	gh := &github{}
	w := start(t, path, lg, gh, slack.url(), chatDown.url())
	j := w.deploy()
	eventually(t, "Slack's notice and a few tries at Chat", func() bool {
		got, _ := slack.state()
		_, tries := chatDown.state()
		return len(got) == 1 && tries >= 3
	})
	if got := w.stop(); !slices.Equal(got, []string{"google_chat"}) {
		t.Fatalf("owed after the stop: %q, want the Chat notice only", got)
	}

	// A row as an older deployhook wrote it.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	old := `{"job":"` + j.ID + `","target":"production","environment":"production","repo":"acme/app","sha":"` + e2eSHA +
		`","state":"failure","description":"from before notices","url":"","deployment":0}`
	if _, err := db.Exec(`INSERT INTO outbox (job, report, created) VALUES (?, ?, ?)`, j.ID, old, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	chat := newService(t, chatPath, chatQuery, "application/json; charset=UTF-8", http.StatusOK)
	gone := newService(t, slackPath, "", "application/json", http.StatusNotFound)
	w = start(t, path, lg, gh, gone.url(), chat.url())
	eventually(t, "the outbox to empty", func() bool { return len(w.owed()) == 0 })
	w.stop()

	chatGot, chatTries := chat.state()
	if want := wantChat(t, j.ID); len(chatGot) != 1 || !reflect.DeepEqual(chatGot[0], want) || chatTries != 1 {
		t.Errorf("after the restart Google Chat took %v in %d requests, want %v once", chatGot, chatTries, want)
	}
	if got, tries := slack.state(); len(got) != 1 || tries != 1 {
		t.Errorf("Slack took %d in %d requests, want the one notice, once", len(got), tries)
	}
	if _, tries := gone.state(); tries != 0 {
		t.Errorf("the second Slack got %d requests, want none (nothing was owed to it)", tries)
	}
	if got := gh.reports(); len(got) == 0 || got[len(got)-1].Description != "from before notices" || got[len(got)-1].Notify != "" {
		t.Errorf("GitHub's last report is %+v, want the old row's", got[len(got)-1])
	}
	if found := secretsIn(lines.String(), slack.url(), chat.url()); len(found) > 0 {
		t.Errorf("the log shows %q of the webhook URLs", found)
	}
}

// A Slack webhook that was deleted answers 404: the notice is tried once,
// settled, and the refusal logged with the status and without the URL.
func TestNotices_Refused(t *testing.T) {
	slack := newService(t, slackPath, "", "application/json", http.StatusNotFound)
	chat := newService(t, chatPath, chatQuery, "application/json; charset=UTF-8", http.StatusOK)
	lines := &logs{out: t.Output()}
	lg := slog.New(slog.NewJSONHandler(lines, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := start(t, filepath.Join(t.TempDir(), "deployhook.db"), lg, &github{}, slack.url(), chat.url())
	w.deploy()
	eventually(t, "the outbox to empty", func() bool { return len(w.owed()) == 0 })
	w.stop()
	if _, tries := slack.state(); tries != 1 {
		t.Errorf("Slack got %d requests, want 1: a 404 is not retried", tries)
	}
	if got, _ := chat.state(); len(got) != 1 {
		t.Errorf("Google Chat took %d notices, want 1", len(got))
	}
	if !strings.Contains(lines.String(), `"msg":"the channel refused a notice; dropped it"`) ||
		!strings.Contains(lines.String(), "the Slack webhook answered 404 Not Found") {
		t.Errorf("the refusal is not logged with its status:\n%s", lines.String())
	}
	if found := secretsIn(lines.String(), slack.url(), chat.url()); len(found) > 0 {
		t.Errorf("the log shows %q of the webhook URLs", found)
	}
}
