package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
	"github.com/jackc/pgx/v5"
)

// Owe adds r to the outbox, to be sent to GitHub until Settle removes it.
func (s *Store) Owe(ctx context.Context, r executor.Report) error {
	return oweTx(ctx, s.pool, []executor.Report{r})
}

// oweTx adds reports to the outbox through db (a transaction, for several).
func oweTx(ctx context.Context, db execer, reports []executor.Report) error {
	for _, r := range reports {
		b, err := jobrow.ReportJSON(r)
		if err != nil {
			return err
		}
		if _, err := db.Exec(ctx, `INSERT INTO outbox (job, report, created) VALUES ($1, $2, $3)`,
			r.Job, b, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("owe report of job %s: %w", r.Job, err)
		}
	}
	return nil
}

// Owed lists the reports in the outbox, oldest (first owed) first, at most
// limit of them (all if limit <= 0).
func (s *Store) Owed(ctx context.Context, limit int) ([]executor.OwedReport, error) {
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	rows, err := s.pool.Query(ctx, `SELECT `+jobrow.OwedColumns+` FROM outbox ORDER BY id LIMIT $1`, lim)
	if err != nil {
		return nil, fmt.Errorf("list owed reports: %w", err)
	}
	owed, err := collectOwed(rows)
	if err != nil {
		return nil, fmt.Errorf("list owed reports: %w", err)
	}
	return owed, nil
}

// collectOwed reads every row of rows with jobrow.ScanOwed, and closes
// rows. No row is an empty list.
func collectOwed(rows pgx.Rows) ([]executor.OwedReport, error) {
	defer rows.Close()
	owed := []executor.OwedReport{}
	for rows.Next() {
		o, err := jobrow.ScanOwed(rows)
		if err != nil {
			return nil, err
		}
		owed = append(owed, o)
	}
	return owed, rows.Err()
}

// Settle removes report id from the outbox. It returns an error wrapping
// executor.ErrNotFound if the outbox has no such report (another process
// settled it).
func (s *Store) Settle(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM outbox WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("settle report %d: %w", id, err)
	}
	return oneRow(tag, fmt.Sprintf("settle report %d", id))
}

// Retry counts one more failed attempt to send report id. It returns an error
// wrapping executor.ErrNotFound if the outbox has no such report.
func (s *Store) Retry(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE outbox SET tries = tries + 1 WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("retry report %d: %w", id, err)
	}
	return oneRow(tag, fmt.Sprintf("retry report %d", id))
}
