package iap_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
)

func TestDial_handshake(t *testing.T) {
	port := startBackend(t, echo)
	r := newRelay(t, iaptest.RelayOptions{})
	opts := options(r, "vm-1", port, nil)
	c := mustDial(t, t.Context(), opts)
	echoTransfer(t, c, 1000, 1)

	hs := r.Handshakes()
	if len(hs) != 1 {
		t.Fatalf("relay saw %d handshakes, want 1", len(hs))
	}
	h := hs[0]
	wantQuery := "project=test-project&port=" + strconv.Itoa(port) + "&newWebsocket=True&zone=test-zone-a&instance=vm-1&interface=nic0"
	checks := []struct{ name, got, want string }{
		{"path", h.Path, "/v4/connect"},
		{"query", h.RawQuery, wantQuery},
		{"Authorization", h.Header.Get("Authorization"), "Bearer test-token"},
		{"Origin", h.Header.Get("Origin"), "bot:iap-tunneler"},
		{"Sec-WebSocket-Protocol", h.Header.Get("Sec-WebSocket-Protocol"), "relay.tunnel.cloudproxy.app"},
		{"RemoteAddr", c.RemoteAddr().String(), "test-project/test-zone-a/vm-1/nic0:" + strconv.Itoa(port)},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.name, ck.got, ck.want)
		}
	}
	if st := r.Stats(); st.Connects != 1 || st.BytesToBackend != 1000 || st.BytesToClient != 1000 {
		t.Errorf("relay stats %+v, want 1 connect and 1000 bytes each way", st)
	}
}

func TestConn_echo50MB(t *testing.T) {
	for _, mode := range []struct {
		name string
		ack  iaptest.AckMode
	}{{"coalesced", iaptest.AckCoalesced}, {"every frame", iaptest.AckEveryFrame}, {"delayed", iaptest.AckDelayed}} {
		t.Run(mode.name, func(t *testing.T) {
			n := int64(50 << 20)
			if mode.ack != iaptest.AckCoalesced {
				n = 8 << 20
			}
			port := startBackend(t, echo)
			r := newRelay(t, iaptest.RelayOptions{Window: 1 << 20, Ack: mode.ack})
			c := mustDial(t, t.Context(), options(r, "vm-1", port, nil))
			echoTransfer(t, c, n, 2)
			st := r.Stats()
			if st.BytesToBackend != n || st.BytesToClient != n {
				t.Errorf("relay moved %d/%d bytes, want %d each way", st.BytesToBackend, st.BytesToClient, n)
			}
			if st.MaxUnacked > 1<<20 {
				t.Errorf("relay saw %d bytes unacknowledged, above the 1 MiB window", st.MaxUnacked)
			}
			if st.ClientAcks == 0 {
				t.Error("client sent no ACK")
			}
		})
	}
}

func TestConn_stallsWithoutAcks(t *testing.T) {
	const window = 256 << 10
	port := startBackend(t, generate)
	r := newRelay(t, iaptest.RelayOptions{Window: window})
	opts := options(r, "vm-1", port, nil)
	opts.Ack.Disable = true
	c := mustDial(t, t.Context(), opts)
	<-r.Stalled()
	// Everything the relay would send fits in the window; read it all.
	if _, err := io.ReadFull(c, make([]byte, window)); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.BytesToClient != window || st.MaxUnacked > window || st.ClientAcks != 0 {
		t.Fatalf("relay stats %+v: want exactly %d bytes sent, no ACKs", st, window)
	}
	// Nothing more comes: the relay waits for an ACK.
	c.SetReadDeadline(time.Now())
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after the window = %d, %v; want a deadline error", n, err)
	}
}

func TestConn_acksKeepDataFlowing(t *testing.T) {
	const window = 256 << 10
	port := startBackend(t, generate)
	r := newRelay(t, iaptest.RelayOptions{Window: window})
	c := mustDial(t, t.Context(), options(r, "vm-1", port, nil))
	if _, err := io.CopyN(io.Discard, c, 20*window); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.MaxUnacked > window {
		t.Fatalf("relay saw %d unacknowledged bytes, window %d", st.MaxUnacked, window)
	}
}

func TestConn_reconnectAfterDrop(t *testing.T) {
	tests := []struct {
		name  string
		fault iaptest.Fault
	}{
		{"drop early", iaptest.Fault{Kind: iaptest.FaultDrop, AfterBytes: 100 << 10}},
		{"drop mid-stream", iaptest.Fault{Kind: iaptest.FaultDrop, AfterBytes: 6 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := startBackend(t, echo)
			r := newRelay(t, iaptest.RelayOptions{Ack: iaptest.AckDelayed})
			c := mustDial(t, t.Context(), options(r, "vm-1", port, nil))
			r.Inject(tt.fault)
			echoTransfer(t, c, 16<<20, 3)
			if st := r.Stats(); st.Reconnects != 1 || st.Connects != 1 {
				t.Errorf("relay stats %+v, want 1 connect and 1 reconnect", st)
			}
			if c.Reconnects() != 1 {
				t.Errorf("client reconnected %d times, want 1", c.Reconnects())
			}
			hs := r.Handshakes()
			last := hs[len(hs)-1]
			if last.Path != "/v4/reconnect" || last.Query.Get("sid") == "" || last.Query.Get("ack") == "" ||
				last.Query.Get("newWebsocket") != "True" || last.Query.Get("zone") != "test-zone-a" || last.Query.Has("instance") {
				t.Errorf("reconnect request %s?%s", last.Path, last.RawQuery)
			}
		})
	}
}

func TestConn_reauthenticates(t *testing.T) {
	port := startBackend(t, echo)
	r := newRelay(t, iaptest.RelayOptions{Tokens: []string{"tok-1"}})
	ts := &tokens{values: []string{"tok-1", "tok-2"}}
	c := mustDial(t, t.Context(), options(r, "vm-1", port, ts))
	r.SetTokens("tok-2") // the old token is no longer accepted
	r.Inject(iaptest.Fault{Kind: iaptest.FaultClose, Code: 4004, AfterBytes: 1 << 20})
	echoTransfer(t, c, 4<<20, 4)
	if got := ts.Calls(); got != 2 {
		t.Errorf("token source called %d times, want 2", got)
	}
	hs := r.Handshakes()
	if len(hs) != 2 || hs[1].Path != "/v4/reconnect" || hs[1].Header.Get("Authorization") != "Bearer tok-2" {
		t.Fatalf("handshakes %+v: want a reconnect with the new token", hs)
	}
}

func TestConn_reconnectRefused(t *testing.T) {
	// The relay forces a re-authentication but accepts no token the client has: the
	// reconnect gets 4033, which ends the tunnel with a typed error, no more retries.
	port := startBackend(t, echo)
	r := newRelay(t, iaptest.RelayOptions{})
	c := mustDial(t, t.Context(), options(r, "vm-1", port, nil))
	r.Inject(iaptest.Fault{Kind: iaptest.FaultClose, Code: 4004, AfterBytes: 1})
	r.SetTokens("someone-else") // reconnect is refused with 4033
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(c)
	ce := wantCloseCode(t, err, 4033)
	if ce.Retryable() {
		t.Error("4033 reported retryable")
	}
}

func TestDial_closeCodes(t *testing.T) {
	closedPort := startBackend(t, echo)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := newRelay(t, iaptest.RelayOptions{Denied: []string{"secret-vm"}, Instances: map[string]string{"vm-1": "127.0.0.1", "secret-vm": "127.0.0.1"}})
	tests := []struct {
		name     string
		instance string
		port     int
		zone     string
		token    string
		wantCode int
		wantText string
	}{
		{"not authorized", "secret-vm", closedPort, "", "", 4033, "roles/iap.tunnelResourceAccessor"},
		{"bad token", "vm-1", closedPort, "", "expired", 4033, "IAP-secured Tunnel User"},
		{"unknown instance", "vm-2", closedPort, "", "", 4047, "instance name"},
		{"wrong zone", "vm-1", closedPort, "other-zone", "", 4047, "zone"},
		{"backend down", "vm-1", deadPort, "", "", 4003, "35.235.240.0/20 to tcp/" + strconv.Itoa(deadPort)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ts *tokens
			if tt.token != "" {
				ts = &tokens{values: []string{tt.token}}
			}
			opts := options(r, tt.instance, tt.port, nil)
			if ts != nil {
				opts.TokenSource = ts
			}
			if tt.zone != "" {
				opts.Zone = tt.zone
			}
			c, err := iap.Dial(t.Context(), testLogger(t, 0), opts)
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			ce := wantCloseCode(t, err, tt.wantCode)
			if ce.Retryable() {
				t.Errorf("%d reported retryable", tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not say %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), "test-token") || strings.Contains(err.Error(), "expired") {
				t.Errorf("error %q leaks the token", err)
			}
		})
	}
}

func TestConn_ackBeyondSent(t *testing.T) {
	port := startBackend(t, echo)
	r := newRelay(t, iaptest.RelayOptions{})
	c := mustDial(t, t.Context(), options(r, "vm-1", port, nil))
	r.Inject(iaptest.Fault{Kind: iaptest.FaultBadAck, AfterBytes: 1})
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(c)
	if !errors.Is(err, iap.ErrProtocol) {
		t.Fatalf("read err = %v, want ErrProtocol", err)
	}
	if _, err := c.Write([]byte("more")); !errors.Is(err, iap.ErrProtocol) {
		t.Fatalf("write after the violation = %v, want ErrProtocol", err)
	}
}

func TestConn_Read_EOF(t *testing.T) {
	for _, code := range []int{1000, 4010} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			port := startBackend(t, func(c net.Conn) { c.Write([]byte("hello, world")) })
			r := newRelay(t, iaptest.RelayOptions{EOFCode: code})
			c := mustDial(t, t.Context(), options(r, "vm-1", port, nil))
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "hello, world" {
				t.Fatalf("ReadAll = %q, %v; want the greeting and io.EOF", got, err)
			}
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("Read after EOF = %v", err)
			}
		})
	}
}

func TestConn_Close(t *testing.T) {
	port := startBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	// The relay never acknowledges within the test, so the send buffer fills.
	r := newRelay(t, iaptest.RelayOptions{Ack: iaptest.AckDelayed, AckDelay: time.Hour})
	opts := options(r, "vm-1", port, nil)
	opts.SendBuffer = 64 << 10
	opts.CloseTimeout = 50 * time.Millisecond
	c := mustDial(t, t.Context(), opts)

	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readErr <- err
	}()
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 1<<20))
		writeErr <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, ch := range map[string]chan error{"Read": readErr, "Write": writeErr} {
		if err := <-ch; !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked %s returned %v, want net.ErrClosed", name, err)
		}
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestConn_SetWriteDeadline(t *testing.T) {
	port := startBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	r := newRelay(t, iaptest.RelayOptions{Ack: iaptest.AckDelayed, AckDelay: time.Hour})
	opts := options(r, "vm-1", port, nil)
	opts.SendBuffer = 64 << 10
	c := mustDial(t, t.Context(), opts)
	c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	n, err := c.Write(make([]byte, 1<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 64<<10 {
		t.Fatalf("Write = %d, %v; want the send buffer's %d bytes and a deadline error", n, err, 64<<10)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("deadline error %v is not a net.Error timeout", err)
	}
	c.SetWriteDeadline(time.Time{})
	// Cleared: a write that fits goes through again once space is free... the relay
	// never acknowledges here, so only check the deadline did not stick forever.
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write with a past deadline = %v", err)
	}
}

func TestConn_SetReadDeadline(t *testing.T) {
	port := startBackend(t, echo)
	r := newRelay(t, iaptest.RelayOptions{})
	c := mustDial(t, t.Context(), options(r, "vm-1", port, nil))
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v, want deadline error", err)
	}
	c.SetReadDeadline(time.Time{})
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte("ping")) {
		t.Fatalf("read after clearing the deadline = %q, %v", got, err)
	}
}
