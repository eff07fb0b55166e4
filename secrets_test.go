package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/internal/sshdtest"
)

// noEnv is an environment without a webhook secret or GitHub credentials.
func noEnv(string) string { return "" }

// reportOn turns github.report on in the configuration file at path, so
// validation would demand GitHub credentials of every command.
func reportOn(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "github:\n", "github:\n  report: true\n", 1)
	if s == string(b) {
		t.Fatal("no github: section to turn reporting on in")
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// deployhook status reads the journal: it needs neither the webhook secret
// nor GitHub credentials (issue 9). Before, it failed with "no webhook
// secret" and "github.report is on but there are no credentials". deploy
// still needs them, and check still reports them.
func TestRun_StatusNeedsNoSecrets(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	reportOn(t, cfg)
	data := filepath.Join(dir, "data")
	cli := func(getenv func(string) string, args ...string) (string, error) {
		var out bytes.Buffer
		args = append(args, "--config", cfg, "--data-dir", data)
		err := run(context.Background(), args, getenv, nil, &out, t.Output())
		return out.String(), err
	}
	if out, err := cli(testEnv(gh), "deploy", "--target", "production", "--sha", sha(1)); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}

	out, err := cli(noEnv, "status")
	if err != nil {
		t.Fatalf("status without secrets: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	short := sha(1)[:7]
	head := func(s string, n int) []string { return strings.Fields(s)[:min(n, len(strings.Fields(s)))] }
	tail := func(s string, n int) []string { f := strings.Fields(s); return f[max(len(f)-n, 0):] }
	if len(lines) != 2 || !slices.Equal(head(lines[0], 5), []string{"production", "acme/app", "main", "runs", short}) ||
		!slices.Equal(tail(lines[1], 6)[:5], []string{short, "success", "deployed", short, "by"}) {
		t.Errorf("status output:\n%s\nwant the target running %s and its one successful job", out, short)
	}

	_, err = cli(noEnv, "deploy", "--target", "production", "--sha", sha(2))
	if err == nil || !strings.Contains(err.Error(), "no webhook secret") || !strings.Contains(err.Error(), "github.report is on but there are no credentials") {
		t.Errorf("deploy without secrets: %v, want both refused", err)
	}
	out, err = cli(noEnv, "check")
	if err == nil || !strings.HasPrefix(out, "✗ configuration: ") || !strings.Contains(out, "no webhook secret") ||
		!strings.Contains(out, "github.report is on but there are no credentials") {
		t.Errorf("check without secrets: %v\n%s\nwant both reported", err, out)
	}
}

// deployhook ssh opens a shell on the target: it needs neither the webhook
// secret nor GitHub credentials (issue 9). Before, it failed with "no webhook
// secret" and "github.report is on but there are no credentials".
func TestRun_SSHNeedsNoSecrets(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "deployhook.yaml")
	yaml := fmt.Sprintf(`github:
  report: true
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    transport: ssh
    ssh: {address: %q, user: %q, private_key_file: %q, known_hosts_file: %q}
    steps:
      - {name: x, run: "true", timeout: 1m}
`, srv.Addr, srv.User, srv.ClientKeyFile(t), srv.KnownHosts)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	args := []string{"ssh", "--config", cfg, "--target", "production", "--", "sh", "-c", "echo over ssh; exit 3"}
	err := run(t.Context(), args, noEnv, strings.NewReader(""), &out, t.Output())
	if out.String() != "over ssh\n" {
		t.Errorf("output %q, want %q", out.String(), "over ssh\n")
	}
	if err == nil || err.Error() != "remote exit 3" {
		t.Errorf("err = %v, want the remote exit status", err)
	}
}
