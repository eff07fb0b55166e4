package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/deployhook/deployhook/executor"
)

const (
	testSHA = "0123456789abcdef0123456789abcdef01234567"
	// The secret parts of the fake webhooks' URLs.
	slackPath  = "/services/T0001/B0001/s3cr3tSlackPathPart"
	chatPath   = "/v1/spaces/AAAA1234/messages"
	chatSecret = "s3cr3tChatToken"
	chatQuery  = "key=AIzaK3yPart&token=" + chatSecret
)

// rollbackReport is a notice as the executor owes it.
func rollbackReport() executor.Report {
	return executor.Report{
		Job: "m1a2b3-cafe0001", Target: "production", Environment: "production", Repo: "acme/app", SHA: testSHA,
		State: executor.StateFailure, Description: "verify failed (exit 3); rolled back to 89abcde",
		URL: "https://deploy.example.com/jobs/m1a2b3-cafe0001", Notify: "slack", Event: executor.EventRollback, Actor: "octocat",
	}
}

// hook is a fake incoming webhook (Slack's or Google Chat's): it checks
// each request's method, path, query and content type, keeps the decoded
// JSON bodies, and answers with the next of its codes (the last one for
// ever after).
type hook struct {
	t         *testing.T
	srv       *httptest.Server
	path      string
	query     string
	ctype     string
	mu        sync.Mutex
	codes     []int
	bodies    []any
	requests  int
	malformed []string
}

func newHook(t *testing.T, path, query, ctype string, codes ...int) *hook {
	h := &hook{t: t, path: path, query: query, ctype: ctype, codes: codes}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	var problems []string
	if r.Method != http.MethodPost {
		problems = append(problems, "method "+r.Method)
	}
	if r.URL.Path != h.path || r.URL.RawQuery != h.query {
		problems = append(problems, "URL "+r.URL.String())
	}
	if got := r.Header.Get("Content-Type"); got != h.ctype {
		problems = append(problems, "Content-Type "+got)
	}
	if got := r.Header.Get("User-Agent"); got != "deployhook/test" {
		problems = append(problems, "User-Agent "+got)
	}
	var body any
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		problems = append(problems, "body "+string(b))
	}
	if len(problems) > 0 {
		h.malformed = append(h.malformed, strings.Join(problems, "; "))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	code := h.codes[min(h.requests, len(h.codes))-1]
	if code == http.StatusOK {
		h.bodies = append(h.bodies, body)
	}
	w.WriteHeader(code)
	io.WriteString(w, "ok")
}

func (h *hook) url() string {
	u := h.srv.URL + h.path
	if h.query != "" {
		u += "?" + h.query
	}
	return u
}

// taken returns the bodies the hook took (answered 200), and fails t if any
// request was malformed.
func (h *hook) taken() []any {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.malformed {
		h.t.Errorf("malformed request: %s", m)
	}
	return append([]any(nil), h.bodies...)
}

func (h *hook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests
}

// decode is the JSON text s decoded, as the hooks decode bodies.
func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad want JSON: %v\n%s", err, s)
	}
	return v
}

func newSlack(t *testing.T, url string) *Slack {
	t.Helper()
	s, err := NewSlack(Options{URL: url, UserAgent: "deployhook/test"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newChat(t *testing.T, url string) *GoogleChat {
	t.Helper()
	g, err := NewGoogleChat(Options{URL: url, UserAgent: "deployhook/test", GitHubURL: "https://ghe.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSlack_Notify(t *testing.T) {
	h := newHook(t, slackPath, "", "application/json", http.StatusOK)
	if err := newSlack(t, h.url()).Notify(t.Context(), rollbackReport()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	want := decode(t, `{
		"text": "Deploy rolled back: production (acme/app 0123456)",
		"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text":
			"*Deploy rolled back*: production\n<https://github.com/acme/app/commit/`+testSHA+`|0123456> of acme/app by octocat\nverify failed (exit 3); rolled back to 89abcde\n<https://deploy.example.com/jobs/m1a2b3-cafe0001|Job page>"}}]
	}`)
	if got := h.taken(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("Slack got %v\nwant %v", got, want)
	}
}

func TestGoogleChat_Notify(t *testing.T) {
	h := newHook(t, chatPath, chatQuery, "application/json; charset=UTF-8", http.StatusOK)
	r := rollbackReport()
	r.Event, r.State, r.Description, r.Environment = executor.EventRecovery, executor.StateSuccess, "deployed 0123456", "prod"
	if err := newChat(t, h.url()).Notify(t.Context(), r); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	want := decode(t, `{
		"text": "Deploy recovered: production (acme/app 0123456)",
		"cardsV2": [{"cardId": "deployhook", "card": {"sections": [{"widgets": [{"textParagraph": {"text":
			"<b>Deploy recovered</b>: production (environment prod)<br><a href=\"https://ghe.example.com/acme/app/commit/`+testSHA+`\">0123456</a> of acme/app by octocat<br>deployed 0123456<br><a href=\"https://deploy.example.com/jobs/m1a2b3-cafe0001\">Job page</a>"}}]}]}}]
	}`)
	if got := h.taken(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("Google Chat got %v\nwant %v", got, want)
	}
}

// What a commit author (or a VM) puts in a description, an actor or an
// environment is shown as written: no channel ping, no mention, no hidden
// link, no line of its own. Without a job URL there is no job link, and a
// SHA that is not one is not linked.
func TestNotify_NoInjection(t *testing.T) {
	r := rollbackReport()
	r.Event = executor.EventFailure
	r.Description = "<!channel> <https://evil.example|click> & <users/all>\n*Deploy recovered*"
	r.Actor = "<!here>"
	r.Environment = "<b>prod</b>"
	r.URL = "javascript:alert(1)"

	slack := newHook(t, slackPath, "", "application/json", http.StatusOK)
	if err := newSlack(t, slack.url()).Notify(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	wantSlack := decode(t, `{
		"text": "Deploy failed: production (acme/app 0123456)",
		"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text":
			"*Deploy failed*: production (environment &lt;b&gt;prod&lt;/b&gt;)\n<https://github.com/acme/app/commit/`+testSHA+`|0123456> of acme/app by &lt;!here&gt;\n&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; &lt;users/all&gt; *Deploy recovered*"}}]
	}`)
	if got := slack.taken(); len(got) != 1 || !reflect.DeepEqual(got[0], wantSlack) {
		t.Errorf("Slack got %v\nwant %v", got, wantSlack)
	}

	chat := newHook(t, chatPath, chatQuery, "application/json; charset=UTF-8", http.StatusOK)
	r.Target = "<users/all>" // configuration never allows it; the headline stays safe anyway
	r.SHA = "<https://evil|x>"
	if err := newChat(t, chat.url()).Notify(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	wantChat := decode(t, `{
		"text": "Deploy failed: ‹users/all› (acme/app ‹https:)",
		"cardsV2": [{"cardId": "deployhook", "card": {"sections": [{"widgets": [{"textParagraph": {"text":
			"<b>Deploy failed</b>: &lt;users/all&gt; (environment &lt;b&gt;prod&lt;/b&gt;)<br>&lt;https: of acme/app by &lt;!here&gt;<br>&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; &lt;users/all&gt; *Deploy recovered*"}}]}]}}]
	}`)
	if got := chat.taken(); len(got) != 1 || !reflect.DeepEqual(got[0], wantChat) {
		t.Errorf("Google Chat got %v\nwant %v", got, wantChat)
	}
}

func TestAnswer(t *testing.T) {
	tests := []struct {
		code      int
		wantErr   bool
		permanent bool
		text      string
	}{
		{code: 200},
		{code: 204},
		{code: 400, wantErr: true, permanent: true, text: "the Slack webhook answered 400 Bad Request"},
		{code: 403, wantErr: true, permanent: true},
		{code: 404, wantErr: true, permanent: true, text: "the Slack webhook answered 404 Not Found"},
		{code: 410, wantErr: true, permanent: true},
		{code: 301, wantErr: true, permanent: true},
		{code: 408, wantErr: true},
		{code: 429, wantErr: true, text: "the Slack webhook answered 429 Too Many Requests"},
		{code: 500, wantErr: true},
		{code: 503, wantErr: true},
	}
	for _, tt := range tests {
		err := answer("Slack", tt.code)
		if (err != nil) != tt.wantErr || errors.Is(err, executor.ErrPermanent) != tt.permanent {
			t.Errorf("answer(%d) = %v, want error %v, permanent %v", tt.code, err, tt.wantErr, tt.permanent)
		}
		if tt.text != "" && (err == nil || !strings.HasSuffix(err.Error(), tt.text)) {
			t.Errorf("answer(%d) = %v, want it to end in %q", tt.code, err, tt.text)
		}
	}
}

// A real server's answers reach the executor as permanent or not; a
// redirect is not followed (the webhook URL would go to another place).
func TestNotify_Answers(t *testing.T) {
	tests := []struct {
		code      int
		permanent bool
	}{{404, true}, {410, true}, {429, false}, {500, false}, {502, false}}
	for _, tt := range tests {
		h := newHook(t, slackPath, "", "application/json", tt.code)
		err := newSlack(t, h.url()).Notify(t.Context(), rollbackReport())
		if err == nil || errors.Is(err, executor.ErrPermanent) != tt.permanent {
			t.Errorf("answer %d: %v, want an error, permanent %v", tt.code, err, tt.permanent)
		}
		h.taken()
	}

	var followed bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed = true }))
	defer elsewhere.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	err := newSlack(t, redirect.URL+slackPath).Notify(t.Context(), rollbackReport())
	if !errors.Is(err, executor.ErrPermanent) || followed {
		t.Errorf("redirect: %v, followed %v; want a permanent error, not followed", err, followed)
	}
}

// No error says the webhook's URL, its path or its query: net/url's errors
// quote the whole URL, and a refused connection or a timeout produces one.
func TestNotify_ErrorsHideTheURL(t *testing.T) {
	// A port nobody listens on: take one, then close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()

	tests := []struct {
		name string
		url  string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{name: "connection refused", url: closed + chatPath + "?" + chatQuery,
			ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(t.Context()) }},
		{name: "cancelled", url: hang.URL + chatPath + "?" + chatQuery,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx, cancel
			}},
		{name: "slack, refused", url: closed + slackPath,
			ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(t.Context()) }},
	}
	// A transport (a proxy, say) whose error quotes the request's URL, path
	// and query, inside the *url.Error that http.Client wraps it in.
	quoting := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		return nil, errors.New("proxy refused " + r.URL.String() + " (path " + r.URL.Path + ", query " + r.URL.RawQuery + ")")
	})}
	tests = append(tests, struct {
		name string
		url  string
		ctx  func() (context.Context, context.CancelFunc)
	}{name: "transport quotes the URL", url: "https://chat.googleapis.com" + chatPath + "?" + chatQuery,
		ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(t.Context()) }})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			var n executor.Notifier
			switch {
			case strings.Contains(tt.url, slackPath):
				n = newSlack(t, tt.url)
			case strings.HasPrefix(tt.url, "https://chat.googleapis.com"):
				g, err := NewGoogleChat(Options{URL: tt.url, Client: quoting})
				if err != nil {
					t.Fatal(err)
				}
				n = g
			default:
				n = newChat(t, tt.url)
			}
			err := n.Notify(ctx, rollbackReport())
			if err == nil {
				t.Fatal("Notify succeeded")
			}
			if errors.Is(err, executor.ErrPermanent) {
				t.Errorf("%v is permanent, want it retried", err)
			}
			for _, secret := range []string{"s3cr3tSlackPathPart", chatSecret, "AIzaK3yPart", "AAAA1234", "/services/"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows %q", err, secret)
				}
			}
		})
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestCheckURL(t *testing.T) {
	const setting = "DEPLOYHOOK_SLACK_WEBHOOK_URL"
	tests := []struct {
		name    string
		raw     string
		anyHost bool
		want    string // a part of the error; "" none
	}{
		{name: "slack", raw: "https://hooks.slack.com/services/T0/B0/s3cr3t"},
		{name: "host in another case", raw: "https://HOOKS.slack.com/services/T0/B0/s3cr3t"},
		{name: "loopback over http", raw: "http://127.0.0.1:8080/services/T0/B0/s3cr3t"},
		{name: "localhost over http", raw: "http://localhost/services/T0/B0/s3cr3t"},
		{name: "plain http elsewhere", raw: "http://hooks.slack.com/services/T0/B0/s3cr3t", want: "uses plain http"},
		{name: "plain http elsewhere, any host", raw: "http://relay.example.com/services/s3cr3t", anyHost: true, want: "uses plain http"},
		{name: "another host", raw: "https://hooks.slack.com.evil.example/services/T0/B0/s3cr3t", want: "is not on hooks.slack.com"},
		{name: "another host allowed", raw: "https://relay.example.com/services/s3cr3t", anyHost: true},
		{name: "user info", raw: "https://s3cr3t@hooks.slack.com/services/T0/B0/x", want: "user name or password"},
		{name: "no path", raw: "https://hooks.slack.com/", want: "has no path"},
		{name: "not a URL", raw: "hooks.slack.com/services/s3cr3t", want: "not an absolute https:// URL"},
		{name: "another scheme", raw: "ftp://hooks.slack.com/s3cr3t", want: "not an absolute https:// URL"},
		{name: "bad escape", raw: "https://hooks.slack.com/%zz/s3cr3t", want: "not an absolute https:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckURL(setting, tt.raw, SlackHost, tt.anyHost)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckURL: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), setting)):
				t.Errorf("CheckURL: %v, want an error naming %s with %q", err, setting, tt.want)
			case err != nil && strings.Contains(err.Error(), "s3cr3t"):
				t.Errorf("CheckURL's error shows the URL: %v", err)
			}
		})
	}
}

func TestNew_RefusesBadURL(t *testing.T) {
	if _, err := NewSlack(Options{URL: "https://chat.googleapis.com/v1/spaces/A/messages?key=s3cr3t"}); err == nil ||
		!strings.Contains(err.Error(), "DEPLOYHOOK_SLACK_WEBHOOK_URL is not on hooks.slack.com") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("NewSlack with Chat's URL: %v", err)
	}
	if _, err := NewGoogleChat(Options{URL: "https://hooks.slack.com/services/s3cr3t"}); err == nil ||
		!strings.Contains(err.Error(), "DEPLOYHOOK_GOOGLE_CHAT_WEBHOOK_URL is not on chat.googleapis.com") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("NewGoogleChat with Slack's URL: %v", err)
	}
}

// BenchmarkNoticeSlack measures one notice posted to a local Slack stand-in:
// the message built, sent over a kept-alive connection, and the answer read.
func BenchmarkNoticeSlack(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	s, err := NewSlack(Options{URL: srv.URL + slackPath})
	if err != nil {
		b.Fatal(err)
	}
	r := rollbackReport()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Notify(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}
