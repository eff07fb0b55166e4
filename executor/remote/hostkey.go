package remote

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is the error of a connection refused because the target presented a
// host key that is not pinned: unknown, or changed since it was pinned (a recreated
// VM, or a man in the middle). Nothing was run on the target.
type HostKeyError struct {
	Alias       string   // the name the pins are looked up by (SSHOptions.HostKeyAlias)
	Fingerprint string   // SHA256 fingerprint of the key the target presented
	Type        string   // its type, e.g. ssh-ed25519
	Pinned      []string // SHA256 fingerprints of the pinned keys
}

// Error says which key was seen, for which alias, and what to do about it.
func (e *HostKeyError) Error() string {
	return fmt.Sprintf("host key of %s is not pinned: it presented %s key %s, pinned are %s; "+
		"if the VM was recreated on purpose, check the new key (e.g. from its guest attributes "+
		"hostkeys/) and pin it in known_hosts_file under %q or in the host keys, otherwise "+
		"someone may be intercepting the connection",
		e.Alias, e.Type, e.Fingerprint, strings.Join(e.Pinned, ", "), e.Alias)
}

// pins is the set of host keys a target may present.
type pins struct {
	alias string
	keys  []ssh.PublicKey
}

// loadPins collects the keys pinned for alias: the explicit keys and the lines of
// the known_hosts file that match alias (plain or hashed names), less revoked
// keys. @cert-authority lines are not supported: they add no pin.
func loadPins(alias, knownHostsFile string, keys []ssh.PublicKey) (*pins, error) {
	p := &pins{alias: alias}
	for _, k := range keys {
		if k != nil {
			p.keys = append(p.keys, k)
		}
	}
	if knownHostsFile != "" {
		cb, err := knownhosts.New(knownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("read known hosts file: %w", err)
		}
		// knownhosts has no lookup by name; asking it about a fresh key that
		// cannot be pinned makes it list the keys it knows for the name.
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		probe, err := ssh.NewPublicKey(priv.Public())
		if err != nil {
			return nil, err
		}
		addr := alias
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(addr, "22")
		}
		remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22} // unused: addr has a name
		err = cb(addr, remote, probe)
		var ke *knownhosts.KeyError
		switch {
		case errors.As(err, &ke):
			for _, k := range ke.Want {
				// A line for the name whose key is also @revoked is no pin.
				if cb(addr, remote, k.Key) == nil {
					p.keys = append(p.keys, k.Key)
				}
			}
		case err != nil:
			return nil, fmt.Errorf("look up %s in known hosts file: %w", alias, err)
		}
	}
	if len(p.keys) == 0 {
		return nil, fmt.Errorf("no host key pinned for %s: set known_hosts_file to a file with a line for %q "+
			"(ssh-keyscan output checked out of band, or the VM's guest attributes hostkeys/), or give the host keys; "+
			"deployhook never trusts a key on first use", alias, knownhosts.Normalize(alias))
	}
	return p, nil
}

// algorithms returns the host key algorithms to offer: those of the pinned keys.
// An ssh-rsa key is offered with SHA-2 signatures first (RFC 8332).
func (p *pins) algorithms() []string {
	var algos []string
	add := func(a ...string) {
		for _, x := range a {
			if !slices.Contains(algos, x) {
				algos = append(algos, x)
			}
		}
	}
	for _, k := range p.keys {
		switch k.Type() {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(k.Type())
		}
	}
	return algos
}

// check is the HostKeyCallback: it accepts only a key equal to a pinned one.
func (p *pins) check(_ string, _ net.Addr, key ssh.PublicKey) error {
	b := key.Marshal()
	for _, k := range p.keys {
		if bytes.Equal(b, k.Marshal()) {
			return nil
		}
	}
	e := &HostKeyError{Alias: p.alias, Fingerprint: ssh.FingerprintSHA256(key), Type: key.Type()}
	for _, k := range p.keys {
		e.Pinned = append(e.Pinned, ssh.FingerprintSHA256(k))
	}
	return e
}
