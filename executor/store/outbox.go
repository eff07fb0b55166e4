package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
)

// Owe adds r to the outbox, to be sent to GitHub until Settle removes it. The
// report is kept as JSON, with the time of the call and zero tries.
func (s *Store) Owe(ctx context.Context, r executor.Report) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("owe report of job %s: begin: %w", r.Job, err)
	}
	defer tx.Rollback()
	if err := oweTx(ctx, tx, []executor.Report{r}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("owe report of job %s: commit: %w", r.Job, err)
	}
	return nil
}

// oweTx adds reports to the outbox inside tx.
func oweTx(ctx context.Context, tx *sql.Tx, reports []executor.Report) error {
	for _, r := range reports {
		b, err := jobrow.ReportJSON(r)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (job, report, created) VALUES (?, ?, ?)`,
			r.Job, b, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("owe report of job %s: %w", r.Job, err)
		}
	}
	return nil
}

// Owed lists the reports in the outbox, oldest (first owed) first, at most limit
// of them (all if limit <= 0). An empty outbox is an empty list and a nil error.
func (s *Store) Owed(ctx context.Context, limit int) ([]executor.OwedReport, error) {
	q := `SELECT ` + jobrow.OwedColumns + ` FROM outbox ORDER BY id`
	var args []any
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list owed reports: %w", err)
	}
	defer rows.Close()
	owed := []executor.OwedReport{}
	for rows.Next() {
		o, err := jobrow.ScanOwed(rows)
		if err != nil {
			return nil, fmt.Errorf("list owed reports: %w", err)
		}
		owed = append(owed, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list owed reports: %w", err)
	}
	return owed, nil
}

// Settle removes report id from the outbox, once sent or refused for good. It
// returns an error wrapping executor.ErrNotFound if the outbox has no such
// report (settled already).
func (s *Store) Settle(ctx context.Context, id int64) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM outbox WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("settle report %d: %w", id, err)
	}
	return oneRow(res, fmt.Sprintf("settle report %d", id))
}

// Retry counts one more failed attempt to send report id. It returns an error
// wrapping executor.ErrNotFound if the outbox has no such report.
func (s *Store) Retry(ctx context.Context, id int64) error {
	res, err := s.w.ExecContext(ctx, `UPDATE outbox SET tries = tries + 1 WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("retry report %d: %w", id, err)
	}
	return oneRow(res, fmt.Sprintf("retry report %d", id))
}
