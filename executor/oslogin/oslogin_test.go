package oslogin

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/executor/oslogin/oslogintest"
)

const (
	account = "deployhook@acme-prod.iam.gserviceaccount.com"
	project = "acme-prod"
	token   = "ya29.test-token"
	saUser  = "sa_112233445566778899001"
)

// newFake returns the fake OS Login API for account, whose profile has two
// POSIX accounts, the primary one second.
func newFake(t *testing.T, accounts ...oslogintest.PosixAccount) *oslogintest.Server {
	if accounts == nil {
		accounts = []oslogintest.PosixAccount{{Username: "other_user", UID: 1001}, {Username: saUser, UID: 2147483649, Primary: true}}
	}
	return oslogintest.NewServer(t, oslogintest.Options{Account: account, Tokens: []string{token}, Accounts: accounts})
}

func newClient(t *testing.T, endpoint string) *Client {
	t.Helper()
	lg := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(t.Context(), lg, Options{
		Endpoint:      endpoint,
		ClientOptions: []option.ClientOption{option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Key imports a fresh ed25519 key with an expiry and logs in as the primary
// POSIX account; Delete removes that key.
func TestClient_Key(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.URL()+"/")
	before := time.Now().Truncate(time.Microsecond)
	k, err := c.Key(t.Context(), account, project, 10*time.Minute, "us-central1")
	if err != nil {
		t.Fatal(err)
	}
	if k.User != saUser {
		t.Errorf("user %q, want the primary POSIX account %q", k.User, saUser)
	}
	imports := f.Imports()
	if len(imports) != 1 {
		t.Fatalf("%d imports, want 1", len(imports))
	}
	imp := imports[0]
	if k.Fingerprint != imp.Fingerprint || k.Fingerprint != oslogintest.Fingerprint(k.Signer.PublicKey()) {
		t.Fatalf("fingerprint %q is not the one the API gave the key (%q)", k.Fingerprint, imp.Fingerprint)
	}
	pk, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(imp.Key))
	if pk == nil || pk.Type() != ssh.KeyAlgoED25519 || string(pk.Marshal()) != string(k.Signer.PublicKey().Marshal()) {
		t.Errorf("imported key %q is not the signer's ed25519 public key", imp.Key)
	}
	if exp := imp.Expires; exp.Before(before.Add(10*time.Minute)) || exp.After(time.Now().Add(10*time.Minute)) || !exp.Equal(k.Expires) {
		t.Errorf("expiry %v (Key says %v), want now+10m", exp, k.Expires)
	}
	if imp.Project != project || len(imp.Regions) != 1 || imp.Regions[0] != "us-central1" {
		t.Errorf("project %q regions %q, want %s [us-central1]", imp.Project, imp.Regions, project)
	}
	if err := c.Delete(t.Context(), account, k.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if keys, deleted := f.Keys(), f.Deleted(); len(keys) != 0 || len(deleted) != 1 || deleted[0] != k.Fingerprint {
		t.Errorf("after Delete: keys %v, deleted %v", keys, deleted)
	}
	if err := c.Delete(t.Context(), account, k.Fingerprint); err == nil {
		t.Error("a second Delete of the key: no error")
	}
}

// Every Key is a new key.
func TestClient_Key_fresh(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.URL())
	a, err := c.Key(t.Context(), account, project, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Key(t.Context(), account, project, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint == b.Fingerprint || string(a.Signer.PublicKey().Marshal()) == string(b.Signer.PublicKey().Marshal()) {
		t.Error("two calls gave the same key")
	}
	if got := f.Keys(); len(got) != 2 {
		t.Errorf("profile keys %v, want both", got)
	}
}

// Errors say what to fix.
func TestClient_Key_errors(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fail     int
		accounts []oslogintest.PosixAccount
		want     []string
	}{
		{name: "403", fail: http.StatusForbidden, want: []string{"roles/compute.osAdminLogin", "roles/compute.osLogin", "roles/iam.serviceAccountUser", account}},
		{name: "404", fail: http.StatusNotFound, want: []string{"no OS Login profile for " + account, "enable-oslogin=TRUE"}},
		{name: "401", fail: http.StatusUnauthorized, want: []string{"refused the credentials", "GOOGLE_APPLICATION_CREDENTIALS"}},
		{name: "no posix account", accounts: []oslogintest.PosixAccount{}, want: []string{"no POSIX account", "enable-oslogin=TRUE"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.accounts...) // an empty, non-nil list: no POSIX account
			if tt.fail != 0 {
				f.Inject(oslogintest.Fault{Op: oslogintest.OpImport, Status: tt.fail})
			}
			_, err := newClient(t, f.URL()).Key(t.Context(), account, project, time.Minute)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if keys := f.Keys(); len(keys) != 0 {
				t.Errorf("keys left in the profile: %v", keys)
			}
		})
	}
}

// Names that could change the request path are refused before any request.
func TestClient_invalidNames(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.URL())
	for _, a := range []string{"", "deployhook", "a@b/../x", "a@b?x=1"} {
		if _, err := c.Key(t.Context(), a, project, time.Minute); err == nil {
			t.Errorf("Key for account %q: no error", a)
		}
	}
	for _, fp := range []string{"", "../x", "a/b"} {
		if err := c.Delete(t.Context(), account, fp); err == nil {
			t.Errorf("Delete of fingerprint %q: no error", fp)
		}
	}
	if _, err := New(t.Context(), slog.New(slog.DiscardHandler), Options{Endpoint: "oslogin.example.com"}); err == nil {
		t.Error("New with a relative endpoint: no error")
	}
}
