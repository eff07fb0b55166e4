package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkOne fails unless problems is empty (want "") or holds exactly one
// problem whose text contains want: a row cannot pass on another rule's
// message.
func checkOne(t *testing.T, problems []error, want string) {
	t.Helper()
	switch {
	case want == "" && len(problems) != 0:
		t.Errorf("want no problem, got %d: %v", len(problems), errors.Join(problems...))
	case want != "" && len(problems) != 1:
		t.Errorf("want exactly one problem containing %q, got %d: %v", want, len(problems), errors.Join(problems...))
	case want != "" && !strings.Contains(problems[0].Error(), want):
		t.Errorf("problem = %q\nwant it to contain %q", problems[0], want)
	}
}

func TestValidateWebhookSecrets(t *testing.T) {
	long := []byte("0123456789abcdef")
	tests := []struct {
		name    string
		secrets [][]byte
		want    string
	}{
		{"one secret", [][]byte{long}, ""},
		{"secret and previous", [][]byte{long, []byte("fedcba9876543210")}, ""},
		{"none", nil, "no webhook secret: set DEPLOYHOOK_WEBHOOK_SECRET (or DEPLOYHOOK_WEBHOOK_SECRET_FILE) to the secret of the GitHub webhook; deployhook never accepts unsigned deliveries"},
		{"short", [][]byte{[]byte("abc")}, "webhook secret is 3 bytes: use at least 16 random bytes (openssl rand -hex 32)"},
		{"15 bytes", [][]byte{long[:15]}, "webhook secret is 15 bytes: use at least 16"},
		{"short previous", [][]byte{long, []byte("short")}, "webhook secret is 5 bytes: use at least 16"},
		{"two short, said once", [][]byte{[]byte("a"), []byte("bb")}, "webhook secret is 1 bytes: use at least 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkOne(t, validateWebhookSecrets(tt.secrets), tt.want) })
	}
}

// withDefaults returns the configuration of yaml with its defaults applied, as
// Load validates it.
func withDefaults(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c.defaults()
	return c
}

func TestConfig_validateEndpoints(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"public_url https", func(c *Config) { c.PublicURL = "https://deploy.example.com" }, ""},
		{"public_url relative", func(c *Config) { c.PublicURL = "/deploy" }, `public_url "/deploy" must be an absolute http(s) URL`},
		{"public_url ftp", func(c *Config) { c.PublicURL = "ftp://example.com" }, `public_url "ftp://example.com" must be an absolute http(s) URL`},
		{"api_url not a URL", func(c *Config) { c.GitHub.APIURL = "api.github.com" },
			`github.api_url "api.github.com" must be an absolute URL (GitHub Enterprise: https://HOST/api/v3/)`},
		{"api_url cleartext", func(c *Config) { c.GitHub.APIURL = "http://ghe.example.com/api/v3/" },
			`github.api_url (or DEPLOYHOOK_GITHUB_API_URL) "http://ghe.example.com/api/v3/" sends credentials in cleartext`},
		{"api_url loopback", func(c *Config) { c.GitHub.APIURL = "http://127.0.0.1:9/" }, ""},
		{"iap url cleartext", func(c *Config) { c.IAPURL = "ws://relay.example.com/v4" },
			`DEPLOYHOOK_IAP_URL "ws://relay.example.com/v4" sends credentials in cleartext: use wss://`},
		{"compute url cleartext", func(c *Config) { c.ComputeURL = "http://compute.example.com" },
			`DEPLOYHOOK_COMPUTE_URL "http://compute.example.com" sends credentials in cleartext: use https://`},
		{"oslogin url cleartext", func(c *Config) { c.OSLoginURL = "http://oslogin.example.com" },
			`DEPLOYHOOK_OSLOGIN_URL "http://oslogin.example.com" sends credentials in cleartext: use https://`},
		{"override not absolute", func(c *Config) { c.ComputeURL = "compute" },
			`DEPLOYHOOK_COMPUTE_URL "compute" is not an absolute URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := withDefaults(t, "{}")
			tt.edit(c)
			checkOne(t, c.validateEndpoints(), tt.want)
		})
	}
}

func TestConfig_validateJournal(t *testing.T) {
	dur := func(d time.Duration) *Duration { v := Duration(d); return &v }
	num := func(n int) *int { return &n }
	day := 24 * time.Hour
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"bounds", func(c *Config) {
			c.Retain, c.Lease, c.RetainJobs = dur(MinRetain), Duration(time.Second), num(MinRetainJobs)
		}, ""},
		{"upper bounds", func(c *Config) {
			c.Retain, c.Lease, c.RetainJobs = dur(MaxRetain), Duration(10*time.Minute), num(MaxRetainJobs)
		}, ""},
		{"retain short", func(c *Config) { c.Retain = dur(6 * day) },
			"retain 6d: keep the journal between 7d and 3650d (default 90d); GitHub can redeliver a delivery for up to 7 days, and the journal must still know it"},
		{"retain long", func(c *Config) { c.Retain = dur(3651 * day) }, "retain 3651d: keep the journal between 7d and 3650d"},
		{"lease short", func(c *Config) { c.Lease = Duration(999 * time.Millisecond) },
			"lease 999ms: between 1s and 10m (default 30s); a killed deployhook's jobs are ended this long after it stopped renewing"},
		{"lease long", func(c *Config) { c.Lease = Duration(11 * time.Minute) }, "lease 11m0s: between 1s and 10m"},
		{"retain_jobs few", func(c *Config) { c.RetainJobs = num(9) }, "retain_jobs 9: keep between 10 and 1000000 jobs per target (default 1000)"},
		{"retain_jobs many", func(c *Config) { c.RetainJobs = num(MaxRetainJobs + 1) }, "retain_jobs 1000001: keep between 10 and 1000000 jobs per target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := withDefaults(t, "{}")
			tt.edit(c)
			checkOne(t, c.validateJournal(), tt.want)
		})
	}
}

func TestValidateGitHub(t *testing.T) {
	on, off := true, false
	app := GitHub{AppID: 1, InstallationID: 2, PrivateKeyFile: "/app.pem", Report: &on}
	tests := []struct {
		name            string
		gh              GitHub
		token           string
		needCredentials bool
		want            string
	}{
		{"token", GitHub{Report: &on}, "ghp_x", true, ""},
		{"app", app, "", true, ""},
		{"reporting off, no credentials", GitHub{Report: &off}, "", true, ""},
		{"app without app_id", GitHub{InstallationID: 2, PrivateKeyFile: "/k", Report: &on}, "", true,
			"github: a GitHub App needs app_id, installation_id and private_key_file"},
		{"app without installation_id", GitHub{AppID: 1, PrivateKeyFile: "/k", Report: &on}, "", true,
			"github: a GitHub App needs app_id, installation_id and private_key_file"},
		{"app without private_key_file", GitHub{AppID: 1, InstallationID: 2, Report: &on}, "", true,
			"github: a GitHub App needs app_id, installation_id and private_key_file"},
		{"app and token", app, "ghp_x", true, "github: both a GitHub App and DEPLOYHOOK_GITHUB_TOKEN are configured: use one"},
		{"reporting without credentials", GitHub{Report: &on}, "", true,
			"github.report is on but there are no credentials: set DEPLOYHOOK_GITHUB_TOKEN, or configure github.app_id, installation_id and private_key_file"},
		{"reporting without credentials, none needed", GitHub{Report: &on}, "", false, ""},
		{"app and token, none needed: still refused", app, "ghp_x", false, "github: both a GitHub App and DEPLOYHOOK_GITHUB_TOKEN are configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkOne(t, validateGitHub(tt.gh, tt.token, tt.needCredentials), tt.want) })
	}
}

func TestValidateStore(t *testing.T) {
	const pw = "hunter22-secret"
	tests := []struct {
		name       string
		store, env string
		want       string
	}{
		{"neither: SQLite", "", "", ""},
		{"store", "postgres://deployhook@db.internal:5432/deployhook?sslmode=verify-full", "", ""},
		{"postgresql scheme", "postgresql://deployhook@db.internal/deployhook", "", ""},
		{"env with a password", "", "postgres://deployhook:" + pw + "@10.0.0.5/deployhook", ""},
		{"env on a Unix socket (Cloud Run's Cloud SQL connection)", "",
			"postgres://deployhook:" + pw + "@/deployhook?host=/cloudsql/my-project:us-central1:db", ""},
		{"store with neither host nor host parameter", "postgres://deployhook@/deployhook?sslmode=disable", "",
			"store must be a postgres://USER@HOST:PORT/DATABASE URL"},
		{"both", "postgres://a@h/d", "postgres://a@h/d", "both store and DEPLOYHOOK_DATABASE_URL are set: set one"},
		{"store with a password", "postgres://deployhook:" + pw + "@db/deployhook", "",
			"store carries a password: remove it from the configuration and set the whole URL in DEPLOYHOOK_DATABASE_URL"},
		{"store not a URL", "host=db user=x", "", "store must be a postgres://USER@HOST:PORT/DATABASE URL"},
		{"store of another scheme", "mysql://db/x", "", "store must be a postgres://"},
		{"env not a URL", "", "postgres//x:" + pw + "@db", "DEPLOYHOOK_DATABASE_URL must be a postgres://"},
		{"env malformed, with a password", "", "postgres://x:" + pw + "@db:port/d", "DEPLOYHOOK_DATABASE_URL must be a postgres://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := validateStore(tt.store, tt.env)
			checkOne(t, problems, tt.want)
			for _, p := range problems {
				if strings.Contains(p.Error(), pw) || strings.Contains(p.Error(), "db.internal") {
					t.Errorf("problem %q quotes the URL", p)
				}
			}
		})
	}
}

func TestValidateLog(t *testing.T) {
	tests := []struct {
		name string
		log  Log
		want string
	}{
		{"auto info", Log{Format: "auto", Level: "info"}, ""},
		{"json debug", Log{Format: "json", Level: "debug"}, ""},
		{"text warn", Log{Format: "text", Level: "warn"}, ""},
		{"error level", Log{Format: "auto", Level: "error"}, ""},
		{"format", Log{Format: "yaml", Level: "info"}, `log.format "yaml": use auto, json or text`},
		{"level", Log{Format: "auto", Level: "trace"}, `log.level "trace": use debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkOne(t, validateLog(tt.log), tt.want) })
	}
}

// sshTarget is a valid ssh target with the default sequence, its defaults
// applied.
func sshTarget() Target {
	return Target{
		Name: "prod", Repo: "acme/app", Branch: "main", DeployOn: "push", Environment: "prod", Transport: "ssh",
		SSH:    SSH{Address: "10.0.0.5:22", User: "deploy", PrivateKeyFile: "/k", KnownHostsFile: "/kh", GuestAttributes: boolPtr(false)},
		AppDir: "/srv/app", AppUser: "app", Units: []string{"dagster-code", "dagster"}, Lock: DefaultLock,
	}
}

// iapTarget is a valid iap target that pins host keys from guest attributes.
func iapTarget() Target {
	t := sshTarget()
	t.Transport, t.SSH.Address, t.SSH.KnownHostsFile, t.SSH.GuestAttributes = "iap", "", "", boolPtr(true)
	t.VM = VM{Project: "acme-prod", Zone: "us-central1-a", Instance: "dagster", Port: 22}
	return t
}

// TestValidateTarget has one row per rule of a target (its steps' and SSH
// settings' rules have their own tests), each with the one problem it
// must give.
func TestValidateTarget(t *testing.T) {
	const where = "targets[0] (prod): "
	tests := []struct {
		name string
		base func() Target
		edit func(*Target)
		dup  bool
		want string
	}{
		{name: "ssh", base: sshTarget, edit: func(*Target) {}},
		{name: "iap", base: iapTarget, edit: func(*Target) {}},
		{name: "local with steps", base: sshTarget, edit: func(t *Target) {
			t.Transport, t.SSH, t.AppDir, t.AppUser, t.Lock = "local", SSH{GuestAttributes: boolPtr(false)}, "", "", ""
			t.Steps = []Step{{Name: "x", Run: "true", Timeout: Duration(time.Minute)}}
		}},
		{name: "workflow_run with workflows", base: sshTarget, edit: func(t *Target) {
			t.DeployOn, t.Workflows, t.DispatchWorkflow = "workflow_run", []string{".github/workflows/ci.yml"}, ".github/workflows/deploy.yml"
		}},

		{name: "name", base: sshTarget, edit: func(t *Target) { t.Name = "Prod" },
			want: `targets[0] (Prod): name "Prod" must be lower-case letters, digits, - or _ (it appears in URLs and the status context deploy/NAME)`},
		{name: "name used twice", base: sshTarget, edit: func(*Target) {}, dup: true,
			want: where + `target name "prod" is used twice`},
		{name: "repo", base: sshTarget, edit: func(t *Target) { t.Repo = "acme" },
			want: where + `repo "acme" must be owner/name, in ASCII letters, digits, -, _ and . (as in github.com/OWNER/NAME)`},
		{name: "repo_id", base: sshTarget, edit: func(t *Target) { t.RepoID = -1 },
			want: where + "repo_id -1: give the repository's numeric id (gh api repos/acme/app --jq .id), or leave it out"},
		{name: "workflow_run without workflows", base: sshTarget, edit: func(t *Target) { t.DeployOn = "workflow_run" },
			want: where + "deploy_on workflow_run needs workflows: the CI workflow files whose success deploys (e.g. .github/workflows/ci.yml)"},
		{name: "deploy_on", base: sshTarget, edit: func(t *Target) { t.DeployOn = "tag" },
			want: where + `deploy_on "tag": use push or workflow_run`},
		{name: "workflow path", base: sshTarget, edit: func(t *Target) { t.DeployOn, t.Workflows = "workflow_run", []string{"ci.yml"} },
			want: where + `workflow "ci.yml" must be a path like .github/workflows/ci.yml`},
		{name: "dispatch_workflow path", base: sshTarget, edit: func(t *Target) { t.DispatchWorkflow = "workflows/deploy.yml" },
			want: where + `workflow "workflows/deploy.yml" must be a path like .github/workflows/ci.yml`},
		{name: "ssh without address", base: sshTarget, edit: func(t *Target) { t.SSH.Address = "" },
			want: where + "transport ssh needs ssh.address (host:port)"},
		{name: "iap without instance", base: iapTarget, edit: func(t *Target) { t.VM.Instance = "" },
			want: where + "transport iap needs vm.project, vm.zone and vm.instance"},
		{name: "iap without project", base: iapTarget, edit: func(t *Target) { t.VM.Project = "" },
			want: where + "transport iap needs vm.project, vm.zone and vm.instance"},
		{name: "transport", base: sshTarget, edit: func(t *Target) { t.Transport = "telnet" },
			want: where + `transport "telnet": use iap, ssh or local`},
		{name: "ssh settings are checked", base: sshTarget, edit: func(t *Target) { t.SSH.User = "" },
			want: where + "ssh.user is required"},
		{name: "iap ssh settings are checked", base: iapTarget, edit: func(t *Target) { t.SSH.OSLogin = true },
			want: where + "with ssh.oslogin, remove ssh.user"},
		{name: "app_user", base: sshTarget, edit: func(t *Target) { t.AppUser = "App User" },
			want: where + `app_user "App User" is not a valid user name`},
		{name: "neither steps nor app_dir", base: sshTarget, edit: func(t *Target) { t.AppDir = "" },
			want: where + "give steps:, or app_dir and app_user for the default sequence"},
		{name: "default sequence without app_user", base: sshTarget, edit: func(t *Target) { t.AppUser = "" },
			want: where + "the default sequence (no steps:) needs app_user: the account that owns the checkout in app_dir, without sudo; git and uv run as it, never as the login user, who can sudo"},
		{name: "app_user root", base: sshTarget, edit: func(t *Target) { t.AppUser = "root" },
			want: where + "app_user root: git and uv would run as root; set app_user to the account that owns the checkout in app_dir"},
		{name: "lock in a shared directory", base: sshTarget, edit: func(t *Target) { t.Lock = "/var/tmp/deploy.lock" },
			want: where + `lock "/var/tmp/deploy.lock" is in /var/tmp, which every user can write: any of them could create or hold the lock and block deploys; use a directory only the login user can write, e.g. lock: .deployhook/deploy.lock (relative to the login user's home)`},
		{name: "app_dir relative", base: sshTarget, edit: func(t *Target) { t.AppDir = "srv/app" },
			want: where + `app_dir "srv/app" must be an absolute path`},
		{name: "unit", base: sshTarget, edit: func(t *Target) { t.Units = []string{"dagster", "-x"} },
			want: where + `unit "-x" is not a systemd unit name`},
		{name: "unit with a space", base: sshTarget, edit: func(t *Target) { t.Units = []string{"dag ster"} },
			want: where + `unit "dag ster" is not a systemd unit name`},
		{name: "unit template", base: sshTarget, edit: func(t *Target) { t.Units = []string{"worker@1.service"} }},
		{name: "env name", base: sshTarget, edit: func(t *Target) { t.Env = map[string]string{"OK_1": "x", "1BAD": "y"} },
			want: where + `env name "1BAD" is not a valid variable name`},
		{name: "steps are checked", base: sshTarget, edit: func(t *Target) { t.Steps = []Step{{Name: "x", Run: "true"}} },
			want: "targets[0] (prod) step 1 (x): a step needs a timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := tt.base()
			tt.edit(&tg)
			checkOne(t, validateTarget(0, tg, tt.dup, false), tt.want)
		})
	}
}

// TestValidateSSH has one row per rule of an iap or ssh target's SSH settings.
func TestValidateSSH(t *testing.T) {
	const where = "w: "
	tests := []struct {
		name    string
		base    func() Target
		edit    func(*Target)
		haveKey bool // DEPLOYHOOK_SSH_KEY is set
		want    string
	}{
		{name: "ssh with key file and known_hosts", base: sshTarget, edit: func(*Target) {}},
		{name: "ssh with host_keys", base: sshTarget, edit: func(t *Target) { t.SSH.KnownHostsFile, t.SSH.HostKeys = "", []string{"ssh-ed25519 AAAA"} }},
		{name: "key from the environment", base: sshTarget, edit: func(t *Target) { t.SSH.PrivateKeyFile = "" }, haveKey: true},
		{name: "iap with guest attributes", base: iapTarget, edit: func(*Target) {}},
		{name: "iap with oslogin", base: iapTarget, edit: func(t *Target) { t.SSH.OSLogin, t.SSH.User, t.SSH.PrivateKeyFile = true, "", "" }},

		{name: "oslogin over ssh", base: sshTarget, edit: func(t *Target) { t.SSH.OSLogin = true },
			want: where + "ssh.oslogin needs transport iap (OS Login is for Compute Engine VMs)"},
		{name: "oslogin with a user", base: iapTarget, edit: func(t *Target) { t.SSH.OSLogin, t.SSH.PrivateKeyFile = true, "" },
			want: where + "with ssh.oslogin, remove ssh.user, ssh.private_key_file and ssh.certificate_file: the login user and a per-deploy key come from OS Login"},
		{name: "oslogin with a key file", base: iapTarget, edit: func(t *Target) { t.SSH.OSLogin, t.SSH.User = true, "" },
			want: where + "with ssh.oslogin, remove ssh.user, ssh.private_key_file and ssh.certificate_file"},
		{name: "oslogin with a certificate", base: iapTarget, edit: func(t *Target) {
			t.SSH.OSLogin, t.SSH.User, t.SSH.PrivateKeyFile, t.SSH.CertificateFile = true, "", "", "/k-cert.pub"
		}, want: where + "with ssh.oslogin, remove ssh.user, ssh.private_key_file and ssh.certificate_file"},
		{name: "no user", base: sshTarget, edit: func(t *Target) { t.SSH.User = "" },
			want: where + "ssh.user is required (the account deployhook logs in as)"},
		{name: "no key over ssh", base: sshTarget, edit: func(t *Target) { t.SSH.PrivateKeyFile = "" },
			want: where + "no SSH key: set ssh.private_key_file, or DEPLOYHOOK_SSH_KEY (or DEPLOYHOOK_SSH_KEY_FILE)"},
		{name: "no key over iap suggests oslogin", base: iapTarget, edit: func(t *Target) { t.SSH.PrivateKeyFile = "" },
			want: where + "no SSH key: set ssh.private_key_file, or DEPLOYHOOK_SSH_KEY (or DEPLOYHOOK_SSH_KEY_FILE), or ssh.oslogin: true"},
		{name: "no host key pin over ssh", base: sshTarget, edit: func(t *Target) { t.SSH.KnownHostsFile = "" },
			want: where + "no host key pin: set ssh.known_hosts_file or ssh.host_keys; deployhook never trusts a host key on first use"},
		{name: "no host key pin over iap", base: iapTarget, edit: func(t *Target) { t.SSH.GuestAttributes = boolPtr(false) },
			want: where + "no host key pin: set ssh.known_hosts_file or ssh.host_keys, or host_keys_from_guest_attributes: true; deployhook never trusts a host key on first use"},
		{name: "guest attributes over ssh", base: sshTarget, edit: func(t *Target) { t.SSH.GuestAttributes = boolPtr(true) },
			want: where + "host_keys_from_guest_attributes needs transport iap (it reads the VM's guest attributes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := tt.base()
			tt.edit(&tg)
			checkOne(t, validateSSH("w", tg, tt.haveKey), tt.want)
		})
	}
}

// TestValidateStep has one row per rule of a step.
func TestValidateStep(t *testing.T) {
	ok := Step{Name: "migrate", Run: "make migrate", Timeout: Duration(5 * time.Minute)}
	tests := []struct {
		name string
		edit func(*Step)
		want string
	}{
		{"valid", func(*Step) {}, ""},
		{"as a user", func(s *Step) { s.User = "app" }, ""},
		{"with sudo", func(s *Step) { s.Sudo = true }, ""},
		{"no name", func(s *Step) { s.Name = "" }, "t step 2 (): a step needs a name"},
		{"no command", func(s *Step) { s.Run = "" }, "t step 2 (migrate): a step needs a command (run:)"},
		{"blank command", func(s *Step) { s.Run = " \n\t" }, "t step 2 (migrate): a step needs a command (run:)"},
		{"no timeout", func(s *Step) { s.Timeout = 0 },
			"t step 2 (migrate): a step needs a timeout (timeout: 5m): a step without one could hold the deploy lock for ever"},
		{"negative timeout", func(s *Step) { s.Timeout = Duration(-time.Second) }, "t step 2 (migrate): a step needs a timeout"},
		{"user", func(s *Step) { s.User = "root;id" }, `t step 2 (migrate): user "root;id" is not a valid user name`},
		{"user and sudo", func(s *Step) { s.User, s.Sudo = "app", true },
			"t step 2 (migrate): set user (run as that user) or sudo (run as root), not both"},
		{"env name", func(s *Step) { s.Env = map[string]string{"A-B": "x"} }, `t step 2 (migrate): env name "A-B" is not a valid variable name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.edit(&s)
			checkOne(t, validateStep("t", 1, s), tt.want)
		})
	}
}

// Validate reports every problem at once, in the order of the file, each on
// its own line: the top-level ones, then each target's with its steps'.
func TestConfig_Validate_everyProblem(t *testing.T) {
	c := withDefaults(t, `
log: {format: yaml}
targets:
  - name: prod
    repo: acme/app
    transport: ssh
    ssh: {address: "10.0.0.5:22", user: deploy, known_hosts_file: /kh}
    steps:
      - {name: a, run: "true"}
  - name: prod
    repo: acme/app
    transport: local
    deploy_on: tag
    steps:
      - {name: b, timeout: 1m}
`)
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted it")
	}
	want := []string{
		"no webhook secret: set DEPLOYHOOK_WEBHOOK_SECRET",
		`log.format "yaml": use auto, json or text`,
		"ui.auth is not set: the console's pages show the deploys and have buttons, so they need sign-in",
		"targets[0] (prod): no SSH key: set ssh.private_key_file",
		"targets[0] (prod) step 1 (a): a step needs a timeout",
		`targets[1] (prod): target name "prod" is used twice`,
		`targets[1] (prod): deploy_on "tag": use push or workflow_run`,
		"targets[1] (prod) step 1 (b): a step needs a command (run:)",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want it to start with %q", i+1, lines[i], w)
		}
	}
	if err := withDefaults(t, "{}").Validate(); err == nil || !strings.Contains(err.Error(), "no targets: add at least one under targets:") {
		t.Errorf("no targets: %v", err)
	}
}

// Load with WithoutWebhookOrGitHub, for status and ssh, demands neither the
// webhook secret nor GitHub credentials, and turns reporting off; every other
// rule still holds. Before, every command demanded both: the rows with
// neither set failed.
func TestLoad_WithoutWebhookOrGitHub(t *testing.T) {
	report := "github: {report: true}\n" + ssh8
	tests := []struct {
		name string
		yaml string
		env  Getenv
		opts []LoadOption
		want string // "" for valid
	}{
		{"neither set", report, env(), []LoadOption{WithoutWebhookOrGitHub()}, ""},
		{"a short secret is not used", report, env("DEPLOYHOOK_WEBHOOK_SECRET", "abc"), []LoadOption{WithoutWebhookOrGitHub()}, ""},
		{"the demo", "", env(), []LoadOption{WithoutWebhookOrGitHub()}, ""},
		{"other rules hold", strings.Replace(report, "transport: ssh", "transport: telnet", 1), env(),
			[]LoadOption{WithoutWebhookOrGitHub()}, `transport "telnet": use iap, ssh or local`},
		{"without the option: no secret", report, env("DEPLOYHOOK_GITHUB_TOKEN", "ghp_x"), nil, "no webhook secret"},
		{"without the option: no credentials", report, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), nil, "github.report is on but there are no credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ""
			if tt.yaml != "" {
				p = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(p, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(p, tt.env, tt.opts...)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "\n") != 0 {
					t.Fatalf("error = %v, want only %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("want valid, got %v", err)
			}
			if *c.GitHub.Report {
				t.Error("github.report is on: the command would build a GitHub client without credentials")
			}
		})
	}
}
