// Package executor is the core of deployhook: it turns a trigger into exactly one
// deploy job per target, runs the job's steps on the target through a Transport,
// rolls back when a step after the checkpoint fails, and reports every state change
// through a Reporter, with the journal (Store) as the source of truth.
//
// # Queue
//
// Each target has one worker. At most one job runs per target and at most one
// waits: a newer SHA replaces the waiting job, which ends Superseded (on GitHub:
// commit status "error", "superseded by <sha7>"; its Deployment "inactive"). A
// delivery GUID seen before, or a SHA already waiting or running for the target,
// adds nothing and returns the existing job (Enqueued.Duplicate).
//
// Every job that is reported pending is also reported final: success, failure,
// error, superseded or skipped. Reports go through an outbox in the journal, so a
// GitHub outage never blocks a deploy and unsent reports survive a restart.
//
// # Production moves forward only
//
// An automatic trigger (push, workflow_run, the reconciler) of a SHA the target
// runs or deployed successfully before, or whose webhook body was recorded
// before under another delivery GUID (a replay: the signature does not cover
// the GUID), records nothing and is answered Enqueued.Ignored. Before any step
// of an automatic job, the executor asks whether the deployed commit already
// contains the SHA (Target.Contains on the target, else Options.Commits on
// GitHub): if so the job ends Skipped ("already live: contained in deployed
// def5678") and nothing runs; if that cannot be told, it ends Error and nothing
// runs. A person (dispatch, rollback, the CLI) may go back, but only to a commit
// on the branch or one the target deployed successfully before, unless
// Trigger.AnyCommit. Decisions are pure functions (admit, outcome) applied by
// the worker, which owns its job; the lane only keeps snapshots of it.
//
// # Watch
//
// A target with a Watch keeps checking after a successful deploy, which is
// final and reported at once: the lane's worker runs the check every
// Watch.Every until Watch.For has passed, and is free for a newer job, which
// ends the watch before it starts. Watch.Trips degraded checks in a row roll
// the job back under the deploy lock, as after a failed step past the
// checkpoint, and the job ends failure ("rolled back after 6 min: 4 of 5 runs
// failed since deploy, 0 of 9 before"): the one case of a final job changing
// state. A watch whose deployhook stopped (killed, restarted, a replica that
// died) is resumed by the next one, at start-up recovery or by the lane's new
// holder, for the rest of Watch.For, when its job is still the target's
// newest; else its step is ended and the job stays a success. See Watch.
//
// # Owners
//
// Every process that runs the executor owns the jobs it creates, and holds a
// lease on them in the journal that it renews every Lease/3. At start and then
// every Lease/3, it adopts (compare-and-set) the queued and running jobs of
// owners whose lease expired: running ones end Error ("interrupted: …"),
// queued ones are run again by a service and ended by a command-line deploy.
// A live owner's jobs are never touched, so a service restart leaves a running
// CLI deploy alone, and a CLI killed with -9 has its job ended within about a
// lease and a third.
//
// # Journal faults
//
// When the journal refuses writes (disk full, read-only file system), a running
// deploy still finishes on the target; its outcome is kept in memory and
// written, with its owed report, as soon as the journal accepts writes again,
// and the lane starts no new job before. Ready fails meanwhile, naming the
// cause, and Enqueue returns ErrJournal. Final jobs are pruned after
// Options.Retain (and beyond Options.RetainJobs per target), at start and
// hourly, except each target's last successful deploy.
//
// # Notices
//
// A target's NoticeRule may announce, on chat channels (Options.Notifiers,
// e.g. Slack and Google Chat through executor/notify), a failure (a job that
// ended failure or error), a rollback (one whose description says it rolled
// back) and a recovery (the first success after a failure or an error). The
// notices are owed in the outbox in the same transaction as the job's final
// state, one Report per channel (Report.Notify names it; "" is GitHub), and
// each channel has its own sender and backoff, so a channel that is down
// delays neither the deploys nor GitHub's reports, nor they it. A channel's
// refusal (ErrPermanent: a 4xx) is logged and settled; any other error is
// retried; an attempt under way at shutdown is let finish and recorded, so
// it is not sent twice.
//
// # Live logs and cancel
//
// A step's output is cut into lines as it arrives, each redacted against
// Options.Redact, and published to the job's live log (Follow: events with
// IDs, resumable after a reconnect, a slow reader dropped rather than
// waited for) and written to the journal at most every 250 ms while the step
// runs. Each step keeps at most Options.OutputLimit: its first quarter and its
// end, with a marker line for the cut middle. Cancel ends a queued job at
// once, or kills a running job's step and rolls the target back when the
// checkpoint had started; the job ends in error naming who cancelled it. A
// job a person asked for names them in what GitHub is told about it.
//
// # Interfaces
//
// The package declares the interfaces it consumes and imports none of its
// subpackages: Transport (executor/remote), Reporter (executor/ghstatus),
// Notifier (executor/notify) and Store (executor/store). main wires them
// together.
package executor
