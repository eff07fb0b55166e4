// Package safehttp hardens the HTTP clients deployhook uses to call outside
// APIs with credentials (GitHub, GitHub Enterprise Server, the Google APIs), so
// that an API, a proxy in front of it, or whoever controls a redirect cannot
// turn them against the service:
//
//   - LimitBody caps every response body, so a streamed answer of any size
//     costs bounded memory and ends in an error wrapping ErrBodyTooLarge;
//   - CheckRedirect follows a redirect only within the origin (scheme, host and
//     port) of the first request, so a bearer token, which an
//     oauth2.Transport adds to every request it sends, never goes to another
//     host, and never over http after https;
//   - PinOrigin refuses, below every redirect policy, any request to another
//     origin than the API's: go-github follows some redirects itself, through
//     the Transport, where CheckRedirect does not apply.
//
// net/http already drops Authorization on a redirect to another domain, but
// only the header it copies from the first request: a RoundTripper that adds
// credentials (oauth2.Transport) adds them again to the redirected request,
// and a 307 or 308 re-sends the body too.
package safehttp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrBodyTooLarge is wrapped by the read error of a response body longer than
// the cap LimitBody set.
var ErrBodyTooLarge = errors.New("response body too large")

// ErrCrossOrigin is wrapped by the error of a request or redirect to another
// origin than the one allowed.
var ErrCrossOrigin = errors.New("request to another origin refused")

// maxRedirects is how many redirects in a row CheckRedirect follows, as
// net/http's default policy.
const maxRedirects = 10

// LimitBody returns a RoundTripper that sends requests through rt and caps
// every response body at max bytes: a Read past max returns an error wrapping
// ErrBodyTooLarge (and every later Read returns it too), which names the
// request's method, host and path, never its query. A body of exactly max
// bytes reads normally. When a response's Content-Length announces more than
// max, nothing of it is read: the first Read returns the error. The caller
// closes the body as with any response.
func LimitBody(rt http.RoundTripper, max int64) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &limitTransport{rt: rt, max: max}
}

type limitTransport struct {
	rt  http.RoundTripper
	max int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	body := &limitedBody{rc: resp.Body, left: t.max, max: t.max, req: req}
	if resp.ContentLength > t.max {
		// Announced too large: read nothing of it.
		resp.Body.Close()
		body.rc, body.err = http.NoBody, tooLarge(req, t.max)
	}
	resp.Body = body
	return resp, nil
}

// limitedBody reads at most max bytes of rc and fails on the next one.
type limitedBody struct {
	rc   io.ReadCloser
	req  *http.Request
	max  int64
	left int64
	err  error // sticky: the body was longer than max
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.left <= 0 {
		// Exactly max bytes so far: one more byte means too large, io.EOF
		// means the body fits.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			b.err = tooLarge(b.req, b.max)
			return 0, b.err
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

func tooLarge(req *http.Request, max int64) error {
	return fmt.Errorf("%w: %s %s answered more than %s", ErrBodyTooLarge, req.Method, where(req.URL), size(max))
}

// where is a URL's host and path, without userinfo, query or fragment.
func where(u *url.URL) string {
	if u == nil {
		return "?"
	}
	return u.Host + u.EscapedPath()
}

// size formats a byte count for people: "8 MiB", "512 KiB", "100 bytes".
func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// CheckRedirect is an http.Client CheckRedirect policy for clients that send
// credentials: it follows a redirect only to the origin (scheme, host and
// port) of the first request, at most 10 in a row. Any other redirect,
// https to http on the same host included, is refused with an error wrapping
// ErrCrossOrigin, before anything is sent to the new location; http.Client
// then returns that error (in a *url.Error) and closes the redirect's body.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	first := via[0].URL
	if !SameOrigin(first, req.URL) {
		return fmt.Errorf("%w: %s redirected to %s://%s", ErrCrossOrigin, where(first), strings.ToLower(req.URL.Scheme), req.URL.Host)
	}
	return nil
}

// NoRedirects is an http.Client CheckRedirect policy that follows no redirect:
// the client returns the redirect response itself (http.ErrUseLastResponse).
// It suits handshakes that must be answered where they were sent (a WebSocket
// upgrade).
func NoRedirects(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}

// SameOrigin reports whether a and b have the same scheme, host and port
// (compared without case; a missing port is the scheme's default).
func SameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "wss":
		return "443"
	case "http", "ws":
		return "80"
	}
	return ""
}

// PinOrigin returns a RoundTripper that sends through rt only requests to the
// origin (scheme, host and port) of origin, and refuses every other one with an
// error wrapping ErrCrossOrigin, without calling rt: put it outside the
// RoundTripper that adds credentials, and no credential can reach another
// origin, whatever follows redirects.
func PinOrigin(rt http.RoundTripper, origin *url.URL) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	o := *origin
	return &pinTransport{rt: rt, origin: &o}
}

type pinTransport struct {
	rt     http.RoundTripper
	origin *url.URL
}

func (t *pinTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || !SameOrigin(t.origin, req.URL) {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper always closes the body
		}
		return nil, fmt.Errorf("%w: only %s://%s is allowed, not %s", ErrCrossOrigin, strings.ToLower(t.origin.Scheme), t.origin.Host, originOf(req.URL))
	}
	return t.rt.RoundTrip(req)
}

func originOf(u *url.URL) string {
	if u == nil {
		return "?"
	}
	return strings.ToLower(u.Scheme) + "://" + u.Host
}
