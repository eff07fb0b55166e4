package endpoint

import (
	"strings"
	"testing"
)

func TestOption(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		wantLen  int
		wantErr  string
	}{
		{"none", "", 0, ""},
		{"http loopback", "http://127.0.0.1:8080/", 1, ""},
		{"https", "https://compute.googleapis.com", 1, ""},
		{"relative", "compute.googleapis.com", 0, "DEPLOYHOOK_COMPUTE_URL \"compute.googleapis.com\" is not an absolute https URL"},
		{"query", "https://x.example/?a=b", 0, "is not an absolute https URL without query"},
		{"scheme", "ftp://x.example", 0, "is not an absolute https URL"},
		// Issue 8, item 8: a plain http override sent the bearer token in
		// cleartext to any host. This case failed before RequireSecure.
		{"http elsewhere", "http://compute.internal.example:8080", 0, "DEPLOYHOOK_COMPUTE_URL \"http://compute.internal.example:8080\" sends credentials in cleartext: use https://compute.internal.example:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Option(nil, "DEPLOYHOOK_COMPUTE_URL", tt.endpoint, "https://compute.googleapis.com")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != tt.wantLen {
				t.Fatalf("got %d options, %v; want %d", len(got), err, tt.wantLen)
			}
		})
	}
}

// TestRequireSecure is issue 8, item 8: endpoint overrides accepted plain
// http:// and ws:// for any host, so bearer tokens went out in cleartext. The
// "refused" cases failed before (there was no check).
func TestRequireSecure(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		wantErr string // empty: accepted
	}{
		{name: "https", url: "https://api.github.com/"},
		{name: "https GHES", url: "https://ghe.example.com/api/v3/"},
		{name: "wss", url: "wss://tunnel.cloudproxy.app/v4"},
		{name: "upper-case scheme", url: "HTTPS://api.github.com/"},
		{name: "http 127.0.0.1", url: "http://127.0.0.1:8080/"},
		{name: "http 127.9.9.9", url: "http://127.9.9.9/"},
		{name: "http localhost", url: "http://localhost:9000/api/v3/"},
		{name: "http LOCALHOST", url: "http://LOCALHOST/"},
		{name: "http ::1", url: "http://[::1]:8080/"},
		{name: "ws 127.0.0.1", url: "ws://127.0.0.1:5000/v4"},
		{name: "http elsewhere", url: "http://ghe.example.com/api/v3/",
			wantErr: `github.api_url "http://ghe.example.com/api/v3/" sends credentials in cleartext: use https://ghe.example.com/api/v3/ (plain http:// is allowed only for localhost, 127.0.0.0/8 and ::1)`},
		{name: "ws elsewhere", url: "ws://relay.example.com/v4",
			wantErr: `github.api_url "ws://relay.example.com/v4" sends credentials in cleartext: use wss://relay.example.com/v4`},
		{name: "http private address", url: "http://10.0.0.5/", wantErr: "sends credentials in cleartext"},
		{name: "http 128.0.0.1", url: "http://128.0.0.1/", wantErr: "sends credentials in cleartext"},
		{name: "http localhost lookalike", url: "http://localhost.example.com/", wantErr: "sends credentials in cleartext"},
		{name: "http subdomain of localhost", url: "http://evil.localhost/", wantErr: "sends credentials in cleartext"},
		{name: "http userinfo trick", url: "http://127.0.0.1@evil.example/", wantErr: "sends credentials in cleartext"},
		{name: "http mapped 127.0.0.1", url: "http://[::ffff:127.0.0.1]/"},
		{name: "http 0.0.0.0", url: "http://0.0.0.0/", wantErr: "sends credentials in cleartext"},
		{name: "http ::", url: "http://[::]/", wantErr: "sends credentials in cleartext"},
		{name: "http localhost.", url: "http://localhost./", wantErr: "sends credentials in cleartext"},
		{name: "http nip.io", url: "http://127.0.0.1.nip.io/", wantErr: "sends credentials in cleartext"},
		// Unicode case folding would take these for localhost; a resolver would not.
		{name: "http Kelvin sign", url: "http://loca\u212ahost/", wantErr: "sends credentials in cleartext"},
		{name: "http long s", url: "http://localho\u017ft/", wantErr: "sends credentials in cleartext"},
		{name: "ftp", url: "ftp://example.com/", wantErr: "the scheme must be https"},
		{name: "no host", url: "https:///path", wantErr: "is not an absolute URL"},
		{name: "relative", url: "api.github.com", wantErr: "is not an absolute URL"},
		{name: "opaque", url: "https:api.github.com", wantErr: "is not an absolute URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := RequireSecure("github.api_url", tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("RequireSecure(%q) = %v, want nil", tt.url, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("RequireSecure(%q) = %v, want an error containing %q", tt.url, err, tt.wantErr)
			}
		})
	}
}
