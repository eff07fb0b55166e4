package oslogintest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const account = "sa@p.iam.gserviceaccount.com"

func do(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func authorizedKey(t *testing.T) (string, ssh.PublicKey) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := ssh.NewSignerFromKey(priv)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))), s.PublicKey()
}

// An imported key is in the profile, in the authorized keys file and in the
// answer, until it expires or is deleted; requests without the token, for
// another account or with unknown fields are refused as the real API does.
func TestServer(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "authorized_keys")
	s := NewServer(t, Options{Account: account, AuthorizedKeysFile: keys})
	text, pk := authorizedKey(t)
	fp := Fingerprint(pk)
	imp := s.URL() + "/v1/users/" + account + ":importSshPublicKey?projectId=p&regions=us-central1"

	if code, _ := do(t, "POST", imp, "", `{"key": "`+text+`"}`); code != http.StatusUnauthorized {
		t.Errorf("import without a token: %d, want 401", code)
	}
	if code, _ := do(t, "POST", s.URL()+"/v1/users/other@p.iam.gserviceaccount.com:importSshPublicKey?projectId=p", DefaultToken, `{"key": "`+text+`"}`); code != http.StatusForbidden {
		t.Errorf("import for another account: %d, want 403", code)
	}
	if code, _ := do(t, "POST", imp, DefaultToken, `{"key": "`+text+`", "bogus": 1}`); code != http.StatusBadRequest {
		t.Errorf("import with an unknown field: %d, want 400", code)
	}
	exp := time.Now().Add(time.Hour).UnixMicro()
	code, body := do(t, "POST", imp, DefaultToken, `{"key": "`+text+`", "expirationTimeUsec": "`+strconv.FormatInt(exp, 10)+`"}`)
	var got struct {
		LoginProfile struct {
			PosixAccounts []struct {
				Primary  bool
				Username string
			}
			SSHPublicKeys map[string]struct{ Key, Fingerprint, ExpirationTimeUsec string } `json:"sshPublicKeys"`
		}
	}
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil {
		t.Fatalf("import: %d %s (%v)", code, body, err)
	}
	if a := got.LoginProfile.PosixAccounts; len(a) != 1 || !a[0].Primary || a[0].Username != DefaultUser {
		t.Errorf("posix accounts %+v, want the default primary", a)
	}
	if k := got.LoginProfile.SSHPublicKeys[fp]; k.Key != text || k.Fingerprint != fp || k.ExpirationTimeUsec != strconv.FormatInt(exp, 10) {
		t.Errorf("profile keys %+v, want %s under %s", got.LoginProfile.SSHPublicKeys, text, fp)
	}
	if b, _ := os.ReadFile(keys); string(b) != text+"\n" {
		t.Errorf("authorized keys %q", b)
	}
	if imps := s.Imports(); len(imps) != 2 || imps[0].Key != "" || imps[1].Fingerprint != fp || imps[1].Regions[0] != "us-central1" {
		t.Errorf("imports %+v", imps)
	}
	if code, body := do(t, "GET", s.URL()+"/v1/users/"+account+"/loginProfile?projectId=p", DefaultToken, ""); code != http.StatusOK || !strings.Contains(body, fp) || strings.Contains(body, "loginProfile") {
		t.Errorf("getLoginProfile: %d %s", code, body)
	}
	if code, _ := do(t, "DELETE", s.URL()+"/v1/users/"+account+"/sshPublicKeys/"+fp, DefaultToken, ""); code != http.StatusOK {
		t.Errorf("delete: %d", code)
	}
	if code, _ := do(t, "DELETE", s.URL()+"/v1/users/"+account+"/sshPublicKeys/"+fp, DefaultToken, ""); code != http.StatusNotFound {
		t.Errorf("second delete: %d, want 404", code)
	}
	if b, _ := os.ReadFile(keys); len(b) != 0 || len(s.Keys()) != 0 {
		t.Errorf("after delete: authorized keys %q, profile %v", b, s.Keys())
	}

	// A key past its expiry is no longer in the profile.
	text2, pk2 := authorizedKey(t)
	past := strconv.FormatInt(time.Now().Add(-time.Second).UnixMicro(), 10)
	if code, body := do(t, "POST", imp, DefaultToken, `{"key": "`+text2+`", "expirationTimeUsec": "`+past+`"}`); code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	if got := s.Keys(); len(got) != 0 {
		t.Errorf("profile holds an expired key %v (%s)", got, Fingerprint(pk2))
	}
}
