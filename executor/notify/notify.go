package notify

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/endpoint"
	"github.com/deployhook/deployhook/internal/gitsha"
	"github.com/deployhook/deployhook/internal/safehttp"
)

// The hosts of the services' incoming webhooks. CheckURL refuses any other
// unless it is told to allow any host.
const (
	SlackHost      = "hooks.slack.com"
	GoogleChatHost = "chat.googleapis.com"
)

// Options configures a Slack or Google Chat sender.
type Options struct {
	// URL is the incoming webhook's URL. It is a secret (whoever has it may
	// post to the channel): it must pass CheckURL, and it never appears in an
	// error.
	URL string
	// AllowAnyHost accepts a URL on another host than the service's own (a
	// proxy, a compatible service). It does not allow plain http to a host
	// other than loopback.
	AllowAnyHost bool
	// GitHubURL is GitHub's web address, for the links to commits
	// (GitHub Enterprise Server: https://HOST). Default https://github.com.
	GitHubURL string
	// UserAgent is sent with every request. Default "deployhook".
	UserAgent string
	// Client sends the requests. Default: a client that times out after
	// 10 s, follows no redirect and reads at most 64 KiB of an answer. A
	// client given here should follow no redirect either.
	Client *http.Client
}

// requestTimeout bounds one POST with the default client: a webhook answers
// in well under a second (the executor gives each attempt 10 s too).
const requestTimeout = 10 * time.Second

// maxAnswer caps what is read of an answer: only its status is used.
const maxAnswer = 64 << 10

// CheckURL returns nil when raw is a webhook URL notices may be posted to: an
// absolute https:// URL with a path and no user information, on host unless
// anyHost; a loopback host (tests, a local relay) is always allowed, and the
// only one allowed plain http://. Its error names setting (the variable the
// URL came from) and says what to fix, and never quotes raw, which is a
// secret.
func CheckURL(setting, raw, host string, anyHost bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s is not an absolute https:// URL: set it to the incoming webhook's URL, as the service shows it", setting)
	}
	if u.User != nil {
		return fmt.Errorf("%s carries a user name or password: set it to the incoming webhook's URL, as the service shows it", setting)
	}
	if u.Scheme == "http" && !endpoint.Loopback(u.Hostname()) {
		return fmt.Errorf("%s uses plain http: use the https:// URL (plain http is allowed only to localhost, 127.0.0.0/8 and ::1)", setting)
	}
	if !anyHost && !strings.EqualFold(u.Hostname(), host) && !endpoint.Loopback(u.Hostname()) {
		return fmt.Errorf("%s is not on %s: set the URL the service shows for the webhook, or notify.allow_any_host: true to post elsewhere", setting, host)
	}
	if strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("%s has no path: set the whole URL of the incoming webhook", setting)
	}
	return nil
}

// webhook posts JSON to one incoming webhook.
type webhook struct {
	service string // the service's name, for errors: "Slack", "Google Chat"
	url     string
	secrets []string // url and the parts of it an error must not show
	hc      *http.Client
	ua      string
	github  string // GitHub's web address, without a trailing slash
	ctype   string // the request's Content-Type
}

// newWebhook checks opts and returns the webhook it describes.
func newWebhook(service, setting, host, ctype string, opts Options) (*webhook, error) {
	if err := CheckURL(setting, opts.URL, host, opts.AllowAnyHost); err != nil {
		return nil, err
	}
	u, _ := url.Parse(opts.URL) // CheckURL parsed it
	gh := strings.TrimRight(cmp.Or(opts.GitHubURL, "https://github.com"), "/")
	if g, err := url.Parse(gh); err != nil || (g.Scheme != "https" && g.Scheme != "http") || g.Host == "" {
		return nil, fmt.Errorf("notify: GitHub's web address %q is not an absolute http(s) URL", gh)
	}
	hc := opts.Client
	if hc == nil {
		hc = &http.Client{
			Timeout:       requestTimeout,
			CheckRedirect: safehttp.NoRedirects,
			Transport:     safehttp.LimitBody(http.DefaultTransport, maxAnswer),
		}
	}
	w := &webhook{service: service, url: opts.URL, hc: hc, ua: cmp.Or(opts.UserAgent, "deployhook"), github: gh, ctype: ctype}
	secrets := []string{opts.URL, u.Path, u.EscapedPath(), u.RawQuery, u.Query().Encode()}
	for _, vs := range u.Query() {
		secrets = append(secrets, vs...) // a key or a token on its own
	}
	for _, s := range secrets {
		if strings.Trim(s, "/") != "" {
			w.secrets = append(w.secrets, s)
		}
	}
	return w, nil
}

// post sends body and decides what the answer means (see answer).
func (w *webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: post to the %s webhook: %s", executor.ErrPermanent, w.service, w.scrub(err))
	}
	req.Header.Set("Content-Type", w.ctype)
	req.Header.Set("User-Agent", w.ua)
	resp, err := w.hc.Do(req)
	if err != nil {
		return fmt.Errorf("post to the %s webhook: %s", w.service, w.scrub(err))
	}
	// Read a little of the body, so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	return answer(w.service, resp.StatusCode)
}

// answer decides what a webhook's answer with status code means: nil for a
// 2xx; a retryable error for 408, 429 and 5xx; otherwise an error wrapping
// executor.ErrPermanent. The error says the code and its standard text only:
// a reason phrase or a body is the server's to choose.
func answer(service string, code int) error {
	status := fmt.Sprintf("%d %s", code, http.StatusText(code))
	switch {
	case code >= 200 && code <= 299:
		return nil
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return fmt.Errorf("the %s webhook answered %s", service, status)
	case code >= 300 && code <= 399:
		return fmt.Errorf("%w: the %s webhook answered %s (redirects are not followed: check the URL)", executor.ErrPermanent, service, status)
	}
	return fmt.Errorf("%w: the %s webhook answered %s", executor.ErrPermanent, service, status)
}

// scrub returns err's text without the webhook's URL or any part of its
// path or query: a *url.Error quotes the URL, so only the error it wraps is
// kept, and what is left is searched for the secrets too.
func (w *webhook) scrub(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	for _, s := range w.secrets {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	return msg
}

// headline is what a notice of event says first.
func headline(ev executor.Event) string {
	switch ev {
	case executor.EventRollback:
		return "Deploy rolled back"
	case executor.EventRecovery:
		return "Deploy recovered"
	case executor.EventFailure:
		return "Deploy failed"
	}
	return "Deploy"
}

// notice is a Report's values for a message, each a single line of plain
// text, and its links ("" when there is none).
type notice struct {
	headline    string
	target      string
	environment string // "" when it is the target's name
	repo        string
	short       string // the short SHA
	actor       string
	description string
	commitURL   string
	jobURL      string
}

// noticeOf returns r's values for a message, github being GitHub's web
// address. Links are kept only when they are absolute http(s) URLs.
func noticeOf(r executor.Report, github string) notice {
	n := notice{
		headline:    headline(r.Event),
		target:      oneLine(r.Target),
		repo:        oneLine(r.Repo),
		short:       oneLine(r.SHA[:min(7, len(r.SHA))]),
		actor:       oneLine(r.Actor),
		description: oneLine(r.Description),
		jobURL:      link(r.URL),
	}
	if r.Environment != "" && r.Environment != r.Target {
		n.environment = oneLine(r.Environment)
	}
	if owner, name, ok := strings.Cut(r.Repo, "/"); ok && gitsha.Valid(r.SHA) && owner != "" && name != "" && !strings.Contains(name, "/") {
		n.commitURL = link(github + "/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/commit/" + r.SHA)
	}
	return n
}

// summary is the notice's plain one-line form: "Deploy failed: production
// (acme/app abc1234)".
func (n notice) summary() string {
	s := n.headline + ": " + n.target
	if n.repo != "" || n.short != "" {
		s += " (" + strings.TrimSpace(n.repo+" "+n.short) + ")"
	}
	return s
}

// link returns s when it is an absolute http(s) URL, else "".
func link(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return s
}

// oneLine turns control characters (newlines, tabs, escapes) into spaces,
// so a value never starts a line, a list or a quote of its own.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}
