package gce

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/internal/safehttp"
)

// TestClient_Instance_bodyCap is issue 8, item 10: a 256 MiB streamed answer
// from the Compute API was read whole (1 GiB of heap); it failed before the
// cap. Now the call fails at MaxBody with a clear error.
func TestClient_Instance_bodyCap(t *testing.T) {
	chunk := []byte(strings.Repeat("a", 64<<10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		io.WriteString(w, `{"kind":"compute#instance","id":"42","description":"`)
		for range (256 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	c, err := New(t.Context(), testLogger(t), Options{Endpoint: srv.URL,
		ClientOptions: []option.ClientOption{option.WithoutAuthentication()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = c.Instance(t.Context(), project, zone, instance)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, safehttp.ErrBodyTooLarge) {
		t.Fatalf("Instance = %v, want an error wrapping ErrBodyTooLarge", err)
	}
	if !strings.Contains(err.Error(), "answered more than 4 MiB") {
		t.Errorf("error %q does not say the cap", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("Instance allocated %d MiB, want at most 64 MiB for a 4 MiB cap", grew>>20)
	}
}

// TestClient_redirectElsewhere: a redirect from the Compute endpoint to
// another host is not followed, so the access token never reaches it.
func TestClient_redirectElsewhere(t *testing.T) {
	var stolen atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		t.Errorf("the other host got %s %s with Authorization %q", r.Method, r.URL, r.Header.Get("Authorization"))
	}))
	t.Cleanup(other.Close)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(api.Close)
	c, err := New(t.Context(), testLogger(t), Options{Endpoint: api.URL,
		ClientOptions: []option.ClientOption{option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.test-token"}))}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Instance(t.Context(), project, zone, instance); !errors.Is(err, safehttp.ErrCrossOrigin) {
		t.Fatalf("Instance = %v, want an error wrapping ErrCrossOrigin", err)
	}
	if n := stolen.Load(); n != 0 {
		t.Fatalf("the other host got %d requests", n)
	}
}
