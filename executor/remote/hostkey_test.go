package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newPub(t *testing.T, kind string) ssh.PublicKey {
	t.Helper()
	var pub any
	switch kind {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	default:
		p, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = p
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPins_algorithms(t *testing.T) {
	ed, rsaKey := newPub(t, "ed25519"), newPub(t, "rsa")
	tests := []struct {
		name string
		keys []ssh.PublicKey
		want []string
	}{
		{"ed25519", []ssh.PublicKey{ed}, []string{ssh.KeyAlgoED25519}},
		{"rsa allows sha2 signatures", []ssh.PublicKey{rsaKey}, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
		{"both, no duplicates", []ssh.PublicKey{ed, rsaKey, ed}, []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &pins{keys: tt.keys}
			if got := p.algorithms(); !slices.Equal(got, tt.want) {
				t.Errorf("algorithms() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoadPins(t *testing.T) {
	a, b, c, d := newPub(t, "ed25519"), newPub(t, "ed25519"), newPub(t, "ed25519"), newPub(t, "ed25519")
	kh := filepath.Join(t.TempDir(), "known_hosts")
	lines := knownhosts.Line([]string{"compute.1"}, a) + "\n" +
		knownhosts.Line([]string{knownhosts.HashHostname("compute.2")}, b) + "\n" +
		knownhosts.Line([]string{"10.0.0.5:2222"}, c) + "\n" +
		knownhosts.Line([]string{"compute.4"}, d) + "\n" +
		"@revoked * " + string(ssh.MarshalAuthorizedKey(d))
	if err := os.WriteFile(kh, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		alias string
		keys  []ssh.PublicKey
		want  []ssh.PublicKey // accepted
		not   []ssh.PublicKey // refused
	}{
		{"plain name", "compute.1", nil, []ssh.PublicKey{a}, []ssh.PublicKey{b, c}},
		{"hashed name", "compute.2", nil, []ssh.PublicKey{b}, []ssh.PublicKey{a, c}},
		{"address with port", "10.0.0.5:2222", nil, []ssh.PublicKey{c}, []ssh.PublicKey{a, b}},
		{"explicit keys add to the file", "compute.1", []ssh.PublicKey{b}, []ssh.PublicKey{a, b}, []ssh.PublicKey{c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := loadPins(tt.alias, kh, tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.want {
				if err := p.check(tt.alias, nil, k); err != nil {
					t.Errorf("check(%s) = %v, want accepted", ssh.FingerprintSHA256(k), err)
				}
			}
			for _, k := range tt.not {
				err := p.check(tt.alias, nil, k)
				he, ok := err.(*HostKeyError)
				if !ok || he.Fingerprint != ssh.FingerprintSHA256(k) {
					t.Errorf("check(%s) = %v, want a HostKeyError naming it", ssh.FingerprintSHA256(k), err)
				}
			}
		})
	}
	for _, alias := range []string{"compute.3", "compute.4"} {
		if _, err := loadPins(alias, kh, nil); err == nil {
			t.Errorf("loadPins(%s) succeeded: no line, or only a revoked key", alias)
		}
	}
}
