// Package store is deployhook's journal: an implementation of executor.Store on
// an embedded SQLite database (modernc.org/sqlite, pure Go, no cgo).
//
// # What it stores
//
// One file holds these tables:
//
//   - jobs: one row per deploy job: its target, the trigger that asked for it
//     (kind, repository, branch, SHA, delivery GUID, the hash of the webhook's
//     body, actor, reason, force, any-commit), its state and public
//     description, the SHA the target ran before, the GitHub Deployment id, the
//     process that owns it, and when it was created, started and finished. A
//     unique index on (target, body hash) makes the body-hash deduplication
//     atomic: an old signed body replayed under a new GUID creates no job;
//   - steps: what each step of a job did (exit code, error, the tail of its
//     output, capped at MaxOutput bytes), keyed by job and sequence number;
//   - deliveries: each webhook delivery GUID and target that created a job, and that job.
//     Its primary key makes CreateJob's deduplication atomic: of two concurrent
//     CreateJob calls for one delivery, even from two processes, exactly one
//     records a job and the other gets executor.ErrDuplicate and the winner's id;
//   - outbox: reports owed to GitHub, oldest first, with their number of failed
//     tries, until Settle removes them;
//   - owners: the processes (deployhook serve, a deployhook deploy) that own
//     jobs, each with the end of its lease, which Beat renews. Orphans lists the
//     unfinished jobs of owners whose lease ended, and Adopt hands one to a
//     live process with a compare-and-set, so a job has one owner at a time;
//   - health: one row whose counter Check bumps, to prove the file takes writes;
//   - lanes: the leases of executor.Lanes, each with its owner, the end of its
//     lease and its fencing token. The outbox's claim columns say which
//     process is sending a report until when; a unique index on (target, SHA)
//     of the unfinished jobs of a replicated lane (owner executor.LaneOwner)
//     makes one job of a SHA recorded at two processes at once, and refuses
//     (executor.ErrDuplicate) an Adopt that would make a second. The single
//     write connection serializes ClaimLane, the fenced writes and ClaimOwed,
//     as row locks do in PostgreSQL.
//
// # Retention
//
// Prune deletes old final jobs with their steps and delivery rows, by age and
// by a count per target, but never a target's newest successful job (its
// deployed commit), an unfinished job, or a report still owed to GitHub.
//
// # Files
//
// Open refuses a journal whose file, or its -wal or -shm file, is a symbolic
// link: SQLite would write wherever the link points.
//
// The schema is created and upgraded by numbered migrations embedded in the
// binary (migrations/NNNN_name.sql). The version is kept in SQLite's
// user_version; each migration and its version bump commit in one transaction,
// so a crash mid-upgrade leaves the previous version intact. A journal written
// by a newer deployhook (a higher version than this binary knows) is refused,
// never modified.
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL: every transaction that
// returned is on stable storage, across a kill -9 of deployhook and across a
// power loss or kernel crash. (synchronous=NORMAL would survive kill -9 too, since
// a committed WAL frame is in the kernel's page cache, but not a power loss: it
// syncs the WAL only at checkpoints, so the last commits could vanish.) Every write
// of the journal stands for a promise already made to someone else: a delivery
// GitHub was answered 202 for and will not send again, a commit reported pending
// that must be closed. Writes are few (a handful per deploy), so one fsync per
// commit is a price worth paying; the benchmarks measure it.
//
// # Concurrency
//
// A Store is safe for concurrent use. Writes go through one pooled connection,
// so they are serialized in the process; each write transaction starts with
// BEGIN IMMEDIATE and waits up to the busy timeout for another process (say a
// `deployhook deploy` next to `deployhook serve`) holding the file's write lock.
// Reads use a separate pool of read-only connections and, thanks to WAL, never
// wait for a writer; a Job read sees the job and its steps in one snapshot.
package store
