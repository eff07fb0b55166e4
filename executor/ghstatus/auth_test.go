package ghstatus

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/deployhook/deployhook/executor"
)

const (
	appID          = 12345
	installationID = 99
)

// appKey returns a new App private key and its PEM (PKCS#1, as GitHub issues it).
func appKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// jwtLog collects the App JWTs the fake saw, to check none leaks.
type jwtLog struct {
	mu   sync.Mutex
	jwts []string
}

func (l *jwtLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.jwts...)
}

// exchangeCall expects a token exchange whose JWT verifies with pub and has
// GitHub's claims, and answers with token valid for one hour.
func exchangeCall(pub *rsa.PublicKey, seen *jwtLog, token string) call {
	return call{
		method: "POST", path: "/app/installations/99/access_tokens",
		auth: "*",
		body: map[string]any{},
		check: func(t *testing.T, r *http.Request) {
			raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok {
				t.Errorf("token exchange without a Bearer JWT")
				return
			}
			seen.mu.Lock()
			seen.jwts = append(seen.jwts, raw)
			seen.mu.Unlock()
			now := time.Now()
			var claims jwt.RegisteredClaims
			tok, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return pub, nil },
				jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired(),
				jwt.WithTimeFunc(func() time.Time { return now }))
			if err != nil || !tok.Valid {
				t.Errorf("App JWT does not verify with the App's public key: %v", err)
				return
			}
			if claims.Issuer != "12345" {
				t.Errorf("JWT iss = %q, want the App id 12345", claims.Issuer)
			}
			if iat := claims.IssuedAt.Time; !iat.Before(now) || now.Sub(iat) > 2*time.Minute {
				t.Errorf("JWT iat %v is not shortly before now %v", iat, now)
			}
			if exp := claims.ExpiresAt.Time; !exp.After(now) || exp.Sub(now) > 10*time.Minute || exp.Sub(claims.IssuedAt.Time) > 10*time.Minute {
				t.Errorf("JWT exp %v: want after now %v and at most 10 minutes ahead", exp, now)
			}
		},
		status: http.StatusCreated,
		respFunc: func() any {
			return map[string]any{
				"token":                token,
				"expires_at":           time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
				"permissions":          map[string]any{"statuses": "write", "deployments": "write", "contents": "read", "actions": "read", "metadata": "read"},
				"repository_selection": "selected",
			}
		},
	}
}

func TestNewAppTokenSource_Token(t *testing.T) {
	key, keyPEM := appKey(t)
	synctest.Test(t, func(t *testing.T) {
		const desc = "deploy of 0123456 by octocat"
		withAuth := func(c call, auth string) call { c.auth = auth; return c }
		var seen jwtLog
		f := newFake(t, "")
		f.prefix = "/api/v3" // GitHub Enterprise Server: the exchange goes there too
		f.calls = []call{
			exchangeCall(&key.PublicKey, &seen, "ghs_FIRSTinstallationTOKEN"),
			withAuth(statusCall("pending", desc), "Bearer ghs_FIRSTinstallationTOKEN"),
			// 30 minutes later: the cached token.
			withAuth(statusCall("pending", desc), "Bearer ghs_FIRSTinstallationTOKEN"),
			// 56 minutes after the exchange, less than 5 minutes before
			// expires_at: a new token.
			exchangeCall(&key.PublicKey, &seen, "ghs_SECONDinstallationTOKEN"),
			withAuth(statusCall("success", desc), "Bearer ghs_SECONDinstallationTOKEN"),
		}

		hc := &http.Client{Transport: inMemory{f}}
		src, err := NewAppTokenSource(AppOptions{
			AppID: appID, InstallationID: installationID, PrivateKeyPEM: keyPEM,
			BaseURL: "https://ghe.example.com/api/v3/", HTTPClient: hc,
		})
		if err != nil {
			t.Fatal(err)
		}
		lg, lb := testLogger(t)
		c, err := New(lg, Options{BaseURL: "https://ghe.example.com/api/v3/", TokenSource: src, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		var errs []error
		_, err = c.Report(t.Context(), report(executor.StateQueued))
		errs = append(errs, err)
		time.Sleep(30 * time.Minute)
		_, err = c.Report(t.Context(), report(executor.StateRunning))
		errs = append(errs, err)
		time.Sleep(26 * time.Minute)
		_, err = c.Report(t.Context(), report(executor.StateSuccess))
		errs = append(errs, err)
		for i, err := range errs {
			if err != nil {
				t.Errorf("Report %d: %v", i+1, err)
			}
		}
		if n := f.requests(); n != 5 {
			t.Errorf("GitHub got %d requests, want 5 (two exchanges, three statuses)", n)
		}
		secrets := append([]string{"ghs_FIRSTinstallationTOKEN", "ghs_SECONDinstallationTOKEN", pemBody(keyPEM)}, seen.all()...)
		assertNoSecrets(t, lb, errs, secrets...)
	})
}

// pemBody is the base64 body of a PEM block, the part that is secret.
func pemBody(p []byte) string {
	lines := strings.Split(strings.TrimSpace(string(p)), "\n")
	return strings.Join(lines[1:len(lines)-1], "")[:40]
}

func TestNewAppTokenSource_refused(t *testing.T) {
	key, keyPEM := appKey(t)
	var seen jwtLog
	refused := exchangeCall(&key.PublicKey, &seen, "")
	refused.status, refused.respFunc, refused.resp = http.StatusUnauthorized, nil, map[string]any{
		"message":           "'Expiration time' claim ('exp') is too far in the future",
		"documentation_url": "https://docs.github.com/rest",
	}
	f := newFake(t, "", refused)
	base := serve(t, f)
	src, err := NewAppTokenSource(AppOptions{AppID: appID, InstallationID: installationID, PrivateKeyPEM: keyPEM, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	c, lb := newTestClientWith(t, base, nil, false, src)
	_, err = c.Report(t.Context(), report(executor.StateQueued))
	if !errors.Is(err, executor.ErrPermanent) {
		t.Fatalf("Report = %v, want ErrPermanent", err)
	}
	for _, want := range []string{"github app 12345", "installation 99", "401 Unauthorized", "too far in the future"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	assertNoSecrets(t, lb, []error{err}, append(seen.all(), pemBody(keyPEM))...)
}

func TestNewAppTokenSource_badOptions(t *testing.T) {
	_, keyPEM := appKey(t)
	tests := []struct {
		name    string
		opts    AppOptions
		wantErr string
	}{
		{name: "no app id", opts: AppOptions{InstallationID: 1, PrivateKeyPEM: keyPEM}, wantErr: "app_id and installation_id"},
		{name: "no installation", opts: AppOptions{AppID: 1, PrivateKeyPEM: keyPEM}, wantErr: "app_id and installation_id"},
		{name: "not a key", opts: AppOptions{AppID: 1, InstallationID: 1, PrivateKeyPEM: []byte("-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END RSA PRIVATE KEY-----\n")}, wantErr: "read private key"},
		{name: "bad URL", opts: AppOptions{AppID: 1, InstallationID: 1, PrivateKeyPEM: keyPEM, BaseURL: "ftp://x"}, wantErr: "not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAppTokenSource(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewAppTokenSource = %v, want an error saying %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), pemBody(keyPEM)) {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}

func TestNewAppTokenSource_concurrent(t *testing.T) {
	// Concurrent reports share one installation token: one exchange.
	key, keyPEM := appKey(t)
	var seen jwtLog
	const n = 8
	calls := []call{exchangeCall(&key.PublicKey, &seen, "ghs_SHAREDtoken")}
	for range n {
		c := statusCall("pending", "deploy of 0123456 by octocat")
		c.auth = "Bearer ghs_SHAREDtoken"
		calls = append(calls, c)
	}
	f := newFake(t, "", calls...)
	base := serve(t, f)
	src, err := NewAppTokenSource(AppOptions{AppID: appID, InstallationID: installationID, PrivateKeyPEM: keyPEM, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	c, lb := newTestClientWith(t, base, nil, false, src)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = c.Report(t.Context(), report(executor.StateRunning))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Report %d: %v", i, err)
		}
	}
	if got := len(seen.all()); got != 1 {
		t.Errorf("%d token exchanges, want 1", got)
	}
	assertNoSecrets(t, lb, errs, append(seen.all(), "ghs_SHAREDtoken", pemBody(keyPEM))...)
}
