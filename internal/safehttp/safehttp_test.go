package safehttp

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// stream serves n bytes of 'a', in 64 KiB writes of one buffer (the server
// allocates nothing per write), without a Content-Length unless announce.
func stream(n int64, announce bool) http.HandlerFunc {
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	return func(w http.ResponseWriter, r *http.Request) {
		if announce {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		}
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	}
}

func TestLimitBody(t *testing.T) {
	const max = 1 << 20
	tests := []struct {
		name     string
		n        int64
		announce bool
		wantErr  bool
	}{
		{name: "small", n: 1000},
		{name: "exactly the cap", n: max},
		{name: "exactly the cap, announced", n: max, announce: true},
		{name: "one byte more", n: max + 1, wantErr: true},
		{name: "streamed, far more", n: 64 << 20, wantErr: true},
		{name: "announced, far more", n: 64 << 20, announce: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(stream(tt.n, tt.announce))
			t.Cleanup(srv.Close)
			hc := &http.Client{Transport: LimitBody(http.DefaultTransport, max)}
			resp, err := hc.Get(srv.URL + "/answer?token=SECRET")
			var got int64
			if err == nil {
				got, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if !tt.wantErr {
				if err != nil || got != tt.n {
					t.Fatalf("read %d bytes, %v; want %d, nil", got, err, tt.n)
				}
				return
			}
			if !errors.Is(err, ErrBodyTooLarge) {
				t.Fatalf("read %d bytes, %v; want ErrBodyTooLarge", got, err)
			}
			if got > max {
				t.Errorf("read %d bytes, more than the cap %d", got, max)
			}
			msg := err.Error()
			if !strings.Contains(msg, "GET "+strings.TrimPrefix(srv.URL, "http://")+"/answer answered more than 1 MiB") {
				t.Errorf("error %q does not name the request and the cap", msg)
			}
			if strings.Contains(msg, "SECRET") {
				t.Errorf("error %q carries the query", msg)
			}
		})
	}
}

// TestLimitBody_heap streams 256 MiB (issue 8, item 10: an unlimited read took
// the heap to 1 GiB) and checks the bytes allocated while reading it stay near
// the cap.
func TestLimitBody_heap(t *testing.T) {
	const max = 8 << 20
	srv := httptest.NewServer(stream(256<<20, false))
	t.Cleanup(srv.Close)
	hc := &http.Client{Transport: LimitBody(http.DefaultTransport, max)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body) // what a careless caller does
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrBodyTooLarge) || len(b) != max {
		t.Fatalf("ReadAll = %d bytes, %v; want %d bytes and ErrBodyTooLarge", len(b), err, max)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("reading allocated %d MiB, want at most 64 MiB for an 8 MiB cap", grew>>20)
	}
}

func TestCheckRedirect(t *testing.T) {
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name, from, to string
		wantErr        string // empty: followed
	}{
		{name: "same origin", from: "https://api.github.com/a", to: "https://api.github.com/b"},
		{name: "default port spelled out", from: "https://api.github.com/a", to: "https://API.github.com:443/b"},
		{name: "other host", from: "https://api.github.com/a", to: "https://evil.example/b", wantErr: "redirected to https://evil.example"},
		{name: "other port", from: "http://127.0.0.1:8080/a", to: "http://127.0.0.1:8081/b", wantErr: "redirected to http://127.0.0.1:8081"},
		{name: "https to http", from: "https://ghe.example.com/api/v3/x", to: "http://ghe.example.com/api/v3/x", wantErr: "redirected to http://ghe.example.com"},
		{name: "subdomain", from: "https://example.com/a", to: "https://api.example.com/a", wantErr: "redirected to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			via := []*http.Request{{Method: "GET", URL: mustURL(tt.from)}}
			err := CheckRedirect(&http.Request{Method: "GET", URL: mustURL(tt.to)}, via)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckRedirect = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrCrossOrigin) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckRedirect = %v, want ErrCrossOrigin saying %q", err, tt.wantErr)
			}
		})
	}
	t.Run("too many", func(t *testing.T) {
		u := mustURL("https://api.github.com/")
		via := make([]*http.Request, maxRedirects)
		for i := range via {
			via[i] = &http.Request{URL: u}
		}
		if err := CheckRedirect(&http.Request{URL: u}, via); err == nil {
			t.Fatal("CheckRedirect followed an 11th redirect")
		}
	})
}

// TestPinOrigin sends a credentialed request that the server redirects to
// another port with a 307: neither the redirect nor a transport-level follow
// may reach the second server.
func TestPinOrigin(t *testing.T) {
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(other.Close)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(api.Close)
	origin, _ := url.Parse(api.URL)
	rt := PinOrigin(http.DefaultTransport, origin)

	// Without a CheckRedirect policy: the pin alone refuses the hop.
	hc := &http.Client{Transport: rt}
	_, err := hc.Post(api.URL+"/x", "application/json", strings.NewReader(`{"secret":1}`))
	if !errors.Is(err, ErrCrossOrigin) {
		t.Fatalf("Post = %v, want ErrCrossOrigin", err)
	}
	// A direct request elsewhere (what go-github's own redirect following does).
	req, _ := http.NewRequest("GET", other.URL+"/direct", nil)
	if _, err := rt.RoundTrip(req); !errors.Is(err, ErrCrossOrigin) {
		t.Fatalf("RoundTrip = %v, want ErrCrossOrigin", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the other server got %d requests, want 0", n)
	}
	// The origin itself is reachable.
	resp, err := rt.RoundTrip(mustReq(t, api.URL+"/x"))
	if err != nil || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("RoundTrip to the origin = %v, %v; want the 307", resp, err)
	}
	resp.Body.Close()
}

func mustReq(t *testing.T, u string) *http.Request {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestNoRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a" {
			http.Redirect(w, r, "/b", http.StatusFound)
			return
		}
		t.Errorf("followed the redirect to %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	hc := &http.Client{CheckRedirect: NoRedirects}
	resp, err := hc.Get(srv.URL + "/a")
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("Get = %v, %v; want the 302 itself", resp, err)
	}
	resp.Body.Close()
}
