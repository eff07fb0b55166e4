// Package config reads deployhook's configuration: a YAML file for everything that
// may live in git, and the environment (or files named by it) for secrets. Load
// reads both; Validate fails closed with a message that says what to set and where.
//
// Only package main imports config: it copies the values into the other packages'
// constructor options. A value that has a type in the core (deploy_on is an
// executor.DeployOn, transport an executor.TransportKind) is decoded into that
// type: Validate checks it with the type's one rule (Valid) and says what to
// write, and main copies it as it is.
package config

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/deployhook/deployhook/executor"
)

//go:embed local.yaml example.yaml
var files embed.FS

// Local returns the embedded demo configuration (config/local.yaml): local transport,
// steps that work on any machine, GitHub reports logged instead of sent.
func Local() []byte {
	b, _ := files.ReadFile("local.yaml")
	return b
}

// Example returns the embedded config/example.yaml, which documents every key.
func Example() []byte {
	b, _ := files.ReadFile("example.yaml")
	return b
}

// Config is the whole configuration.
type Config struct {
	Listen        string   `yaml:"listen"`
	PublicURL     string   `yaml:"public_url"`
	DataDir       string   `yaml:"data_dir"`
	MaxBody       ByteSize `yaml:"max_body"`
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	Badges        Badges   `yaml:"badges"` // true, false or private (config/badges.go)
	// ShowOutput puts the steps' output tails and error texts on the job pages,
	// which are linked from GitHub. Default false: output may name hosts or
	// carry what a step printed, and the pages are public.
	ShowOutput *bool `yaml:"show_output"`
	// Retain is how long the journal keeps finished jobs, their steps, deliveries
	// and settled reports (default 90d, at least 7d); RetainJobs caps the jobs
	// kept per target (default 1000).
	Retain     *Duration `yaml:"retain"`
	RetainJobs *int      `yaml:"retain_jobs"`
	// Lease is how long a deployhook process owns its jobs without renewing
	// (it renews every third of it): when a process dies, another one ends its
	// running jobs as interrupted, and runs its queued ones, once the lease
	// is over. Default 30s.
	Lease Duration `yaml:"lease"`
	// MetricsListen is the address of /metrics' own listener (MetricsPlace).
	MetricsListen string `yaml:"metrics_listen"`
	// Store is the journal's PostgreSQL database, a postgres:// URL without a
	// password (put one in DEPLOYHOOK_DATABASE_URL). Empty: the SQLite journal
	// in data_dir. DatabaseURL, from the environment, takes its place.
	Store   string   `yaml:"store"`
	Log     Log      `yaml:"log"`
	GitHub  GitHub   `yaml:"github"`
	UI      UI       `yaml:"ui"`     // sign-in to the console: config/ui.go
	Notify  Notify   `yaml:"notify"` // Slack and Google Chat notices (config/notify.go)
	Targets []Target `yaml:"targets"`

	Replicas  bool     `yaml:"replicas"`   // several deployhook serve share the PostgreSQL journal (config/replicas.go)
	LaneLease Duration `yaml:"lane_lease"` // a replica's lease on a target's lane (config/replicas.go)

	// Secrets, from the environment only (see Load).
	WebhookSecrets [][]byte `yaml:"-"`
	GitHubToken    string   `yaml:"-"`
	SSHKey         []byte   `yaml:"-"` // DEPLOYHOOK_SSH_KEY: a PEM private key for every SSH target without a key file
	SSHPassphrase  []byte   `yaml:"-"`
	// DatabaseURL is DEPLOYHOOK_DATABASE_URL (or _FILE): the journal's
	// PostgreSQL URL, password included. It is never logged.
	DatabaseURL string `yaml:"-"`
	// Endpoint overrides, from the environment (tests, private setups).
	IAPURL     string `yaml:"-"`
	ComputeURL string `yaml:"-"`
	OSLoginURL string `yaml:"-"` // DEPLOYHOOK_OSLOGIN_URL: the OS Login API
	// GoogleCredentials is GOOGLE_APPLICATION_CREDENTIALS, or
	// GOOGLE_APPLICATION_CREDENTIALS_FILE (Load refuses both): a credentials
	// JSON file. Empty: Application Default Credentials' other sources (the
	// metadata server on Google Cloud, gcloud's user credentials).
	GoogleCredentials string `yaml:"-"`
	// googleSetting is the variable GoogleCredentials came from, for FileWarnings.
	googleSetting string

	// secretFiles are the NAME_FILE variables that were set, for FileWarnings.
	secretFiles []namedFile
}

// Log configures logging.
type Log struct {
	Format string `yaml:"format"` // auto (JSON unless stderr is a terminal), json, text
	Level  string `yaml:"level"`  // debug, info, warn, error
}

// GitHub configures reporting to GitHub.
type GitHub struct {
	APIURL         string `yaml:"api_url"`
	WebURL         string `yaml:"web_url"` // OAuth endpoints for console sign-in (GHES: https://HOST/)
	webURLDerived  bool   // WebURL was not set: it is api_url's host (uiDefaults)
	AppID          int64  `yaml:"app_id"`
	InstallationID int64  `yaml:"installation_id"`
	PrivateKeyFile string `yaml:"private_key_file"`
	Deployments    *bool  `yaml:"deployments"`
	// Report false logs reports instead of sending them (the local demo). Default:
	// true when a token or an App is configured.
	Report *bool `yaml:"report"`
}

// Target is one deploy target.
type Target struct {
	Name string `yaml:"name"`
	Repo string `yaml:"repo"` // owner/name, ASCII
	// RepoID, when set, pins the repository's numeric id: a delivery for a
	// repository of the same name but another id (deleted and re-created, or
	// renamed and the name taken over) is refused.
	RepoID           int64                  `yaml:"repo_id"`
	Branch           string                 `yaml:"branch"`
	DeployOn         executor.DeployOn      `yaml:"deploy_on"` // push | workflow_run; default push
	Workflows        []string               `yaml:"workflows"`
	DispatchWorkflow string                 `yaml:"dispatch_workflow"`
	Environment      string                 `yaml:"environment"`
	Transport        executor.TransportKind `yaml:"transport"` // iap | ssh | local
	VM               VM                     `yaml:"vm"`
	SSH              SSH                    `yaml:"ssh"`
	AppDir           string                 `yaml:"app_dir"`
	// AppUser owns the checkout in AppDir: git and uv run as it. The default
	// sequence requires it, so git never runs as the login user, who can sudo.
	AppUser    string   `yaml:"app_user"`
	Units      []string `yaml:"units"`
	Settle     Duration `yaml:"settle"`
	AllowDirty bool     `yaml:"allow_dirty"`
	// Lock is the flock file that serializes deploys on the target. Default
	// for iap and ssh: .deployhook/deploy.lock, relative to the login user's
	// home, which only that user can write.
	Lock       string   `yaml:"lock"`
	LockWait   Duration `yaml:"lock_wait"`
	Rollback   *bool    `yaml:"rollback"`
	NotApplied []string `yaml:"not_applied"`
	Reconcile  Duration `yaml:"reconcile_every"`
	// Env is added to every step's environment (a step's own env wins).
	Env   map[string]string `yaml:"env"`
	Steps []Step            `yaml:"steps"`

	// Notify is what the target announces, and where (config/notify.go);
	// a key it leaves unset takes the global notify:'s.
	Notify        *NotifyRule      `yaml:"notify"`
	Watch         *Watch           `yaml:"watch"` // the post-deploy watch (watch.go)
	ApplyOptions  `yaml:",inline"` // apply, apply_units, apply_dagster_yaml, apply_backup_dir (config/apply.go)
	VerifyOptions `yaml:",inline"` // verify, verify_within (config/verify.go)
	FleetOptions  `yaml:",inline"` // vms, group, labels, rollout (config/fleet.go)
}

// VM names a Compute Engine instance.
type VM struct {
	Project   string `yaml:"project"`
	Zone      string `yaml:"zone"`
	Instance  string `yaml:"instance"`
	Interface string `yaml:"interface"` // default: the instance's first NIC
	Port      int    `yaml:"port"`      // default 22
}

// SSH configures the SSH connection of a target.
type SSH struct {
	Address         string       `yaml:"address"`   // transport ssh only
	Addresses       []SSHAddress `yaml:"addresses"` // transport ssh: a fleet (config/fleet.go)
	User            string       `yaml:"user"`
	PrivateKeyFile  string       `yaml:"private_key_file"`
	CertificateFile string       `yaml:"certificate_file"`
	KnownHostsFile  string       `yaml:"known_hosts_file"`
	HostKeys        []string     `yaml:"host_keys"` // authorized_keys format: "ssh-ed25519 AAAA..."
	// GuestAttributes reads the VM's host keys from its guest attributes (transport
	// iap). Default true for iap when no other pin is configured.
	GuestAttributes *bool    `yaml:"host_keys_from_guest_attributes"`
	Timeout         Duration `yaml:"timeout"`
	KeepAlive       Duration `yaml:"keepalive"`
	// OSLogin (transport iap) logs in with a key made for each deploy and
	// imported into the deployer's OS Login profile with a short expiry, as the
	// POSIX user OS Login gives the deployer: User, PrivateKeyFile and
	// CertificateFile are then not used.
	OSLogin bool `yaml:"oslogin"`
}

// Step is one command of a deploy.
type Step struct {
	Name        string            `yaml:"name"`
	Run         string            `yaml:"run"`
	User        string            `yaml:"user"`
	Sudo        bool              `yaml:"sudo"`
	Dir         string            `yaml:"dir"`
	Env         map[string]string `yaml:"env"`
	Timeout     Duration          `yaml:"timeout"`
	WhenChanged []string          `yaml:"when_changed"`
	Checkpoint  bool              `yaml:"checkpoint"`
	Rollback    *bool             `yaml:"rollback"`
}

// Duration is a time.Duration written as "10m", "90s", or with a leading
// number of days: "90d", "1d12h".
type Duration time.Duration

// UnmarshalYAML reads a Go duration string, optionally led by a number of days.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write 90s, 10m, 1h or 90d)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// maxDays bounds the days of a Duration far below time.Duration's 292 years.
const maxDays = 36500

// parseDuration is time.ParseDuration that also takes a leading "Nd" (N whole
// days of 24 hours): "90d", "1d12h". Go durations have no "d" unit, so a "d"
// can only be the days.
func parseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	if days == "" || len(days) > 5 || strings.Trim(days, "0123456789") != "" {
		return 0, fmt.Errorf("%q: days must be a whole number", s)
	}
	var n int64
	for _, c := range days {
		n = n*10 + int64(c-'0')
	}
	if n > maxDays {
		return 0, fmt.Errorf("%q: more than %d days", s, maxDays)
	}
	v := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("%q: %q after the days is not a duration", s, rest)
		}
		v += r
	}
	return v, nil
}

// days writes d as whole days when it is some ("3d"), else as Go does.
func days(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// ByteSize is a size written as "25MB", "512KB" or a number of bytes.
type ByteSize int64

// UnmarshalYAML reads a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}, {"", 1}}
	s = strings.TrimSpace(strings.ToUpper(s))
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			var v int64
			if _, err := fmt.Sscan(strings.TrimSpace(num), &v); err == nil && v > 0 {
				*b = ByteSize(v * u.mult)
				return nil
			}
			break
		}
	}
	return fmt.Errorf("line %d: %q is not a size (write 25MB, 512KB)", n.Line, s)
}

// Getenv is os.Getenv's signature, so tests can pass a map.
type Getenv func(string) string

// Load reads the YAML file at path (the embedded local demo when path is empty),
// the secrets from the environment, applies defaults and validates the result
// (Validate, less what opts leave out).
func Load(path string, getenv Getenv, opts ...LoadOption) (*Config, error) {
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	var data []byte
	if path == "" {
		data = Local()
		path = "(embedded config/local.yaml)"
	} else {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.readEnv(getenv); err != nil {
		return nil, err
	}
	c.defaults()
	if err := c.validate(o); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if o.noWebhookOrGitHub {
		c.GitHub.Report = boolPtr(false)
	}
	return c, nil
}

// A LoadOption changes what Load demands of the configuration.
type LoadOption func(*loadOptions)

// loadOptions are the LoadOptions given to Load.
type loadOptions struct {
	noWebhookOrGitHub bool
}

// WithoutWebhookOrGitHub is for the commands that neither receive webhooks
// nor talk to GitHub (status reads the journal, ssh opens a shell): Load then
// demands no webhook secret and no GitHub credentials, and returns the
// configuration with github.report off, so nothing is built that would need
// them. Every other rule still holds.
func WithoutWebhookOrGitHub() LoadOption {
	return func(o *loadOptions) { o.noWebhookOrGitHub = true }
}

// Parse decodes YAML strictly: an unknown key is an error, so a typo never
// silently turns a setting off. It reports every unknown key, repeated key and
// value of the wrong kind in the file at once, joined in one error
// (errors.Join) in the order of the file, each as "line N: ..." naming the
// YAML key, with the known key an unknown one most resembles.
func Parse(data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if errs := checkDocument(&doc); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return &c, nil
}

// secret reads NAME from the environment or the file NAME_FILE names.
func secret(getenv Getenv, name string) ([]byte, error) {
	v := getenv(name)
	f := getenv(name + "_FILE")
	switch {
	case v != "" && f != "":
		return nil, fmt.Errorf("both %s and %s_FILE are set: set one", name, name)
	case f != "":
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read %s_FILE: %w", name, err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	}
	return []byte(v), nil
}

func (c *Config) readEnv(getenv Getenv) error {
	secret := func(name string) ([]byte, error) {
		if f := getenv(name + "_FILE"); f != "" {
			c.secretFiles = append(c.secretFiles, namedFile{name + "_FILE", f})
		}
		return secret(getenv, name)
	}
	for _, name := range []string{"DEPLOYHOOK_WEBHOOK_SECRET", "DEPLOYHOOK_WEBHOOK_SECRET_PREVIOUS"} {
		s, err := secret(name)
		if err != nil {
			return err
		}
		if len(s) > 0 {
			c.WebhookSecrets = append(c.WebhookSecrets, s)
		}
	}
	tok, err := secret("DEPLOYHOOK_GITHUB_TOKEN")
	if err != nil {
		return err
	}
	c.GitHubToken = string(tok)
	if c.SSHKey, err = secret("DEPLOYHOOK_SSH_KEY"); err != nil {
		return err
	}
	if c.SSHPassphrase, err = secret("DEPLOYHOOK_SSH_KEY_PASSPHRASE"); err != nil {
		return err
	}
	db, err := secret("DEPLOYHOOK_DATABASE_URL")
	if err != nil {
		return err
	}
	c.DatabaseURL = string(db)
	if err := c.UI.readEnv(secret); err != nil {
		return err
	}
	if err := c.readNotifyEnv(secret); err != nil {
		return err
	}
	c.IAPURL = getenv("DEPLOYHOOK_IAP_URL")
	c.ComputeURL = getenv("DEPLOYHOOK_COMPUTE_URL")
	c.OSLoginURL = getenv("DEPLOYHOOK_OSLOGIN_URL")
	// GOOGLE_APPLICATION_CREDENTIALS already names a file; its _FILE form
	// names the same credentials JSON file (systemd's LoadCredential and
	// mounted secrets give paths under names ending in _FILE).
	gac, gacFile := getenv("GOOGLE_APPLICATION_CREDENTIALS"), getenv("GOOGLE_APPLICATION_CREDENTIALS_FILE")
	switch {
	case gac != "" && gacFile != "":
		return errors.New("both GOOGLE_APPLICATION_CREDENTIALS and GOOGLE_APPLICATION_CREDENTIALS_FILE are set: set one")
	case gacFile != "":
		c.GoogleCredentials, c.googleSetting = gacFile, "GOOGLE_APPLICATION_CREDENTIALS_FILE"
	default:
		c.GoogleCredentials, c.googleSetting = gac, "GOOGLE_APPLICATION_CREDENTIALS"
	}
	if v := getenv("DEPLOYHOOK_GITHUB_API_URL"); v != "" {
		c.GitHub.APIURL = v
	}
	return nil
}

// JournalURL returns the PostgreSQL URL of the journal: DEPLOYHOOK_DATABASE_URL
// if set, else store; empty for the SQLite journal in data_dir.
func (c *Config) JournalURL() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return c.Store
}

func boolPtr(b bool) *bool { return &b }

// Defaults that other parts of the program name.
const (
	// DefaultLock is the deploy lock of iap and ssh targets. The transport
	// resolves a relative path in the login user's home, a directory only that
	// user can write. It used to be /run/lock/deployhook.lock, but /run/lock is
	// writable by every user of the VM: any of them could pre-create the file
	// (fs.protected_regular then refuses it even to root) or hold it with flock
	// and block every deploy.
	DefaultLock = ".deployhook/deploy.lock"
	// DefaultRetain is how long the journal keeps finished jobs by default.
	DefaultRetain = 90 * 24 * time.Hour
	// DefaultRetainJobs is how many jobs per target the journal keeps by default.
	DefaultRetainJobs = 1000
	// DefaultLease is how long a process owns its jobs without renewing.
	DefaultLease = 30 * time.Second
)

// Bounds of the retention settings.
const (
	// MinRetain is the shortest retain accepted: GitHub Enterprise Server lets a
	// delivery be redelivered for 7 days, github.com for 3 (GitHub's docs,
	// "Redelivering webhooks"), and the journal must still know a delivery that
	// can come back, so a redelivery is recognised and never deploys twice.
	MinRetain = 7 * 24 * time.Hour
	// MaxRetain is the longest: ten years.
	MaxRetain = 3650 * 24 * time.Hour
	// MinRetainJobs keeps enough history per target for a rollback to a
	// previous deploy and for knowing the commits the target deployed before.
	MinRetainJobs = 10
	// MaxRetainJobs keeps the journal small enough to prune quickly.
	MaxRetainJobs = 1_000_000
)

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.DataDir == "" {
		c.DataDir = "./.deployhook"
	}
	if c.MaxBody == 0 {
		c.MaxBody = 25 << 20 // GitHub caps payloads at 25 MB (GITHUB-FACTS: payload_cap)
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = Duration(2 * time.Minute)
	}
	if c.ShowOutput == nil {
		c.ShowOutput = boolPtr(false)
	}
	if c.Retain == nil {
		d := Duration(DefaultRetain)
		c.Retain = &d
	}
	if c.RetainJobs == nil {
		n := DefaultRetainJobs
		c.RetainJobs = &n
	}
	if c.Lease == 0 {
		c.Lease = Duration(DefaultLease)
	}
	c.uiDefaults()
	if c.Log.Format == "" {
		c.Log.Format = "auto"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.GitHub.APIURL == "" {
		c.GitHub.APIURL = "https://api.github.com/"
	}
	if c.GitHub.Deployments == nil {
		c.GitHub.Deployments = boolPtr(true)
	}
	if c.GitHub.Report == nil {
		c.GitHub.Report = boolPtr(c.GitHubToken != "" || c.GitHub.AppID != 0)
	}
	for i := range c.Targets {
		t := &c.Targets[i]
		if t.Branch == "" {
			t.Branch = "main"
		}
		if t.DeployOn == "" {
			t.DeployOn = executor.DeployOnPush
		}
		if t.Environment == "" {
			t.Environment = t.Name
		}
		if t.Rollback == nil {
			t.Rollback = boolPtr(true)
		}
		if t.Settle == 0 {
			t.Settle = Duration(10 * time.Second)
		}
		if t.LockWait == 0 {
			t.LockWait = Duration(10 * time.Minute)
		}
		if t.Lock == "" && t.Transport != executor.TransportLocal {
			t.Lock = DefaultLock
		}
		if t.NotApplied == nil && t.AppDir != "" {
			t.NotApplied = []string{"infra/**", "dagster.yaml"}
		}
		if t.Units == nil && t.AppDir != "" && len(t.Steps) == 0 {
			t.Units = []string{"dagster-code", "dagster"}
		}
		if t.VM.Port == 0 {
			t.VM.Port = 22
		}
		if t.SSH.Timeout == 0 {
			t.SSH.Timeout = Duration(30 * time.Second)
		}
		if t.SSH.KeepAlive == 0 {
			t.SSH.KeepAlive = Duration(15 * time.Second)
		}
		if t.SSH.GuestAttributes == nil {
			pinned := t.SSH.KnownHostsFile != "" || len(t.SSH.HostKeys) > 0
			t.SSH.GuestAttributes = boolPtr(t.Transport == executor.TransportIAP && !pinned)
		}
	}
}

// Target returns the target named name, or nil.
func (c *Config) Target(name string) *Target {
	for i := range c.Targets {
		if c.Targets[i].Name == name {
			return &c.Targets[i]
		}
	}
	return nil
}
