package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/gitsha"
)

// Limits of the history pages.
const (
	historyPageSize = 25
	// maxHistoryPages keeps a page's journal reads bounded: 40 pages of 25
	// are the 1,000 jobs per target the journal keeps by default.
	maxHistoryPages = 40
)

// historyRow is one deploy on a target's history page.
type historyRow struct {
	Job        jobView
	Commit     *CommitInfo // nil: GitHub did not say (or is not asked)
	CommitURL  string      // the commit on GitHub
	CompareURL string      // the previous successful deploy...this one, for a successful deploy after another
	Rollback   bool        // a successful deploy of another commit than the current one: it may be rolled back to
	Cancel     bool        // not final: it may be cancelled
}

// handleTarget is GET /targets/:name?page=N: the target's deploys, newest
// first, 25 a page: state, commit (linked, with its message and author
// from GitHub when Deps.Commits answers in time), trigger and actor,
// duration, and a compare link between successive successful deploys. A
// person with write access sees buttons (links to the confirmation pages):
// redeploy the current commit, roll back to an earlier successful deploy,
// cancel a job that has not ended.
func (s *Server) handleTarget(c echo.Context) error {
	name := c.Param("name")
	if !s.known(name) {
		return errNoTarget(name)
	}
	rt := s.routeOf(name)
	a, err := s.require(c, rt.Repo, AccessRead, errNoTarget(name))
	if err != nil {
		return err
	}
	page := 1
	if v := c.QueryParam("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxHistoryPages {
			return publicf(http.StatusBadRequest, "page must be a number from 1 to %d", maxHistoryPages)
		}
		page = n
	}
	ctx := c.Request().Context()
	p := person(c)
	end := page * historyPageSize
	jobs, err := s.deps.Journal.Jobs(ctx, name, end+1)
	if err != nil {
		return public(http.StatusInternalServerError, "cannot read the journal", err)
	}
	// The successful deploys among those jobs, and the one before the
	// oldest of them, for the compare links.
	wins, err := s.deps.Journal.Jobs(ctx, name, end+1, executor.StateSuccess)
	if err != nil {
		return public(http.StatusInternalServerError, "cannot read the journal", err)
	}
	var current *executor.Job
	if len(wins) > 0 {
		current = &wins[0]
	}
	previous := map[string]string{} // job id → the SHA of the successful deploy before it
	for i := 0; i+1 < len(wins); i++ {
		previous[wins[i].ID] = wins[i+1].Trigger.SHA
	}
	more := len(jobs) > end
	jobs = jobs[min((page-1)*historyPageSize, len(jobs)):min(end, len(jobs))]

	var shas []string
	for _, j := range jobs {
		shas = append(shas, j.Trigger.SHA)
	}
	infos := s.commits.lookup(ctx, rt.Repo, shas)
	show := s.showOutput(p)
	rows := make([]historyRow, 0, len(jobs))
	for _, j := range jobs {
		r := historyRow{Job: s.view(j, show), CommitURL: s.commitURL(rt.Repo, j.Trigger.SHA)}
		if ci, ok := infos[j.Trigger.SHA]; ok {
			r.Commit = &ci
		}
		if prev, ok := previous[j.ID]; ok && j.State == executor.StateSuccess && prev != j.Trigger.SHA {
			r.CompareURL = s.compareURL(rt.Repo, prev, j.Trigger.SHA)
		}
		if a >= AccessWrite {
			r.Rollback = j.State == executor.StateSuccess && current != nil && j.Trigger.SHA != current.Trigger.SHA
			r.Cancel = !j.State.Final() && s.deps.Live != nil
		}
		rows = append(rows, r)
	}
	var cur *jobView
	if current != nil {
		v := s.view(*current, show)
		cur = &v
	}
	return s.render(c, "target.html", struct {
		Page    pageInfo
		Route   Route
		Current *jobView
		Rows    []historyRow
		Write   bool
		PageNo  int
		Prev    int // 0: none
		Next    int // 0: none
	}{s.pageInfo(c, name+" · deploys"), rt, cur, rows, a >= AccessWrite, page, page - 1, nextPage(more, page)})
}

func nextPage(more bool, page int) int {
	if more && page < maxHistoryPages {
		return page + 1
	}
	return 0
}

// commitURL is sha's page on GitHub.
func (s *Server) commitURL(repo, sha string) string {
	return s.opts.WebURL + "/" + repo + "/commit/" + sha
}

// compareURL is GitHub's comparison of from and to.
func (s *Server) compareURL(repo, from, to string) string {
	return s.opts.WebURL + "/" + repo + "/compare/" + from + "..." + to
}

// deployAction is what a deploy of sha to a target is for the person: a
// redeploy of the commit the target runs, or a rollback to another one.
type deployAction struct {
	Kind    executor.Kind
	Verb    string        // "Redeploy" or "Roll back"
	Before  *executor.Job // the newest successful deploy of sha, if the journal has one
	Current *executor.Job // the target's newest successful deploy
}

// decideDeploy reads what a console deploy of sha to target is.
func (s *Server) decideDeploy(c echo.Context, target, sha string) (deployAction, error) {
	wins, err := s.deps.Journal.Jobs(c.Request().Context(), target, maxHistoryPages*historyPageSize, executor.StateSuccess)
	if err != nil {
		return deployAction{}, public(http.StatusInternalServerError, "cannot read the journal", err)
	}
	d := deployAction{Kind: executor.KindRollback, Verb: "Roll back"}
	for i, j := range wins {
		if i == 0 {
			d.Current = &wins[0]
		}
		if j.Trigger.SHA == sha {
			d.Before = &wins[i]
			break
		}
	}
	if d.Current != nil && d.Current.Trigger.SHA == sha {
		d.Kind, d.Verb = executor.KindManual, "Redeploy"
	}
	return d, nil
}

// deployRoute checks a console deploy request's target: configured, and
// the person may write to it (404 when they may not read it, 403 when they
// may only read).
func (s *Server) deployRoute(c echo.Context) (Route, error) {
	name := c.Param("name")
	if !s.known(name) {
		return Route{}, errNoTarget(name)
	}
	rt := s.routeOf(name)
	if _, err := s.require(c, rt.Repo, AccessWrite, errNoTarget(name)); err != nil {
		return Route{}, err
	}
	return rt, nil
}

// checkSHA refuses anything but a full commit SHA.
func checkSHA(sha string) error {
	if !gitsha.Valid(sha) {
		return publicf(http.StatusBadRequest, "sha must be a full commit SHA (40 lower-case hex digits)")
	}
	return nil
}

// handleDeployConfirm is GET /targets/:name/deploy?sha=: the confirmation
// page of a redeploy or rollback, whose form posts to the same path.
func (s *Server) handleDeployConfirm(c echo.Context) error {
	rt, err := s.deployRoute(c)
	if err != nil {
		return err
	}
	sha := c.QueryParam("sha")
	if err := checkSHA(sha); err != nil {
		return err
	}
	d, err := s.decideDeploy(c, rt.Target, sha)
	if err != nil {
		return err
	}
	q := fmt.Sprintf("%s %s to %s", d.Verb, rt.Target, shortSHA(sha))
	if d.Kind == executor.KindManual {
		q = fmt.Sprintf("Redeploy %s's current commit %s", rt.Target, shortSHA(sha))
	}
	if b := d.Before; b != nil {
		q += fmt.Sprintf(" (deployed %s by %s)?", age(s.deps.Now(), lastChange(*b)), b.Trigger.Actor)
	} else {
		q += fmt.Sprintf(" (never deployed successfully here: it runs only if it is on branch %s)?", rt.Branch)
	}
	return s.renderConfirm(c, d.Verb+" "+rt.Target, q, "/targets/"+rt.Target+"/deploy", "/targets/"+rt.Target,
		map[string]string{"sha": sha})
}

// handleDeploy is POST /targets/:name/deploy (form: sha, csrf): queues a
// redeploy (KindManual) of the commit the target runs, or a rollback
// (KindRollback) to another, forced, with the person as actor. The
// executor's rules decide whether it runs (a person may only go back to a
// commit on the branch or deployed before). It answers 303 to the job's
// page; the queue's refusals are said plainly.
func (s *Server) handleDeploy(c echo.Context) error {
	rt, err := s.deployRoute(c)
	if err != nil {
		return err
	}
	if err := s.checkForm(c); err != nil {
		return err
	}
	sha, p := c.Request().PostForm.Get("sha"), person(c)
	if err := checkSHA(sha); err != nil {
		return err
	}
	d, err := s.decideDeploy(c, rt.Target, sha)
	if err != nil {
		return err
	}
	reason := "rollback by " + p.Login + " in the console"
	if d.Kind == executor.KindManual {
		reason = "redeploy by " + p.Login + " in the console"
	}
	enq, err := s.deps.Queue.Enqueue(c.Request().Context(), rt.Target, executor.Trigger{
		Kind: d.Kind, Repo: rt.Repo, Branch: rt.Branch, SHA: sha,
		Actor: p.Login, Reason: reason, Force: true,
	})
	if err != nil {
		return queueError(err)
	}
	if enq.Ignored != "" {
		return publicf(http.StatusConflict, "not queued: %s", enq.Ignored)
	}
	s.lg.Info("console action", "action", string(d.Kind), "login", p.Login, "target", rt.Target,
		"sha", sha, "job", enq.Job.ID, "duplicate", enq.Duplicate)
	note(c, slog.String("job", enq.Job.ID))
	return c.Redirect(http.StatusSeeOther, executor.JobPath(enq.Job.ID))
}

// queueError is the public answer to an error of Queue.Enqueue.
func queueError(err error) error {
	switch {
	case errors.Is(err, executor.ErrUnknownTarget):
		return public(http.StatusNotFound, "the queue does not know this target", err)
	case errors.Is(err, executor.ErrClosed):
		return public(http.StatusServiceUnavailable, "deployhook is shutting down: try again in a minute", err)
	case errors.Is(err, executor.ErrJournal):
		return public(http.StatusServiceUnavailable, "the journal cannot record the deploy now: try again later", err)
	}
	return public(http.StatusInternalServerError, "could not queue the deploy", err)
}

// cancelJob reads job :id for a cancel: the person needs write access to
// its target, and it must not have ended.
func (s *Server) cancelJob(c echo.Context) (executor.Job, error) {
	j, _, err := s.readJob(c, c.Param("id"), AccessWrite)
	if err != nil {
		return executor.Job{}, err
	}
	if j.State.Final() {
		return executor.Job{}, publicf(http.StatusConflict, "job %s has ended: %s", j.ID, j.State)
	}
	if s.deps.Live == nil {
		return executor.Job{}, publicf(http.StatusServiceUnavailable, "this deployhook cannot cancel jobs")
	}
	return j, nil
}

// handleCancelConfirm is GET /jobs/:id/cancel: the confirmation page of a
// cancel, whose form posts to the same path.
func (s *Server) handleCancelConfirm(c echo.Context) error {
	j, err := s.cancelJob(c)
	if err != nil {
		return err
	}
	q := fmt.Sprintf("Cancel the deploy of %s to %s (job %s, %s since %s)?", shortSHA(j.Trigger.SHA), j.Target, j.ID,
		j.State, age(s.deps.Now(), lastChange(j)))
	if j.State == executor.StateRunning {
		q += " Its steps are stopped; if it had changed the target, it rolls back."
	}
	return s.renderConfirm(c, "Cancel job "+j.ID, q, executor.JobPath(j.ID)+"/cancel", executor.JobPath(j.ID), nil)
}

// handleCancel is POST /jobs/:id/cancel (form: csrf): cancels the job
// through Live with the person as actor, and answers 303 to its page.
func (s *Server) handleCancel(c echo.Context) error {
	j, err := s.cancelJob(c)
	if err != nil {
		return err
	}
	if err := s.checkForm(c); err != nil {
		return err
	}
	p := person(c)
	_, err = s.deps.Live.Cancel(c.Request().Context(), j.ID, p.Login)
	switch {
	case errors.Is(err, executor.ErrFinal):
		return public(http.StatusConflict, "job "+j.ID+" has already ended", err)
	case errors.Is(err, executor.ErrNotFound):
		return public(http.StatusConflict, "job "+j.ID+" is not run by this deployhook process: try again in a minute", err)
	case err != nil:
		return public(http.StatusInternalServerError, "could not cancel job "+j.ID, err)
	}
	s.lg.Info("console action", "action", "cancel", "login", p.Login, "target", j.Target, "sha", j.Trigger.SHA, "job", j.ID)
	return c.Redirect(http.StatusSeeOther, executor.JobPath(j.ID))
}

// renderConfirm renders a confirmation page: the question, and a form that
// posts fields and the session's CSRF token to action, or goes back.
func (s *Server) renderConfirm(c echo.Context, title, question, action, back string, fields map[string]string) error {
	return s.render(c, "confirm.html", struct {
		Page     pageInfo
		Question string
		Action   string
		Back     string
		Fields   map[string]string
	}{s.pageInfo(c, title), question, action, back, fields})
}
