package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/config"

	"github.com/deployhook/deployhook/internal/sshdtest"
)

// TestRun_ExitCodes runs the whole program for each command line and checks
// the exit code main would use, stdout, and the message main would print.
// Before issue 12 every failure exited 1, --version was an unknown flag,
// status without --config read the embedded demo, and ssh -- COMMAND exited 1
// whatever the remote command returned.
func TestRun_ExitCodes(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	if err := os.WriteFile(filepath.Join(dir, "fail"), []byte(sha(2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := sshdtest.Start(t, sshdtest.Options{})
	// closed is a port nothing listens on: the VM that does not answer.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	sshTarget := func(name, addr string) string {
		p := filepath.Join(dir, name+".yaml")
		yaml := fmt.Sprintf(`log: {format: text}
github: {report: false}
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    transport: ssh
    lock: %q
    ssh: {address: %q, user: %q, private_key_file: %q, host_keys: [%q], timeout: 20s}
    steps:
      - {name: x, run: "true", timeout: 1m}
`, filepath.Join(dir, name+".lock"), addr, srv.User, srv.ClientKeyFile(t), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey.PublicKey()))))
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	up, down := sshTarget("up", srv.Addr), sshTarget("down", closed)
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("targets:\n  - name: production\n    repo: acme/app\n    brnach: main\n    transport: local\n    steps: [{name: x, run: 'true', timeout: soon}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	full := testEnv(gh)
	withConfig := func(path string) func(string) string {
		return func(k string) string {
			if k == "DEPLOYHOOK_CONFIG" {
				return path
			}
			return full(k)
		}
	}
	secretOnly := func(k string) string {
		if k == "DEPLOYHOOK_WEBHOOK_SECRET" {
			return testSecret
		}
		return ""
	}
	tests := []struct {
		name    string
		args    []string
		getenv  func(string) string
		want    int    // exit code
		wantOut string // stdout, exactly ("" none); prefix when it ends in "…"
		wantMsg string // what main prints on stderr after "deployhook: " ("" nothing)
	}{
		{name: "--version", args: []string{"--version"}, getenv: full, want: 0, wantOut: "deployhook dev\n"},
		{name: "version", args: []string{"version"}, getenv: full, want: 0, wantOut: "deployhook dev\n"},
		{name: "unknown command", args: []string{"deploi"}, getenv: full, want: 2,
			wantMsg: `unknown command "deploi" for "deployhook"` + "\n\nDid you mean this?\n\tdeploy\n"},
		{name: "unknown flag", args: []string{"status", "--cofnig", cfg}, getenv: full, want: 2,
			wantMsg: "unknown flag: --cofnig"},
		{name: "missing --target", args: []string{"deploy", "--config", cfg}, getenv: full, want: 2,
			wantMsg: `required flag(s) "target" not set`},
		{name: "extra argument", args: []string{"status", "now"}, getenv: full, want: 2,
			wantMsg: `unknown command "now" for "deployhook status"`},
		{name: "status without a configuration", args: []string{"status"}, getenv: full, want: 2,
			wantMsg: errNoConfig.Error()},
		{name: "check without a configuration", args: []string{"check"}, getenv: full, want: 2,
			wantMsg: errNoConfig.Error()},
		{name: "deploy without a configuration", args: []string{"deploy", "--target", "production", "--sha", sha(1)}, getenv: full, want: 2,
			wantMsg: errNoConfig.Error()},
		{name: "status with DEPLOYHOOK_CONFIG", args: []string{"status"}, getenv: withConfig(cfg), want: 0,
			wantOut: "production  acme/app main  runs unknown\n"},
		{name: "--config wins over DEPLOYHOOK_CONFIG", args: []string{"status", "--config", cfg}, getenv: withConfig(filepath.Join(dir, "nope.yaml")), want: 0,
			wantOut: "production  acme/app main  runs unknown\n"},
		{name: "unknown target", args: []string{"deploy", "--config", cfg, "--target", "staging", "--sha", sha(1)}, getenv: full, want: 2,
			wantMsg: `no target "staging" in the configuration (targets: production)`},
		{name: "configuration error", args: []string{"deploy", "--config", cfg, "--target", "production", "--sha", sha(1)}, getenv: func(string) string { return "" }, want: 2,
			wantMsg: cfg + ": no webhook secret: set DEPLOYHOOK_WEBHOOK_SECRET (or DEPLOYHOOK_WEBHOOK_SECRET_FILE) to the secret of the GitHub webhook; deployhook never accepts unsigned deliveries"},
		{name: "configuration typo", args: []string{"status", "--config", typo}, getenv: full, want: 2,
			wantMsg: typo + ": line 4: unknown key \"brnach\" in targets[0] (production); did you mean \"branch\"?\n" +
				"line 6: targets[0] (production).steps[0] (x).timeout: \"soon\" is not a duration (write 90s, 10m, 1h or 90d)"},
		{name: "check: configuration error", args: []string{"check", "--config", cfg}, getenv: func(string) string { return "" }, want: 2,
			wantOut: "✗ configuration: …"},
		{name: "--force without --sha", args: []string{"deploy", "--config", cfg, "--target", "production", "--force"}, getenv: full, want: 2,
			wantMsg: "--force needs --sha: name the commit to deploy"},
		{name: "deploy", args: []string{"deploy", "--config", cfg, "--target", "production", "--sha", sha(1)}, getenv: full, want: 0,
			wantOut: "job …"},
		{name: "deploy fails", args: []string{"deploy", "--config", cfg, "--target", "production", "--sha", sha(2)}, getenv: full, want: 1,
			wantOut: "job …"},
		{name: "deploy: VM unreachable", args: []string{"deploy", "--config", down, "--target", "production", "--sha", sha(3)}, getenv: secretOnly, want: 3,
			wantOut: "job …"},
		{name: "ssh: local target", args: []string{"ssh", "--config", cfg, "--target", "production"}, getenv: full, want: 2,
			wantMsg: "target production uses transport local: there is nothing to ssh to"},
		{name: "ssh: VM unreachable", args: []string{"ssh", "--config", down, "--target", "production", "--", "true"}, getenv: secretOnly, want: 3,
			wantMsg: "…"},
		{name: "ssh -- command exits 0", args: []string{"ssh", "--config", up, "--target", "production", "--", "sh", "-c", "echo hi"}, getenv: secretOnly, want: 0,
			wantOut: "hi\n"},
		{name: "ssh -- command exits 7", args: []string{"ssh", "--config", up, "--target", "production", "--", "sh", "-c", "echo hi; exit 7"}, getenv: secretOnly, want: 7,
			wantOut: "hi\n"},
		{name: "ssh -- command exits 1", args: []string{"ssh", "--config", up, "--target", "production", "--", "false"}, getenv: secretOnly, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args[:len(tc.args):len(tc.args)], "--data-dir", filepath.Join(dir, "data"))
			if i := indexOf(tc.args, "--"); i >= 0 {
				args = append(append(append([]string{}, tc.args[:i]...), "--data-dir", filepath.Join(dir, "data")), tc.args[i:]...)
			}
			if len(tc.args) == 1 && (tc.args[0] == "--version" || tc.args[0] == "version" || tc.args[0] == "deploi") {
				args = tc.args
			}
			var out bytes.Buffer
			err := run(t.Context(), args, tc.getenv, strings.NewReader(""), &out, t.Output())
			if got := exitCode(err); got != tc.want {
				t.Errorf("exit code %d (%v), want %d", got, err, tc.want)
			}
			if !matches(out.String(), tc.wantOut) {
				t.Errorf("stdout %q, want %q", out.String(), tc.wantOut)
			}
			if got := printed(err); !matches(got, tc.wantMsg) {
				t.Errorf("main prints %q, want %q", got, tc.wantMsg)
			}
		})
	}
}

// printed is what main prints on stderr for run's error, without "deployhook: ".
func printed(err error) string {
	if ex, ok := err.(exitError); ok && ex.reported {
		return ""
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// matches: got is want, or want ends in "…" and got starts with the rest.
func matches(got, want string) bool {
	if p, ok := strings.CutSuffix(want, "…"); ok {
		return strings.HasPrefix(got, p) && got != ""
	}
	return got == want
}

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// TestRun_ServeDemo: serve without --config or DEPLOYHOOK_CONFIG says on
// stderr, before anything else, that it serves the embedded demo; with
// either it does not. Before issue 12 only a log line (JSON, among others)
// said so, and only once the demo had loaded.
func TestRun_ServeDemo(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		banner bool // stderr begins with demoBanner; else it never names the demo
	}{
		{"no configuration", []string{"serve"}, func(string) string { return "" }, true},
		{"--config", []string{"serve", "--config", cfg}, func(string) string { return "" }, false},
		{"DEPLOYHOOK_CONFIG", []string{"serve"}, func(k string) string {
			if k == "DEPLOYHOOK_CONFIG" {
				return cfg
			}
			return ""
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			// Without a webhook secret, serve stops at the configuration.
			err := run(t.Context(), tc.args, tc.getenv, nil, &bytes.Buffer{}, &stderr)
			if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "no webhook secret") {
				t.Errorf("error %v (exit %d), want the missing webhook secret (exit 2)", err, exitCode(err))
			}
			if got := stderr.String(); tc.banner && !strings.HasPrefix(got, demoBanner) {
				t.Errorf("stderr %q, want it to begin with the demo banner", got)
			} else if !tc.banner && strings.Contains(got, "DEMO") {
				t.Errorf("stderr %q names the demo", got)
			}
		})
	}
}

// TestReportingCheck: check's line about GitHub reporting is a tick only when
// statuses reach GitHub, and otherwise a warning that says what to set.
// Before issue 12 "GitHub reporting is off" had a green tick.
func TestReportingCheck(t *testing.T) {
	on, off := true, false
	tests := []struct {
		name     string
		cfg      config.Config
		wantMark string
		wantLine string
	}{
		{"token", config.Config{GitHubToken: "t", GitHub: config.GitHub{Report: &on}}, markOK,
			"GitHub reporting: with DEPLOYHOOK_GITHUB_TOKEN"},
		{"app", config.Config{GitHub: config.GitHub{Report: &on, AppID: 7, InstallationID: 9}}, markOK,
			"GitHub reporting: as GitHub App 7, installation 9"},
		{"no credentials", config.Config{GitHub: config.GitHub{Report: &off}}, markWarning,
			"GitHub reporting is off: commit statuses and Deployments are only logged, nothing reaches GitHub; set DEPLOYHOOK_GITHUB_TOKEN (or DEPLOYHOOK_GITHUB_TOKEN_FILE), or github.app_id, github.installation_id and github.private_key_file, to report"},
		{"turned off", config.Config{GitHubToken: "t", GitHub: config.GitHub{Report: &off}}, markWarning,
			"GitHub reporting is off (github.report: false): commit statuses and Deployments are only logged, nothing reaches GitHub; remove github.report: false to report"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mark, line := reportingCheck(&tc.cfg)
			if mark != tc.wantMark || line != tc.wantLine {
				t.Errorf("reportingCheck = %s %q, want %s %q", mark, line, tc.wantMark, tc.wantLine)
			}
		})
	}
}

// TestRun_CheckReporting runs check without GitHub credentials: the
// reporting line is a warning, not a tick, and check still passes.
func TestRun_CheckReporting(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	secretOnly := func(k string) string {
		if k == "DEPLOYHOOK_WEBHOOK_SECRET" {
			return testSecret
		}
		return ""
	}
	var out bytes.Buffer
	err := run(t.Context(), []string{"check", "--config", cfg, "--data-dir", filepath.Join(dir, "data")}, secretOnly, nil, &out, t.Output())
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "! GitHub reporting is off: ") || !strings.Contains(lines[1], "set DEPLOYHOOK_GITHUB_TOKEN") {
		t.Errorf("check output:\n%s\nwant its second line to warn that reporting is off", out.String())
	}
	if strings.Contains(out.String(), "✓ GitHub") || strings.Contains(out.String(), "✓ production: GitHub") {
		t.Errorf("check ticks GitHub without credentials:\n%s", out.String())
	}
}

// TestRun_StatusJSON: status -o json writes the documented fields (statusLong)
// for a target with a deploy and for a target's empty history. Before issue 12
// status had only its table.
func TestRun_StatusJSON(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(t.Context(), append(args, "--config", cfg, "--data-dir", data), testEnv(gh), nil, &out, t.Output())
		return out.String(), err
	}
	out, err := cli("status", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "targets": [
    {
      "name": "production",
      "repo": "acme/app",
      "branch": "main",
      "current": null,
      "jobs": []
    }
  ]
}
`
	if out != want {
		t.Errorf("status -o json before any deploy:\n%s\nwant\n%s", out, want)
	}
	if out, err := cli("deploy", "--target", "production", "--sha", sha(1)); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	out, err = cli("status", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Targets []map[string]json.RawMessage `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Targets) != 1 {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	var current map[string]any
	var jobs []map[string]any
	if err := json.Unmarshal(doc.Targets[0]["current"], &current); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(doc.Targets[0]["jobs"], &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %v %s", err, doc.Targets[0]["jobs"])
	}
	j := jobs[0]
	if current["sha"] != sha(1) || current["job"] != j["id"] || current["finished"] == nil || len(current) != 3 {
		t.Errorf("current = %v, want sha, job and finished of the deploy", current)
	}
	if j["kind"] != "manual" || j["sha"] != sha(1) || j["state"] != "success" || j["description"] != fmt.Sprintf("deployed %s by %s", sha(1)[:7], j["actor"]) ||
		j["actor"] == "" || j["created"] == nil || j["finished"] == nil || len(j) != 8 {
		t.Errorf("job = %v", j)
	}
	if _, err := cli("status", "-o", "yaml"); exitCode(err) != exitUsage || err.Error() != `-o "yaml": use text or json` {
		t.Errorf("status -o yaml: %v (exit %d), want a usage error", err, exitCode(err))
	}
}

// TestRun_Completion: the shell completion scripts exist, --target completes
// with the configuration's targets (without secrets), and deploy's --sha and
// rollback's --to with the commits the journal recorded, without creating a
// journal where there is none. Before issue 12 nothing completed.
func TestRun_Completion(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	none := func(string) string { return "" }
	complete := func(getenv func(string) string, args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(t.Context(), append([]string{"__complete"}, args...), getenv, nil, &out, io.Discard); err != nil {
			t.Fatalf("__complete %v: %v", args, err)
		}
		return out.String()
	}
	if got, want := complete(none, "deploy", "--config", cfg, "--target", ""), "production\n:4\n"; got != want {
		t.Errorf("--target completes %q, want %q", got, want)
	}
	if got, want := complete(none, "status", "--target", "pro"), ":4\n"; got != want {
		t.Errorf("--target without a configuration completes %q, want %q", got, want)
	}
	withConfig := func(k string) string {
		if k == "DEPLOYHOOK_CONFIG" {
			return cfg
		}
		return ""
	}
	if got, want := complete(withConfig, "ssh", "--target", "p"), "production\n:4\n"; got != want {
		t.Errorf("--target with DEPLOYHOOK_CONFIG completes %q, want %q", got, want)
	}
	if got, want := complete(none, "deploy", "--config", cfg, "--data-dir", data, "--target", "production", "--sha", ""), ":4\n"; got != want {
		t.Errorf("--sha without a journal completes %q, want %q", got, want)
	}
	if _, err := os.Stat(data); err == nil {
		t.Errorf("completion made the data directory %s", data)
	}
	for _, n := range []int{1, 2} {
		var out bytes.Buffer
		err := run(t.Context(), []string{"deploy", "--config", cfg, "--data-dir", data, "--target", "production", "--sha", sha(n)}, testEnv(gh), nil, &out, t.Output())
		if err != nil {
			t.Fatalf("deploy: %v\n%s", err, out.String())
		}
	}
	got := complete(none, "rollback", "--config", cfg, "--data-dir", data, "--target", "production", "--to", "c0")
	lines := strings.Split(got, "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], sha(2)+"\t") || !strings.Contains(lines[0], " success: deployed "+sha(2)[:7]+" by ") ||
		!strings.HasPrefix(lines[1], sha(1)+"\t") || lines[2] != ":36" {
		t.Errorf("--to completes\n%s\nwant %s then %s, newest first, with their jobs", got, sha(2), sha(1))
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		var out bytes.Buffer
		if err := run(t.Context(), []string{"completion", shell}, none, nil, &out, io.Discard); err != nil || !strings.Contains(out.String(), "deployhook") {
			t.Errorf("completion %s: %v, %d bytes", shell, err, out.Len())
		}
	}
}
