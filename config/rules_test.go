package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ssh8 is a valid ssh target with the default sequence, for the issue 8 rules.
const ssh8 = `ui: {auth: none}
targets:
  - name: prod
    repo: acme/app
    transport: ssh
    ssh: {address: "10.0.0.5:22", user: deploy, private_key_file: /k, known_hosts_file: /kh}
    app_dir: /srv/app
    app_user: app
`

// TestValidate_Issue8Rules has one row per configuration rule added for issue 8
// (safe defaults for what is public, endpoint overrides, ASCII repository
// names, repo_id, retention, app_user, the lock's directory). Before the
// change every error row's configuration was accepted, except "repo kelvin
// sign" (refused, but the message did not say ASCII: the row failed on the
// text) and "repo three parts" (refused as now: kept to pin the rule). An
// error row must produce exactly that one problem, so a row cannot pass on
// another rule's message.
func TestValidate_Issue8Rules(t *testing.T) {
	sec := []string{"DEPLOYHOOK_WEBHOOK_SECRET", secret16}
	envWith := func(kv ...string) Getenv { return env(append(append([]string(nil), sec...), kv...)...) }
	top := func(lines string) string { return lines + ssh8 }
	tgt := func(old, new string) string { return strings.Replace(ssh8, old, new, 1) }
	tests := []struct {
		name string
		yaml string
		env  Getenv
		want string // the exact fragment of the only error; "" for valid
	}{
		{"valid", ssh8, envWith(), ""},

		// Endpoint overrides carry tokens: https/wss unless loopback.
		{"api_url http remote", top("github: {api_url: \"http://ghe.example.com/api/v3/\"}\n"), envWith(),
			`github.api_url (or DEPLOYHOOK_GITHUB_API_URL) "http://ghe.example.com/api/v3/" sends credentials in cleartext: use https://`},
		{"api_url http loopback", top("github: {api_url: \"http://127.0.0.1:9/\"}\n"), envWith(), ""},
		{"api_url https", top("github: {api_url: \"https://ghe.example.com/api/v3/\"}\n"), envWith(), ""},
		{"api_url from env http remote", ssh8, envWith("DEPLOYHOOK_GITHUB_API_URL", "http://10.1.2.3/"),
			`github.api_url (or DEPLOYHOOK_GITHUB_API_URL) "http://10.1.2.3/" sends credentials in cleartext: use https://`},
		{"iap url ws remote", ssh8, envWith("DEPLOYHOOK_IAP_URL", "ws://relay.example.com/v4"),
			`DEPLOYHOOK_IAP_URL "ws://relay.example.com/v4" sends credentials in cleartext: use wss://`},
		{"iap url ws loopback", ssh8, envWith("DEPLOYHOOK_IAP_URL", "ws://127.0.0.1:7/v4"), ""},
		{"compute url http remote", ssh8, envWith("DEPLOYHOOK_COMPUTE_URL", "http://compute.example.com"),
			`DEPLOYHOOK_COMPUTE_URL "http://compute.example.com" sends credentials in cleartext: use https://`},
		{"oslogin url http remote", ssh8, envWith("DEPLOYHOOK_OSLOGIN_URL", "http://oslogin.example.com"),
			`DEPLOYHOOK_OSLOGIN_URL "http://oslogin.example.com" sends credentials in cleartext: use https://`},
		{"oslogin url https", ssh8, envWith("DEPLOYHOOK_OSLOGIN_URL", "https://oslogin.example.com"), ""},

		// Repository names: ASCII owner/name only.
		{"repo kelvin sign", tgt("acme/app", "acme/\u212aey"), envWith(), `repo "acme/\u212aey" must be owner/name, in ASCII`},
		{"repo three parts", tgt("acme/app", "acme/app/x"), envWith(), `repo "acme/app/x" must be owner/name`},
		{"repo dot dot", tgt("acme/app", "acme/.."), envWith(), `repo "acme/..": ".." is not a repository name`},
		{"repo .git", tgt("acme/app", "acme/app.GIT"), envWith(), `repo "acme/app.GIT": write the name without .git`},
		{"repo owner hyphen first", tgt("acme/app", "-acme/app"), envWith(), `repo "-acme/app" must be owner/name`},
		{"repo mixed case and managed user", tgt("acme/app", "Acme_ab12/My-App.v2"), envWith(), ""},
		{"repo_id negative", tgt("repo: acme/app", "repo: acme/app\n    repo_id: -5"), envWith(),
			"repo_id -5: give the repository's numeric id (gh api repos/acme/app --jq .id)"},
		{"repo_id", tgt("repo: acme/app", "repo: acme/app\n    repo_id: 123456789"), envWith(), ""},

		// Retention.
		{"retain days", top("retain: 30d\nretain_jobs: 50\n"), envWith(), ""},
		{"retain too short", top("retain: 3d\n"), envWith(), "retain 3d: keep the journal between 7d and 3650d"},
		{"retain zero", top("retain: 0s\n"), envWith(), "retain 0s: keep the journal between 7d and 3650d"},
		{"retain hours", top("retain: 36h\n"), envWith(), "retain 36h0m0s: keep the journal between 7d and 3650d"},
		{"retain too long", top("retain: 3651d\n"), envWith(), "retain 3651d: keep the journal between 7d and 3650d"},
		{"retain not a duration", top("retain: forever\n"), envWith(), `"forever" is not a duration (write 90s, 10m, 1h or 90d)`},
		{"retain_jobs too few", top("retain_jobs: 0\n"), envWith(), "retain_jobs 0: keep between 10 and 1000000 jobs per target"},
		{"lease short", top("lease: 5s\n"), envWith(), ""},
		{"lease too short", top("lease: 500ms\n"), envWith(), "lease 500ms: between 1s and 10m"},
		{"lease too long", top("lease: 1h\n"), envWith(), "lease 1h0m0s: between 1s and 10m"},
		{"retain_jobs too many", top("retain_jobs: 1000001\n"), envWith(), "retain_jobs 1000001: keep between 10 and 1000000 jobs per target"},

		// app_user: the default sequence needs it, and it is never root.
		{"default sequence without app_user", tgt("    app_user: app\n", ""), envWith(),
			"the default sequence (no steps:) needs app_user: the account that owns the checkout in app_dir"},
		{"app_user root", tgt("app_user: app", "app_user: root"), envWith(), "app_user root: git and uv would run as root"},
		{"steps without app_user", tgt("    app_user: app\n", "    steps:\n      - {name: x, run: echo, timeout: 1m}\n"), envWith(), ""},

		// The lock never lives directly in a directory every user can write.
		{"lock in /run/lock", tgt("app_user: app", "app_user: app\n    lock: /run/lock/deployhook.lock"), envWith(),
			`lock "/run/lock/deployhook.lock" is in /run/lock, which every user can write`},
		{"lock in /tmp", tgt("app_user: app", "app_user: app\n    lock: /tmp//x/../deploy.lock"), envWith(),
			`lock "/tmp//x/../deploy.lock" is in /tmp, which every user can write`},
		{"lock in /dev/shm", tgt("app_user: app", "app_user: app\n    lock: /dev/shm/d.lock"), envWith(), `is in /dev/shm, which every user can write`},
		{"lock in an owned directory", tgt("app_user: app", "app_user: app\n    lock: /home/deploy/locks/deploy.lock"), envWith(), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p, tc.env)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("%d problems, want only this one: %v", n, err)
			}
		})
	}
}

// TestLoad_Defaults pins the issue 8 defaults: step output off the public
// pages (it was on before), retention, and the deploy lock out of /run/lock
// (it was /run/lock/deployhook.lock before).
func TestLoad_Defaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(ssh8), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16))
	if err != nil {
		t.Fatal(err)
	}
	if *c.ShowOutput {
		t.Error("show_output defaults to true, want false")
	}
	if got := time.Duration(*c.Retain); got != 90*24*time.Hour {
		t.Errorf("retain = %v, want 90 days", got)
	}
	if *c.RetainJobs != 1000 {
		t.Errorf("retain_jobs = %d, want 1000", *c.RetainJobs)
	}
	if got := c.Targets[0].Lock; got != ".deployhook/deploy.lock" {
		t.Errorf("lock = %q, want .deployhook/deploy.lock", got)
	}
	if c.Targets[0].RepoID != 0 {
		t.Errorf("repo_id = %d, want 0 (not pinned)", c.Targets[0].RepoID)
	}
	l, err := Load("", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16))
	if err != nil {
		t.Fatal(err)
	}
	if *l.ShowOutput || l.Targets[0].AppUser != "" || l.Targets[0].Lock != ".deployhook/demo.lock" {
		t.Errorf("local demo: show_output %v, app_user %q, lock %q", *l.ShowOutput, l.Targets[0].AppUser, l.Targets[0].Lock)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "10m", want: 10 * time.Minute},
		{in: "90d", want: 90 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "0d", want: 0},
		{in: "36500d", want: 36500 * 24 * time.Hour},
		{in: "36501d", wantErr: "more than 36500 days"},
		{in: "d", wantErr: "days must be a whole number"},
		{in: "1.5d", wantErr: "days must be a whole number"},
		{in: "-1d", wantErr: "days must be a whole number"},
		{in: "1d-1h", wantErr: `"-1h" after the days is not a duration`},
		{in: "1dd", wantErr: `"d" after the days is not a duration`},
		{in: "1d5", wantErr: `"5" after the days is not a duration`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseDuration(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseDuration(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestPrepareDataDir runs the data_dir rules on a real file system. Before
// issue 8 an existing data_dir was used whatever its owner and mode, and a
// symbolic link was followed: the error rows failed then.
func TestPrepareDataDir(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, mode fs.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // no umask
			t.Fatal(err)
		}
		return p
	}
	owned := mk("owned", 0o700)
	readable := mk("readable", 0o755)
	open := mk("open", 0o777)
	group := mk("group", 0o770)
	link := filepath.Join(base, "link")
	if err := os.Symlink(owned, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		wantErr string
	}{
		{"existing 0700", owned, ""},
		{"existing 0755", readable, ""},
		{"missing, with parents", filepath.Join(base, "new", "data"), ""},
		{"world-writable", open, "data_dir " + open + " is writable by group or others (mode 0777): chmod 700 " + open},
		{"group-writable", group, "is writable by group or others (mode 0770)"},
		{"symlink", link, "data_dir " + link + " is a symbolic link: set data_dir to the directory it points to"},
		{"symlink with a trailing slash", link + "/", "data_dir " + link + " is a symbolic link"},
		{"file", file, "data_dir " + file + " is not a directory"},
		{"empty", "", "data_dir is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := PrepareDataDir(tc.dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("PrepareDataDir(%s) = %v, want %q", tc.dir, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("PrepareDataDir(%s) = %v", tc.dir, err)
			}
			fi, err := os.Lstat(tc.dir)
			if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
				t.Fatalf("after PrepareDataDir: %v %v", fi.Mode(), err)
			}
		})
	}
	t.Run("created 0700", func(t *testing.T) {
		dir := filepath.Join(base, "fresh")
		if err := PrepareDataDir(dir); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("mode %v, %v; want 0700", fi.Mode().Perm(), err)
		}
	})
	t.Run("owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			if os.Getenv("CI") != "" {
				t.Fatal("CI runs the tests as root: chown needs it")
			}
			t.Skip("not root: cannot give a directory to another user (dataDirProblem's table covers the rule)")
		}
		dir := mk("theirs", 0o700)
		if err := os.Chown(dir, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		err := PrepareDataDir(dir)
		want := "data_dir " + dir + " is owned by uid 4242, not by the user deployhook runs as (uid 0): chown 0 " + dir
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("PrepareDataDir = %v, want %q", err, want)
		}
	})
}

func TestDataDirProblem(t *testing.T) {
	tests := []struct {
		name     string
		mode     fs.FileMode
		owner    int
		hasOwner bool
		wantErr  string
	}{
		{"ours 0700", fs.ModeDir | 0o700, 1000, true, ""},
		{"ours 0750", fs.ModeDir | 0o750, 1000, true, ""},
		{"owner unknown (not unix)", fs.ModeDir | 0o700, 0, false, ""},
		{"another user's", fs.ModeDir | 0o700, 1001, true, "is owned by uid 1001, not by the user deployhook runs as (uid 1000): chown 1000 /d"},
		{"root's, we are not root", fs.ModeDir | 0o755, 0, true, "is owned by uid 0"},
		{"group-writable", fs.ModeDir | 0o775, 1000, true, "writable by group or others (mode 0775): chmod 700 /d"},
		{"world-writable sticky", fs.ModeDir | fs.ModeSticky | 0o777, 1000, true, "writable by group or others (mode 0777)"},
		{"symlink", fs.ModeSymlink | 0o777, 1000, true, "is a symbolic link"},
		{"file", 0o600, 1000, true, "is not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := dataDirProblem("/d", tc.mode, tc.owner, tc.hasOwner, 1000)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestConfig_FileWarnings: a secret or key file that others may read is
// named, with the setting and the fix; one only its owner reads is not.
// Nothing warned before issue 8.
func TestConfig_FileWarnings(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, mode fs.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(secret16), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hook := file("hook", 0o600)
	token := file("token", 0o640)
	sshKey := file("ssh", 0o644)
	appKey := file("app.pem", 0o604)
	google := file("google.json", 0o400)
	cfg := strings.Replace(ssh8, "private_key_file: /k", "private_key_file: "+sshKey, 1)
	cfg = "github: {app_id: 1, installation_id: 2, private_key_file: " + appKey + "}\n" + cfg
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The token is refused beside an App, so read it as the previous webhook
	// secret: any NAME_FILE is checked the same way.
	c, err := Load(p, env("DEPLOYHOOK_WEBHOOK_SECRET_FILE", hook, "DEPLOYHOOK_WEBHOOK_SECRET_PREVIOUS_FILE", token,
		"GOOGLE_APPLICATION_CREDENTIALS", google))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"DEPLOYHOOK_WEBHOOK_SECRET_PREVIOUS_FILE " + token + " is readable by group or others (mode 0640): chmod 600 " + token,
		"github.private_key_file " + appKey + " is readable by group or others (mode 0604): chmod 600 " + appKey,
		"targets prod ssh.private_key_file " + sshKey + " is readable by group or others (mode 0644): chmod 600 " + sshKey,
	}
	got := c.FileWarnings()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("FileWarnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A missing file is left to whoever reads it.
	c.GitHub.PrivateKeyFile = filepath.Join(dir, "missing")
	if got := c.FileWarnings(); len(got) != 2 {
		t.Errorf("with a missing key file: %q, want the two others", got)
	}
}
