package gce

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestHostKeyAlias(t *testing.T) {
	tests := []struct {
		id   uint64
		want string
	}{
		{1, "compute.1"},
		{4212345678901234567, "compute.4212345678901234567"},
		{18446744073709551615, "compute.18446744073709551615"},
	}
	for _, tt := range tests {
		if got := HostKeyAlias(tt.id); got != tt.want {
			t.Errorf("HostKeyAlias(%d) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

// line is a known_hosts line for hosts with key k.
func line(hosts string, k ssh.PublicKey) string {
	return hosts + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestPins_Select(t *testing.T) {
	const id = 4212345678901234567
	alias := HostKeyAlias(id)
	k := newTestKeys(t)     // the VM's current keys
	old := newTestKeys(t)   // the keys of the VM that had the name before
	other := newTestKeys(t) // another host's keys
	tests := []struct {
		name       string
		knownHosts string
		published  []ssh.PublicKey
		want       []ssh.PublicKey
		wantSource Source
		wantErr    []string // substrings; nil: no error
	}{
		{
			name:       "no config: guest attributes",
			published:  []ssh.PublicKey{k.ed25519, k.rsa},
			want:       []ssh.PublicKey{k.ed25519, k.rsa},
			wantSource: SourceGuestAttributes,
		},
		{
			name: "config for this id wins over guest attributes",
			knownHosts: "# pinned by hand\n\n" +
				line(alias, k.ecdsa256) + "\n" +
				line("10.128.0.5,"+alias, k.rsa) + " root@dagster\n",
			published:  []ssh.PublicKey{other.ed25519},
			want:       []ssh.PublicKey{k.ecdsa256, k.rsa},
			wantSource: SourceConfig,
		},
		{
			name:       "config for this id, nothing published",
			knownHosts: line(alias, k.ed25519),
			want:       []ssh.PublicKey{k.ed25519},
			wantSource: SourceConfig,
		},
		{
			name:       "hashed alias",
			knownHosts: line(knownhosts.HashHostname(alias), k.ed25519),
			published:  []ssh.PublicKey{other.ed25519},
			want:       []ssh.PublicKey{k.ed25519},
			wantSource: SourceConfig,
		},
		{
			name:       "pin for a recreated VM's old id does not apply",
			knownHosts: line(HostKeyAlias(id-1), old.ed25519) + "\n" + line("compute.42123456789012345670", old.rsa),
			published:  []ssh.PublicKey{k.ed25519},
			want:       []ssh.PublicKey{k.ed25519},
			wantSource: SourceGuestAttributes,
		},
		{
			name:       "hashed other id does not apply",
			knownHosts: line(knownhosts.HashHostname(HostKeyAlias(id+1)), old.ed25519),
			published:  []ssh.PublicKey{k.ed25519},
			want:       []ssh.PublicKey{k.ed25519},
			wantSource: SourceGuestAttributes,
		},
		{
			name:       "patterns are not expanded",
			knownHosts: line("compute.*", old.ed25519) + "\n" + line("compute.42123456789012345?7", old.rsa),
			published:  []ssh.PublicKey{k.ed25519},
			want:       []ssh.PublicKey{k.ed25519},
			wantSource: SourceGuestAttributes,
		},
		{
			name:       "a revoked key is dropped from the guest attributes",
			knownHosts: "@revoked " + line(alias, k.rsa),
			published:  []ssh.PublicKey{k.ed25519, k.rsa},
			want:       []ssh.PublicKey{k.ed25519},
			wantSource: SourceGuestAttributes,
		},
		{
			name:       "a revoked key is dropped from the config",
			knownHosts: line(alias, k.ed25519) + "\n" + line(alias, k.rsa) + "\n@revoked " + line(alias, k.rsa),
			want:       []ssh.PublicKey{k.ed25519},
			wantSource: SourceConfig,
		},
		{
			name:       "every published key revoked: refused",
			knownHosts: "@revoked " + line(alias, k.ed25519),
			published:  []ssh.PublicKey{k.ed25519},
			wantErr:    []string{"no host key for instance id 4212345678901234567"},
		},
		{
			name:      "nothing at all: refused",
			published: []ssh.PublicKey{},
			wantErr: []string{
				"no host key for instance id 4212345678901234567",
				`"compute.4212345678901234567 ssh-ed25519 AAAA..."`,
				"ssh.known_hosts_file",
				"enable-guest-attributes=TRUE",
			},
		},
		{
			name:       "only other hosts configured, nothing published: refused",
			knownHosts: line("10.128.0.5", other.ed25519) + "\n" + line(HostKeyAlias(id+1), old.ed25519),
			wantErr:    []string{"no host key for instance id 4212345678901234567"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePins([]byte(tt.knownHosts))
			if err != nil {
				t.Fatalf("ParsePins: %v", err)
			}
			got, src, err := p.Select(id, tt.published)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Select = %v from %q, want an error", fingerprints(got), src)
				}
				if !errors.Is(err, ErrNoHostKeys) {
					t.Errorf("error %v does not wrap ErrNoHostKeys", err)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if len(got) != 0 {
					t.Errorf("Select returned keys %v with an error", fingerprints(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			if src != tt.wantSource {
				t.Errorf("Select source = %q, want %q", src, tt.wantSource)
			}
			if !sameKeys(got, tt.want) {
				t.Errorf("Select = %v, want %v", fingerprints(got), fingerprints(tt.want))
			}
		})
	}
}

func TestParsePins_errors(t *testing.T) {
	k := newTestKeys(t)
	tests := []struct {
		name       string
		knownHosts string
		want       string
	}{
		{"not a key", "compute.1 ssh-ed25519 bm90IGEga2V5", "line 1"},
		{"missing key", "# comment\ncompute.1\n", "line 2"},
		{"cert authority for an alias", "@cert-authority " + line("compute.1", k.ed25519), "@cert-authority is not supported for compute.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePins([]byte(tt.knownHosts))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParsePins error = %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestParsePins_otherHostsAllowed(t *testing.T) {
	k := newTestKeys(t)
	p, err := ParsePins([]byte("@cert-authority *.example.com " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.ed25519))) + "\n" +
		line("[10.128.0.5]:2222", k.rsa) + "\r\n"))
	if err != nil {
		t.Fatalf("ParsePins: %v", err)
	}
	if keys := p.For(1); len(keys) != 0 {
		t.Errorf("For(1) = %v, want none", fingerprints(keys))
	}
}
