package iap_test

import (
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
)

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConn_smallFrames is issue 8, item 10: the client kept a 16 KiB buffer per
// DATA frame and counted only payload against its receive buffer, so a relay
// sending 1-byte frames within its window made it hold 16 KiB per byte (here
// 16 K frames: 256 MiB). It failed before; now small frames share buffers and
// memory, not payload, is what the receive buffer bounds.
func TestConn_smallFrames(t *testing.T) {
	const (
		recv   = 8 << 10
		window = 8 << 10
	)
	port := startBackend(t, generate)
	r := newRelay(t, iaptest.RelayOptions{FrameSize: 1, Window: window})
	opts := options(r, "vm-1", port, nil)
	opts.RecvBuffer = recv
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := mustDial(t, t.Context(), opts)

	// Nobody reads. The relay sends a window's worth before it needs an ACK;
	// the client withholds ACKs once it holds RecvBuffer of memory, so the
	// relay stays stalled there. Wait until the client has that window.
	waitFor(t, "the client to receive the relay's window", func() bool {
		return c.Received() >= window
	})
	runtime.GC()
	runtime.ReadMemStats(&after)
	sent := r.Stats().BytesToClient
	mem := c.BufferedMem()
	t.Logf("relay sent %d one-byte frames; the client holds %d bytes of buffers", sent, mem)
	if limit := 2*(recv+window) + 16390; mem > limit {
		t.Errorf("the client holds %d bytes of buffers for %d bytes of payload, want at most %d", mem, sent, limit)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Errorf("the heap grew by %d MiB for %d bytes received, want at most 16 MiB", grew>>20, sent)
	}

	// Everything arrives intact and in order, however it was packed.
	got := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if b != byte(i) {
			t.Fatalf("byte %d = %d, want %d", i, b, byte(i))
		}
	}
}

// TestConn_echoOddFrames runs an echo through a relay that cuts its DATA into
// odd sizes, so received frames are packed into shared buffers while Read
// drains them.
func TestConn_echoOddFrames(t *testing.T) {
	for _, size := range []int{1, 7, 1000, 16383} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			port := startBackend(t, echo)
			r := newRelay(t, iaptest.RelayOptions{FrameSize: size})
			opts := options(r, "vm-1", port, nil)
			opts.RecvBuffer = 32 << 10
			c := mustDial(t, t.Context(), opts)
			n := int64(256 << 10)
			if size == 1 {
				n = 32 << 10
			}
			echoTransfer(t, c, n, uint64(size))
		})
	}
}

// readUntilError reads c until it fails or a generous deadline passes.
func readUntilError(t *testing.T, c *iap.Conn, each func()) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
		if each != nil {
			each()
		}
	}
}

// TestConn_oversizedMessage is issue 8, item 10: a websocket message larger
// than any frame was taken for a dropped connection (or, below 1 MiB,
// silently cut), and the client reconnected for more. It failed before; now
// it is a protocol error that ends the tunnel, without a reconnect.
func TestConn_oversizedMessage(t *testing.T) {
	for _, size := range []int{16390 + 1, 64 << 10, 2 << 20} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			port := startBackend(t, generate)
			r := newRelay(t, iaptest.RelayOptions{})
			r.Inject(iaptest.Fault{Kind: iaptest.FaultOversized, Size: size, AfterBytes: 1 << 10})
			c := mustDial(t, t.Context(), options(r, "vm-1", port, nil))
			err := readUntilError(t, c, nil)
			if !errors.Is(err, iap.ErrProtocol) || !strings.Contains(err.Error(), "message longer than 16390 bytes") {
				t.Fatalf("Read = %v, want ErrProtocol for a message longer than a frame", err)
			}
			if st := r.Stats(); st.Reconnects != 0 || len(r.Handshakes()) != 1 {
				t.Fatalf("relay saw %d reconnects and %d handshakes, want 0 and 1", st.Reconnects, len(r.Handshakes()))
			}
		})
	}
}

// TestConn_reconnectBudget is issue 8, item 10: a successful reconnect reset
// the backoff and the attempt count, so a relay that drops every websocket
// got 1,915 reconnects in 3 s. It failed before; now the session's budget
// ends the tunnel with ErrReconnectBudget.
func TestConn_reconnectBudget(t *testing.T) {
	tests := []struct {
		name      string
		perMinute int
		total     int
		want      string
		wantCount int
	}{
		{name: "per minute", perMinute: 4, want: "4 reconnects within a minute, at most 4: the relay keeps dropping the tunnel", wantCount: 4},
		{name: "total", perMinute: 100, total: 3, want: "3 reconnects in this tunnel's life, at most 3", wantCount: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := startBackend(t, generate)
			r := newRelay(t, iaptest.RelayOptions{})
			r.Inject(iaptest.Fault{Kind: iaptest.FaultDrop, AfterBytes: 64 << 10, Repeat: true})
			opts := options(r, "vm-1", port, nil)
			opts.Reconnect.PerMinute, opts.Reconnect.Total = tt.perMinute, tt.total
			c := mustDial(t, t.Context(), opts)
			err := readUntilError(t, c, func() {
				if n := r.Stats().Reconnects; n > tt.wantCount {
					t.Fatalf("the relay saw %d reconnects, past the budget of %d", n, tt.wantCount)
				}
			})
			if !errors.Is(err, iap.ErrReconnectBudget) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Read = %v, want ErrReconnectBudget saying %q", err, tt.want)
			}
			if n := r.Stats().Reconnects; n != tt.wantCount {
				t.Errorf("the relay saw %d reconnects, want %d", n, tt.wantCount)
			}
			if n := len(r.Handshakes()); n != 1+tt.wantCount {
				t.Errorf("the relay saw %d handshakes, want %d", n, 1+tt.wantCount)
			}
			if got := c.Reconnects(); got != tt.wantCount {
				t.Errorf("Reconnects() = %d, want %d", got, tt.wantCount)
			}
		})
	}
}
