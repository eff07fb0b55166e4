package server

import (
	"context"
	"crypto/rand"
	"net/http"
)

// Person is who is signed in.
type Person struct {
	Login    string // GitHub login, or the IAP email; shown on pages and recorded on actions
	Name     string // display name, may be empty
	Provider string // "github", "iap" or "none"
	CSRF     string // the session's anti-forgery token: forms carry it; compared in constant time
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

// AuthPath is where Auth.Handler is served.
const AuthPath = "/auth/"

// AllowAll returns the "none" mode: everyone is login, with write access to everything.
// Only for an explicit `ui: {auth: none}` (the local demo). CSRF is still a real random token.
func AllowAll(login string) Auth {
	return allowAll{p: Person{Login: login, Provider: "none", CSRF: rand.Text()}}
}

// allowAll is AllowAll's Auth.
type allowAll struct{ p Person }

func (a allowAll) Who(*http.Request) (Person, bool) { return a.p, true }

func (a allowAll) Access(context.Context, Person, string) (Access, error) { return AccessWrite, nil }

func (a allowAll) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "sign-in is off (ui.auth: none): everyone is signed in", http.StatusNotFound)
	})
}

func (a allowAll) SignIn(string) string { return "/" }
