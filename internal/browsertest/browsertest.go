// Package browsertest starts a headless Chromium for tests and drives it
// with chromedp over the DevTools protocol.
//
// The browser is Debian's chromium package (/usr/bin/chromium), which .ci/run
// installs. When it is missing, New fails the test if the CI environment
// variable is set, and skips it with a message otherwise, as the other
// real-component helpers do.
//
// Chromium is started the way a closed network needs: no background
// networking, no component updates, no sync and no first-run work, so that it
// never tries to reach Google's hosts, and with a new empty profile per test.
// As root (CI runs as root) it needs --no-sandbox.
package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/deployhook/deployhook/internal/sshdtest"
)

// Browser is one headless Chromium process with one tab.
type Browser struct {
	// Ctx runs chromedp actions in the browser's first tab. It ends when the
	// test ends.
	Ctx     context.Context
	tb      testing.TB
	timeout time.Duration
}

// New starts Chromium for the test and closes it when the test ends. Every
// action run through Run is bounded by timeout (one minute when 0), so a page
// that never shows what the test waits for fails the test instead of hanging.
func New(tb testing.TB, timeout time.Duration) *Browser {
	tb.Helper()
	bin := sshdtest.Require(tb, "chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
	if timeout <= 0 {
		timeout = time.Minute
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(tb.Logf))
	// The first Run starts the browser; a start that fails is the test's failure.
	// chromedp: no timeout on the first Run, which would stop the browser.
	if err := chromedp.Do(ctx); err != nil {
		cancelTab()
		cancelAlloc()
		tb.Fatalf("start chromium: %v", err)
	}
	tb.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	return &Browser{Ctx: ctx, tb: tb, timeout: timeout}
}

// Do runs actions in the tab, in order, bounded by the browser's timeout,
// and fails the test with what it was doing when one fails.
func (b *Browser) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, b.timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.tb.Fatalf("browser: %s: %v", what, err)
	}
}

// Get runs one action that returns a value, as Do does.
func Get[T any](b *Browser, what string, a chromedp.Action[T]) T {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, b.timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.tb.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// Screenshot saves a PNG of the whole page to path (its directory is
// created), for the README's pictures.
func (b *Browser) Screenshot(path string) {
	b.tb.Helper()
	png := Get(b, "screenshot "+filepath.Base(path), chromedp.FullScreenshot(100)) // quality 100: PNG
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.tb.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.tb.Fatal(err)
	}
}
