package metrics_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
	"github.com/deployhook/deployhook/internal/metrics"
)

// echoBackend is a TCP echo server on 127.0.0.1; it returns its port.
func echoBackend(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// roundTrip writes n bytes through c and reads them back.
func roundTrip(t *testing.T, c net.Conn, n int) error {
	t.Helper()
	c.SetDeadline(time.Now().Add(time.Minute))
	msg := bytes.Repeat([]byte("x"), n)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(msg); errc <- err }()
	_, err := io.ReadFull(c, make([]byte, n))
	if werr := <-errc; err == nil {
		err = werr
	}
	return err
}

// TestMetrics_IAP opens tunnels through the fake relay with the metrics'
// observer of target web: a tunnel that reconnects once after a drop, a dial
// to an instance the relay does not know, and a tunnel whose reconnect is
// refused; the scrape counts each event once.
func TestMetrics_IAP(t *testing.T) {
	m := mustNew(t, metrics.Options{Targets: []executor.Target{web}})
	port := echoBackend(t)
	r := iaptest.NewRelay(t, iaptest.RelayOptions{Instances: map[string]string{"vm-1": "127.0.0.1"}})
	opts := func(instance string) iap.Options {
		return iap.Options{
			Endpoint: r.URL(), Project: r.Project(), Zone: r.Zone(), Instance: instance, Port: port,
			TokenSource:    oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "test-token"}),
			ConnectTimeout: 20 * time.Second,
			Reconnect:      iap.ReconnectPolicy{MaxAttempts: 1, Backoff: 10 * time.Millisecond},
			Observer:       m.IAP("web"),
		}
	}
	lg := testLogger(t)

	// Connects, is dropped, reconnects.
	c, err := iap.Dial(t.Context(), lg, opts("vm-1"))
	if err != nil {
		t.Fatal(err)
	}
	r.Inject(iaptest.Fault{Kind: iaptest.FaultDrop, AfterBytes: 32 << 10})
	if err := roundTrip(t, c, 256<<10); err != nil {
		t.Fatalf("echo through a dropped tunnel: %v", err)
	}
	if c.Reconnects() != 1 {
		t.Fatalf("tunnel reconnected %d times, want 1", c.Reconnects())
	}
	c.Close()

	// An instance the relay cannot find.
	if c, err := iap.Dial(t.Context(), lg, opts("vm-9")); err == nil {
		c.Close()
		t.Fatal("dial to an unknown instance succeeded")
	}

	// Connects, is dropped, and the relay refuses the reconnect's token.
	c, err = iap.Dial(t.Context(), lg, opts("vm-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.SetTokens("another-token")
	r.Inject(iaptest.Fault{Kind: iaptest.FaultDrop, AfterBytes: 1})
	if err := roundTrip(t, c, 64<<10); err == nil {
		t.Fatal("echo through a tunnel that could not reconnect succeeded")
	}

	want(t, samples(t, scrape(t, m)), map[string]float64{
		`deployhook_iap_tunnel_events_total{event="connect",target="web"}`:          2,
		`deployhook_iap_tunnel_events_total{event="connect_failed",target="web"}`:   1,
		`deployhook_iap_tunnel_events_total{event="reconnect",target="web"}`:        1,
		`deployhook_iap_tunnel_events_total{event="reconnect_failed",target="web"}`: 1,
	})
}
