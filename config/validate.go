package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/endpoint"
)

// The names deployhook checks, as character rules rather than regular
// expressions: compiling five expressions with counted repetitions cost every
// start 3,458 allocations and 0.2-0.4 ms, for a check that runs once.
var (
	// GitHub spells owners with ASCII letters, digits and -, (managed users)
	// _; repositories also with . and up to 100 characters.
	ownerName = nameRule{first: isAlnum, rest: or(isAlnum, is('_', '-')), max: 100}
	repoName  = nameRule{first: or(isAlnum, is('_', '.', '-')), rest: or(isAlnum, is('_', '.', '-')), max: 100}
	// Target names become URL path segments and GitHub environment names.
	targetName = nameRule{first: or(isLowerDigit), rest: or(isLowerDigit, is('_', '-')), max: 63}
	// POSIX user names, as sudo -u takes them.
	userName = nameRule{first: or(isLower, is('_')), rest: or(isLowerDigit, is('_', '.', '-'))}
	// Environment variable names.
	envName = nameRule{first: or(isAlpha, is('_')), rest: or(isAlnum, is('_'))}
)

// nameRule says which bytes a name may start with and continue with, and how
// long it may be (0: no limit). Names are ASCII: any other byte fails.
type nameRule struct {
	first, rest func(byte) bool
	max         int
}

// MatchString reports whether s follows the rule.
func (r nameRule) MatchString(s string) bool {
	if s == "" || (r.max > 0 && len(s) > r.max) || !r.first(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !r.rest(s[i]) {
			return false
		}
	}
	return true
}

func isLower(c byte) bool      { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isLowerDigit(c byte) bool { return isLower(c) || isDigit(c) }
func isAlpha(c byte) bool      { return isLower(c) || ('A' <= c && c <= 'Z') }
func isAlnum(c byte) bool      { return isAlpha(c) || isDigit(c) }

// is returns a class of exactly the bytes cs.
func is(cs ...byte) func(byte) bool {
	return func(c byte) bool { return bytes.IndexByte(cs, c) >= 0 }
}

// or returns the union of classes.
func or(classes ...func(byte) bool) func(byte) bool {
	return func(c byte) bool {
		for _, f := range classes {
			if f(c) {
				return true
			}
		}
		return false
	}
}

// Validate checks the configuration, with its defaults applied (as Load
// does), and fails closed: every problem is reported, each with what to set
// and where, joined in one error (errors.Join), in the order of the file.
// It demands everything any command needs, the webhook secret and GitHub's
// credentials included; Load with WithoutWebhookOrGitHub demands less.
func (c *Config) Validate() error {
	return c.validate(loadOptions{})
}

// validate is Validate, leaving out what o says the command does not use.
// Each validator below decides one part and returns its problems.
func (c *Config) validate(o loadOptions) error {
	var errs []error
	if !o.noWebhookOrGitHub {
		errs = append(errs, validateWebhookSecrets(c.WebhookSecrets)...)
	}
	errs = append(errs, c.validateEndpoints()...)
	errs = append(errs, validateMetrics(c.MetricsListen, c.Listen)...)
	errs = append(errs, c.validateJournal()...)
	errs = append(errs, validateStore(c.Store, c.DatabaseURL)...)
	errs = append(errs, c.validateReplicas()...)
	errs = append(errs, validateGitHub(c.GitHub, c.GitHubToken, !o.noWebhookOrGitHub)...)
	errs = append(errs, validateLog(c.Log)...)
	errs = append(errs, c.validateUI(!o.noWebhookOrGitHub)...)
	errs = append(errs, c.validateNotify()...)
	if len(c.Targets) == 0 {
		errs = append(errs, errors.New("no targets: add at least one under targets:"))
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		errs = append(errs, validateTarget(i, t, seen[t.Name], len(c.SSHKey) > 0)...)
		seen[t.Name] = true
	}
	return errors.Join(errs...)
}

// problems collects the problems one validator finds.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// validateWebhookSecrets checks the webhook secrets (the current one and the
// previous one, while it is rotated): there must be one, and none short.
func validateWebhookSecrets(secrets [][]byte) []error {
	var p problems
	if len(secrets) == 0 {
		p.add("no webhook secret: set DEPLOYHOOK_WEBHOOK_SECRET (or DEPLOYHOOK_WEBHOOK_SECRET_FILE) to the secret of the GitHub webhook; deployhook never accepts unsigned deliveries")
	}
	for _, s := range secrets {
		if len(s) < 16 {
			p.add("webhook secret is %d bytes: use at least 16 random bytes (openssl rand -hex 32)", len(s))
			break
		}
	}
	return p
}

// validateEndpoints checks public_url, github.api_url and the Google API
// overrides from the environment: absolute URLs, and none that sends
// credentials in cleartext (endpoint.RequireSecure).
func (c *Config) validateEndpoints() []error {
	var p problems
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("public_url %q must be an absolute http(s) URL", c.PublicURL)
		}
	}
	if u, err := url.Parse(c.GitHub.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("github.api_url %q must be an absolute URL (GitHub Enterprise: https://HOST/api/v3/)", c.GitHub.APIURL)
	} else if err := endpoint.RequireSecure("github.api_url (or DEPLOYHOOK_GITHUB_API_URL)", c.GitHub.APIURL); err != nil {
		p.add("%v", err)
	}
	for _, o := range []struct{ name, url string }{
		{"DEPLOYHOOK_IAP_URL", c.IAPURL},
		{"DEPLOYHOOK_COMPUTE_URL", c.ComputeURL},
		{"DEPLOYHOOK_OSLOGIN_URL", c.OSLoginURL},
	} {
		if o.url == "" {
			continue
		}
		if err := endpoint.RequireSecure(o.name, o.url); err != nil {
			p.add("%v", err)
		}
	}
	return p
}

// validateJournal checks retain, lease and retain_jobs against their bounds.
func (c *Config) validateJournal() []error {
	var p problems
	if r := time.Duration(*c.Retain); r < MinRetain || r > MaxRetain {
		p.add("retain %s: keep the journal between 7d and 3650d (default 90d); GitHub can redeliver a delivery for up to 7 days, and the journal must still know it", days(r))
	}
	if l := time.Duration(c.Lease); l < time.Second || l > 10*time.Minute {
		p.add("lease %s: between 1s and 10m (default 30s); a killed deployhook's jobs are ended this long after it stopped renewing", l)
	}
	if n := *c.RetainJobs; n < MinRetainJobs || n > MaxRetainJobs {
		p.add("retain_jobs %d: keep between %d and %d jobs per target (default %d)", n, MinRetainJobs, MaxRetainJobs, DefaultRetainJobs)
	}
	return p
}

// validateStore checks the journal's database: store (from the YAML) and
// env (DEPLOYHOOK_DATABASE_URL) are not both set; whichever is must be a
// postgres:// or postgresql:// URL naming a host, in its authority or as the
// host parameter (a Unix socket's directory, as with Cloud Run's Cloud SQL
// connection: postgres://USER:PASSWORD@/DATABASE?host=/cloudsql/INSTANCE);
// and store carries no password, since the configuration file is not a place
// for secrets. No problem quotes either URL.
func validateStore(store, env string) []error {
	var p problems
	if store != "" && env != "" {
		p.add("both store and DEPLOYHOOK_DATABASE_URL are set: set one")
		return p
	}
	check := func(name, v string) {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || (u.Host == "" && u.Query().Get("host") == "") {
			p.add("%s must be a postgres://USER@HOST:PORT/DATABASE URL (leave it unset for the SQLite journal in data_dir)", name)
			return
		}
		if _, ok := u.User.Password(); ok && name == "store" {
			p.add("store carries a password: remove it from the configuration and set the whole URL in DEPLOYHOOK_DATABASE_URL (or DEPLOYHOOK_DATABASE_URL_FILE) instead")
		}
	}
	if store != "" {
		check("store", store)
	}
	if env != "" {
		check("DEPLOYHOOK_DATABASE_URL", env)
	}
	return p
}

// validateGitHub checks the GitHub credentials: a GitHub App is configured
// whole or not at all, and not beside a token; with needCredentials, a
// github.report that is on needs one of them.
func validateGitHub(gh GitHub, token string, needCredentials bool) []error {
	var p problems
	app := gh.AppID != 0 || gh.InstallationID != 0 || gh.PrivateKeyFile != ""
	if app && (gh.AppID == 0 || gh.InstallationID == 0 || gh.PrivateKeyFile == "") {
		p.add("github: a GitHub App needs app_id, installation_id and private_key_file")
	}
	if app && token != "" {
		p.add("github: both a GitHub App and DEPLOYHOOK_GITHUB_TOKEN are configured: use one")
	}
	if needCredentials && *gh.Report && !app && token == "" {
		p.add("github.report is on but there are no credentials: set DEPLOYHOOK_GITHUB_TOKEN, or configure github.app_id, installation_id and private_key_file")
	}
	return p
}

// validateLog checks log.format and log.level.
func validateLog(l Log) []error {
	var p problems
	switch l.Format {
	case "auto", "json", "text":
	default:
		p.add("log.format %q: use auto, json or text", l.Format)
	}
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level %q: use debug, info, warn or error", l.Level)
	}
	return p
}

// targetWhere names target t, the i-th (from 0), in problems.
func targetWhere(i int, t Target) string { return fmt.Sprintf("targets[%d] (%s)", i, t.Name) }

// validateTarget checks target t, the i-th of the file (from 0): its name
// (dup says an earlier target has the same one), repository, trigger,
// transport and SSH settings (validateSSH; haveKey says DEPLOYHOOK_SSH_KEY is
// set), the default sequence's needs, lock, app_dir, units, env and each of
// its steps (validateStep).
func validateTarget(i int, t Target, dup, haveKey bool) []error {
	var p problems
	where := targetWhere(i, t)
	if !targetName.MatchString(t.Name) {
		p.add("%s: name %q must be lower-case letters, digits, - or _ (it appears in URLs and the status context deploy/NAME)", where, t.Name)
	}
	if dup {
		p.add("%s: target name %q is used twice", where, t.Name)
	}
	if err := validRepo(t.Repo); err != nil {
		p.add("%s: %v", where, err)
	}
	if t.RepoID < 0 {
		p.add("%s: repo_id %d: give the repository's numeric id (gh api repos/%s --jq .id), or leave it out", where, t.RepoID, t.Repo)
	}
	switch {
	case !t.DeployOn.Valid():
		p.add("%s: deploy_on %q: use push or workflow_run", where, t.DeployOn)
	case t.DeployOn == executor.DeployOnWorkflowRun && len(t.Workflows) == 0:
		p.add("%s: deploy_on workflow_run needs workflows: the CI workflow files whose success deploys (e.g. .github/workflows/ci.yml)", where)
	}
	for _, w := range append(append([]string(nil), t.Workflows...), t.DispatchWorkflow) {
		if w != "" && !strings.HasPrefix(w, ".github/workflows/") {
			p.add("%s: workflow %q must be a path like .github/workflows/ci.yml", where, w)
		}
	}
	if !t.Transport.Valid() {
		p.add("%s: transport %q: use iap, ssh or local", where, t.Transport)
	}
	switch t.Transport {
	case executor.TransportSSH:
		if t.SSH.Address == "" && len(t.SSH.Addresses) == 0 {
			p.add("%s: transport ssh needs ssh.address (host:port), or ssh.addresses for a fleet", where)
		}
		p = append(p, validateSSH(where, t, haveKey)...)
	case executor.TransportIAP:
		if !t.IsFleet() && (t.VM.Project == "" || t.VM.Zone == "" || t.VM.Instance == "") {
			p.add("%s: transport iap needs vm.project, vm.zone and vm.instance", where)
		}
		p = append(p, validateSSH(where, t, haveKey)...)
	}
	if t.AppUser != "" && !userName.MatchString(t.AppUser) {
		p.add("%s: app_user %q is not a valid user name", where, t.AppUser)
	}
	if len(t.Steps) == 0 && t.AppDir == "" {
		p.add("%s: give steps:, or app_dir and app_user for the default sequence", where)
	}
	if len(t.Steps) > 0 && t.AppDir == "" && len(t.NotApplied) > 0 {
		// The changed files are listed by git in app_dir on the VM: without
		// it nothing would ever be named, and nobody should believe it is.
		p.add("%s: not_applied needs app_dir (the checkout whose changed files it names): set app_dir, or remove not_applied", where)
	}
	switch {
	case len(t.Steps) == 0 && t.AppDir != "" && t.AppUser == "":
		p.add("%s: the default sequence (no steps:) needs app_user: the account that owns the checkout in app_dir, without sudo; git and uv run as it, never as the login user, who can sudo", where)
	case t.AppUser == "root":
		p.add("%s: app_user root: git and uv would run as root; set app_user to the account that owns the checkout in app_dir", where)
	}
	if dir := sharedDir(t.Lock); dir != "" {
		p.add("%s: lock %q is in %s, which every user can write: any of them could create or hold the lock and block deploys; use a directory only the login user can write, e.g. lock: %s (relative to the login user's home)", where, t.Lock, dir, DefaultLock)
	}
	if t.AppDir != "" && !filepath.IsAbs(t.AppDir) {
		p.add("%s: app_dir %q must be an absolute path", where, t.AppDir)
	}
	for _, u := range t.Units {
		if !validUnit(u) {
			p.add("%s: unit %q is not a systemd unit name", where, u)
		}
	}
	for k := range t.Env {
		if !envName.MatchString(k) {
			p.add("%s: env name %q is not a valid variable name", where, k)
		}
	}
	for j, s := range t.Steps {
		p = append(p, validateStep(where, j, s)...)
	}
	p = append(p, validateWatch(where, t)...)
	p = append(p, validateApply(where, t)...)
	p = append(p, validateVerify(where, t)...)
	p = append(p, validateFleet(where, t)...)
	return p
}

// validateSSH checks the SSH settings of t, an iap or ssh target named where
// in problems: the login (OS Login, or a user and a key; haveKey says
// DEPLOYHOOK_SSH_KEY is set) and the host key pin.
func validateSSH(where string, t Target, haveKey bool) []error {
	var p problems
	switch {
	case t.SSH.OSLogin && t.Transport != executor.TransportIAP:
		p.add("%s: ssh.oslogin needs transport iap (OS Login is for Compute Engine VMs)", where)
	case t.SSH.OSLogin:
		// The key and the user come from OS Login; a setting that would be
		// ignored is refused, so nobody believes it is used.
		if t.SSH.User != "" || t.SSH.PrivateKeyFile != "" || t.SSH.CertificateFile != "" {
			p.add("%s: with ssh.oslogin, remove ssh.user, ssh.private_key_file and ssh.certificate_file: the login user and a per-deploy key come from OS Login", where)
		}
	default:
		if t.SSH.User == "" {
			p.add("%s: ssh.user is required (the account deployhook logs in as)", where)
		}
		if t.SSH.PrivateKeyFile == "" && !haveKey {
			p.add("%s: no SSH key: set ssh.private_key_file, or DEPLOYHOOK_SSH_KEY (or DEPLOYHOOK_SSH_KEY_FILE)%s", where,
				map[bool]string{true: ", or ssh.oslogin: true", false: ""}[t.Transport == executor.TransportIAP])
		}
	}
	if t.SSH.KnownHostsFile == "" && len(t.SSH.HostKeys) == 0 && !*t.SSH.GuestAttributes {
		p.add("%s: no host key pin: set ssh.known_hosts_file or ssh.host_keys%s; deployhook never trusts a host key on first use",
			where, map[bool]string{true: ", or host_keys_from_guest_attributes: true", false: ""}[t.Transport == executor.TransportIAP])
	}
	if *t.SSH.GuestAttributes && t.Transport != executor.TransportIAP {
		p.add("%s: host_keys_from_guest_attributes needs transport iap (it reads the VM's guest attributes)", where)
	}
	return p
}

// validateStep checks step s, the j-th (from 0) of the target named where in
// problems: a name, a command and a timeout, whom it runs as, and its env.
func validateStep(where string, j int, s Step) []error {
	var p problems
	sw := fmt.Sprintf("%s step %d (%s)", where, j+1, s.Name)
	if s.Name == "" {
		p.add("%s: a step needs a name", sw)
	}
	if strings.TrimSpace(s.Run) == "" {
		p.add("%s: a step needs a command (run:)", sw)
	}
	if s.Timeout <= 0 {
		p.add("%s: a step needs a timeout (timeout: 5m): a step without one could hold the deploy lock for ever", sw)
	}
	if s.User != "" && !userName.MatchString(s.User) {
		p.add("%s: user %q is not a valid user name", sw, s.User)
	}
	if s.User != "" && s.Sudo {
		p.add("%s: set user (run as that user) or sudo (run as root), not both", sw)
	}
	for k := range s.Env {
		if !envName.MatchString(k) {
			p.add("%s: env name %q is not a valid variable name", sw, k)
		}
	}
	return p
}

func validUnit(u string) bool {
	if u == "" || strings.HasPrefix(u, "-") {
		return false
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@._:-\\", r)) {
			return false
		}
	}
	return true
}
