package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// MaxOutput is the most output bytes kept per step (jobrow.MaxOutput). The
// executor already bounds what it passes; this is the journal's own guard.
// Longer output keeps its tail, where a failing command says why.
const MaxOutput = jobrow.MaxOutput

// jobValues are the placeholders for jobrow.JobColumns.
const jobValues = `?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?`

// CreateJob records j, with its steps if it has any, its owner and its
// trigger's body hash, and returns j.ID.
//
// It deduplicates deliveries, in this order:
//   - if j.Trigger.Delivery is not empty and a job of j.Target was already
//     recorded for that delivery GUID,
//   - or if j.Trigger.BodyHash is not empty and a job of j.Target was already
//     recorded with that body hash (an old body replayed under a new GUID),
//
// it records nothing and returns that job's id and an error wrapping
// executor.ErrDuplicate. The deliveries table's primary key and a unique index
// on (target, body_hash) decide, inside the write transaction, so of any number
// of concurrent calls for one delivery or body and target, even from several
// processes, exactly one records a job. The same GUID or body may create one
// job for each of several targets (a push that deploys two targets).
//
// j.ID, j.Target and j.State must not be empty, and no job with j.ID may
// exist. A zero j.Created is recorded as the time of the call. The reports in
// owe are added to the outbox in the same transaction: the job and what GitHub
// is owed about it are recorded together or not at all. Free text is cleaned as
// package jobrow says.
func (s *Store) CreateJob(ctx context.Context, j executor.Job, owe ...executor.Report) (existing string, err error) {
	switch {
	case j.ID == "":
		return "", errors.New("create job: empty id")
	case j.Target == "":
		return "", fmt.Errorf("create job %s: empty target", j.ID)
	case j.State == "":
		return "", fmt.Errorf("create job %s: empty state", j.ID)
	}
	if j.Created.IsZero() {
		j.Created = time.Now()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("create job %s: begin: %w", j.ID, err)
	}
	defer tx.Rollback()

	delivery := j.Trigger.Delivery
	if delivery != "" {
		// The delivery row goes in before its job, so that its primary key
		// decides first; the foreign key to the job is checked at commit.
		// (defer_foreign_keys ends with the transaction.)
		if _, err := tx.ExecContext(ctx, `PRAGMA defer_foreign_keys = ON`); err != nil {
			return "", fmt.Errorf("create job %s: %w", j.ID, err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO deliveries (guid, target, job) VALUES (?, ?, ?)`, delivery, j.Target, j.ID)
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
			id, err := existingJob(ctx, tx, `SELECT job FROM deliveries WHERE guid = ? AND target = ?`, delivery, j.Target)
			if err != nil {
				return "", fmt.Errorf("create job %s: look up delivery: %w", j.ID, err)
			}
			return id, fmt.Errorf("create job %s: delivery %s already created job %s for this target: %w", j.ID, delivery, id, executor.ErrDuplicate)
		}
		if err != nil {
			return "", fmt.Errorf("create job %s: record delivery: %w", j.ID, err)
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO jobs (`+jobrow.JobColumns+`) VALUES (`+jobValues+`)`, jobrow.JobValues(j)...)
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		// One of the two unique indexes of jobs besides its primary key: the
		// body hash's, or that of a replicated lane's unfinished SHA.
		id, err := existingJob(ctx, tx, `SELECT id FROM jobs WHERE target = ? AND body_hash = ? AND body_hash <> ''`, j.Target, j.Trigger.BodyHash)
		if err == nil {
			return id, fmt.Errorf("create job %s: a delivery with body hash %s already created job %s for this target: %w",
				j.ID, j.Trigger.BodyHash, id, executor.ErrDuplicate)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", fmt.Errorf("create job %s: look up body hash: %w", j.ID, err)
		}
		id, err = existingJob(ctx, tx, `SELECT id FROM jobs WHERE target = ? AND sha = ?
			AND state IN ('queued', 'running') AND substr(owner, 1, 5) = 'lane:'`, j.Target, j.Trigger.SHA)
		if err != nil {
			return "", fmt.Errorf("create job %s: look up unfinished job of %s: %w", j.ID, j.Trigger.SHA, err)
		}
		return id, fmt.Errorf("create job %s: job %s of this target and SHA is not finished: %w", j.ID, id, executor.ErrDuplicate)
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):
		return "", fmt.Errorf("create job %s: a job with this id already exists", j.ID)
	case err != nil:
		return "", fmt.Errorf("create job %s: %w", j.ID, err)
	}
	for _, st := range j.Steps {
		st.Job = j.ID
		if err := putStep(ctx, tx, st); err != nil {
			return "", fmt.Errorf("create job %s: %w", j.ID, err)
		}
	}
	if err := oweTx(ctx, tx, owe); err != nil {
		return "", fmt.Errorf("create job %s: %w", j.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("create job %s: commit: %w", j.ID, err)
	}
	return j.ID, nil
}

// existingJob reads the id of the job that a duplicate CreateJob collided
// with, inside the transaction that found the collision.
func existingJob(ctx context.Context, tx *sql.Tx, query string, args ...any) (string, error) {
	var id string
	if err := tx.QueryRowContext(ctx, query, args...).Scan(&id); err != nil {
		return "", err
	}
	return id, nil
}

// UpdateJob stores j's state, description, previous SHA, owner, start and
// finish times, found by j.ID, and adds the reports in owe to the outbox, in one
// transaction: a crash never leaves a job final without its final report owed.
// It leaves the rest alone: the trigger, the creation time (fixed by CreateJob,
// it orders Jobs), the steps (AddStep) and the Deployment id (SetDeployment). It
// returns an error wrapping executor.ErrNotFound, and owes nothing, if no job
// has j.ID.
func (s *Store) UpdateJob(ctx context.Context, j executor.Job, owe ...executor.Report) error {
	if j.State == "" {
		return fmt.Errorf("update job %s: empty state", j.ID)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update job %s: begin: %w", j.ID, err)
	}
	defer tx.Rollback()
	if err := updateTx(ctx, tx, j, owe); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update job %s: commit: %w", j.ID, err)
	}
	return nil
}

// updateTx is UpdateJob's work inside tx.
func updateTx(ctx context.Context, tx *sql.Tx, j executor.Job, owe []executor.Report) error {
	res, err := tx.ExecContext(ctx, `UPDATE jobs
		SET state = ?, description = ?, previous_sha = ?, owner = ?, started = ?, finished = ?
		WHERE id = ?`,
		string(j.State), jobrow.Text(j.Description), j.PreviousSHA, j.Owner, jobrow.Nanos(j.Started), jobrow.Nanos(j.Finished), j.ID)
	if err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	if err := oneRow(res, "update job "+j.ID); err != nil {
		return err
	}
	if err := oweTx(ctx, tx, owe); err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return nil
}

// SetDeployment records the GitHub Deployment id of a job. It returns an error
// wrapping executor.ErrNotFound if there is no such job.
func (s *Store) SetDeployment(ctx context.Context, job string, deployment int64) error {
	res, err := s.w.ExecContext(ctx, `UPDATE jobs SET deployment = ? WHERE id = ?`, deployment, job)
	if err != nil {
		return fmt.Errorf("set deployment of job %s: %w", job, err)
	}
	return oneRow(res, "set deployment of job "+job)
}

// Job returns the job with its steps in order, read in one snapshot, or an
// error wrapping executor.ErrNotFound. Times are in UTC.
func (s *Store) Job(ctx context.Context, id string) (executor.Job, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return executor.Job{}, fmt.Errorf("read job %s: begin: %w", id, err)
	}
	defer tx.Rollback()

	j, err := jobrow.ScanJob(tx.QueryRowContext(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return executor.Job{}, fmt.Errorf("job %s: %w", id, executor.ErrNotFound)
	}
	if err != nil {
		return executor.Job{}, fmt.Errorf("read job %s: %w", id, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+jobrow.StepColumns+` FROM steps WHERE job = ? ORDER BY seq`, id)
	if err != nil {
		return executor.Job{}, fmt.Errorf("read steps of job %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		st, err := jobrow.ScanStep(rows)
		if err != nil {
			return executor.Job{}, fmt.Errorf("read steps of job %s: %w", id, err)
		}
		j.Steps = append(j.Steps, st)
	}
	if err := rows.Err(); err != nil {
		return executor.Job{}, fmt.Errorf("read steps of job %s: %w", id, err)
	}
	return j, nil
}

// Jobs lists jobs without their steps, newest (by creation) first: those of
// target (all targets if target is empty), in one of states (any state if none
// is given), at most limit of them (no limit if limit <= 0). No job is an empty
// list and a nil error.
func (s *Store) Jobs(ctx context.Context, target string, limit int, states ...executor.State) ([]executor.Job, error) {
	var where []string
	var args []any
	if target != "" {
		where = append(where, "target = ?")
		args = append(args, target)
	}
	if len(states) > 0 {
		where = append(where, "state IN (?"+strings.Repeat(", ?", len(states)-1)+")")
		for _, st := range states {
			args = append(args, string(st))
		}
	}
	q := `SELECT ` + jobrow.JobColumns + ` FROM jobs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created DESC, rowid DESC"
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	jobs := []executor.Job{}
	for rows.Next() {
		j, err := jobrow.ScanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return jobs, nil
}

// LastSuccess returns the newest (by creation) successful job of target,
// without its steps, or an error wrapping executor.ErrNotFound.
func (s *Store) LastSuccess(ctx context.Context, target string) (executor.Job, error) {
	j, err := jobrow.ScanJob(s.r.QueryRowContext(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs
		WHERE target = ? AND state = ? ORDER BY finished DESC, created DESC, rowid DESC LIMIT 1`,
		target, string(executor.StateSuccess)))
	if errors.Is(err, sql.ErrNoRows) {
		return executor.Job{}, fmt.Errorf("last success of %s: %w", target, executor.ErrNotFound)
	}
	if err != nil {
		return executor.Job{}, fmt.Errorf("last success of %s: %w", target, err)
	}
	return j, nil
}

// AddStep records a step run of job s.Job, replacing the one with the same
// s.Seq if there is one (a step is recorded when it starts and again when it
// ends). Its text is cleaned as package jobrow says, as the PostgreSQL journal
// cleans it: output longer than MaxOutput keeps its last MaxOutput bytes (less
// up to 3, to start on a character boundary). It returns an error wrapping
// executor.ErrNotFound if there is no such job.
func (s *Store) AddStep(ctx context.Context, st executor.StepRun) error {
	err := putStep(ctx, s.w, st)
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
		return fmt.Errorf("add step %d of job %s: %w", st.Seq, st.Job, executor.ErrNotFound)
	}
	return err
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func putStep(ctx context.Context, db execer, st executor.StepRun) error {
	_, err := db.ExecContext(ctx, `INSERT INTO steps (`+jobrow.StepColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (job, seq) DO UPDATE SET
			name = excluded.name, skipped = excluded.skipped, exit_code = excluded.exit_code,
			error = excluded.error, output = excluded.output, started = excluded.started,
			duration = excluded.duration`,
		jobrow.StepValues(st)...)
	if err != nil {
		return fmt.Errorf("add step %d of job %s: %w", st.Seq, st.Job, err)
	}
	return nil
}

// oneRow turns an UPDATE or DELETE that matched no row into ErrNotFound.
func oneRow(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, executor.ErrNotFound)
	}
	return nil
}

// isConstraint reports whether err is SQLite's extended result code code.
func isConstraint(err error, code int) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == code
}

// Deployed returns the newest (by creation) successful job of target that
// deployed sha, without its steps, or an error wrapping executor.ErrNotFound
// when target never deployed sha successfully.
func (s *Store) Deployed(ctx context.Context, target, sha string) (executor.Job, error) {
	j, err := jobrow.ScanJob(s.r.QueryRowContext(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs
		WHERE target = ? AND sha = ? AND state = ? ORDER BY created DESC, rowid DESC LIMIT 1`,
		target, sha, string(executor.StateSuccess)))
	if errors.Is(err, sql.ErrNoRows) {
		return executor.Job{}, fmt.Errorf("deploy of %s to %s: %w", sha, target, executor.ErrNotFound)
	}
	if err != nil {
		return executor.Job{}, fmt.Errorf("deploy of %s to %s: %w", sha, target, err)
	}
	return j, nil
}
