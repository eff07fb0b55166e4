package gce

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestClient_Target(t *testing.T) {
	const id = "4212345678901234567"
	k := newTestKeys(t)
	pinned := newTestKeys(t)
	published := guestAttrsJSON(
		attr{"hostkeys", "ssh-ed25519", b64(k.ed25519)},
		attr{"hostkeys", "ssh-rsa", b64(k.rsa)},
	)
	tests := []struct {
		name       string
		knownHosts string
		routes     map[string]response
		wantURIs   []string // the requests the lookup makes, in order
		want       []ssh.PublicKey
		wantSource Source
		wantErr    error
	}{
		{
			name: "guest attributes",
			routes: map[string]response{
				instancePath:  {200, instanceJSON(t, id, "RUNNING")},
				guestAttrsURI: {200, published},
			},
			wantURIs:   []string{instancePath, guestAttrsURI},
			want:       []ssh.PublicKey{k.ed25519, k.rsa},
			wantSource: SourceGuestAttributes,
		},
		{
			name:       "configured pins: guest attributes not read",
			knownHosts: line("compute."+id, pinned.ecdsa256),
			routes:     map[string]response{instancePath: {200, instanceJSON(t, id, "RUNNING")}},
			wantURIs:   []string{instancePath},
			want:       []ssh.PublicKey{pinned.ecdsa256},
			wantSource: SourceConfig,
		},
		{
			name:       "recreated VM: old pin ignored, new guest attributes used",
			knownHosts: line("compute.1111", pinned.ed25519),
			routes: map[string]response{
				instancePath:  {200, instanceJSON(t, id, "RUNNING")},
				guestAttrsURI: {200, published},
			},
			wantURIs:   []string{instancePath, guestAttrsURI},
			want:       []ssh.PublicKey{k.ed25519, k.rsa},
			wantSource: SourceGuestAttributes,
		},
		{
			name:     "stopped VM fails before reading keys",
			routes:   map[string]response{instancePath: {200, instanceJSON(t, id, "TERMINATED")}},
			wantURIs: []string{instancePath},
			wantErr:  ErrNotRunning,
		},
		{
			name: "no keys anywhere",
			routes: map[string]response{
				instancePath:  {200, instanceJSON(t, id, "RUNNING")},
				guestAttrsURI: {404, noHostKeys404},
			},
			wantURIs: []string{instancePath, guestAttrsURI},
			wantErr:  ErrNoHostKeys,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeCompute(t, tt.routes)
			c := newTestClient(t, f)
			pins, err := ParsePins([]byte(tt.knownHosts))
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Target(t.Context(), project, zone, instance, pins)
			f.wantRequests(t, "", tt.wantURIs...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Target error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), `"dagster"`) {
					t.Errorf("error %q does not name the instance", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Target: %v", err)
			}
			if got.Instance.ID != 4212345678901234567 || got.Instance.NIC != "nic0" {
				t.Errorf("Target instance = %+v", got.Instance)
			}
			if got.Source != tt.wantSource {
				t.Errorf("Target source = %q, want %q", got.Source, tt.wantSource)
			}
			if !sameKeys(got.HostKeys, tt.want) {
				t.Errorf("Target keys = %v, want %v", fingerprints(got.HostKeys), fingerprints(tt.want))
			}
		})
	}
}
