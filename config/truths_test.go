package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every secret the README names ("Each also reads NAME_FILE for mounted
// secrets") is read from the file NAME_FILE names, and setting both NAME and
// NAME_FILE is refused. GOOGLE_APPLICATION_CREDENTIALS_FILE was ignored
// before (issue 12): its row failed.
func TestLoad_EverySecretReadsFILE(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const other = "fedcba9876543210fedc"
	creds := write("google.json", `{"type": "service_account"}`)
	tests := []struct {
		name    string
		content string // the file's content
		got     func(c *Config) string
		want    string
	}{
		{"DEPLOYHOOK_WEBHOOK_SECRET", secret16 + "\n", func(c *Config) string { return string(c.WebhookSecrets[0]) }, secret16},
		{"DEPLOYHOOK_WEBHOOK_SECRET_PREVIOUS", other + "\n", func(c *Config) string { return string(c.WebhookSecrets[len(c.WebhookSecrets)-1]) }, other},
		{"DEPLOYHOOK_GITHUB_TOKEN", "ghp_fromfile\n", func(c *Config) string { return c.GitHubToken }, "ghp_fromfile"},
		{"DEPLOYHOOK_SSH_KEY", "-----PEM-----\n", func(c *Config) string { return string(c.SSHKey) }, "-----PEM-----"},
		{"DEPLOYHOOK_SSH_KEY_PASSPHRASE", "pass\n", func(c *Config) string { return string(c.SSHPassphrase) }, "pass"},
		// The variable names a file already: its _FILE form names the same file.
		{"GOOGLE_APPLICATION_CREDENTIALS", "", func(c *Config) string { return c.GoogleCredentials }, creds},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := creds
			if tc.content != "" {
				f = write(tc.name, tc.content)
			}
			kv := []string{tc.name + "_FILE", f}
			if tc.name != "DEPLOYHOOK_WEBHOOK_SECRET" {
				kv = append(kv, "DEPLOYHOOK_WEBHOOK_SECRET", secret16)
			}
			c, err := Load("", env(kv...))
			if err != nil {
				t.Fatalf("%s_FILE: %v", tc.name, err)
			}
			if got := tc.got(c); got != tc.want {
				t.Errorf("%s_FILE: got %q, want %q", tc.name, got, tc.want)
			}
			_, err = Load("", env(append(kv, tc.name, "x-also-set-directly-x")...))
			if err == nil || !strings.Contains(err.Error(), "both "+tc.name+" and "+tc.name+"_FILE are set") {
				t.Errorf("%s and %s_FILE both set: %v, want refused", tc.name, tc.name, err)
			}
		})
	}
}

// The warning about a credentials file others can read names the variable
// that was set, so the user knows which one to fix.
func TestFileWarnings_GoogleCredentialsFILE(t *testing.T) {
	f := filepath.Join(t.TempDir(), "google.json")
	if err := os.WriteFile(f, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load("", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, "GOOGLE_APPLICATION_CREDENTIALS_FILE", f))
	if err != nil {
		t.Fatal(err)
	}
	w := c.FileWarnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], "GOOGLE_APPLICATION_CREDENTIALS_FILE "+f+" is readable by group or others") {
		t.Errorf("warnings = %q, want one naming GOOGLE_APPLICATION_CREDENTIALS_FILE", w)
	}
}

// not_applied names the files a deploy changed but does not apply; they are
// listed by git in app_dir. On a target with steps: and no app_dir it did
// nothing, silently (issue 12); now start-up refuses it.
func TestValidate_NotAppliedNeedsAppDir(t *testing.T) {
	const base = `ui: {auth: none}
targets:
  - name: prod
    repo: acme/app
    transport: local
`
	steps := "    steps:\n      - {name: deploy, run: make deploy, timeout: 1m}\n"
	tests := []struct {
		name string
		yaml string
		want string // a substring of the error; "" for valid
	}{
		{"steps without app_dir", base + steps, ""},
		{"steps and not_applied without app_dir", base + "    not_applied: [infra/**]\n" + steps,
			"targets[0] (prod): not_applied needs app_dir (the checkout whose changed files it names): set app_dir, or remove not_applied"},
		{"steps, app_dir and not_applied", base + "    app_dir: /srv/app\n    not_applied: [infra/**]\n" + steps, ""},
		{"default sequence and not_applied", base + "    app_dir: /srv/app\n    app_user: app\n    not_applied: [infra/**]\n", ""},
		{"steps and an empty not_applied", base + "    not_applied: []\n" + steps, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want valid, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
