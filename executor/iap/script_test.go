package iap_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/deployhook/deployhook/executor/iap"
)

// scriptRelay serves one scripted relay conversation per connection, for protocol
// corner cases the faithful fake never produces. It returns the endpoint.
func scriptRelay(t *testing.T, subprotocols []string, script func(ctx context.Context, ws *websocket.Conn)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, Subprotocols: subprotocols})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		script(r.Context(), ws)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/v4"
}

func scriptOptions(endpoint string) iap.Options {
	return iap.Options{
		Endpoint: endpoint, Project: "p", Zone: "z", Instance: "i",
		TokenSource:    &tokens{values: []string{"t"}},
		ConnectTimeout: 5 * time.Second,
		Reconnect:      iap.ReconnectPolicy{MaxAttempts: -1},
	}
}

func send(ctx context.Context, ws *websocket.Conn, msgs ...[]byte) {
	for _, m := range msgs {
		if err := ws.Write(ctx, websocket.MessageBinary, m); err != nil {
			return
		}
	}
}

func sid() []byte { return iap.AppendConnectSuccessSID(nil, "sid-1") }

// waitClose reads until the client goes away.
func waitClose(ctx context.Context, ws *websocket.Conn) {
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			return
		}
	}
}

func TestDial_protocolViolations(t *testing.T) {
	tests := []struct {
		name     string
		script   func(ctx context.Context, ws *websocket.Conn)
		wantText string
	}{
		{"data before sid", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, iap.AppendData(nil, []byte("x")))
			waitClose(ctx, ws)
		}, "before CONNECT_SUCCESS_SID"},
		{"ack before sid", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, iap.AppendAck(nil, 1))
			waitClose(ctx, ws)
		}, "before CONNECT_SUCCESS_SID"},
		{"reconnect ack instead of sid", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, iap.AppendReconnectSuccessAck(nil, 0))
			waitClose(ctx, ws)
		}, "before CONNECT_SUCCESS_SID"},
		{"truncated sid", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, []byte{0, 1, 0, 0, 0, 9, 'a'})
			waitClose(ctx, ws)
		}, "CONNECT_SUCCESS_SID length"},
		{"text message", func(ctx context.Context, ws *websocket.Conn) {
			_ = ws.Write(ctx, websocket.MessageText, []byte("hello"))
			waitClose(ctx, ws)
		}, "non-binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := scriptRelay(t, []string{iap.Subprotocol}, tt.script)
			c, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), scriptOptions(ep))
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			if !errors.Is(err, iap.ErrProtocol) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("err = %v, want ErrProtocol saying %q", err, tt.wantText)
			}
		})
	}
}

func TestDial_handshakeFailures(t *testing.T) {
	t.Run("no subprotocol echo", func(t *testing.T) {
		ep := scriptRelay(t, nil, func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid())
			waitClose(ctx, ws)
		})
		_, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), scriptOptions(ep))
		if err == nil || !strings.Contains(err.Error(), "did not echo the subprotocol") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("http 404", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		_, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), scriptOptions(srv.URL+"/v4"))
		var he *iap.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != 404 {
			t.Fatalf("err = %v, want *HandshakeError 404", err)
		}
	})
	t.Run("no sid in time", func(t *testing.T) {
		ep := scriptRelay(t, []string{iap.Subprotocol}, waitClose)
		opts := scriptOptions(ep)
		opts.ConnectTimeout = 50 * time.Millisecond
		_, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), opts)
		if err == nil || !strings.Contains(err.Error(), "no CONNECT_SUCCESS_SID") || !strings.Contains(err.Error(), "port 22") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("relay closes before sid", func(t *testing.T) {
		ep := scriptRelay(t, []string{iap.Subprotocol}, func(ctx context.Context, ws *websocket.Conn) {
			ws.Close(4047, "Failed to lookup instance")
		})
		_, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), scriptOptions(ep))
		wantCloseCode(t, err, 4047)
	})
}

func TestConn_Read_protocol(t *testing.T) {
	tests := []struct {
		name     string
		script   func(ctx context.Context, ws *websocket.Conn)
		want     string // bytes read before the end
		wantErr  error  // io.EOF or ErrProtocol
		wantText string
	}{
		{"unknown tags ignored", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, []byte{0x10, 0x00, 1, 2, 3}, sid(), []byte{0, 10, 0, 0, 0, 1, 0, 0, 0, 0}, iap.AppendData(nil, []byte("ok")))
			ws.Close(1000, "")
		}, "ok", io.EOF, ""},
		{"bytes after a frame discarded", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid(), append(iap.AppendData(nil, []byte("ab")), "zz"...))
			ws.Close(4010, "")
		}, "ab", io.EOF, ""},
		{"second sid", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid(), iap.AppendData(nil, []byte("a")), sid())
			waitClose(ctx, ws)
		}, "a", iap.ErrProtocol, "unexpected tag 1"},
		{"reconnect ack while connected", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid(), iap.AppendReconnectSuccessAck(nil, 0))
			waitClose(ctx, ws)
		}, "", iap.ErrProtocol, "unexpected tag 2"},
		{"truncated data", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid(), []byte{0, 4, 0, 0, 0, 10, 'a', 'b', 'c'})
			waitClose(ctx, ws)
		}, "", iap.ErrProtocol, "DATA length 10"},
		{"zero ack", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid(), iap.AppendAck(nil, 0))
			waitClose(ctx, ws)
		}, "", iap.ErrProtocol, "zero ACK"},
		{"ack beyond sent", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid(), iap.AppendAck(nil, 5))
			waitClose(ctx, ws)
		}, "", iap.ErrProtocol, "only 0 were sent"},
		{"text message", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid())
			_ = ws.Write(ctx, websocket.MessageText, []byte("hi"))
			waitClose(ctx, ws)
		}, "", iap.ErrProtocol, "non-binary"},
		{"final close code", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid(), iap.AppendData(nil, []byte("x")))
			ws.Close(4003, "failed to connect to backend")
		}, "x", nil, "35.235.240.0/20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := scriptRelay(t, []string{iap.Subprotocol}, tt.script)
			c, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), scriptOptions(ep))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var got []byte
			buf := make([]byte, 100)
			for {
				n, rerr := c.Read(buf)
				got = append(got, buf[:n]...)
				if rerr != nil {
					err = rerr
					break
				}
			}
			if string(got) != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %v, want it to say %q", err, tt.wantText)
			}
		})
	}
}

// readFrame reads one client message and decodes it.
func readFrame(ctx context.Context, t *testing.T, ws *websocket.Conn) iap.Frame {
	typ, msg, err := ws.Read(ctx)
	if err != nil {
		t.Errorf("read client frame: %v", err)
		return iap.Frame{}
	}
	if typ != websocket.MessageBinary {
		t.Errorf("client sent message type %v", typ)
	}
	f, err := iap.DecodeFrame(msg)
	if err != nil || f.Extra != 0 {
		t.Errorf("client frame % x: %v", msg, err)
	}
	return f
}

func TestConn_acks(t *testing.T) {
	t.Run("idle flush", func(t *testing.T) {
		got := make(chan uint64, 1)
		ep := scriptRelay(t, []string{iap.Subprotocol}, func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid(), iap.AppendData(nil, make([]byte, 1000)))
			got <- readFrame(ctx, t, ws).Ack
			waitClose(ctx, ws)
		})
		opts := scriptOptions(ep)
		opts.Ack.Idle = 10 * time.Millisecond
		c, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		if a := <-got; a != 1000 {
			t.Fatalf("idle ACK %d, want 1000", a)
		}
	})
	t.Run("threshold", func(t *testing.T) {
		got := make(chan uint64, 1)
		ep := scriptRelay(t, []string{iap.Subprotocol}, func(ctx context.Context, ws *websocket.Conn) {
			frame := iap.AppendData(nil, make([]byte, iap.MaxDataLen))
			send(ctx, ws, sid(), frame, frame, frame)
			got <- readFrame(ctx, t, ws).Ack
			waitClose(ctx, ws)
		})
		opts := scriptOptions(ep)
		opts.Ack.Idle = time.Second
		c, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.ReadFull(c, make([]byte, 3*iap.MaxDataLen)); err != nil {
			t.Fatal(err)
		}
		// More than 32 KiB unacknowledged after the third frame: ACK at once.
		if a := <-got; a != 3*iap.MaxDataLen {
			t.Fatalf("ACK %d, want %d", a, 3*iap.MaxDataLen)
		}
	})
}

func TestConn_Write_chunks(t *testing.T) {
	type result struct {
		lens  []int
		total int
	}
	done := make(chan result, 1)
	ep := scriptRelay(t, []string{iap.Subprotocol}, func(ctx context.Context, ws *websocket.Conn) {
		send(ctx, ws, sid())
		var r result
		for r.total < 40000 {
			f := readFrame(ctx, t, ws)
			if f.Tag != iap.TagData {
				continue
			}
			r.lens = append(r.lens, len(f.Data))
			r.total += len(f.Data)
			if len(f.Data) == 0 || len(f.Data) > iap.MaxDataLen {
				break
			}
		}
		var ack [10]byte
		binary.BigEndian.PutUint16(ack[:], iap.TagAck)
		binary.BigEndian.PutUint64(ack[2:], uint64(r.total))
		send(ctx, ws, ack[:])
		done <- r
		waitClose(ctx, ws)
	})
	c, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), scriptOptions(ep))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, err := c.Write(make([]byte, 40000)); n != 40000 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	r := <-done
	if r.total != 40000 {
		t.Fatalf("relay got %d bytes in frames %v", r.total, r.lens)
	}
	for _, l := range r.lens {
		if l == 0 || l > iap.MaxDataLen {
			t.Fatalf("frame lengths %v: want 1..%d each", r.lens, iap.MaxDataLen)
		}
	}
}

func TestConn_resendAfterPartialAck(t *testing.T) {
	data := make([]byte, 20000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	type result struct {
		lens   []int
		resent []byte
	}
	res := make(chan result, 1)
	var conns atomic.Int32
	ep := scriptRelay(t, []string{iap.Subprotocol}, func(ctx context.Context, ws *websocket.Conn) {
		if conns.Add(1) == 1 {
			send(ctx, ws, iap.AppendConnectSuccessSID(nil, "s1"))
			got := 0
			for got < len(data) {
				got += len(readFrame(ctx, t, ws).Data)
			}
			send(ctx, ws, iap.AppendAck(nil, 100)) // mid-chunk
			ws.CloseNow()                          // drop without close frame
			return
		}
		var r result
		send(ctx, ws, iap.AppendReconnectSuccessAck(nil, 200)) // the relay holds 200 bytes
		for len(r.resent) < len(data)-200 {
			f := readFrame(ctx, t, ws)
			r.lens = append(r.lens, len(f.Data))
			r.resent = append(r.resent, f.Data...)
		}
		send(ctx, ws, iap.AppendAck(nil, uint64(len(data))))
		res <- r
		ws.Close(1000, "")
	})
	opts := scriptOptions(ep)
	opts.Reconnect = iap.ReconnectPolicy{MaxAttempts: 2, Backoff: time.Millisecond}
	c, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read = %v, want io.EOF after the relay's close 1000", err)
	}
	r := <-res
	if string(r.resent) != string(data[200:]) {
		t.Fatalf("resent %d bytes in frames %v, want data[200:]", len(r.resent), r.lens)
	}
	if r.lens[0] != iap.MaxDataLen-200 {
		t.Errorf("first resent frame %d bytes, want the trimmed chunk (%d)", r.lens[0], iap.MaxDataLen-200)
	}
	if c.Reconnects() != 1 {
		t.Errorf("reconnects = %d", c.Reconnects())
	}
}

func TestConn_reconnectFailures(t *testing.T) {
	tests := []struct {
		name      string
		second    func(ctx context.Context, ws *websocket.Conn) // every reconnect attempt
		wantConns int32
		wantCode  int
		wantText  string
	}{
		{"sid unknown", func(ctx context.Context, ws *websocket.Conn) { ws.Close(4001, "sid unknown") }, 2, 4001, "reconnecting the tunnel failed"},
		{"sid in use", func(ctx context.Context, ws *websocket.Conn) { ws.Close(4002, "sid in use") }, 2, 4002, "reconnecting the tunnel failed"},
		{"failed to rewind", func(ctx context.Context, ws *websocket.Conn) { ws.Close(4074, "failed to rewind") }, 2, 4074, "reconnecting the tunnel failed"},
		{"connect answer to a reconnect", func(ctx context.Context, ws *websocket.Conn) {
			send(ctx, ws, sid())
			waitClose(ctx, ws)
		}, 2, 0, "before RECONNECT_SUCCESS_ACK"},
		{"gives up after max attempts", func(ctx context.Context, ws *websocket.Conn) { ws.CloseNow() }, 1 + 3, 1006, "gave up after 3 attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			ep := scriptRelay(t, []string{iap.Subprotocol}, func(ctx context.Context, ws *websocket.Conn) {
				if conns.Add(1) == 1 {
					send(ctx, ws, sid())
					ws.CloseNow()
					return
				}
				tt.second(ctx, ws)
			})
			opts := scriptOptions(ep)
			opts.Reconnect = iap.ReconnectPolicy{MaxAttempts: 3, Backoff: time.Millisecond}
			c, err := iap.Dial(t.Context(), testLogger(t, slog.LevelDebug), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Read(make([]byte, 1))
			if tt.wantCode != 0 {
				wantCloseCode(t, err, tt.wantCode)
			} else if !errors.Is(err, iap.ErrProtocol) {
				t.Errorf("err = %v, want ErrProtocol", err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %v, want it to say %q", err, tt.wantText)
			}
			if _, werr := c.Write([]byte("x")); werr == nil {
				t.Error("Write succeeded on a dead tunnel")
			}
			if got := conns.Load(); got != tt.wantConns {
				t.Errorf("relay saw %d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

func TestDial_TLSConfig(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, Subprotocols: []string{iap.Subprotocol}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		send(r.Context(), ws, sid())
		waitClose(r.Context(), ws)
	}))
	srv.Config.ErrorLog = log.New(t.Output(), "tls server: ", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ep := "wss" + strings.TrimPrefix(srv.URL, "https") + "/v4"

	// Without the test CA the certificate is refused.
	if _, err := iap.Dial(t.Context(), nil, scriptOptions(ep)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("dial without the CA: %v, want a certificate error", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	opts := scriptOptions(ep)
	opts.TLSConfig = &tls.Config{RootCAs: pool}
	c, err := iap.Dial(t.Context(), nil, opts)
	if err != nil {
		t.Fatalf("dial with TLSConfig: %v", err)
	}
	c.Close()
	opts.HTTPClient = http.DefaultClient
	if _, err := iap.Dial(t.Context(), nil, opts); err == nil {
		t.Fatal("TLSConfig and HTTPClient together accepted")
	}
}
