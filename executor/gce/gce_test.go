package gce

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/executor/gce/gcetest"
)

// The instance every test looks up.
const (
	project  = "acme-prod"
	zone     = "us-central1-a"
	instance = "dagster"

	instancePath = "/compute/v1/projects/acme-prod/zones/us-central1-a/instances/dagster"
	// What the REST client really sends for queryPath=hostkeys/.
	guestAttrsURI = instancePath + "/getGuestAttributes?queryPath=hostkeys%2F"
)

// response is an answer the fake gives instead of its own.
type response struct {
	Status int
	Body   string
}

// token is the access token the fake accepts.
const token = "ya29.test-token"

// newFake returns a fake Compute API that knows no instance.
func newFake(t *testing.T) *gcetest.Server {
	return gcetest.NewServer(t, gcetest.Options{Tokens: []string{token}})
}

// setInstance makes the fake know the instance every test looks up.
func setInstance(f *gcetest.Server, id uint64, status string, attrs ...attr) {
	var as []gcetest.Attribute
	for _, a := range attrs {
		as = append(as, gcetest.Attribute(a))
	}
	f.SetInstance(gcetest.Instance{Project: project, Zone: zone, Name: instance, ID: id, Status: status, Attributes: as})
}

// wantRequests fails the test unless the fake saw exactly these GETs, with the token.
func wantRequests(t *testing.T, f *gcetest.Server, uris ...string) {
	t.Helper()
	want := []gcetest.Request{}
	for _, u := range uris {
		want = append(want, gcetest.Request{Method: http.MethodGet, URI: u, Auth: "Bearer " + token})
	}
	if got := append([]gcetest.Request{}, f.Requests()...); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests:\n got %v\nwant %v", got, want)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestClient returns a Client talking to f with its token.
func newTestClient(t *testing.T, f *gcetest.Server) *Client {
	t.Helper()
	c, err := New(t.Context(), testLogger(t), Options{
		Endpoint:      f.URL() + "/",
		ClientOptions: []option.ClientOption{tokenOption(token)},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func tokenOption(tok string) option.ClientOption {
	return option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok, TokenType: "Bearer"}))
}

// apiError is the JSON body of a Compute API error answer.
var apiError = gcetest.ErrorBody

var (
	apiDisabled403 = apiError(403, "accessNotConfigured",
		"Compute Engine API has not been used in project 123456789012 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/compute.googleapis.com/overview?project=123456789012 then retry.")
)

func TestClient_Instance(t *testing.T) {
	fault := func(status int, body string) func(*gcetest.Server) {
		return func(f *gcetest.Server) { f.Inject(gcetest.Fault{Op: gcetest.OpGet, Status: status, Body: body}) }
	}
	running := func(id uint64, status string) func(*gcetest.Server) {
		return func(f *gcetest.Server) { setInstance(f, id, status) }
	}
	tests := []struct {
		name    string
		setup   func(*gcetest.Server)
		token   string // "" for the fake's
		want    Instance
		wantErr []string // substrings of the error; nil: no error
		apiErr  bool     // the error wraps a *googleapi.Error
		running []string // substrings of Running's error; nil: nil error
	}{
		{
			name:  "running",
			setup: running(4212345678901234567, "RUNNING"),
			want:  Instance{ID: 4212345678901234567, Name: "dagster", Status: "RUNNING", NIC: "nic0", InternalIP: "10.128.0.5"},
		},
		{
			name:    "terminated",
			setup:   running(4212345678901234567, "TERMINATED"),
			want:    Instance{ID: 4212345678901234567, Name: "dagster", Status: "TERMINATED", NIC: "nic0", InternalIP: "10.128.0.5"},
			running: []string{`"dagster"`, "is TERMINATED, not RUNNING", "start it"},
		},
		{
			name:    "suspended",
			setup:   running(7, "SUSPENDED"),
			want:    Instance{ID: 7, Name: "dagster", Status: "SUSPENDED", NIC: "nic0", InternalIP: "10.128.0.5"},
			running: []string{"is SUSPENDED", "resume it"},
		},
		{
			name:    "provisioning",
			setup:   running(7, "PROVISIONING"),
			want:    Instance{ID: 7, Name: "dagster", Status: "PROVISIONING", NIC: "nic0", InternalIP: "10.128.0.5"},
			running: []string{"is PROVISIONING"},
		},
		{
			name:  "id above 2^63",
			setup: running(18446744073709551615, "RUNNING"),
			want:  Instance{ID: 18446744073709551615, Name: "dagster", Status: "RUNNING", NIC: "nic0", InternalIP: "10.128.0.5"},
		},
		{
			name:  "id just above 2^63",
			setup: running(1<<63+1, "RUNNING"),
			want:  Instance{ID: 1<<63 + 1, Name: "dagster", Status: "RUNNING", NIC: "nic0", InternalIP: "10.128.0.5"},
		},
		{
			name: "second interface not used",
			setup: func(f *gcetest.Server) {
				f.SetInstance(gcetest.Instance{Project: project, Zone: zone, Name: instance, ID: 7,
					NICs: []gcetest.NIC{{Name: "nic0", IP: "10.128.0.5"}, {Name: "nic1", IP: "10.200.0.7"}}})
			},
			want: Instance{ID: 7, Name: "dagster", Status: "RUNNING", NIC: "nic0", InternalIP: "10.128.0.5"},
		},
		{
			name:    "no id",
			setup:   fault(200, `{"kind":"compute#instance","name":"dagster","status":"RUNNING"}`),
			wantErr: []string{"no instance id"},
		},
		{
			name:    "not found",
			setup:   func(*gcetest.Server) {},
			wantErr: []string{`instance "dagster" not found in project "acme-prod" zone "us-central1-a"`, "check the vm project, zone and instance names"},
			apiErr:  true,
		},
		{
			name: "permission denied",
			setup: func(f *gcetest.Server) {
				setInstance(f, 7, "RUNNING")
				f.Deny(project, zone, instance, gcetest.PermissionGet)
			},
			wantErr: []string{"permission compute.instances.get denied", `instance "dagster"`, "roles/compute.viewer"},
			apiErr:  true,
		},
		{
			name:    "server error passes through",
			setup:   fault(500, apiError(500, "backendError", "Internal error. Please try again or contact Google Support.")),
			wantErr: []string{"get instance: googleapi: Error 500: Internal error"},
			apiErr:  true,
		},
		{
			name:    "unauthorized",
			setup:   running(7, "RUNNING"),
			token:   "ya29.expired",
			wantErr: []string{"refused the credentials", "GOOGLE_APPLICATION_CREDENTIALS"},
			apiErr:  true,
		},
		{
			name:    "api disabled",
			setup:   fault(403, apiDisabled403),
			wantErr: []string{`the Compute Engine API is not enabled in project "acme-prod"`},
			apiErr:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			tt.setup(f)
			c := newTestClient(t, f)
			wantAuth := "Bearer " + token
			if tt.token != "" {
				c = newClientWithToken(t, f, tt.token)
				wantAuth = "Bearer " + tt.token
			}
			got, err := c.Instance(t.Context(), project, zone, instance)
			if reqs := f.Requests(); len(reqs) != 1 || reqs[0] != (gcetest.Request{Method: http.MethodGet, URI: instancePath, Auth: wantAuth}) {
				t.Errorf("requests %v, want one GET %s", reqs, instancePath)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Instance = %+v, want an error", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				var ge *googleapi.Error
				if errors.As(err, &ge) != tt.apiErr {
					t.Errorf("error %v: wraps a *googleapi.Error: %v, want %v", err, !tt.apiErr, tt.apiErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Instance: %v", err)
			}
			if got != tt.want {
				t.Errorf("Instance = %+v, want %+v", got, tt.want)
			}
			err = got.Running()
			if tt.running == nil {
				if err != nil {
					t.Errorf("Running = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrNotRunning) {
				t.Errorf("Running = %v, want ErrNotRunning", err)
			}
			for _, s := range tt.running {
				if err != nil && !strings.Contains(err.Error(), s) {
					t.Errorf("Running error %q does not say %q", err, s)
				}
			}
		})
	}
}

// newClientWithToken returns a Client presenting tok.
func newClientWithToken(t *testing.T, f *gcetest.Server, tok string) *Client {
	t.Helper()
	c, err := New(t.Context(), testLogger(t), Options{Endpoint: f.URL(), ClientOptions: []option.ClientOption{tokenOption(tok)}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClient_Instance_badNames(t *testing.T) {
	tests := []struct {
		name                string
		project, zone, inst string
		want                string
	}{
		{"empty project", "", zone, instance, "empty project name"},
		{"empty zone", project, "", instance, "empty zone name"},
		{"empty instance", project, zone, "", "empty instance name"},
		{"slash", project, zone, "dagster/getGuestAttributes", `invalid instance name "dagster/getGuestAttributes"`},
		{"dot dot", project, "..", instance, `invalid zone name ".."`},
		{"query", project, zone, "dagster?x=1", "invalid instance name"},
	}
	f := newFake(t)
	c := newTestClient(t, f)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Instance(t.Context(), tt.project, tt.zone, tt.inst)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Instance error = %v, want %q", err, tt.want)
			}
			_, err = c.HostKeys(t.Context(), tt.project, tt.zone, tt.inst)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("HostKeys error = %v, want %q", err, tt.want)
			}
		})
	}
	wantRequests(t, f)
}

func TestNew_tokenSource(t *testing.T) {
	f := newFake(t)
	setInstance(f, 42, "RUNNING")
	c, err := New(t.Context(), testLogger(t), Options{Endpoint: f.URL(), ClientOptions: []option.ClientOption{tokenOption(token)}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if _, err := c.Instance(t.Context(), project, zone, instance); err != nil {
		t.Fatalf("Instance: %v", err)
	}
	wantRequests(t, f, instancePath)
}

func TestNew_badEndpoint(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
	}{
		{"relative", "compute.example.com"},
		{"ftp", "ftp://compute.example.com"},
		{"query", "https://compute.example.com/?x=1"},
		{"no host", "https://"},
		// Issue 8, item 8: the token went in cleartext to any http host.
		{"http elsewhere", "http://compute.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(t.Context(), testLogger(t), Options{Endpoint: tt.endpoint,
				ClientOptions: []option.ClientOption{option.WithoutAuthentication()}})
			if err == nil {
				c.Close()
				t.Fatalf("New(%q) = nil error", tt.endpoint)
			}
			if !strings.Contains(err.Error(), "DEPLOYHOOK_COMPUTE_URL") {
				t.Errorf("error %q does not name the setting", err)
			}
		})
	}
}

func TestClient_Close_twice(t *testing.T) {
	f := newFake(t)
	c, err := New(t.Context(), testLogger(t), Options{Endpoint: f.URL(),
		ClientOptions: []option.ClientOption{tokenOption(token)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("first Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Instance(t.Context(), project, zone, instance); !errors.Is(err, ErrClosed) {
		t.Errorf("Instance after Close = %v, want ErrClosed", err)
	}
	if _, err := c.HostKeys(t.Context(), project, zone, instance); !errors.Is(err, ErrClosed) {
		t.Errorf("HostKeys after Close = %v, want ErrClosed", err)
	}
	wantRequests(t, f)
}

// testKeys are real host keys generated for the test.
type testKeys struct {
	ed25519, ecdsa256, ecdsa384, rsa ssh.PublicKey
}

func newTestKeys(t *testing.T) testKeys {
	t.Helper()
	var k testKeys
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		dst *ssh.PublicKey
		key any
	}{{&k.ed25519, edPriv.Public()}, {&k.ecdsa256, &ec256.PublicKey}, {&k.ecdsa384, &ec384.PublicKey}, {&k.rsa, &rsaKey.PublicKey}} {
		pk, err := ssh.NewPublicKey(p.key)
		if err != nil {
			t.Fatal(err)
		}
		*p.dst = pk
	}
	return k
}

// b64 is a key as the guest agent publishes it: the base64 blob only.
func b64(k ssh.PublicKey) string {
	return base64.StdEncoding.EncodeToString(k.Marshal())
}

// nonCanonical returns a base64 text that decodes to the same bytes as k's
// blob but does not re-encode to itself (non-zero padding bits). k's blob
// length must not be a multiple of 3.
func nonCanonical(t *testing.T, k ssh.PublicKey) string {
	t.Helper()
	s := b64(k)
	i := strings.IndexByte(s, '=') - 1
	if i < 0 {
		t.Fatalf("key blob of %d bytes has no padding", len(k.Marshal()))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	s = s[:i] + string(alphabet[strings.IndexByte(alphabet, s[i])^1]) + s[i+1:]
	if b, err := base64.StdEncoding.DecodeString(s); err != nil || string(b) != string(k.Marshal()) {
		t.Fatalf("nonCanonical: %q does not decode to the key (err %v)", s, err)
	}
	return s
}

type attr struct{ Namespace, Key, Value string }

// guestAttrsJSON is a real-shaped getGuestAttributes answer holding items as
// given, for answers the fake would not give (another namespace under
// hostkeys/).
func guestAttrsJSON(items ...attr) string {
	type item struct {
		Namespace string `json:"namespace"`
		Key       string `json:"key"`
		Value     string `json:"value"`
	}
	var its []item
	for _, a := range items {
		its = append(its, item(a))
	}
	b, _ := json.Marshal(map[string]any{
		"kind":       "compute#guestAttributes",
		"queryPath":  "hostkeys/",
		"queryValue": map[string]any{"items": its},
		"selfLink":   "https://www.googleapis.com/compute/v1/projects/acme-prod/zones/us-central1-a/instances/dagster/guestAttributes/hostkeys/",
	})
	return string(b)
}

func TestClient_HostKeys(t *testing.T) {
	k := newTestKeys(t)
	other := newTestKeys(t)
	tests := []struct {
		name    string
		attrs   []attr    // the instance's guest attributes
		fault   *response // an answer the fake gives instead
		missing bool      // no such instance
		deny    bool      // no permission to read guest attributes
		want    []ssh.PublicKey
		wantErr []string // substrings; nil: no error
		noKeys  bool     // the error wraps ErrNoHostKeys
	}{
		{
			name: "all three types, returned ed25519 first",
			attrs: []attr{
				attr{"hostkeys", "ssh-rsa", b64(k.rsa)},
				attr{"hostkeys", "ecdsa-sha2-nistp256", b64(k.ecdsa256)},
				attr{"hostkeys", "ssh-ed25519", b64(k.ed25519)},
			},
			want: []ssh.PublicKey{k.ed25519, k.ecdsa256, k.rsa},
		},
		{
			name: "trailing newline and injected second line are cut",
			attrs: []attr{
				attr{"hostkeys", "ssh-ed25519", b64(k.ed25519) + "\n"},
				attr{"hostkeys", "ecdsa-sha2-nistp256", b64(k.ecdsa256) + "\nssh-ed25519 " + b64(other.ed25519) + " evil"},
			},
			want: []ssh.PublicKey{k.ed25519, k.ecdsa256},
		},
		{
			name: "value that does not round-trip is rejected",
			attrs: []attr{
				attr{"hostkeys", "ecdsa-sha2-nistp256", nonCanonical(t, k.ecdsa256)},
				attr{"hostkeys", "ssh-ed25519", b64(k.ed25519)},
			},
			want: []ssh.PublicKey{k.ed25519},
		},
		{
			name: "not base64 and leading whitespace are rejected",
			attrs: []attr{
				attr{"hostkeys", "ssh-rsa", "not*base64"},
				attr{"hostkeys", "ecdsa-sha2-nistp256", " " + b64(k.ecdsa256)},
				attr{"hostkeys", "ssh-ed25519", b64(k.ed25519)},
			},
			want: []ssh.PublicKey{k.ed25519},
		},
		{
			name: "wrong namespace and unknown key type are ignored",
			fault: &response{200, guestAttrsJSON(
				attr{"otherns", "ssh-ed25519", b64(other.ed25519)},
				attr{"hostkeys", "ecdsa-sha2-nistp384", b64(k.ecdsa384)},
				attr{"hostkeys", "ssh-dss", b64(other.rsa)},
				attr{"hostkeys", "ssh-rsa", b64(k.rsa)},
			)},
			want: []ssh.PublicKey{k.rsa},
		},
		{
			name: "type mismatch is rejected",
			attrs: []attr{
				attr{"hostkeys", "ecdsa-sha2-nistp256", b64(k.ecdsa384)},
				attr{"hostkeys", "ssh-rsa", b64(other.ed25519)},
				attr{"hostkeys", "ssh-ed25519", b64(k.ed25519)},
			},
			want: []ssh.PublicKey{k.ed25519},
		},
		{
			name: "not a key blob is rejected",
			attrs: []attr{
				attr{"hostkeys", "ssh-ed25519", base64.StdEncoding.EncodeToString([]byte("hello, world"))},
				attr{"hostkeys", "ssh-rsa", b64(k.rsa)},
			},
			want: []ssh.PublicKey{k.rsa},
		},
		{
			name:    "no guest attributes",
			attrs:   nil,
			wantErr: []string{"publishes no host keys", "enable-guest-attributes=TRUE", "known_hosts_file", "compute.<instance id>"},
			noKeys:  true,
		},
		{
			name: "only unusable keys",
			fault: &response{200, guestAttrsJSON(
				attr{"hostkeys", "ssh-ed25519", b64(k.rsa)},
				attr{"otherns", "ssh-rsa", b64(k.rsa)},
			)},
			wantErr: []string{"none of its 2 hostkeys/ guest attributes holds a usable key", "enable-guest-attributes=TRUE"},
			noKeys:  true,
		},
		{
			name:    "empty answer",
			fault:   &response{200, `{"kind":"compute#guestAttributes","queryPath":"hostkeys/","queryValue":{}}`},
			wantErr: []string{"none of its 0 hostkeys/ guest attributes"},
			noKeys:  true,
		},
		{
			name:    "instance not found",
			missing: true,
			wantErr: []string{`instance "dagster" not found in project "acme-prod" zone "us-central1-a"`},
		},
		{
			name:    "permission denied",
			deny:    true,
			wantErr: []string{"permission compute.instances.getGuestAttributes denied", "roles/compute.viewer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if !tt.missing {
				setInstance(f, 7, "RUNNING", tt.attrs...)
			}
			if tt.deny {
				f.Deny(project, zone, instance, gcetest.PermissionGetGuestAttributes)
			}
			if tt.fault != nil {
				f.Inject(gcetest.Fault{Op: gcetest.OpGetGuestAttributes, Status: tt.fault.Status, Body: tt.fault.Body})
			}
			c := newTestClient(t, f)
			got, err := c.HostKeys(t.Context(), project, zone, instance)
			wantRequests(t, f, guestAttrsURI)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("HostKeys: %v", err)
				}
				if !sameKeys(got, tt.want) {
					t.Errorf("HostKeys = %v, want %v", fingerprints(got), fingerprints(tt.want))
				}
				return
			}
			if err == nil {
				t.Fatalf("HostKeys = %v, want an error", fingerprints(got))
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if errors.Is(err, ErrNoHostKeys) != tt.noKeys {
				t.Errorf("errors.Is(%v, ErrNoHostKeys) = %v, want %v", err, !tt.noKeys, tt.noKeys)
			}
			if len(got) != 0 {
				t.Errorf("HostKeys returned keys %v with an error", fingerprints(got))
			}
		})
	}
}

func sameKeys(a, b []ssh.PublicKey) bool {
	return fmt.Sprint(fingerprints(a)) == fmt.Sprint(fingerprints(b))
}

func fingerprints(keys []ssh.PublicKey) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, k.Type()+" "+ssh.FingerprintSHA256(k))
	}
	return out
}
