package oslogin

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/internal/safehttp"
)

// TestClient_Key_bodyCap is issue 8, item 10 for OS Login: a 256 MiB streamed
// login profile was read whole; it failed before the cap.
func TestClient_Key_bodyCap(t *testing.T) {
	chunk := []byte(strings.Repeat("a", 64<<10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		io.WriteString(w, `{"loginProfile": {"name": "`)
		for range (256 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := c.Key(t.Context(), account, project, time.Minute)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, safehttp.ErrBodyTooLarge) {
		t.Fatalf("Key = %v, want an error wrapping ErrBodyTooLarge", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("Key allocated %d MiB, want at most 64 MiB for a 4 MiB cap", grew>>20)
	}
}

func TestNew_cleartextEndpoint(t *testing.T) {
	_, err := New(t.Context(), slog.New(slog.DiscardHandler), Options{Endpoint: "http://oslogin.example.com"})
	if err == nil || !strings.Contains(err.Error(), `DEPLOYHOOK_OSLOGIN_URL "http://oslogin.example.com" sends credentials in cleartext`) {
		t.Fatalf("New = %v, want the cleartext refusal", err)
	}
}
