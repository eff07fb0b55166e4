package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Person is who is signed in.
type Person struct {
	Login    string // GitHub login, or the IAP email; shown on pages and recorded on actions
	Name     string // display name, may be empty
	Provider string // "github", "iap" or "none"
	CSRF     string // the session's anti-forgery token: forms carry it; compare with CSRFValid
	// Expires is when Auth.Who stops accepting what identified the person (the
	// session cookie's expiry, the IAP assertion's); zero: never (AllowAll).
	// What outlives the request that checked it, an event stream, ends then.
	Expires time.Time
}

// CSRFValid reports whether token is p's anti-forgery token, comparing in
// constant time; an empty token is never valid. It is the only check of a
// form's token: the console's forms and Auth's sign-out form use it.
func (p Person) CSRFValid(token string) bool {
	return token != "" && p.CSRF != "" && subtle.ConstantTimeCompare([]byte(p.CSRF), []byte(token)) == 1
}

// Access is what a person may do on a target's repository.
type Access int

const (
	AccessNone  Access = iota // may not see it
	AccessRead                // may see its jobs and logs
	AccessWrite               // may also redeploy, roll back and cancel
)

// Auth identifies the person behind a request and what they may do. Implementations:
// server/auth (github, iap) and AllowAll (the local demo's "none").
type Auth interface {
	// Who returns the signed-in person, or ok false when the request carries no valid
	// session (missing, tampered, expired, or an invalid IAP assertion).
	Who(r *http.Request) (p Person, ok bool)
	// Access returns what p may do on repo (owner/name), cached briefly; an error means it
	// could not be decided (GitHub unreachable): the caller denies.
	Access(ctx context.Context, p Person, repo string) (Access, error)
	// Handler serves the sign-in flow under AuthPath ("/auth/"): sign-in, callback, sign-out.
	Handler() http.Handler
	// SignIn returns where to send a browser that is not signed in, to come back to next
	// (a path on this server; anything else is replaced by "/").
	SignIn(next string) string
}

// AuthPath is the path prefix under which Auth.Handler serves the sign-in flow.
const AuthPath = "/auth/"

// AllowAll returns the "none" mode: everyone is login, with write access to everything.
// Only for an explicit `ui: {auth: none}` (the local demo). CSRF is still a real random token.
//
// The token is made once, from crypto/rand, and is the same for every request
// of the process: a page of another site cannot read it, so it cannot forge a
// form that carries it. Its Handler answers every path under AuthPath with a
// short page saying that sign-in is off; SignIn returns next itself when it is
// a path on this server (see SafeNext), else "/".
func AllowAll(login string) Auth {
	return &allowAll{p: Person{Login: login, Provider: "none", CSRF: rand.Text()}}
}

type allowAll struct{ p Person }

func (a *allowAll) Who(*http.Request) (Person, bool) { return a.p, true }

func (a *allowAll) Access(context.Context, Person, string) (Access, error) { return AccessWrite, nil }

func (a *allowAll) SignIn(next string) string { return SafeNext(next) }

func (a *allowAll) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte("Sign-in is off (ui: {auth: none}): everyone who reaches this server may see and do everything.\n"))
	})
}

// maxNext bounds the length of a path kept across a sign-in.
const maxNext = 2048

// SafeNext returns next when it is a path on this server, to go back to after
// signing in, and "/" otherwise. A path qualifies when it starts with exactly
// one "/", contains no backslash or control byte (browsers read "/\evil.com"
// as "//evil.com"), has no scheme or host once parsed (nor a path that
// decodes to "//..."), does not lead back into
// AuthPath (a sign-in that ends in a sign-in), and is at most 2048 bytes.
// The query is kept; a fragment is dropped (browsers do not send one).
func SafeNext(next string) string {
	if len(next) == 0 || len(next) > maxNext || next[0] != '/' || strings.HasPrefix(next, "//") {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	if u.Path+"/" == AuthPath || strings.HasPrefix(u.Path, AuthPath) {
		return "/"
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}
