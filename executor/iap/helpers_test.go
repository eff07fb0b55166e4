package iap_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
	"golang.org/x/oauth2"
)

func testLogger(tb testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: level}))
}

// tokens is a token source returning its tokens in turn (the last one repeatedly) and
// counting calls.
type tokens struct {
	mu     sync.Mutex
	values []string
	calls  int
}

func (s *tokens) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.values[min(s.calls, len(s.values)-1)]
	s.calls++
	return &oauth2.Token{AccessToken: v, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}, nil
}

func (s *tokens) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// startBackend serves handle on 127.0.0.1 and returns the port; the listener and every
// connection are closed and their goroutines waited for when the test ends.
func startBackend(tb testing.TB, handle func(net.Conn)) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

// generate writes a pattern until the connection fails.
func generate(c net.Conn) {
	buf := make([]byte, 32<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

func newRelay(tb testing.TB, opts iaptest.RelayOptions) *iaptest.Relay {
	if opts.Instances == nil {
		opts.Instances = map[string]string{"vm-1": "127.0.0.1"}
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(tb, slog.LevelInfo)
	}
	return iaptest.NewRelay(tb, opts)
}

func options(r *iaptest.Relay, instance string, port int, ts oauth2.TokenSource) iap.Options {
	if ts == nil {
		ts = &tokens{values: []string{"test-token"}}
	}
	return iap.Options{
		Endpoint:       r.URL(),
		Project:        r.Project(),
		Zone:           r.Zone(),
		Instance:       instance,
		Port:           port,
		TokenSource:    ts,
		ConnectTimeout: 20 * time.Second,
		Reconnect:      iap.ReconnectPolicy{Backoff: 10 * time.Millisecond},
	}
}

func mustDial(tb testing.TB, ctx context.Context, opts iap.Options) *iap.Conn {
	tb.Helper()
	c, err := iap.Dial(ctx, testLogger(tb, slog.LevelInfo), opts)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// echoTransfer writes n pseudo-random bytes through c to an echo backend while reading
// them back, and fails unless the SHA-256 of what came back equals what was sent.
func echoTransfer(t *testing.T, c net.Conn, n int64, seed uint64) {
	t.Helper()
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		src := io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), n)
		_, err := io.CopyBuffer(io.MultiWriter(c, sent), src, make([]byte, 40000))
		werr <- err
	}()
	got := sha256.New()
	m, rerr := io.CopyN(got, c, n)
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if rerr != nil {
		t.Fatalf("read after %d of %d bytes: %v", m, n, rerr)
	}
	if g, w := got.Sum(nil), sent.Sum(nil); string(g) != string(w) {
		t.Fatalf("echoed bytes differ: sha256 %x, sent %x", g, w)
	}
}

func wantCloseCode(t *testing.T, err error, code int) *iap.CloseError {
	t.Helper()
	var ce *iap.CloseError
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("err = %v, want *CloseError with code %d", err, code)
	}
	return ce
}
