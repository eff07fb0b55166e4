package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/deployhook/deployhook/internal/browsertest"
	"github.com/deployhook/deployhook/server/auth/authtest"
)

// consoleCommit is a commit of acme/app that the console's GitHub knows.
type consoleCommit struct {
	sha, message, login, name string
}

// consoleGitHub is the GitHub of the console's end-to-end test, at one URL
// as github.com is: the people's side (the OAuth web flow and the API calls
// made with a person's token) is authtest's fake, which it forwards to; the
// calls made with deployhook's own token (testToken) are the reporting
// side, which it answers itself, strictly: commit statuses (exact fields),
// and the commits the history page asks about. Anything else fails the test.
type consoleGitHub struct {
	*authtest.GitHub
	// URL is github.web_url; URL+authtest.APIPath is github.api_url.
	URL string

	t       *testing.T
	commits []consoleCommit // oldest first

	mu       sync.Mutex
	statuses []status
}

var (
	consoleCommitPath  = regexp.MustCompile(`^/repos/acme/app/commits/([0-9a-f]{40})$`)
	consoleComparePath = regexp.MustCompile(`^/repos/acme/app/compare/([0-9a-f]{40})\.\.\.([0-9a-f]{40}|main)$`)
)

// index returns the place of sha (or main, the newest) in acme/app's
// history, oldest first, or -1.
func (g *consoleGitHub) index(sha string) int {
	if sha == "main" {
		return len(g.commits) - 1
	}
	for i, c := range g.commits {
		if c.sha == sha {
			return i
		}
	}
	return -1
}

// newConsoleGitHub starts the console's GitHub in front of a new authtest
// fake that knows commits (oldest first).
func newConsoleGitHub(t *testing.T, commits ...consoleCommit) *consoleGitHub {
	t.Helper()
	g := &consoleGitHub{GitHub: authtest.NewGitHub(t), t: t, commits: commits}
	people, err := url.Parse(g.GitHub.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(people) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+testToken {
			g.reporting(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// reporting answers a call made with deployhook's token.
func (g *consoleGitHub) reporting(w http.ResponseWriter, r *http.Request) {
	path, api := strings.CutPrefix(r.URL.Path, authtest.APIPath)
	if api && r.Method == http.MethodGet {
		if m := consoleCommitPath.FindStringSubmatch(path); m != nil {
			for _, c := range g.commits {
				if c.sha == m[1] {
					json.NewEncoder(w).Encode(map[string]any{
						"sha":    c.sha,
						"commit": map[string]any{"message": c.message + "\n\nMore words.", "author": map[string]string{"name": c.name, "date": "2026-05-30T09:12:00Z"}},
						"author": map[string]string{"login": c.login},
					})
					return
				}
			}
			http.Error(w, `{"message":"No commit found for SHA"}`, http.StatusUnprocessableEntity)
			return
		}
		if m := consoleComparePath.FindStringSubmatch(path); m != nil {
			base, head := g.index(m[1]), g.index(m[2])
			status := "ahead"
			switch {
			case base < 0 || head < 0:
				http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
				return
			case base == head:
				status = "identical"
			case base > head:
				status = "behind"
			}
			fmt.Fprintf(w, `{"status": %q, "ahead_by": 0, "behind_by": 0, "total_commits": 0}`, status)
			return
		}
	}
	if m := statusPath.FindStringSubmatch(path); api && r.Method == http.MethodPost && m != nil && m[1] == "acme" && m[2] == "app" {
		body, _ := io.ReadAll(r.Body)
		var fields map[string]any
		if err := json.Unmarshal(body, &fields); err != nil || len(fields) != 4 {
			g.t.Errorf("status body %s: want state, target_url, description and context", body)
		}
		var s status
		_ = json.Unmarshal(body, &s)
		s.SHA = m[3]
		g.mu.Lock()
		g.statuses = append(g.statuses, s)
		n := len(g.statuses)
		g.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %d, "state": %q, "context": %q}`, n, s.State, s.Context)
		return
	}
	g.t.Errorf("console GitHub: unexpected %s %s with deployhook's token", r.Method, r.URL.Path)
	http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
}

// final returns the last status of sha, if it is final.
func (g *consoleGitHub) final(sha string) (status, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.statuses) - 1; i >= 0; i-- {
		if s := g.statuses[i]; s.SHA == sha {
			return s, s.State != "pending"
		}
	}
	return status{}, false
}

// frontDoor is a reverse proxy at a URL known before deployhook starts, as
// a load balancer is: public_url and the OAuth callback must name it, and
// deployhook serve picks its port when it starts. It keeps the Host header.
type frontDoor struct {
	URL    string
	target atomic.Pointer[url.URL]
}

func newFrontDoor(t *testing.T) *frontDoor {
	t.Helper()
	f := &frontDoor{}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(f.target.Load())
		r.Out.Host = r.In.Host
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.target.Load() == nil {
			http.Error(w, "deployhook has not started", http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// to sends the door's requests to rawURL.
func (f *frontDoor) to(t *testing.T, rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	f.target.Store(u)
}

// screenshotsDir is where the README's pictures of the console live.
const screenshotsDir = "docs/screenshots"

// screenshot saves the page as name (a PNG) in dir and, when
// DEPLOYHOOK_UPDATE_SCREENSHOTS=1 (make screenshots), in screenshotsDir.
func screenshot(t *testing.T, b *browsertest.Browser, dir, name string) {
	t.Helper()
	path := filepath.Join(dir, name)
	b.Screenshot(path)
	if os.Getenv("DEPLOYHOOK_UPDATE_SCREENSHOTS") != "1" {
		return
	}
	png, err := os.ReadFile(path)
	if err == nil {
		err = os.MkdirAll(screenshotsDir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(screenshotsDir, name), png, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// waitPage waits until expr is true in the browser's tab, across
// navigations (which end a chromedp Poll), failing the test after a minute.
func waitPage(t *testing.T, b *browsertest.Browser, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			loc, _ := chromedp.Run(b.Ctx, chromedp.Location())
			t.Fatalf("browser: %s: not shown within a minute at %s (last error: %v)", what, loc, err)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval, not a synchronisation
	}
}
