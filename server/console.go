package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/deployhook/deployhook/executor"
)

// Live follows and cancels the jobs this process runs. Implementation: the
// executor.
type Live interface {
	// Follow returns the events of job with an ID above after that this
	// process still holds, then new ones as they happen; it closes the channel
	// after the "end" event, when ctx ends, or when the reader falls behind
	// (it reconnects with its last ID). An error wrapping executor.ErrNotFound
	// says the job is not live here: the journal is all there is.
	Follow(ctx context.Context, job string, after int64) (<-chan executor.LogEvent, error)
	// Cancel ends job on behalf of actor (a login): a queued job at once, a
	// running one by cancelling its steps, rolling back when it had changed
	// the target. An error wraps executor.ErrNotFound for a job this process
	// does not run, executor.ErrFinal for one that has ended.
	Cancel(ctx context.Context, job, actor string) (executor.Job, error)
}

// CommitInfo is what GitHub says about a commit, for the history page.
type CommitInfo struct {
	Message string    // the first line of the commit message
	Login   string    // the author's GitHub login; empty when git's author is no GitHub account
	Name    string    // the author's name as git recorded it
	Date    time.Time // the author date
}

// Commits looks commits up on GitHub. Implementation: executor/ghstatus
// (through main).
type Commits interface {
	// Commit returns what GitHub says about sha (40 lower-case hex digits) in
	// repo (owner/name). Any error leaves the history page showing the SHA
	// alone.
	Commit(ctx context.Context, repo, sha string) (CommitInfo, error)
}

// providerNone is Person.Provider of AllowAll: everyone who reaches the
// server is signed in, so its pages are as public as the listener.
const providerNone = "none"

// signOutPath is the page header's sign-out link: Auth.Handler's page
// there signs out (a POST with the session's CSRF token), or says how.
const signOutPath = AuthPath + "signout"

// personKey is the echo.Context key of the signed-in Person.
const personKey = "deployhook.person"

// maxFormBytes caps the body of a console form (a SHA and a token).
const maxFormBytes = 16 << 10

// signedIn lets a request through only with a session: a browser without
// one is sent to sign in (303 to Auth.SignIn with the request's path and
// query); an API client (JSON, event stream) gets 401. The person is kept on
// the context (person) and their login goes on the request's log line.
func (s *Server) signedIn(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, ok := s.deps.Auth.Who(c.Request())
		if !ok || p.Login == "" {
			if wantsMachine(c) {
				return publicf(http.StatusUnauthorized, "sign in: this needs a signed-in session")
			}
			return c.Redirect(http.StatusSeeOther, s.deps.Auth.SignIn(c.Request().URL.RequestURI()))
		}
		c.Set(personKey, p)
		note(c, slog.String("login", p.Login))
		return next(c)
	}
}

// person returns the signed-in person of a request that passed signedIn.
func person(c echo.Context) Person {
	p, _ := c.Get(personKey).(Person)
	return p
}

// wantsMachine reports whether the client is a program rather than a page
// view: it asked for JSON (wantsJSON, or a .json path) or an event stream.
func wantsMachine(c echo.Context) bool {
	return wantsJSON(c) || strings.HasSuffix(c.Request().URL.Path, ".json") ||
		strings.Contains(c.Request().Header.Get(echo.HeaderAccept), "text/event-stream")
}

// repoOf is the repository whose access decides who sees target: its
// route's, or fallback (a job's own) for a target no longer configured.
func (s *Server) repoOf(target, fallback string) string {
	if r := s.routeOf(target); r.Repo != "" {
		return r.Repo
	}
	return fallback
}

// require checks that the signed-in person has at least want on repo. One
// without read access gets hidden, which callers pass: the same answer as
// for something that does not exist. One with read access but not write
// gets 403. An undecided access (GitHub unreachable) is denied with 503.
// It returns the access it found, for the page's buttons.
func (s *Server) require(c echo.Context, repo string, want Access, hidden error) (Access, error) {
	a, err := s.deps.Auth.Access(c.Request().Context(), person(c), repo)
	switch {
	case err != nil:
		return 0, public(http.StatusServiceUnavailable, "cannot check your access now: try again in a minute", err)
	case a < AccessRead:
		return 0, hidden
	case a < want:
		return 0, publicf(http.StatusForbidden, "you have read access only: this needs write access to %s", repo)
	}
	return a, nil
}

// reader decides, once per repository within one request, whether the
// signed-in person may read it; an undecided access counts as no.
type reader struct {
	s    *Server
	c    echo.Context
	seen map[string]Access
}

func (s *Server) reader(c echo.Context) *reader {
	return &reader{s: s, c: c, seen: map[string]Access{}}
}

// access returns the person's access to repo.
func (r *reader) access(repo string) Access {
	if a, ok := r.seen[repo]; ok {
		return a
	}
	a, err := r.s.deps.Auth.Access(r.c.Request().Context(), person(r.c), repo)
	if err != nil {
		r.s.lg.Warn("access check failed: denied", "login", person(r.c).Login, "repo", repo, "err", err)
		a = AccessNone
	}
	r.seen[repo] = a
	return a
}

// job reports whether the person may read job j.
func (r *reader) job(j executor.Job) bool {
	return r.access(r.s.repoOf(j.Target, j.Trigger.Repo)) >= AccessRead
}

// showOutput reports whether p sees step output and error texts: everyone
// signed in through a provider does (they passed the repository's read
// check); in the "none" mode, where anyone who reaches the server is signed
// in, only with Options.ShowOutput.
func (s *Server) showOutput(p Person) bool {
	return s.opts.ShowOutput || p.Provider != providerNone
}

// checkForm refuses a console action that may not come from the console's
// own page (403): a cross-site request by Sec-Fetch-Site or Origin, or a
// form whose csrf field is not the session's token (compared in constant
// time). The form body is capped at maxFormBytes.
func (s *Server) checkForm(c echo.Context) error {
	req := c.Request()
	switch req.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return publicf(http.StatusForbidden, "refused: the request came from another site")
	}
	if o := req.Header.Get("Origin"); o != "" && !s.ownOrigin(req, o) {
		return publicf(http.StatusForbidden, "refused: the request came from another site")
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxFormBytes)
	if err := req.ParseForm(); err != nil {
		return public(http.StatusBadRequest, "bad form", err)
	}
	if !person(c).CSRFValid(req.PostForm.Get("csrf")) {
		return publicf(http.StatusForbidden, "refused: the form is stale or forged; reload the page and try again")
	}
	return nil
}

// ownOrigin reports whether origin (an Origin header) is this server's:
// Options.PublicURL's origin, or the request's own host.
func (s *Server) ownOrigin(req *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if s.opts.PublicURL != "" {
		if pu, err := url.Parse(s.opts.PublicURL); err == nil && strings.EqualFold(pu.Scheme+"://"+pu.Host, u.Scheme+"://"+u.Host) {
			return true
		}
	}
	return strings.EqualFold(u.Host, req.Host)
}

// errNoTarget is the answer for a target that does not exist, or that the
// person may not see.
func errNoTarget(name string) error {
	return publicf(http.StatusNotFound, "no target %s", truncate(name, 64))
}

// errNoJob is the answer for a job that does not exist, or that the person
// may not see.
func errNoJob(id string) error {
	return publicf(http.StatusNotFound, "no job %s", truncate(id, 64))
}

// readJob reads job id for a signed-in person who needs want on its
// target's repository, and returns the person's access to it.
func (s *Server) readJob(c echo.Context, id string, want Access) (executor.Job, Access, error) {
	j, err := s.deps.Journal.Job(c.Request().Context(), id)
	if errors.Is(err, executor.ErrNotFound) {
		return executor.Job{}, 0, errNoJob(id)
	}
	if err != nil {
		return executor.Job{}, 0, public(http.StatusInternalServerError, "cannot read the journal", err)
	}
	a, err := s.require(c, s.repoOf(j.Target, j.Trigger.Repo), want, errNoJob(id))
	if err != nil {
		return executor.Job{}, 0, err
	}
	return j, a, nil
}
