package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// applyBase is a valid target of the default sequence; tests append keys.
const applyBase = `
targets:
  - name: prod
    repo: acme/app
    transport: ssh
    ssh: {address: "10.0.0.5:22", user: deploy, private_key_file: /k, known_hosts_file: /kh}
    app_dir: /srv/app
    app_user: app
`

// loadProblems loads yaml and returns its problems, one a line ("" valid).
func loadProblems(t *testing.T, yaml string) (*Config, []string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16))
	if err == nil {
		return c, nil
	}
	msg := strings.TrimPrefix(err.Error(), p+": ")
	return nil, strings.Split(msg, "\n")
}

// Each mistake in the apply and verify keys is named with what to write;
// a valid Dagster configuration loads into the executor's shapes.
func TestValidate_ApplyAndVerify(t *testing.T) {
	const w = "targets[0] (prod): "
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"dagster layout", `    apply: [units, dagster_yaml]
    apply_units: {order: [dagster-code.service, dagster.service]}
    verify:
      - http: {url: "http://127.0.0.1:3000/server_info", contains: dagster_webserver_version}
      - tcp: 127.0.0.1:4000
      - command: {run: "test -s /var/dagster/home/dagster.yaml", user: dagster}
      - dagster_code_location: {port: 4000, location: etl, webserver: "http://127.0.0.1:3000"}
    verify_within: 2m
`, nil},
		{"unknown apply", "    apply: [units, terraform]\n", []string{w + `apply "terraform": use units or dagster_yaml`}},
		{"apply twice", "    apply: [units, units]\n", []string{w + "apply lists units twice"}},
		{"sub-key without apply", "    apply: [units]\n    apply_dagster_yaml: {to: /var/dagster}\n",
			[]string{w + "apply_dagster_yaml is set but apply does not list dagster_yaml: add dagster_yaml to apply, or remove apply_dagster_yaml"}},
		{"units sub-key without apply", "    apply_units: {from: infra/files}\n",
			[]string{w + "apply_units is set but apply does not list units: add units to apply, or remove apply_units"}},
		{"from outside the checkout", "    apply: [units]\n    apply_units: {from: ../etc}\n",
			[]string{w + `apply_units.from "../etc": a clean path inside the checkout, relative to app_dir (e.g. infra/files)`}},
		{"relative destination", "    apply: [dagster_yaml]\n    apply_dagster_yaml: {to: var/dagster}\n",
			[]string{w + `apply_dagster_yaml.to "var/dagster": a clean absolute directory on the target`}},
		{"order", "    apply: [units]\n    apply_units: {order: [dagster-code]}\n",
			[]string{w + `apply_units.order: "dagster-code" is not a unit file name: write NAME.service or NAME.timer`}},
		{"backup in /tmp", "    apply: [units]\n    apply_backup_dir: /tmp/backup\n",
			[]string{w + `apply_backup_dir "/tmp/backup" is in or is /tmp, which every user can write: use a directory only root can write (default /var/lib/deployhook/backup)`}},
		{"apply with steps", "    apply: [units]\n    steps: [{name: x, run: 'true', timeout: 1m}]\n",
			[]string{w + "apply needs the default sequence (app_dir and app_user, no steps:): with steps:, install files in a step of your own"}},
		{"verify with steps", "    verify: [{tcp: \"127.0.0.1:1\"}]\n    steps: [{name: x, run: 'true', timeout: 1m}]\n",
			[]string{w + "verify needs the default sequence (app_dir and app_user, no steps:): with steps:, check in a step of your own"}},
		{"probe with two kinds", "    verify: [{tcp: \"127.0.0.1:1\", command: {run: 'true'}}]\n",
			[]string{"targets[0] (prod) verify[0]: give exactly one of http, tcp, command and dagster_code_location (2 given)"}},
		{"probe url with credentials", "    verify: [{http: {url: \"http://admin:secret@127.0.0.1:3000/\"}}]\n",
			[]string{"targets[0] (prod) verify[0]: http url: the URL carries credentials: probes must not (logs and the job page would show them)"}},
		{"tcp without port", "    verify: [{tcp: localhost}]\n",
			[]string{`targets[0] (prod) verify[0]: tcp "localhost": write HOST:PORT, e.g. 127.0.0.1:4000`}},
		{"dagster without port", "    verify: [{dagster_code_location: {location: etl}}]\n",
			[]string{"targets[0] (prod) verify[0]: dagster_code_location port 0: the code server's port, 1 to 65535 (e.g. 4000)"}},
		{"same name", "    verify: [{tcp: \"127.0.0.1:4000\"}, {tcp: \"localhost:4000\"}]\n",
			[]string{`targets[0] (prod) verify[1]: verify[0] is also named "tcp port 4000": give each probe its own name`}},
		{"command user", "    verify: [{command: {run: 'true', user: Bad}}]\n",
			[]string{`targets[0] (prod) verify[0]: command user "Bad" is not a valid user name`}},
		{"verify_within", "    verify: [{tcp: \"127.0.0.1:1\"}]\n    verify_within: 2h\n",
			[]string{w + "verify_within 2h0m0s: between 1s and 30m (default 1m)"}},
		{"unknown probe key", "    verify: [{tcp: \"127.0.0.1:1\", expect: 200}]\n",
			[]string{`line 9: unknown key "expect" in targets[0] (prod).verify[0]`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got := loadProblems(t, applyBase+tc.yaml)
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestApplyOptions_Executor(t *testing.T) {
	c, problems := loadProblems(t, applyBase+`    apply: [units, dagster_yaml]
    apply_dagster_yaml: {to: /srv/dagster}
    verify:
      - {name: web, http: {url: "http://127.0.0.1:3000/server_info", expect: 200}}
      - dagster_code_location: {port: 4000, location: etl}
    verify_within: 90s
`)
	if problems != nil {
		t.Fatal(problems)
	}
	tg := c.Targets[0]
	a := tg.ApplyOptions.Executor()
	if a.Units == nil || a.Units.From != "" || a.Units.To != "" || a.Units.Order != nil || a.DagsterYAML == nil || *a.DagsterYAML != (executor.ApplyDagsterYAML{To: "/srv/dagster"}) || a.BackupDir != "" {
		t.Errorf("apply = %+v", a)
	}
	if a := (ApplyOptions{ApplyUnits: &ApplyUnits{From: "x"}}).Executor(); a.Units != nil || a.DagsterYAML != nil {
		t.Errorf("apply without units applies %+v", a)
	}
	probes := tg.VerifyOptions.Probes()
	if len(probes) != 2 || probes[0].Name != "web" || probes[0].HTTP.URL != "http://127.0.0.1:3000/server_info" ||
		probes[1].DagsterCodeLocation == nil || probes[1].DagsterCodeLocation.Location != "etl" || probes[1].DagsterCodeLocation.Port != 4000 {
		t.Errorf("probes = %+v", probes)
	}
	if time.Duration(tg.VerifyWithin) != 90*time.Second {
		t.Errorf("verify_within = %v", time.Duration(tg.VerifyWithin))
	}
}
