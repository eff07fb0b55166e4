// Package server is deployhook's HTTP front, built on echo: it receives GitHub
// webhooks, turns them into deploy requests for the executor's queue, and shows what
// the deploys did. It acknowledges; it never deploys: no handler starts work.
//
// # Routes
//
//	POST /webhook              a GitHub delivery (see below)
//	GET  /healthz              200 "ok" while the process answers
//	GET  /readyz               200 "ready"; 503 {"error": "not ready: REASON"} while
//	                           the Checker fails or the server is shutting down
//	GET  /                     HTML index: targets with their last job, recent jobs
//	GET  /jobs?target=&limit=  JSON {"jobs": [...]}, newest first (limit 1..200, default 20)
//	GET  /jobs/:id             a job: JSON with "Accept: application/json" or
//	                           ?format=json, else an HTML page; 404 for an unknown id.
//	                           This is the target_url of the job's commit statuses.
//	GET  /badge/TARGET.svg     shields.io-style badge: "deploy | STATE · SHA7 · AGE"
//	GET  /badge/TARGET.json    the same as a shields.io endpoint badge
//	                           (Options.Badges; 404 when off or for an unknown target)
//
// Every error is answered as JSON {"error": "public reason"}; the internal detail
// goes to the log only. Requests are logged without the signature header or body.
//
// # POST /webhook, in order
//
//	401  no X-Hub-Signature-256 (a SHA-1-only X-Hub-Signature is told sha256 is
//	     required); the body is not read
//	415  form-encoded delivery: the webhook's content type must be application/json
//	413  body larger than Options.MaxBody (default 25 MB, GitHub's own cap)
//	401  malformed signature, or no secret matches (no MAC in the answer)
//	400  missing X-GitHub-Event or X-GitHub-Delivery; malformed payload;
//	     a workflow_dispatch input that is not valid
//	200  {"pong": true} for ping
//	200  {"ignored": "reason"}: the delivery must not deploy (tag, deleted branch,
//	     failed run, other event), or no route matches; the reason names the nearest
//	     miss ("repository a/b is not configured", "push to refs/heads/dev: no target
//	     deploys acme/x branch dev", "target production deploys on workflow_run, not
//	     push", "workflow .github/workflows/lint.yml is not in target production's
//	     workflows"), so GitHub's Recent Deliveries explains itself
//	202  {"job", "target", "sha"}: queued; {"jobs": [...]} when several targets match
//	200  {"duplicate": JOB, "target", "sha", "reason"}: nothing new was queued
//	409  a rollback with no previous deploy to return to
//	503  the branch head or rollback SHA could not be looked up, or deployhook is
//	     shutting down; GitHub does not redeliver by itself, so the reason says to
//	     redeliver from the webhook's Recent Deliveries
//
// # Matching deliveries to routes
//
// The repository is compared case-insensitively, the branch exactly.
//
//   - push: routes with DeployOn "push" and that branch.
//   - workflow_run (a completed, successful run on a push, from the repository
//     itself; package webhook ignores the rest): routes with DeployOn
//     "workflow_run", that branch, and the run's workflow path in Workflows.
//   - workflow_dispatch: routes whose DispatchWorkflow is the dispatched workflow's
//     path, on that branch. Inputs: "sha" (optional; a full 40-hex SHA, else the
//     branch head through the Resolver) and "action" ("deploy", the default, or
//     "rollback": without a sha, the target's previous successful deploy through
//     Rollbacks). Dispatches set Trigger.Force.
//
// Every matching route gets one Queue.Enqueue.
package server
