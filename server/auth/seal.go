package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// MinKeyLen is the shortest session key accepted, in bytes: AES-256 takes 32.
const MinKeyLen = 32

// maxCookie bounds a sealed value read from a request: browsers keep at most
// 4096 bytes per cookie (RFC 6265 section 6.1 asks for at least that), so a
// longer value was not set by us and is refused before any work.
const maxCookie = 4096

// sealer seals values with AES-256-GCM under a key derived from the session
// key, and opens them again. Each value is bound to its purpose (the cookie's
// name), so a value sealed for one cookie does not open as another.
type sealer struct {
	aead cipher.AEAD
	mac  []byte // a second key, for values derived (not sealed) from the session key
}

// newSealer derives its keys from key (at least MinKeyLen bytes) with
// HMAC-SHA256, so a key longer than 32 bytes is used whole.
func newSealer(key []byte) (*sealer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("session key is %d bytes: give at least %d", len(key), MinKeyLen)
	}
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(label))
		return m.Sum(nil)
	}
	block, err := aes.NewCipher(derive("deployhook cookie seal v1"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, mac: derive("deployhook csrf v1")}, nil
}

// randomKey returns MinKeyLen random bytes.
func randomKey() []byte {
	b := make([]byte, MinKeyLen)
	rand.Read(b) // never fails (crypto/rand)
	return b
}

var b64 = base64.RawURLEncoding.Strict()

// seal encrypts plaintext for purpose and returns it as unpadded base64url
// (cookie-safe): nonce, then ciphertext and tag.
func (s *sealer) seal(purpose string, plaintext []byte) string {
	n := s.aead.NonceSize()
	buf := make([]byte, n, n+len(plaintext)+s.aead.Overhead())
	rand.Read(buf) // the nonce: 96 random bits, never fails
	buf = s.aead.Seal(buf, buf[:n], plaintext, []byte(purpose))
	return b64.EncodeToString(buf)
}

// open returns the plaintext sealed for purpose in v, or false when v is too
// long, not base64url, or was not sealed by this key for this purpose.
func (s *sealer) open(purpose, v string) ([]byte, bool) {
	if len(v) > maxCookie {
		return nil, false
	}
	raw, err := b64.DecodeString(v)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, false
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(raw[n:n], raw[:n], raw[n:], []byte(purpose))
	if err != nil {
		return nil, false
	}
	return pt, true
}

// derive returns a token derived from the session key and parts: the same
// parts give the same token while the key is the same, and nobody without
// the key can compute it.
func (s *sealer) derive(parts ...string) string {
	m := hmac.New(sha256.New, s.mac)
	for _, p := range parts {
		var l [binary.MaxVarintLen64]byte
		m.Write(l[:binary.PutUvarint(l[:], uint64(len(p)))])
		m.Write([]byte(p))
	}
	return b64.EncodeToString(m.Sum(nil))
}

// record is a binary encoding of a sealed value's fields: a version byte, a
// Unix time, then length-prefixed strings. It is faster to read on every
// request than JSON, and the seal makes a parser for foreign input needless:
// only values this process (or one with the same key) wrote are read.
type record struct{ b []byte }

const recordVersion = 1

func newRecord(t int64) *record {
	r := &record{b: make([]byte, 0, 256)}
	r.b = append(r.b, recordVersion)
	r.b = binary.BigEndian.AppendUint64(r.b, uint64(t))
	return r
}

func (r *record) str(s string) *record {
	r.b = binary.AppendUvarint(r.b, uint64(len(s)))
	r.b = append(r.b, s...)
	return r
}

var errRecord = errors.New("malformed record")

// readRecord splits b into its time and n strings.
func readRecord(b []byte, n int) (int64, []string, error) {
	if len(b) < 9 || b[0] != recordVersion {
		return 0, nil, errRecord
	}
	t := int64(binary.BigEndian.Uint64(b[1:9]))
	b = b[9:]
	out := make([]string, n)
	for i := range out {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return 0, nil, errRecord
		}
		out[i] = string(b[k : k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return 0, nil, errRecord
	}
	return t, out, nil
}
