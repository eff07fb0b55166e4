package gce

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// aliasPrefix starts the host-key alias of an instance; gcloud writes its
// known_hosts entries for Compute Engine VMs under the same alias.
const aliasPrefix = "compute."

// HostKeyAlias returns the name under which the host keys of the instance with
// numeric ID id are pinned in a known_hosts file: "compute.<id>", the
// HostKeyAlias gcloud compute ssh uses. Pinning by ID, not by name, means a VM
// recreated under the same name (new ID, new host keys) matches no old pin.
func HostKeyAlias(id uint64) string {
	return aliasPrefix + strconv.FormatUint(id, 10)
}

// Source says where the host keys chosen by Pins.Select come from.
type Source string

// The sources of host keys.
const (
	SourceConfig          Source = "config"           // configured known_hosts lines for compute.<id>
	SourceGuestAttributes Source = "guest attributes" // the instance's hostkeys/ guest attributes
)

// Pins are host keys configured for Compute Engine instances, keyed by their
// alias compute.<id>. The zero value holds no pins. A Pins is read-only after
// ParsePins and safe for concurrent use.
type Pins struct {
	entries []pinEntry
}

type pinEntry struct {
	hosts   []string // host patterns as written: plain names or hashed |1|salt|hash
	key     ssh.PublicKey
	revoked bool // a @revoked line
}

// ParsePins parses known_hosts content (the target's ssh.known_hosts_file) and
// keeps every line; Select later uses the lines that name an instance's alias
// compute.<id>, either in plain text or hashed (ssh-keygen -H). Patterns are
// not expanded: "compute.*" pins nothing. Lines for other hosts (used by the
// plain SSH transport) are allowed and ignored by Select. Empty content gives
// no pins.
//
// A @revoked line for an alias removes its key from what Select returns, from
// either source. ParsePins fails on a line that does not parse, and on a
// @cert-authority line that names a compute.<id> alias in plain text:
// certificate authorities are not pins, and ignoring the line silently would
// leave the user believing they are.
func ParsePins(knownHosts []byte) (Pins, error) {
	var p Pins
	for n, line := range bytes.Split(knownHosts, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts(t)
		if err != nil {
			return Pins{}, fmt.Errorf("parse known_hosts line %d: %w", n+1, err)
		}
		switch marker {
		case "":
		case "revoked":
			p.entries = append(p.entries, pinEntry{hosts: hosts, key: key, revoked: true})
			continue
		default:
			for _, h := range hosts {
				if strings.HasPrefix(h, aliasPrefix) {
					return Pins{}, fmt.Errorf("parse known_hosts line %d: @%s is not supported for %s: pin the host key itself", n+1, marker, h)
				}
			}
			continue
		}
		p.entries = append(p.entries, pinEntry{hosts: hosts, key: key})
	}
	return p, nil
}

// For returns the keys configured for the instance with ID id (lines naming
// HostKeyAlias(id)), in file order, without revoked ones; or none.
func (p Pins) For(id uint64) []ssh.PublicKey {
	return p.without(p.keys(id, false), id)
}

// keys returns the keys of the pinned (revoked false) or revoked entries for id.
func (p Pins) keys(id uint64, revoked bool) []ssh.PublicKey {
	alias := HostKeyAlias(id)
	var keys []ssh.PublicKey
	for _, e := range p.entries {
		if e.revoked != revoked {
			continue
		}
		for _, h := range e.hosts {
			if hostMatches(h, alias) {
				keys = append(keys, e.key)
				break
			}
		}
	}
	return keys
}

// without returns keys minus those revoked for id.
func (p Pins) without(keys []ssh.PublicKey, id uint64) []ssh.PublicKey {
	revoked := p.keys(id, true)
	if len(revoked) == 0 {
		return keys
	}
	var out []ssh.PublicKey
	for _, k := range keys {
		if !slices.ContainsFunc(revoked, func(r ssh.PublicKey) bool { return bytes.Equal(r.Marshal(), k.Marshal()) }) {
			out = append(out, k)
		}
	}
	return out
}

// Select returns the host keys to pin for the instance with ID id: the keys
// configured for its alias compute.<id> if there are any (configuration
// wins), else published (the keys HostKeys read from its guest attributes;
// nil or empty when there are none); keys revoked for the alias are left out
// of both. With neither it returns an error wrapping
// ErrNoHostKeys that says what to configure. It never returns an empty list
// without an error.
func (p Pins) Select(id uint64, published []ssh.PublicKey) ([]ssh.PublicKey, Source, error) {
	if keys := p.For(id); len(keys) > 0 {
		return keys, SourceConfig, nil
	}
	if keys := p.without(published, id); len(keys) > 0 {
		return keys, SourceGuestAttributes, nil
	}
	return nil, "", fmt.Errorf("no host key for instance id %d: add a line %q to the target's ssh.known_hosts_file, or %s: %w",
		id, HostKeyAlias(id)+" ssh-ed25519 AAAA...", enableHint, ErrNoHostKeys)
}

// hostMatches reports whether the known_hosts host field h names host exactly,
// either in plain text or hashed as |1|base64(salt)|base64(HMAC-SHA1(salt, host)).
func hostMatches(h, host string) bool {
	if h == host {
		return true
	}
	rest, ok := strings.CutPrefix(h, "|1|")
	if !ok {
		return false
	}
	salt64, hash64, ok := strings.Cut(rest, "|")
	if !ok {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(salt64)
	want, err2 := base64.StdEncoding.DecodeString(hash64)
	if err1 != nil || err2 != nil {
		return false
	}
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(host))
	return hmac.Equal(mac.Sum(nil), want)
}
