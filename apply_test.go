package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// applyTarget is a target of the default sequence that applies unit files
// and dagster.yaml and runs probes (issue 13).
func applyTarget(addr, user, key, hostKey string) string {
	return fmt.Sprintf(`ui: {auth: none}
log: {format: text}
github: {report: false}
targets:
  - name: production
    repo: acme/app
    transport: ssh
    ssh: {address: %q, user: %q, private_key_file: %q, host_keys: [%q], timeout: 20s}
    app_dir: /srv/app
    app_user: dagster
    units: [dagster-code, dagster]
    apply: [units, dagster_yaml]
    apply_units: {order: [dagster-daemon.service]}
    verify:
      - http: {url: "http://127.0.0.1:3000/server_info"}
      - command: {run: "true", user: ops}
      - dagster_code_location: {port: 4000, location: etl}
`, addr, user, key, hostKey)
}

// loadApplyTarget loads yaml as serve would.
func loadApplyTarget(t *testing.T, yaml string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if !strings.Contains(yaml, "ui:") {
		yaml = "ui: {auth: none}\n" + yaml // README's examples leave the console out
	}
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, func(k string) string {
		if k == "DEPLOYHOOK_WEBHOOK_SECRET" {
			return testSecret
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// main wires a target's apply and verify keys into its default sequence:
// the apply steps after sync, the applied units' restart after the units',
// one probe step each, the code location checked with the app's venv.
func TestExecutorTargets_ApplyAndVerify(t *testing.T) {
	cfg := loadApplyTarget(t, applyTarget("10.0.0.5:22", "deploy", "/k", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3ZbbQjvOBBqnIUmVWMMtGYfpiS7U9qs7AkWqbJlL6s"))
	et := executorTargets(cfg)[0]
	var names []string
	for _, s := range et.Steps {
		names = append(names, s.Name)
	}
	want := []string{"preflight", "fetch", "checkout", "sync", "apply units", "apply dagster.yaml", "restart dagster-code", "restart dagster",
		"restart applied units", "verify", "probe: http /server_info", "probe: command", "probe: dagster_code_location etl"}
	if !slices.Equal(names, want) {
		t.Errorf("steps %q\nwant %q", names, want)
	}
	last := et.Steps[len(et.Steps)-1]
	if !strings.Contains(last.Run, "venv='/srv/app/.venv'") || last.User != "dagster" {
		t.Errorf("the code location probe runs as %q:\n%s\nwant the app user and /srv/app/.venv", last.User, last.Run)
	}
	if !strings.Contains(et.Steps[4].Run, "to='/etc/systemd/system'") || !strings.Contains(et.Steps[5].Run, "to='/var/dagster/home'") {
		t.Errorf("the apply steps do not default to Dagster's layout")
	}
}

// check prints the sudoers lines the target's steps need, the apply steps
// and the probes' users included, and visudo accepts them.
func TestRun_CheckPrintsSudoers(t *testing.T) {
	dir := t.TempDir()
	srv := sshdtest.Start(t, sshdtest.Options{})
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey.PublicKey())))
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte(applyTarget(srv.Addr, srv.User, srv.ClientKeyFile(t), hostKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "DEPLOYHOOK_WEBHOOK_SECRET" {
			return testSecret
		}
		return ""
	}
	var out bytes.Buffer
	// The checkout is not there: check fails, and still prints the lines.
	_ = run(t.Context(), []string{"check", "--config", p, "--data-dir", filepath.Join(dir, "data")}, getenv, nil, &out, t.Output())
	if !strings.Contains(out.String(), "production: the sudoers lines its login user needs on the VM") {
		t.Fatalf("check output:\n%s\nwant the sudoers lines", out.String())
	}
	block := sudoersBlock(t, out.String())
	cfg := loadApplyTarget(t, applyTarget(srv.Addr, srv.User, srv.ClientKeyFile(t), hostKey))
	checkSudoers(t, block, srv.User, cfg)
	for _, line := range []string{
		"# As root (sudo -n): apply units, apply dagster.yaml, restart dagster-code, restart dagster, restart applied units\n",
		"# As ops (sudo -n -u ops): probe: command\n",
		"# The apply steps read the checkout as the app user through runuser, as root: no rule of their own.\n",
	} {
		if !strings.Contains(block, line) {
			t.Errorf("sudoers lines:\n%s\nwant the line %q", block, line)
		}
	}
}

// README, "What a deploy applies": the Dagster example loads (given the
// connection keys it leaves out) and applies units and dagster.yaml with
// probes.
func TestReadme_ApplyExampleLoads(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "### What a deploy applies")
	_, rest, ok2 := strings.Cut(rest, "```yaml\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("no YAML example under \"What a deploy applies\"")
	}
	block = strings.Replace(block, "    # ... repo, transport, vm, ssh as in config/example.yaml\n",
		"    repo: acme/app\n    transport: ssh\n    ssh: {address: \"10.0.0.5:22\", user: deploy, private_key_file: /k, known_hosts_file: /kh}\n", 1)
	cfg := loadApplyTarget(t, block)
	et := executorTargets(cfg)[0]
	var probes int
	for _, s := range et.Steps {
		if strings.HasPrefix(s.Name, "probe: ") {
			probes++
		}
	}
	if a := cfg.Targets[0].ApplyOptions.Executor(); a.Units == nil || a.DagsterYAML == nil || probes != 2 {
		t.Errorf("the README's example applies %+v with %d probes, want units, dagster.yaml and 2 probes", a, probes)
	}
}
