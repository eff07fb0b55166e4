package config

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/deployhook/deployhook/internal/endpoint"
	"github.com/deployhook/deployhook/server/auth"
)

// UI configures sign-in to the operator console (ui:): the pages that show
// the deploys and their logs, and the buttons that redeploy, roll back and
// cancel.
type UI struct {
	// Auth is how people sign in: AuthGitHub, AuthIAP or AuthNone. Default:
	// github when GitHub.ClientID is set; otherwise Validate refuses to start
	// (none must be written out).
	Auth   string   `yaml:"auth"`
	GitHub UIGitHub `yaml:"github"`
	IAP    UIIAP    `yaml:"iap"`
	// SessionTTL is how long a GitHub sign-in lasts (default 12h, 5m to 30d).
	SessionTTL Duration `yaml:"session_ttl"`

	// OAuthClientSecret is DEPLOYHOOK_OAUTH_CLIENT_SECRET (or _FILE): the
	// OAuth App's client secret. It is never logged.
	OAuthClientSecret string `yaml:"-"`
	// SessionKey is DEPLOYHOOK_SESSION_KEY (or _FILE), decoded from hex or
	// base64: at least 32 bytes that seal the session cookies and derive the
	// CSRF tokens. Nil: a random key per process (sessions end on restart).
	SessionKey []byte `yaml:"-"`
	// sessionKeyErr is why DEPLOYHOOK_SESSION_KEY could not be used, for Validate.
	sessionKeyErr error
}

// UIGitHub configures GitHub sign-in (ui.github:).
type UIGitHub struct {
	// ClientID is the OAuth App's (or the GitHub App's) client ID; its
	// callback URL must be PUBLIC_URL/auth/callback.
	ClientID string `yaml:"client_id"`
	// Team, "org/slug", may press the buttons on the targets its members can
	// read, beside the people with push access.
	Team string `yaml:"team"`
}

// UIIAP configures sign-in behind Identity-Aware Proxy (ui.iap:).
type UIIAP struct {
	// Audience is the signed header's expected aud:
	// /projects/NUMBER/global/backendServices/ID or /projects/NUMBER/apps/PROJECT.
	Audience string `yaml:"audience"`
	// Viewers may see every target; Operators may also press the buttons.
	// Each is user:EMAIL or domain:DOMAIN.
	Viewers   []string `yaml:"viewers"`
	Operators []string `yaml:"operators"`
	// KeysURL is IAP's JWK set (default auth.DefaultKeysURL); for tests.
	KeysURL string `yaml:"keys_url"`
}

// The values of ui.auth.
const (
	AuthGitHub = "github"
	AuthIAP    = "iap"
	AuthNone   = "none"
)

// Bounds of ui.session_ttl.
const (
	MinSessionTTL = 5 * time.Minute
	MaxSessionTTL = 30 * 24 * time.Hour
)

// readEnv reads the console's secrets with secret (Config.readEnv's, which
// notes the _FILE variables).
func (u *UI) readEnv(secret func(string) ([]byte, error)) error {
	s, err := secret("DEPLOYHOOK_OAUTH_CLIENT_SECRET")
	if err != nil {
		return err
	}
	u.OAuthClientSecret = string(s)
	k, err := secret("DEPLOYHOOK_SESSION_KEY")
	if err != nil {
		return err
	}
	if len(k) > 0 {
		u.SessionKey, u.sessionKeyErr = decodeKey(string(k))
	}
	return nil
}

// decodeKey decodes a session key written in hex or base64 (standard or
// URL alphabet, padded or not) and demands auth.MinKeyLen bytes of it. A
// string of hex digits of even length is read as hex.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var b []byte
	var err error
	if len(s)%2 == 0 && strings.Trim(s, "0123456789abcdefABCDEF") == "" {
		b, err = hex.DecodeString(s)
	} else {
		t := strings.TrimRight(s, "=")
		if b, err = base64.RawStdEncoding.DecodeString(t); err != nil {
			b, err = base64.RawURLEncoding.DecodeString(t)
		}
	}
	if err != nil || len(b) < auth.MinKeyLen {
		return nil, fmt.Errorf("DEPLOYHOOK_SESSION_KEY must be at least %d random bytes in hex or base64: make one with openssl rand -base64 32", auth.MinKeyLen)
	}
	return b, nil
}

// uiDefaults applies the defaults of ui: and github.web_url.
func (c *Config) uiDefaults() {
	if c.GitHub.WebURL == "" {
		// Derived from api_url, whose own check speaks for it.
		c.GitHub.WebURL, c.GitHub.webURLDerived = webURLOf(c.GitHub.APIURL), true
	}
	if c.UI.Auth == "" && c.UI.GitHub.ClientID != "" {
		c.UI.Auth = AuthGitHub
	}
	if c.UI.SessionTTL == 0 && c.UI.Auth == AuthGitHub {
		c.UI.SessionTTL = Duration(auth.DefaultSessionTTL)
	}
}

// validateUI checks ui: and github.web_url. With demand (every command but
// those that load WithoutWebhookOrGitHub), ui.auth must be set and GitHub
// sign-in needs its client secret.
func (c *Config) validateUI(demand bool) []error {
	var p problems
	u := c.UI
	if u.sessionKeyErr != nil {
		p.add("%v", u.sessionKeyErr)
	}
	if w, err := url.Parse(c.GitHub.WebURL); err != nil || (w.Scheme != "http" && w.Scheme != "https") || w.Host == "" || w.RawQuery != "" {
		p.add("github.web_url %q must be an absolute URL (GitHub Enterprise: https://HOST/)", c.GitHub.WebURL)
	} else if err := endpoint.RequireSecure("github.web_url", c.GitHub.WebURL); err != nil && !c.GitHub.webURLDerived {
		p.add("%v", err)
	}
	hasGitHub := u.GitHub != (UIGitHub{})
	hasIAP := u.IAP.Audience != "" || len(u.IAP.Viewers) > 0 || len(u.IAP.Operators) > 0 || u.IAP.KeysURL != ""
	switch u.Auth {
	case "":
		if demand {
			p.add("ui.auth is not set: the console's pages show the deploys and have buttons, so they need sign-in: " +
				"set ui.github.client_id (and DEPLOYHOOK_OAUTH_CLIENT_SECRET) for GitHub sign-in, " +
				"or ui.auth: iap with ui.iap.audience behind Identity-Aware Proxy; " +
				"or write ui: {auth: none} to let everyone who reaches deployhook see and do everything (a local demo only)")
		}
	case AuthGitHub:
		p = append(p, c.validateUIGitHub(demand)...)
		if hasIAP {
			p.add("ui.iap is set but ui.auth is github: remove ui.iap, or set ui.auth: iap")
		}
	case AuthIAP:
		p = append(p, validateUIIAP(u.IAP)...)
		if hasGitHub {
			p.add("ui.github is set but ui.auth is iap: remove ui.github, or set ui.auth: github")
		}
		if u.SessionTTL != 0 {
			p.add("ui.session_ttl is for GitHub sign-in: behind IAP, IAP keeps the session; remove it")
		}
	case AuthNone:
		if hasGitHub || hasIAP || u.SessionTTL != 0 {
			p.add("ui.auth none signs nobody in: remove ui.github, ui.iap and ui.session_ttl, or set ui.auth to github or iap")
		}
	default:
		p.add("ui.auth %q: use github, iap or none", u.Auth)
	}
	return p
}

// validateUIGitHub checks GitHub sign-in: a client ID and secret, a
// public_url to come back to that keeps the session cookie off cleartext,
// the team, and the session's lifetime.
func (c *Config) validateUIGitHub(demand bool) []error {
	var p problems
	u := c.UI
	if u.GitHub.ClientID == "" {
		p.add("ui.auth github needs ui.github.client_id: the client ID of the OAuth App (or GitHub App) whose callback URL is PUBLIC_URL/auth/callback")
	}
	if demand && u.OAuthClientSecret == "" {
		p.add("ui.auth github needs the OAuth App's client secret: set DEPLOYHOOK_OAUTH_CLIENT_SECRET (or DEPLOYHOOK_OAUTH_CLIENT_SECRET_FILE)")
	}
	switch {
	case c.PublicURL == "":
		p.add("ui.auth github needs public_url: GitHub sends the browser back to PUBLIC_URL/auth/callback")
	default:
		// public_url's form is validateEndpoints' to check; here only that
		// the session cookie, which carries a GitHub token, stays off cleartext.
		if err := endpoint.RequireSecure("public_url", c.PublicURL); err != nil && strings.HasPrefix(c.PublicURL, "http://") {
			p.add("ui.auth github: %v: the session cookie carries a GitHub token", err)
		}
	}
	if t := u.GitHub.Team; t != "" {
		org, slug, ok := strings.Cut(t, "/")
		if !ok || !ownerName.MatchString(org) || slug == "" || strings.ContainsAny(slug, "/ ") {
			p.add("ui.github.team %q must be org/slug, as in github.com/orgs/ORG/teams/SLUG", t)
		}
	}
	if d := time.Duration(u.SessionTTL); d < MinSessionTTL || d > MaxSessionTTL {
		p.add("ui.session_ttl %s: between 5m and 30d (default 12h)", days(d))
	}
	return p
}

// validateUIIAP checks IAP sign-in: the audience, the principals and the
// keys' address.
func validateUIIAP(i UIIAP) []error {
	var p problems
	if !auth.ValidAudience(i.Audience) {
		p.add("ui.iap.audience %q must be /projects/NUMBER/global/backendServices/ID (a load balancer) or /projects/NUMBER/apps/PROJECT_ID (App Engine): the IAP page of the Cloud console shows it as the signed header JWT audience", i.Audience)
	}
	if len(i.Viewers)+len(i.Operators) == 0 {
		p.add("ui.auth iap needs ui.iap.viewers or ui.iap.operators (user:EMAIL or domain:DOMAIN): otherwise nobody may see anything")
	}
	for _, l := range []struct {
		key string
		ps  []string
	}{{"viewers", i.Viewers}, {"operators", i.Operators}} {
		for _, pr := range l.ps {
			if _, _, ok := auth.ParsePrincipal(pr); !ok {
				p.add("ui.iap.%s: %q must be user:EMAIL or domain:DOMAIN", l.key, pr)
			}
		}
	}
	if i.KeysURL != "" {
		if err := endpoint.RequireSecure("ui.iap.keys_url", i.KeysURL); err != nil {
			p.add("%v", err)
		}
	}
	return p
}

// webURLOf returns GitHub's web address for an API root: https://github.com
// for api.github.com (or none), else the API's scheme and host (GitHub
// Enterprise Server serves both on one host, the API under /api/v3/).
func webURLOf(api string) string {
	u, err := url.Parse(api)
	if api == "" || err != nil || u.Host == "" || strings.EqualFold(u.Hostname(), "api.github.com") {
		return auth.DefaultWebURL
	}
	return u.Scheme + "://" + u.Host + "/"
}
