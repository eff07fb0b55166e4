package browsertest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestClickAndScreenshot loads a page from a local server, presses its button
// (the script changes the text), and saves a PNG of it.
func TestClickAndScreenshot(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>t</title><p id="out">before</p>
<button id="b" onclick="document.getElementById('out').textContent='pressed'">press</button>`))
	}))
	defer srv.Close()
	b := New(t, 0)
	b.Do("load and press", chromedp.Navigate(srv.URL), chromedp.Click(chromedp.CSS("#b")))
	text := Get(b, "read the text", chromedp.Text(chromedp.CSS("#out")))
	if text != "pressed" {
		t.Fatalf("text after the click = %q, want pressed", text)
	}
	path := filepath.Join(t.TempDir(), "shot.png")
	b.Screenshot(path)
	png, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG: starts % x", png[:min(8, len(png))])
	}
}
