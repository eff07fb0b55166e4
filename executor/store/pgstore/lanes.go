package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
	"github.com/jackc/pgx/v5"
)

var _ executor.Lanes = (*Store)(nil)

// ClaimLane takes or renews owner's lease on lane, as executor.Lanes says.
// One statement decides: an INSERT … ON CONFLICT DO UPDATE whose update
// applies only when owner holds the lane or its lease ended before now.
// PostgreSQL makes it atomic (a concurrent claim of the same lane waits for
// the row, then re-checks the condition on its newest version), so of owners
// claiming at once, on any number of replicas, exactly one gets the lane.
func (s *Store) ClaimLane(ctx context.Context, lane, owner string, now, until time.Time) (int64, error) {
	if lane == "" || owner == "" {
		return 0, fmt.Errorf("claim lane %q for %q: empty lane or owner", lane, owner)
	}
	var token int64
	err := s.pool.QueryRow(ctx, `INSERT INTO lanes (name, owner, token, lease_until) VALUES ($1, $2, 1, $3)
		ON CONFLICT (name) DO UPDATE SET
			token = CASE WHEN lanes.owner = excluded.owner THEN lanes.token ELSE lanes.token + 1 END,
			owner = excluded.owner, lease_until = excluded.lease_until
		WHERE lanes.owner = excluded.owner OR lanes.lease_until < $4
		RETURNING token`, lane, owner, until.UnixNano(), now.UnixNano()).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
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
	tag, err := s.pool.Exec(ctx, `UPDATE lanes SET owner = '', lease_until = 0 WHERE name = $1 AND owner = $2`, lane, owner)
	if err != nil {
		return fmt.Errorf("release lane %s: %w", lane, err)
	}
	return oneRow(tag, fmt.Sprintf("release lane %s held by %s", lane, owner))
}

// fence checks, inside tx, that job id exists (ErrNotFound) and that the
// lane of its target has token (ErrFenced). It locks the lane's row FOR
// SHARE: a ClaimLane that would change the token waits until tx ends, so a
// write that commits in tx happened while the lane had token.
func fence(ctx context.Context, tx pgx.Tx, id string, token int64) error {
	var target string
	err := tx.QueryRow(ctx, `SELECT target FROM jobs WHERE id = $1`, id).Scan(&target)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("job %s: %w", id, executor.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("read job %s: %w", id, err)
	}
	var have int64
	err = tx.QueryRow(ctx, `SELECT token FROM lanes WHERE name = $1 FOR SHARE`, target).Scan(&have)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("lane %s was never claimed: %w", target, executor.ErrFenced)
	case err != nil:
		return fmt.Errorf("read lane %s: %w", target, err)
	case have != token:
		return fmt.Errorf("lane %s has token %d, not %d: %w", target, have, token, executor.ErrFenced)
	}
	return nil
}

// UpdateJobFenced is UpdateJob, done only while the lane of j's target has
// token, checked in the same transaction with the lane's row locked.
func (s *Store) UpdateJobFenced(ctx context.Context, token int64, j executor.Job, owe ...executor.Report) error {
	if j.State == "" {
		return fmt.Errorf("update job %s: empty state", j.ID)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("update job %s: begin: %w", j.ID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fence(ctx, tx, j.ID, token); err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	if err := updateTx(ctx, tx, j, owe); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("update job %s: commit: %w", j.ID, err)
	}
	return nil
}

// AddStepFenced is AddStep, done only while the lane of the job's target has
// token, checked in the same transaction with the lane's row locked.
func (s *Store) AddStepFenced(ctx context.Context, token int64, st executor.StepRun) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("add step %d of job %s: begin: %w", st.Seq, st.Job, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fence(ctx, tx, st.Job, token); err != nil {
		return fmt.Errorf("add step %d of job %s: %w", st.Seq, st.Job, err)
	}
	if err := putStep(ctx, tx, st); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("add step %d of job %s: commit: %w", st.Seq, st.Job, err)
	}
	return nil
}

// ClaimOwed claims owed reports for owner, as executor.Lanes says, in one
// transaction: it locks the oldest claimable rows FOR UPDATE SKIP LOCKED (so
// drainers running at once take different rows without waiting for each
// other), keeps of them only those whose job has no older report outside
// them, sets their claim, and commits.
func (s *Store) ClaimOwed(ctx context.Context, owner string, limit int, until time.Time) ([]executor.OwedReport, error) {
	if owner == "" || limit <= 0 {
		return nil, fmt.Errorf("claim owed reports: empty owner or limit %d", limit)
	}
	now := time.Now().UnixNano()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim owed reports: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	cands, err := idJobs(tx.Query(ctx, `SELECT id, job FROM outbox
		WHERE claim_owner = $1 OR claim_until < $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`, owner, now, limit))
	if err != nil {
		return nil, fmt.Errorf("claim owed reports: %w", err)
	}
	if len(cands) == 0 {
		return []executor.OwedReport{}, nil
	}
	// Every report of those jobs, locked by another drainer or not.
	all, err := idJobs(tx.Query(ctx, `SELECT id, job FROM outbox WHERE job = ANY($1::text[]) ORDER BY id`, jobrow.JobsOf(cands)))
	if err != nil {
		return nil, fmt.Errorf("claim owed reports: %w", err)
	}
	rows, err := tx.Query(ctx, `UPDATE outbox SET claim_owner = $1, claim_until = $2 WHERE id = ANY($3::bigint[])
		RETURNING `+jobrow.OwedColumns, owner, until.UnixNano(), jobrow.InOrder(cands, all))
	if err != nil {
		return nil, fmt.Errorf("claim owed reports: %w", err)
	}
	owed, err := collectOwed(rows)
	if err != nil {
		return nil, fmt.Errorf("claim owed reports: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("claim owed reports: commit: %w", err)
	}
	// RETURNING has no order of its own.
	slices.SortFunc(owed, func(a, b executor.OwedReport) int { return cmp.Compare(a.ID, b.ID) })
	return owed, nil
}

// idJobs reads the (id, job) rows of a query, and closes them.
func idJobs(rows pgx.Rows, err error) ([]jobrow.IDJob, error) {
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
