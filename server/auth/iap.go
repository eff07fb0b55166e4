package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deployhook/deployhook/internal/safehttp"
	"github.com/deployhook/deployhook/server"
)

// Constants of IAP's signed headers, from Google's "Securing your app with
// signed headers" (cloud.google.com/iap/docs/signed-headers-howto).
const (
	// IAPHeader carries IAP's assertion on every request it lets through.
	IAPHeader = "X-Goog-Iap-Jwt-Assertion"
	// IAPIssuer is the assertion's iss.
	IAPIssuer = "https://cloud.google.com/iap"
	// DefaultKeysURL publishes the keys that sign the assertions, as a JWK set.
	DefaultKeysURL = "https://www.gstatic.com/iap/verify/public_key-jwk"
)

const (
	// iapLeeway is the clock skew allowed on exp and iat: Google's assertions
	// live 10 minutes; 30 seconds covers the skew of synchronized clocks.
	iapLeeway = 30 * time.Second
	// keysMinInterval is the least time between two fetches of the keys: an
	// assertion with an unknown kid (a rotation, or a forger) fetches at most
	// once a minute.
	keysMinInterval = time.Minute
	// keysMaxAge is when a fetched key set is refreshed on the next request
	// (keeping it while the fetch fails): Google rotates its keys.
	keysMaxAge = time.Hour
	// maxAssertion bounds an assertion's length: Google's are under 1 KiB.
	maxAssertion = 8 << 10
	// maxKeys bounds the key set's answer.
	maxKeys = 64 << 10
	// verifiedLife is the longest a verified assertion is kept (see Who),
	// its exp permitting: a page, its event stream and its assets carry the
	// same assertion, verified once.
	verifiedLife = 5 * time.Minute
	// maxVerified bounds the assertions kept verified: an entry is about 200
	// bytes, so 10000 are about 2 MB.
	maxVerified = 10000
)

// IAPOptions configure IAP sign-in.
type IAPOptions struct {
	// Audience is the assertion's required aud: /projects/NUM/global/backendServices/ID
	// (a load balancer) or /projects/NUM/apps/PROJECT (App Engine). Required.
	Audience string
	// Viewers and Operators are principals, "user:EMAIL" or "domain:DOMAIN": a
	// viewer may see every target; an operator may also press the buttons. A
	// domain principal matches the accounts of that Google Workspace or Cloud
	// Identity domain (the assertion's hd claim), not any address that ends in it.
	Viewers, Operators []string
	// KeysURL is the JWK set of IAP's signing keys; empty means DefaultKeysURL.
	KeysURL string
	// SessionKey derives the CSRF tokens (which change when it does): at least
	// MinKeyLen bytes, or nil for a random key per process.
	SessionKey []byte
	// HTTPClient fetches the keys. Nil: a client that reads at most 64 KiB of
	// an answer and follows redirects only within its origin.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// IAPAuth identifies the people Identity-Aware Proxy lets through. It
// implements server.Auth; its methods are safe for concurrent use.
type IAPAuth struct {
	lg             *slog.Logger
	opts           IAPOptions
	seal           *sealer
	hc             *http.Client
	users, domains map[string]server.Access // lower-case email or domain → access
	keys           atomic.Pointer[keySet]
	fetchMu        sync.Mutex // one fetch at a time; held while fetching
	lastFetch      time.Time  // under fetchMu: the last attempt

	mu   sync.Mutex
	seen map[string]iapEntry // by Person.CSRF: what Who decided

	vmu       sync.Mutex
	verified  map[[sha256.Size]byte]iapVerified // by the SHA-256 of the raw assertion
	maxVerify int                               // the bound of verified: maxVerified (tests make it smaller)
}

// iapVerified is an assertion that verified, kept until until: the person
// and access Who decided, and the key that verified it, which must still be
// published under its kid for the entry to be used.
type iapVerified struct {
	person server.Person
	access server.Access
	key    iapKey
	until  time.Time
}

// iapKey is a published key and its kid.
type iapKey struct {
	kid string
	pub *ecdsa.PublicKey
}

type iapEntry struct {
	login  string
	access server.Access
}

type keySet struct {
	keys    map[string]*ecdsa.PublicKey // by kid
	fetched time.Time
}

var _ server.Auth = (*IAPAuth)(nil)

var audience = regexp.MustCompile(`^/projects/[0-9]+/(global/backendServices/[0-9]+|apps/[a-z][a-z0-9-]{4,28}[a-z0-9])$`)

// ValidAudience reports whether aud has the form of an IAP audience:
// /projects/NUM/global/backendServices/ID or /projects/NUM/apps/PROJECT.
func ValidAudience(aud string) bool { return audience.MatchString(aud) }

// ParsePrincipal splits "user:EMAIL" or "domain:DOMAIN" into its kind ("user"
// or "domain") and its lower-cased value; ok is false for anything else.
func ParsePrincipal(s string) (kind, value string, ok bool) {
	kind, value, ok = strings.Cut(s, ":")
	value = strings.ToLower(strings.TrimSpace(value))
	switch {
	case !ok || value == "" || strings.ContainsAny(value, " \t\r\n"):
		return "", "", false
	case kind == "user" && strings.Count(value, "@") == 1 && !strings.HasPrefix(value, "@") && !strings.HasSuffix(value, "@"):
		return kind, value, true
	case kind == "domain" && !strings.Contains(value, "@") && strings.Contains(value, ".") && !strings.HasPrefix(value, "."):
		return kind, value, true
	}
	return "", "", false
}

// IAP returns IAP sign-in. It fails when Audience is not an IAP audience,
// a principal is not user:EMAIL or domain:DOMAIN, KeysURL sends nothing over
// TLS (it must be https, or http on loopback), or SessionKey is set but
// shorter than MinKeyLen. The keys are fetched on the first request.
func IAP(lg *slog.Logger, opts IAPOptions) (*IAPAuth, error) {
	if lg == nil {
		return nil, errors.New("auth: nil logger")
	}
	if !ValidAudience(opts.Audience) {
		return nil, fmt.Errorf("auth: IAP audience %q must be /projects/NUM/global/backendServices/ID or /projects/NUM/apps/PROJECT", opts.Audience)
	}
	if opts.KeysURL == "" {
		opts.KeysURL = DefaultKeysURL
	}
	if err := baseURL("IAP keys URL", opts.KeysURL); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &IAPAuth{lg: lg, opts: opts, hc: opts.HTTPClient, users: map[string]server.Access{}, domains: map[string]server.Access{}, seen: map[string]iapEntry{},
		verified: map[[sha256.Size]byte]iapVerified{}, maxVerify: maxVerified}
	for _, l := range []struct {
		ps     []string
		access server.Access
	}{{opts.Viewers, server.AccessRead}, {opts.Operators, server.AccessWrite}} {
		for _, p := range l.ps {
			kind, v, ok := ParsePrincipal(p)
			if !ok {
				return nil, fmt.Errorf("auth: IAP principal %q must be user:EMAIL or domain:DOMAIN", p)
			}
			m := a.users
			if kind == "domain" {
				m = a.domains
			}
			m[v] = max(m[v], l.access)
		}
	}
	key := opts.SessionKey
	if key == nil {
		key = randomKey()
	}
	var err error
	if a.seal, err = newSealer(key); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if a.hc == nil {
		a.hc = &http.Client{Transport: safehttp.LimitBody(http.DefaultTransport, maxKeys), CheckRedirect: safehttp.CheckRedirect}
	}
	return a, nil
}

// iapClaims are the claims of an assertion that deployhook reads.
type iapClaims struct {
	Iss   string          `json:"iss"`
	Aud   json.RawMessage `json:"aud"`
	Exp   int64           `json:"exp"`
	Iat   int64           `json:"iat"`
	Sub   string          `json:"sub"`
	Email string          `json:"email"`
	HD    string          `json:"hd"`
}

// Who returns the person whose IAP assertion r carries, when it verifies
// (see verify). The person's CSRF token is derived from the session key and
// the account's sub, so it is the same on every request; the person Expires
// when verify stops accepting the assertion (its exp and the leeway).
//
// An assertion that verified is kept, by the SHA-256 of the header, until its
// exp or for verifiedLife, whichever is first, maxVerified of them at most:
// a request with the same header is answered without verifying it again, as
// long as the key that verified it is still the one published under its kid
// (a key set fetched without it ends the entry at once). A refused
// assertion is never kept.
func (a *IAPAuth) Who(r *http.Request) (server.Person, bool) {
	tok := r.Header.Get(IAPHeader)
	if tok == "" || len(tok) > maxAssertion {
		a.lg.Debug("IAP assertion refused", "err", fmt.Errorf("%w: no %s header, or %d bytes", ErrAssertion, IAPHeader, len(tok)))
		return server.Person{}, false
	}
	sum := sha256.Sum256([]byte(tok))
	now := a.opts.Now()
	if v, ok := a.lookup(sum, now); ok {
		a.remember(v.person.CSRF, v.person.Login, v.access)
		return v.person, true
	}
	c, key, err := a.verify(r.Context(), tok)
	if err != nil {
		a.lg.Debug("IAP assertion refused", "err", err)
		return server.Person{}, false
	}
	v := iapVerified{
		// Expires: when verify refuses the assertion; the page's next
		// request (an event stream's reconnect) carries a fresh one.
		person: server.Person{Login: c.Email, Provider: "iap", CSRF: a.seal.derive("iap", c.Sub), Expires: time.Unix(c.Exp, 0).Add(iapLeeway)},
		access: decideIAP(c.Email, c.HD, a.users, a.domains),
		key:    key,
		until:  verifiedUntil(now, c.Exp),
	}
	a.keep(sum, v, now)
	a.remember(v.person.CSRF, v.person.Login, v.access)
	return v.person, true
}

// verifiedUntil is when an assertion verified at now, expiring at exp (Unix
// seconds), stops being kept: at exp or verifiedLife after now, whichever is
// first. The leeway verify allows past exp is not kept: an assertion in it is
// verified on each request, and refused by verify once it is over.
func verifiedUntil(now time.Time, exp int64) time.Time {
	if t := time.Unix(exp, 0); t.Before(now.Add(verifiedLife)) {
		return t
	}
	return now.Add(verifiedLife)
}

// lookup returns the kept verification of the assertion whose SHA-256 is
// sum, if it lives at now and its key is still the one published under its
// kid; an entry that does not is dropped.
func (a *IAPAuth) lookup(sum [sha256.Size]byte, now time.Time) (iapVerified, bool) {
	ks := a.keys.Load()
	a.vmu.Lock()
	defer a.vmu.Unlock()
	v, ok := a.verified[sum]
	if !ok {
		return iapVerified{}, false
	}
	var pub *ecdsa.PublicKey
	if ks != nil {
		pub = ks.keys[v.key.kid]
	}
	if !now.Before(v.until) || pub == nil || !v.key.pub.Equal(pub) {
		delete(a.verified, sum)
		return iapVerified{}, false
	}
	return v, true
}

// keep records v for the assertion whose SHA-256 is sum, unless it would not
// live past now. When a.maxVerify entries are kept, it first drops the
// expired ones and then, unless that freed an eighth of the bound, any
// others down to seven eighths of it: one sweep per eighth of the bound at
// most, so that a full cache costs no more than a few map operations a
// request.
func (a *IAPAuth) keep(sum [sha256.Size]byte, v iapVerified, now time.Time) {
	if !now.Before(v.until) {
		return
	}
	a.vmu.Lock()
	defer a.vmu.Unlock()
	if len(a.verified) >= a.maxVerify {
		for k, e := range a.verified {
			if !now.Before(e.until) {
				delete(a.verified, k)
			}
		}
		for k := range a.verified {
			if len(a.verified) <= a.maxVerify-max(1, a.maxVerify/8) {
				break
			}
			delete(a.verified, k)
		}
	}
	a.verified[sum] = v
}

// Errors of an assertion that Who refuses (logged at debug), wrapped.
var (
	ErrAssertion = errors.New("invalid IAP assertion")
	ErrKeys      = errors.New("IAP keys unavailable")
)

// verify checks an IAP assertion: a compact JWS of three parts, alg ES256
// (nothing else: not "none", not HS256), a kid among the published keys
// (fetched when unknown, at most once a minute), a valid P-256 signature over
// header.payload, iss IAPIssuer, aud exactly the configured audience, exp in
// the future and iat in the past (30 s leeway either way), and an email and a
// sub. It returns the claims and the key that verified them. Its error wraps
// ErrAssertion, or ErrKeys when the keys could not be fetched.
func (a *IAPAuth) verify(ctx context.Context, tok string) (iapClaims, iapKey, error) {
	var c iapClaims
	if tok == "" {
		return c, iapKey{}, fmt.Errorf("%w: no %s header", ErrAssertion, IAPHeader)
	}
	if len(tok) > maxAssertion {
		return c, iapKey{}, fmt.Errorf("%w: %d bytes", ErrAssertion, len(tok))
	}
	h, rest, _ := strings.Cut(tok, ".")
	p, s, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s, ".") {
		return c, iapKey{}, fmt.Errorf("%w: not a compact JWS", ErrAssertion)
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return c, iapKey{}, fmt.Errorf("%w: header is not base64url", ErrAssertion)
	}
	var hdr struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return c, iapKey{}, fmt.Errorf("%w: header: %v", ErrAssertion, err)
	}
	if hdr.Alg != "ES256" {
		return c, iapKey{}, fmt.Errorf("%w: alg %q (want ES256)", ErrAssertion, truncate(hdr.Alg, 16))
	}
	if hdr.Crit != nil {
		return c, iapKey{}, fmt.Errorf("%w: crit header", ErrAssertion)
	}
	key, err := a.key(ctx, hdr.Kid)
	if err != nil {
		return c, iapKey{}, err
	}
	sig, err := b64.DecodeString(s)
	if err != nil || len(sig) != 64 {
		return c, iapKey{}, fmt.Errorf("%w: signature is not 64 bytes of base64url", ErrAssertion)
	}
	digest := sha256.Sum256([]byte(tok[:len(h)+1+len(p)]))
	if !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return c, iapKey{}, fmt.Errorf("%w: bad signature", ErrAssertion)
	}
	pb, err := b64.DecodeString(p)
	if err != nil {
		return c, iapKey{}, fmt.Errorf("%w: payload is not base64url", ErrAssertion)
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return iapClaims{}, iapKey{}, fmt.Errorf("%w: payload: %v", ErrAssertion, err)
	}
	var aud string
	if err := json.Unmarshal(c.Aud, &aud); err != nil || aud != a.opts.Audience {
		return iapClaims{}, iapKey{}, fmt.Errorf("%w: aud is not the configured audience", ErrAssertion)
	}
	now := a.opts.Now()
	switch {
	case c.Iss != IAPIssuer:
		return iapClaims{}, iapKey{}, fmt.Errorf("%w: iss %q", ErrAssertion, truncate(c.Iss, 64))
	case c.Exp == 0 || !now.Before(time.Unix(c.Exp, 0).Add(iapLeeway)):
		return iapClaims{}, iapKey{}, fmt.Errorf("%w: expired", ErrAssertion)
	case c.Iat == 0 || time.Unix(c.Iat, 0).After(now.Add(iapLeeway)):
		return iapClaims{}, iapKey{}, fmt.Errorf("%w: issued in the future", ErrAssertion)
	case c.Email == "" || c.Sub == "":
		return iapClaims{}, iapKey{}, fmt.Errorf("%w: no email or sub", ErrAssertion)
	}
	return c, iapKey{kid: hdr.Kid, pub: key}, nil
}

// key returns the published key kid, fetching the key set when it is not
// known (or the set is older than keysMaxAge), at most once a minute.
func (a *IAPAuth) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	if kid == "" {
		return nil, fmt.Errorf("%w: no kid", ErrAssertion)
	}
	now := a.opts.Now()
	ks := a.keys.Load()
	if ks != nil && now.Sub(ks.fetched) < keysMaxAge {
		if k, ok := ks.keys[kid]; ok {
			return k, nil
		}
	}
	a.fetchMu.Lock()
	defer a.fetchMu.Unlock()
	// Another request may have fetched while this one waited.
	if ks2 := a.keys.Load(); ks2 != ks {
		ks = ks2
		if k, ok := ks.keys[kid]; ok {
			return k, nil
		}
	}
	if a.lastFetch.IsZero() || now.Sub(a.lastFetch) >= keysMinInterval {
		a.lastFetch = now
		fetched, err := a.fetchKeys(ctx)
		if err != nil {
			a.lg.Warn("fetching IAP's keys failed", "err", err)
		} else {
			ks = &keySet{keys: fetched, fetched: now}
			a.keys.Store(ks)
		}
	}
	if ks == nil {
		return nil, fmt.Errorf("%w: never fetched", ErrKeys)
	}
	k, ok := ks.keys[kid]
	if !ok {
		return nil, fmt.Errorf("%w: unknown kid %q", ErrAssertion, truncate(kid, 64))
	}
	return k, nil
}

// fetchKeys GETs the JWK set and returns its P-256 keys by kid; other keys
// are skipped, and a set without any is an error.
func (a *IAPAuth) fetchKeys(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.opts.KeysURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s", ErrKeys, resp.Status)
	}
	var set struct {
		Keys []struct {
			Kty, Crv, Alg, Kid, Use, X, Y string
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	out := map[string]*ecdsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "EC" || k.Crv != "P-256" || (k.Alg != "" && k.Alg != "ES256") || (k.Use != "" && k.Use != "sig") || k.Kid == "" {
			continue
		}
		x, errX := b64.DecodeString(k.X)
		y, errY := b64.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			continue
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), bytes.Join([][]byte{{4}, x, y}, nil))
		if err != nil {
			continue // not on the curve
		}
		out[k.Kid] = pub
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no P-256 key in the set", ErrKeys)
	}
	return out, nil
}

// Access returns what p may do on any repository, as decided when Who
// verified p's assertion (see decideIAP). A person Who has not seen in this
// process (or forgot, past 10000 people) is an error wrapping ErrNoSession:
// the caller denies, and the next request brings the person back.
func (a *IAPAuth) Access(_ context.Context, p server.Person, _ string) (server.Access, error) {
	a.mu.Lock()
	e, ok := a.seen[p.CSRF]
	a.mu.Unlock()
	if !ok || e.login != p.Login || p.Provider != "iap" {
		return server.AccessNone, ErrNoSession
	}
	return e.access, nil
}

// decideIAP is what the account with email and hd (the assertion's hosted
// domain claim, empty for a consumer account) may do, given the operators'
// and viewers' principals by kind: users by lower-case email, domains by
// lower-case domain. A domain principal matches only an account of that
// domain (hd), not any address that ends in it: a consumer account can carry
// a Workspace domain's address. The highest access any principal gives wins.
func decideIAP(email, hd string, users, domains map[string]server.Access) server.Access {
	acc := users[strings.ToLower(email)]
	if hd == "" {
		return acc
	}
	_, dom, _ := strings.Cut(strings.ToLower(email), "@")
	if strings.EqualFold(dom, hd) {
		acc = max(acc, domains[strings.ToLower(hd)])
	}
	return acc
}

// remember keeps what Who decided for the person, for Access.
func (a *IAPAuth) remember(csrf, login string, acc server.Access) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.seen[csrf]; ok && e.login == login && e.access == acc {
		return
	}
	if len(a.seen) >= maxSessions {
		for k := range a.seen {
			if len(a.seen) < maxSessions {
				break
			}
			delete(a.seen, k)
		}
	}
	a.seen[csrf] = iapEntry{login: login, access: acc}
}

// SignIn returns the page that says why a request is not signed in: behind
// IAP, every request that reaches deployhook has passed IAP's own sign-in.
func (a *IAPAuth) SignIn(next string) string {
	return server.AuthPath + "signin?next=" + url.QueryEscape(server.SafeNext(next))
}

// Handler serves, under server.AuthPath: signin, the page a browser lands on
// when its request carried no valid assertion (401: deployhook must be reached
// through IAP; a signed-in browser is sent on to next), and signout, a page
// saying that IAP keeps the session, with IAP's own sign-out link.
func (a *IAPAuth) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+server.AuthPath+"signin", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.Who(r); ok {
			http.Redirect(w, r, server.SafeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
			return
		}
		render(w, http.StatusUnauthorized, page{Title: "Not signed in",
			Message: "This request did not come through Identity-Aware Proxy with a valid assertion. Open deployhook at its IAP-protected address."})
	})
	mux.HandleFunc(server.AuthPath+"signout", func(w http.ResponseWriter, r *http.Request) {
		render(w, http.StatusOK, page{Title: "Sign out",
			Message: "Identity-Aware Proxy manages your session, not deployhook. Sign out of IAP to end it.",
			Link:    "/_gcp_iap/clear_login_cookie", Label: "Sign out of IAP"})
	})
	return mux
}
