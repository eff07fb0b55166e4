package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/server"
	"github.com/deployhook/deployhook/server/auth/authtest"
)

const testAudience = "/projects/123456789/global/backendServices/987654321"

// iapEnv is IAP sign-in in front of a fake key server.
type iapEnv struct {
	auth  *IAPAuth
	keys  *authtest.IAP
	clock *clock
}

func newIAPEnv(t testing.TB, mod func(*IAPOptions)) *iapEnv {
	e := &iapEnv{clock: newClock()}
	e.keys = authtest.NewIAP(t, testAudience, e.clock.Now)
	opts := IAPOptions{
		Audience: testAudience, KeysURL: e.keys.URL, Now: e.clock.Now,
		Viewers:    []string{"user:viewer@example.com", "domain:example.org"},
		Operators:  []string{"user:Operator@Example.com"},
		SessionKey: bytes.Repeat([]byte{9}, 32),
	}
	if mod != nil {
		mod(&opts)
	}
	lg, _ := newLogger(t)
	var err error
	if e.auth, err = IAP(lg, opts); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *iapEnv) who(tok string) (server.Person, bool) {
	r := httptest.NewRequest(http.MethodGet, "/jobs/1", nil)
	if tok != "" {
		r.Header.Set("x-goog-iap-jwt-assertion", tok)
	}
	return e.auth.Who(r)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestIAPAuth_Who(t *testing.T) {
	e := newIAPEnv(t, nil)
	now := e.clock.Now().Unix()
	claims := authtest.Claims{Email: "viewer@example.com"}
	good := e.keys.Token(claims)
	header := func(alg string) []byte {
		return mustJSON(map[string]string{"alg": alg, "typ": "JWT", "kid": e.keys.Kid()})
	}
	payload := mustJSON(authtest.Claims{Iss: IAPIssuer, Aud: testAudience, Iat: now, Exp: now + 600, Sub: "accounts.google.com:1", Email: "viewer@example.com"})
	parts := strings.Split(good, ".")
	hs256 := func() string {
		// The classic confusion: HMAC keyed with something the verifier knows.
		h := authtest.Unsigned(header("HS256"), payload, nil)
		m := hmac.New(sha256.New, []byte(e.keys.URL))
		m.Write([]byte(strings.TrimSuffix(h, ".")))
		return h + b64.EncodeToString(m.Sum(nil))
	}
	tests := []struct {
		name string
		tok  string
		want bool
	}{
		{"valid", good, true},
		{"no header", "", false},
		{"wrong aud", e.keys.Token(authtest.Claims{Email: "viewer@example.com", Aud: "/projects/123456789/global/backendServices/1"}), false},
		{"aud as a list", authtest.Unsigned(header("ES256"), mustJSON(map[string]any{"iss": IAPIssuer, "aud": []string{testAudience}, "iat": now, "exp": now + 600, "sub": "s", "email": "viewer@example.com"}), nil), false},
		{"wrong iss", e.keys.Token(authtest.Claims{Email: "viewer@example.com", Iss: "https://accounts.google.com"}), false},
		{"expired", e.keys.Token(authtest.Claims{Email: "viewer@example.com", Iat: now - 700, Exp: now - 31}), false},
		{"expired within the leeway", e.keys.Token(authtest.Claims{Email: "viewer@example.com", Iat: now - 700, Exp: now - 29}), true},
		{"issued in the future", e.keys.Token(authtest.Claims{Email: "viewer@example.com", Iat: now + 31}), false},
		{"no exp", authtest.Unsigned(header("ES256"), mustJSON(map[string]any{"iss": IAPIssuer, "aud": testAudience, "iat": now, "sub": "s", "email": "viewer@example.com"}), nil), false},
		{"no email", e.keys.Token(authtest.Claims{}), false},
		{"unknown kid", e.keys.TokenWithUnpublishedKey("nope", claims), false},
		{"published kid, another key", e.keys.TokenWithUnpublishedKey(e.keys.Kid(), claims), false},
		{"alg none", authtest.Unsigned(header("none"), payload, nil), false},
		{"alg none, signature kept", authtest.Unsigned(header("none"), payload, nil) + parts[2], false},
		{"alg HS256", hs256(), false},
		{"alg ES384", authtest.Unsigned(header("ES384"), payload, make([]byte, 96)), false},
		{"payload swapped under a valid signature", parts[0] + "." + b64.EncodeToString(payload) + "." + parts[2], false},
		{"crit header", authtest.Unsigned(mustJSON(map[string]any{"alg": "ES256", "kid": e.keys.Kid(), "crit": []string{"exp"}}), payload, make([]byte, 64)), false},
		{"two parts", parts[0] + "." + parts[1], false},
		{"four parts", good + ".x", false},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], false},
		{"too long", good + strings.Repeat("A", maxAssertion), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := e.who(tt.tok)
			if ok != tt.want {
				t.Fatalf("Who = %+v, %v; want ok %v", p, ok, tt.want)
			}
			if ok && (p.Login != "viewer@example.com" || p.Provider != "iap" || len(p.CSRF) < 32 || p.Name != "") {
				t.Errorf("person %+v", p)
			}
		})
	}
}

func TestIAPAuth_keys(t *testing.T) {
	e := newIAPEnv(t, nil)
	tok := func() string { return e.keys.Token(authtest.Claims{Email: "viewer@example.com"}) }
	if _, ok := e.who(tok()); !ok {
		t.Fatal("a valid assertion was refused")
	}
	for range 3 {
		e.who(tok())
	}
	if n := e.keys.Fetches(); n != 1 {
		t.Errorf("%d key fetches for 4 assertions, want 1 (cached)", n)
	}
	// Unknown kids within a minute of the last fetch fetch nothing: a forger
	// cannot make deployhook hammer Google.
	e.clock.Advance(10 * time.Second)
	for i := range 5 {
		if _, ok := e.who(e.keys.TokenWithUnpublishedKey("forged"+string(rune('a'+i)), authtest.Claims{Email: "viewer@example.com"})); ok {
			t.Fatal("an assertion of an unpublished key was accepted")
		}
	}
	if n := e.keys.Fetches(); n != 1 {
		t.Errorf("%d key fetches after unknown kids within a minute, want 1", n)
	}
	// Google rotates: the new kid is fetched once a minute has passed.
	e.keys.Rotate(false)
	e.clock.Advance(50 * time.Second)
	rotated := tok()
	if _, ok := e.who(rotated); !ok {
		t.Fatal("an assertion of the rotated key was refused a minute after the last fetch")
	}
	if n := e.keys.Fetches(); n != 2 {
		t.Errorf("%d key fetches after the rotation, want 2", n)
	}
	// The withdrawn key no longer verifies, however valid its assertion.
	old := e.keys.TokenWithUnpublishedKey("gone", authtest.Claims{Email: "viewer@example.com"})
	if _, ok := e.who(old); ok {
		t.Error("an assertion of a withdrawn key was accepted")
	}
	// An hour on, the set is fetched again on the next request.
	e.clock.Advance(keysMaxAge)
	if _, ok := e.who(tok()); !ok {
		t.Error("a valid assertion was refused after the refresh")
	}
	if n := e.keys.Fetches(); n != 3 {
		t.Errorf("%d key fetches an hour later, want 3", n)
	}
}

func TestIAPAuth_keysUnreachable(t *testing.T) {
	e := newIAPEnv(t, func(o *IAPOptions) { o.KeysURL = "http://127.0.0.1:1/keys" })
	_, _, err := e.auth.verify(t.Context(), e.keys.Token(authtest.Claims{Email: "viewer@example.com"}))
	if !errors.Is(err, ErrKeys) {
		t.Errorf("verify with the key server down: %v, want ErrKeys", err)
	}
	if _, ok := e.who(e.keys.Token(authtest.Claims{Email: "viewer@example.com"})); ok {
		t.Error("signed in without keys")
	}
}

func TestIAPAuth_Access(t *testing.T) {
	tests := []struct {
		name  string
		email string
		hd    string
		want  server.Access
	}{
		{"viewer", "viewer@example.com", "", server.AccessRead},
		{"viewer, other case", "Viewer@EXAMPLE.com", "example.com", server.AccessRead},
		{"operator", "operator@example.com", "example.com", server.AccessWrite},
		{"operator also viewer by domain", "operator@example.org", "example.org", server.AccessWrite},
		{"domain member", "bob@example.org", "example.org", server.AccessRead},
		{"domain address without hd (consumer account)", "bob@example.org", "", server.AccessNone},
		{"domain address, other hd", "bob@example.org", "evil.example", server.AccessNone},
		{"subdomain", "bob@eu.example.org", "eu.example.org", server.AccessNone},
		{"stranger", "eve@example.net", "example.net", server.AccessNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newIAPEnv(t, func(o *IAPOptions) { o.Operators = append(o.Operators, "user:operator@example.org") })
			p, ok := e.who(e.keys.Token(authtest.Claims{Email: tt.email, HD: tt.hd, Sub: "accounts.google.com:" + tt.email}))
			if !ok {
				t.Fatal("Who refused a valid assertion")
			}
			for _, repo := range []string{"acme/app", "other/repo"} {
				if got, err := e.auth.Access(t.Context(), p, repo); got != tt.want || err != nil {
					t.Errorf("Access(%s) = %v, %v; want %v", repo, got, err, tt.want)
				}
			}
		})
	}
	e := newIAPEnv(t, nil)
	if got, err := e.auth.Access(t.Context(), server.Person{Login: "operator@example.com", Provider: "iap", CSRF: "x"}, "acme/app"); got != server.AccessNone || !errors.Is(err, ErrNoSession) {
		t.Errorf("Access of a person Who never returned = %v, %v; want ErrNoSession", got, err)
	}
}

func TestIAPAuth_CSRF(t *testing.T) {
	e := newIAPEnv(t, nil)
	tok := func(sub string) string {
		return e.keys.Token(authtest.Claims{Email: "viewer@example.com", Sub: sub})
	}
	a1, _ := e.who(tok("accounts.google.com:1"))
	a2, _ := e.who(tok("accounts.google.com:1"))
	b, _ := e.who(tok("accounts.google.com:2"))
	if a1.CSRF == "" || a1.CSRF != a2.CSRF {
		t.Errorf("CSRF of one account differs between requests: %q, %q", a1.CSRF, a2.CSRF)
	}
	if a1.CSRF == b.CSRF {
		t.Error("two accounts share a CSRF token")
	}
	other := newIAPEnv(t, func(o *IAPOptions) { o.SessionKey = bytes.Repeat([]byte{1}, 32) })
	c, _ := other.who(other.keys.Token(authtest.Claims{Email: "viewer@example.com", Sub: "accounts.google.com:1"}))
	if c.CSRF == a1.CSRF {
		t.Error("the CSRF token does not depend on the session key")
	}
}

func TestIAPAuth_Handler(t *testing.T) {
	e := newIAPEnv(t, nil)
	h := e.auth.Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, e.auth.SignIn("/jobs/1"), nil))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "Identity-Aware Proxy") {
		t.Errorf("signin without an assertion: %d %q", w.Code, w.Body)
	}
	r := httptest.NewRequest(http.MethodGet, e.auth.SignIn("/jobs/1"), nil)
	r.Header.Set(IAPHeader, e.keys.Token(authtest.Claims{Email: "viewer@example.com"}))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/jobs/1" {
		t.Errorf("signin with an assertion: %d to %q, want 303 to /jobs/1", w.Code, w.Header().Get("Location"))
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/auth/signout", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Identity-Aware Proxy manages your session") ||
		!strings.Contains(w.Body.String(), `href="/_gcp_iap/clear_login_cookie"`) {
		t.Errorf("signout: %d %q", w.Code, w.Body)
	}
}

func TestIAP_options(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*IAPOptions)
		want string
	}{
		{"valid", func(*IAPOptions) {}, ""},
		{"App Engine audience", func(o *IAPOptions) { o.Audience = "/projects/123/apps/my-project" }, ""},
		{"no audience", func(o *IAPOptions) { o.Audience = "" }, "must be /projects/NUM/global/backendServices/ID"},
		{"audience of a client id", func(o *IAPOptions) { o.Audience = "123-abc.apps.googleusercontent.com" }, "must be /projects/NUM"},
		{"principal without kind", func(o *IAPOptions) { o.Viewers = []string{"bob@example.com"} }, "user:EMAIL or domain:DOMAIN"},
		{"group principal", func(o *IAPOptions) { o.Operators = []string{"group:ops@example.com"} }, "user:EMAIL or domain:DOMAIN"},
		{"keys over cleartext", func(o *IAPOptions) { o.KeysURL = "http://keys.example.com/jwk" }, "cleartext"},
		{"short session key", func(o *IAPOptions) { o.SessionKey = []byte("short") }, "at least 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := IAPOptions{Audience: testAudience, Viewers: []string{"domain:example.com"}}
			tt.mod(&o)
			lg, _ := newLogger(t)
			_, err := IAP(lg, o)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("IAP: %v; want %q", err, tt.want)
			}
		})
	}
}

func TestParsePrincipal(t *testing.T) {
	tests := []struct {
		in, kind, value string
		ok              bool
	}{
		{"user:Bob@Example.com", "user", "bob@example.com", true},
		{"domain:Example.com", "domain", "example.com", true},
		{"user:bob", "", "", false},
		{"user:@example.com", "", "", false},
		{"domain:bob@example.com", "", "", false},
		{"domain:com", "", "", false},
		{"serviceAccount:x@p.iam.gserviceaccount.com", "", "", false},
		{"bob@example.com", "", "", false},
		{"user:", "", "", false},
	}
	for _, tt := range tests {
		kind, value, ok := ParsePrincipal(tt.in)
		if kind != tt.kind || value != tt.value || ok != tt.ok {
			t.Errorf("ParsePrincipal(%q) = %q, %q, %v; want %q, %q, %v", tt.in, kind, value, ok, tt.kind, tt.value, tt.ok)
		}
	}
}

// kept returns how many verified assertions e keeps.
func (e *iapEnv) kept() int {
	e.auth.vmu.Lock()
	defer e.auth.vmu.Unlock()
	return len(e.auth.verified)
}

// An assertion is verified once: the next requests with it are answered from
// what Who kept, and a refused assertion is never kept.
func TestIAPAuth_Who_verifiedOnce(t *testing.T) {
	e := newIAPEnv(t, nil)
	tok := e.keys.Token(authtest.Claims{Email: "operator@example.com"})
	p, ok := e.who(tok)
	if !ok || e.kept() != 1 {
		t.Fatalf("Who = %+v, %v, %d kept; want the operator, 1 kept", p, ok, e.kept())
	}
	sum := sha256.Sum256([]byte(tok))
	if got, want := e.auth.verified[sum].until, e.clock.Now().Add(verifiedLife); !got.Equal(want) {
		t.Errorf("kept until %s, want %s (verifiedLife: the exp is 10 min away)", got, want)
	}
	now := e.clock.Now().Unix()
	for _, bad := range []string{
		e.keys.Token(authtest.Claims{Email: "operator@example.com", Aud: "/projects/1/global/backendServices/2"}),
		e.keys.Token(authtest.Claims{Email: "operator@example.com", Iat: now - 700, Exp: now - 31}),
		e.keys.TokenWithUnpublishedKey(e.keys.Kid(), authtest.Claims{Email: "operator@example.com"}),
		tok[:len(tok)-2] + "AA",
	} {
		if _, ok := e.who(bad); ok {
			t.Fatalf("a bad assertion was accepted: %.40s…", bad)
		}
	}
	if e.kept() != 1 {
		t.Errorf("%d kept after refused assertions, want 1: a failure is never kept", e.kept())
	}

	// The audience is changed under the kept assertion: verify refuses every
	// assertion now, so one that still passes was not verified again.
	e.auth.opts.Audience = "/projects/1/global/backendServices/2"
	e.clock.Advance(verifiedLife - time.Second)
	if q, ok := e.who(tok); !ok || q != p {
		t.Errorf("the kept assertion: Who = %+v, %v; want %+v from what was kept", q, ok, p)
	}
	if a, err := e.auth.Access(t.Context(), p, "acme/app"); a != server.AccessWrite || err != nil {
		t.Errorf("Access after a kept assertion = %v, %v; want write", a, err)
	}
	if _, ok := e.who(e.keys.Token(authtest.Claims{Email: "operator@example.com"})); ok {
		t.Error("a new assertion was accepted for the old audience: the test proves nothing")
	}
	// Past verifiedLife the assertion is verified again (and now refused).
	e.clock.Advance(time.Second)
	if _, ok := e.who(tok); ok || e.kept() != 0 {
		t.Errorf("after verifiedLife: Who ok %v, %d kept; want refused by verify, 0 kept", ok, e.kept())
	}
}

// A kept assertion stops where verify would stop it: it is kept until its
// exp only, then verified on each request within the leeway, then refused.
func TestIAPAuth_Who_keptStopsAtExp(t *testing.T) {
	e := newIAPEnv(t, nil)
	now := e.clock.Now()
	exp := now.Add(2 * time.Minute)
	tok := e.keys.Token(authtest.Claims{Email: "viewer@example.com", Iat: now.Unix(), Exp: exp.Unix()})
	tests := []struct {
		name string
		at   time.Time
		want bool
		kept int
	}{
		{"issued", now, true, 1},
		{"a second before exp", exp.Add(-time.Second), true, 1},
		{"at exp, within the leeway", exp, true, 0},
		{"end of the leeway", exp.Add(iapLeeway - time.Second), true, 0},
		{"past the leeway", exp.Add(iapLeeway), false, 0},
	}
	for _, tt := range tests {
		e.clock.Advance(tt.at.Sub(e.clock.Now()))
		if _, ok := e.who(tok); ok != tt.want || e.kept() != tt.kept {
			t.Errorf("%s: Who ok %v, %d kept; want %v, %d", tt.name, ok, e.kept(), tt.want, tt.kept)
		}
	}
}

// A key rotation ends the kept assertions of a withdrawn key as soon as the
// key set without it is fetched (the entry keeps the key that verified it,
// and a hit needs the same key published under its kid), not when their
// verifiedLife is over. A key still published keeps them.
func TestIAPAuth_Who_keptAcrossRotation(t *testing.T) {
	for _, keepOld := range []bool{false, true} {
		t.Run(map[bool]string{false: "old key withdrawn", true: "old key kept"}[keepOld], func(t *testing.T) {
			e := newIAPEnv(t, nil)
			old := e.keys.Token(authtest.Claims{Email: "viewer@example.com"})
			if _, ok := e.who(old); !ok {
				t.Fatal("a valid assertion was refused")
			}
			e.keys.Rotate(keepOld)
			e.clock.Advance(keysMinInterval)
			if _, ok := e.who(e.keys.Token(authtest.Claims{Email: "viewer@example.com"})); !ok || e.keys.Fetches() != 2 {
				t.Fatalf("the new key's assertion: ok %v after %d fetches; want ok after 2", ok, e.keys.Fetches())
			}
			if _, ok := e.who(old); ok != keepOld {
				t.Errorf("the old key's kept assertion %s after the rotation: ok %v, want %v",
					verifiedLife-keysMinInterval, ok, keepOld)
			}
		})
	}
}

// The kept assertions are bounded: past the bound the expired go first, then
// any, and every valid assertion is still accepted. With a refused assertion
// never kept (TestIAPAuth_Who_verifiedOnce), this holds safety invariant 6:
// what arrives before authentication costs bounded memory.
func TestIAPAuth_Who_keptBounded(t *testing.T) {
	e := newIAPEnv(t, nil)
	e.auth.maxVerify = 8
	now := e.clock.Now().Unix()
	for i := range 8 {
		if _, ok := e.who(e.keys.Token(authtest.Claims{Email: "viewer@example.com", Iat: now, Exp: now + 60})); !ok {
			t.Fatalf("assertion %d refused", i)
		}
	}
	e.clock.Advance(time.Minute)
	if _, ok := e.who(e.keys.Token(authtest.Claims{Email: "viewer@example.com"})); !ok || e.kept() != 1 {
		t.Fatalf("with 8 expired kept: ok %v, %d kept; want the expired dropped, 1 kept", ok, e.kept())
	}
	for i := range 40 {
		if _, ok := e.who(e.keys.Token(authtest.Claims{Email: "viewer@example.com"})); !ok {
			t.Fatalf("assertion %d refused", i)
		}
		if e.kept() > 8 {
			t.Fatalf("%d kept, bound 8", e.kept())
		}
	}
}
