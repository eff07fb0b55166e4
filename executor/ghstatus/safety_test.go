package ghstatus

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/safehttp"
)

// thief is a second server, on another port, that records what reaches it.
type thief struct {
	srv *httptest.Server

	mu    sync.Mutex
	hits  int
	auth  []string
	bodys []string
}

func newThief(t *testing.T) *thief {
	th := &thief{}
	th.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		th.mu.Lock()
		th.hits++
		th.auth = append(th.auth, r.Header.Get("Authorization"))
		th.bodys = append(th.bodys, string(b))
		th.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id":1,"token":"ghs_fromTheThief","expires_at":"2030-01-01T00:00:00Z"}`))
	}))
	t.Cleanup(th.srv.Close)
	return th
}

// assertUntouched fails if anything reached the thief.
func (th *thief) assertUntouched(t *testing.T) {
	t.Helper()
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.hits != 0 {
		t.Errorf("the other host got %d requests (Authorization %q, bodies %q), want none", th.hits, th.auth, th.bodys)
	}
}

// redirector answers every request with status to target+path.
func redirector(t *testing.T, status int, target string, tls bool) *httptest.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, status)
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv
}

// TestClient_redirects is issue 8, item 10: the token client followed a 307 to
// another host and re-sent Authorization and the body there; it failed before
// the client stayed on its origin.
func TestClient_redirects(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			th := newThief(t)
			api := redirector(t, status, th.srv.URL, false)
			lg, lb := testLogger(t)
			c, err := New(lg, Options{BaseURL: api.URL + "/", TokenSource: StaticToken(testToken), MaxTries: 1})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Report(t.Context(), report(executor.StateSuccess))
			if !errors.Is(err, safehttp.ErrCrossOrigin) {
				t.Fatalf("Report = %v, want an error wrapping ErrCrossOrigin", err)
			}
			th.assertUntouched(t)
			assertNoSecrets(t, lb, []error{err}, testToken)
		})
	}
}

// TestClient_redirectToHTTP: a GitHub Enterprise Server on https that
// redirects to http on the same host is not followed.
func TestClient_redirectToHTTP(t *testing.T) {
	th := newThief(t)
	api := redirector(t, http.StatusTemporaryRedirect, th.srv.URL, true) // https → http
	lg, _ := testLogger(t)
	c, err := New(lg, Options{BaseURL: api.URL + "/api/v3/", TokenSource: StaticToken(testToken), HTTPClient: api.Client(), MaxTries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Report(t.Context(), report(executor.StateSuccess)); !errors.Is(err, safehttp.ErrCrossOrigin) {
		t.Fatalf("Report = %v, want an error wrapping ErrCrossOrigin", err)
	}
	th.assertUntouched(t)
}

// TestClient_redirectSameOrigin: a redirect within the API's origin is still
// followed, with the token.
func TestClient_redirectSameOrigin(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	moved := statusCall("success", desc)
	moved.status = http.StatusTemporaryRedirect
	moved.resp = nil
	f := newFake(t, bearer, moved, statusCall("success", desc))
	mux := http.NewServeMux()
	mux.HandleFunc("/old/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, strings.TrimPrefix(r.URL.Path, "/old"), http.StatusTemporaryRedirect)
	})
	mux.Handle("/", f)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.calls = f.calls[1:] // the fake sees only the request after the redirect
	c, _ := newTestClient(t, srv.URL+"/old/", nil, false)
	if _, err := c.Report(t.Context(), report(executor.StateSuccess)); err != nil {
		t.Fatalf("Report through a same-origin redirect: %v", err)
	}
}

// TestNewAppTokenSource_redirect is issue 8, item 10 for the GitHub App: the
// JWT exchange answered with a 307 to another host re-sent the JWT there; it
// failed before.
func TestNewAppTokenSource_redirect(t *testing.T) {
	_, keyPEM := appKey(t)
	th := newThief(t)
	api := redirector(t, http.StatusTemporaryRedirect, th.srv.URL, false)
	src, err := NewAppTokenSource(AppOptions{AppID: appID, InstallationID: installationID, PrivateKeyPEM: keyPEM, BaseURL: api.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token()
	if !errors.Is(err, safehttp.ErrCrossOrigin) {
		t.Fatalf("Token = %v, %v; want an error wrapping ErrCrossOrigin", tok, err)
	}
	th.assertUntouched(t)
}

func TestNew_cleartextBaseURL(t *testing.T) {
	lg, _ := testLogger(t)
	_, err := New(lg, Options{BaseURL: "http://ghe.example.com/api/v3/", TokenSource: StaticToken(testToken)})
	if err == nil || !strings.Contains(err.Error(), "github.api_url (DEPLOYHOOK_GITHUB_API_URL) \"http://ghe.example.com/api/v3/\" sends credentials in cleartext: use https://ghe.example.com/api/v3/") {
		t.Fatalf("New = %v, want the cleartext refusal", err)
	}
	_, keyPEM := appKey(t)
	_, err = NewAppTokenSource(AppOptions{AppID: appID, InstallationID: installationID, PrivateKeyPEM: keyPEM, BaseURL: "http://ghe.example.com/api/v3/"})
	if err == nil || !strings.Contains(err.Error(), "sends credentials in cleartext") {
		t.Fatalf("NewAppTokenSource = %v, want the cleartext refusal", err)
	}
}

// streamer answers every request with 200 and head followed by n bytes of
// 'a', streamed without a Content-Length from one preallocated buffer.
func streamer(t *testing.T, head string, n int64) *httptest.Server {
	chunk := []byte(strings.Repeat("a", 64<<10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if _, err := io.WriteString(w, head); err != nil {
			return
		}
		for n := n; n > 0; n -= int64(len(chunk)) {
			if _, err := w.Write(chunk[:min(n, int64(len(chunk)))]); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// allocated returns the bytes allocated while f runs (all goroutines).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestClient_bodyCap is issue 8, item 10: a 256 MiB streamed answer was read
// whole (1 GiB of heap); it failed before the cap. Now the call fails with
// ErrBodyTooLarge after MaxBody bytes.
func TestClient_bodyCap(t *testing.T) {
	tests := []struct {
		name string
		head string
		call func(c *Client) error
	}{
		{name: "JSON answer", head: `{"total_count":1,"workflow_runs":[{"head_sha":"`, call: func(c *Client) error {
			_, err := c.WorkflowSucceeded(t.Context(), testRepo, testSHA, "ci.yml")
			return err
		}},
		{name: "raw answer", head: "", call: func(c *Client) error {
			_, err := c.BranchHead(t.Context(), testRepo, "main")
			return err
		}},
		{name: "status answer", head: `{"description":"`, call: func(c *Client) error {
			_, err := c.Report(t.Context(), report(executor.StateSuccess))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := streamer(t, tt.head, 256<<20)
			lg, _ := testLogger(t)
			c, err := New(lg, Options{BaseURL: srv.URL + "/", TokenSource: StaticToken(testToken), MaxTries: 1, Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			var callErr error
			grew := allocated(func() { callErr = tt.call(c) })
			if !errors.Is(callErr, safehttp.ErrBodyTooLarge) {
				t.Fatalf("call = %v, want an error wrapping ErrBodyTooLarge", callErr)
			}
			if !strings.Contains(callErr.Error(), "answered more than 8 MiB") {
				t.Errorf("error %q does not say the cap", callErr)
			}
			if grew > 96<<20 {
				t.Errorf("the call allocated %d MiB, want at most 96 MiB for an 8 MiB cap", grew>>20)
			}
		})
	}
}
