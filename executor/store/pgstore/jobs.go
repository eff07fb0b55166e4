package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MaxOutput is the most output bytes kept per step, as in the SQLite journal
// (jobrow.MaxOutput). Longer output keeps its tail, where a failing command
// says why.
const MaxOutput = jobrow.MaxOutput

// PostgreSQL error codes this package branches on
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

// laneSHAIndex is the unique index on a lane's unfinished jobs' (target,
// SHA) (migration 0002).
const laneSHAIndex = "jobs_lane_sha"

// CreateJob records j, with its steps if it has any, its owner and its
// trigger's body hash, and owes the reports in owe, in one transaction, and
// returns j.ID.
//
// It deduplicates, in this order: if j.Trigger.Delivery is not empty and a job
// of j.Target was recorded for that delivery GUID, or if j.Trigger.BodyHash is
// not empty and a job of j.Target was recorded with that body hash, or if j
// is an unfinished job of its target's replicated lane (executor.Lanes) and
// the lane has an unfinished job of j's SHA, it records nothing and returns
// that job's id and an error wrapping executor.ErrDuplicate.
//
// Unique constraints decide: the deliveries primary key, and the unique
// indexes on jobs (target, body hash) and on a lane's unfinished (target,
// SHA). INSERT … ON CONFLICT DO NOTHING waits for a concurrent transaction
// that inserted the same key, and then sees its outcome, so of concurrent
// calls for one delivery, body or lane SHA, on any number of replicas,
// exactly one records a job. The job a call collided with is then looked up
// in the same transaction; when that job changed meanwhile (a lane's job of
// the SHA ended, a pruned delivery) so that the look-up finds nothing, the
// insert is tried again: a call never fails for losing such a race.
//
// j.ID, j.Target and j.State must not be empty; a job with j.ID must not
// exist. A zero j.Created is recorded as the time of the call. Free text is
// cleaned as package jobrow says.
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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("create job %s: begin: %w", j.ID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	if j.Trigger.Delivery != "" {
		// The delivery row goes in before its job, so that its primary key
		// decides first; its foreign key is checked at commit (deferred).
		id, err := insertDelivery(ctx, tx, j)
		if err != nil {
			return "", fmt.Errorf("create job %s: %w", j.ID, err)
		}
		if id != "" {
			return id, fmt.Errorf("create job %s: delivery %s already created job %s for this target: %w",
				j.ID, j.Trigger.Delivery, id, executor.ErrDuplicate)
		}
	}
	if existing, err := insertJob(ctx, tx, j); err != nil || existing != "" {
		return existing, err
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
	if j.State == executor.StateQueued {
		// Delivered to the listeners (WatchQueue) when tx commits, and
		// dropped if it does not.
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, queuedChannel, j.Target); err != nil {
			return "", fmt.Errorf("create job %s: notify: %w", j.ID, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("create job %s: commit: %w", j.ID, err)
	}
	return j.ID, nil
}

// collisionTries bounds how many times CreateJob and Adopt try a write
// again whose collision vanished before it could be looked up. Each retry
// needs another process to end or prune, between two statements of this
// one, a job that collides with it: a few tries are plenty.
const collisionTries = 8

// insertDelivery records j's delivery in tx, and returns "" or, when the
// delivery already created a job of j.Target, that job's id.
func insertDelivery(ctx context.Context, tx pgx.Tx, j executor.Job) (existing string, err error) {
	for range collisionTries {
		tag, err := tx.Exec(ctx, `INSERT INTO deliveries (guid, target, job) VALUES ($1, $2, $3)
			ON CONFLICT (guid, target) DO NOTHING`, j.Trigger.Delivery, j.Target, j.ID)
		if err != nil {
			return "", fmt.Errorf("record delivery: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return "", nil
		}
		id, err := lookUp(ctx, tx, `SELECT job FROM deliveries WHERE guid = $1 AND target = $2`, j.Trigger.Delivery, j.Target)
		if err != nil || id != "" {
			return id, err
		}
		// Its job was pruned since: try again.
	}
	return "", fmt.Errorf("record delivery %s: it keeps colliding with a row deleted before it can be read", j.Trigger.Delivery)
}

// insertJob inserts j's row in tx, and returns "", nil when it did, or the id
// of the job j duplicates and an error wrapping executor.ErrDuplicate.
//
// ON CONFLICT without a target takes every unique index as an arbiter (a
// statement may name one only), so no collision aborts tx: the job collided
// with is looked up next, in tx, and the insert tried again when the look-up
// finds none (it ended, or was pruned, in between).
func insertJob(ctx context.Context, tx pgx.Tx, j executor.Job) (existing string, err error) {
	for range collisionTries {
		tag, err := tx.Exec(ctx, `INSERT INTO jobs (`+jobrow.JobColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
			ON CONFLICT DO NOTHING`, jobrow.JobValues(j)...)
		if err != nil {
			return "", fmt.Errorf("create job %s: %w", j.ID, err)
		}
		if tag.RowsAffected() == 1 {
			return "", nil
		}
		if j.Trigger.BodyHash != "" {
			id, err := lookUp(ctx, tx, `SELECT id FROM jobs WHERE target = $1 AND body_hash = $2`, j.Target, j.Trigger.BodyHash)
			if err != nil {
				return "", fmt.Errorf("create job %s: look up body hash: %w", j.ID, err)
			}
			if id != "" {
				return id, fmt.Errorf("create job %s: a delivery with body hash %s already created job %s for this target: %w",
					j.ID, j.Trigger.BodyHash, id, executor.ErrDuplicate)
			}
		}
		if inLaneIndex(j) {
			id, err := lookUp(ctx, tx, `SELECT id FROM jobs WHERE target = $1 AND sha = $2
				AND state IN ('queued', 'running') AND substr(owner, 1, 5) = 'lane:'`, j.Target, j.Trigger.SHA)
			if err != nil {
				return "", fmt.Errorf("create job %s: look up unfinished job of %s: %w", j.ID, j.Trigger.SHA, err)
			}
			if id != "" {
				return id, fmt.Errorf("create job %s: job %s of this target and SHA is not finished: %w", j.ID, id, executor.ErrDuplicate)
			}
		}
		id, err := lookUp(ctx, tx, `SELECT id FROM jobs WHERE id = $1`, j.ID)
		if err != nil {
			return "", fmt.Errorf("create job %s: look up id: %w", j.ID, err)
		}
		if id != "" {
			return "", fmt.Errorf("create job %s: a job with this id already exists", j.ID)
		}
		// What j collided with is gone: try again.
	}
	return "", fmt.Errorf("create job %s: it keeps colliding with jobs that end or go before they can be read", j.ID)
}

// inLaneIndex reports whether j is one of the jobs the unique index
// jobs_lane_sha covers: an unfinished job owned by a lane.
func inLaneIndex(j executor.Job) bool {
	return (j.State == executor.StateQueued || j.State == executor.StateRunning) &&
		strings.HasPrefix(j.Owner, executor.LaneOwner(""))
}

// lookUp returns the one text column of the first row of query, or "" when
// there is none.
func lookUp(ctx context.Context, tx pgx.Tx, query string, args ...any) (string, error) {
	var id string
	err := tx.QueryRow(ctx, query, args...).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// UpdateJob stores j's state, description, previous SHA, owner, start and
// finish times, found by j.ID, and adds the reports in owe to the outbox, in
// one transaction. It leaves the trigger, the creation time, the steps and
// the Deployment id alone. It returns an error wrapping executor.ErrNotFound,
// and owes nothing, if no job has j.ID.
func (s *Store) UpdateJob(ctx context.Context, j executor.Job, owe ...executor.Report) error {
	if j.State == "" {
		return fmt.Errorf("update job %s: empty state", j.ID)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("update job %s: begin: %w", j.ID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := updateTx(ctx, tx, j, owe); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("update job %s: commit: %w", j.ID, err)
	}
	return nil
}

// updateTx is UpdateJob's work inside tx.
func updateTx(ctx context.Context, tx pgx.Tx, j executor.Job, owe []executor.Report) error {
	tag, err := tx.Exec(ctx, `UPDATE jobs
		SET state = $1, description = $2, previous_sha = $3, owner = $4, started = $5, finished = $6
		WHERE id = $7`,
		string(j.State), jobrow.Text(j.Description), j.PreviousSHA, j.Owner, jobrow.Nanos(j.Started), jobrow.Nanos(j.Finished), j.ID)
	if err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	if err := oneRow(tag, "update job "+j.ID); err != nil {
		return err
	}
	if err := oweTx(ctx, tx, owe); err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return nil
}

// SetDeployment records the GitHub Deployment id of a job. It returns an
// error wrapping executor.ErrNotFound if there is no such job.
func (s *Store) SetDeployment(ctx context.Context, job string, deployment int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE jobs SET deployment = $1 WHERE id = $2`, deployment, job)
	if err != nil {
		return fmt.Errorf("set deployment of job %s: %w", job, err)
	}
	return oneRow(tag, "set deployment of job "+job)
}

// Job returns the job with its steps in order, read in one snapshot
// (REPEATABLE READ), or an error wrapping executor.ErrNotFound. Times are in
// UTC.
func (s *Store) Job(ctx context.Context, id string) (executor.Job, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return executor.Job{}, fmt.Errorf("read job %s: begin: %w", id, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	j, err := jobrow.ScanJob(tx.QueryRow(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return executor.Job{}, fmt.Errorf("job %s: %w", id, executor.ErrNotFound)
	}
	if err != nil {
		return executor.Job{}, fmt.Errorf("read job %s: %w", id, err)
	}
	rows, err := tx.Query(ctx, `SELECT `+jobrow.StepColumns+` FROM steps WHERE job = $1 ORDER BY seq`, id)
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

// Jobs lists jobs without their steps, newest (by creation, then by
// recording) first: those of target (all if target is empty), in one of
// states (any if none is given), at most limit of them (no limit if limit <=
// 0). No job is an empty list and a nil error.
func (s *Store) Jobs(ctx context.Context, target string, limit int, states ...executor.State) ([]executor.Job, error) {
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = string(st)
	}
	// A NULL (no) limit is no limit.
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	rows, err := s.pool.Query(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs
		WHERE ($1 = '' OR target = $1) AND (cardinality($2::text[]) = 0 OR state = ANY($2::text[]))
		ORDER BY created DESC, seq DESC LIMIT $3`, target, names, lim)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return collectJobs(rows, "list jobs")
}

// collectJobs reads every row of rows with jobrow.ScanJob, and closes rows.
func collectJobs(rows pgx.Rows, what string) ([]executor.Job, error) {
	defer rows.Close()
	jobs := []executor.Job{}
	for rows.Next() {
		j, err := jobrow.ScanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return jobs, nil
}

// LastSuccess returns the successful job of target that finished last (of
// those that finished at the same time, or without a finish time, the newest
// created, then recorded), without its steps, or an error wrapping
// executor.ErrNotFound.
func (s *Store) LastSuccess(ctx context.Context, target string) (executor.Job, error) {
	// NULLS LAST: as in the SQLite journal, where NULL sorts lowest.
	j, err := jobrow.ScanJob(s.pool.QueryRow(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs
		WHERE target = $1 AND state = $2 ORDER BY finished DESC NULLS LAST, created DESC, seq DESC LIMIT 1`,
		target, string(executor.StateSuccess)))
	if errors.Is(err, pgx.ErrNoRows) {
		return executor.Job{}, fmt.Errorf("last success of %s: %w", target, executor.ErrNotFound)
	}
	if err != nil {
		return executor.Job{}, fmt.Errorf("last success of %s: %w", target, err)
	}
	return j, nil
}

// Deployed returns the newest (by creation) successful job of target that
// deployed sha, without its steps, or an error wrapping executor.ErrNotFound.
func (s *Store) Deployed(ctx context.Context, target, sha string) (executor.Job, error) {
	j, err := jobrow.ScanJob(s.pool.QueryRow(ctx, `SELECT `+jobrow.JobColumns+` FROM jobs
		WHERE target = $1 AND sha = $2 AND state = $3 ORDER BY created DESC, seq DESC LIMIT 1`,
		target, sha, string(executor.StateSuccess)))
	if errors.Is(err, pgx.ErrNoRows) {
		return executor.Job{}, fmt.Errorf("deploy of %s to %s: %w", sha, target, executor.ErrNotFound)
	}
	if err != nil {
		return executor.Job{}, fmt.Errorf("deploy of %s to %s: %w", sha, target, err)
	}
	return j, nil
}

// AddStep records a step run of job st.Job, replacing the one with the same
// st.Seq if there is one. Its text is cleaned as package jobrow says: output
// longer than MaxOutput keeps its last MaxOutput bytes (less up to 3, to
// start on a character boundary). It returns an error wrapping
// executor.ErrNotFound if there is no such job.
func (s *Store) AddStep(ctx context.Context, st executor.StepRun) error {
	err := putStep(ctx, s.pool, st)
	if isCode(err, codeForeignKeyViolation) {
		return fmt.Errorf("add step %d of job %s: %w", st.Seq, st.Job, executor.ErrNotFound)
	}
	return err
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func putStep(ctx context.Context, db execer, st executor.StepRun) error {
	_, err := db.Exec(ctx, `INSERT INTO steps (`+jobrow.StepColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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

// oneRow turns a statement that changed no row into ErrNotFound.
func oneRow(tag pgconn.CommandTag, what string) error {
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, executor.ErrNotFound)
	}
	return nil
}

// isCode reports whether err is a PostgreSQL error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// isConstraint reports whether err is a PostgreSQL unique violation of the
// constraint or index named name.
func isConstraint(err error, name string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == codeUniqueViolation && pe.ConstraintName == name
}
