// Package iaptest is a local fake of the IAP TCP-forwarding relay
// (tunnel.cloudproxy.app), faithful to the protocol described in the project's
// IAP-PROTOCOL.md §11: the same handshake checks, framing rules, acknowledgements,
// flow-control window, reconnect with replay, close codes and fault injection, in front
// of real backends (e.g. an OpenSSH sshd) on 127.0.0.1.
//
// Faults a test can inject (Relay.Inject): a dropped websocket (once, or every time
// with Fault.Repeat), a close code, an impossible ACK, a message longer than any
// frame; RelayOptions.FrameSize makes it cut its DATA into frames as small as one
// byte, as a relay may.
//
// A test starts one with NewRelay and points the client's endpoint at Relay.URL:
//
//	r := iaptest.NewRelay(t, iaptest.RelayOptions{Instances: map[string]string{"vm-1": "127.0.0.1"}})
//	conn, err := iap.Dial(ctx, lg, iap.Options{Endpoint: r.URL(), Project: r.Project(), ...})
package iaptest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Protocol constants, restated here so the fake does not trust the client package.
const (
	subprotocol   = "relay.tunnel.cloudproxy.app"
	origin        = "bot:iap-tunneler"
	tagSID        = 1
	tagReconnAck  = 2
	tagData       = 4
	tagAck        = 7
	maxData       = 16384
	defaultWindow = 1 << 20
	maxQueued     = 32 << 20 // client bytes the fake buffers for a backend that does not read
)

// AckMode is how often the fake acknowledges client data (the real cadence is
// undocumented, so tests run the client against several).
type AckMode int

const (
	// AckCoalesced acknowledges every 8 DATA frames and after AckDelay of quiet.
	AckCoalesced AckMode = iota
	// AckEveryFrame acknowledges after every DATA frame.
	AckEveryFrame
	// AckDelayed acknowledges only AckDelay after the first unacknowledged frame.
	AckDelayed
)

// RelayOptions configures the fake. The zero value serves nothing: set Instances.
type RelayOptions struct {
	// Tokens are the bearer tokens accepted at start ("test-token" when empty);
	// SetTokens rotates them.
	Tokens []string
	// Project, Zone and Interface the fake knows; "test-project", "test-zone-a" and
	// "nic0" when empty. Any other value is a lookup failure (4047).
	Project, Zone, Interface string
	// Instances maps instance names to the host their ports are on ("127.0.0.1");
	// the relay dials host:port with the port of the connect request.
	Instances map[string]string
	// Backends maps instance names to the host:port the relay dials for
	// them, whatever port the connect request names: a fleet of "VMs" on one
	// loopback address, each sshd on its own port, behind one relay.
	Backends map[string]string
	// Denied lists instances the caller is not authorized for (close 4033).
	Denied []string
	// Root is the path root; "/v4" when empty.
	Root string
	// Window is the flow-control window: the fake stops reading from the backend while
	// this many bytes sent to the client are unacknowledged. 1 MiB when zero.
	Window int
	// Ack and AckDelay set the cadence of ACKs to the client; AckDelay is 2 ms
	// (AckCoalesced) or 20 ms (AckDelayed) when zero.
	Ack      AckMode
	AckDelay time.Duration
	// EOFCode is the close code sent once the backend closed and everything was
	// sent: 1000 or 4010 (the default).
	EOFCode int
	// FrameSize is the largest DATA payload the fake sends a client, 16384 (the
	// protocol's maximum) when zero. 1 makes it send one byte per frame, as a relay
	// may within its window.
	FrameSize int
	// Logger receives the fake's log; discarded when nil.
	Logger *slog.Logger
}

// Handshake is one upgrade request as the fake saw it.
type Handshake struct {
	Path     string
	RawQuery string
	Query    url.Values
	Header   http.Header
}

// Stats are the fake's counters.
type Stats struct {
	Connects, Reconnects int   // successful session starts and resumes
	BytesToBackend       int64 // client DATA payload received for backends
	BytesToClient        int64 // DATA payload sent to clients (replays included)
	MaxUnacked           int64 // most bytes sent to a client and not yet acknowledged
	ClientAcks           int   // ACK frames received from clients
	Stalls               int   // times a session stopped reading its backend on the window
}

// FaultKind selects an injected fault.
type FaultKind int

const (
	// FaultDrop drops the websocket's TCP connection without a close frame (the
	// client sees 1006); the session stays resumable.
	FaultDrop FaultKind = iota + 1
	// FaultClose closes the websocket with Fault.Code (4004 keeps the session
	// resumable, other codes end it).
	FaultClose
	// FaultBadAck sends the client an ACK for more bytes than it sent.
	FaultBadAck
	// FaultOversized sends the client one binary message of Fault.Size bytes (2 MiB
	// when zero): a DATA header for 16384 bytes followed by more bytes than any frame
	// holds.
	FaultOversized
)

// Fault is a fault injected into the next session traffic.
type Fault struct {
	Kind FaultKind
	Code int
	// AfterBytes: trigger once this many payload bytes (both directions) were relayed
	// after Inject.
	AfterBytes int64
	// Repeat re-arms the fault each time it fires, to fire again AfterBytes later:
	// FaultDrop with Repeat drops every websocket the session gets, however often
	// the client reconnects.
	Repeat bool
	// Size is the length of the FaultOversized message.
	Size int
}

// Relay is a running fake relay. Its methods are safe for concurrent use.
type Relay struct {
	tb   testing.TB
	lg   *slog.Logger
	opts RelayOptions
	srv  *httptest.Server
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu         sync.Mutex
	tokens     []string
	sessions   map[string]*session
	handshakes []Handshake
	stats      Stats
	fault      *Fault
	faultBytes int64
	stalled    chan struct{}
}

// NewRelay starts a fake relay on 127.0.0.1 and stops it when the test ends.
func NewRelay(tb testing.TB, opts RelayOptions) *Relay {
	tb.Helper()
	if len(opts.Tokens) == 0 {
		opts.Tokens = []string{"test-token"}
	}
	if opts.Project == "" {
		opts.Project = "test-project"
	}
	if opts.Zone == "" {
		opts.Zone = "test-zone-a"
	}
	if opts.Interface == "" {
		opts.Interface = "nic0"
	}
	if opts.Root == "" {
		opts.Root = "/v4"
	}
	if opts.Window <= 0 {
		opts.Window = defaultWindow
	}
	if opts.AckDelay <= 0 {
		opts.AckDelay = 2 * time.Millisecond
		if opts.Ack == AckDelayed {
			opts.AckDelay = 20 * time.Millisecond
		}
	}
	if opts.EOFCode == 0 {
		opts.EOFCode = 4010
	}
	if opts.FrameSize <= 0 || opts.FrameSize > maxData {
		opts.FrameSize = maxData
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &Relay{
		tb: tb, lg: lg, opts: opts, ctx: ctx, stop: stop,
		tokens:   slices.Clone(opts.Tokens),
		sessions: map[string]*session{},
		stalled:  make(chan struct{}, 1),
	}
	r.srv = httptest.NewServer(r)
	tb.Cleanup(r.Close)
	return r
}

// URL returns the endpoint to give the client: ws://127.0.0.1:PORT/v4.
func (r *Relay) URL() string { return "ws" + strings.TrimPrefix(r.srv.URL, "http") + r.opts.Root }

// Project returns the project the fake knows.
func (r *Relay) Project() string { return r.opts.Project }

// Zone returns the zone the fake knows.
func (r *Relay) Zone() string { return r.opts.Zone }

// SetTokens replaces the accepted bearer tokens (sessions already open stay open).
func (r *Relay) SetTokens(tokens ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens = slices.Clone(tokens)
}

// Inject arms a fault; it fires once.
func (r *Relay) Inject(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = &f
	r.faultBytes = 0
}

// Handshakes returns every upgrade request seen so far.
func (r *Relay) Handshakes() []Handshake {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.handshakes)
}

// Stats returns a snapshot of the counters.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Stalled receives a value each time a session stops reading its backend because the
// client has Window bytes unacknowledged.
func (r *Relay) Stalled() <-chan struct{} { return r.stalled }

// Close ends every session and stops the server. It is called by the test cleanup.
func (r *Relay) Close() {
	r.stop()
	r.mu.Lock()
	ss := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		ss = append(ss, s)
	}
	r.mu.Unlock()
	for _, s := range ss {
		s.end(0, "")
	}
	r.srv.Close()
	r.wg.Wait()
}

func (r *Relay) tokenValid(h string) bool {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.tokens, tok)
}

// ServeHTTP serves ROOT/connect and ROOT/reconnect.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.handshakes = append(r.handshakes, Handshake{Path: req.URL.Path, RawQuery: req.URL.RawQuery, Query: req.URL.Query(), Header: req.Header.Clone()})
	r.mu.Unlock()
	reconnect := false
	switch req.URL.Path {
	case r.opts.Root + "/connect":
	case r.opts.Root + "/reconnect":
		reconnect = true
	default:
		http.NotFound(w, req)
		return
	}
	if got := req.Header.Get("Origin"); got != origin {
		http.Error(w, "bad origin", http.StatusForbidden)
		return
	}
	if !slices.Contains(websocketProtocols(req), subprotocol) {
		http.Error(w, "missing subprotocol", http.StatusBadRequest)
		return
	}
	if req.Header.Get("Authorization") == "" {
		http.Error(w, "missing credentials", http.StatusUnauthorized)
		return
	}
	q := req.URL.Query()
	// coder/websocket checks that Origin's host equals the request host; the relay's
	// Origin is not a URL, so skip that and check it above instead.
	ws, err := websocket.Accept(w, req, &websocket.AcceptOptions{InsecureSkipVerify: true, Subprotocols: []string{subprotocol}})
	if err != nil {
		r.lg.Warn("fake relay: accept", "err", err)
		return
	}
	if !r.tokenValid(req.Header.Get("Authorization")) {
		_ = ws.Close(4033, "not authorized")
		return
	}
	if reconnect {
		r.reconnect(ws, q)
	} else {
		r.connect(ws, q)
	}
}

func websocketProtocols(req *http.Request) []string {
	var out []string
	for _, v := range req.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			out = append(out, strings.TrimSpace(p))
		}
	}
	return out
}

func (r *Relay) connect(ws *websocket.Conn, q url.Values) {
	inst := q.Get("instance")
	port, err := strconv.Atoi(q.Get("port"))
	if err != nil || port < 1 || port > 65535 || q.Get("newWebsocket") != "True" {
		_ = ws.Close(4000, "bad request")
		return
	}
	if slices.Contains(r.opts.Denied, inst) {
		_ = ws.Close(4033, "not authorized")
		return
	}
	host, ok := r.opts.Instances[inst]
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if b, isBackend := r.opts.Backends[inst]; isBackend {
		addr, ok = b, true
	}
	if !ok || q.Get("project") != r.opts.Project || q.Get("zone") != r.opts.Zone || q.Get("interface") != r.opts.Interface {
		_ = ws.Close(4047, "Failed to lookup instance")
		return
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	backend, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		_ = ws.Close(4003, "failed to connect to backend")
		return
	}
	s := &session{
		r: r, sid: newSID(), backend: backend,
		wake: make(chan struct{}, 1), window: make(chan struct{}, 1), done: make(chan struct{}),
		bwake: make(chan struct{}, 1), ackKick: make(chan struct{}, 1),
		ring: make([]byte, r.opts.Window), busy: true,
	}
	r.mu.Lock()
	r.sessions[s.sid] = s
	r.stats.Connects++
	r.mu.Unlock()
	r.wg.Add(3)
	go s.readBackend()
	go s.writeBackend()
	go s.ackLoop()
	first := binary.BigEndian.AppendUint16(nil, tagSID)
	first = binary.BigEndian.AppendUint32(first, uint32(len(s.sid)))
	first = append(first, s.sid...)
	s.serve(ws, first, 0)
}

func (r *Relay) reconnect(ws *websocket.Conn, q url.Values) {
	if q.Get("zone") != r.opts.Zone || q.Get("newWebsocket") != "True" {
		_ = ws.Close(4051, "Failed to lookup instance")
		return
	}
	r.mu.Lock()
	s := r.sessions[q.Get("sid")]
	r.mu.Unlock()
	if s == nil {
		_ = ws.Close(4001, "sid unknown")
		return
	}
	ack, err := strconv.ParseUint(q.Get("ack"), 10, 64)
	s.mu.Lock()
	switch {
	case s.busy:
		s.mu.Unlock()
		_ = ws.Close(4002, "sid in use")
		return
	case err != nil || ack < s.clientAck || ack > s.sentMax:
		s.mu.Unlock()
		_ = ws.Close(4074, "failed to rewind")
		return
	}
	s.busy = true
	s.trimLocked(ack)
	s.sendOff = ack
	got := s.fromClient
	s.mu.Unlock()
	signal(s.window) // the ack parameter acknowledges, and may reopen the window
	r.mu.Lock()
	r.stats.Reconnects++
	r.mu.Unlock()
	first := binary.BigEndian.AppendUint16(nil, tagReconnAck)
	first = binary.BigEndian.AppendUint64(first, got)
	s.serve(ws, first, got)
}

func newSID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// count adds relayed bytes to the counters and returns a fault that fires now.
func (r *Relay) count(toBackend, toClient int64) *Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.BytesToBackend += toBackend
	r.stats.BytesToClient += toClient
	if r.fault == nil {
		return nil
	}
	r.faultBytes += toBackend + toClient
	if r.faultBytes < r.fault.AfterBytes {
		return nil
	}
	f := *r.fault
	if f.Repeat {
		r.faultBytes = 0
	} else {
		r.fault = nil
	}
	return &f
}

// session is one tunnel, kept by SID across websockets.
type session struct {
	r       *Relay
	sid     string
	backend net.Conn
	wake    chan struct{} // data to send, or the websocket changed
	window  chan struct{} // the client acknowledged something
	done    chan struct{}
	endOnce sync.Once

	mu         sync.Mutex
	ws         *websocket.Conn // nil while detached
	busy       bool            // a websocket is attached or attaching
	gen        int
	ring       []byte // Window bytes: backend bytes clientAck..readTotal at offset % Window
	clientAck  uint64 // last ACK from the client
	readTotal  uint64 // bytes read from the backend
	sendOff    uint64 // next offset to send on ws
	sentMax    uint64 // highest offset ever sent
	backendEOF bool
	fromClient uint64    // client DATA bytes received
	toBackend  []*[]byte // received client bytes not yet written to the backend
	queued     int       // bytes in toBackend
	written    uint64    // client bytes written to the backend
	frames     int       // client DATA frames written
	bwake      chan struct{}
	ackKick    chan struct{}
	ackMu      sync.Mutex
	ackedOut   uint64 // last ACK value sent to the client
}

func (s *session) trimLocked(ack uint64) {
	s.clientAck = ack
}

// readBackend moves backend bytes into the replay buffer while the window allows.
func (s *session) readBackend() {
	defer s.r.wg.Done()
	w := len(s.ring)
	for {
		s.mu.Lock()
		room := w - int(s.readTotal-s.clientAck)
		pos := int(s.readTotal % uint64(w))
		s.mu.Unlock()
		if room <= 0 {
			s.r.mu.Lock()
			s.r.stats.Stalls++
			s.r.mu.Unlock()
			select {
			case s.r.stalled <- struct{}{}:
			default:
			}
			select {
			case <-s.window:
				continue
			case <-s.done:
				return
			}
		}
		// ring[pos:] up to room bytes holds nothing unacknowledged: safe to fill
		// without the lock.
		n, err := s.backend.Read(s.ring[pos : pos+min(room, maxData, w-pos)])
		s.mu.Lock()
		s.readTotal += uint64(n)
		if err != nil {
			s.backendEOF = true
		}
		s.mu.Unlock()
		signal(s.wake)
		if err != nil {
			return
		}
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, maxData); return &b }}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// serve attaches ws to the session, sends first, then relays until ws ends.
// acked is the client byte count the first frame acknowledged.
func (s *session) serve(ws *websocket.Conn, first []byte, acked uint64) {
	ctx := s.r.ctx
	if err := ws.Write(ctx, websocket.MessageBinary, first); err != nil {
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
		_ = ws.CloseNow()
		return
	}
	s.ackMu.Lock() // no ACK below acked may go out on ws
	s.mu.Lock()
	select {
	case <-s.done: // ended meanwhile; end saw no websocket to close
		s.mu.Unlock()
		s.ackMu.Unlock()
		_ = ws.CloseNow()
		return
	default:
	}
	s.ws = ws
	s.gen++
	gen := s.gen
	s.mu.Unlock()
	s.ackedOut = acked
	s.ackMu.Unlock()
	signal(s.wake)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); s.send(ws, gen, stop) }()
	s.readClient(ws, gen)
	close(stop)
	s.detach(ws)
	wg.Wait()
}

func (s *session) detach(ws *websocket.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws != ws {
		return false
	}
	s.ws = nil
	s.busy = false
	s.gen++
	signal(s.wake)
	return true
}

// end closes the session: the websocket with code (none when 0) and the backend.
func (s *session) end(code int, reason string) {
	s.endOnce.Do(func() {
		close(s.done)
		s.r.mu.Lock()
		delete(s.r.sessions, s.sid)
		s.r.mu.Unlock()
		s.mu.Lock()
		ws := s.ws
		s.ws = nil
		s.gen++
		s.mu.Unlock()
		_ = s.backend.Close()
		if ws != nil {
			if code == 0 {
				_ = ws.CloseNow()
			} else {
				_ = ws.Close(websocket.StatusCode(code), reason)
			}
		}
	})
}

// send writes backend bytes as DATA frames, one per message, and closes with EOFCode
// after the backend's EOF.
func (s *session) send(ws *websocket.Conn, gen int, stop chan struct{}) {
	frame := make([]byte, 6+maxData)
	for {
		s.mu.Lock()
		for s.gen == gen && s.sendOff == s.readTotal && !s.backendEOF {
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-stop:
				return
			}
			s.mu.Lock()
		}
		if s.gen != gen {
			s.mu.Unlock()
			return
		}
		if s.sendOff == s.readTotal { // backend EOF, all sent
			s.mu.Unlock()
			s.end(s.r.opts.EOFCode, "")
			return
		}
		n := int(min(uint64(s.r.opts.FrameSize), s.readTotal-s.sendOff))
		start := int(s.sendOff % uint64(len(s.ring)))
		binary.BigEndian.PutUint16(frame, tagData)
		binary.BigEndian.PutUint32(frame[2:], uint32(n))
		if k := copy(frame[6:6+n], s.ring[start:]); k < n {
			copy(frame[6+k:6+n], s.ring)
		}
		s.sendOff += uint64(n)
		s.sentMax = max(s.sentMax, s.sendOff)
		unacked := int64(s.sentMax - s.clientAck)
		s.mu.Unlock()
		s.r.mu.Lock()
		s.r.stats.MaxUnacked = max(s.r.stats.MaxUnacked, unacked)
		s.r.mu.Unlock()
		f := s.r.count(0, int64(n))
		if err := ws.Write(context.Background(), websocket.MessageBinary, frame[:6+n]); err != nil {
			return
		}
		if f != nil {
			s.fire(ws, f)
		}
	}
}

// fire performs an injected fault on ws.
func (s *session) fire(ws *websocket.Conn, f *Fault) {
	s.r.lg.Info("fake relay: injecting fault", "kind", f.Kind, "code", f.Code)
	switch f.Kind {
	case FaultDrop:
		s.detach(ws)
		_ = ws.CloseNow()
	case FaultClose:
		if f.Code == 4004 {
			s.detach(ws)
			_ = ws.Close(websocket.StatusCode(f.Code), "reauthentication required")
			return
		}
		s.end(f.Code, "injected")
	case FaultOversized:
		size := f.Size
		if size <= 0 {
			size = 2 << 20
		}
		msg := make([]byte, max(size, 6))
		binary.BigEndian.PutUint16(msg, tagData)
		binary.BigEndian.PutUint32(msg[2:], maxData)
		_ = ws.Write(s.r.ctx, websocket.MessageBinary, msg)
	case FaultBadAck:
		s.mu.Lock()
		bad := s.fromClient + 1000
		s.mu.Unlock()
		s.ackMu.Lock()
		_ = ws.Write(s.r.ctx, websocket.MessageBinary, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint16(nil, tagAck), bad))
		s.ackMu.Unlock()
	}
}

// sendAck acknowledges the client bytes written to the backend on the current
// websocket. After a reconnect, RECONNECT_SUCCESS_ACK counted the queued bytes too, so
// ACKs never go below that.
func (s *session) sendAck() {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.mu.Lock()
	n, ws := s.written, s.ws
	s.mu.Unlock()
	if ws == nil || n <= s.ackedOut {
		return
	}
	var b [10]byte
	binary.BigEndian.PutUint16(b[:], tagAck)
	binary.BigEndian.PutUint64(b[2:], n)
	if ws.Write(context.Background(), websocket.MessageBinary, b[:]) == nil {
		s.ackedOut = n
	}
}

// ackLoop sends the delayed ACKs of AckCoalesced and AckDelayed.
func (s *session) ackLoop() {
	defer s.r.wg.Done()
	for {
		select {
		case <-s.ackKick:
		case <-s.done:
			return
		}
		t := time.NewTimer(s.r.opts.AckDelay)
		select {
		case <-t.C:
			s.sendAck()
		case <-s.done:
			t.Stop()
			return
		}
	}
}

// writeBackend writes client bytes to the backend, decoupled from reading the
// websocket so client ACKs are processed while the backend is not reading, and
// acknowledges them on the configured cadence.
func (s *session) writeBackend() {
	defer s.r.wg.Done()
	for {
		s.mu.Lock()
		for len(s.toBackend) == 0 {
			s.mu.Unlock()
			select {
			case <-s.bwake:
			case <-s.done:
				return
			}
			s.mu.Lock()
		}
		b := s.toBackend[0]
		s.toBackend[0] = nil
		s.toBackend = s.toBackend[1:]
		s.mu.Unlock()
		_, err := s.backend.Write(*b)
		n := len(*b)
		bufPool.Put(b)
		if err != nil {
			s.end(4009, "destination write failed")
			return
		}
		s.mu.Lock()
		s.queued -= n
		s.written += uint64(n)
		s.frames++
		frames := s.frames
		s.mu.Unlock()
		switch s.r.opts.Ack {
		case AckEveryFrame:
			s.sendAck()
		case AckCoalesced:
			if frames%8 == 0 {
				s.sendAck()
			} else {
				signal(s.ackKick)
			}
		case AckDelayed:
			signal(s.ackKick)
		}
	}
}

// readClient handles client frames until the websocket ends. Reads and writes on an
// attached websocket use a context without Done (coder/websocket then skips a
// per-frame context.AfterFunc); end and detach unblock them by closing the socket.
func (s *session) readClient(ws *websocket.Conn, gen int) {
	buf := make([]byte, 6+maxData+1)
	for {
		typ, rd, err := ws.Reader(context.Background())
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure {
				s.end(0, "")
			}
			return
		}
		if typ != websocket.MessageBinary {
			s.end(4007, "invalid websocket opcode")
			return
		}
		n, err := io.ReadFull(rd, buf)
		if err == nil {
			s.end(4013, "message too long")
			return
		}
		if err != io.ErrUnexpectedEOF && err != io.EOF {
			return
		}
		msg := buf[:n]
		if len(msg) < 2 {
			s.end(4008, "invalid tag")
			return
		}
		switch binary.BigEndian.Uint16(msg) {
		case tagData:
			if len(msg) < 6 {
				s.end(4013, "invalid data")
				return
			}
			l := binary.BigEndian.Uint32(msg[2:])
			if l == 0 || l > maxData || int(l) != len(msg)-6 {
				s.end(4013, "invalid data")
				return
			}
			s.mu.Lock()
			if s.gen != gen {
				// Detached (a fault): the client resends what the reconnect
				// acknowledgement does not cover.
				s.mu.Unlock()
				return
			}
			b := bufPool.Get().(*[]byte)
			*b = append((*b)[:0], msg[6:]...)
			s.toBackend = append(s.toBackend, b)
			s.queued += int(l)
			s.fromClient += uint64(l)
			overrun := s.queued > maxQueued
			s.mu.Unlock()
			if overrun {
				s.end(4000, "client ignored flow control")
				return
			}
			f := s.r.count(int64(l), 0) // counted before the backend can answer
			signal(s.bwake)
			if f != nil {
				s.fire(ws, f)
			}
		case tagAck:
			if len(msg) != 10 {
				s.end(4006, "invalid ack")
				return
			}
			a := binary.BigEndian.Uint64(msg[2:])
			s.mu.Lock()
			bad := ""
			switch {
			case a < s.clientAck:
				bad = fmt.Sprintf("ack %d before %d", a, s.clientAck)
			case a > s.sentMax:
				bad = fmt.Sprintf("ack %d beyond %d sent", a, s.sentMax)
			default:
				s.trimLocked(a)
			}
			s.mu.Unlock()
			if bad != "" {
				s.r.lg.Warn("fake relay: bad client ack", "detail", bad)
				s.end(4005, "bad ack")
				return
			}
			s.r.mu.Lock()
			s.r.stats.ClientAcks++
			s.r.mu.Unlock()
			signal(s.window)
		default:
			s.end(4008, "invalid tag")
			return
		}
		s.mu.Lock()
		moved := s.gen != gen
		s.mu.Unlock()
		if moved {
			return
		}
	}
}
