package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// initFlags answer every question of deployhook init for an iap target; the
// answers testdata/init/iap.yaml holds.
var initFlags = []string{
	"--repo", "acme/data-platform", "--project", "acme-prod", "--zone", "us-central1-a",
	"--instance", "dagster", "--app-dir", "/home/dagster/data-platform", "--app-user", "dagster",
	"--units", "dagster-code,dagster",
}

// initSecrets is the environment the written configuration needs at run
// time: the secrets it never holds.
func initSecrets(name string) string {
	return map[string]string{
		"DEPLOYHOOK_WEBHOOK_SECRET": "0123456789abcdef0123456789abcdef",
		"DEPLOYHOOK_GITHUB_TOKEN":   "ghp_test",
		"DEPLOYHOOK_SSH_KEY":        "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n",
	}[name]
}

// loadInit loads the configuration init wrote at path as config.Load does
// at run time, once the person chose the console's sign-in (init leaves it
// to them: ui: is commented out, and a configuration without it does not
// start); here they chose none.
func loadInit(t *testing.T, path string) (*config.Config, error) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, initSecrets); err == nil || !strings.Contains(err.Error(), "ui.auth is not set") {
		t.Errorf("config.Load of the file as written: %v, want it to ask for ui.auth", err)
	}
	chosen := filepath.Join(t.TempDir(), "chosen.yaml")
	if err := os.WriteFile(chosen, append(b, "ui: {auth: none}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(chosen, initSecrets)
}

// runInit runs deployhook init in dir with args and stdin, and returns its
// error and stdout.
func runInit(t *testing.T, dir string, stdin io.Reader, args ...string) (error, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"init", "--out", filepath.Join(dir, "deployhook.yaml")}, args...)
	err := run(t.Context(), args, noEnv, stdin, &stdout, &stderr)
	return err, stdout.String(), stderr.String()
}

// block returns the lines of out from the one that starts with first up to
// and including the one that starts with last.
func block(t *testing.T, out, first, last string) string {
	t.Helper()
	i := strings.Index(out, first)
	if i < 0 {
		t.Fatalf("no %q in the output:\n%s", first, out)
	}
	rest := out[i:]
	j := strings.Index(rest, "\n"+last)
	if j < 0 {
		t.Fatalf("no %q after %q in the output:\n%s", last, first, out)
	}
	end := strings.Index(rest[j+1:], "\n")
	return rest[:j+1+end+1]
}

// sudoersBlock returns the sudoers lines in init's output: from their
// header to the blank line after them.
func sudoersBlock(t *testing.T, out string) string {
	t.Helper()
	i := strings.Index(out, "# /etc/sudoers.d/deployhook")
	j := strings.Index(out[max(i, 0):], "\n\n")
	if i < 0 || j < 0 {
		t.Fatalf("no sudoers lines in the output:\n%s", out)
	}
	return out[i : i+j+1]
}

// wantSudoRules derives, from the steps and probes the executor runs for
// target t (as main wires it from the loaded configuration), the sudoers
// rules the login user needs: one per user a command runs as through sudo
// ("sudo -n -u USER" for Step.User, "sudo -n" for Step.Sudo: root), in order
// of first use, with the names of the steps that run as it.
func wantSudoRules(login string, t executor.Target) (rules []string, names map[string][]string) {
	steps := slices.Clone(t.Steps)
	for _, p := range []*executor.Step{t.Current, t.Changed, t.Contains} {
		if p != nil {
			steps = append(steps, *p)
		}
	}
	names = map[string][]string{}
	for _, s := range steps {
		var as string
		switch {
		case s.User != "":
			as = s.User
		case s.Sudo:
			as = "root"
		default:
			continue
		}
		if names[as] == nil {
			rules = append(rules, login+" ALL=("+as+") NOPASSWD: ALL")
		}
		names[as] = append(names[as], s.Name)
	}
	return rules, names
}

// checkSudoers checks the printed sudoers block of a configuration whose
// login user is login: its rules are exactly wantSudoRules of the target
// the file configures, each after a comment naming its steps, and visudo
// accepts it.
func checkSudoers(t *testing.T, sudoers, login string, cfg *config.Config) {
	t.Helper()
	rules, names := wantSudoRules(login, executorTargets(cfg)[0])
	var got []string
	for _, l := range strings.Split(sudoers, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			got = append(got, l)
		}
	}
	if !slices.Equal(got, rules) {
		t.Errorf("sudoers rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(rules, "\n"))
	}
	for _, r := range rules {
		as := strings.TrimSuffix(strings.TrimPrefix(r, login+" ALL=("), ") NOPASSWD: ALL")
		if want := ": " + strings.Join(names[as], ", ") + "\n" + r + "\n"; !strings.Contains(sudoers, want) {
			t.Errorf("rule %q is not after a comment naming its steps %q:\n%s", r, names[as], sudoers)
		}
	}
	tg := executorTargets(cfg)[0]
	verify := slices.ContainsFunc(tg.Steps, func(s executor.Step) bool { return s.Name == "verify" && s.User == "" && !s.Sudo })
	if got := strings.Contains(sudoers, "# verify (systemctl show) runs as the login user itself, without sudo.\n"); got != verify {
		t.Errorf("says verify runs without sudo: %v; the sequence has such a verify step: %v", got, verify)
	}
	visudo := sshdtest.Require(t, "visudo", "/usr/sbin/visudo")
	f := filepath.Join(t.TempDir(), "deployhook.sudoers")
	if err := os.WriteFile(f, []byte(sudoers), 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(visudo, "-cf", f).CombinedOutput(); err != nil {
		t.Errorf("visudo -cf: %v\n%s\n%s", err, out, sudoers)
	}
}

// tfVariables returns the variables the Terraform example declares.
func tfVariables(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("deploy/terraform/example/variables.tf")
	if err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, m := range regexp.MustCompile(`(?m)^variable "([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		vars = append(vars, m[1])
	}
	return vars
}

// The flags path: the file written is exactly testdata/init/iap.yaml, it
// loads with the secrets set into the target the answers describe, the
// sudoers lines printed are what the sequence runs through sudo (and visudo
// accepts them), and the Terraform variables are the example's, filled in.
func TestInit_Flags(t *testing.T) {
	dir := t.TempDir()
	err, out, _ := runInit(t, dir, strings.NewReader(""), append(initFlags, "--image", "us-docker.pkg.dev/acme-prod/deployhook/deployhook:v1.0.0")...)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "deployhook.yaml")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/init/iap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("written configuration:\n%s\nwant (testdata/init/iap.yaml):\n%s", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode of the file: %v, %v; want 0644", fi.Mode(), err)
	}

	cfg, err := loadInit(t, path)
	if err != nil {
		t.Fatalf("config.Load of the written file: %v", err)
	}
	tg := cfg.Targets[0]
	if tg.Name != "production" || tg.Repo != "acme/data-platform" || tg.Branch != "main" ||
		tg.Transport != executor.TransportIAP || tg.VM != (config.VM{Project: "acme-prod", Zone: "us-central1-a", Instance: "dagster", Port: 22}) ||
		tg.SSH.User != "deploy" || !*tg.SSH.GuestAttributes || tg.AppDir != "/home/dagster/data-platform" ||
		tg.AppUser != "dagster" || !slices.Equal(tg.Units, []string{"dagster-code", "dagster"}) || len(tg.NotApplied) != 0 || len(tg.Steps) != 0 {
		t.Errorf("loaded target: %+v", tg)
	}

	sudoers := sudoersBlock(t, out)
	checkSudoers(t, sudoers, "deploy", cfg)
	if !strings.Contains(out, "visudo -cf deployhook.sudoers") {
		t.Errorf("the output does not say to check the lines with visudo -cf:\n%s", out)
	}

	tfvars := block(t, out, "project_id ", "image ")
	wantVars := `project_id        = "acme-prod"
vm_name           = "dagster"
vm_zone           = "us-central1-a"
github_repository = "acme/data-platform"
branch            = "main"
app_dir           = "/home/dagster/data-platform"
app_user          = "dagster"
oslogin           = false
image             = "us-docker.pkg.dev/acme-prod/deployhook/deployhook:v1.0.0"
`
	if tfvars != wantVars {
		t.Errorf("Terraform variables:\n%s\nwant:\n%s", tfvars, wantVars)
	}
	declared := tfVariables(t)
	for _, l := range strings.Split(strings.TrimSpace(tfvars), "\n") {
		if name, _, _ := strings.Cut(l, " "); !slices.Contains(declared, name) {
			t.Errorf("variable %s is not declared in deploy/terraform/example/variables.tf (%v)", name, declared)
		}
	}
}

// Every transport init offers writes a file that loads, and prints the
// sudoers rules its sequence needs: none with OS Login (its admin role
// grants sudo) and none for root without units.
func TestInit_Transports(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		login     string // "": no sudoers block
		terraform bool
	}{
		{name: "iap", args: initFlags, login: "deploy", terraform: true},
		{name: "iap without units", args: append(slices.Clone(initFlags[:len(initFlags)-2]), "--ssh-user", "deployer"), login: "deployer", terraform: true},
		{name: "oslogin", args: append(slices.Clone(initFlags), "--oslogin", "true"), terraform: true},
		{name: "ssh", args: []string{"--transport", "ssh", "--repo", "acme/app", "--address", "10.0.0.5:22",
			"--known-hosts", "/etc/deployhook/known_hosts", "--app-dir", "/srv/app", "--app-user", "app",
			"--units", "app.service", "--branch", "release/1.x"}, login: "deploy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err, out, _ := runInit(t, dir, strings.NewReader(""), tt.args...)
			if err != nil {
				t.Fatalf("init: %v", err)
			}
			cfg, err := loadInit(t, filepath.Join(dir, "deployhook.yaml"))
			if err != nil {
				t.Fatalf("config.Load of the written file: %v", err)
			}
			if tt.login == "" {
				if strings.Contains(out, "NOPASSWD") || !strings.Contains(out, "nothing for sudo") {
					t.Errorf("OS Login: want no sudoers lines:\n%s", out)
				}
			} else {
				checkSudoers(t, sudoersBlock(t, out), tt.login, cfg)
			}
			if got := strings.Contains(out, "terraform.tfvars"); got != tt.terraform {
				t.Errorf("Terraform variables printed: %v, want %v:\n%s", got, tt.terraform, out)
			}
		})
	}
}

// The prompt path on a terminal: an empty answer takes the default, a
// required question is asked again, and the same answers as initFlags write
// the same file.
func TestInit_Prompts(t *testing.T) {
	ptm, pts := openPty(t)
	go io.Copy(io.Discard, ptm) // the terminal's echo
	answers := []string{
		"", "acme/data-platform", // repo: asked again after an empty answer
		"",                                      // branch: main
		"",                                      // name: production
		"",                                      // transport: iap
		"acme-prod", "us-central1-a", "dagster", // project, zone, instance
		"", // oslogin: false
		"", // ssh user: deploy
		"/home/dagster/data-platform", "dagster", "dagster-code, dagster",
	}
	if _, err := io.WriteString(ptm, strings.Join(answers, "\r")+"\r"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err, out, prompts := runInit(t, dir, pts)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, prompts)
	}
	got, err := os.ReadFile(filepath.Join(dir, "deployhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/init/iap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("written configuration:\n%s\nwant (testdata/init/iap.yaml):\n%s", got, want)
	}
	wantPrompts := "Repository to deploy (owner/name): " +
		"  (an answer is needed)\n" +
		"Repository to deploy (owner/name): " +
		"Branch whose pushes deploy [main]: " +
		"Target name (status context deploy/NAME) [production]: " +
		"Transport: iap (a Compute Engine VM through Identity-Aware Proxy) or ssh [iap]: " +
		"Google Cloud project of the VM: " +
		"Zone of the VM (e.g. us-central1-a): " +
		"VM instance name: " +
		"Log in through OS Login (true/false) [false]: " +
		"Login user deployhook connects as (it runs sudo -n) [deploy]: " +
		"The checkout on the VM (absolute path): " +
		"The checkout's owner (git and uv run as this user; not the login user): " +
		"systemd units to restart, in order (comma-separated; empty: none): "
	if prompts != wantPrompts {
		t.Errorf("prompts:\n%q\nwant:\n%q", prompts, wantPrompts)
	}
	if !strings.Contains(out, "deploy ALL=(root) NOPASSWD: ALL\n") {
		t.Errorf("no sudoers lines in the output:\n%s", out)
	}
}

// Without a terminal (or with --yes) nothing is asked: the questions no flag
// answers are a usage error naming their flags, and nothing is written.
func TestInit_MissingFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "nothing", want: "stdin is not a terminal: give --repo, --project, --zone, --instance, --app-dir, --app-user"},
		{name: "ssh", args: []string{"--transport", "ssh", "--repo", "a/b"}, want: "stdin is not a terminal: give --address, --known-hosts, --app-dir, --app-user"},
		{name: "yes", args: []string{"--yes", "--repo", "a/b", "--oslogin", "true"}, want: "--yes asks nothing: give --project, --zone, --instance, --app-dir, --app-user"},
		{name: "bad answer", args: append(slices.Clone(initFlags), "--app-dir", "srv/app"),
			want: `nothing written: ` + "DIR" + `: targets[0] (production): app_dir "srv/app" must be an absolute path`},
		{name: "bad transport", args: append(slices.Clone(initFlags), "--transport", "local"), want: `--transport "local": use iap or ssh`},
		{name: "app user is the login user", args: append(slices.Clone(initFlags), "--ssh-user", "dagster"),
			want: "--app-user dagster is the login user: git and uv must run as the checkout's owner, never as the user who can sudo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err, _, _ := runInit(t, dir, strings.NewReader("acme/app\n"), tt.args...)
			want := strings.ReplaceAll(tt.want, "DIR", filepath.Join(dir, "deployhook.yaml"))
			if err == nil || err.Error() != want || exitCode(err) != exitUsage {
				t.Errorf("err = %v (exit %d), want %q (exit 2)", err, exitCode(err), want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files left in the directory: %v", ents)
			}
		})
	}
}

// An existing file is never overwritten without --force; with it, it is.
func TestInit_RefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "deployhook.yaml")
	if err := os.WriteFile(path, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err, _, _ := runInit(t, dir, strings.NewReader(""), initFlags...)
	want := path + " exists: give --force to overwrite it, or --out another file"
	if err == nil || err.Error() != want || exitCode(err) != exitUsage {
		t.Errorf("err = %v (exit %d), want %q (exit 2)", err, exitCode(err), want)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine\n" {
		t.Errorf("the existing file became %q", b)
	}
	if err, out, _ := runInit(t, dir, strings.NewReader(""), append(initFlags, "--force")...); err != nil {
		t.Fatalf("init --force: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(path)
	want2, _ := os.ReadFile("testdata/init/iap.yaml")
	if !bytes.Equal(got, want2) {
		t.Errorf("--force wrote:\n%s", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files in the directory: %v, want only deployhook.yaml", ents)
	}
}
