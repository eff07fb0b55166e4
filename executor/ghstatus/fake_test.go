package ghstatus

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// Headers go-github v60 sends.
const (
	acceptV3         = "application/vnd.github.v3+json"
	acceptDeployment = "application/vnd.github.ant-man-preview+json, application/vnd.github.flash-preview+json"
	acceptSHA        = "application/vnd.github.v3.sha"
	apiVersion       = "2022-11-28"
)

// call is one request the fake GitHub expects, in order, and its answer.
type call struct {
	method string
	path   string         // exact URL path below the API root
	query  url.Values     // exact query; nil: none
	auth   string         // exact Authorization; empty: the fake's default; "*": not checked (see check)
	accept string         // exact Accept; empty: acceptV3
	body   map[string]any // exact JSON body; nil: no body, no Content-Type
	check  func(t *testing.T, r *http.Request)

	status int
	header map[string]string
	resp   any // JSON-encoded; a string is sent as is
	// respFunc, if set, makes resp at the time of the request.
	respFunc func() any
}

// fakeGitHub is an httptest GitHub REST API that serves a script of calls and
// checks each request's method, path, query, headers and exact JSON body.
type fakeGitHub struct {
	t      *testing.T
	prefix string // the API root's path: "" for github.com, "/api/v3" for GHES
	auth   string // the Authorization header every call expects by default

	mu    sync.Mutex
	calls []call
	n     int
	times []time.Time // when each request arrived
}

func newFake(t *testing.T, auth string, calls ...call) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{t: t, auth: auth, calls: calls}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.n < len(f.calls) {
			t.Errorf("GitHub got %d requests, want %d; first missing: %s %s", f.n, len(f.calls), f.calls[f.n].method, f.calls[f.n].path)
		}
	})
	return f
}

// requests returns how many requests arrived.
func (f *fakeGitHub) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// arrivals returns when the requests arrived.
func (f *fakeGitHub) arrivals() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	f.mu.Lock()
	i := f.n
	f.n++
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	if i >= len(f.calls) {
		t.Errorf("unexpected request %d: %s %s", i+1, r.Method, r.URL.Path)
		http.Error(w, `{"message":"unexpected request"}`, http.StatusTeapot)
		return
	}
	c := f.calls[i]
	where := r.Method + " " + r.URL.Path
	if r.Method != c.method || r.URL.Path != f.prefix+c.path {
		t.Errorf("request %d: got %s, want %s %s", i+1, where, c.method, f.prefix+c.path)
	}
	if got := r.URL.Query(); !(len(got) == 0 && len(c.query) == 0) && !reflect.DeepEqual(got, c.query) {
		t.Errorf("%s: query %v, want %v", where, got, c.query)
	}
	wantHeaders := map[string]string{
		"Authorization":        cmpOr(c.auth, f.auth),
		"Accept":               cmpOr(c.accept, acceptV3),
		"X-Github-Api-Version": apiVersion,
		"User-Agent":           "deployhook",
		"Content-Type":         "",
	}
	if c.body != nil {
		wantHeaders["Content-Type"] = "application/json"
	}
	if c.auth == "*" {
		delete(wantHeaders, "Authorization")
	}
	for k, want := range wantHeaders {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: header %s = %q, want %q", where, k, got, want)
		}
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("%s: read body: %v", where, err)
	}
	if c.body == nil {
		if len(raw) != 0 {
			t.Errorf("%s: unexpected body %s", where, raw)
		}
	} else {
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Errorf("%s: body %s is not a JSON object: %v", where, raw, err)
		}
		if !reflect.DeepEqual(got, c.body) {
			t.Errorf("%s: body\n got  %s\n want %s", where, raw, mustJSON(t, c.body))
		}
	}
	if c.check != nil {
		c.check(t, r)
	}
	for k, v := range c.header {
		w.Header().Set(k, v)
	}
	resp := c.resp
	if c.respFunc != nil {
		resp = c.respFunc()
	}
	var out []byte
	switch v := resp.(type) {
	case nil:
	case string:
		out = []byte(v)
	default:
		out = mustJSON(t, v)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(c.status)
	w.Write(out)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serve starts f on a real HTTP server and returns the API root URL.
func serve(t *testing.T, f *fakeGitHub) string {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL + f.prefix + "/"
}

// inMemory is an http.RoundTripper that serves requests with a handler in the
// caller's goroutine: no sockets, so a testing/synctest bubble can advance its
// fake clock while the client waits.
type inMemory struct{ h http.Handler }

func (m inMemory) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	sreq := req.Clone(req.Context())
	sreq.RequestURI = req.URL.RequestURI()
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	m.h.ServeHTTP(rec, sreq)
	if req.Body != nil {
		req.Body.Close()
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// logBuf collects log output for secret checks.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testLogger logs to the test's output and to a buffer.
func testLogger(t *testing.T) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), lb), &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// assertNoSecrets fails if any secret appears in the logs or the errors.
func assertNoSecrets(t *testing.T, lb *logBuf, errs []error, secrets ...string) {
	t.Helper()
	logs := lb.String()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) appears in the logs", s)
		}
		for _, err := range errs {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("a secret (%.6s…) appears in error %q", s, err)
			}
		}
	}
}

// fixture reads a JSON object from testdata.
func fixture(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// with returns a copy of m with kv set.
func with(m map[string]any, kv ...any) map[string]any {
	c := maps.Clone(m)
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}
