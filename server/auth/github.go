package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deployhook/deployhook/internal/endpoint"
	"github.com/deployhook/deployhook/internal/safehttp"
	"github.com/deployhook/deployhook/server"
)

// Defaults of GitHubOptions.
const (
	DefaultWebURL     = "https://github.com/"
	DefaultAPIURL     = "https://api.github.com/"
	DefaultSessionTTL = 12 * time.Hour
	DefaultAccessTTL  = 60 * time.Second
	// signInTTL is how long a started sign-in may take, from the redirect to
	// GitHub to the callback: GitHub's authorization codes expire after 10
	// minutes (GitHub's docs, "Authorizing OAuth apps", step 2).
	signInTTL = 10 * time.Minute
	// apiTimeout bounds each call to GitHub.
	apiTimeout = 10 * time.Second
	// revokeTimeout bounds the revocation of the token at sign-out, which
	// the person's sign-out waits for: best effort, it must not hang.
	revokeTimeout = 5 * time.Second
	// maxAnswer caps what is read of any answer of GitHub's.
	maxAnswer = 1 << 20
	// maxSessions bounds the tokens and decisions kept in memory.
	maxSessions = 10000
	// maxExchanges bounds the callbacks that wait on GitHub at once (the
	// code exchange, then GET /user): each holds a connection to GitHub for
	// apiTimeout at most per call, and a callback costs its sender nothing
	// but a request. Past the bound a callback waits for a slot, at most
	// exchangeWait, then gets a page that says to sign in again.
	maxExchanges = 16
	// exchangeWait bounds how long a callback waits for a slot: long
	// enough that a rush of callbacks (bogus codes are refused by GitHub
	// in a fraction of a second) delays a person's sign-in rather than
	// refuse it.
	exchangeWait = 10 * time.Second
	// maxUsedStates bounds the sign-in states remembered as used (see
	// usedStates): an entry is 24 bytes in the map and 16 in the ring of
	// the order they came in, about 69 with the map's share, so 65536 of
	// them take about 4.5 MB (TestUsedStates_memory).
	maxUsedStates = 1 << 16
)

// GitHubOptions configure GitHub sign-in.
type GitHubOptions struct {
	// ClientID and ClientSecret are the OAuth App's (or the GitHub App's) client
	// credentials. Both are required.
	ClientID     string
	ClientSecret string
	// WebURL is where the OAuth endpoints are: {WebURL}/login/oauth/authorize
	// and /login/oauth/access_token. Default DefaultWebURL; GitHub Enterprise
	// Server: https://HOST/.
	WebURL string
	// APIURL is GitHub's REST API. Default DefaultAPIURL; GitHub Enterprise
	// Server: https://HOST/api/v3/.
	APIURL string
	// PublicURL is where browsers reach deployhook (required): the callback is
	// {PublicURL}/auth/callback, which must be the OAuth App's callback URL.
	// Cookies are Secure unless it is http:// on a loopback host.
	PublicURL string
	// Team, "org/slug", gives write access (the buttons) to its active members
	// on the repositories they can read. Empty: only push access does.
	Team string
	// SessionKey seals the cookies: at least MinKeyLen bytes. Nil: a random key
	// per process, so sessions end when the process does (logged at info).
	SessionKey []byte
	// SessionTTL is how long a session lasts; 0 means DefaultSessionTTL.
	SessionTTL time.Duration
	// AccessTTL is how long an access decision is cached; 0 means DefaultAccessTTL.
	AccessTTL time.Duration
	// HTTPClient calls GitHub. Nil: a client that reads at most 1 MiB of an
	// answer and follows redirects only within the origin of the request.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// GitHubAuth signs people in with GitHub. It implements server.Auth; its
// methods are safe for concurrent use.
type GitHubAuth struct {
	lg        *slog.Logger
	opts      GitHubOptions
	web, api  string // without trailing slash
	callback  string // {PublicURL}/auth/callback
	scope     string
	org, team string
	seal      *sealer
	secure    bool   // cookies are Secure
	session   string // the session cookie's name
	signin    string // the sign-in state cookie's name
	hc        *http.Client

	mu        sync.Mutex
	tokens    map[string]tokenEntry // by Person.CSRF: the token Who last saw for the session
	decisions map[string]decision   // by login and repo

	used      *usedStates   // the sign-in states whose callback came
	exchanges chan struct{} // a semaphore: one token per callback waiting on GitHub
	waitSlot  time.Duration // exchangeWait; shorter in tests
	waiting   atomic.Int32  // callbacks waiting for a slot
}

type tokenEntry struct {
	login, token string
	exp          time.Time
}

type decision struct {
	access server.Access
	until  time.Time
}

var _ server.Auth = (*GitHubAuth)(nil)

// GitHub returns GitHub sign-in. It fails when the client id or secret is
// missing, PublicURL, WebURL or APIURL is not an absolute URL that keeps
// credentials off cleartext (https, or http on loopback), Team is not
// org/slug, or SessionKey is set but shorter than MinKeyLen.
//
// The scope asked for is "repo", and "repo read:org" with a Team. An OAuth
// App's token cannot see a private repository, nor its permissions, with a
// smaller scope (GitHub's docs, "Scopes for OAuth apps"); "read:org" reads
// team memberships. The token never leaves the sealed cookie and the
// server's memory, and is used only to read: GET /user, GET
// /repos/{owner}/{repo} and the team membership; sign-out revokes it (with
// the client credentials, as GitHub asks). A GitHub App's user
// authorization ignores scopes and is limited to the App's own permissions
// (Metadata read, and Members read for a team): the smaller choice, where a
// GitHub App can be used.
func GitHub(lg *slog.Logger, opts GitHubOptions) (*GitHubAuth, error) {
	if lg == nil {
		return nil, errors.New("auth: nil logger")
	}
	if opts.ClientID == "" || opts.ClientSecret == "" {
		return nil, errors.New("auth: GitHub sign-in needs the OAuth client id (ui.github.client_id) and secret (DEPLOYHOOK_OAUTH_CLIENT_SECRET)")
	}
	if opts.WebURL == "" {
		opts.WebURL = DefaultWebURL
	}
	if opts.APIURL == "" {
		opts.APIURL = DefaultAPIURL
	}
	for _, u := range []struct{ name, v string }{{"web URL", opts.WebURL}, {"API URL", opts.APIURL}, {"public URL", opts.PublicURL}} {
		if err := baseURL(u.name, u.v); err != nil {
			return nil, err
		}
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = DefaultAccessTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &GitHubAuth{
		lg:        lg,
		opts:      opts,
		web:       strings.TrimRight(opts.WebURL, "/"),
		api:       strings.TrimRight(opts.APIURL, "/"),
		callback:  strings.TrimRight(opts.PublicURL, "/") + server.AuthPath + "callback",
		scope:     "repo",
		hc:        opts.HTTPClient,
		tokens:    map[string]tokenEntry{},
		decisions: map[string]decision{},
		used:      newUsedStates(maxUsedStates),
		exchanges: make(chan struct{}, maxExchanges),
		waitSlot:  exchangeWait,
	}
	if opts.Team != "" {
		org, team, ok := strings.Cut(opts.Team, "/")
		if !ok || !slug(org) || !slug(team) {
			return nil, fmt.Errorf("auth: team %q must be org/slug (as in github.com/orgs/ORG/teams/SLUG)", opts.Team)
		}
		g.org, g.team, g.scope = org, team, "repo read:org"
	}
	key := opts.SessionKey
	if key == nil {
		key = randomKey()
		lg.Info("no DEPLOYHOOK_SESSION_KEY: sessions are sealed with a random key and end when deployhook restarts")
	}
	var err error
	if g.seal, err = newSealer(key); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	g.secure = secureCookies(opts.PublicURL)
	g.session, g.signin = cookieName(g.secure, "session"), cookieName(g.secure, "signin")
	if g.hc == nil {
		g.hc = &http.Client{
			Transport:     safehttp.LimitBody(http.DefaultTransport, maxAnswer),
			CheckRedirect: safehttp.CheckRedirect,
		}
	}
	return g, nil
}

// baseURL checks that v is an absolute http(s) URL without query or
// fragment that sends credentials only over TLS or to loopback.
func baseURL(name, v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("auth: %s %q must be an absolute http(s) URL without query", name, v)
	}
	if err := endpoint.RequireSecure(name, v); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

// secureCookies reports whether cookies for publicURL must be Secure: always
// but for http:// on a loopback host (a browser on the same machine).
func secureCookies(publicURL string) bool {
	u, err := url.Parse(publicURL)
	return err != nil || u.Scheme != "http" || !endpoint.Loopback(u.Hostname())
}

// cookieName names a cookie. A Secure cookie gets the __Host- prefix, which
// browsers accept only when it is Secure, has Path=/ and no Domain: no other
// host of the domain can set or shadow it.
func cookieName(secure bool, what string) string {
	if secure {
		return "__Host-deployhook-" + what
	}
	return "deployhook-" + what
}

// slug reports whether s can be a GitHub organization or team slug.
func slug(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Who returns the person whose session cookie r carries, if it opens under
// the session key and has not expired.
func (g *GitHubAuth) Who(r *http.Request) (server.Person, bool) {
	s, ok := g.sessionOf(r)
	if !ok {
		return server.Person{}, false
	}
	g.remember(s)
	return s.person(), true
}

// sessionOf opens the session cookie r carries; false without a valid one.
func (g *GitHubAuth) sessionOf(r *http.Request) (session, bool) {
	c, err := r.Cookie(g.session)
	if err != nil {
		return session{}, false
	}
	return g.openSession(c.Value)
}

// session is what the session cookie holds.
type session struct {
	login, name, token, csrf string
	exp                      time.Time
}

func (s session) person() server.Person {
	return server.Person{Login: s.login, Name: s.name, Provider: "github", CSRF: s.csrf, Expires: s.exp}
}

const sessionPurpose = "session"

func (g *GitHubAuth) sealSession(s session) string {
	rec := newRecord(s.exp.Unix()).str(s.login).str(s.name).str(s.token).str(s.csrf)
	return g.seal.seal(sessionPurpose, rec.b)
}

// openSession opens a session cookie's value; false when it does not open,
// is malformed, or has expired.
func (g *GitHubAuth) openSession(v string) (session, bool) {
	b, ok := g.seal.open(sessionPurpose, v)
	if !ok {
		return session{}, false
	}
	exp, f, err := readRecord(b, 4)
	if err != nil || f[0] == "" || f[2] == "" || f[3] == "" {
		return session{}, false
	}
	s := session{login: f[0], name: f[1], token: f[2], csrf: f[3], exp: time.Unix(exp, 0)}
	if !g.opts.Now().Before(s.exp) {
		return session{}, false
	}
	return s, true
}

// remember keeps the session's token for Access, which gets only the Person:
// the token is found by the session's CSRF token, which is unique to it.
func (g *GitHubAuth) remember(s session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.tokens[s.csrf]; ok && e.token == s.token {
		return
	}
	if len(g.tokens) >= maxSessions {
		now := g.opts.Now()
		for k, e := range g.tokens {
			if !now.Before(e.exp) {
				delete(g.tokens, k)
			}
		}
		for k := range g.tokens { // still full: forget any; its next request brings it back
			if len(g.tokens) < maxSessions {
				break
			}
			delete(g.tokens, k)
		}
	}
	g.tokens[s.csrf] = tokenEntry{login: s.login, token: s.token, exp: s.exp}
}

// ErrNoSession is wrapped by Access's error when p's session has not been
// seen by Who in this process (or was forgotten): the caller denies, and the
// person's next request brings it back.
var ErrNoSession = errors.New("session not known")

// Access returns what p may do on repo: AccessWrite with push access to it
// (or, with a Team, when p is an active member and can read it), AccessRead
// with pull access, AccessNone when GitHub answers 401, 403 or 404. It asks
// GitHub with p's own token and caches the decision, by login and
// repository, for AccessTTL. Any other answer, or no answer, is an error and
// is not cached. A session signed out (or not seen by Who) is an error
// wrapping ErrNoSession, cached decision or not: what a session opened (an
// event stream) ends at its next check after the sign-out.
func (g *GitHubAuth) Access(ctx context.Context, p server.Person, repo string) (server.Access, error) {
	key := strings.ToLower(p.Login) + "\x00" + strings.ToLower(repo)
	now := g.opts.Now()
	g.mu.Lock()
	d, cached := g.decisions[key]
	tok, known := g.tokens[p.CSRF]
	g.mu.Unlock()
	if !known || tok.login != p.Login || p.Provider != "github" || !now.Before(tok.exp) {
		return server.AccessNone, ErrNoSession
	}
	if cached && now.Before(d.until) {
		return d.access, nil
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || !slug(owner) || !slug(name) {
		return server.AccessNone, fmt.Errorf("access: repository %q is not owner/name", repo)
	}
	a, err := g.decide(ctx, tok.token, p.Login, owner, name)
	if err != nil {
		return server.AccessNone, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.decisions) >= maxSessions {
		for k, d := range g.decisions {
			if !now.Before(d.until) || len(g.decisions) >= maxSessions {
				delete(g.decisions, k)
			}
		}
	}
	g.decisions[key] = decision{access: a, until: now.Add(g.opts.AccessTTL)}
	return a, nil
}

// decide asks GitHub what login (whose token is token) may do on owner/name.
func (g *GitHubAuth) decide(ctx context.Context, token, login, owner, name string) (server.Access, error) {
	var repo struct {
		Permissions struct {
			Pull bool `json:"pull"`
			Push bool `json:"push"`
		} `json:"permissions"`
	}
	code, err := g.apiGet(ctx, token, "/repos/"+owner+"/"+name, &repo)
	switch {
	case err != nil:
		return server.AccessNone, fmt.Errorf("access to %s/%s: %w", owner, name, err)
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound:
		return server.AccessNone, nil
	case repo.Permissions.Push:
		return server.AccessWrite, nil
	case !repo.Permissions.Pull:
		return server.AccessNone, nil
	case g.team == "":
		return server.AccessRead, nil
	}
	var m struct {
		State string `json:"state"`
	}
	code, err = g.apiGet(ctx, token, "/orgs/"+g.org+"/teams/"+g.team+"/memberships/"+url.PathEscape(login), &m)
	switch {
	case err != nil:
		return server.AccessNone, fmt.Errorf("team %s/%s membership: %w", g.org, g.team, err)
	case code == http.StatusOK && m.State == "active":
		return server.AccessWrite, nil
	}
	return server.AccessRead, nil
}

// errGitHub is an answer of GitHub's that decides nothing.
var errGitHub = errors.New("unexpected answer from GitHub")

// apiGet GETs path of the API with token and decodes a 200 answer into v. It
// returns the status of a 200, 401, 403 (not a rate limit) or 404 answer;
// any other answer is an error wrapping errGitHub.
func (g *GitHubAuth) apiGet(ctx context.Context, token, path string, v any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.api+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := g.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch c := resp.StatusCode; {
	case c == http.StatusOK:
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			return 0, fmt.Errorf("GET %s: %w", path, err)
		}
		return c, nil
	case c == http.StatusForbidden && resp.Header.Get("X-RateLimit-Remaining") == "0",
		c == http.StatusForbidden && resp.Header.Get("Retry-After") != "":
		return 0, fmt.Errorf("%w: GET %s: rate limited", errGitHub, path)
	case c == http.StatusUnauthorized || c == http.StatusForbidden || c == http.StatusNotFound:
		io.Copy(io.Discard, resp.Body)
		return c, nil
	default:
		return 0, fmt.Errorf("%w: GET %s: %s", errGitHub, path, resp.Status)
	}
}

// SignIn returns the path that starts a sign-in and comes back to next
// (server.SafeNext).
func (g *GitHubAuth) SignIn(next string) string {
	return server.AuthPath + "signin?next=" + url.QueryEscape(server.SafeNext(next))
}

// Handler serves, under server.AuthPath:
//
//   - GET signin?next=PATH: starts a sign-in: a random state and PKCE
//     verifier, sealed in a cookie that lives 10 minutes, and a redirect to
//     GitHub's authorize endpoint;
//   - GET callback?code=…&state=…: clears the sign-in cookie, checks the
//     state against it (in constant time) and that its callback has not come
//     before (a replay: 400, "already used"), waits on GitHub for at most
//     16 callbacks at once (past that a callback waits up to 10 seconds for
//     its turn, then gets 503, GitHub not called), exchanges the code with the verifier and the client
//     secret, reads the login with the new token, sets the session cookie and
//     redirects to the next path (303); any failure is a page saying what to
//     do, without GitHub's words, and no session;
//   - GET signout: a page with a sign-out button (a POST carrying the CSRF
//     token); POST signout: with the session's CSRF token (form field
//     CSRFField), clears the session cookie, forgets the session's token (so
//     that Access with the session's person fails from then on: ErrNoSession)
//     and revokes it at GitHub (best effort, within revokeTimeout); with a
//     wrong one, 403.
func (g *GitHubAuth) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+server.AuthPath+"signin", g.serveSignIn)
	mux.HandleFunc("GET "+server.AuthPath+"callback", g.serveCallback)
	mux.HandleFunc("GET "+server.AuthPath+"signout", g.serveSignOutPage)
	mux.HandleFunc("POST "+server.AuthPath+"signout", g.serveSignOut)
	return mux
}

const signinPurpose = "signin"

// takeSlot takes one of the maxExchanges slots, waiting for one at most
// g.waitSlot or until ctx ends; it reports whether it got one. The caller
// gives the slot back.
func (g *GitHubAuth) takeSlot(ctx context.Context) bool {
	select {
	case g.exchanges <- struct{}{}:
		return true
	default:
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	t := time.NewTimer(g.waitSlot)
	defer t.Stop()
	select {
	case g.exchanges <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// pkceChallenge is the S256 code challenge of verifier (RFC 7636 section 4.2).
func pkceChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return b64.EncodeToString(sum[:])
}

func (g *GitHubAuth) serveSignIn(w http.ResponseWriter, r *http.Request) {
	next := server.SafeNext(r.URL.Query().Get("next"))
	if _, ok := g.Who(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	state, verifier := rand.Text(), rand.Text()+rand.Text() // 52 base32 characters: RFC 7636 asks 43 to 128
	exp := g.opts.Now().Add(signInTTL)
	v := g.seal.seal(signinPurpose, newRecord(exp.Unix()).str(state).str(verifier).str(next).b)
	g.setCookie(w, g.signin, v, exp)
	q := url.Values{
		"client_id":             {g.opts.ClientID},
		"redirect_uri":          {g.callback},
		"scope":                 {g.scope},
		"state":                 {state},
		"code_challenge":        {pkceChallenge(verifier)},
		"code_challenge_method": {"S256"},
		"allow_signup":          {"false"},
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, g.web+"/login/oauth/authorize?"+q.Encode(), http.StatusFound)
}

func (g *GitHubAuth) serveCallback(w http.ResponseWriter, r *http.Request) {
	again := page{Link: g.SignIn("/"), Label: "Sign in again"}
	fail := func(code int, title, msg string) {
		again.Title, again.Message = title, msg
		render(w, code, again)
	}
	c, err := r.Cookie(g.signin)
	g.clearCookie(w, g.signin) // one callback per sign-in, whatever happens
	if err != nil {
		fail(http.StatusBadRequest, "Sign-in expired", "This sign-in was not started in this browser, or took longer than 10 minutes.")
		return
	}
	b, ok := g.seal.open(signinPurpose, c.Value)
	exp, f, rerr := readRecord(b, 3)
	if !ok || rerr != nil || !g.opts.Now().Before(time.Unix(exp, 0)) {
		fail(http.StatusBadRequest, "Sign-in expired", "This sign-in was not started in this browser, or took longer than 10 minutes.")
		return
	}
	state, verifier, next := f[0], f[1], server.SafeNext(f[2])
	again.Link = g.SignIn(next)
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		g.lg.Warn("sign-in refused: the state does not match the one this browser was given")
		fail(http.StatusBadRequest, "Sign-in refused", "This sign-in does not belong to this browser.")
		return
	}
	if g.used.use(state, time.Unix(exp, 0), g.opts.Now()) == stateUsed {
		g.lg.Warn("sign-in refused: its callback came before (a replay, or a reload of the callback)")
		fail(http.StatusBadRequest, "Sign-in link already used", "This sign-in link was already used; sign in again.")
		return
	}
	if e := q.Get("error"); e != "" {
		g.lg.Info("sign-in not authorized at GitHub", "error", truncate(e, 64))
		fail(http.StatusUnauthorized, "Not signed in", "GitHub did not authorize the sign-in.")
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 512 {
		fail(http.StatusBadRequest, "Sign-in refused", "GitHub's answer carries no code.")
		return
	}
	// What follows waits on GitHub: at most maxExchanges callbacks at once,
	// so that callbacks (which anyone can send) cannot hold connections to
	// GitHub without bound. Over the bound a callback waits for a slot, at
	// most waitSlot; then 503, GitHub not called. Its state is used: the
	// page links to a new sign-in.
	if !g.takeSlot(r.Context()) {
		g.lg.Warn("sign-in refused: too many sign-ins wait on GitHub", "limit", maxExchanges)
		fail(http.StatusServiceUnavailable, "Too many sign-ins", "Too many sign-ins are being finished at this moment. Wait a few seconds, then sign in again.")
		return
	}
	defer func() { <-g.exchanges }()
	token, err := g.exchange(r.Context(), code, verifier)
	if err != nil {
		g.lg.Warn("sign-in: code exchange failed", "err", err)
		if errors.Is(err, errRefused) {
			fail(http.StatusBadRequest, "Sign-in refused", "GitHub did not accept this sign-in.")
		} else {
			fail(http.StatusBadGateway, "GitHub unreachable", "GitHub could not be reached to finish the sign-in. Try again in a minute.")
		}
		return
	}
	var user struct {
		Login string `json:"login"`
		Name  string `json:"name"`
	}
	status, err := g.apiGet(r.Context(), token, "/user", &user)
	if err != nil || status != http.StatusOK || user.Login == "" || !slug(user.Login) {
		g.lg.Warn("sign-in: reading the user failed", "status", status, "err", err)
		fail(http.StatusBadGateway, "GitHub unreachable", "GitHub could not be reached to finish the sign-in. Try again in a minute.")
		return
	}
	s := session{login: user.Login, name: truncate(user.Name, 255), token: token, csrf: rand.Text(), exp: g.opts.Now().Add(g.opts.SessionTTL)}
	g.setCookie(w, g.session, g.sealSession(s), s.exp)
	g.lg.Info("signed in", "login", s.login, "provider", "github")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// errRefused is wrapped by exchange's error when GitHub answered and refused.
var errRefused = errors.New("GitHub refused the code")

// exchange trades code (with the PKCE verifier) for an access token.
// GitHub answers a refusal with 200 and an error field.
func (g *GitHubAuth) exchange(ctx context.Context, code, verifier string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	form := url.Values{
		"client_id":     {g.opts.ClientID},
		"client_secret": {g.opts.ClientSecret},
		"code":          {code},
		"redirect_uri":  {g.callback},
		"code_verifier": {verifier},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.web+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := g.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%w: POST /login/oauth/access_token: %s", errGitHub, resp.Status)
	}
	var t struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return "", fmt.Errorf("POST /login/oauth/access_token: %w", err)
	}
	switch {
	case t.Error != "":
		return "", fmt.Errorf("%w: %s", errRefused, truncate(t.Error, 64))
	case t.AccessToken == "" || len(t.AccessToken) > 1024 || !strings.EqualFold(t.TokenType, "bearer"):
		return "", fmt.Errorf("%w: no bearer token in the answer", errGitHub)
	}
	return t.AccessToken, nil
}

func (g *GitHubAuth) serveSignOutPage(w http.ResponseWriter, r *http.Request) {
	p, ok := g.Who(r)
	if !ok {
		render(w, http.StatusOK, page{Title: "Signed out", Message: "You are not signed in to deployhook.", Link: g.SignIn("/"), Label: "Sign in with GitHub"})
		return
	}
	render(w, http.StatusOK, page{Title: "Sign out", Message: "Signed in as " + p.Login + ".", Form: server.AuthPath + "signout", CSRF: p.CSRF, Label: "Sign out"})
}

func (g *GitHubAuth) serveSignOut(w http.ResponseWriter, r *http.Request) {
	s, ok := g.sessionOf(r)
	if ok && !s.person().CSRFValid(r.PostFormValue(CSRFField)) {
		render(w, http.StatusForbidden, page{Title: "Not signed out", Message: "The sign-out form was not this session's.", Link: server.AuthPath + "signout", Label: "Sign out"})
		return
	}
	g.clearCookie(w, g.session)
	if ok {
		g.mu.Lock()
		delete(g.tokens, s.csrf)
		g.mu.Unlock()
		// The browser may leave before GitHub answers: the token is revoked
		// all the same, within revokeTimeout.
		g.revoke(context.WithoutCancel(r.Context()), s.login, s.token)
		g.lg.Info("signed out", "login", s.login, "provider", "github")
	}
	render(w, http.StatusOK, page{Title: "Signed out", Message: "You are signed out of deployhook. GitHub still knows you: sign out there too on a shared computer.", Link: g.SignIn("/"), Label: "Sign in again"})
}

// revoke deletes token at GitHub, so that a copy of it (a session cookie
// kept from before the sign-out, whose seal still opens until it expires)
// reads nothing any more: GitHub's "Delete an app token", DELETE
// {APIURL}/applications/{client_id}/token with basic auth client_id:secret
// and the JSON body {"access_token": token}, answered 204. It is best effort
// and bounded by revokeTimeout: a failure is logged, without the token, and
// the sign-out goes on.
func (g *GitHubAuth) revoke(ctx context.Context, login, token string) {
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	body, err := json.Marshal(struct {
		AccessToken string `json:"access_token"`
	}{token})
	if err != nil {
		g.lg.Warn("sign-out: the token was not revoked at GitHub", "login", login, "err", err)
		return
	}
	path := "/applications/" + url.PathEscape(g.opts.ClientID) + "/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, g.api+path, bytes.NewReader(body))
	if err != nil {
		g.lg.Warn("sign-out: the token was not revoked at GitHub", "login", login, "err", err)
		return
	}
	req.SetBasicAuth(g.opts.ClientID, g.opts.ClientSecret)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := g.hc.Do(req)
	if err != nil {
		g.lg.Warn("sign-out: the token was not revoked at GitHub", "login", login, "err", err)
		return
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		g.lg.Warn("sign-out: the token was not revoked at GitHub", "login", login, "status", resp.Status)
		return
	}
	g.lg.Debug("sign-out: token revoked at GitHub", "login", login)
}

func (g *GitHubAuth) setCookie(w http.ResponseWriter, name, value string, exp time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", Expires: exp,
		MaxAge:   max(1, int(exp.Sub(g.opts.Now()).Seconds())),
		HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (g *GitHubAuth) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode})
}

// truncate cuts s to at most n bytes, for what GitHub writes into logs.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
