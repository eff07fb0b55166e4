package server

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// drainOnRead is a request body that calls Drain when the server first reads
// it: the delivery's headers arrived before shutdown started, its body after.
type drainOnRead struct {
	srv *Server
	r   io.Reader
}

func (d *drainOnRead) Read(p []byte) (int, error) {
	d.srv.Drain()
	return d.r.Read(p)
}

// After Drain every delivery is answered 503 with the reason and queues
// nothing, also one whose body arrives after Drain (before issue 12 it was
// queued and answered 202, to run after the next start); /readyz is 503 and
// /healthz still 200.
func TestServer_Drain(t *testing.T) {
	const want = `{"error":"deployhook is shutting down; redeliver from the webhook's Recent Deliveries once it is back"}`
	tests := []struct {
		name      string
		drainFrom string // "headers": Drain before the request; "body": while its body is read
	}{
		{name: "delivery after drain", drainFrom: "headers"},
		{name: "body arrives after drain", drainFrom: "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			body := pushTo(t, "Codertocat/Hello-World", "main", shaA)
			req := delivery{event: "push", body: body}.request()
			if tt.drainFrom == "headers" {
				f.srv.Drain()
			} else {
				req.Body = io.NopCloser(&drainOnRead{srv: f.srv, r: bytes.NewReader(body)})
			}
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != want+"\n" {
				t.Errorf("delivery while draining: %d %q, want 503 %s", rec.Code, rec.Body, want)
			}
			if n := len(f.queue.calls()); n != 0 {
				t.Errorf("%d jobs queued while draining, want none", n)
			}
			rec = serve(t, f.h, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != `{"error":"not ready: shutting down"}`+"\n" {
				t.Errorf("readyz while draining: %d %q", rec.Code, rec.Body)
			}
			rec = serve(t, f.h, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			if rec.Code != http.StatusOK || rec.Body.String() != "ok" {
				t.Errorf("healthz while draining: %d %q, want 200 ok", rec.Code, rec.Body)
			}
		})
	}
}

// Drain before Serve does not stop Serve from serving (main drains on a
// signal that may come at any time): the listener still answers, with 503.
func TestServer_DrainThenServe(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.Drain()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz: %d, want 503", resp.StatusCode)
	}
	if err := f.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v, want nil after Shutdown", err)
	}
}
