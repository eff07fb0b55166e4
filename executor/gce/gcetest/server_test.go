package gcetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The fake answers as the real API: ids as decimal strings, guest attributes
// by namespace or by key, the API's 404 texts, 401 without the token, 403
// for a denied permission; and it counts the calls.
func TestServer(t *testing.T) {
	s := NewServer(t, Options{})
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	s.SetInstance(Instance{Project: "p", Zone: "us-central1-a", Name: "vm", ID: 18446744073709551615,
		Attributes: append(HostKeyAttributes(signer.PublicKey()), Attribute{"other", "k", "v"})})
	base := s.URL() + "/compute/v1/projects/p/zones/us-central1-a/instances/"

	code, body := get(t, base+"vm", DefaultToken)
	var inst struct {
		ID                string
		Status            string
		NetworkInterfaces []struct{ Name, NetworkIP string }
	}
	if err := json.Unmarshal([]byte(body), &inst); code != 200 || err != nil || inst.ID != "18446744073709551615" || inst.Status != "RUNNING" ||
		len(inst.NetworkInterfaces) != 1 || inst.NetworkInterfaces[0].Name != "nic0" {
		t.Errorf("instances.get: %d %s", code, body)
	}
	if code, body := get(t, base+"gone", DefaultToken); code != 404 || !strings.Contains(body, "The resource 'projects/p/zones/us-central1-a/instances/gone' was not found") {
		t.Errorf("unknown instance: %d %s", code, body)
	}
	if code, _ := get(t, base+"vm", "ya29.wrong"); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	code, body = get(t, base+"vm/getGuestAttributes?queryPath=hostkeys%2F", DefaultToken)
	if code != 200 || !strings.Contains(body, `"key":"ssh-ed25519"`) || strings.Contains(body, `"other"`) {
		t.Errorf("hostkeys/: %d %s", code, body)
	}
	if code, body := get(t, base+"vm/getGuestAttributes?queryPath=hostkeys%2Fssh-rsa", DefaultToken); code != 404 ||
		!strings.Contains(body, "The resource 'hostkeys/ssh-rsa' of type 'Guest Attribute' was not found.") {
		t.Errorf("hostkeys/ssh-rsa: %d %s", code, body)
	}
	s.Deny("p", "us-central1-a", "vm", PermissionGetGuestAttributes)
	if code, body := get(t, base+"vm/getGuestAttributes?queryPath=hostkeys%2F", DefaultToken); code != 403 ||
		!strings.Contains(body, "Required 'compute.instances.getGuestAttributes' permission for 'projects/p/zones/us-central1-a/instances/vm'") {
		t.Errorf("denied: %d %s", code, body)
	}
	s.Inject(Fault{Op: OpGet, Status: 503, Body: ErrorBody(503, "backendError", "try again")})
	if code, _ := get(t, base+"vm", DefaultToken); code != 503 {
		t.Errorf("injected fault: %d, want 503", code)
	}
	if code, _ := get(t, base+"vm", DefaultToken); code != 200 {
		t.Errorf("after the fault: %d, want 200", code)
	}
	if got, want := s.Count(OpGet), 5; got != want {
		t.Errorf("Count(OpGet) = %d, want %d", got, want)
	}
	if got := len(s.Requests()); got != 8 {
		t.Errorf("%d requests recorded, want 8", got)
	}
}
