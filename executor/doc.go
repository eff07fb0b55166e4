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
// adds nothing and returns the existing job.
//
// Every job that is reported pending is also reported final: success, failure,
// error or superseded. Reports go through an outbox in the journal, so a GitHub
// outage never blocks a deploy and unsent reports survive a restart.
//
// # Interfaces
//
// The package declares the interfaces it consumes and imports none of its
// subpackages: Transport (executor/remote), Reporter (executor/ghstatus) and
// Store (executor/store). main wires them together.
package executor
