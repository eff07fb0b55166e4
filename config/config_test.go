package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(kv ...string) Getenv {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

const secret16 = "0123456789abcdef0123"

func TestLoad_Local(t *testing.T) {
	c, err := Load("", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Targets) != 1 || c.Targets[0].Transport != "local" || *c.GitHub.Report {
		t.Errorf("local demo: %+v", c.Targets)
	}
	if c.Listen != "127.0.0.1:8080" || string(c.WebhookSecrets[0]) != secret16 {
		t.Errorf("listen %q secrets %q", c.Listen, c.WebhookSecrets)
	}
	// The file in the tree is the one embedded.
	disk, err := os.ReadFile("local.yaml")
	if err != nil || string(disk) != string(Local()) {
		t.Errorf("embedded local.yaml differs from config/local.yaml")
	}
}

func TestLoad_Example(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("not read at load"), 0o600)
	c, err := Load("example.yaml", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, "DEPLOYHOOK_GITHUB_TOKEN", "ghp_x", "DEPLOYHOOK_OAUTH_CLIENT_SECRET", "x"))
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Target("production")
	if tg == nil {
		t.Fatal("no production target")
	}
	if tg.VM.Instance != "dagster" || tg.AppUser != "dagster" || !*tg.SSH.GuestAttributes ||
		time.Duration(tg.Settle) != 10*time.Second || time.Duration(tg.Reconcile) != 5*time.Minute {
		t.Errorf("production = %+v", tg)
	}
	if c.MaxBody != 25<<20 || !*c.GitHub.Report || !*c.GitHub.Deployments {
		t.Errorf("max_body %d report %v", c.MaxBody, *c.GitHub.Report)
	}
	if strings.Join(tg.Units, ",") != "dagster-code,dagster" {
		t.Errorf("units = %v", tg.Units)
	}
	// example.yaml writes every key with its default.
	if *c.ShowOutput || time.Duration(*c.Retain) != DefaultRetain || *c.RetainJobs != DefaultRetainJobs || tg.Lock != DefaultLock {
		t.Errorf("show_output %v, retain %v, retain_jobs %d, lock %q: not the defaults", *c.ShowOutput, time.Duration(*c.Retain), *c.RetainJobs, tg.Lock)
	}
}

func TestLoad_SecretFiles(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "secret")
	os.WriteFile(f, []byte(secret16+"\n"), 0o600)
	c, err := Load("", env("DEPLOYHOOK_WEBHOOK_SECRET_FILE", f, "DEPLOYHOOK_WEBHOOK_SECRET_PREVIOUS", "fedcba9876543210fedc"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.WebhookSecrets) != 2 || string(c.WebhookSecrets[0]) != secret16 {
		t.Errorf("secrets = %q (the file's trailing newline must be cut)", c.WebhookSecrets)
	}
	if _, err := Load("", env("DEPLOYHOOK_WEBHOOK_SECRET_FILE", f, "DEPLOYHOOK_WEBHOOK_SECRET", secret16)); err == nil ||
		!strings.Contains(err.Error(), "set one") {
		t.Errorf("both env and file: %v", err)
	}
}

// iapOSLogin is an iap target that logs in through OS Login.
const iapOSLogin = `ui: {auth: none}
targets:
  - name: prod
    repo: acme/app
    transport: iap
    vm: {project: acme-prod, zone: us-central1-a, instance: dagster}
    ssh: {oslogin: true}
    app_dir: /srv/app
    app_user: app
`

func TestValidate_FailsClosed(t *testing.T) {
	base := func() string {
		return `ui: {auth: none}
targets:
  - name: prod
    repo: acme/app
    transport: ssh
    ssh: {address: "10.0.0.5:22", user: deploy, private_key_file: /k, known_hosts_file: /kh}
    app_dir: /srv/app
    app_user: app
`
	}
	tests := []struct {
		name string
		yaml string
		env  Getenv
		want string // a substring of the error; "" for valid
	}{
		{"valid", base(), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), ""},
		{"no secret", base(), env(), "no webhook secret: set DEPLOYHOOK_WEBHOOK_SECRET"},
		{"short secret", base(), env("DEPLOYHOOK_WEBHOOK_SECRET", "abc"), "at least 16"},
		{"unknown transport", strings.Replace(base(), "transport: ssh", "transport: telnet", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), `transport "telnet": use iap, ssh or local`},
		{"duplicate target", base() + strings.Replace(base(), "ui: {auth: none}\ntargets:\n", "", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), `target name "prod" is used twice`},
		{"no host key pin", strings.Replace(base(), ", known_hosts_file: /kh", "", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "no host key pin"},
		{"no ssh key", strings.Replace(base(), ", private_key_file: /k", "", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "no SSH key"},
		{"ssh key from env", strings.Replace(base(), ", private_key_file: /k", "", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, "DEPLOYHOOK_SSH_KEY", "pem"), ""},
		{"step without command", base() + "    steps:\n      - {name: x, timeout: 1m}\n", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "a step needs a command"},
		{"step without timeout", base() + "    steps:\n      - {name: x, run: echo}\n", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "a step needs a timeout"},
		{"unknown key", base() + "    colour: blue\n", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), `line 9: unknown key "colour" in targets[0] (prod)`},
		{"workflow_run without workflows", strings.Replace(base(), "repo: acme/app", "repo: acme/app\n    deploy_on: workflow_run", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "needs workflows"},
		{"iap without vm", strings.Replace(base(), "transport: ssh", "transport: iap", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "needs vm.project"},
		{"bad repo", strings.Replace(base(), "acme/app", "acme", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "must be owner/name"},
		{"report without credentials", "github: {report: true}\n" + base(), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "no credentials"},
		{"half an app", "github: {app_id: 1}\n" + base(), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "needs app_id, installation_id and private_key_file"},
		{"oslogin needs no user or key", iapOSLogin, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), ""},
		{"oslogin with a user", strings.Replace(iapOSLogin, "oslogin: true", "oslogin: true, user: deploy", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "with ssh.oslogin, remove ssh.user"},
		{"oslogin with a key file", strings.Replace(iapOSLogin, "oslogin: true", "oslogin: true, private_key_file: /k", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "with ssh.oslogin, remove ssh.user, ssh.private_key_file"},
		{"oslogin over ssh", strings.Replace(base(), "known_hosts_file: /kh", "known_hosts_file: /kh, oslogin: true", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "ssh.oslogin needs transport iap"},
		{"iap without key suggests oslogin", strings.Replace(iapOSLogin, "oslogin: true", "user: deploy", 1), env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), "or ssh.oslogin: true"},
		{"bad duration", base() + "    settle: soon\n", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16), `"soon" is not a duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(p, []byte(tc.yaml), 0o600)
			_, err := Load(p, tc.env)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want valid, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), secret16) {
				t.Errorf("error text contains the secret: %v", err)
			}
		})
	}
}

func TestLoad_OSLoginURL(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte(iapOSLogin), 0o600)
	c, err := Load(p, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, "DEPLOYHOOK_OSLOGIN_URL", "http://127.0.0.1:1/"))
	if err != nil {
		t.Fatal(err)
	}
	if c.OSLoginURL != "http://127.0.0.1:1/" || !c.Targets[0].SSH.OSLogin {
		t.Errorf("OSLoginURL %q, oslogin %v", c.OSLoginURL, c.Targets[0].SSH.OSLogin)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
	}{{"25MB", 25 << 20}, {"512KB", 512 << 10}, {"1000", 1000}, {"2 GB", 2 << 30}}
	for _, tc := range tests {
		c, err := Parse([]byte("max_body: " + tc.in))
		if err != nil || c.MaxBody != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.in, c.MaxBody, err, tc.want)
		}
	}
	if _, err := Parse([]byte("max_body: lots")); err == nil {
		t.Error("max_body: lots parsed")
	}
}
