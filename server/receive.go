package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/gitsha"
	"github.com/deployhook/deployhook/webhook"
)

// The GitHub delivery headers (github/docs webhook-events-and-payloads.md).
const (
	hdrSignature256 = "X-Hub-Signature-256"
	hdrSignatureSHA = "X-Hub-Signature" // legacy SHA-1: never accepted
	hdrEvent        = "X-GitHub-Event"
	hdrDelivery     = "X-GitHub-Delivery"
)

// The answers of POST /webhook that are not errors.
type (
	ignoredBody struct {
		Ignored string `json:"ignored"`
	}
	pongBody struct {
		Pong bool `json:"pong"`
	}
	// jobBody is one enqueued job, or a duplicate.
	jobBody struct {
		Job       string `json:"job,omitempty"`
		Duplicate string `json:"duplicate,omitempty"` // the existing job's id
		Target    string `json:"target"`
		SHA       string `json:"sha"`
		Reason    string `json:"reason,omitempty"`  // for a duplicate: why
		Ignored   string `json:"ignored,omitempty"` // the queue refused an automatic trigger: why
	}
	jobsBody struct {
		Jobs []jobBody `json:"jobs"`
	}
)

// handleWebhook is POST /webhook: verify, parse, match, enqueue, answer. It
// acknowledges only; the deploy runs in the executor.
func (s *Server) handleWebhook(c echo.Context) (err error) {
	defer s.observeFailure(c, &err)
	if s.draining.Load() {
		// Before the body is read: nothing would be queued anyway.
		return publicf(http.StatusServiceUnavailable, "%s", msgShuttingDown)
	}
	req := c.Request()
	sig := req.Header.Get(hdrSignature256)
	if sig == "" {
		// Rejected before the body is read: nothing unsigned is worth reading.
		if req.Header.Get(hdrSignatureSHA) != "" {
			return public(http.StatusUnauthorized, "missing X-Hub-Signature-256: deployhook requires the sha256 signature; X-Hub-Signature (SHA-1) is not accepted", webhook.ErrNoSignature)
		}
		return public(http.StatusUnauthorized, "missing X-Hub-Signature-256: set a secret on the webhook", webhook.ErrNoSignature)
	}
	if ct := req.Header.Get(echo.HeaderContentType); strings.HasPrefix(ct, echo.MIMEApplicationForm) {
		return publicf(http.StatusUnsupportedMediaType, "content type %s: set the webhook's content type to application/json", echo.MIMEApplicationForm)
	}

	b, err := s.intake.read(c.Response(), req)
	defer b.Release()
	if err != nil {
		return err
	}
	body := b.Bytes()

	if err := webhook.Verify(body, sig, s.opts.Secrets...); err != nil {
		switch {
		case errors.Is(err, webhook.ErrMalformedSignature):
			return public(http.StatusUnauthorized, "malformed X-Hub-Signature-256: want sha256= and 64 lower-case hex digits", err)
		case errors.Is(err, webhook.ErrNoSecret): // New refuses this; never skip the check
			return public(http.StatusInternalServerError, "webhook secret not configured", err)
		}
		return public(http.StatusUnauthorized, "signature does not match: check the webhook's secret", err)
	}

	event, delivery := req.Header.Get(hdrEvent), req.Header.Get(hdrDelivery)
	if event == "" || delivery == "" {
		return publicf(http.StatusBadRequest, "missing %s or %s header", hdrEvent, hdrDelivery)
	}
	ev, err := webhook.Parse(event, delivery, body)
	if err != nil {
		var ig *webhook.Ignored
		if errors.As(err, &ig) {
			return s.ignore(c, ev, ig.Reason)
		}
		// Parse's errors are public by contract: clipped, no secrets.
		return public(http.StatusBadRequest, "malformed payload: "+err.Error(), nil)
	}
	if ev.Name == "ping" {
		note(c, slog.Bool("pong", true))
		s.delivered(DeliveryPing)
		return c.JSON(http.StatusOK, pongBody{Pong: true})
	}

	routes, reason := s.match(ev)
	if len(routes) == 0 {
		return s.ignore(c, ev, reason)
	}
	triggers, err := s.triggers(req.Context(), ev, routes)
	if err != nil {
		return err
	}
	// Only now, for a delivery that may deploy: the executor recognises a signed
	// body replayed under a new delivery GUID by this id.
	hash := bodyID(sig)
	for i := range triggers {
		triggers[i].BodyHash = hash
	}
	return s.enqueue(c, ev, routes, triggers)
}

// bodyID identifies a verified delivery's body for Trigger.BodyHash: the
// SHA-256 of its X-Hub-Signature-256 value. The signature is the HMAC-SHA256 of
// the body, already computed and checked, so identical bodies signed with the
// same secret share an id at no cost proportional to the body (hashing a
// 292 KB body again cost more than verifying it), and a replay, which must
// carry the original signature, always has the original's id. Hashing it again
// keeps the MAC itself out of the journal. Verify accepts only the canonical
// form (sha256= and 64 lower-case hex digits), so the same MAC is always the
// same string.
func bodyID(sig string) string {
	sum := sha256.Sum256([]byte("deployhook delivery body\x00" + sig))
	return hex.EncodeToString(sum[:])
}

// ignore answers 200 with the reason, so GitHub's delivery log explains itself.
func (s *Server) ignore(c echo.Context, ev webhook.Event, reason string) error {
	note(c, slog.String("repo", ev.Repo), slog.String("ignored", reason))
	s.delivered(DeliveryIgnored)
	return c.JSON(http.StatusOK, ignoredBody{Ignored: reason})
}

// match returns the routes ev deploys, or none and a reason a person can act on.
func (s *Server) match(ev webhook.Event) ([]Route, string) {
	var sameRepo []Route
	var named *Route // the first route with the repository's name
	for i, r := range s.opts.Routes {
		if !equalFoldASCII(r.Repo, ev.Repo) {
			continue
		}
		if named == nil {
			named = &s.opts.Routes[i]
		}
		if r.RepoID == 0 || r.RepoID == ev.RepoID {
			sameRepo = append(sameRepo, r)
		}
	}
	switch {
	case named == nil:
		return nil, fmt.Sprintf("repository %s is not configured", ev.Repo)
	case len(sameRepo) == 0:
		// The name matches, the pinned id does not: a repository deleted and
		// re-created, or renamed onto the old name.
		r := named
		if ev.RepoID == 0 {
			return nil, fmt.Sprintf("payload has no repository.id; target %s pins repository id %d", r.Target, r.RepoID)
		}
		return nil, fmt.Sprintf("repository %s has id %d; target %s pins id %d", ev.Repo, ev.RepoID, r.Target, r.RepoID)
	}
	var matched, sameBranch []Route
	for _, r := range sameRepo {
		if r.Branch != ev.Branch {
			continue
		}
		sameBranch = append(sameBranch, r)
		switch ev.Name {
		case "push":
			if r.DeployOn == executor.DeployOnPush {
				matched = append(matched, r)
			}
		case "workflow_run":
			if r.DeployOn == executor.DeployOnWorkflowRun && slices.Contains(r.Workflows, ev.Workflow) {
				matched = append(matched, r)
			}
		case "workflow_dispatch":
			if r.DispatchWorkflow != "" && r.DispatchWorkflow == ev.Workflow {
				matched = append(matched, r)
			}
		}
	}
	if len(matched) > 0 {
		return matched, ""
	}
	// Nothing deploys: say why, naming the nearest miss.
	switch ev.Name {
	case "push", "workflow_run", "workflow_dispatch":
	default:
		return nil, fmt.Sprintf("event %s does not deploy", ev.Name)
	}
	if len(sameBranch) == 0 {
		prep := "on"
		if ev.Name == "push" {
			prep = "to"
		}
		return nil, fmt.Sprintf("%s %s refs/heads/%s: no target deploys %s branch %s", ev.Name, prep, ev.Branch, ev.Repo, ev.Branch)
	}
	r := sameBranch[0]
	switch ev.Name {
	case "push":
		return nil, fmt.Sprintf("target %s deploys on %s, not push", r.Target, r.DeployOn)
	case "workflow_run":
		if r.DeployOn != executor.DeployOnWorkflowRun {
			return nil, fmt.Sprintf("target %s deploys on %s, not workflow_run", r.Target, r.DeployOn)
		}
		return nil, fmt.Sprintf("workflow %s is not in target %s's workflows", ev.Workflow, r.Target)
	default: // workflow_dispatch
		if r.DispatchWorkflow == "" {
			return nil, fmt.Sprintf("target %s has no dispatch workflow", r.Target)
		}
		return nil, fmt.Sprintf("workflow %s is not target %s's dispatch workflow (%s)", ev.Workflow, r.Target, r.DispatchWorkflow)
	}
}

// triggers builds the trigger for each route. A workflow_dispatch may resolve the
// branch head or a rollback SHA through the API.
func (s *Server) triggers(ctx context.Context, ev webhook.Event, routes []Route) ([]executor.Trigger, error) {
	base := executor.Trigger{
		Repo:     ev.Repo,
		Branch:   ev.Branch,
		SHA:      ev.SHA,
		Delivery: ev.Delivery,
		Actor:    ev.Actor,
	}
	out := make([]executor.Trigger, len(routes))
	switch ev.Name {
	case "push":
		base.Kind = executor.KindPush
		base.Reason = "push" + by(ev.Actor)
	case "workflow_run":
		base.Kind = executor.KindWorkflowRun
		base.Reason = "CI run #" + strconv.Itoa(ev.RunNumber) + " passed"
		if ev.RunAttempt > 1 {
			base.Reason += " (attempt " + strconv.Itoa(ev.RunAttempt) + ")"
		}
	case "workflow_dispatch":
		return s.dispatchTriggers(ctx, ev, base, routes)
	}
	if !gitsha.Valid(base.SHA) {
		return nil, publicf(http.StatusBadRequest, "%s payload has no valid commit SHA", ev.Name)
	}
	for i := range out {
		out[i] = base
	}
	return out, nil
}

// dispatchTriggers reads the inputs of a workflow_dispatch: sha (optional, 40 hex;
// empty: the branch head, or for a rollback the target's previous deploy) and
// action (deploy, the default, or rollback).
func (s *Server) dispatchTriggers(ctx context.Context, ev webhook.Event, base executor.Trigger, routes []Route) ([]executor.Trigger, error) {
	// A person typed it: any case names the commit (see gitsha).
	sha := gitsha.Lower(strings.TrimSpace(ev.Inputs["sha"]))
	if sha != "" && !gitsha.Valid(sha) {
		return nil, publicf(http.StatusBadRequest, "input sha %q is not a full 40-hex commit SHA", truncate(ev.Inputs["sha"], 64))
	}
	action := strings.TrimSpace(ev.Inputs["action"])
	base.Force = true
	switch action {
	case "", "deploy":
		base.Kind = executor.KindWorkflowDispatch
		base.Reason = "manual deploy" + by(ev.Actor) + " from Actions"
	case "rollback":
		base.Kind = executor.KindRollback
		base.Reason = "rollback" + by(ev.Actor) + " from Actions"
	default:
		return nil, publicf(http.StatusBadRequest, "input action %q: want deploy or rollback", truncate(action, 64))
	}
	if sha == "" && action != "rollback" {
		rctx, cancel := context.WithTimeout(ctx, s.opts.ResolveTimeout)
		head, err := s.deps.Resolver.BranchHead(rctx, ev.Repo, ev.Branch)
		cancel()
		if err != nil || !gitsha.Valid(head) {
			if err == nil {
				err = fmt.Errorf("resolver returned %q", head)
			}
			return nil, public(http.StatusServiceUnavailable,
				fmt.Sprintf("cannot resolve the head of branch %s on GitHub; redeliver from the webhook's Recent Deliveries", ev.Branch), err)
		}
		sha = head
	}
	out := make([]executor.Trigger, len(routes))
	for i, r := range routes {
		t := base
		t.SHA = sha
		if t.SHA == "" { // rollback to the previous deploy
			rctx, cancel := context.WithTimeout(ctx, s.opts.ResolveTimeout)
			prev, err := s.deps.Rollbacks.RollbackSHA(rctx, r.Target)
			cancel()
			switch {
			case errors.Is(err, executor.ErrNotFound):
				return nil, public(http.StatusConflict, fmt.Sprintf("target %s has no previous successful deploy to roll back to", r.Target), err)
			case err != nil:
				return nil, public(http.StatusServiceUnavailable,
					fmt.Sprintf("cannot find target %s's previous deploy; redeliver from the webhook's Recent Deliveries", r.Target), err)
			}
			t.SHA = prev
		}
		out[i] = t
	}
	return out, nil
}

// enqueue queues one job per route and answers 202, or 200 when nothing new was
// queued (duplicates, or triggers the queue ignores).
func (s *Server) enqueue(c echo.Context, ev webhook.Event, routes []Route, triggers []executor.Trigger) error {
	if s.draining.Load() {
		// The body arrived after Drain: queue nothing, so no job waits for
		// the next start while GitHub's log says it was accepted.
		return publicf(http.StatusServiceUnavailable, "%s", msgShuttingDown)
	}
	ctx := c.Request().Context()
	answers := make([]jobBody, len(routes))
	fresh := 0
	for i, r := range routes {
		t := triggers[i]
		q, err := s.deps.Queue.Enqueue(ctx, r.Target, t)
		if err != nil {
			return enqueueError(r.Target, err)
		}
		answers[i] = answer(r.Target, t, q)
		if answers[i].Job != "" {
			fresh++
		}
	}
	s.noteJobs(c, ev, triggers[0].Kind, answers)
	s.delivered(deliveryOf(answers))
	code := http.StatusAccepted
	if fresh == 0 {
		code = http.StatusOK
	}
	if len(answers) == 1 {
		if a := answers[0]; a.Ignored != "" {
			return c.JSON(code, ignoredBody{Ignored: a.Ignored})
		}
		return c.JSON(code, answers[0])
	}
	return c.JSON(code, jobsBody{Jobs: answers})
}

// answer is the public answer for one route's Enqueue.
func answer(target string, t executor.Trigger, q executor.Enqueued) jobBody {
	a := jobBody{Target: target, SHA: t.SHA}
	switch {
	case q.Ignored != "":
		a.Ignored = q.Ignored
	case q.Duplicate:
		a.Duplicate, a.Reason = q.Job.ID, q.Reason
		if q.Job.Trigger.SHA != "" {
			a.SHA = q.Job.Trigger.SHA
		}
	default:
		a.Job = q.Job.ID
	}
	return a
}

// msgShuttingDown answers a delivery that arrives while deployhook shuts down.
const msgShuttingDown = "deployhook is shutting down; redeliver from the webhook's Recent Deliveries once it is back"

// enqueueError is the public error for a failed Enqueue. Any failure other than
// shutting down or a target the queue does not know is the journal's (it could
// not record the delivery: disk full, read-only): 503, so that GitHub's delivery
// log shows it and a person redelivers once deployhook can write again. Never
// 202: a delivery that was not recorded would be lost on a restart.
func enqueueError(target string, err error) error {
	switch {
	case errors.Is(err, executor.ErrClosed):
		return public(http.StatusServiceUnavailable, msgShuttingDown, err)
	case errors.Is(err, executor.ErrUnknownTarget):
		return public(http.StatusInternalServerError, fmt.Sprintf("target %s is configured for routing but unknown to the queue", target), err)
	}
	return public(http.StatusServiceUnavailable, "deployhook cannot record deliveries right now; redeliver later from the webhook's Recent Deliveries", err)
}

// noteJobs adds what was queued to the request's log line: with one route, its
// target, SHA and job (the fields every job line carries); with several, the
// answers.
func (s *Server) noteJobs(c echo.Context, ev webhook.Event, kind executor.Kind, answers []jobBody) {
	if len(answers) != 1 {
		note(c, slog.String("repo", ev.Repo), slog.String("kind", string(kind)), slog.Any("jobs", answers))
		return
	}
	a := answers[0]
	attrs := []slog.Attr{slog.String("repo", ev.Repo), slog.String("kind", string(kind)),
		slog.String("target", a.Target), slog.String("sha", a.SHA)}
	switch {
	case a.Ignored != "":
		attrs = append(attrs, slog.String("ignored", a.Ignored))
	case a.Duplicate != "":
		attrs = append(attrs, slog.String("job", a.Duplicate), slog.String("duplicate", a.Reason))
	default:
		attrs = append(attrs, slog.String("job", a.Job))
	}
	note(c, attrs...)
}

// by is " by ACTOR", or nothing when the actor is unknown.
func by(actor string) string {
	if actor == "" {
		return ""
	}
	return " by " + actor
}

// truncate shortens public echoes and logged values of untrusted input to at
// most n bytes and an ellipsis, cutting on a UTF-8 character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// equalFoldASCII reports whether a and b are equal ignoring the case of ASCII
// letters only. GitHub's names are ASCII; strings.EqualFold would also fold
// Unicode (U+212A KELVIN SIGN equals "k"), letting a look-alike name match.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
