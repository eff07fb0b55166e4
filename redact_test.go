package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor/store"
)

func TestRedactions(t *testing.T) {
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\n" +
		"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n" +
		"short\n" +
		"-----END OPENSSH PRIVATE KEY-----\n"
	cfg := &config.Config{
		WebhookSecrets: [][]byte{[]byte("hook-secret"), []byte("old-hook-secret")},
		GitHubToken:    "ghs_token",
		SSHKey:         []byte(key),
		SSHPassphrase:  []byte("pass phrase"),
		DatabaseURL:    "postgres://deployhook:db-password@db.internal/deployhook",
		UI:             config.UI{OAuthClientSecret: "oauth-secret"},
		Notify: config.Notify{SlackURL: "https://hooks.slack.com/services/T/B/x",
			GoogleChatURL: "https://chat.googleapis.com/v1/spaces/S/messages?key=k&token=t"},
	}
	want := []string{"hook-secret", "old-hook-secret", "ghs_token", "pass phrase",
		"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW", "oauth-secret",
		"https://hooks.slack.com/services/T/B/x", "https://chat.googleapis.com/v1/spaces/S/messages?key=k&token=t",
		"db-password"}
	if got := redactions(cfg); !slices.Equal(got, want) {
		t.Errorf("redactions = %q, want %q", got, want)
	}
	if got := redactions(&config.Config{DatabaseURL: "postgres://db/x"}); len(got) != 0 {
		t.Errorf("no secrets: %q", got)
	}
}

// A step that prints deployhook's secrets leaves them neither in the
// terminal's stream nor in the journal (invariant 5).
func TestRun_StepOutputRedacted(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, `      - name: leak
        run: echo "token=`+testToken+` secret=`+testSecret+`"
        timeout: 30s
`)
	data := filepath.Join(dir, "data")
	var out bytes.Buffer
	err := run(context.Background(), []string{"deploy", "--config", cfg, "--data-dir", data, "--target", "production",
		"--sha", sha(1)}, testEnv(gh), nil, &out, t.Output())
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "[leak] token=[redacted] secret=[redacted]\n") {
		t.Errorf("the step's output on stdout is not redacted:\n%s", out.String())
	}
	st, err := store.Open(context.Background(), slog.New(slog.NewTextHandler(t.Output(), nil)), filepath.Join(data, "deployhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	jobs, err := st.Jobs(context.Background(), "production", 1)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %v %v", jobs, err)
	}
	j, err := st.Job(context.Background(), jobs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range j.Steps {
		if s.Name == "leak" {
			found = s.Output == "token=[redacted] secret=[redacted]\n"
		}
	}
	if !found {
		t.Errorf("the journal's leak step is not redacted: %+v", j.Steps)
	}
	for _, secret := range []string{testToken, testSecret} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("%q reached stdout", secret)
		}
	}
}
