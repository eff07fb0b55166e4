package iaptest_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
)

// start returns a fake relay in front of an echo backend, and the backend port.
func start(t *testing.T) (*iaptest.Relay, int) {
	t.Helper()
	return startWith(t, iaptest.RelayOptions{})
}

// startWith is start with more options.
func startWith(t *testing.T, opts iaptest.RelayOptions) (*iaptest.Relay, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); io.Copy(c, c) }()
		}
	}()
	// Runs after the relay's cleanup, which closes the backend connections.
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	opts.Instances = map[string]string{"vm-1": "127.0.0.1"}
	opts.Ack = iaptest.AckEveryFrame
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	r := iaptest.NewRelay(t, opts)
	return r, ln.Addr().(*net.TCPAddr).Port
}

type hdr struct{ origin, auth, proto string }

var good = hdr{"bot:iap-tunneler", "Bearer test-token", "relay.tunnel.cloudproxy.app"}

func dial(t *testing.T, r *iaptest.Relay, pathQuery string, h hdr) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	hh := http.Header{}
	if h.origin != "" {
		hh.Set("Origin", h.origin)
	}
	if h.auth != "" {
		hh.Set("Authorization", h.auth)
	}
	opts := &websocket.DialOptions{HTTPHeader: hh}
	if h.proto != "" {
		opts.Subprotocols = []string{h.proto}
	}
	ws, resp, err := websocket.Dial(t.Context(), r.URL()+pathQuery, opts)
	if ws != nil {
		t.Cleanup(func() { ws.CloseNow() })
	}
	return ws, resp, err
}

func connectQuery(port int) string {
	return "/connect?project=test-project&port=" + strconv.Itoa(port) + "&newWebsocket=True&zone=test-zone-a&instance=vm-1&interface=nic0"
}

// closeCode reads until the relay closes and returns the close code.
func closeCode(ctx context.Context, ws *websocket.Conn) int {
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			return int(websocket.CloseStatus(err))
		}
	}
}

func bin(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case uint16:
			b = binary.BigEndian.AppendUint16(b, v)
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		case string:
			b = append(b, v...)
		}
	}
	return b
}

// connected dials /connect and reads the SID frame.
func connected(t *testing.T, r *iaptest.Relay, port int) (*websocket.Conn, string) {
	t.Helper()
	ws, _, err := dial(t, r, connectQuery(port), good)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Subprotocol() != "relay.tunnel.cloudproxy.app" {
		t.Fatalf("relay echoed subprotocol %q", ws.Subprotocol())
	}
	typ, msg, err := ws.Read(t.Context())
	if err != nil || typ != websocket.MessageBinary || len(msg) < 6 || binary.BigEndian.Uint16(msg) != 1 {
		t.Fatalf("first message % x, %v: want CONNECT_SUCCESS_SID", msg, err)
	}
	n := binary.BigEndian.Uint32(msg[2:])
	if int(n) != len(msg)-6 {
		t.Fatalf("SID frame % x is not alone in its message", msg)
	}
	return ws, string(msg[6:])
}

func TestRelay_handshakeChecks(t *testing.T) {
	r, port := start(t)
	tests := []struct {
		name     string
		h        hdr
		query    string
		wantHTTP int
		wantCode int
	}{
		{"wrong origin", hdr{"http://evil", good.auth, good.proto}, connectQuery(port), 403, 0},
		{"no subprotocol", hdr{good.origin, good.auth, ""}, connectQuery(port), 400, 0},
		{"no token", hdr{good.origin, "", good.proto}, connectQuery(port), 401, 0},
		{"wrong token", hdr{good.origin, "Bearer nope", good.proto}, connectQuery(port), 0, 4033},
		{"unknown instance", good, "/connect?project=test-project&port=22&newWebsocket=True&zone=test-zone-a&instance=vm-9&interface=nic0", 0, 4047},
		{"wrong interface", good, "/connect?project=test-project&port=22&newWebsocket=True&zone=test-zone-a&instance=vm-1&interface=nic1", 0, 4047},
		{"unknown sid", good, "/reconnect?sid=nope&ack=0&newWebsocket=True&zone=test-zone-a", 0, 4001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, resp, err := dial(t, r, tt.query, tt.h)
			if tt.wantHTTP != 0 {
				if err == nil || resp == nil || resp.StatusCode != tt.wantHTTP {
					t.Fatalf("dial: %v, resp %v; want HTTP %d", err, resp, tt.wantHTTP)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := closeCode(t.Context(), ws); got != tt.wantCode {
				t.Fatalf("close code %d, want %d", got, tt.wantCode)
			}
		})
	}
}

func TestRelay_rejectsBadClientFrames(t *testing.T) {
	r, port := start(t)
	tests := []struct {
		name     string
		typ      websocket.MessageType
		msg      []byte
		wantCode int
	}{
		{"text message", websocket.MessageText, []byte("hi"), 4007},
		{"forbidden tag", websocket.MessageBinary, bin(uint16(1), uint32(1), "x"), 4008},
		{"data length mismatch", websocket.MessageBinary, bin(uint16(4), uint32(5), "abc"), 4013},
		{"empty data", websocket.MessageBinary, bin(uint16(4), uint32(0)), 4013},
		{"ack beyond sent", websocket.MessageBinary, bin(uint16(7), uint64(10)), 4005},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, _ := connected(t, r, port)
			if err := ws.Write(t.Context(), tt.typ, tt.msg); err != nil {
				t.Fatal(err)
			}
			if got := closeCode(t.Context(), ws); got != tt.wantCode {
				t.Fatalf("close code %d, want %d", got, tt.wantCode)
			}
		})
	}
}

func TestRelay_dataAndAcks(t *testing.T) {
	r, port := start(t)
	ws, _ := connected(t, r, port)
	if err := ws.Write(t.Context(), websocket.MessageBinary, bin(uint16(4), uint32(5), "hello")); err != nil {
		t.Fatal(err)
	}
	var gotData string
	var gotAck uint64
	for gotData != "hello" || gotAck != 5 {
		_, msg, err := ws.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		switch binary.BigEndian.Uint16(msg) {
		case 4:
			gotData += string(msg[6:])
		case 7:
			gotAck = binary.BigEndian.Uint64(msg[2:])
		default:
			t.Fatalf("unexpected frame % x", msg)
		}
	}
}

// TestRelay_frameSize: with FrameSize the fake cuts what it sends into DATA
// frames of at most that many bytes, one per message, never empty.
func TestRelay_frameSize(t *testing.T) {
	r, port := startWith(t, iaptest.RelayOptions{FrameSize: 2})
	ws, _ := connected(t, r, port)
	if err := ws.Write(t.Context(), websocket.MessageBinary, bin(uint16(4), uint32(5), "hello")); err != nil {
		t.Fatal(err)
	}
	var got string
	for got != "hello" {
		_, msg, err := ws.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint16(msg) != 4 {
			continue // an ACK
		}
		n := binary.BigEndian.Uint32(msg[2:])
		if n == 0 || n > 2 || int(n) != len(msg)-6 {
			t.Fatalf("DATA frame % x: want 1 or 2 bytes, alone in its message", msg)
		}
		got += string(msg[6:])
	}
}

// TestRelay_oversizedFault: FaultOversized sends one message longer than any
// frame, starting like a DATA frame.
func TestRelay_oversizedFault(t *testing.T) {
	r, port := start(t)
	r.Inject(iaptest.Fault{Kind: iaptest.FaultOversized, Size: 20000})
	ws, _ := connected(t, r, port)
	ws.SetReadLimit(1 << 20)
	if err := ws.Write(t.Context(), websocket.MessageBinary, bin(uint16(4), uint32(1), "x")); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := ws.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(msg) == 20000 {
			if binary.BigEndian.Uint16(msg) != 4 || binary.BigEndian.Uint32(msg[2:]) != 16384 {
				t.Fatalf("oversized message starts % x, want a DATA header for 16384 bytes", msg[:6])
			}
			return
		}
	}
}

func TestRelay_reconnectRules(t *testing.T) {
	r, port := start(t)
	ws, sid := connected(t, r, port)
	// While the session is attached, a reconnect is refused.
	ws2, _, err := dial(t, r, "/reconnect?sid="+sid+"&ack=0&newWebsocket=True&zone=test-zone-a", good)
	if err != nil {
		t.Fatal(err)
	}
	if got := closeCode(t.Context(), ws2); got != 4002 {
		t.Fatalf("reconnect while attached: close %d, want 4002", got)
	}
	// Drop the socket without a close frame; the session stays.
	ws.CloseNow()
	for {
		ws3, _, err := dial(t, r, "/reconnect?sid="+sid+"&ack=99&newWebsocket=True&zone=test-zone-a", good)
		if err != nil {
			t.Fatal(err)
		}
		got := closeCode(t.Context(), ws3)
		if got == 4002 {
			continue // the relay has not noticed the drop yet
		}
		if got != 4074 {
			t.Fatalf("reconnect with an ack beyond sent: close %d, want 4074", got)
		}
		break
	}
	ws4, _, err := dial(t, r, "/reconnect?sid="+sid+"&ack=0&newWebsocket=True&zone=test-zone-a", good)
	if err != nil {
		t.Fatal(err)
	}
	_, msg, err := ws4.Read(t.Context())
	if err != nil || len(msg) != 10 || binary.BigEndian.Uint16(msg) != 2 || binary.BigEndian.Uint64(msg[2:]) != 0 {
		t.Fatalf("reconnect answer % x, %v; want RECONNECT_SUCCESS_ACK(0)", msg, err)
	}
	if st := r.Stats(); st.Connects != 1 || st.Reconnects != 1 {
		t.Fatalf("stats %+v", st)
	}
}
