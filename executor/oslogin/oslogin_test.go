package oslogin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
)

const (
	account = "deployhook@acme-prod.iam.gserviceaccount.com"
	project = "acme-prod"
	token   = "ya29.test-token"
	saUser  = "sa_112233445566778899001"
)

// fakeOSLogin is the OS Login REST API: it checks every request's method,
// path, query, auth and body, and answers as the real API does.
type fakeOSLogin struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	fail     int               // answer importSshPublicKey with this HTTP status
	accounts string            // posixAccounts JSON of the answer
	imported map[string]string // fingerprint → key text
	expiry   map[string]int64  // fingerprint → expirationTimeUsec
	regions  []string          // regions of the last import
	deleted  []string          // fingerprints
}

func newFakeOSLogin(t *testing.T) *fakeOSLogin {
	f := &fakeOSLogin{t: t, imported: map[string]string{}, expiry: map[string]int64{},
		accounts: fmt.Sprintf(`[
			{"username": "other_user", "uid": "1001", "gid": "1001", "operatingSystemType": 1},
			{"primary": true, "username": %q, "uid": "2147483649", "gid": "2147483649",
			 "homeDirectory": "/home/%s", "operatingSystemType": 1, "accountId": %q,
			 "name": "users/%s/projects/%s"}]`, saUser, saUser, project, account, project)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOSLogin) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if got := r.Header.Get("Authorization"); got != "Bearer "+token {
		f.t.Errorf("%s %s: Authorization %q", r.Method, r.URL.Path, got)
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}`)
		return
	}
	keyPrefix := "/v1/users/" + account + "/sshPublicKeys/"
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/users/"+account+":importSshPublicKey":
		if got := r.URL.Query().Get("projectId"); got != project {
			f.t.Errorf("import: projectId %q, want %q", got, project)
		}
		f.regions = r.URL.Query()["regions"]
		if f.fail != 0 {
			w.WriteHeader(f.fail)
			fmt.Fprintf(w, `{"error": {"code": %d, "message": "The caller does not have permission", "status": "%s"}}`, f.fail, http.StatusText(f.fail))
			return
		}
		var body struct {
			Key                string `json:"key"`
			ExpirationTimeUsec string `json:"expirationTimeUsec"` // int64 in proto3 JSON is a string
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			f.t.Errorf("import: body: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		pk, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(body.Key))
		if err != nil || len(rest) != 0 || pk.Type() != ssh.KeyAlgoED25519 {
			f.t.Errorf("import: key %q is not one ed25519 key in authorized_keys format: %v", body.Key, err)
		}
		usec, err := strconv.ParseInt(body.ExpirationTimeUsec, 10, 64)
		if err != nil {
			f.t.Errorf("import: expirationTimeUsec %q: %v", body.ExpirationTimeUsec, err)
		}
		sum := sha256.Sum256(pk.Marshal())
		fp := hex.EncodeToString(sum[:])
		f.imported[fp], f.expiry[fp] = body.Key, usec
		fmt.Fprintf(w, `{"loginProfile": {"name": %q, "posixAccounts": %s, "sshPublicKeys": {%q: {
			"key": %q, "expirationTimeUsec": "%d", "fingerprint": %q, "name": "users/%s/sshPublicKeys/%s"}}}}`,
			account, f.accounts, fp, body.Key, usec, fp, account, fp)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, keyPrefix):
		fp := strings.TrimPrefix(r.URL.Path, keyPrefix)
		if _, ok := f.imported[fp]; !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}`)
			return
		}
		delete(f.imported, fp)
		f.deleted = append(f.deleted, fp)
		io.WriteString(w, `{}`)
	default:
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}`)
	}
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
	f := newFakeOSLogin(t)
	c := newClient(t, f.srv.URL+"/")
	before := time.Now().Truncate(time.Microsecond)
	k, err := c.Key(t.Context(), account, project, 10*time.Minute, "us-central1")
	if err != nil {
		t.Fatal(err)
	}
	if k.User != saUser {
		t.Errorf("user %q, want the primary POSIX account %q", k.User, saUser)
	}
	f.mu.Lock()
	text, ok := f.imported[k.Fingerprint]
	usec := f.expiry[k.Fingerprint]
	regions := f.regions
	f.mu.Unlock()
	if !ok {
		t.Fatalf("fingerprint %q is not the one the API gave the key", k.Fingerprint)
	}
	pk, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(text))
	if pk == nil || string(pk.Marshal()) != string(k.Signer.PublicKey().Marshal()) {
		t.Errorf("imported key %q is not the signer's public key", text)
	}
	exp := time.UnixMicro(usec)
	if exp.Before(before.Add(10*time.Minute)) || exp.After(time.Now().Add(10*time.Minute)) || !exp.Equal(k.Expires) {
		t.Errorf("expiry %v (Key says %v), want now+10m", exp, k.Expires)
	}
	if len(regions) != 1 || regions[0] != "us-central1" {
		t.Errorf("regions %q, want [us-central1]", regions)
	}
	if err := c.Delete(t.Context(), account, k.Fingerprint); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.imported) != 0 || len(f.deleted) != 1 || f.deleted[0] != k.Fingerprint {
		t.Errorf("after Delete: imported %v, deleted %v", f.imported, f.deleted)
	}
}

// Every Key is a new key.
func TestClient_Key_fresh(t *testing.T) {
	f := newFakeOSLogin(t)
	c := newClient(t, f.srv.URL)
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
}

// Errors say what to fix.
func TestClient_Key_errors(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fail     int
		accounts string
		want     []string
	}{
		{name: "403", fail: http.StatusForbidden, want: []string{"roles/compute.osAdminLogin", "roles/compute.osLogin", "roles/iam.serviceAccountUser", account}},
		{name: "404", fail: http.StatusNotFound, want: []string{"no OS Login profile for " + account, "enable-oslogin=TRUE"}},
		{name: "401", fail: http.StatusUnauthorized, want: []string{"refused the credentials", "GOOGLE_APPLICATION_CREDENTIALS"}},
		{name: "no posix account", accounts: `[]`, want: []string{"no POSIX account", "enable-oslogin=TRUE"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOSLogin(t)
			f.fail = tt.fail
			if tt.accounts != "" {
				f.accounts = tt.accounts
			}
			_, err := newClient(t, f.srv.URL).Key(t.Context(), account, project, time.Minute)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.imported) != 0 {
				t.Errorf("keys left in the profile: %v", f.imported)
			}
		})
	}
}

// Names that could change the request path are refused before any request.
func TestClient_invalidNames(t *testing.T) {
	f := newFakeOSLogin(t)
	c := newClient(t, f.srv.URL)
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
