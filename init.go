package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
)

// initSettle is the settle time deployhook init writes: how long the units
// must stay up after the restart (the example's value).
const initSettle = 10 * time.Second

// question is one answer deployhook init needs: its flag, what the prompt
// says and the default. A question without a default must be answered, by
// its flag or on the terminal; when is nil or true for the answers so far,
// the question is asked.
type question struct {
	flag   string
	prompt string
	def    string
	// optional: an empty answer is an answer (units: none).
	optional bool
	when     func(a map[string]string) bool
}

func isIAP(a map[string]string) bool { return a["transport"] == "iap" }
func isSSH(a map[string]string) bool { return a["transport"] == "ssh" }
func notOSLogin(a map[string]string) bool {
	return a["transport"] != "iap" || a["oslogin"] != "true"
}

// initQuestions are deployhook init's questions, in the order they are asked.
var initQuestions = []question{
	{flag: "repo", prompt: "Repository to deploy (owner/name)"},
	{flag: "branch", prompt: "Branch whose pushes deploy", def: "main"},
	{flag: "name", prompt: "Target name (status context deploy/NAME)", def: "production"},
	{flag: "transport", prompt: "Transport: iap (a Compute Engine VM through Identity-Aware Proxy) or ssh", def: "iap"},
	{flag: "project", prompt: "Google Cloud project of the VM", when: isIAP},
	{flag: "zone", prompt: "Zone of the VM (e.g. us-central1-a)", when: isIAP},
	{flag: "instance", prompt: "VM instance name", when: isIAP},
	{flag: "oslogin", prompt: "Log in through OS Login (true/false)", def: "false", when: isIAP},
	{flag: "address", prompt: "SSH address of the machine (host:port)", when: isSSH},
	{flag: "known-hosts", prompt: "known_hosts file with the machine's host keys", when: isSSH},
	{flag: "ssh-user", prompt: "Login user deployhook connects as (it runs sudo -n)", def: "deploy", when: notOSLogin},
	{flag: "app-dir", prompt: "The checkout on the VM (absolute path)"},
	{flag: "app-user", prompt: "The checkout's owner (git and uv run as this user; not the login user)"},
	{flag: "units", prompt: "systemd units to restart, in order (comma-separated; empty: none)", optional: true},
}

func (e *env) initCmd() *cobra.Command {
	var out, image string
	var yes, force bool
	flagValues := map[string]*string{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a configuration, and print the VM's sudoers lines and the Terraform variables",
		Long: `init asks for the repository, branch, VM and checkout (or takes them as flags),
writes a commented configuration to --out (never over an existing file
without --force), and prints the sudoers lines the login user needs on the
VM (exactly what the default deploy sequence runs through sudo) and the
variables of the Terraform example (deploy/terraform/example).

Without a terminal on stdin, or with --yes, nothing is asked: every answer
without a default must then be a flag.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Lstat(out); err == nil && !force {
				return usageError(fmt.Errorf("%s exists: give --force to overwrite it, or --out another file", out))
			}
			given := map[string]string{}
			for name, v := range flagValues {
				if cmd.Flags().Changed(name) {
					given[name] = strings.TrimSpace(*v)
				}
			}
			answers, err := e.askInit(given, yes)
			if err != nil {
				return err
			}
			p, err := newInitPlan(answers)
			if err != nil {
				return usageError(err)
			}
			if err := writeInitConfig(out, p.config(), force); err != nil {
				return err
			}
			_, err = io.WriteString(e.stdout, p.instructions(out, image))
			return err
		},
	}
	for _, q := range initQuestions {
		v := new(string)
		flagValues[q.flag] = v
		usage := q.prompt
		if q.def != "" {
			usage += " (default " + q.def + ")"
		}
		cmd.Flags().StringVar(v, q.flag, "", usage)
	}
	cmd.Flags().StringVar(&out, "out", "deployhook.yaml", "the configuration file to write")
	cmd.Flags().StringVar(&image, "image", "", "the deployhook container image, for the Terraform variables")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "ask nothing: take the defaults for what the flags leave out")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite --out if it exists")
	return cmd
}

// askInit returns the answer to every question that applies: given (by
// flag) first, then asked on the terminal, else the default. Without a
// terminal on stdin, or with yes, nothing is asked, and the questions
// without a default that no flag answers are a usage error naming their flags.
func (e *env) askInit(given map[string]string, yes bool) (map[string]string, error) {
	interactive := false
	if f, ok := e.stdin.(*os.File); ok && !yes && term.IsTerminal(int(f.Fd())) {
		interactive = true
	}
	in := bufio.NewReader(e.stdin)
	answers := map[string]string{}
	var missing []string
	for _, q := range initQuestions {
		if q.when != nil && !q.when(answers) {
			continue
		}
		if v, ok := given[q.flag]; ok {
			answers[q.flag] = v
			continue
		}
		if !interactive {
			if q.def == "" && !q.optional {
				missing = append(missing, "--"+q.flag)
			}
			answers[q.flag] = q.def
			continue
		}
		v, err := e.prompt(in, q)
		if err != nil {
			return nil, err
		}
		answers[q.flag] = v
	}
	if len(missing) > 0 {
		why := "stdin is not a terminal"
		if yes {
			why = "--yes asks nothing"
		}
		return nil, usageError(fmt.Errorf("%s: give %s", why, strings.Join(missing, ", ")))
	}
	return answers, nil
}

// prompt asks q on stderr and reads the answer, a line, from in; an empty
// line takes the default, and a question that must be answered is asked again.
func (e *env) prompt(in *bufio.Reader, q question) (string, error) {
	for {
		if q.def != "" {
			fmt.Fprintf(e.stderr, "%s [%s]: ", q.prompt, q.def)
		} else {
			fmt.Fprintf(e.stderr, "%s: ", q.prompt)
		}
		line, err := in.ReadString('\n')
		v := strings.TrimSpace(line)
		if err != nil && (err != io.EOF || line == "") {
			return "", usageError(fmt.Errorf("no answer for --%s: stdin ended", q.flag))
		}
		switch {
		case v != "":
			return v, nil
		case q.def != "" || q.optional:
			return q.def, nil
		}
		fmt.Fprintln(e.stderr, "  (an answer is needed)")
	}
}

// initPlan is what deployhook init makes of the answers.
type initPlan struct {
	name, repo, branch         string
	transport                  executor.TransportKind
	project, zone, instance    string
	oslogin                    bool
	address, knownHosts, login string
	appDir, appUser            string
	units                      []string
}

// newInitPlan reads the answers. The configuration it makes is checked
// again, whole, by writeInitConfig (config.Load).
func newInitPlan(a map[string]string) (*initPlan, error) {
	p := &initPlan{
		name: a["name"], repo: a["repo"], branch: a["branch"],
		transport: executor.TransportKind(a["transport"]),
		project:   a["project"], zone: a["zone"], instance: a["instance"],
		address: a["address"], knownHosts: a["known-hosts"], login: a["ssh-user"],
		appDir: a["app-dir"], appUser: a["app-user"],
	}
	if p.transport != executor.TransportIAP && p.transport != executor.TransportSSH {
		return nil, fmt.Errorf("--transport %q: use iap or ssh", p.transport)
	}
	if p.transport == executor.TransportIAP {
		v, err := strconv.ParseBool(a["oslogin"])
		if err != nil {
			return nil, fmt.Errorf("--oslogin %q: use true or false", a["oslogin"])
		}
		p.oslogin = v
	}
	for _, u := range strings.Split(a["units"], ",") {
		if u = strings.TrimSpace(u); u != "" {
			p.units = append(p.units, u)
		}
	}
	if !p.oslogin && p.login == p.appUser {
		return nil, fmt.Errorf("--app-user %s is the login user: git and uv must run as the checkout's owner, never as the user who can sudo", p.appUser)
	}
	return p, nil
}

// plainYAML is a scalar YAML reads as the same string without quotes.
var plainYAML = regexp.MustCompile(`^[A-Za-z0-9_/][A-Za-z0-9_./@-]*$`)

// yamlString writes s as a YAML scalar: plain when that reads back as s,
// else double-quoted (Go's escapes are YAML's).
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "", "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~":
		return strconv.Quote(s)
	}
	if plainYAML.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}

// config is the commented configuration file of the plan.
func (p *initPlan) config() []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`# deployhook configuration for %s, written by deployhook init.
# config/example.yaml (in deployhook's repository) documents every key, with its default.
#
# Secrets are never read from this file. Set them in deployhook's environment, or
# in a file named by NAME_FILE (for mounted secrets):
#   DEPLOYHOOK_WEBHOOK_SECRET   the GitHub webhook's secret (required; openssl rand -hex 32)
#   DEPLOYHOOK_GITHUB_TOKEN     commit statuses and Deployments (or a GitHub App, below)
`, p.repo)
	if !p.oslogin {
		w("#   DEPLOYHOOK_SSH_KEY          the login user's SSH private key (or ssh.private_key_file)\n")
	}
	if p.transport == executor.TransportIAP {
		w("#   GOOGLE_APPLICATION_CREDENTIALS  a service account's key file (on Google Cloud: the\n")
		w("#                               metadata server's account, nothing to set)\n")
	}
	w(`# Then: deployhook check --config THIS_FILE

listen: 127.0.0.1:8080                  # where the webhook and pages are served
# public_url: https://deploy.example.com  # links in commit statuses point here (/jobs/ID)
data_dir: ./.deployhook                 # the SQLite journal; created 0700 when missing

github:
  deployments: true                     # a GitHub Deployment per job, beside the commit status
  # A GitHub App instead of DEPLOYHOOK_GITHUB_TOKEN:
  # app_id: 12345
  # installation_id: 67890
  # private_key_file: /secrets/github-app.pem

# Sign-in to the console (the pages, live logs and buttons): deployhook refuses to
# start until you choose. GitHub sign-in needs public_url and an OAuth App whose
# callback URL is PUBLIC_URL/auth/callback (secret: DEPLOYHOOK_OAUTH_CLIENT_SECRET):
# ui:
#   github:
#     client_id: Iv1.0123456789abcdef
#     # team: acme/deployers             # may press the buttons, beside push access
# Behind Identity-Aware Proxy: ui: {auth: iap, iap: {audience: /projects/NUM/global/backendServices/ID,
#   viewers: [domain:example.com], operators: [user:you@example.com]}}
# Nobody reaches listen but this machine: ui: {auth: none} (no sign-in at all).

targets:
  - name: %s
    repo: %s
    branch: %s
    deploy_on: push                     # push | workflow_run (only after CI passed; then add workflows:)
    transport: %s
`, yamlString(p.name), yamlString(p.repo), yamlString(p.branch), p.transport)
	if p.transport == executor.TransportIAP {
		w("    vm:\n      project: %s\n      zone: %s\n      instance: %s\n",
			yamlString(p.project), yamlString(p.zone), yamlString(p.instance))
	}
	w("    ssh:\n")
	switch {
	case p.oslogin:
		w(`      oslogin: true                     # a key per deploy, through OS Login; needs enable-oslogin=TRUE
                                        # and roles/compute.osAdminLogin (which grants sudo)
`)
	default:
		if p.transport == executor.TransportSSH {
			w("      address: %s\n", yamlString(p.address))
		}
		w(`      user: %s%s# the login user: it needs the sudoers lines deployhook init printed
      # private_key_file: /secrets/deploy_key   # or DEPLOYHOOK_SSH_KEY
`, yamlString(p.login), pad(len("user: ")+len(yamlString(p.login)), 34))
	}
	if p.transport == executor.TransportIAP {
		w("      host_keys_from_guest_attributes: true   # pins the VM's host keys: needs enable-guest-attributes=TRUE\n")
	} else {
		w("      known_hosts_file: %s%s# pins the host keys: deployhook never trusts on first use\n",
			yamlString(p.knownHosts), pad(len("known_hosts_file: ")+len(yamlString(p.knownHosts)), 34))
	}
	w(`
    # The default sequence: preflight (refuse local changes), fetch, checkout of the
    # exact SHA (verified), uv sync --frozen when uv.lock or pyproject.toml changed,
    # restart each unit with sudo -n, verify.
    app_dir: %s
    app_user: %s%s# owns the checkout; git and uv run as it, never as the login user
`, yamlString(p.appDir), yamlString(p.appUser), pad(len("app_user: ")+len(yamlString(p.appUser)), 36))
	if len(p.units) > 0 {
		var us []string
		for _, u := range p.units {
			us = append(us, yamlString(u))
		}
		w("    units: [%s]%s# restarted in this order, then verified\n", strings.Join(us, ", "),
			pad(len("units: [")+len(strings.Join(us, ", "))+1, 36))
		w("    settle: %s                         # the units must stay active, without restarts, this long\n", initSettle)
	} else {
		// Explicit: without units: the configuration's default is Dagster's two.
		w("    units: []                           # none restarted; e.g. [app-worker, app-web], in this order\n")
	}
	// Explicit too: the default names Dagster's files.
	w("    not_applied: []                     # changes the deploy does not apply (e.g. [infra/**]): named in the status\n")
	w("    rollback: true                      # on failure after the checkout, go back to the previous SHA\n")
	return []byte(b.String())
}

// pad returns the spaces that take a line of n characters, indented by 4
// or 6, to the comment column col (at least one space).
func pad(n, col int) string {
	if n >= col {
		return " "
	}
	return strings.Repeat(" ", col-n)
}

// sequence is the default deploy sequence the plan's configuration runs,
// as executorTargets builds it.
func (p *initPlan) sequence() executor.Sequence {
	return executor.Sequence{AppDir: p.appDir, AppUser: p.appUser, Units: p.units, Settle: initSettle}
}

// sudoers returns the /etc/sudoers.d lines the login user needs for the
// plan's sequence (sudoersFor); empty with OS Login, whose
// roles/compute.osAdminLogin grants sudo already.
func (p *initPlan) sudoers() string {
	if p.oslogin {
		return ""
	}
	steps, current, changed, contains := p.sequence().Steps()
	return sudoersFor(p.login, append(steps, *current, *changed, *contains))
}

// sudoersFor returns the /etc/sudoers.d lines login needs to run steps: one
// rule per user they run as through sudo (root for Sudo steps: the
// restarts, and the apply steps when the target applies files), in the
// order first needed, each after a comment naming its steps; empty when no
// step uses sudo.
//
// Every step runs as "sudo -n [-u USER] -- sh -c WRAPPER ..." (the transport's
// timeout wrapper, see executor/remote), and a stuck one is signalled with
// "sudo -n [-u USER] -- kill": a rule naming only a step's own command
// (systemctl restart UNIT, or a root-owned helper script) would never match,
// so each rule allows ALL as its user, and the comments say so.
func sudoersFor(login string, steps []executor.Step) string {
	users, names := sudoUsers(steps)
	if len(users) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# /etc/sudoers.d/deployhook: what deployhook's login user %s runs through sudo -n.\n", login)
	b.WriteString("# deployhook runs every step as \"sudo -n [-u USER] -- sh -c WRAPPER ...\" (its timeout\n")
	b.WriteString("# wrapper) and ends a stuck one with \"sudo -n [-u USER] -- kill\", so each rule allows\n")
	b.WriteString("# every command as its user: the one for root makes the login user root on this VM.\n")
	for _, u := range users {
		who := u
		if u == "root" {
			who = "root (sudo -n)"
		} else {
			who += " (sudo -n -u " + u + ")"
		}
		fmt.Fprintf(&b, "# As %s: %s\n", who, strings.Join(names[u], ", "))
		fmt.Fprintf(&b, "%s ALL=(%s) NOPASSWD: ALL\n", login, u)
	}
	if slices.ContainsFunc(steps, func(s executor.Step) bool { return strings.HasPrefix(s.Name, "apply ") }) {
		b.WriteString("# The apply steps read the checkout as the app user through runuser, as root: no rule of their own.\n")
	}
	if slices.ContainsFunc(steps, func(s executor.Step) bool { return s.Name == "verify" && s.User == "" && !s.Sudo }) {
		b.WriteString("# verify (systemctl show) runs as the login user itself, without sudo.\n")
	}
	return b.String()
}

// sudoUsers returns the users steps run as through sudo (root for Sudo
// steps), in the order of first use, and the names of the steps that run as
// each.
func sudoUsers(steps []executor.Step) (users []string, names map[string][]string) {
	names = map[string][]string{}
	for _, s := range steps {
		u := s.User
		if u == "" && s.Sudo {
			u = "root"
		}
		if u == "" {
			continue
		}
		if _, ok := names[u]; !ok {
			users = append(users, u)
		}
		names[u] = append(names[u], s.Name)
	}
	return users, names
}

// hclString writes s as a Terraform string literal: Go's escapes are HCL's,
// and "${" and "%{" are escaped so nothing is interpolated.
func hclString(s string) string {
	q := strconv.Quote(s)
	q = strings.ReplaceAll(q, "${", "$${")
	return strings.ReplaceAll(q, "%{", "%%{")
}

// tfvars returns the Terraform example's variables filled with the plan's
// answers (transport iap only: the example is for Compute Engine).
func (p *initPlan) tfvars(image string) string {
	var b strings.Builder
	row := func(name, value string) { fmt.Fprintf(&b, "%-17s = %s\n", name, value) }
	row("project_id", hclString(p.project))
	row("vm_name", hclString(p.instance))
	row("vm_zone", hclString(p.zone))
	row("github_repository", hclString(p.repo))
	row("branch", hclString(p.branch))
	row("app_dir", hclString(p.appDir))
	row("app_user", hclString(p.appUser))
	row("oslogin", strconv.FormatBool(p.oslogin))
	if image != "" {
		row("image", hclString(image))
	} else {
		b.WriteString("# image           = \"REGION-docker.pkg.dev/PROJECT/REPOSITORY/deployhook:VERSION\"  # required: the image you pushed\n")
	}
	return b.String()
}

// instructions is what deployhook init prints once it wrote out: the
// sudoers lines, the Terraform variables and what to do next.
func (p *initPlan) instructions(out, image string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Wrote %s (target %s).\n\n", out, p.name)
	step := 1
	if s := p.sudoers(); s != "" {
		fmt.Fprintf(&b, "%d. On the VM, save these lines as deployhook.sudoers, check them with\n", step)
		b.WriteString("   visudo -cf deployhook.sudoers, then install them with\n")
		b.WriteString("   sudo install -m 0440 -o root -g root deployhook.sudoers /etc/sudoers.d/deployhook\n\n")
		b.WriteString(s)
		b.WriteString("\n")
		step++
	} else if p.oslogin {
		fmt.Fprintf(&b, "%d. On the VM: nothing for sudo. roles/compute.osAdminLogin gives the OS Login user\n", step)
		b.WriteString("   sudo without a password, which the default sequence needs.\n\n")
		step++
	}
	if p.transport == executor.TransportIAP {
		fmt.Fprintf(&b, "%d. For the Terraform example, deploy/terraform/example/terraform.tfvars:\n\n", step)
		b.WriteString(p.tfvars(image))
		if len(p.units) > 0 || (!p.oslogin && p.login != "deploy") {
			fmt.Fprintf(&b, "# The example's own configuration for Cloud Run (config.yaml.tftpl) has no units\n# and logs in as deploy: edit it to match %s.\n", out)
		}
		b.WriteString("\n")
		step++
	}
	fmt.Fprintf(&b, "%d. Set the secrets the file's header lists, then: deployhook check --config %s\n", step, out)
	return b.String()
}

// writeInitConfig checks data as config.Load does, with stand-ins for the
// secrets it does not hold, and writes it to path (mode 0644: it holds no
// secrets). An existing path is refused unless force. A configuration that
// does not load is a usage error: the answers were wrong.
func writeInitConfig(path string, data []byte, force bool) error {
	if _, err := os.Lstat(path); err == nil && !force {
		return usageError(fmt.Errorf("%s exists: give --force to overwrite it, or --out another file", path))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".deployhook-init-*.yaml")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Only the SSH key's presence counts for validation (the transports read
	// it later), so a stand-in checks the rest of the file.
	standIn := func(name string) string {
		if name == "DEPLOYHOOK_SSH_KEY" {
			return "stand-in"
		}
		return ""
	}
	if _, err := config.Load(tmp.Name(), standIn, config.WithoutWebhookOrGitHub()); err != nil {
		msg := strings.ReplaceAll(err.Error(), tmp.Name(), path)
		return usageError(fmt.Errorf("nothing written: %s", msg))
	}
	if force {
		err = os.Rename(tmp.Name(), path)
	} else {
		// A link fails if path appeared meanwhile: never over a file.
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return usageError(fmt.Errorf("%s exists: give --force to overwrite it, or --out another file", path))
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
