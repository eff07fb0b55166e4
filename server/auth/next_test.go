package auth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/server"
)

func TestSafeNext(t *testing.T) {
	tests := []struct{ next, want string }{
		{"/", "/"},
		{"/jobs/42", "/jobs/42"},
		{"/targets/prod?page=2", "/targets/prod?page=2"},
		{"/jobs/42#step-3", "/jobs/42"},
		{"", "/"},
		{"jobs/42", "/"},
		{"https://evil.example/", "/"},
		{"//evil.example/x", "/"},
		{"///evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"/jobs\\..\\x", "/"},
		{"/%2F%2Fevil.example", "/"},
		{"/%2fevil.example", "/"},
		{"/jobs/\r\nSet-Cookie: x=y", "/"},
		{"/jobs/\x00", "/"},
		{"/jobs/\t", "/"},
		{"javascript:alert(1)", "/"},
		{"/auth/signin?next=/jobs", "/"},
		{"/auth/", "/"},
		{"/auth", "/"},
		{"/authors", "/authors"},
		{"/" + strings.Repeat("a", 2048), "/"},
	}
	for _, tt := range tests {
		if got := server.SafeNext(tt.next); got != tt.want {
			t.Errorf("SafeNext(%q) = %q, want %q", tt.next, got, tt.want)
		}
	}
}

func TestSignIn_next(t *testing.T) {
	lg, _ := newLogger(t)
	g, err := GitHub(lg, GitHubOptions{ClientID: "id", ClientSecret: "secret", PublicURL: "https://deploy.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	e := newIAPEnv(t, nil)
	for _, a := range []server.Auth{g, e.auth} {
		for next, want := range map[string]string{"/jobs/1?x=y": "/jobs/1?x=y", "https://evil.example": "/", "//evil": "/"} {
			u, err := url.Parse(a.SignIn(next))
			if err != nil || u.Path != "/auth/signin" || u.Host != "" || u.Query().Get("next") != want {
				t.Errorf("%T.SignIn(%q) = %q; want /auth/signin with next %q", a, next, a.SignIn(next), want)
			}
		}
	}
}

func TestAllowAll(t *testing.T) {
	a, b := server.AllowAll("demo"), server.AllowAll("demo")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	p, ok := a.Who(r)
	if !ok || p.Login != "demo" || p.Provider != "none" || len(p.CSRF) < 20 {
		t.Fatalf("Who = %+v, %v", p, ok)
	}
	if p2, _ := a.Who(r); p2.CSRF != p.CSRF {
		t.Error("the CSRF token changes between requests")
	}
	if q, _ := b.Who(r); q.CSRF == p.CSRF {
		t.Error("two processes would share a CSRF token: it is not random")
	}
	if acc, err := a.Access(t.Context(), p, "acme/app"); acc != server.AccessWrite || err != nil {
		t.Errorf("Access = %v, %v; want write", acc, err)
	}
	if got := a.SignIn("https://evil.example"); got != "/" {
		t.Errorf("SignIn of a foreign URL = %q, want /", got)
	}
	w := httptest.NewRecorder()
	a.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/auth/signout", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Sign-in is off") {
		t.Errorf("Handler: %d %q", w.Code, w.Body)
	}
}
