// Package server is deployhook's HTTP front, built on echo: it receives GitHub
// webhooks, turns them into deploy requests for the executor's queue, and is the
// operator console that shows what the deploys did and lets people redeploy, roll
// back and cancel. It acknowledges; it never deploys: no handler starts work.
//
// # Routes
//
// Public, for GitHub, load balancers and the sign-in flow:
//
//	POST /webhook              a GitHub delivery (see below)
//	GET  /healthz              200 "ok" while the process answers
//	GET  /readyz               200 "ready"; 503 {"error": "not ready: REASON"} while
//	                           the Checker fails or the server is shutting down
//	ANY  /auth/...             Deps.Auth's sign-in flow (AuthPath)
//	GET  /static/FILE          the pages' script and style sheet
//	GET  /badge/TARGET.svg     shields.io-style badge: "deploy | STATE · SHA7 · AGE"
//	GET  /badge/TARGET.json    the same as a shields.io endpoint badge
//	                           (Options.Badges; 404 when off or for an unknown
//	                           target; behind sign-in with Options.PrivateBadges)
//
// The operator console, for people signed in (Deps.Auth):
//
//	GET  /                     HTML index: targets with their last job, recent jobs
//	GET  /jobs?target=&limit=  JSON {"jobs": [...]}, newest first (limit 1..200, default 20)
//	GET  /jobs/:id             a job: JSON with "Accept: application/json" or
//	                           ?format=json, else an HTML page; 404 for an unknown id.
//	                           This is the target_url of the job's commit statuses
//	                           (executor.JobURL; the path is executor.JobPath).
//	GET  /jobs/:id/events      the job's live log, Server-Sent Events (handleEvents)
//	GET  /jobs/:id/cancel      confirm a cancel; POST it (form: csrf)
//	GET  /targets/:name        the target's deploys, 25 a page (?page=N), with
//	                           commits, compare links and, for writers, buttons
//	GET  /targets/:name/deploy?sha=  confirm a redeploy or rollback; POST it
//	                           (form: sha, csrf): 303 to the new job's page
//
// # Sign-in and access
//
// Without a session (Auth.Who), a page request is answered 303 to
// Auth.SignIn with its path and query, to come back to; a program (JSON by
// Accept, ?format=json or a .json path; an event stream) gets 401 {"error":
// "sign in: ..."}. A person sees the targets whose repository Auth.Access
// says they may read, and jobs of those only; for anything else they get
// the answer of something that does not exist (404), and lists leave it
// out. An access that cannot be decided is denied (503 on a page). An open
// event stream asks again every minute, and closes at the session's expiry
// (Person.Expires) or when the access no longer holds. Actions
// (deploy, cancel) and their confirmation pages need write access (403 for
// a reader); the POSTs also need the session's CSRF token in the form field
// csrf (Person.CSRFValid), and are refused (403) when
// Sec-Fetch-Site or Origin says another site sent them. Each action is
// logged with the person's login, and queued with them as the actor:
// Trigger{Kind: KindRollback or KindManual, Force: true, Reason: "rollback
// by LOGIN in the console"}; the executor's rules decide whether it runs.
//
// Pages carry a Content-Security-Policy without 'unsafe-inline': the
// script that follows a running job's live log and the style sheet are
// files under /static. Without JavaScript a finished job's page is
// complete, and a running one says to reload. A job's live log outlives
// the job while its post-deploy watch runs: the page of a job that the
// journal calls final follows it too (afterEnd), and shows the watch's end
// in place. Only the replica that runs a job has its live log; a page whose
// stream lands on another replica follows the job from the journal, read
// every 500 ms, with the same events (see handleEvents), and a reconnect to
// either kind of replica goes on without showing a line twice.
//
// Every error is answered as JSON {"error": "public reason"}; the internal detail
// goes to the log only. Each request is logged in one line, with its outcome (job,
// ignore reason, internal error), the delivery, event and user agent headers cut
// to 100 bytes, and never the signature header or the body.
//
// Job pages, the job JSON and the live log show a step's output and error
// text to people signed in through a provider who may read the target; in
// the "none" mode (AllowAll), where anyone who reaches the server is signed
// in, only with Options.ShowOutput. Without, a step that did not finish
// shows a public summary ("timed out", "connection lost", "could not
// connect to the target"), never the error text, which may name hosts and
// addresses.
//
// # Before authentication
//
// A body must be read whole before its signature can be checked, so what reading
// costs is bounded (safety invariant 6): nothing is allocated from a client's
// Content-Length; a buffer is taken when the first byte arrives and grows as bytes
// arrive, each growth taken first from a byte budget shared by all requests
// (Options.BodyBudget, 64 MiB); at most Options.MaxReading bodies are read at once;
// a body must arrive within Options.BodyTimeout (10 s, as GitHub gives up after
// 10 s); Serve keeps at most Options.MaxConns connections open and answers one
// past the cap with a minimal 503 before closing it, without stalling the others;
// headers must arrive within 10 s and hold at most 64 KiB.
//
// # POST /webhook, in order
//
//	401  no X-Hub-Signature-256 (a SHA-1-only X-Hub-Signature is told sha256 is
//	     required); the body is not read
//	415  form-encoded delivery: the webhook's content type must be application/json
//	413  body larger than Options.MaxBody (default 25 MB, GitHub's own cap)
//	503  busy: the body budget or the readers are exhausted; at once, with a reason
//	     to redeliver
//	408  the body did not arrive within Options.BodyTimeout
//	401  malformed signature, or no secret matches (no MAC in the answer)
//	400  missing X-GitHub-Event or X-GitHub-Delivery; malformed payload;
//	     a workflow_dispatch input that is not valid
//	200  {"pong": true} for ping
//	200  {"ignored": "reason"}: the delivery must not deploy (tag, deleted branch,
//	     failed run, other event), or no route matches; the reason names the nearest
//	     miss ("repository a/b is not configured", "push to refs/heads/dev: no target
//	     deploys acme/x branch dev", "target production deploys on workflow_run, not
//	     push", "workflow .github/workflows/lint.yml is not in target production's
//	     workflows", "repository a/b has id 2; target production pins id 1"), so
//	     GitHub's Recent Deliveries explains itself; also when the queue refuses an
//	     automatic trigger (Enqueued.Ignored: the body was delivered before under
//	     another GUID, or the target deployed that SHA before)
//	202  {"job", "target", "sha"}: queued; {"jobs": [...]} when several targets
//	     match, each with "job", "duplicate" or "ignored"
//	200  {"duplicate": JOB, "target", "sha", "reason"}: nothing new was queued
//	409  a rollback with no previous deploy to return to
//	503  the branch head or rollback SHA could not be looked up, deployhook is
//	     shutting down, or the journal cannot record the delivery; GitHub does not
//	     redeliver by itself, so the reason says to redeliver from the webhook's
//	     Recent Deliveries
//
// Every trigger queued carries Trigger.BodyHash, an id of the signed body (a
// hash of its verified signature, see bodyID): the signature does not cover
// X-GitHub-Delivery, so the queue recognises an old body replayed under a new
// GUID by it.
//
// # Matching deliveries to routes
//
// The repository name is compared ignoring ASCII case only (a Unicode look-alike
// such as U+212A KELVIN SIGN for k does not match), the branch exactly. A route
// with a RepoID also needs the payload's repository.id to be that id.
//
//   - push: routes with DeployOn executor.DeployOnPush and that branch.
//   - workflow_run (a completed, successful run on a push, from the repository
//     itself; package webhook ignores the rest): routes with DeployOn
//     executor.DeployOnWorkflowRun, that branch, and the run's workflow path in
//     Workflows.
//   - workflow_dispatch: routes whose DispatchWorkflow is the dispatched workflow's
//     path, on that branch. Inputs: "sha" (optional; a full 40-hex SHA in any
//     case, lower-cased as gitsha.Lower does, else the branch head through the
//     Resolver, which must answer one in lower case) and "action" ("deploy", the default, or
//     "rollback": without a sha, the target's previous successful deploy through
//     Rollbacks). Dispatches set Trigger.Force.
//
// Every matching route gets one Queue.Enqueue.
package server
