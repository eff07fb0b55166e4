package auth

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployhook/deployhook/server"
	"github.com/deployhook/deployhook/server/auth/authtest"
)

var alice = authtest.User{Login: "alice", Name: "Alice Liddell"}

func TestGitHubAuth_signInFlow(t *testing.T) {
	e := newGHEnv(t, nil)
	c := e.browser(t, true)
	var authorize *url.URL
	c.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
		if r.URL.Path == "/login/oauth/authorize" {
			authorize = r.URL
		}
		return nil
	}
	p := e.signIn(t, c, alice)
	if p.Login != "alice" || p.Name != "Alice Liddell" || p.Provider != "github" || len(p.CSRF) < 20 {
		t.Errorf("person %+v", p)
	}
	if authorize == nil {
		t.Fatal("never sent to GitHub's authorize endpoint")
	}
	q := authorize.Query()
	if got := q.Get("scope"); got != "repo" {
		t.Errorf("scope %q, want repo (no team configured)", got)
	}
	if q.Get("redirect_uri") != e.srv.URL+"/auth/callback" || q.Get("code_challenge_method") != "S256" {
		t.Errorf("authorize query %v", q)
	}
	if n := e.gh.Calls("POST /login/oauth/access_token"); n != 1 {
		t.Errorf("%d code exchanges, want 1", n)
	}
	if n := e.gh.Calls("GET /user"); n != 1 {
		t.Errorf("%d GET /user, want 1", n)
	}
	// The sign-in state is single-use: the jar holds only the session now.
	u, _ := url.Parse(e.srv.URL)
	var names []string
	for _, ck := range c.Jar.Cookies(u) {
		names = append(names, ck.Name)
	}
	if strings.Join(names, ",") != "deployhook-session" {
		t.Errorf("cookies after sign-in: %v, want only deployhook-session", names)
	}
	noSecrets(t, "the log", e.logs.String(), e.gh)
	noSecrets(t, "what the browser was sent", e.bodies.String(), e.gh)
	// A second request reuses the session: no new sign-in.
	if resp, body := e.get(t, c, e.srv.URL+"/app"); resp.StatusCode != 200 || !strings.HasPrefix(body, "hello alice") {
		t.Errorf("second request: %s %q", resp.Status, body)
	}
	if n := e.gh.Calls("GET /login/oauth/authorize"); n != 1 {
		t.Errorf("%d authorizations, want 1", n)
	}
}

func TestGitHubAuth_sessionCookie(t *testing.T) {
	tests := []struct {
		publicURL  string
		wantSecure bool
		wantName   string
	}{
		{"https://deploy.example.com", true, "__Host-deployhook-signin"},
		{"https://deploy.example.com/base/", true, "__Host-deployhook-signin"},
		{"http://127.0.0.1:8080", false, "deployhook-signin"},
		{"http://localhost:8080", false, "deployhook-signin"},
		{"http://[::1]:8080", false, "deployhook-signin"},
	}
	for _, tt := range tests {
		t.Run(tt.publicURL, func(t *testing.T) {
			lg, _ := newLogger(t)
			g, err := GitHub(lg, GitHubOptions{ClientID: "id", ClientSecret: "secret", PublicURL: tt.publicURL})
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			g.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/auth/signin?next=/jobs/1", nil))
			resp := w.Result()
			ck := cookie(resp, tt.wantName)
			if resp.StatusCode != http.StatusFound || ck == nil {
				t.Fatalf("%s, Set-Cookie %v; want 302 and %s", resp.Status, resp.Header.Values("Set-Cookie"), tt.wantName)
			}
			if ck.Secure != tt.wantSecure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
				t.Errorf("cookie %+v: want Secure=%v, HttpOnly, SameSite=Lax, Path=/, no Domain", ck, tt.wantSecure)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if want := strings.TrimRight(tt.publicURL, "/") + "/auth/callback"; loc.Query().Get("redirect_uri") != want {
				t.Errorf("redirect_uri %q, want %q", loc.Query().Get("redirect_uri"), want)
			}
			if !strings.HasPrefix(loc.String(), "https://github.com/login/oauth/authorize?") {
				t.Errorf("authorize at %s, want github.com's", loc)
			}
		})
	}
}

// flow runs a sign-in up to GitHub's answer, without following it: it
// returns the callback URL GitHub sent the browser to.
func (e *ghEnv) flow(t *testing.T, c *http.Client, u authtest.User, next string) *url.URL {
	t.Helper()
	e.gh.SignInAs(u)
	resp, _ := e.get(t, c, e.srv.URL+"/auth/signin?next="+url.QueryEscape(next))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("signin: %s", resp.Status)
	}
	resp, _ = e.get(t, c, resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %s", resp.Status)
	}
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(cb.String(), e.srv.URL+"/auth/callback?") {
		t.Fatalf("GitHub sent the browser to %s", resp.Header.Get("Location"))
	}
	return cb
}

func TestGitHubAuth_callbackRefusals(t *testing.T) {
	tests := []struct {
		name string
		// run drives a sign-in in browser c and returns the callback URL to open.
		run      func(t *testing.T, e *ghEnv, c *http.Client) string
		wantCode int
		wantText string
	}{
		{
			name: "state of another sign-in",
			run: func(t *testing.T, e *ghEnv, c *http.Client) string {
				cb := e.flow(t, c, alice, "/app")
				q := cb.Query()
				q.Set("state", "AAAAAAAAAAAAAAAAAAAAAAAAAA")
				cb.RawQuery = q.Encode()
				return cb.String()
			},
			wantCode: http.StatusBadRequest, wantText: "does not belong to this browser",
		},
		{
			name: "no state",
			run: func(t *testing.T, e *ghEnv, c *http.Client) string {
				cb := e.flow(t, c, alice, "/app")
				q := cb.Query()
				q.Del("state")
				cb.RawQuery = q.Encode()
				return cb.String()
			},
			wantCode: http.StatusBadRequest, wantText: "does not belong to this browser",
		},
		{
			name: "started in another browser",
			run: func(t *testing.T, e *ghEnv, c *http.Client) string {
				cb := e.flow(t, e.browser(t, false), alice, "/app") // the victim's
				return cb.String()
			},
			wantCode: http.StatusBadRequest, wantText: "not started in this browser",
		},
		{
			name: "sign-in older than 10 minutes",
			run: func(t *testing.T, e *ghEnv, c *http.Client) string {
				cb := e.flow(t, c, alice, "/app")
				e.clock.Advance(signInTTL)
				return cb.String()
			},
			wantCode: http.StatusBadRequest, wantText: "took longer than 10 minutes",
		},
		{
			// Code injection, what PKCE stops: the attacker starts a sign-in
			// of their own (a valid state in their browser) and brings the
			// victim's code; the attacker's verifier does not hash to the
			// challenge the victim's code was issued for.
			name: "code of another sign-in (PKCE)",
			run: func(t *testing.T, e *ghEnv, c *http.Client) string {
				victim := e.flow(t, e.browser(t, false), authtest.User{Login: "victim"}, "/app")
				mine := e.flow(t, c, authtest.User{Login: "mallory"}, "/app")
				q := mine.Query()
				q.Set("code", victim.Query().Get("code"))
				mine.RawQuery = q.Encode()
				return mine.String()
			},
			wantCode: http.StatusBadRequest, wantText: "GitHub did not accept this sign-in",
		},
		{
			// A replay of a whole callback, the sign-in state cookie with it,
			// after it signed someone in: the state is used (and GitHub
			// would take the code once anyway: TestGitHubAuth_callback_oneShot).
			name: "callback replayed",
			run: func(t *testing.T, e *ghEnv, c *http.Client) string {
				victim := e.browser(t, false)
				cb := e.flow(t, victim, alice, "/app")
				u, _ := url.Parse(e.srv.URL)
				c.Jar.SetCookies(u, victim.Jar.Cookies(u))
				if resp, _ := e.get(t, victim, cb.String()); resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("the first callback: %s", resp.Status)
				}
				return cb.String()
			},
			wantCode: http.StatusBadRequest, wantText: "This sign-in link was already used; sign in again.",
		},
		{
			name: "cancelled at GitHub",
			run: func(t *testing.T, e *ghEnv, c *http.Client) string {
				e.gh.Refuse()
				resp, _ := e.get(t, c, e.srv.URL+"/auth/signin?next=/app")
				resp, _ = e.get(t, c, resp.Header.Get("Location"))
				return resp.Header.Get("Location")
			},
			wantCode: http.StatusUnauthorized, wantText: "GitHub did not authorize the sign-in",
		},
		{
			name: "GitHub's API down after the exchange",
			run: func(t *testing.T, e *ghEnv, c *http.Client) string {
				cb := e.flow(t, c, alice, "/app")
				e.gh.Fail(true)
				return cb.String()
			},
			wantCode: http.StatusBadGateway, wantText: "GitHub could not be reached",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newGHEnv(t, nil)
			c := e.browser(t, false)
			u := tt.run(t, e, c)
			resp, body := e.get(t, c, u)
			if resp.StatusCode != tt.wantCode || !strings.Contains(body, tt.wantText) {
				t.Errorf("callback: %s %q; want %d with %q", resp.Status, body, tt.wantCode, tt.wantText)
			}
			if ck := cookie(resp, "deployhook-session"); ck != nil {
				t.Errorf("a refused sign-in set the session cookie")
			}
			e.gh.Fail(false)
			if resp, _ := e.get(t, c, e.srv.URL+"/app"); resp.StatusCode != http.StatusFound ||
				!strings.HasPrefix(resp.Header.Get("Location"), "/auth/signin?") {
				t.Errorf("after a refused sign-in /app answers %s %s; want a redirect to sign in", resp.Status, resp.Header.Get("Location"))
			}
			noSecrets(t, "the log", e.logs.String(), e.gh)
			noSecrets(t, "what the browser was sent", e.bodies.String(), e.gh)
		})
	}
}

func TestGitHubAuth_wrongClientSecret(t *testing.T) {
	e := newGHEnv(t, func(o *GitHubOptions) { o.ClientSecret = "not-the-secret" })
	c := e.browser(t, false)
	resp, body := e.get(t, c, e.flow(t, c, alice, "/app").String())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "GitHub did not accept this sign-in") {
		t.Errorf("callback: %s %q", resp.Status, body)
	}
	if !strings.Contains(e.logs.String(), "incorrect_client_credentials") {
		t.Errorf("the log does not say why: %s", e.logs.String())
	}
	if strings.Contains(e.logs.String(), "not-the-secret") || strings.Contains(body, "incorrect_client_credentials") {
		t.Error("the secret reached the log, or GitHub's words reached the page")
	}
}

func TestGitHubAuth_openRedirect(t *testing.T) {
	tests := []struct{ next, want string }{
		{"/jobs/42?x=1", "/jobs/42?x=1"},
		{"https://evil.example/", "/"},
		{"//evil.example/", "/"},
		{"/\\evil.example/", "/"},
		{"/%2F%2Fevil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"/auth/signin?next=/x", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.next, func(t *testing.T) {
			e := newGHEnv(t, nil)
			c := e.browser(t, false)
			resp, _ := e.get(t, c, e.flow(t, c, alice, tt.next).String())
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tt.want {
				t.Errorf("after sign-in: %s to %q, want 303 to %q", resp.Status, resp.Header.Get("Location"), tt.want)
			}
		})
	}
}

func TestGitHubAuth_Who(t *testing.T) {
	e := newGHEnv(t, nil)
	c := e.browser(t, true)
	e.signIn(t, c, alice)
	u, _ := url.Parse(e.srv.URL)
	valid := c.Jar.Cookies(u)[0].Value
	other := newGHEnv(t, func(o *GitHubOptions) { o.SessionKey = bytes.Repeat([]byte{8}, 32) })
	oc := other.browser(t, true)
	other.signIn(t, oc, alice)
	ou, _ := url.Parse(other.srv.URL)
	otherKey := oc.Jar.Cookies(ou)[0].Value
	flip := []byte(valid)
	flip[len(flip)/2] ^= 'A' ^ 'B' // stays base64url, breaks the tag
	if flip[len(flip)/2] == valid[len(valid)/2] {
		t.Fatal("flip did nothing")
	}
	tests := []struct {
		name   string
		value  string
		cookie string
		after  time.Duration
		want   bool
	}{
		{name: "valid", value: valid, want: true},
		{name: "valid until the last second", value: valid, after: DefaultSessionTTL - time.Second, want: true},
		{name: "expired", value: valid, after: DefaultSessionTTL},
		{name: "tampered", value: string(flip)},
		{name: "truncated", value: valid[:len(valid)-4]},
		{name: "sealed with another key", value: otherKey},
		{name: "not base64", value: "!!" + valid[2:]},
		{name: "empty", value: ""},
		{name: "too long", value: valid + strings.Repeat("A", maxCookie)},
		{name: "under another name", cookie: "deployhook-signin", value: valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.after)
			defer e.clock.Advance(-tt.after)
			r := httptest.NewRequest(http.MethodGet, "/app", nil)
			name := tt.cookie
			if name == "" {
				name = "deployhook-session"
			}
			r.AddCookie(&http.Cookie{Name: name, Value: tt.value})
			p, ok := e.auth.Who(r)
			if ok != tt.want || (ok && p.Login != "alice") {
				t.Errorf("Who = %+v, %v; want ok %v", p, ok, tt.want)
			}
		})
	}
	// A sign-in state sealed by the same key does not open as a session.
	w := httptest.NewRecorder()
	e.auth.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/auth/signin", nil))
	state := cookie(w.Result(), "deployhook-signin")
	r := httptest.NewRequest(http.MethodGet, "/app", nil)
	r.AddCookie(&http.Cookie{Name: "deployhook-session", Value: state.Value})
	if _, ok := e.auth.Who(r); ok {
		t.Error("a sign-in state cookie opened as a session")
	}
}

func TestGitHubAuth_Access(t *testing.T) {
	tests := []struct {
		name    string
		team    string
		grant   *authtest.Perm
		member  string // team membership state
		repo    string
		want    server.Access
		wantErr bool
	}{
		{name: "push", grant: &authtest.Perm{Pull: true, Push: true}, want: server.AccessWrite},
		{name: "pull", grant: &authtest.Perm{Pull: true}, want: server.AccessRead},
		{name: "no access (404)", want: server.AccessNone},
		{name: "other case of the name", grant: &authtest.Perm{Pull: true}, repo: "ACME/App", want: server.AccessRead},
		{name: "pull and active team member", team: "acme/deployers", grant: &authtest.Perm{Pull: true}, member: "active", want: server.AccessWrite},
		{name: "pull and pending team member", team: "acme/deployers", grant: &authtest.Perm{Pull: true}, member: "pending", want: server.AccessRead},
		{name: "pull, not in the team", team: "acme/deployers", grant: &authtest.Perm{Pull: true}, want: server.AccessRead},
		{name: "team member who cannot read the repo", team: "acme/deployers", member: "active", want: server.AccessNone},
		{name: "not owner/name", repo: "acme", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newGHEnv(t, func(o *GitHubOptions) { o.Team = tt.team })
			if tt.grant != nil {
				e.gh.Grant("alice", "acme/app", *tt.grant)
			}
			if tt.member != "" {
				e.gh.AddMember("acme/deployers", "alice", tt.member)
			}
			p := e.signIn(t, e.browser(t, true), alice)
			repo := tt.repo
			if repo == "" {
				repo = "acme/app"
			}
			got, err := e.auth.Access(t.Context(), p, repo)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("Access = %v, %v; want %v (error: %v)", got, err, tt.want, tt.wantErr)
			}
			noSecrets(t, "the log", e.logs.String(), e.gh)
		})
	}
}

func TestGitHubAuth_Access_cache(t *testing.T) {
	e := newGHEnv(t, nil)
	e.gh.Grant("alice", "acme/app", authtest.Perm{Pull: true})
	p := e.signIn(t, e.browser(t, true), alice)
	ctx := t.Context()
	for i := range 3 {
		if got, err := e.auth.Access(ctx, p, "acme/app"); got != server.AccessRead || err != nil {
			t.Fatalf("Access #%d = %v, %v", i, got, err)
		}
	}
	if n := e.gh.Calls("GET /repos/acme/app"); n != 1 {
		t.Errorf("%d API calls for 3 decisions within the TTL, want 1", n)
	}
	// The permission changes on GitHub: seen once the cached decision is old.
	e.gh.Grant("alice", "acme/app", authtest.Perm{Pull: true, Push: true})
	e.clock.Advance(DefaultAccessTTL - time.Second)
	if got, _ := e.auth.Access(ctx, p, "acme/app"); got != server.AccessRead {
		t.Errorf("within the TTL: %v, want the cached read", got)
	}
	e.clock.Advance(time.Second)
	if got, _ := e.auth.Access(ctx, p, "acme/app"); got != server.AccessWrite {
		t.Errorf("after the TTL: %v, want write", got)
	}
	if n := e.gh.Calls("GET /repos/acme/app"); n != 2 {
		t.Errorf("%d API calls, want 2", n)
	}
}

func TestGitHubAuth_Access_errorDenies(t *testing.T) {
	e := newGHEnv(t, nil)
	e.gh.Grant("alice", "acme/app", authtest.Perm{Pull: true, Push: true})
	p := e.signIn(t, e.browser(t, true), alice)
	e.gh.Fail(true)
	got, err := e.auth.Access(t.Context(), p, "acme/app")
	if err == nil || got != server.AccessNone || !errors.Is(err, errGitHub) {
		t.Fatalf("Access with GitHub down = %v, %v; want AccessNone and an error", got, err)
	}
	// The failure is not cached: GitHub back, the answer is GitHub's.
	e.gh.Fail(false)
	if got, err := e.auth.Access(t.Context(), p, "acme/app"); got != server.AccessWrite || err != nil {
		t.Errorf("Access after GitHub is back = %v, %v; want write", got, err)
	}
	// A person whose session this process never saw cannot be decided.
	stranger := server.Person{Login: "alice", Provider: "github", CSRF: "made-up"}
	e.clock.Advance(DefaultAccessTTL)
	if got, err := e.auth.Access(t.Context(), stranger, "acme/app"); got != server.AccessNone || !errors.Is(err, ErrNoSession) {
		t.Errorf("Access of an unknown session = %v, %v; want ErrNoSession", got, err)
	}
}

func TestGitHubAuth_signOut(t *testing.T) {
	e := newGHEnv(t, nil)
	e.gh.Grant("alice", "acme/app", authtest.Perm{Pull: true})
	c := e.browser(t, false)
	resp, _ := e.get(t, c, e.flow(t, c, alice, "/app").String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", resp.Status)
	}
	p := e.who(t, c)
	resp, body := e.get(t, c, e.srv.URL+"/auth/signout")
	if resp.StatusCode != 200 || !strings.Contains(body, `value="`+p.CSRF+`"`) || !strings.Contains(body, `method="post"`) {
		t.Errorf("sign-out page: %s %q; want a POST form with the CSRF token", resp.Status, body)
	}
	for _, tok := range []string{"", "wrong", p.CSRF + "x"} {
		resp, _ := e.post(t, c, e.srv.URL+"/auth/signout", url.Values{CSRFField: {tok}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("sign-out with CSRF %q: %s, want 403", tok, resp.Status)
		}
	}
	e.who(t, c) // still signed in
	if a, err := e.auth.Access(t.Context(), p, "acme/app"); a != server.AccessRead || err != nil {
		t.Fatalf("Access before sign-out = %v, %v; want read", a, err)
	}
	resp, _ = e.post(t, c, e.srv.URL+"/auth/signout", url.Values{CSRFField: {p.CSRF}})
	if ck := cookie(resp, "deployhook-session"); resp.StatusCode != 200 || ck == nil || ck.MaxAge >= 0 {
		t.Fatalf("sign-out: %s, cookie %v; want 200 and the cookie cleared", resp.Status, ck)
	}
	if resp, _ := e.get(t, c, e.srv.URL+"/app"); resp.StatusCode != http.StatusFound {
		t.Errorf("after sign-out /app: %s, want a redirect to sign in", resp.Status)
	}
	// At once, though the decision made before is still cached: an event
	// stream of the session ends at its next check.
	if _, err := e.auth.Access(t.Context(), p, "acme/app"); !errors.Is(err, ErrNoSession) {
		t.Errorf("Access right after sign-out: %v, want ErrNoSession (the token is forgotten)", err)
	}
	e.clock.Advance(DefaultAccessTTL)
	if _, err := e.auth.Access(t.Context(), p, "acme/app"); !errors.Is(err, ErrNoSession) {
		t.Errorf("Access after sign-out: %v, want ErrNoSession (the token is forgotten)", err)
	}
}

func TestGitHub_options(t *testing.T) {
	ok := GitHubOptions{ClientID: "id", ClientSecret: "secret", PublicURL: "https://deploy.example.com"}
	tests := []struct {
		name string
		mod  func(*GitHubOptions)
		want string // in the error; "" for none
	}{
		{"valid", func(*GitHubOptions) {}, ""},
		{"GHES", func(o *GitHubOptions) {
			o.WebURL, o.APIURL = "https://ghe.example.com/", "https://ghe.example.com/api/v3/"
		}, ""},
		{"no secret", func(o *GitHubOptions) { o.ClientSecret = "" }, "DEPLOYHOOK_OAUTH_CLIENT_SECRET"},
		{"no client id", func(o *GitHubOptions) { o.ClientID = "" }, "ui.github.client_id"},
		{"no public URL", func(o *GitHubOptions) { o.PublicURL = "" }, "public URL"},
		{"public URL in cleartext", func(o *GitHubOptions) { o.PublicURL = "http://deploy.example.com" }, "cleartext"},
		{"web URL in cleartext", func(o *GitHubOptions) { o.WebURL = "http://ghe.example.com/" }, "cleartext"},
		{"team without slug", func(o *GitHubOptions) { o.Team = "acme" }, "org/slug"},
		{"short session key", func(o *GitHubOptions) { o.SessionKey = make([]byte, 16) }, "at least 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			lg, _ := newLogger(t)
			_, err := GitHub(lg, o)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("GitHub: %v; want %q", err, tt.want)
			}
		})
	}
}

func TestGitHub_randomKeyLogged(t *testing.T) {
	lg, l := newLogger(t)
	if _, err := GitHub(lg, GitHubOptions{ClientID: "id", ClientSecret: "secret", PublicURL: "https://deploy.example.com"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.String(), "level=INFO") || !strings.Contains(l.String(), "sessions are sealed with a random key and end when deployhook restarts") {
		t.Errorf("log %q; want the info line about the random key", l.String())
	}
}

// readsUser reports the status GitHub's fake answers GET /user with token.
func readsUser(t *testing.T, gh *authtest.GitHub, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, gh.APIURL+"/user", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Sign-out revokes the session's token at GitHub (the fake checks the
// method, path, basic auth and JSON body exactly): the token reads the API no
// more, so a copy of the session cookie kept from before the sign-out, whose
// seal still opens, is denied everywhere.
func TestGitHubAuth_signOut_revokes(t *testing.T) {
	e := newGHEnv(t, nil)
	e.gh.Grant("alice", "acme/app", authtest.Perm{Pull: true, Push: true})
	c := e.browser(t, true)
	p := e.signIn(t, c, alice)
	tokens := e.gh.Tokens()
	if len(tokens) != 1 || readsUser(t, e.gh, tokens[0]) != http.StatusOK {
		t.Fatalf("tokens after sign-in: %d; want one that reads GET /user", len(tokens))
	}
	u, _ := url.Parse(e.srv.URL)
	kept := c.Jar.Cookies(u) // the session cookie, as a thief would keep it

	resp, body := e.post(t, c, e.srv.URL+"/auth/signout", url.Values{CSRFField: {p.CSRF}})
	if ck := cookie(resp, "deployhook-session"); resp.StatusCode != http.StatusOK || ck == nil || ck.MaxAge >= 0 ||
		!strings.Contains(body, "You are signed out") {
		t.Fatalf("sign-out: %s, cookie %v, %q; want 200 and the cookie cleared", resp.Status, ck, body)
	}
	if n := e.gh.Calls("DELETE /applications/" + e.gh.ClientID + "/token"); n != 1 {
		t.Errorf("%d revocations at sign-out, want 1", n)
	}
	if got := readsUser(t, e.gh, tokens[0]); got != http.StatusUnauthorized {
		t.Errorf("GET /user with the revoked token: %d, want 401", got)
	}

	// The kept cookie still opens, but its token decides nothing any more.
	r := httptest.NewRequest(http.MethodGet, e.srv.URL+"/app", nil)
	for _, ck := range kept {
		r.AddCookie(ck)
	}
	q, ok := e.auth.Who(r)
	if !ok {
		t.Fatal("the kept cookie does not open: the test proves nothing")
	}
	e.clock.Advance(DefaultAccessTTL) // past the decision cached at sign-in, if any
	if a, err := e.auth.Access(t.Context(), q, "acme/app"); a != server.AccessNone || err != nil {
		t.Errorf("Access with the kept cookie after sign-out = %v, %v; want AccessNone (GitHub: 401)", a, err)
	}
	noSecrets(t, "the log", e.logs.String(), e.gh)
	noSecrets(t, "what the browser was sent", e.bodies.String(), e.gh)
}

// A revocation GitHub does not accept does not stop the sign-out, and is
// logged without the token.
func TestGitHubAuth_signOut_revokeFails(t *testing.T) {
	e := newGHEnv(t, nil)
	c := e.browser(t, true)
	p := e.signIn(t, c, alice)
	e.gh.Fail(true)
	resp, body := e.post(t, c, e.srv.URL+"/auth/signout", url.Values{CSRFField: {p.CSRF}})
	if ck := cookie(resp, "deployhook-session"); resp.StatusCode != http.StatusOK || ck == nil || ck.MaxAge >= 0 ||
		!strings.Contains(body, "You are signed out") {
		t.Fatalf("sign-out while GitHub fails: %s, cookie %v, %q; want 200 and the cookie cleared", resp.Status, ck, body)
	}
	if n := e.gh.Calls("DELETE /applications/" + e.gh.ClientID + "/token"); n != 1 {
		t.Errorf("%d revocations tried, want 1", n)
	}
	if l := e.logs.String(); !strings.Contains(l, "the token was not revoked at GitHub") || !strings.Contains(l, "502") {
		t.Errorf("the failed revocation is not logged with its status:\n%s", l)
	}
	noSecrets(t, "the log", e.logs.String(), e.gh)
	noSecrets(t, "what the browser was sent", e.bodies.String(), e.gh)
}

// hangingGitHub is a transport whose requests wait until their context ends.
type hangingGitHub struct{}

func (hangingGitHub) RoundTrip(r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// A GitHub that does not answer holds the sign-out revokeTimeout at most,
// even when the browser left (the request's context ended).
func TestGitHubAuth_signOut_revokeBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lg, logs := newLogger(t)
		g, err := GitHub(lg, GitHubOptions{ClientID: "Iv1.x", ClientSecret: "s3cret", PublicURL: "http://127.0.0.1:1",
			SessionKey: bytes.Repeat([]byte{7}, 32), HTTPClient: &http.Client{Transport: hangingGitHub{}}})
		if err != nil {
			t.Fatal(err)
		}
		s := session{login: "alice", token: "gho_secret", csrf: "csrf-token", exp: time.Now().Add(time.Hour)}
		ctx, leave := context.WithCancel(t.Context())
		leave() // the browser is gone
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/auth/signout",
			strings.NewReader(url.Values{CSRFField: {s.csrf}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: "deployhook-session", Value: g.sealSession(s)})
		w := httptest.NewRecorder()
		start := time.Now()
		g.Handler().ServeHTTP(w, r)
		if took := time.Since(start); took != revokeTimeout {
			t.Errorf("sign-out took %s with GitHub silent, want revokeTimeout (%s)", took, revokeTimeout)
		}
		if w.Code != http.StatusOK || !strings.Contains(logs.String(), "the token was not revoked at GitHub") ||
			strings.Contains(logs.String(), s.token) {
			t.Errorf("sign-out: %d; log %q; want 200 and the failure logged without the token", w.Code, logs.String())
		}
	})
}
