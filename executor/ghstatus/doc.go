// Package ghstatus is everything deployhook says to, or asks of, the GitHub REST
// API: commit statuses and Deployments for the jobs it runs, the head SHA of a
// branch, whether a CI workflow passed on a SHA, and whether a branch contains
// a commit (executor.Commits, through the compare API). It implements
// executor.Reporter on top of go-github v60 and golang.org/x/oauth2.
//
// # What it sends
//
// For every Report, a commit status:
//
//	POST /repos/{owner}/{repo}/statuses/{sha}
//	{"state": ..., "target_url": r.URL, "description": ..., "context": "deploy/<target>"}
//
// target_url and description are left out when empty. The description is cut to
// at most 140 characters (runes) ending in "…": GitHub answers 422 "description
// is too long (maximum is 140 characters)" to a longer one, and the status would
// be lost. Newlines and tabs become spaces.
//
// With Options.Deployments, also a GitHub Deployment per job and a deployment
// status per report. When r.Deployment is 0 the job's Deployment is first looked
// up (GET /repos/{owner}/{repo}/deployments?sha=&environment=&task=deploy, the
// one whose payload.job is r.Job), and created only if there is none:
//
//	POST /repos/{owner}/{repo}/deployments
//	{"ref": sha, "task": "deploy", "auto_merge": false, "required_contexts": [],
//	 "payload": {"job": id}, "environment": env, "description": ...,
//	 "transient_environment": false, "production_environment": true (only when env is "production")}
//
//	POST /repos/{owner}/{repo}/deployments/{id}/statuses
//	{"state": ..., "log_url": r.URL, "description": ..., "environment": env}
//
// auto_merge false keeps GitHub from merging the default branch into the ref;
// required_contexts [] keeps it from refusing the deployment (409) because some
// other status check is still pending: deployhook decides when to deploy. env is
// r.Environment, or r.Target when empty. Do not use an environment name that a
// GitHub Actions job also deploys to, or the two histories interleave.
//
// # State mapping
//
//	executor state   commit status   deployment status
//	queued           pending         queued
//	running          pending         in_progress
//	success          success         success
//	failure          failure         failure
//	error            error           error
//	superseded       error           inactive
//	skipped          success         inactive
//
// A skipped job ran no step because the target's deployed commit already
// contains its SHA: the commit's code is live, so its status is success, while
// its own Deployment is inactive (the environment runs the newer one). A
// superseded or skipped job that never got a Deployment does not get one
// created just to mark it inactive.
//
// # Partial failure and idempotence
//
// Report does its requests in order: commit status, then find-or-create the
// Deployment, then the deployment status. It stops at the first failure and
// returns the Deployment id it knows (r.Deployment, or the one it found or
// created) together with the error. The executor must store a non-zero id even
// when err is not nil (Store.SetDeployment) and pass it back in r.Deployment on
// the next Report for the job; calling Report again with the same r is then
// safe:
//   - the commit status is posted again: GitHub keeps both, identical, and the
//     latest wins (each counts towards GitHub's 1000 statuses per SHA and context);
//   - no second Deployment is created: r.Deployment names it, and if the
//     executor lost the id (a crash between create and store, or a create whose
//     answer never arrived), the lookup by payload.job finds it;
//   - the deployment status is posted again.
//
// A Deployment created by another tool for the same SHA and environment is
// never reused: only payload.job identifies ours.
//
// # Retries
//
// Each request is tried up to Options.MaxTries times. It is retried on a network
// error or a per-try timeout, on 5xx and 408, on 429, and on a 403 that is a rate
// limit. The wait before the next try is:
//   - the primary rate limit (X-RateLimit-Remaining: 0): until X-RateLimit-Reset;
//   - a secondary rate limit: Retry-After seconds, or one minute when GitHub gives
//     no Retry-After (GitHub's advice);
//   - otherwise exponential backoff from Options.Backoff, doubled per try, with
//     jitter (half fixed, half random), at most Options.MaxWait.
//
// A wait longer than Options.MaxWait, or past ctx's deadline, is not waited for:
// Report returns at once. After the last try, or without waiting, the error is a
// plain error: the executor keeps the report in its outbox and calls Report
// again later. Every other 4xx (400, 401, 403 without rate limit, 404, 409, 422,
// …) is not retried and returns an error wrapping executor.ErrPermanent that
// names the request, the HTTP status and GitHub's message. go-github also
// remembers a rate limit between calls and refuses to send before its reset;
// that answer is treated like the rate limit itself.
//
// # Authentication
//
// StaticToken serves a personal access token (fine-grained or classic) and
// NewAppTokenSource a GitHub App installation token, minted from a JWT signed
// with the App's private key, cached, and renewed five minutes before it
// expires. Both are sent as "Authorization: Bearer <token>". No token, JWT or key
// appears in a log line or an error.
//
// # Permissions
//
// A fine-grained token or a GitHub App installation needs, on the deployed
// repositories:
//   - Commit statuses: read and write (commit statuses);
//   - Deployments: read and write (Deployments and their statuses, only with
//     Options.Deployments);
//   - Contents: read (BranchHead, Contains);
//   - Actions: read (WorkflowSucceeded; an App also needs it to receive
//     workflow_run webhooks);
//   - Metadata: read (always granted).
//
// A classic token needs repo:status and repo_deployment for a public repository,
// repo for a private one.
//
// # Redirects, answer sizes and plain http
//
// Requests, the App's token exchange included, go only to the origin (scheme,
// host and port) of the API root: a redirect elsewhere, or from https to http,
// is refused before anything is sent there, so neither the token nor the JWT
// nor a request body ever leaves for another host (a 307 or 308 would re-send
// the body). A redirect within the origin is followed. Every answer is read up
// to MaxBody (8 MiB): a longer one fails the call with an error wrapping
// safehttp.ErrBodyTooLarge, at a bounded cost in memory. The API root must be
// https; http is accepted only for a loopback host (tests, a local proxy).
//
// # GitHub Enterprise Server
//
// Set Options.BaseURL to https://HOST/api/v3/. Any other base URL is used as is.
package ghstatus
