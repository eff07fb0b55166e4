package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// IAP is a fake of Identity-Aware Proxy's signing: a key server that
// publishes ECDSA P-256 public keys as a JWK set (as
// https://www.gstatic.com/iap/verify/public_key-jwk does), and a signer of
// assertions with the current key. Its methods are safe for concurrent use.
type IAP struct {
	// URL is the JWK set's address (ui.iap.keys_url).
	URL string
	// Audience is the aud of the assertions Token signs by default.
	Audience string

	tb  testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	keys    []iapKey // published; the last one signs
	fetches int
	now     func() time.Time
}

type iapKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

// NewIAP starts a fake key server with one key, closed when the test ends.
// Its assertions are for audience, issued at now() (nil: time.Now).
func NewIAP(tb testing.TB, audience string, now func() time.Time) *IAP {
	tb.Helper()
	if now == nil {
		now = time.Now
	}
	f := &IAP{Audience: audience, tb: tb, now: now}
	f.keys = []iapKey{f.newKey()}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	tb.Cleanup(f.srv.Close)
	f.URL = f.srv.URL + "/iap/verify/public_key-jwk"
	return f
}

func (f *IAP) newKey() iapKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.tb.Fatal(err)
	}
	return iapKey{kid: rand.Text()[:6], priv: priv}
}

// Rotate publishes a new key and signs with it from now on; the keys
// published before are withdrawn unless keepOld.
func (f *IAP) Rotate(keepOld bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.newKey()
	if keepOld {
		f.keys = append(f.keys, k)
	} else {
		f.keys = []iapKey{k}
	}
}

// Kid returns the kid of the key that signs.
func (f *IAP) Kid() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys[len(f.keys)-1].kid
}

// Fetches returns how many times the key set was fetched.
func (f *IAP) Fetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

// Claims are an assertion's claims. Token fills the zero ones: Iss
// "https://cloud.google.com/iap", Aud the fake's Audience, Iat now, Exp ten
// minutes after Iat, Sub "accounts.google.com:" and a number.
type Claims struct {
	Iss   string `json:"iss"`
	Aud   string `json:"aud"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
	Sub   string `json:"sub"`
	Email string `json:"email"`
	HD    string `json:"hd,omitempty"`
}

// Token returns an assertion of c, signed ES256 with the current key, as IAP
// puts in x-goog-iap-jwt-assertion.
func (f *IAP) Token(c Claims) string {
	f.mu.Lock()
	k := f.keys[len(f.keys)-1]
	f.mu.Unlock()
	return f.sign(k, c)
}

// TokenWithUnpublishedKey returns an assertion of c signed ES256 by a key
// that is not published, under kid.
func (f *IAP) TokenWithUnpublishedKey(kid string, c Claims) string {
	k := f.newKey()
	k.kid = kid
	return f.sign(k, c)
}

func (f *IAP) sign(k iapKey, c Claims) string {
	if c.Iss == "" {
		c.Iss = "https://cloud.google.com/iap"
	}
	if c.Aud == "" {
		c.Aud = f.Audience
	}
	if c.Iat == 0 {
		c.Iat = f.now().Unix()
	}
	if c.Exp == 0 {
		c.Exp = c.Iat + 600
	}
	if c.Sub == "" {
		c.Sub = "accounts.google.com:1234567890"
	}
	payload, _ := json.Marshal(c)
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": k.kid})
	signing := enc(header) + "." + enc(payload)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, sum[:])
	if err != nil {
		f.tb.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + enc(sig)
}

// Unsigned returns header.payload.signature with each part encoded as given:
// for assertions no signer of IAP's would make (alg none, HS256, a crit).
func Unsigned(header, payload, signature []byte) string {
	return enc(header) + "." + enc(payload) + "." + enc(signature)
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (f *IAP) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/iap/verify/public_key-jwk" {
		f.tb.Errorf("fake IAP keys: unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.fetches++
	type jwk struct {
		Alg string `json:"alg"`
		Crv string `json:"crv"`
		Kid string `json:"kid"`
		Kty string `json:"kty"`
		Use string `json:"use"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	for _, k := range f.keys {
		b, err := k.priv.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			f.tb.Error(err)
		}
		set.Keys = append(set.Keys, jwk{Alg: "ES256", Crv: "P-256", Kid: k.kid, Kty: "EC", Use: "sig", X: enc(b[1:33]), Y: enc(b[33:])})
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(set)
}
