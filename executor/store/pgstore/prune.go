package pgstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
)

// pruneBatch is how many jobs one statement of Prune deletes at most.
const pruneBatch = 500

// Prune deletes old final jobs with their steps and delivery rows (by ON
// DELETE CASCADE), and returns how many it deleted: final jobs created before
// before, and, when keep > 0, final jobs beyond the newest keep of their
// target (counting jobs in every state). Never deleted: unfinished jobs, each
// target's newest successful job (by creation), and the outbox. It also
// deletes the owner rows whose lease ended before before. A zero before
// deletes nothing by age. It deletes in batches of at most pruneBatch jobs;
// those deleted stay deleted when it returns an error.
func (s *Store) Prune(ctx context.Context, before time.Time, keep int) (int, error) {
	if keep < 0 {
		keep = 0
	}
	cut := int64(math.MinInt64)
	if !before.IsZero() {
		cut = before.UnixNano()
	}
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM jobs WHERE seq IN (
			SELECT seq FROM (
				SELECT seq, state, created,
					row_number() OVER (PARTITION BY target ORDER BY created DESC, seq DESC) AS n,
					-- the success kept is LastSuccess's: the one that finished last
					row_number() OVER (PARTITION BY target, state ORDER BY finished DESC NULLS LAST, created DESC, seq DESC) AS n_state
				FROM jobs
			) ranked
			WHERE state IN (`+jobrow.FinalStates+`)
				AND NOT (state = 'success' AND n_state = 1)
				AND (created < $1::bigint OR ($2::bigint > 0 AND n > $2::bigint))
			LIMIT $3)`, cut, int64(keep), int64(pruneBatch))
		if err != nil {
			return total, fmt.Errorf("prune journal: jobs: %w", err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < pruneBatch {
			break
		}
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM owners WHERE "until" < $1`, cut); err != nil {
		return total, fmt.Errorf("prune journal: owners: %w", err)
	}
	return total, nil
}

// Check reports whether the journal accepts writes, for a readiness probe: it
// commits a small write (one counter in a one-row table), so a database that
// is down, read-only (a standby, a full disk) or unreachable shows as an error.
func (s *Store) Check(ctx context.Context) error {
	tag, err := s.pool.Exec(ctx, `UPDATE health SET checks = checks + 1 WHERE id = 1`)
	if err != nil {
		return fmt.Errorf("check journal: write: %w", err)
	}
	return oneRow(tag, "check journal: write")
}
