package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// uiBase is a valid configuration but for its ui: block, which each row of
// TestValidate_UI writes.
const uiBase = `public_url: https://deploy.example.com
targets:
  - name: prod
    repo: acme/app
    transport: local
    steps: [{name: x, run: "true", timeout: 1m}]
`

func TestValidate_UI(t *testing.T) {
	oauth := "DEPLOYHOOK_OAUTH_CLIENT_SECRET"
	iap := "ui:\n  auth: iap\n  iap:\n    audience: /projects/123/global/backendServices/456\n"
	tests := []struct {
		name string
		yaml string // put before uiBase
		env  []string
		want string // the one problem; "" for valid
	}{
		{"no ui", "", nil, "ui.auth is not set: the console's pages show the deploys and have buttons, so they need sign-in: set ui.github.client_id (and DEPLOYHOOK_OAUTH_CLIENT_SECRET) for GitHub sign-in, or ui.auth: iap with ui.iap.audience behind Identity-Aware Proxy; or write ui: {auth: none}"},
		{"none", "ui: {auth: none}\n", nil, ""},
		{"github by default with a client id", "ui: {github: {client_id: Iv1.abc}}\n", []string{oauth, "s"}, ""},
		{"github with a team", "ui: {auth: github, github: {client_id: Iv1.abc, team: acme/deployers}}\n", []string{oauth, "s"}, ""},
		{"github without client id", "ui: {auth: github}\n", []string{oauth, "s"}, "ui.auth github needs ui.github.client_id"},
		{"github without secret", "ui: {github: {client_id: Iv1.abc}}\n", nil, "ui.auth github needs the OAuth App's client secret: set DEPLOYHOOK_OAUTH_CLIENT_SECRET (or DEPLOYHOOK_OAUTH_CLIENT_SECRET_FILE)"},
		{"github without public_url", "ui: {github: {client_id: Iv1.abc}}\n", []string{oauth, "s", "drop-public-url", ""}, "ui.auth github needs public_url"},
		{"github on cleartext", "ui: {github: {client_id: Iv1.abc}}\npublic_url: http://deploy.example.com\n", []string{oauth, "s", "drop-public-url", ""}, "sends credentials in cleartext"},
		{"github on loopback http", "ui: {github: {client_id: Iv1.abc}}\npublic_url: http://127.0.0.1:8080\n", []string{oauth, "s", "drop-public-url", ""}, ""},
		{"github with a bad team", "ui: {github: {client_id: Iv1.abc, team: deployers}}\n", []string{oauth, "s"}, `ui.github.team "deployers" must be org/slug`},
		{"github with iap settings", "ui: {github: {client_id: Iv1.abc}, iap: {audience: /projects/1/apps/acme-prod}}\n", []string{oauth, "s"}, "ui.iap is set but ui.auth is github"},
		{"session_ttl too short", "ui: {github: {client_id: Iv1.abc}, session_ttl: 1m}\n", []string{oauth, "s"}, "ui.session_ttl 1m0s: between 5m and 30d"},
		{"session_ttl in days", "ui: {github: {client_id: Iv1.abc}, session_ttl: 7d}\n", []string{oauth, "s"}, ""},
		{"web_url for GHES", "ui: {github: {client_id: Iv1.abc}}\ngithub: {web_url: https://ghe.example.com/, report: false}\n", []string{oauth, "s"}, ""},
		{"web_url on cleartext", "ui: {github: {client_id: Iv1.abc}}\ngithub: {web_url: http://ghe.example.com/, report: false}\n", []string{oauth, "s"}, `github.web_url "http://ghe.example.com/" sends credentials in cleartext`},
		{"iap", iap + "    viewers: [domain:example.com]\n    operators: [user:ops@example.com]\n", nil, ""},
		{"iap without principals", iap, nil, "ui.auth iap needs ui.iap.viewers or ui.iap.operators"},
		{"iap with a bad principal", iap + "    viewers: [bob@example.com]\n", nil, `ui.iap.viewers: "bob@example.com" must be user:EMAIL or domain:DOMAIN`},
		{"iap with a bad audience", "ui: {auth: iap, iap: {audience: 123.apps.googleusercontent.com, viewers: [domain:example.com]}}\n", nil, `ui.iap.audience "123.apps.googleusercontent.com" must be /projects/NUMBER/global/backendServices/ID`},
		{"iap keys on cleartext", iap + "    viewers: [domain:example.com]\n    keys_url: http://keys.example.com/jwk\n", nil, "ui.iap.keys_url"},
		{"iap with a session_ttl", iap + "    viewers: [domain:example.com]\n  session_ttl: 1h\n", nil, "ui.session_ttl is for GitHub sign-in"},
		{"iap with a client id", iap + "    viewers: [domain:example.com]\n  github: {client_id: Iv1.abc}\n", nil, "ui.github is set but ui.auth is iap"},
		{"none with github settings", "ui: {auth: none, github: {client_id: Iv1.abc}}\n", nil, "ui.auth none signs nobody in"},
		{"unknown mode", "ui: {auth: basic}\n", nil, `ui.auth "basic": use github, iap or none`},
		{"session key hex", "ui: {auth: none}\n", []string{"DEPLOYHOOK_SESSION_KEY", strings.Repeat("ab", 32)}, ""},
		{"session key short", "ui: {auth: none}\n", []string{"DEPLOYHOOK_SESSION_KEY", "c2hvcnQ="}, "DEPLOYHOOK_SESSION_KEY must be at least 32 random bytes in hex or base64: make one with openssl rand -base64 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := uiBase
			vars := []string{"DEPLOYHOOK_WEBHOOK_SECRET", secret16}
			for i := 0; i < len(tt.env); i += 2 {
				if tt.env[i] == "drop-public-url" {
					base = strings.Replace(base, "public_url: https://deploy.example.com\n", "", 1)
					continue
				}
				vars = append(vars, tt.env[i], tt.env[i+1])
			}
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tt.yaml+base), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p, env(vars...))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "\n") != 0):
				t.Fatalf("error = %v\nwant exactly one problem containing %q", err, tt.want)
			}
		})
	}
}

func TestLoad_UISecrets(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0xa5}, 48)
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("ui: {github: {client_id: Iv1.abc}}\n"+uiBase), 0o600)
	c, err := Load(p, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, "DEPLOYHOOK_OAUTH_CLIENT_SECRET", "oauth-secret", "DEPLOYHOOK_SESSION_KEY_FILE", keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if c.UI.Auth != AuthGitHub || c.UI.OAuthClientSecret != "oauth-secret" || !bytes.Equal(c.UI.SessionKey, key) {
		t.Errorf("ui = auth %q, secret %q, key %x", c.UI.Auth, c.UI.OAuthClientSecret, c.UI.SessionKey)
	}
	if time.Duration(c.UI.SessionTTL) != 12*time.Hour || c.GitHub.WebURL != "https://github.com/" {
		t.Errorf("defaults: session_ttl %v, web_url %q", time.Duration(c.UI.SessionTTL), c.GitHub.WebURL)
	}
	if _, err := Load(p, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, "DEPLOYHOOK_OAUTH_CLIENT_SECRET", "a", "DEPLOYHOOK_OAUTH_CLIENT_SECRET_FILE", keyFile)); err == nil ||
		!strings.Contains(err.Error(), "both DEPLOYHOOK_OAUTH_CLIENT_SECRET and DEPLOYHOOK_OAUTH_CLIENT_SECRET_FILE are set") {
		t.Errorf("both env and file: %v", err)
	}
	os.Chmod(keyFile, 0o644)
	if w := c.FileWarnings(); len(w) != 1 || !strings.HasPrefix(w[0], "DEPLOYHOOK_SESSION_KEY_FILE ") {
		t.Errorf("warnings = %q, want one naming DEPLOYHOOK_SESSION_KEY_FILE", w)
	}
}

func TestDecodeKey(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"hex", hex.EncodeToString(key), true},
		{"hex upper case", strings.ToUpper(hex.EncodeToString(key)), true},
		{"base64", base64.StdEncoding.EncodeToString(key), true},
		{"base64 unpadded", base64.RawStdEncoding.EncodeToString(key), true},
		{"base64url", base64.URLEncoding.EncodeToString(key), true},
		{"31 bytes", base64.StdEncoding.EncodeToString(key[:31]), false},
		{"31 bytes hex", hex.EncodeToString(key[:31]), false},
		{"a password", "correct horse battery staple!", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeKey(tt.in)
			if tt.ok != (err == nil) || (tt.ok && !bytes.Equal(got, key)) {
				t.Errorf("decodeKey(%q) = %x, %v; want ok %v", tt.in, got, err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), tt.in) {
				t.Error("the error quotes the key")
			}
		})
	}
}

func TestLoad_UIUnknownKey(t *testing.T) {
	_, err := Parse([]byte("ui:\n  auth: github\n  github: {client_ids: x}\n"))
	if err == nil || !strings.Contains(err.Error(), `line 3: unknown key "client_ids" in ui.github; did you mean "client_id"?`) {
		t.Errorf("Parse: %v", err)
	}
}

// The embedded demo, which the README's first command serves, says none
// explicitly; nothing else may be without sign-in.
func TestLoad_LocalDemoUI(t *testing.T) {
	c, err := Load("", env("DEPLOYHOOK_WEBHOOK_SECRET", secret16))
	if err != nil {
		t.Fatal(err)
	}
	if c.UI.Auth != AuthNone {
		t.Errorf("local.yaml ui.auth = %q, want none", c.UI.Auth)
	}
}

func TestWebURLOf(t *testing.T) {
	tests := []struct{ api, want string }{
		{"https://api.github.com/", "https://github.com/"},
		{"https://API.GitHub.com", "https://github.com/"},
		{"https://ghe.example.com/api/v3/", "https://ghe.example.com/"},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080/"},
		{"", "https://github.com/"},
	}
	for _, tt := range tests {
		if got := webURLOf(tt.api); got != tt.want {
			t.Errorf("webURLOf(%q) = %q, want %q", tt.api, got, tt.want)
		}
	}
}
