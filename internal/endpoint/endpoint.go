// Package endpoint checks endpoint overrides (DEPLOYHOOK_COMPUTE_URL,
// DEPLOYHOOK_OSLOGIN_URL, DEPLOYHOOK_IAP_URL, github.api_url) the same way
// everywhere, turns a Google API override into a client option, and gives the
// Google API clients an HTTP client with a cap on answers (WithLimits).
//
// Every request to these endpoints carries a bearer token (a Google access
// token, a GitHub token or App JWT), so an override must use TLS: https:// or
// wss://. Plain http:// or ws:// is accepted only for a loopback host
// (localhost, 127.0.0.0/8, ::1), where tests and local proxies run and the
// token never crosses a network.
package endpoint

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/api/option"
	"google.golang.org/api/option/internaloption"
	htransport "google.golang.org/api/transport/http"

	"github.com/deployhook/deployhook/internal/safehttp"
)

// RequireSecure returns nil when rawURL is an absolute https:// or wss:// URL
// with a host, or an http:// or ws:// URL whose host is loopback (localhost,
// an address in 127.0.0.0/8, or ::1). Otherwise its error names the setting
// (name, e.g. "DEPLOYHOOK_COMPUTE_URL" or "github.api_url") and says how to fix
// it. It does not check the path, query or fragment: callers that take only a
// base URL check those themselves.
func RequireSecure(name, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%s %q is not an absolute URL: set it to https://HOST[/PATH]", name, rawURL)
	}
	switch asciiLower(u.Scheme) {
	case "https", "wss":
		return nil
	case "http", "ws":
		if Loopback(u.Hostname()) {
			return nil
		}
		secure := "https"
		if asciiLower(u.Scheme) == "ws" {
			secure = "wss"
		}
		return fmt.Errorf("%s %q sends credentials in cleartext: use %s://%s%s (plain %s:// is allowed only for localhost, 127.0.0.0/8 and ::1)",
			name, rawURL, secure, u.Host, u.EscapedPath(), asciiLower(u.Scheme))
	}
	return fmt.Errorf("%s %q: the scheme must be https (or wss for a websocket endpoint)", name, rawURL)
}

// Loopback reports whether host (a host name or an IP address, without port or
// brackets) names the local machine: "localhost" in any case, an IPv4 address
// in 127.0.0.0/8, or ::1 (also IPv4-mapped loopback addresses). Other names
// that may resolve to a loopback address are not trusted to. The name is
// compared with ASCII case folding only: Unicode folding would take
// "localhoſt" (U+017F) for localhost, and a resolver would not.
func Loopback(host string) bool {
	if asciiLower(host) == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Option returns opts with the override for endpoint appended last, so it wins
// over an option.WithEndpoint already in opts. An empty endpoint returns opts
// unchanged. The endpoint must be an absolute http(s) URL without a query or a
// fragment, and pass RequireSecure; name is the setting it came from (e.g.
// DEPLOYHOOK_COMPUTE_URL) and example the API's default, both for the error.
func Option(opts []option.ClientOption, name, endpoint, example string) ([]option.ClientOption, error) {
	out := append([]option.ClientOption(nil), opts...)
	if endpoint == "" {
		return out, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%s %q is not an absolute https URL without query (like %s)", name, endpoint, example)
	}
	if err := RequireSecure(name, endpoint); err != nil {
		return nil, err
	}
	// The clients append /compute/v1/... or /v1/...: a trailing slash would double it.
	return append(out, option.WithEndpoint(strings.TrimRight(endpoint, "/"))), nil
}

// cloudPlatformScope is the scope used when opts carry credentials without
// their own scopes (Application Default Credentials).
const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// WithLimits returns opts with an option.WithHTTPClient appended: a client
// whose transport authenticates as opts say (a token source, or
// option.WithoutAuthentication in tests; default credentials get the
// cloud-platform scope), reads at most maxBody bytes of any answer, failing
// past it with an error wrapping safehttp.ErrBodyTooLarge, and follows a
// redirect only within the origin of the request, so the token never leaves
// for another host. The Google client libraries read answers whole, with no
// limit of their own. opts must not already hold an option.WithHTTPClient.
// The client certificate of GOOGLE_API_USE_CLIENT_CERTIFICATE (mTLS) is not
// supported on this client.
func WithLimits(ctx context.Context, opts []option.ClientOption, maxBody int64) ([]option.ClientOption, error) {
	topts := append([]option.ClientOption{internaloption.WithDefaultScopes(cloudPlatformScope)}, opts...)
	rt, err := htransport.NewTransport(ctx, safehttp.LimitBody(http.DefaultTransport, maxBody), topts...)
	if err != nil {
		return nil, fmt.Errorf("google api transport: %w", err)
	}
	hc := &http.Client{Transport: rt, CheckRedirect: safehttp.CheckRedirect}
	return append(append([]option.ClientOption(nil), opts...), option.WithHTTPClient(hc)), nil
}

// asciiLower lower-cases the ASCII letters of s and nothing else.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
