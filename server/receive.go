package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/webhook"
)

// The GitHub delivery headers (github/docs webhook-events-and-payloads.md).
const (
	hdrSignature256 = "X-Hub-Signature-256"
	hdrSignatureSHA = "X-Hub-Signature" // legacy SHA-1: never accepted
	hdrEvent        = "X-GitHub-Event"
	hdrDelivery     = "X-GitHub-Delivery"
)

// keepBuffer is the largest body buffer returned to the pool: most pushes are a few
// KB; a rare 25 MB one should not stay in memory.
const keepBuffer = 4 << 20

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
		Reason    string `json:"reason,omitempty"` // for a duplicate: why
	}
	jobsBody struct {
		Jobs []jobBody `json:"jobs"`
	}
)

// handleWebhook is POST /webhook: verify, parse, match, enqueue, answer. It
// acknowledges only; the deploy runs in the executor.
func (s *Server) handleWebhook(c echo.Context) error {
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

	bp := s.bufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= keepBuffer {
			s.bufs.Put(bp)
		}
	}()
	body, err := s.readBody(c.Response().Writer, req, *bp)
	*bp = body[:0]
	if err != nil {
		return err
	}

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
		s.lg.Info("ping", "delivery", delivery)
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
	return s.enqueue(c, ev, routes, triggers)
}

// readBody reads the whole body into buf (grown as needed), at most MaxBody bytes.
func (s *Server) readBody(w http.ResponseWriter, req *http.Request, buf []byte) ([]byte, error) {
	max := s.opts.MaxBody
	if req.ContentLength > max {
		return buf, s.tooLarge(nil)
	}
	if n := int(req.ContentLength) + 1; req.ContentLength > 0 && cap(buf) < n {
		// +1: the last Read that sees EOF needs room, or it would grow the buffer.
		buf = make([]byte, 0, n)
	}
	r := http.MaxBytesReader(w, req.Body, max)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return buf, s.tooLarge(err)
			}
			return buf, public(http.StatusBadRequest, "cannot read the request body", err)
		}
	}
}

func (s *Server) tooLarge(err error) error {
	return public(http.StatusRequestEntityTooLarge,
		fmt.Sprintf("payload larger than %d bytes (GitHub caps payloads at 25 MB)", s.opts.MaxBody), err)
}

// ignore answers 200 with the reason, so GitHub's delivery log explains itself.
func (s *Server) ignore(c echo.Context, ev webhook.Event, reason string) error {
	s.lg.Info("delivery ignored", "delivery", c.Request().Header.Get(hdrDelivery),
		"event", c.Request().Header.Get(hdrEvent), "repo", ev.Repo, "reason", reason)
	return c.JSON(http.StatusOK, ignoredBody{Ignored: reason})
}

// match returns the routes ev deploys, or none and a reason a person can act on.
func (s *Server) match(ev webhook.Event) ([]Route, string) {
	var sameRepo []Route
	for _, r := range s.opts.Routes {
		if strings.EqualFold(r.Repo, ev.Repo) {
			sameRepo = append(sameRepo, r)
		}
	}
	if len(sameRepo) == 0 {
		return nil, fmt.Sprintf("repository %s is not configured", ev.Repo)
	}
	var matched, sameBranch []Route
	for _, r := range sameRepo {
		if r.Branch != ev.Branch {
			continue
		}
		sameBranch = append(sameBranch, r)
		switch ev.Name {
		case "push":
			if r.DeployOn == DeployOnPush {
				matched = append(matched, r)
			}
		case "workflow_run":
			if r.DeployOn == DeployOnWorkflowRun && slices.Contains(r.Workflows, ev.Workflow) {
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
		if r.DeployOn != DeployOnWorkflowRun {
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
	if !isSHA(base.SHA) {
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
	sha := strings.ToLower(strings.TrimSpace(ev.Inputs["sha"]))
	if sha != "" && !isSHA(sha) {
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
		if err != nil || !isSHA(head) {
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

// enqueue queues one job per route and answers 202 (or 200 for duplicates only).
func (s *Server) enqueue(c echo.Context, ev webhook.Event, routes []Route, triggers []executor.Trigger) error {
	ctx := c.Request().Context()
	answers := make([]jobBody, len(routes))
	fresh := 0
	for i, r := range routes {
		t := triggers[i]
		q, err := s.deps.Queue.Enqueue(ctx, r.Target, t)
		switch {
		case errors.Is(err, executor.ErrClosed):
			return public(http.StatusServiceUnavailable, "deployhook is shutting down; redeliver from the webhook's Recent Deliveries once it is back", err)
		case errors.Is(err, executor.ErrUnknownTarget):
			return public(http.StatusInternalServerError, fmt.Sprintf("target %s is configured for routing but unknown to the queue", r.Target), err)
		case err != nil:
			return public(http.StatusInternalServerError, "cannot queue the deploy; redeliver from the webhook's Recent Deliveries", err)
		}
		a := jobBody{Target: r.Target, SHA: t.SHA}
		if q.Duplicate {
			a.Duplicate, a.Reason = q.Job.ID, q.Reason
			if q.Job.Trigger.SHA != "" {
				a.SHA = q.Job.Trigger.SHA
			}
		} else {
			a.Job = q.Job.ID
			fresh++
		}
		answers[i] = a
		s.lg.Info("delivery queued", "delivery", ev.Delivery, "event", ev.Name, "repo", ev.Repo,
			"target", r.Target, "sha", a.SHA, "job", q.Job.ID, "duplicate", q.Duplicate, "kind", string(t.Kind))
	}
	code := http.StatusAccepted
	if fresh == 0 {
		code = http.StatusOK
	}
	if len(answers) == 1 {
		return c.JSON(code, answers[0])
	}
	return c.JSON(code, jobsBody{Jobs: answers})
}

// by is " by ACTOR", or nothing when the actor is unknown.
func by(actor string) string {
	if actor == "" {
		return ""
	}
	return " by " + actor
}

// isSHA reports whether s is a full 40-hex commit SHA.
func isSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// truncate shortens public echoes of untrusted input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
