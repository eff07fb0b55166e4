package iap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2"

	"github.com/deployhook/deployhook/internal/safehttp"
)

// Options says which VM port to reach and how. Project, Zone, Instance and TokenSource
// are required; every other field has a default.
type Options struct {
	// Endpoint is the relay base URL, scheme + host + path root, like gcloud's
	// --iap-tunnel-url-override: DefaultEndpoint when empty; MTLSEndpoint with a
	// TLSConfig carrying a device certificate; ws://127.0.0.1:PORT/v4 in tests.
	// ws:// is accepted only for a loopback host: the handshake carries the token.
	Endpoint string
	// TLSConfig is used for wss endpoints when HTTPClient is nil (e.g. the client
	// certificate for MTLSEndpoint). Setting both is an error.
	TLSConfig *tls.Config
	// HTTPClient performs the WebSocket handshakes; when nil, a client on
	// http.DefaultTransport that follows no redirect (the upgrade request carries
	// the access token).
	HTTPClient *http.Client

	Project  string // project ID
	Zone     string // e.g. us-central1-a
	Instance string // instance name
	// Interface is the VM's network interface name; "nic0" when empty.
	Interface string
	// Port is the TCP port on the VM; 22 when zero.
	Port int

	// TokenSource supplies the OAuth2 access token (scope cloud-platform). Token is
	// called before every connect and reconnect, so it must refresh expired tokens
	// (google.DefaultTokenSource does).
	TokenSource oauth2.TokenSource

	// ConnectTimeout bounds each handshake, from the WebSocket dial to
	// CONNECT_SUCCESS_SID or RECONNECT_SUCCESS_ACK; 60 s (gcloud's value) when zero.
	// The relay holds the socket open without a SID while the VM does not answer.
	ConnectTimeout time.Duration

	Reconnect ReconnectPolicy
	Ack       AckPolicy

	// SendBuffer bounds the bytes Write accepts that the relay has not acknowledged
	// (they are kept for resending after a reconnect); Write blocks when it is full.
	// 2 MiB when zero.
	SendBuffer int
	// RecvBuffer bounds the memory holding received bytes not yet consumed by Read
	// (buffer memory, not payload: small frames are packed together); past it the
	// tunnel withholds ACKs so the relay stops sending, and a relay that goes on
	// regardless for 16 MiB more is a protocol violation. 1 MiB when zero.
	RecvBuffer int
	// CloseTimeout bounds how long Close waits to hand written data to the relay;
	// 5 s when zero.
	CloseTimeout time.Duration

	// Observer, when set, is told about connects, reconnects and failures.
	Observer Observer
}

// ReconnectPolicy bounds how the tunnel resumes its session after the WebSocket drops
// without a close frame (1006) or the relay asks for re-authentication (4004).
//
// Every reconnect attempt, successful or not, counts against a budget for the whole
// session: at most PerMinute in any minute and Total in all. A relay that accepts
// every reconnect and drops it again therefore ends the tunnel with an error wrapping
// ErrReconnectBudget instead of being dialled in a loop. The backoff is
// session-wide too: it starts again from Backoff only once the last resumed
// websocket has held for a minute.
type ReconnectPolicy struct {
	// MaxAttempts per drop; 5 when zero; negative disables reconnecting.
	MaxAttempts int
	// Backoff is the sleep before the second attempt (the first is immediate
	// unless the last reconnect was less than a minute ago); it doubles per
	// attempt up to MaxBackoff. 1 s and 20 s when zero.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// PerMinute bounds the reconnect attempts in any minute; 12 when zero.
	PerMinute int
	// Total bounds the reconnect attempts over the tunnel's life; 120 when zero.
	Total int
}

// ErrReconnectBudget is wrapped by the error that ends a tunnel whose session used
// up its reconnect budget (ReconnectPolicy.PerMinute or Total).
var ErrReconnectBudget = errors.New("iap tunnel reconnect budget exhausted")

// AckPolicy sets when the tunnel acknowledges received bytes. The relay stops sending
// when about 1 MiB is unacknowledged, so acknowledgements are never disabled outside
// tests.
type AckPolicy struct {
	// Threshold: acknowledge as soon as more than this many received bytes are
	// unacknowledged. 32 KiB (gcloud's value) when zero; at most 1 MiB.
	Threshold int
	// Idle: acknowledge any unacknowledged bytes once nothing was received for this
	// long. 500 ms when zero; at most 1 s.
	Idle time.Duration
	// Disable sends no ACK at all. For tests of the relay's flow control only.
	Disable bool
}

const (
	maxUnacked          = 1 << 20
	maxOverrun          = 16 << 20 // unread bytes beyond RecvBuffer: the relay ignores withheld ACKs
	defaultSendBuffer   = 2 << 20
	defaultRecvBuffer   = 1 << 20
	defaultConnectWait  = 60 * time.Second
	defaultAckThreshold = 2 * MaxDataLen
	defaultAckIdle      = 500 * time.Millisecond
)

func (o *Options) setDefaults() error {
	if o.Project == "" || o.Zone == "" || o.Instance == "" {
		return errors.New("project, zone and instance are required")
	}
	if o.TokenSource == nil {
		return errors.New("a token source is required")
	}
	if o.Interface == "" {
		o.Interface = "nic0"
	}
	if o.Port == 0 {
		o.Port = 22
	}
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("port %d out of range", o.Port)
	}
	if o.TLSConfig != nil && o.HTTPClient != nil {
		return errors.New("set TLSConfig or HTTPClient, not both")
	}
	if o.HTTPClient == nil {
		// The upgrade carries the access token: never follow a redirect with it.
		o.HTTPClient = &http.Client{CheckRedirect: safehttp.NoRedirects}
		if o.TLSConfig != nil {
			o.HTTPClient.Transport = &http.Transport{TLSClientConfig: o.TLSConfig, Proxy: http.ProxyFromEnvironment}
		}
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = defaultConnectWait
	}
	if o.Reconnect.MaxAttempts == 0 {
		o.Reconnect.MaxAttempts = 5
	}
	if o.Reconnect.Backoff <= 0 {
		o.Reconnect.Backoff = time.Second
	}
	if o.Reconnect.MaxBackoff <= 0 {
		o.Reconnect.MaxBackoff = 20 * time.Second
	}
	if o.Reconnect.PerMinute <= 0 {
		o.Reconnect.PerMinute = 12
	}
	if o.Reconnect.Total <= 0 {
		o.Reconnect.Total = 120
	}
	if o.Ack.Threshold <= 0 {
		o.Ack.Threshold = defaultAckThreshold
	}
	o.Ack.Threshold = min(o.Ack.Threshold, maxUnacked-MaxDataLen)
	if o.Ack.Idle <= 0 {
		o.Ack.Idle = defaultAckIdle
	}
	o.Ack.Idle = min(o.Ack.Idle, time.Second)
	if o.SendBuffer <= 0 {
		o.SendBuffer = defaultSendBuffer
	}
	if o.RecvBuffer <= 0 {
		o.RecvBuffer = defaultRecvBuffer
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	return nil
}

// Dial opens a tunnel to opts.Instance:opts.Port through the relay and returns it once
// the relay has sent CONNECT_SUCCESS_SID, i.e. the relay has connected to the VM.
// ctx bounds the dial only, not the life of the Conn; the handshake is further bounded
// by opts.ConnectTimeout. Errors: *CloseError when the relay refuses (4033, 4047, 4003,
// …, with advice in its text), *HandshakeError for an HTTP status instead of 101,
// ErrProtocol for a relay breaking the protocol. The access token never appears in
// errors or logs. A nil lg discards the tunnel's log.
func Dial(ctx context.Context, lg *slog.Logger, opts Options) (*Conn, error) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("iap dial: %w", err)
	}
	base, err := endpointBase(opts.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("iap dial: %w", err)
	}
	c := newConn(lg, opts, base)
	u := connectURL(base, opts.Project, opts.Zone, opts.Instance, opts.Interface, opts.Port)
	ws, f, err := c.handshake(ctx, u, false)
	if err != nil {
		c.cancel()
		observeFailure(opts.Observer, EventConnectFailed, err)
		return nil, fmt.Errorf("iap dial %s: %w", c.raddr, err)
	}
	c.sid = f.SID
	c.ws = ws
	c.lg.Debug("iap tunnel open", "target", c.raddr.String())
	observe(opts.Observer, EventConnect)
	c.start(ws)
	return c, nil
}

// handshake dials u and waits for the first relay frame: CONNECT_SUCCESS_SID, or
// RECONNECT_SUCCESS_ACK when reconnect is set.
func (c *Conn) handshake(ctx context.Context, u string, reconnect bool) (*websocket.Conn, Frame, error) {
	tok, err := c.opts.TokenSource.Token()
	if err != nil {
		return nil, Frame{}, fmt.Errorf("get access token: %w", err)
	}
	if tok.AccessToken == "" {
		return nil, Frame{}, errors.New("get access token: token source returned an empty token")
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+tok.AccessToken)
	hdr.Set("Origin", Origin)
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:   c.opts.HTTPClient,
		HTTPHeader:   hdr,
		Subprotocols: []string{Subprotocol},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != 0 {
			return nil, Frame{}, &HandshakeError{StatusCode: resp.StatusCode}
		}
		return nil, Frame{}, fmt.Errorf("websocket dial: %w", redactURL(err))
	}
	if ws.Subprotocol() != Subprotocol {
		_ = ws.CloseNow()
		return nil, Frame{}, errNoSubprotocol
	}
	// One relay frame per message: a longer message is a protocol error
	// (readMessage); the limit keeps coder/websocket from buffering past it.
	ws.SetReadLimit(maxDataFrame)
	buf := make([]byte, maxDataFrame)
	want, wantName := TagConnectSuccessSID, "CONNECT_SUCCESS_SID"
	if reconnect {
		want, wantName = TagReconnectSuccessAck, "RECONNECT_SUCCESS_ACK"
	}
	for {
		n, err := readMessage(ctx, ws, buf)
		if err != nil {
			_ = ws.CloseNow()
			if errors.Is(err, ErrProtocol) {
				return nil, Frame{}, err
			}
			if ctx.Err() != nil {
				return nil, Frame{}, fmt.Errorf("no %s from the relay within %v (is the VM listening on port %d?): %w", wantName, c.opts.ConnectTimeout, c.opts.Port, ctx.Err())
			}
			cerr := c.classify(err)
			if cerr == io.EOF {
				cerr = &CloseError{Code: CodeNormal, Reason: "closed before " + wantName, Port: c.opts.Port}
			}
			return nil, Frame{}, cerr
		}
		f, err := DecodeFrame(buf[:n])
		if err != nil {
			_ = ws.CloseNow()
			return nil, Frame{}, err
		}
		switch f.Tag {
		case want:
			return ws, f, nil
		case TagConnectSuccessSID, TagReconnectSuccessAck, TagData, TagAck:
			_ = ws.CloseNow()
			return nil, Frame{}, fmt.Errorf("%w: tag %d before %s", ErrProtocol, f.Tag, wantName)
		}
		// Unknown tags are ignored (§3).
	}
}

// readMessage reads one binary message into buf (maxDataFrame bytes, the largest
// frame) and returns its length. Bytes after the frame within the message are the
// caller's to discard (the protocol says so); a message longer than buf, which no
// frame needs, and a non-binary message are protocol errors that end the tunnel:
// retrying on a new websocket would only invite the same message again.
func readMessage(ctx context.Context, ws *websocket.Conn, buf []byte) (int, error) {
	typ, r, err := ws.Reader(ctx)
	if err != nil {
		if errors.Is(err, websocket.ErrMessageTooBig) {
			return 0, fmt.Errorf("%w: relay sent a message longer than %d bytes", ErrProtocol, len(buf))
		}
		return 0, err
	}
	if typ != websocket.MessageBinary {
		return 0, fmt.Errorf("%w: relay sent a non-binary message", ErrProtocol)
	}
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	// buf is full: the message must end here.
	var one [1]byte
	for {
		m, err := r.Read(one[:])
		if m > 0 || errors.Is(err, websocket.ErrMessageTooBig) {
			return n, fmt.Errorf("%w: relay sent a message longer than %d bytes (the largest frame)", ErrProtocol, len(buf))
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// classify turns a WebSocket read error into io.EOF (1000, 4009, 4010) or a *CloseError
// (1006 for a drop without close frame).
func (c *Conn) classify(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		switch int(ce.Code) {
		case CodeNormal, CodeDestinationWriteFail, CodeDestinationReadFail:
			return io.EOF
		}
		return &CloseError{Code: int(ce.Code), Reason: ce.Reason, Port: c.opts.Port}
	}
	return &CloseError{Code: CodeAbnormal, Reason: "connection dropped: " + redactURL(err).Error(), Port: c.opts.Port}
}

// redactURL strips the query (SID) from *url.Error texts.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}
