package auth

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/deployhook/deployhook/server/auth/authtest"
)

// BenchmarkGitHubAuth_Who is the cost a signed-in request pays in github
// mode: read the cookie, open the AES-256-GCM seal, check the expiry, and
// find the token kept for Access.
func BenchmarkGitHubAuth_Who(b *testing.B) {
	g, err := GitHub(slog.New(slog.DiscardHandler), GitHubOptions{
		ClientID: "id", ClientSecret: "secret", PublicURL: "https://deploy.example.com",
		SessionKey: bytes.Repeat([]byte{7}, 32),
	})
	if err != nil {
		b.Fatal(err)
	}
	v := g.sealSession(session{login: "alice", name: "Alice Liddell", token: "gho_" + string(bytes.Repeat([]byte("x"), 36)),
		csrf: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", exp: time.Now().Add(time.Hour)})
	r := httptest.NewRequest(http.MethodGet, "/jobs/1", nil)
	r.AddCookie(&http.Cookie{Name: g.session, Value: v})
	r.Header.Add("Cookie", "_ga=GA1.2.3.4; theme=dark")
	for b.Loop() {
		if _, ok := g.Who(r); !ok {
			b.Fatal("not signed in")
		}
	}
}

// BenchmarkIAPAuth_Who is the cost a request pays in iap mode with an
// assertion Who verified before (a page's stream and assets, or its next
// page within five minutes): hash the header and find what was kept.
func BenchmarkIAPAuth_Who(b *testing.B) {
	e := newIAPEnv(b, nil)
	e.auth.lg = slog.New(slog.DiscardHandler)
	r := httptest.NewRequest(http.MethodGet, "/jobs/1", nil)
	r.Header.Set(IAPHeader, e.keys.Token(authtest.Claims{Email: "viewer@example.com", HD: "example.com"}))
	if _, ok := e.auth.Who(r); !ok {
		b.Fatal("not signed in")
	}
	for b.Loop() {
		if _, ok := e.auth.Who(r); !ok {
			b.Fatal("not signed in")
		}
	}
}

// BenchmarkIAPAuth_Who_firstSight is the cost of an assertion Who has not
// seen: parse it, verify its ES256 signature with the cached key, check its
// claims, and keep it.
func BenchmarkIAPAuth_Who_firstSight(b *testing.B) {
	e := newIAPEnv(b, nil)
	e.auth.lg = slog.New(slog.DiscardHandler)
	r := httptest.NewRequest(http.MethodGet, "/jobs/1", nil)
	r.Header.Set(IAPHeader, e.keys.Token(authtest.Claims{Email: "viewer@example.com", HD: "example.com"}))
	if _, ok := e.auth.Who(r); !ok {
		b.Fatal("not signed in")
	}
	for b.Loop() {
		e.auth.vmu.Lock()
		clear(e.auth.verified)
		e.auth.vmu.Unlock()
		if _, ok := e.auth.Who(r); !ok {
			b.Fatal("not signed in")
		}
	}
}
