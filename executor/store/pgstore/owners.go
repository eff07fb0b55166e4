package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
	"github.com/jackc/pgx/v5"
)

// Beat records o's lease: it inserts the owner row of o.ID, or replaces its
// kind, host, pid and until.
func (s *Store) Beat(ctx context.Context, o executor.Owner) error {
	if o.ID == "" {
		return errors.New("renew owner lease: empty owner id")
	}
	if o.Until.IsZero() {
		return fmt.Errorf("renew lease of owner %s: zero lease end", o.ID)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO owners (id, kind, host, pid, "until") VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, host = excluded.host, pid = excluded.pid,
			"until" = excluded."until"`,
		o.ID, o.Kind, o.Host, o.PID, o.Until.UnixNano())
	if err != nil {
		return fmt.Errorf("renew lease of owner %s: %w", o.ID, err)
	}
	return nil
}

// Orphans lists the queued and running jobs whose owner's lease ended before
// now, newest first, without their steps: jobs with no owner, jobs whose owner
// has no row, and jobs whose owner's lease ends before now. A lease that ends
// exactly at now is still alive.
func (s *Store) Orphans(ctx context.Context, now time.Time) ([]executor.Job, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs
		WHERE state IN ($1, $2) AND NOT EXISTS (
			SELECT 1 FROM owners WHERE owners.id = jobs.owner AND jobs.owner <> '' AND owners."until" >= $3)
		ORDER BY created DESC, seq DESC`,
		string(executor.StateQueued), string(executor.StateRunning), now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("list orphaned jobs: %w", err)
	}
	return collectJobs(rows, "list orphaned jobs")
}

// Adopt makes to the owner of job id if, and only if, from owns it now and it
// is queued or running: a compare-and-set in one statement (a concurrent
// UPDATE of the row waits, then re-checks the condition), so of processes
// that adopt one orphan from the same owner, exactly one wins. It returns an
// error wrapping executor.ErrNotFound when nothing changed.
//
// When to is a lane (executor.LaneOwner) that already has an unfinished job
// of the orphan's target and SHA, the unique index of a lane's unfinished
// SHAs refuses the adoption: Adopt changes nothing and returns an error
// wrapping executor.ErrDuplicate that names that job, so that the same SHA
// stays one job; the caller ends the orphan as a duplicate, or lets it be.
// When that job ended before it could be named, Adopt tries again.
func (s *Store) Adopt(ctx context.Context, id, from, to string) error {
	if to == "" {
		return fmt.Errorf("adopt job %s: empty new owner", id)
	}
	for range collisionTries {
		tag, err := s.pool.Exec(ctx, `UPDATE jobs SET owner = $1
			WHERE id = $2 AND owner = $3 AND state IN ($4, $5)`,
			to, id, from, string(executor.StateQueued), string(executor.StateRunning))
		if !isConstraint(err, laneSHAIndex) {
			if err != nil {
				return fmt.Errorf("adopt job %s: %w", id, err)
			}
			return oneRow(tag, fmt.Sprintf("adopt job %s from owner %q", id, from))
		}
		var other string
		err = s.pool.QueryRow(ctx, `SELECT o.id FROM jobs j JOIN jobs o ON o.target = j.target AND o.sha = j.sha
			WHERE j.id = $1 AND o.id <> j.id AND o.state IN ($2, $3) AND substr(o.owner, 1, 5) = 'lane:'`,
			id, string(executor.StateQueued), string(executor.StateRunning)).Scan(&other)
		switch {
		case err == nil:
			return fmt.Errorf("adopt job %s: job %s of this target and SHA is the lane's and not finished: %w", id, other, executor.ErrDuplicate)
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("adopt job %s: look up the unfinished job of its SHA: %w", id, err)
		}
		// That job ended since: try again.
	}
	// Not ErrDuplicate: no job of the SHA was seen unfinished, and the
	// caller would end the orphan for one; the next attempt decides.
	return fmt.Errorf("adopt job %s: the lane's unfinished jobs of its SHA keep ending before they can be read", id)
}

// AdoptSuccess makes to the owner of job id if, and only if, from owns it
// and it is a success: a compare-and-set in one statement. It returns an
// error wrapping executor.ErrNotFound when nothing changed.
func (s *Store) AdoptSuccess(ctx context.Context, id, from, to string) error {
	if to == "" {
		return fmt.Errorf("adopt job %s: empty new owner", id)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE jobs SET owner = $1 WHERE id = $2 AND owner = $3 AND state = $4`,
		to, id, from, string(executor.StateSuccess))
	if err != nil {
		return fmt.Errorf("adopt job %s: %w", id, err)
	}
	return oneRow(tag, fmt.Sprintf("adopt successful job %s from owner %q", id, from))
}
