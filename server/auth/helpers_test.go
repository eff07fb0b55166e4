package auth

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/server"
	"github.com/deployhook/deployhook/server/auth/authtest"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logs is a logger that writes to the test's output and keeps what it wrote.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger(tb testing.TB) (*slog.Logger, *logs) {
	l := &logs{}
	return slog.New(slog.NewTextHandler(io.MultiWriter(l, tb.Output()), &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// ghEnv is GitHub sign-in served by a test server in front of a fake GitHub.
type ghEnv struct {
	auth  *GitHubAuth
	gh    *authtest.GitHub
	srv   *httptest.Server
	clock *clock
	logs  *logs
	// bodies keeps every body the test server and the fake sent to the browser.
	bodies *logs
}

// newGHEnv starts GitHub sign-in on a test server whose /app answers the
// signed-in person's login and sends others to sign in. mod changes the
// options before GitHub is called.
func newGHEnv(t *testing.T, mod func(*GitHubOptions)) *ghEnv {
	t.Helper()
	e := &ghEnv{gh: authtest.NewGitHub(t), clock: newClock(), bodies: &logs{}}
	var lg *slog.Logger
	lg, e.logs = newLogger(t)
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.gh.Callback = e.srv.URL + "/auth/callback"
	opts := GitHubOptions{
		ClientID: e.gh.ClientID, ClientSecret: e.gh.ClientSecret,
		WebURL: e.gh.URL + "/", APIURL: e.gh.APIURL + "/", PublicURL: e.srv.URL,
		SessionKey: bytes.Repeat([]byte{7}, 32), Now: e.clock.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	var err error
	if e.auth, err = GitHub(lg, opts); err != nil {
		t.Fatal(err)
	}
	mux.Handle(server.AuthPath, e.auth.Handler())
	mux.HandleFunc("/app", func(w http.ResponseWriter, r *http.Request) {
		p, ok := e.auth.Who(r)
		if !ok {
			http.Redirect(w, r, e.auth.SignIn(r.URL.RequestURI()), http.StatusFound)
			return
		}
		io.WriteString(w, "hello "+p.Login+" ("+p.Name+")")
	})
	return e
}

// browser is an HTTP client with a cookie jar that keeps every body it reads.
func (e *ghEnv) browser(t *testing.T, follow bool) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// get GETs u and returns the answer with its body read.
func (e *ghEnv) get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return e.read(t, resp)
}

func (e *ghEnv) post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return e.read(t, resp)
}

func (e *ghEnv) read(t *testing.T, resp *http.Response) (*http.Response, string) {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.bodies.Write(b)
	for _, v := range resp.Header.Values("Set-Cookie") {
		e.bodies.Write([]byte("\nSet-Cookie: " + v + "\n"))
	}
	e.bodies.Write([]byte("\nLocation: " + resp.Header.Get("Location") + "\n"))
	return resp, string(b)
}

// signIn runs the whole flow for u in browser c and returns the person.
func (e *ghEnv) signIn(t *testing.T, c *http.Client, u authtest.User) server.Person {
	t.Helper()
	e.gh.SignInAs(u)
	resp, body := e.get(t, c, e.srv.URL+"/app")
	if resp.StatusCode != http.StatusOK || body != "hello "+u.Login+" ("+u.Name+")" {
		t.Fatalf("sign-in as %s: %s %q", u.Login, resp.Status, body)
	}
	return e.who(t, c)
}

// who is the person the session cookie in c's jar names.
func (e *ghEnv) who(t *testing.T, c *http.Client) server.Person {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, e.srv.URL+"/app", nil)
	for _, ck := range c.Jar.Cookies(r.URL) {
		r.AddCookie(ck)
	}
	p, ok := e.auth.Who(r)
	if !ok {
		t.Fatal("the browser has no valid session")
	}
	return p
}

// cookie returns the Set-Cookie of resp named name, or nil.
func cookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// noSecrets fails when any of the fake's tokens or its client secret appears in s.
func noSecrets(t *testing.T, where, s string, gh *authtest.GitHub) {
	t.Helper()
	for _, tok := range append(gh.Tokens(), gh.ClientSecret) {
		if strings.Contains(s, tok) {
			t.Errorf("%s carries a secret (%.8s…)", where, tok)
		}
	}
}
