package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
)

var _ executor.Lanes = (*Store)(nil)

// ClaimLane takes or renews owner's lease on lane, as executor.Lanes says.
// One statement (an upsert whose update applies only when owner holds the
// lane or its lease ended before now) decides, under the database's single
// write lock, so of owners claiming at once exactly one gets the lane.
func (s *Store) ClaimLane(ctx context.Context, lane, owner string, now, until time.Time) (int64, error) {
	if lane == "" || owner == "" {
		return 0, fmt.Errorf("claim lane %q for %q: empty lane or owner", lane, owner)
	}
	var token int64
	err := s.w.QueryRowContext(ctx, `INSERT INTO lanes (name, owner, token, lease_until) VALUES (?, ?, 1, ?)
		ON CONFLICT (name) DO UPDATE SET
			token = CASE WHEN lanes.owner = excluded.owner THEN lanes.token ELSE lanes.token + 1 END,
			owner = excluded.owner, lease_until = excluded.lease_until
		WHERE lanes.owner = excluded.owner OR lanes.lease_until < ?
		RETURNING token`, lane, owner, until.UnixNano(), now.UnixNano()).Scan(&token)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("claim lane %s: %w", lane, executor.ErrLaneHeld)
	}
	if err != nil {
		return 0, fmt.Errorf("claim lane %s: %w", lane, err)
	}
	return token, nil
}

// ReleaseLane gives up owner's lease on lane; ErrNotFound if owner does not
// hold it.
func (s *Store) ReleaseLane(ctx context.Context, lane, owner string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE lanes SET owner = '', lease_until = 0 WHERE name = ? AND owner = ?`, lane, owner)
	if err != nil {
		return fmt.Errorf("release lane %s: %w", lane, err)
	}
	return oneRow(res, fmt.Sprintf("release lane %s held by %s", lane, owner))
}

// fence checks, inside tx, that job id exists (ErrNotFound) and that the
// lane of its target has token (ErrFenced). tx holds the write lock, so no
// ClaimLane can change the token before tx ends.
func fence(ctx context.Context, tx *sql.Tx, id string, token int64) error {
	var target string
	err := tx.QueryRowContext(ctx, `SELECT target FROM jobs WHERE id = ?`, id).Scan(&target)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("job %s: %w", id, executor.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("read job %s: %w", id, err)
	}
	var have int64
	err = tx.QueryRowContext(ctx, `SELECT token FROM lanes WHERE name = ?`, target).Scan(&have)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("lane %s was never claimed: %w", target, executor.ErrFenced)
	case err != nil:
		return fmt.Errorf("read lane %s: %w", target, err)
	case have != token:
		return fmt.Errorf("lane %s has token %d, not %d: %w", target, have, token, executor.ErrFenced)
	}
	return nil
}

// UpdateJobFenced is UpdateJob, done only while the lane of j's target has
// token, checked in the same transaction.
func (s *Store) UpdateJobFenced(ctx context.Context, token int64, j executor.Job, owe ...executor.Report) error {
	if j.State == "" {
		return fmt.Errorf("update job %s: empty state", j.ID)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update job %s: begin: %w", j.ID, err)
	}
	defer tx.Rollback()
	if err := fence(ctx, tx, j.ID, token); err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	if err := updateTx(ctx, tx, j, owe); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update job %s: commit: %w", j.ID, err)
	}
	return nil
}

// AddStepFenced is AddStep, done only while the lane of the job's target has
// token, checked in the same transaction.
func (s *Store) AddStepFenced(ctx context.Context, token int64, st executor.StepRun) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add step %d of job %s: begin: %w", st.Seq, st.Job, err)
	}
	defer tx.Rollback()
	if err := fence(ctx, tx, st.Job, token); err != nil {
		return fmt.Errorf("add step %d of job %s: %w", st.Seq, st.Job, err)
	}
	if err := putStep(ctx, tx, st); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("add step %d of job %s: commit: %w", st.Seq, st.Job, err)
	}
	return nil
}

// ClaimOwed claims owed reports for owner, as executor.Lanes says, in one
// write transaction: the database's single write lock serializes drainers.
func (s *Store) ClaimOwed(ctx context.Context, owner string, limit int, until time.Time) ([]executor.OwedReport, error) {
	if owner == "" || limit <= 0 {
		return nil, fmt.Errorf("claim owed reports: empty owner or limit %d", limit)
	}
	now := time.Now().UnixNano()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("claim owed reports: begin: %w", err)
	}
	defer tx.Rollback()
	cands, err := idJobs(tx.QueryContext(ctx, `SELECT id, job FROM outbox
		WHERE claim_owner = ? OR claim_until < ? ORDER BY id LIMIT ?`, owner, now, limit))
	if err != nil {
		return nil, fmt.Errorf("claim owed reports: %w", err)
	}
	if len(cands) == 0 {
		return []executor.OwedReport{}, nil
	}
	var all []jobrow.IDJob
	for _, job := range jobrow.JobsOf(cands) {
		some, err := idJobs(tx.QueryContext(ctx, `SELECT id, job FROM outbox WHERE job = ? ORDER BY id`, job))
		if err != nil {
			return nil, fmt.Errorf("claim owed reports: %w", err)
		}
		all = append(all, some...)
	}
	var owed []executor.OwedReport
	for _, id := range jobrow.InOrder(cands, all) {
		o, err := jobrow.ScanOwed(tx.QueryRowContext(ctx, `UPDATE outbox SET claim_owner = ?, claim_until = ? WHERE id = ?
			RETURNING `+jobrow.OwedColumns, owner, until.UnixNano(), id))
		if err != nil {
			return nil, fmt.Errorf("claim owed reports: %w", err)
		}
		owed = append(owed, o)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("claim owed reports: commit: %w", err)
	}
	return owed, nil // in id order: InOrder's
}

// idJobs reads the (id, job) rows of a query, and closes them.
func idJobs(rows *sql.Rows, err error) ([]jobrow.IDJob, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jobrow.IDJob
	for rows.Next() {
		var r jobrow.IDJob
		if err := rows.Scan(&r.ID, &r.Job); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
