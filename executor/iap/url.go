package iap

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/deployhook/deployhook/internal/endpoint"
)

// Endpoints of the relay (IAP-PROTOCOL.md §2.1).
const (
	// DefaultEndpoint is the public IAP TCP forwarding relay.
	DefaultEndpoint = "wss://tunnel.cloudproxy.app/v4"
	// MTLSEndpoint is the relay for clients presenting device certificates
	// (context-aware access); use it with Options.TLSConfig carrying the certificate.
	MTLSEndpoint = "wss://mtls.tunnel.cloudproxy.app/v4"
)

// Subprotocol is the WebSocket subprotocol the relay speaks and must echo (§2.3).
const Subprotocol = "relay.tunnel.cloudproxy.app"

// Origin is the literal Origin header every IAP client sends (§2.3).
const Origin = "bot:iap-tunneler"

// endpointBase parses an endpoint the way gcloud's --iap-tunnel-url-override does:
// scheme and host are taken as given; an empty or "/" path means /v4, any other path
// replaces /v4. It returns the base URL to which /connect or /reconnect is appended.
// ws:// (or http://) is refused unless the host is loopback.
func endpointBase(raw string) (*url.URL, error) {
	if raw == "" {
		raw = DefaultEndpoint
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse endpoint: %w", err)
	}
	switch u.Scheme {
	case "wss", "ws":
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	default:
		return nil, fmt.Errorf("endpoint %q: scheme must be wss or ws", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("endpoint %q has no host", raw)
	}
	// The handshake carries the access token: no cleartext off this machine.
	if err := endpoint.RequireSecure("DEPLOYHOOK_IAP_URL", u.String()); err != nil {
		return nil, err
	}
	p := strings.TrimRight(u.Path, "/")
	if p == "" {
		p = "/v4"
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: p}, nil
}

// connectURL builds /connect with the query of §2.2, in gcloud's order.
func connectURL(base *url.URL, project, zone, instance, iface string, port int) string {
	q := []string{
		"project=" + url.QueryEscape(project),
		"port=" + strconv.Itoa(port),
		"newWebsocket=True",
		"zone=" + url.QueryEscape(zone),
		"instance=" + url.QueryEscape(instance),
		"interface=" + url.QueryEscape(iface),
	}
	return base.String() + "/connect?" + strings.Join(q, "&")
}

// reconnectURL builds /reconnect with the query of §2.2.
func reconnectURL(base *url.URL, sid string, ack uint64, zone string) string {
	q := []string{
		"sid=" + url.QueryEscape(sid),
		"ack=" + strconv.FormatUint(ack, 10),
		"newWebsocket=True",
		"zone=" + url.QueryEscape(zone),
	}
	return base.String() + "/reconnect?" + strings.Join(q, "&")
}
