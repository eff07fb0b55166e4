// Command deployhook deploys a repository to a Google Compute Engine VM when GitHub
// says so.
//
// GitHub sends a signed webhook (a push to the deployed branch, a CI workflow run
// that passed, a manual workflow_dispatch). deployhook verifies the signature,
// matches the delivery to a target, and queues one deploy (server, webhook). The
// executor runs the target's steps on the VM over SSH through Identity-Aware Proxy
// (executor/remote, executor/iap, executor/gce), verifies the result, rolls back
// when a step fails, and reports every state to GitHub as a commit status and a
// GitHub Deployment (executor/ghstatus), with the SQLite journal (executor/store)
// as the source of truth across restarts.
//
// Usage:
//
//	deployhook serve   --config FILE [--listen ADDR] [--data-dir DIR]
//	deployhook deploy  --config FILE --target NAME [--sha SHA [--force]]
//	deployhook rollback --config FILE --target NAME [--to SHA [--force]]
//	deployhook status  --config FILE [--target NAME]
//	deployhook ssh     --config FILE --target NAME
//	deployhook tunnel  --config FILE --target NAME --listen 127.0.0.1:PORT
//	deployhook check   --config FILE
//	deployhook send-test-webhook --url URL [--event push] [--sha SHA]
//	deployhook version
//
// A deploy or rollback from the command line takes a commit on the target's
// branch or one the target deployed successfully before; --force deploys any
// other commit on purpose (executor.Trigger.AnyCommit). No webhook can set it.
//
// This package is the only one that imports every other: it reads the
// configuration (config), builds each part with its options, and wires them.
// Before the journal is opened, data_dir is checked (config.PrepareDataDir), and
// secret or key files that others can read are named in the log
// (config.Config.FileWarnings).
//
// # A tour: one push, from GitHub to its commit status
//
// This tour follows one webhook through the code in the order it travels, and
// names the file and the function at each stop, so a newcomer knows where to
// read first. `make run` serves the local demo and `make send-test-webhook`
// sends it such a push: the log lines "http request", "job queued", "deploy
// started", "step finished", "deploy finished" and "report (not sent: no GitHub
// credentials)" mark the stops below.
//
// # Start-up
//
// main (main.go) makes a context that SIGINT and SIGTERM cancel and calls run,
// which hands the command line to cobra. For serve, env.load reads and validates
// the configuration ([config.Load]) and makes the logger (env.logger: JSON with
// the field names Cloud Logging reads, or text on a terminal). env.serve then
// calls env.assemble, which opens the journal ([store.Open]: an SQLite file in
// data_dir, its schema migrated), makes the reporter ([ghstatus.New], or
// [ghstatus.LogOnly] when github.report is false, as in the demo), one transport
// per target (newTransports, transports.go) and the [executor.Executor]
// ([executor.New]). It builds the HTTP server ([server.New]) on top, starts the
// executor ([executor.Executor.Run]) and the server ([server.Server.Serve]) in
// goroutines it waits for, and prints the address it listens on.
//
// # Receiving: server/server.go, listener.go, middleware.go, intake.go
//
// [server.Server.Serve] accepts connections through a listener that caps how many
// are open (limitConns in listener.go). Every request passes logRequests
// (middleware.go), which writes the one log line per request, and recoverPanics.
// POST /webhook is handleWebhook in server/receive.go. It refuses a delivery
// without X-Hub-Signature-256 before reading the body, then reads the body
// through the intake (intake.read in intake.go): buffers grow as bytes arrive,
// under a byte budget shared by all requests, a cap on bodies read at once and a
// read deadline, because nothing is authenticated yet.
//
// # Verifying and parsing: webhook/webhook.go, scan.go
//
// handleWebhook calls [webhook.Verify], the HMAC-SHA256 of the body under each
// configured secret, in constant time, and only then [webhook.Parse], which
// reads just the fields a deploy needs with the scanner in webhook/scan.go and
// returns a [webhook.Event], or a [webhook.Ignored] with the reason (a tag, a
// deleted branch, a failed CI run, another event). Every error becomes a
// public answer (server/errors.go) whose text never holds a MAC, a host or
// stderr; the detail goes to the log.
//
// # Deciding: server/receive.go
//
// Server.match picks the routes (one per configured target) the event
// deploys: repository (and repo_id), branch, deploy_on and workflows; a miss is
// answered 200 {"ignored": reason} so GitHub's delivery log explains itself.
// Server.triggers turns the event into one [executor.Trigger] per route (a
// workflow_dispatch without a sha asks GitHub for the branch head, a rollback
// asks the executor for the previous deploy), and bodyID gives each the id of
// the signed body, which recognises a replay under a new delivery id. Server.enqueue
// hands each trigger to [executor.Executor.Enqueue] and answers 202 with the job,
// or 200 for a duplicate or an ignored trigger. The handler never deploys.
//
// # Recording: executor/executor.go, executor/store
//
// [executor.Executor.Enqueue] keeps one lane per target: at most one job running
// and one waiting. The same commit running, queued or live is a duplicate; an
// automatic trigger of a commit deployed before is ignored ([store.Store.Deployed]).
// Otherwise the job is recorded with [store.Store.CreateJob], which in one
// transaction writes the job, the delivery id and body id (a delivery seen
// before is [executor.ErrDuplicate]) and the "queued" report owed to GitHub.
// A job already waiting is superseded by the new one. Only then does the
// handler answer: what GitHub was told is in the journal.
//
// # Queueing and running: executor/run.go
//
// Each lane's worker (Executor.work) takes the waiting job and runs it
// (Executor.run, run.go): it records the job running, and deploy.execute opens a
// session on the target through the [executor.Transport], which takes the deploy
// lock there; reads the commit the target runs (the default sequence's
// current-SHA probe, else the last successful deploy); decides from those facts whether the
// commit may deploy at all (admit: production moves forward only); runs the
// steps one by one (deploy.step, each a [executor.Command] with its own timeout)
// and, when one exits non-zero after the checkpoint, the same steps for the
// previous commit (needsRollback). outcome, a pure function of what happened, gives the job's final
// state and public description, and Executor.end writes them to the journal
// with the report they owe. The default sequence's steps (preflight, fetch,
// checkout, sync, restart, verify) come from [executor.Sequence.Steps]
// (sequence.go).
//
// # Reaching the VM: executor/remote, executor/gcp (gce, oslogin, iap)
//
// The transport for each target is chosen at start-up in transports.go:
// [remote.Local] runs the steps on this machine (the demo), [remote.SSH] on a host
// it dials over TCP, and [gcp.Transport] on a Compute Engine VM: for each deploy
// it looks the instance up once (executor/gce), pins its host keys by the
// strategy chosen in [gcp.New], with ssh.oslogin imports a key made for this
// deploy (executor/oslogin) and deletes it when the session closes, and gives
// [remote.SSH] a dialer that opens a tunnel through Identity-Aware Proxy
// ([iap.Dial]). In both remote transports every step becomes one command line
// (executor/remote/command.go) whose wrapper kills the step's whole process tree
// on timeout, on cancel and when the connection drops, and the deploy lock is a
// flock on the target (lock.go, session.go) released only once no step process is
// left.
//
// # Reporting: executor/outbox.go, executor/ghstatus
//
// Every state change owes a report in the same transaction that records it
// (the journal's outbox). The sender (Executor.send, outbox.go) sends owed
// reports oldest first, skips those a later report made stale (staleReports),
// and backs off while GitHub fails: a GitHub outage never blocks a deploy, and
// what is owed survives a restart. [ghstatus.Client.Report] sets the commit
// status deploy/TARGET, whose link is the job's page, and the job's GitHub
// Deployment and its status. The page is GET /jobs/ID (handleJob,
// server/pages.go), read from the journal; /readyz is the readiness type
// (main.go) over [executor.Executor.Ready].
//
// # Restarting: executor/owner.go, executor/journal.go
//
// Each deployhook process (the service, or a deployhook deploy) owns its jobs
// under a lease it renews in the journal ([store.Store.Beat], Executor.leaseLoop).
// When [executor.Executor.Run] starts, Executor.sweep adopts the unfinished jobs
// of owners whose lease expired ([store.Store.Orphans], [store.Store.Adopt]):
// orphanAction ends a job that was running as error ("interrupted") and queues a
// waiting one again; loadCurrent learns what each target runs from its last
// successful deploy. A job outcome the journal refused (a full disk) is kept in
// memory and written by the repair loop (journal.go) when the journal accepts
// writes again; until then /readyz fails with the reason.
//
// # Shutting down
//
// When the context ends, env.serve stops intake first ([server.Server.Shutdown]),
// then lets [executor.Executor.Run] finish: the running deploy gets the grace
// period, then is cancelled and reported as an error; outcomes are written,
// owed reports sent as far as they can be, and the lease given up. The journal
// is closed last, and deployhook exits 0.
package main
