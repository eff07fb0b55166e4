package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
	sqlite3 "modernc.org/sqlite/lib"
)

// Beat records o's lease: it inserts the owner row of o.ID, or replaces it
// (kind, host, pid and until) if there is one. A process calls it when it
// starts and then well before o.Until, for as long as it runs jobs; once
// o.Until has passed without a new Beat, Orphans lists its unfinished jobs.
func (s *Store) Beat(ctx context.Context, o executor.Owner) error {
	if o.ID == "" {
		return errors.New("renew owner lease: empty owner id")
	}
	if o.Until.IsZero() {
		return fmt.Errorf("renew lease of owner %s: zero lease end", o.ID)
	}
	_, err := s.w.ExecContext(ctx, `INSERT OR REPLACE INTO owners (id, kind, host, pid, until)
		VALUES (?, ?, ?, ?, ?)`, o.ID, o.Kind, o.Host, o.PID, o.Until.UnixNano())
	if err != nil {
		return fmt.Errorf("renew lease of owner %s: %w", o.ID, err)
	}
	return nil
}

// Orphans lists the queued and running jobs whose owner's lease ended before
// now, newest (by creation) first, without their steps: jobs with no owner
// (recorded before owners existed), jobs whose owner has no row (pruned, or
// never beat), and jobs whose owner's lease ends before now. A lease that ends
// exactly at now is still alive. Taking an orphan over is Adopt's job: listing
// one does not change it.
func (s *Store) Orphans(ctx context.Context, now time.Time) ([]executor.Job, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs
		WHERE state IN (?, ?) AND NOT EXISTS (
			SELECT 1 FROM owners WHERE owners.id = jobs.owner AND jobs.owner <> '' AND owners.until >= ?)
		ORDER BY created DESC, rowid DESC`,
		string(executor.StateQueued), string(executor.StateRunning), now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("list orphaned jobs: %w", err)
	}
	defer rows.Close()
	jobs := []executor.Job{}
	for rows.Next() {
		j, err := jobrow.ScanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list orphaned jobs: %w", err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list orphaned jobs: %w", err)
	}
	return jobs, nil
}

// Adopt makes to the owner of job id if, and only if, from owns it now and it
// is queued or running: a compare-and-set in one statement, so of two
// processes that adopt one orphan from the same owner, exactly one wins. It
// returns an error wrapping executor.ErrNotFound when nothing changed: no such
// job, another owner, or a final state. It does not check from's lease (the
// caller found the job with Orphans) nor that to has one.
//
// When to is a lane (executor.LaneOwner) that already has an unfinished job
// of the orphan's target and SHA, the unique index of a lane's unfinished
// SHAs refuses the adoption: Adopt changes nothing and returns an error
// wrapping executor.ErrDuplicate that names that job, so that the same SHA
// stays one job, as the PostgreSQL journal does.
func (s *Store) Adopt(ctx context.Context, id, from, to string) error {
	if to == "" {
		return fmt.Errorf("adopt job %s: empty new owner", id)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("adopt job %s: begin: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE jobs SET owner = ?
		WHERE id = ? AND owner = ? AND state IN (?, ?)`,
		to, id, from, string(executor.StateQueued), string(executor.StateRunning))
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		// The only unique index an owner's change can break: the lane's
		// unfinished SHAs. tx holds the write lock, so the job is there.
		other, err := existingJob(ctx, tx, `SELECT o.id FROM jobs j JOIN jobs o ON o.target = j.target AND o.sha = j.sha
			WHERE j.id = ? AND o.id <> j.id AND o.state IN (?, ?) AND substr(o.owner, 1, 5) = 'lane:'`,
			id, string(executor.StateQueued), string(executor.StateRunning))
		if err != nil {
			return fmt.Errorf("adopt job %s: look up the unfinished job of its SHA: %w", id, err)
		}
		return fmt.Errorf("adopt job %s: job %s of this target and SHA is the lane's and not finished: %w", id, other, executor.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("adopt job %s: %w", id, err)
	}
	if err := oneRow(res, fmt.Sprintf("adopt job %s from owner %q", id, from)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("adopt job %s: commit: %w", id, err)
	}
	return nil
}

// AdoptSuccess makes to the owner of job id if, and only if, from owns it
// and it is a success: a compare-and-set in one statement. It returns an
// error wrapping executor.ErrNotFound when nothing changed.
func (s *Store) AdoptSuccess(ctx context.Context, id, from, to string) error {
	if to == "" {
		return fmt.Errorf("adopt job %s: empty new owner", id)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE jobs SET owner = ? WHERE id = ? AND owner = ? AND state = ?`,
		to, id, from, string(executor.StateSuccess))
	if err != nil {
		return fmt.Errorf("adopt job %s: %w", id, err)
	}
	return oneRow(res, fmt.Sprintf("adopt successful job %s from owner %q", id, from))
}
