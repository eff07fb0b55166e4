package systemd

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/config"
)

// installedPath is where the unit expects the binary.
const installedPath = "/usr/local/bin/deployhook"

// httpDrain is how long serve waits for the HTTP server to drain before it
// stops the executor (main.go's shutdown).
const httpDrain = 10 * time.Second

// requireTool returns the path of a command the test needs. Missing, it fails
// the test when CI is set and skips it otherwise.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found (Debian: apt-get install systemd): %v", name, err)
	}
	t.Skipf("%s not found (Debian: apt-get install systemd); skipped outside CI", name)
	return ""
}

// installable writes the unit (or text, when not nil) to a temporary
// directory with ExecStart pointing at an executable the test creates, since
// systemd-analyze verify refuses a unit whose binary does not exist. It returns
// the unit's path.
func installable(t *testing.T, text []byte) string {
	t.Helper()
	if text == nil {
		text = Unit()
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "deployhook")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text, []byte("ExecStart="+installedPath+" ")) {
		t.Fatalf("the unit's ExecStart does not start %s", installedPath)
	}
	text = bytes.ReplaceAll(text, []byte("ExecStart="+installedPath), []byte("ExecStart="+bin))
	p := filepath.Join(dir, "deployhook.service")
	if err := os.WriteFile(p, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// verify runs systemd-analyze verify on the unit at p and returns its
// complaints about that unit: the lines that name it, and the exit status.
func verify(t *testing.T, tool, p string) (complaints []string, err error) {
	t.Helper()
	cmd := exec.Command(tool, "verify", "--man=no", p)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		// Other units on the machine (the targets ours is ordered after) may
		// have warnings of their own; only ours count.
		if strings.Contains(l, filepath.Base(p)) {
			complaints = append(complaints, l)
		}
	}
	return complaints, err
}

func TestUnit_Verify(t *testing.T) {
	tool := requireTool(t, "systemd-analyze")
	complaints, err := verify(t, tool, installable(t, nil))
	if err != nil || len(complaints) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, strings.Join(complaints, "\n"))
	}

	// The check can fail: a misspelt key (systemd ignores it, exit 0, with a
	// warning) and a missing binary (exit 1) are both caught.
	t.Run("typo is caught", func(t *testing.T) {
		bad := bytes.Replace(Unit(), []byte("ProtectSystem=strict"), []byte("ProtectSytem=strict"), 1)
		complaints, _ := verify(t, tool, installable(t, bad))
		if len(complaints) != 1 || !strings.Contains(complaints[0], "Unknown key 'ProtectSytem'") {
			t.Fatalf("complaints = %q, want one about ProtectSytem", complaints)
		}
	})
	t.Run("missing binary is caught", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "deployhook.service")
		if err := os.WriteFile(p, Unit(), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(installedPath); err == nil {
			t.Skipf("%s exists on this machine", installedPath)
		}
		complaints, err := verify(t, tool, p)
		if err == nil || len(complaints) == 0 {
			t.Fatalf("verify of a unit whose binary is missing: err %v, complaints %q; want both", err, complaints)
		}
	})
}

// maxExposure is the highest overall exposure systemd-analyze security may
// give the unit, in its tenths (it prints 1.2 as "1.2 OK"; 0 is fully locked
// down, 10 unprotected). The unit scores 1.2: what is left is the network
// (deployhook must reach GitHub, Google and the VMs), @resources (Go raises
// its file limit at start) and the host's root directory.
const maxExposure = 15

func TestUnit_Security(t *testing.T) {
	tool := requireTool(t, "systemd-analyze")
	p := installable(t, nil)
	out, err := exec.Command(tool, "security", "--offline=yes", "--no-pager",
		"--threshold="+strconv.Itoa(maxExposure), p).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v (exposure above %d.%d?)\n%s", err, maxExposure/10, maxExposure%10, out)
	}
	m := regexp.MustCompile(`Overall exposure level for deployhook.service: ([0-9.]+) `).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure in:\n%s", out)
	}
	t.Logf("exposure %s", m[1])
}

// settings returns the unit's Key=Value lines, in order; with commented, also
// the lines commented out with a leading '#' that look like settings.
func settings(t *testing.T, commented bool) [][2]string {
	t.Helper()
	var out [][2]string
	sc := bufio.NewScanner(bytes.NewReader(Unit()))
	key := regexp.MustCompile(`^#?([A-Z][A-Za-z]+)=(.*)$`)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") && !commented {
			continue
		}
		if m := key.FindStringSubmatch(l); m != nil {
			out = append(out, [2]string{m[1], m[2]})
		}
	}
	return out
}

func values(t *testing.T, key string) []string {
	var out []string
	for _, kv := range settings(t, false) {
		if kv[0] == key {
			out = append(out, kv[1])
		}
	}
	return out
}

func TestUnit_Settings(t *testing.T) {
	tests := []struct {
		key, want string
	}{
		{"DynamicUser", "yes"},
		{"StateDirectory", "deployhook"},
		{"StateDirectoryMode", "0700"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"NoNewPrivileges", "yes"},
		{"CapabilityBoundingSet", ""},
		{"AmbientCapabilities", ""},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"SystemCallFilter", "@system-service"},
		{"Restart", "on-failure"},
		{"KillMode", "mixed"},
		{"KillSignal", "SIGTERM"},
		{"ExecStart", installedPath + " serve --config /etc/deployhook/config.yaml --data-dir %S/deployhook"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got := values(t, tt.key)
			if len(got) == 0 || got[0] != tt.want {
				t.Errorf("%s = %q, want %q first", tt.key, got, tt.want)
			}
		})
	}
	// No secret in the unit itself: only *_FILE variables, and paths.
	for _, v := range values(t, "Environment") {
		name, val, _ := strings.Cut(v, "=")
		if !strings.HasSuffix(name, "_FILE") && name != "GOOGLE_APPLICATION_CREDENTIALS" || !strings.HasPrefix(val, "%d/") {
			t.Errorf("Environment=%s: want only NAME_FILE=%%d/ID (a credential), never a value", v)
		}
	}
}

// timespan parses the systemd time spans the unit uses ("3min", "90s",
// "2min 30s").
func timespan(t *testing.T, s string) time.Duration {
	t.Helper()
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "sec": time.Second,
		"min": time.Minute, "m": time.Minute, "h": time.Hour}
	var d time.Duration
	re := regexp.MustCompile(`^\s*(\d+)\s*([a-z]+)`)
	for rest := s; strings.TrimSpace(rest) != ""; {
		m := re.FindStringSubmatch(rest)
		if m == nil || units[m[2]] == 0 {
			t.Fatalf("time span %q: cannot parse %q", s, rest)
		}
		n, _ := strconv.Atoi(m[1])
		d += time.Duration(n) * units[m[2]]
		rest = rest[len(m[0]):]
	}
	return d
}

// TestUnit_StopTimeout checks that systemd waits long enough for deployhook's
// ordered shutdown with the default shutdown_grace: the HTTP drain, the
// running deploy's grace, then the cancelled deploy's report to GitHub (given
// 30s here, the reporter's retries). A shorter TimeoutStopSec would SIGKILL
// deployhook before it reports "error" for the deploy it cancelled.
func TestUnit_StopTimeout(t *testing.T) {
	cfg, err := config.Load("", env(map[string]string{"DEPLOYHOOK_WEBHOOK_SECRET": "0123456789abcdef0123"}))
	if err != nil {
		t.Fatal(err)
	}
	grace := time.Duration(cfg.ShutdownGrace)
	want := httpDrain + grace + 30*time.Second
	v := values(t, "TimeoutStopSec")
	if len(v) != 1 {
		t.Fatalf("TimeoutStopSec = %q, want one", v)
	}
	if got := timespan(t, v[0]); got < want {
		t.Errorf("TimeoutStopSec = %v, want at least %v (drain %v + shutdown_grace %v + 30s to report)", got, want, httpDrain, grace)
	}
	// The unit's comment names the grace it was sized for.
	if !bytes.Contains(Unit(), []byte(fmt.Sprintf("shutdown_grace (default %s)", strings.TrimSuffix(grace.String(), "0s")))) {
		t.Errorf("the unit's comment does not name the default shutdown_grace %v", grace)
	}
}

func env(m map[string]string) config.Getenv {
	return func(k string) string { return m[k] }
}

// TestUnit_Credentials loads every credential the unit names, the commented
// ones too, the way systemd would (%d is the credentials directory), and checks
// that deployhook reads each one: a misspelt variable would leave the secret
// unread and deployhook refusing to start, or worse, running without it.
func TestUnit_Credentials(t *testing.T) {
	creds := t.TempDir() // stands for %d, $CREDENTIALS_DIRECTORY
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string]string{
		"webhook-secret":          "current-secret-0123456789",
		"webhook-secret-previous": "previous-secret-0123456789",
		"github-token":            "ghp_unit_test_token",
		"ssh-key":                 string(pem.EncodeToMemory(block)),
		"google-credentials.json": `{"type":"service_account"}`,
	}
	loaded := map[string]bool{} // credential IDs
	vars := map[string]string{}
	for _, kv := range settings(t, true) {
		switch kv[0] {
		case "LoadCredential":
			id, src, ok := strings.Cut(kv[1], ":")
			if !ok || !strings.HasPrefix(src, "/etc/deployhook/credentials/") {
				t.Fatalf("LoadCredential=%s: want ID:/etc/deployhook/credentials/FILE", kv[1])
			}
			if _, ok := contents[id]; !ok {
				t.Fatalf("LoadCredential %q: the test has no content for it", id)
			}
			loaded[id] = true
			if err := os.WriteFile(filepath.Join(creds, id), []byte(contents[id]), 0o600); err != nil {
				t.Fatal(err)
			}
		case "Environment":
			name, val, _ := strings.Cut(kv[1], "=")
			id, ok := strings.CutPrefix(val, "%d/")
			if !ok {
				continue
			}
			if !loaded[id] {
				t.Errorf("Environment=%s names credential %q, which no LoadCredential above it loads", kv[1], id)
			}
			vars[name] = filepath.Join(creds, id)
		}
	}
	if len(loaded) != len(contents) {
		t.Fatalf("the unit loads credentials %v, want %d", loaded, len(contents))
	}
	cfg, err := config.Load("", env(vars))
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.FileWarnings(); len(w) > 0 {
		t.Errorf("warnings: %q", w)
	}
	got := map[string]string{
		"webhook-secret":          string(cfg.WebhookSecrets[0]),
		"github-token":            cfg.GitHubToken,
		"ssh-key":                 string(cfg.SSHKey),
		"google-credentials.json": cfg.GoogleCredentials,
	}
	if len(cfg.WebhookSecrets) == 2 {
		got["webhook-secret-previous"] = string(cfg.WebhookSecrets[1])
	}
	for id, want := range contents {
		if id == "google-credentials.json" {
			want = filepath.Join(creds, id) // a path, not a secret
		}
		if strings.TrimRight(got[id], "\n") != strings.TrimRight(want, "\n") {
			t.Errorf("credential %s: deployhook read %q, want %q", id, got[id], want)
		}
	}
}
