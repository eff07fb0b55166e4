package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor/oslogin/oslogintest"
)

const osLoginAccount = "deployhook@acme-prod.iam.gserviceaccount.com" // the key file's client_email

// startOSLogin is the IAP setup with ssh.oslogin: true instead of a user and
// a key file. The fake OS Login keeps the sshd's authorized_keys equal to the
// profile's keys, as OS Login does on the VM, and gives the account the
// sshd's own user, so that only OS Login keys can log in.
func startOSLogin(t *testing.T) (*iapSetup, *oslogintest.Server) {
	s := newIAP(t)
	f := oslogintest.NewServer(t, oslogintest.Options{
		Account: osLoginAccount, Tokens: []string{googleToken},
		Accounts:           []oslogintest.PosixAccount{{Username: s.v.srv.User, UID: 2147483649, Primary: true}},
		AuthorizedKeysFile: filepath.Join(s.v.srv.Dir, "authorized_keys"),
	})
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
			return f.URL()
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
	waitFor(t, "the key's deletion", func() bool { return len(f.Deleted()) == 1 })
	imports := f.Imports()
	if len(imports) != 1 {
		t.Fatalf("%d keys imported, want 1", len(imports))
	}
	imp := imports[0]
	if exp := imp.Expires; exp.Before(before.Add(9*time.Minute)) || exp.After(time.Now().Add(10*time.Minute)) {
		t.Errorf("key expires at %v, want about 10 minutes after the deploy started (%v)", exp, before)
	}
	if imp.Project != iapProject || len(imp.Regions) != 1 || imp.Regions[0] != "us-central1" {
		t.Errorf("imported for project %q regions %q, want %s and the VM's region us-central1", imp.Project, imp.Regions, iapProject)
	}
	if got := f.Deleted(); got[0] != imp.Fingerprint {
		t.Errorf("deleted %q, want the imported key %q", got, imp.Fingerprint)
	}
	if keys := f.Keys(); len(keys) != 0 {
		t.Errorf("keys left in the profile: %v", keys)
	}
	if b, _ := os.ReadFile(filepath.Join(s.v.srv.Dir, "authorized_keys")); len(b) != 0 {
		t.Errorf("authorized_keys after the deploy: %q", b)
	}
}

// A 403 from OS Login fails the deploy at connect, with what to grant on the
// job page, before any tunnel is opened.
func TestOSLogin_PermissionDenied(t *testing.T) {
	s, f := startOSLogin(t)
	f.Inject(oslogintest.Fault{Op: oslogintest.OpImport, Status: http.StatusForbidden, Times: 100})
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
