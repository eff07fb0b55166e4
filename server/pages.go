package server

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/deployhook/deployhook/executor"
)

// readyTimeout bounds a readiness check.
const readyTimeout = 3 * time.Second

// Limits of the job lists.
const (
	defaultListLimit = 20
	maxListLimit     = 200
)

// handleHealthz is GET /healthz: the process answers.
func (s *Server) handleHealthz(c echo.Context) error {
	return c.String(http.StatusOK, "ok")
}

// handleReadyz is GET /readyz: 200 "ready", or 503 with the reason.
func (s *Server) handleReadyz(c echo.Context) error {
	if s.draining.Load() {
		return publicf(http.StatusServiceUnavailable, "not ready: shutting down")
	}
	if s.deps.Checker != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
		defer cancel()
		if err := s.deps.Checker.Ready(ctx); err != nil {
			return public(http.StatusServiceUnavailable, "not ready: "+err.Error(), err)
		}
	}
	return c.String(http.StatusOK, "ready")
}

// jobView is the view of a job: what the JSON and the HTML page show. The
// steps' output and error texts (which may name hosts) only for a person
// who may see them (Server.showOutput); otherwise a step's error is its
// public summary (stepSummary).
type jobView struct {
	ID          string         `json:"id"`
	Target      string         `json:"target"`
	State       executor.State `json:"state"`
	Description string         `json:"description"`
	Trigger     triggerView    `json:"trigger"`
	PreviousSHA string         `json:"previous_sha,omitempty"`
	Created     time.Time      `json:"created"`
	Started     time.Time      `json:"started,omitzero"`
	Finished    time.Time      `json:"finished,omitzero"`
	Duration    string         `json:"duration,omitempty"` // started → finished (or now)
	Millis      int64          `json:"duration_ms,omitempty"`
	Age         string         `json:"age"` // since the last change
	Steps       []stepView     `json:"steps,omitempty"`
}

type triggerView struct {
	Kind     executor.Kind `json:"kind"`
	Repo     string        `json:"repo"`
	Branch   string        `json:"branch"`
	SHA      string        `json:"sha"`
	Actor    string        `json:"actor"`
	Reason   string        `json:"reason"`
	Delivery string        `json:"delivery,omitempty"`
	Force    bool          `json:"force,omitempty"`
}

type stepView struct {
	Seq      int    `json:"seq"`
	Name     string `json:"name"`
	ExitCode int    `json:"exit_code"`
	Skipped  string `json:"skipped,omitempty"`
	Duration string `json:"duration"`
	Millis   int64  `json:"duration_ms"`
	Output   string `json:"output,omitempty"`
	Error    string `json:"error,omitempty"` // why the step did not finish: a public summary unless ShowOutput
}

// view turns a job into its view, with the steps' output and error texts
// when output is set.
func (s *Server) view(j executor.Job, output bool) jobView {
	now := s.deps.Now()
	v := jobView{
		ID:          j.ID,
		Target:      j.Target,
		State:       j.State,
		Description: j.Description,
		Trigger: triggerView{
			Kind: j.Trigger.Kind, Repo: j.Trigger.Repo, Branch: j.Trigger.Branch, SHA: j.Trigger.SHA,
			Actor: j.Trigger.Actor, Reason: j.Trigger.Reason, Delivery: j.Trigger.Delivery, Force: j.Trigger.Force,
		},
		PreviousSHA: j.PreviousSHA,
		Created:     j.Created,
		Started:     j.Started,
		Finished:    j.Finished,
		Age:         age(now, lastChange(j)),
	}
	if !j.Started.IsZero() {
		end := j.Finished
		if end.IsZero() {
			end = now
		}
		v.Duration = roundDuration(end.Sub(j.Started)).String()
		v.Millis = end.Sub(j.Started).Milliseconds()
	}
	for _, st := range j.Steps {
		sv := stepView{Seq: st.Seq, Name: st.Name, ExitCode: st.ExitCode, Skipped: st.Skipped,
			Duration: roundDuration(st.Duration).String(), Millis: st.Duration.Milliseconds()}
		if output {
			sv.Output, sv.Error = st.Output, st.Error
		} else {
			sv.Error = stepSummary(st)
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

// handleJob is GET /jobs/:id: JSON with Accept: application/json or ?format=json,
// else the HTML page. A running job's page follows its live log with
// /static/console.js, and so does a final job's page while its post-deploy
// watch runs (afterEnd); without JavaScript it says to reload.
func (s *Server) handleJob(c echo.Context) error {
	p := person(c)
	j, a, err := s.readJob(c, c.Param("id"), AccessRead)
	if err != nil {
		return err
	}
	v := s.view(j, s.showOutput(p))
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, v)
	}
	// Write access shows the cancel button; the POST checks it again.
	page := s.pageInfo(c, "Job "+j.ID+" · "+j.Target)
	return s.render(c, "job.html", struct {
		Page      pageInfo
		Job       jobView
		Running   bool // the page follows the live log
		Watching  bool // of a final job: its post-deploy watch
		Events    string
		CanCancel bool
		Known     bool // the target is configured: its history page exists
		Now       int64
	}{page, v, !j.State.Final() || afterEnd(j), afterEnd(j), executor.JobPath(j.ID) + "/events",
		a >= AccessWrite && s.deps.Live != nil && !j.State.Final(), s.known(j.Target), s.deps.Now().UnixMilli()})
}

// handleJobs is GET /jobs?target=&limit=: recent jobs as JSON, newest first,
// of the targets the person may read.
func (s *Server) handleJobs(c echo.Context) error {
	target := c.QueryParam("target")
	rd := s.reader(c)
	if target != "" && (!s.known(target) || rd.access(s.repoOf(target, "")) < AccessRead) {
		return errNoTarget(target)
	}
	limit := defaultListLimit
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxListLimit {
			return publicf(http.StatusBadRequest, "limit must be a number from 1 to %d", maxListLimit)
		}
		limit = n
	}
	jobs, err := s.readableJobs(c.Request().Context(), rd, target, limit)
	if err != nil {
		return public(http.StatusInternalServerError, "cannot read the journal", err)
	}
	out := struct {
		Jobs []jobView `json:"jobs"`
	}{Jobs: make([]jobView, 0, len(jobs))}
	show := s.showOutput(person(c))
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, s.view(j, show))
	}
	return c.JSON(http.StatusOK, out)
}

// readableJobs lists the newest jobs, at most limit, of target (every
// target if empty) that rd's person may read. When the person may read
// every configured target, it is one query, filtered (jobs of targets no
// longer configured are decided by their repository); otherwise one query
// per readable target, merged.
func (s *Server) readableJobs(ctx context.Context, rd *reader, target string, limit int) ([]executor.Job, error) {
	var readable []string
	for _, t := range s.targets {
		if rd.access(s.repoOf(t, "")) >= AccessRead {
			readable = append(readable, t)
		}
	}
	if target != "" || len(readable) == len(s.targets) {
		jobs, err := s.deps.Journal.Jobs(ctx, target, limit)
		if err != nil {
			return nil, err
		}
		return slices.DeleteFunc(jobs, func(j executor.Job) bool { return !rd.job(j) }), nil
	}
	var all []executor.Job
	for _, t := range readable {
		jobs, err := s.deps.Journal.Jobs(ctx, t, limit)
		if err != nil {
			return nil, err
		}
		all = append(all, jobs...)
	}
	// Stable: a target's jobs keep the journal's order among equal times.
	slices.SortStableFunc(all, func(a, b executor.Job) int { return b.Created.Compare(a.Created) })
	return all[:min(len(all), limit)], nil
}

// targetRow is one line of the index's target table.
type targetRow struct {
	Route
	Last  *jobView
	Badge string // Markdown for the README badge, when badges are on
}

// handleIndex is GET /: the targets the person may read, with their last
// job, and their recent jobs.
func (s *Server) handleIndex(c echo.Context) error {
	ctx := c.Request().Context()
	rd := s.reader(c)
	show := s.showOutput(person(c))
	var rows []targetRow
	for _, t := range s.targets {
		row := targetRow{Route: s.routeOf(t)}
		if rd.access(row.Repo) < AccessRead {
			continue
		}
		jobs, err := s.deps.Journal.Jobs(ctx, t, 1)
		if err != nil {
			return public(http.StatusInternalServerError, "cannot read the journal", err)
		}
		if len(jobs) > 0 {
			v := s.view(jobs[0], show)
			row.Last = &v
		}
		if s.opts.Badges {
			row.Badge = fmt.Sprintf("[![deploy %s](%s/badge/%s.svg)](%s/)", t, s.opts.PublicURL, t, s.opts.PublicURL)
		}
		rows = append(rows, row)
	}
	recent, err := s.readableJobs(ctx, rd, "", defaultListLimit)
	if err != nil {
		return public(http.StatusInternalServerError, "cannot read the journal", err)
	}
	views := make([]jobView, 0, len(recent))
	for _, j := range recent {
		views = append(views, s.view(j, show))
	}
	return s.render(c, "index.html", struct {
		Page    pageInfo
		Targets []targetRow
		Recent  []jobView
	}{s.pageInfo(c, "deployhook"), rows, views})
}

// routeOf returns the first route of target.
func (s *Server) routeOf(target string) Route {
	for _, r := range s.opts.Routes {
		if r.Target == target {
			return r
		}
	}
	return Route{Target: target}
}

// pageInfo is what every HTML page's layout shows.
type pageInfo struct {
	Title   string
	Version string
	Login   string // the signed-in person; empty on public pages
	SignOut string // the sign-out page; empty in the "none" mode
	CSRF    string // the session's token, for the forms
}

func (s *Server) pageInfo(c echo.Context, title string) pageInfo {
	p := person(c)
	pi := pageInfo{Title: title, Version: s.opts.Version, Login: p.Login, CSRF: p.CSRF}
	if p.Login != "" && p.Provider != providerNone {
		pi.SignOut = signOutPath
	}
	return pi
}

// render executes a template into a buffer first, so a template error is a clean 500.
func (s *Server) render(c echo.Context, name string, data any) error {
	tmpl, err := s.tmpl()
	if err != nil {
		return public(http.StatusInternalServerError, "internal error", fmt.Errorf("parse templates: %w", err))
	}
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, name, data); err != nil {
		return public(http.StatusInternalServerError, "internal error", fmt.Errorf("render %s: %w", name, err))
	}
	pageHeaders(c.Response().Header())
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}

// contentSecurityPolicy is every page's policy: no inline script or style
// (the pages load /static/console.js and console.css), connections only to
// this server (the live log), forms only to it, and no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// pageHeaders sets the headers of every HTML page.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// funcs are the template helpers.
func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"short": shortSHA,
		// jobPath links a job's page: the layout executor.JobURL gives GitHub.
		"jobPath": executor.JobPath,
		"final":   func(st executor.State) bool { return st.Final() },
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
	}
}

// wantsJSON reports whether the client asked for JSON.
func wantsJSON(c echo.Context) bool {
	return c.QueryParam("format") == "json" ||
		strings.Contains(c.Request().Header.Get(echo.HeaderAccept), echo.MIMEApplicationJSON)
}

// shortSHA is the first 7 characters of a SHA, as GitHub shows it.
func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// lastChange is when a job last changed state.
func lastChange(j executor.Job) time.Time {
	switch {
	case !j.Finished.IsZero():
		return j.Finished
	case !j.Started.IsZero():
		return j.Started
	}
	return j.Created
}

// age says how long ago t was, coarsely: "just now", "5m ago", "3h ago", "2d ago".
func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
}

// roundDuration keeps durations readable: whole seconds above a minute, tenths
// below, milliseconds below a second.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// stepSummary is the public summary of why a step did not finish, from its
// internal error text (StepRun.Error): transport errors name hosts and addresses
// ("dial tcp 10.1.2.3:22: ..."), so only the kind of failure is shown, matched on
// the executor's own error texts. Empty when the step has no error: its exit code
// says the rest.
func stepSummary(st executor.StepRun) string {
	e := st.Error
	switch {
	case e == "":
		return ""
	case e == executor.ErrWatchStopped.Error():
		return "interrupted: deployhook stopped"
	case strings.HasSuffix(e, executor.ErrTimeout.Error()), strings.HasSuffix(e, context.DeadlineExceeded.Error()):
		return "timed out"
	case strings.HasSuffix(e, context.Canceled.Error()):
		return "interrupted"
	case strings.Contains(e, executor.ErrLocked.Error()):
		return "the deploy lock is held by another deploy"
	case st.Name == "connect":
		return "could not connect to the target"
	}
	return "connection lost"
}
