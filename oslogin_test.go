package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2/google"
)

const osLoginAccount = "deployhook@acme-prod.iam.gserviceaccount.com" // the key file's client_email

// fakeOSLoginVM is the OS Login API together with what OS Login does on the
// VM: an imported key is appended to the sshd's authorized_keys file (as the
// guest's AuthorizedKeysCommand would show it) and removed again on delete. The
// POSIX user it gives the account is the sshd's own user, so sshd accepts it.
type fakeOSLoginVM struct {
	t              *testing.T
	srv            *httptest.Server
	authorizedKeys string
	user           string

	mu       sync.Mutex
	fail     int               // answer importSshPublicKey with this status
	imported map[string]string // fingerprint → authorized_keys line, while present
	expiry   []time.Time       // of every import
	regions  []string          // of every import
	deleted  []string
}

func newFakeOSLoginVM(t *testing.T, authorizedKeys, user string) *fakeOSLoginVM {
	f := &fakeOSLoginVM{t: t, authorizedKeys: authorizedKeys, user: user, imported: map[string]string{}}
	// Only OS Login keys may log in: drop the key the sshd was started with.
	writeFile(t, authorizedKeys, "", 0o600)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOSLoginVM) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if got := r.Header.Get("Authorization"); got != "Bearer "+googleToken {
		f.t.Errorf("%s %s: Authorization %q", r.Method, r.URL.Path, got)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}`)
		return
	}
	keys := "/v1/users/" + osLoginAccount + "/sshPublicKeys/"
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/users/"+osLoginAccount+":importSshPublicKey":
		if p := r.URL.Query().Get("projectId"); p != iapProject {
			f.t.Errorf("import: projectId %q", p)
		}
		f.regions = append(f.regions, r.URL.Query()["regions"]...)
		if f.fail != 0 {
			w.WriteHeader(f.fail)
			fmt.Fprintf(w, `{"error": {"code": %d, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}}`, f.fail)
			return
		}
		var body struct {
			Key                string `json:"key"`
			ExpirationTimeUsec string `json:"expirationTimeUsec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.t.Errorf("import: body: %v", err)
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(body.Key))
		if err != nil {
			f.t.Errorf("import: key %q: %v", body.Key, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		usec, _ := strconv.ParseInt(body.ExpirationTimeUsec, 10, 64)
		f.expiry = append(f.expiry, time.UnixMicro(usec))
		fp := strings.TrimPrefix(ssh.FingerprintSHA256(pk), "SHA256:") // any stable name will do
		fp = strings.NewReplacer("+", "-", "/", "_").Replace(fp)
		f.imported[fp] = body.Key
		f.writeKeys()
		fmt.Fprintf(w, `{"loginProfile": {"name": %q, "posixAccounts": [{"primary": true, "username": %q,
			"uid": "2147483649", "gid": "2147483649", "homeDirectory": "/home/%s", "operatingSystemType": 1}],
			"sshPublicKeys": {%q: {"key": %q, "expirationTimeUsec": %q, "fingerprint": %q}}}}`,
			osLoginAccount, f.user, f.user, fp, body.Key, body.ExpirationTimeUsec, fp)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, keys):
		fp := strings.TrimPrefix(r.URL.Path, keys)
		if _, ok := f.imported[fp]; !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}`)
			return
		}
		delete(f.imported, fp)
		f.deleted = append(f.deleted, fp)
		f.writeKeys()
		fmt.Fprint(w, `{}`)
	default:
		f.t.Errorf("unexpected OS Login request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
	}
}

func (f *fakeOSLoginVM) writeKeys() {
	var b strings.Builder
	for _, k := range f.imported {
		b.WriteString(k + "\n")
	}
	if err := os.WriteFile(f.authorizedKeys, []byte(b.String()), 0o600); err != nil {
		f.t.Error(err)
	}
}

// startOSLogin is the IAP setup with ssh.oslogin: true instead of a user and
// a key file.
func startOSLogin(t *testing.T) (*iapSetup, *fakeOSLoginVM) {
	s := newIAP(t)
	f := newFakeOSLoginVM(t, filepath.Join(s.v.srv.Dir, "authorized_keys"), s.v.srv.User)
	b, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("      user: %s\n      private_key_file: %s\n", s.v.srv.User, s.v.keyFile)
	if !strings.Contains(string(b), old) {
		t.Fatalf("the IAP configuration has no %q to replace", old)
	}
	writeFile(t, s.cfg, strings.Replace(string(b), old, "      oslogin: true\n", 1), 0o600)
	env := s.env
	s.env = func(k string) string {
		if k == "DEPLOYHOOK_OSLOGIN_URL" {
			return f.srv.URL
		}
		return env(k)
	}
	s.p = startProgram(t, s.cfg, filepath.Join(s.v.dir, "data"), s.env)
	return s, f
}

// With ssh.oslogin, a deploy logs in with a key made for it and imported into
// the service account's OS Login profile with an expiry, as the user OS Login
// names, and the key is deleted once the deploy is over.
func TestOSLogin_DeployThroughTunnel(t *testing.T) {
	s, f := startOSLogin(t)
	c2 := s.v.commit(t, "app change", map[string]string{"app.py": "print('oslogin')\n"})
	before := time.Now()
	push(t, s.p, c2)
	if st := final(t, s.gh, c2); st.State != "success" {
		t.Fatalf("status %s %q, want success", st.State, st.Description)
	}
	if got := s.v.head(t); got != c2 {
		t.Errorf("checkout at %s, want %s", got, c2)
	}
	if s.relay.Stats().Connects == 0 {
		t.Error("the relay saw no tunnel")
	}
	waitFor(t, "the key's deletion", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.deleted) == 1
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.expiry) != 1 {
		t.Fatalf("%d keys imported, want 1", len(f.expiry))
	}
	if exp := f.expiry[0]; exp.Before(before.Add(9*time.Minute)) || exp.After(time.Now().Add(10*time.Minute)) {
		t.Errorf("key expires at %v, want about 10 minutes after the deploy started (%v)", exp, before)
	}
	if len(f.regions) != 1 || f.regions[0] != "us-central1" {
		t.Errorf("regions %q, want the VM's region us-central1", f.regions)
	}
	if len(f.imported) != 0 {
		t.Errorf("keys left in the profile: %v", f.imported)
	}
	if b, _ := os.ReadFile(f.authorizedKeys); len(b) != 0 {
		t.Errorf("authorized_keys after the deploy: %q", b)
	}
}

// A 403 from OS Login fails the deploy at connect, with what to grant on the
// job page, before any tunnel is opened.
func TestOSLogin_PermissionDenied(t *testing.T) {
	s, f := startOSLogin(t)
	f.mu.Lock()
	f.fail = http.StatusForbidden
	f.mu.Unlock()
	c2 := s.v.commit(t, "app change", map[string]string{"app.py": "print('denied')\n"})
	job := push(t, s.p, c2)
	if st := final(t, s.gh, c2); st.State != "error" {
		t.Fatalf("status %s %q, want error", st.State, st.Description)
	}
	if got := s.v.head(t); got == c2 {
		t.Error("the deploy ran without an OS Login key")
	}
	page := getJob(t, s.p, job)
	if len(page.Steps) != 1 || page.Steps[0].Name != "connect" ||
		!strings.Contains(page.Steps[0].Error, "roles/compute.osAdminLogin") ||
		!strings.Contains(page.Steps[0].Error, "roles/iam.serviceAccountUser") {
		t.Errorf("job page steps %+v: want the connect error naming the roles to grant", page.Steps)
	}
	if n := s.relay.Stats().Connects; n != 0 {
		t.Errorf("%d tunnels opened without a key", n)
	}
}

// The OS Login account is the service account the credentials file names.
func TestServiceAccountEmail(t *testing.T) {
	for _, tt := range []struct {
		name, json, want, wantErr string
	}{
		{name: "service account key", json: `{"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com"}`,
			want: "a@p.iam.gserviceaccount.com"},
		{name: "impersonation", json: `{"type": "impersonated_service_account",
			"service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/b@p.iam.gserviceaccount.com:generateAccessToken",
			"source_credentials": {"type": "authorized_user", "client_email": "not-this@example.com"}}`,
			want: "b@p.iam.gserviceaccount.com"},
		{name: "user credentials", json: `{"type": "authorized_user", "client_id": "x"}`,
			wantErr: "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serviceAccountEmail(t.Context(), &google.Credentials{JSON: []byte(tt.json)})
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %q, %v; want %q, error containing %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
