// Package authtest holds fakes of the outside services that deployhook's
// sign-in talks to, for tests: GitHub's OAuth web flow and the REST endpoints
// sign-in reads (GitHub), and the key server of Identity-Aware Proxy with a
// signer of its assertions (IAP). Each fake checks what it is sent as
// strictly as the real service, and more: a request the real service would
// refuse, or that deployhook must never send, fails the test.
package authtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// APIPath is where GitHub's fake serves the REST API under its URL, as
// GitHub Enterprise Server does (https://HOST/api/v3).
const APIPath = "/api/v3"

// User is a GitHub account of the fake.
type User struct {
	Login string
	Name  string
}

// Perm is a person's permission on a repository, as GET /repos/{owner}/{repo}
// reports it.
type Perm struct{ Pull, Push bool }

// GitHub is a fake of github.com (or GitHub Enterprise Server) for sign-in:
//
//   - GET /login/oauth/authorize: checks client_id, redirect_uri (the
//     registered callback), a state, and a PKCE challenge with method S256,
//     then redirects the browser back as if the person of SignInAs had
//     approved (or refused, after Refuse) with a new code;
//   - POST /login/oauth/access_token: form-encoded, Accept: application/json;
//     checks the client secret, the code (once, and only with the
//     redirect_uri it was given for), and that code_verifier hashes to the
//     challenge; answers a token, or GitHub's 200 with an error field;
//   - under APIPath, with "Authorization: Bearer TOKEN" of a token it issued,
//     Accept application/vnd.github+json and an X-GitHub-Api-Version: GET
//     /user, GET /repos/{owner}/{repo} (404 unless Grant gave the person a
//     permission and the token has the repo scope), and GET
//     /orgs/{org}/teams/{slug}/memberships/{login} (404 unless AddMember, or
//     without read:org);
//   - under APIPath, DELETE /applications/{ClientID}/token (GitHub's
//     "Delete an app token"): basic auth with the client id and secret,
//     Content-Type application/json, Accept application/vnd.github+json, an
//     X-GitHub-Api-Version, and the body {"access_token": TOKEN} and nothing
//     else; it forgets the token, so that it reads the API no more, and
//     answers 204 (404 for a token it does not know, 401 for wrong client
//     credentials, which also fail the test).
//
// Anything else fails the test. Its methods are safe for concurrent use.
type GitHub struct {
	// URL is the web base (github.web_url); APIURL is URL+APIPath (github.api_url).
	URL, APIURL string
	// ClientID and ClientSecret are the OAuth App's credentials.
	ClientID, ClientSecret string
	// Callback is the OAuth App's registered callback URL. Set it before a
	// sign-in (the server under test is usually started after the fake).
	Callback string

	tb  testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	user    User
	refuse  bool
	fail    bool
	codes   map[string]grant
	tokens  map[string]grant  // the tokens that work: issued and not revoked
	issued  []string          // every token issued, revoked or not
	perms   map[string]Perm   // login \x00 owner/name, lower case
	members map[string]string // org/slug \x00 login → state
	calls   map[string]int    // "METHOD /path"
}

// grant is what a code, and then its token, was issued for.
type grant struct {
	user                       User
	scope, redirect, challenge string
}

// NewGitHub starts a fake GitHub, closed when the test ends.
func NewGitHub(tb testing.TB) *GitHub {
	tb.Helper()
	g := &GitHub{
		ClientID: "Iv1.fake" + rand.Text()[:8], ClientSecret: rand.Text(),
		tb: tb, codes: map[string]grant{}, tokens: map[string]grant{},
		perms: map[string]Perm{}, members: map[string]string{}, calls: map[string]int{},
	}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	tb.Cleanup(g.srv.Close)
	g.URL = g.srv.URL
	g.APIURL = g.srv.URL + APIPath
	return g
}

// SignInAs makes u the person who approves the next authorizations.
func (g *GitHub) SignInAs(u User) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.user, g.refuse = u, false
}

// Refuse makes the next authorizations come back with error=access_denied,
// as when the person presses Cancel.
func (g *GitHub) Refuse() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuse = true
}

// Grant gives login permission p on repo (owner/name).
func (g *GitHub) Grant(login, repo string, p Perm) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.perms[strings.ToLower(login+"\x00"+repo)] = p
}

// AddMember makes login a member of team (org/slug) in state ("active" or "pending").
func (g *GitHub) AddMember(team, login, state string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members[strings.ToLower(team+"\x00"+login)] = state
}

// Fail makes every API call answer 502 while on, as an outage would.
func (g *GitHub) Fail(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = on
}

// Calls returns how many requests "METHOD /path" the fake answered (the
// path without APIPath for API calls, e.g. "GET /repos/acme/app").
func (g *GitHub) Calls(methodPath string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[methodPath]
}

// Tokens returns the access tokens the fake issued, revoked ones too, for
// tests that prove a token appears nowhere it must not.
func (g *GitHub) Tokens() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.issued)
}

func (g *GitHub) serve(w http.ResponseWriter, r *http.Request) {
	path, api := strings.CutPrefix(r.URL.Path, APIPath)
	g.mu.Lock()
	g.calls[r.Method+" "+path]++
	g.mu.Unlock()
	switch {
	case !api && r.URL.Path == "/login/oauth/authorize" && r.Method == http.MethodGet:
		g.authorize(w, r)
	case !api && r.URL.Path == "/login/oauth/access_token" && r.Method == http.MethodPost:
		g.accessToken(w, r)
	case api && r.Method == http.MethodDelete && path == "/applications/"+g.ClientID+"/token":
		g.deleteToken(w, r)
	case api:
		g.api(w, r, path)
	default:
		g.tb.Errorf("fake GitHub: unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	}
}

func (g *GitHub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var problems []string
	if q.Get("client_id") != g.ClientID {
		problems = append(problems, "client_id is not the OAuth App's")
	}
	if g.Callback == "" || q.Get("redirect_uri") != g.Callback {
		problems = append(problems, "redirect_uri "+q.Get("redirect_uri")+" is not the registered callback "+g.Callback)
	}
	if len(q.Get("state")) < 16 {
		problems = append(problems, "no state (or a guessable one)")
	}
	if c := q.Get("code_challenge"); len(c) != 43 || q.Get("code_challenge_method") != "S256" {
		problems = append(problems, "no PKCE S256 challenge")
	}
	if len(problems) > 0 {
		g.tb.Errorf("fake GitHub: authorize: %s", strings.Join(problems, "; "))
		http.Error(w, "The redirect_uri MUST match the registered callback URL for this application.", http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(q.Get("redirect_uri"))
	v := url.Values{"state": {q.Get("state")}}
	g.mu.Lock()
	if g.refuse || g.user.Login == "" {
		v.Set("error", "access_denied")
		v.Set("error_description", "The user has denied your application access.")
	} else {
		code := rand.Text()[:20]
		g.codes[code] = grant{user: g.user, scope: q.Get("scope"), redirect: q.Get("redirect_uri"), challenge: q.Get("code_challenge")}
		v.Set("code", code)
	}
	g.mu.Unlock()
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (g *GitHub) accessToken(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Accept") != "application/json" {
		g.tb.Errorf("fake GitHub: access_token: Accept %q, want application/json", r.Header.Get("Accept"))
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		g.tb.Errorf("fake GitHub: access_token: Content-Type %q", ct)
	}
	if err := r.ParseForm(); err != nil || len(r.URL.RawQuery) > 0 {
		g.tb.Errorf("fake GitHub: access_token: the credentials must be in the body, not the URL")
	}
	f := r.PostForm
	answer := func(v map[string]string) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(v)
	}
	refuse := func(code, desc string) { answer(map[string]string{"error": code, "error_description": desc}) }
	if f.Get("client_id") != g.ClientID || f.Get("client_secret") != g.ClientSecret {
		refuse("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
		return
	}
	g.mu.Lock()
	gr, ok := g.codes[f.Get("code")]
	delete(g.codes, f.Get("code")) // a code is used once, whatever the outcome
	g.mu.Unlock()
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	switch {
	case !ok:
		refuse("bad_verification_code", "The code passed is incorrect or expired.")
	case f.Get("redirect_uri") != gr.redirect:
		refuse("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
	case f.Get("code_verifier") == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != gr.challenge:
		refuse("bad_verification_code", "The code_verifier does not match the code_challenge.")
	default:
		tok := "gho_" + rand.Text()
		g.mu.Lock()
		g.tokens[tok] = gr
		g.issued = append(g.issued, tok)
		g.mu.Unlock()
		answer(map[string]string{"access_token": tok, "token_type": "bearer", "scope": strings.ReplaceAll(gr.scope, " ", ",")})
	}
}

func (g *GitHub) api(w http.ResponseWriter, r *http.Request, path string) {
	if r.Method != http.MethodGet {
		g.tb.Errorf("fake GitHub: unexpected %s %s%s", r.Method, APIPath, path)
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Accept") != "application/vnd.github+json" || r.Header.Get("X-GitHub-Api-Version") == "" {
		g.tb.Errorf("fake GitHub: GET %s without Accept: application/vnd.github+json and X-GitHub-Api-Version", path)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	gr, known := g.tokens[tok]
	if !ok || !known {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials"})
		return
	}
	scopes := strings.Fields(gr.scope)
	has := func(s string) bool {
		for _, x := range scopes {
			if x == s {
				return true
			}
		}
		return false
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch {
	case path == "/user":
		writeJSON(w, http.StatusOK, map[string]any{"login": gr.user.Login, "id": 1, "name": gr.user.Name})
	case len(parts) == 3 && parts[0] == "repos":
		p, ok := g.perms[strings.ToLower(gr.user.Login+"\x00"+parts[1]+"/"+parts[2])]
		if !ok || !has("repo") || !(p.Pull || p.Push) {
			writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"full_name": parts[1] + "/" + parts[2], "private": true,
			"permissions": map[string]bool{"admin": false, "maintain": false, "push": p.Push, "triage": p.Push, "pull": p.Pull || p.Push},
		})
	case len(parts) == 6 && parts[0] == "orgs" && parts[2] == "teams" && parts[4] == "memberships":
		st, ok := g.members[strings.ToLower(parts[1]+"/"+parts[3]+"\x00"+parts[5])]
		if !ok || !has("read:org") {
			writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"state": st, "role": "member"})
	default:
		g.tb.Errorf("fake GitHub: unexpected GET %s%s", APIPath, path)
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
	}
}

// deleteToken is GitHub's "Delete an app token".
func (g *GitHub) deleteToken(w http.ResponseWriter, r *http.Request) {
	var problems []string
	if r.Header.Get("Content-Type") != "application/json" {
		problems = append(problems, "Content-Type "+r.Header.Get("Content-Type")+", want application/json")
	}
	if r.Header.Get("Accept") != "application/vnd.github+json" || r.Header.Get("X-GitHub-Api-Version") == "" {
		problems = append(problems, "no Accept: application/vnd.github+json and X-GitHub-Api-Version")
	}
	if r.URL.RawQuery != "" {
		problems = append(problems, "a query: the token belongs in the body")
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.AccessToken == "" || dec.More() {
		problems = append(problems, "the body is not exactly {\"access_token\": TOKEN}")
	}
	id, secret, ok := r.BasicAuth()
	if !ok || id != g.ClientID || secret != g.ClientSecret {
		problems = append(problems, "no basic auth with the client id and secret")
	}
	if len(problems) > 0 {
		g.tb.Errorf("fake GitHub: DELETE /applications/{client_id}/token: %s", strings.Join(problems, "; "))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, known := g.tokens[body.AccessToken]
	switch {
	case g.fail:
		http.Error(w, "bad gateway", http.StatusBadGateway)
	case !ok || id != g.ClientID || secret != g.ClientSecret:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials"})
	case len(problems) > 0:
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"message": "Validation Failed"})
	case !known:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
	default:
		delete(g.tokens, body.AccessToken)
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
