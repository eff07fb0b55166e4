package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// webhookStandIn is a Slack or Google Chat incoming webhook on 127.0.0.1: it
// takes POSTs of JSON to path and keeps the text of each message.
type webhookStandIn struct {
	t    *testing.T
	srv  *httptest.Server
	path string
	mu   sync.Mutex
	got  []string // each message's text: Slack's section, Chat's card paragraph
}

// message is what both services' JSON carries of a notice.
type message struct {
	Blocks []struct {
		Text struct{ Text string } `json:"text"`
	} `json:"blocks"`
	CardsV2 []struct {
		Card struct {
			Sections []struct {
				Widgets []struct {
					TextParagraph struct{ Text string } `json:"textParagraph"`
				} `json:"widgets"`
			} `json:"sections"`
		} `json:"card"`
	} `json:"cardsV2"`
}

func newWebhookStandIn(t *testing.T, path string) *webhookStandIn {
	w := &webhookStandIn{t: t, path: path}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m message
		if r.Method != http.MethodPost || r.URL.Path != path || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") ||
			json.Unmarshal(b, &m) != nil || len(m.Blocks)+len(m.CardsV2) != 1 {
			t.Errorf("webhook got %s %s %q %s", r.Method, r.URL.Path, r.Header.Get("Content-Type"), b)
			rw.WriteHeader(http.StatusBadRequest)
			return
		}
		text := ""
		if len(m.Blocks) == 1 {
			text = m.Blocks[0].Text.Text
		} else if c := m.CardsV2[0].Card; len(c.Sections) == 1 && len(c.Sections[0].Widgets) == 1 {
			text = c.Sections[0].Widgets[0].TextParagraph.Text
		}
		w.mu.Lock()
		w.got = append(w.got, text)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookStandIn) messages() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

// A failed deploy from the command line is announced on Slack and Google
// Chat (their URLs from the environment, one through _FILE), and the next
// success as a recovery; no log line shows a URL.
func TestRun_DeployNotifies(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	slack := newWebhookStandIn(t, "/services/T0001/B0001/s3cr3tSlackPathPart")
	chat := newWebhookStandIn(t, "/v1/spaces/AAAA1234/messages")
	chatFile := filepath.Join(dir, "chat-url")
	if err := os.WriteFile(chatFile, []byte(chat.srv.URL+chat.path+"?key=AIzaK3y&token=s3cr3tChatToken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := testEnv(gh)
	getenv := func(k string) string {
		switch k {
		case "DEPLOYHOOK_SLACK_WEBHOOK_URL":
			return slack.srv.URL + slack.path
		case "DEPLOYHOOK_GOOGLE_CHAT_WEBHOOK_URL_FILE":
			return chatFile
		}
		return base(k)
	}
	var logs bytes.Buffer
	cli := func(args ...string) error {
		args = append(args, "--config", cfg, "--data-dir", data, "--target", "production")
		return run(context.Background(), args, getenv, nil, io.Discard, io.MultiWriter(&logs, t.Output()))
	}
	os.WriteFile(filepath.Join(dir, "fail"), []byte(sha(1)), 0o600)
	if err := cli("deploy", "--sha", sha(1)); err == nil {
		t.Fatal("the failing deploy succeeded")
	}
	if err := cli("deploy", "--sha", sha(2)); err != nil {
		t.Fatalf("deploy: %v", err)
	}

	commit := func(n int) string { return gh.srv.URL + "/acme/app/commit/" + sha(n) + "|" + sha(n)[:7] + ">" }
	if got := slack.messages(); len(got) != 2 ||
		!strings.HasPrefix(got[0], "*Deploy failed*: production\n<"+commit(1)+" of acme/app by ") ||
		!strings.Contains(got[0], ": verify failed (exit 3); no previous commit to roll back to\n<https://deploy.example.com/jobs/") ||
		!strings.HasPrefix(got[1], "*Deploy recovered*: production\n<"+commit(2)) {
		t.Errorf("Slack got %d messages:\n%s\nwant the failure of %s, then the recovery", len(got), strings.Join(got, "\n"), sha(1)[:7])
	}
	if got := chat.messages(); len(got) != 2 || !strings.HasPrefix(got[0], "<b>Deploy failed</b>: production<br>") ||
		!strings.HasPrefix(got[1], "<b>Deploy recovered</b>: production<br>") {
		t.Errorf("Google Chat got %d messages:\n%s\nwant the failure, then the recovery", len(got), strings.Join(got, "\n"))
	}
	for _, secret := range []string{"s3cr3tSlackPathPart", "s3cr3tChatToken", "AIzaK3y", "AAAA1234", "T0001"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows %q of a webhook URL", secret)
		}
	}
}
