package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
)

// pruneBatch is how many jobs one transaction of Prune deletes at most, so
// that intake never waits long for the write lock while a large backlog is
// pruned.
const pruneBatch = 500

// Prune deletes old final jobs (success, failure, error, superseded, skipped)
// with their steps and their delivery rows (their body hashes go with them),
// and returns how many jobs it deleted. A final job is deleted when it was
// created before before, or when keep > 0 and it is not among the newest
// (by creation) keep jobs of its target, counting jobs in every state. Never
// deleted: queued and running jobs, each target's newest successful job (what
// LastSuccess returns, the target's deployed commit), and the outbox: reports
// owed to GitHub stay until settled. Prune also deletes the owner rows whose
// lease ended before before. A zero before deletes nothing by age.
//
// It deletes in transactions of at most pruneBatch jobs, until nothing is
// left to delete or ctx ends; the jobs deleted by the transactions that
// committed stay deleted when it returns an error.
func (s *Store) Prune(ctx context.Context, before time.Time, keep int) (int, error) {
	if keep < 0 {
		keep = 0
	}
	cut := int64(math.MinInt64) // the zero time has no unix nanoseconds
	if !before.IsZero() {
		cut = before.UnixNano()
	}
	total := 0
	for {
		n, err := s.pruneBatch(ctx, cut, keep)
		total += n
		if err != nil {
			return total, err
		}
		if n < pruneBatch {
			break
		}
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM owners WHERE until < ?`, cut); err != nil {
		return total, fmt.Errorf("prune journal: owners: %w", err)
	}
	return total, nil
}

// pruneBatch deletes at most pruneBatch jobs that Prune would delete (before
// in unix nanoseconds), in one transaction. Deleting some of them never saves another: the rank of a job
// beyond keep only counts newer jobs, and the newer jobs within keep are
// never deleted by rank, nor by age when the job itself is not old enough.
func (s *Store) pruneBatch(ctx context.Context, before int64, keep int) (int, error) {
	// steps and deliveries go by ON DELETE CASCADE (foreign_keys is on).
	res, err := s.w.ExecContext(ctx, `DELETE FROM jobs WHERE rowid IN (
		SELECT rid FROM (
			SELECT rowid AS rid, state, created,
				row_number() OVER (PARTITION BY target ORDER BY created DESC, rowid DESC) AS n,
				-- the success kept is LastSuccess's: the one that finished last
				row_number() OVER (PARTITION BY target, state ORDER BY finished DESC, created DESC, rowid DESC) AS n_state
			FROM jobs
		)
		WHERE state IN (`+jobrow.FinalStates+`)
			AND NOT (state = 'success' AND n_state = 1)
			AND (created < ?1 OR (?2 > 0 AND n > ?2))
		LIMIT ?3)`, before, keep, pruneBatch)
	if err != nil {
		return 0, fmt.Errorf("prune journal: jobs: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune journal: jobs: %w", err)
	}
	return int(n), nil
}

// Check reports whether the journal accepts writes, for a readiness probe: it
// commits a small write transaction (one counter in a one-row table), so a
// full file system, a read-only one or a lost file shows as an error. It
// waits for a write in progress, at most until ctx ends or the busy timeout.
// It costs one commit, an fsync of the WAL.
//
// A write that fits in space the write-ahead log already holds can still
// succeed on a full file system; then the journal does accept writes, and
// Check says so until it needs to grow.
func (s *Store) Check(ctx context.Context) error {
	res, err := s.w.ExecContext(ctx, `UPDATE health SET checks = checks + 1 WHERE id = 1`)
	if err != nil {
		return fmt.Errorf("check journal: write: %w", err)
	}
	return oneRow(res, "check journal: write")
}
