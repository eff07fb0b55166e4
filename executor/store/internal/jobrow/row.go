package jobrow

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// Scanner is one row of a query, of either journal's driver: a *sql.Row or
// *sql.Rows (SQLite), a pgx.Row or pgx.Rows (PostgreSQL). Both drivers scan
// a NULL into a nil pointer, and take a nil pointer as NULL.
type Scanner interface {
	Scan(dest ...any) error
}

// JobColumns are the columns of the jobs table that JobValues gives and
// ScanJob reads, in their order.
const JobColumns = `id, target, kind, repo, branch, sha, delivery, actor, reason, force,
	body_hash, any_commit, state, description, previous_sha, deployment, owner,
	created, started, finished`

// FinalStates are the end states of a job (executor.State.Final), as SQL
// string literals, for queries that must know them.
const FinalStates = `'success', 'failure', 'error', 'superseded', 'skipped'`

// JobValues returns the values of j's JobColumns, in their order, as a
// journal records a new job: free text cleaned (Text), times as unix
// nanoseconds (a NULL start or finish for the zero time).
func JobValues(j executor.Job) []any {
	return []any{
		j.ID, j.Target, string(j.Trigger.Kind), Text(j.Trigger.Repo), Text(j.Trigger.Branch), j.Trigger.SHA,
		j.Trigger.Delivery, Text(j.Trigger.Actor), Text(j.Trigger.Reason), j.Trigger.Force,
		j.Trigger.BodyHash, j.Trigger.AnyCommit,
		string(j.State), Text(j.Description), j.PreviousSHA, j.Deployment, j.Owner,
		j.Created.UnixNano(), Nanos(j.Started), Nanos(j.Finished),
	}
}

// ScanJob reads the JobColumns of one row, without steps; times in UTC.
func ScanJob(row Scanner) (executor.Job, error) {
	var j executor.Job
	var kind, state string
	var created int64
	var started, finished *int64
	err := row.Scan(&j.ID, &j.Target, &kind, &j.Trigger.Repo, &j.Trigger.Branch, &j.Trigger.SHA,
		&j.Trigger.Delivery, &j.Trigger.Actor, &j.Trigger.Reason, &j.Trigger.Force,
		&j.Trigger.BodyHash, &j.Trigger.AnyCommit,
		&state, &j.Description, &j.PreviousSHA, &j.Deployment, &j.Owner, &created, &started, &finished)
	if err != nil {
		return executor.Job{}, err
	}
	j.Trigger.Kind = executor.Kind(kind)
	j.State = executor.State(state)
	j.Created = time.Unix(0, created).UTC()
	j.Started = FromNanos(started)
	j.Finished = FromNanos(finished)
	return j, nil
}

// StepColumns are the columns of the steps table that StepValues gives and
// ScanStep reads, in their order. (job, seq) is the table's primary key.
const StepColumns = `job, seq, name, skipped, exit_code, error, output, started, duration`

// StepValues returns the values of st's StepColumns, in their order, as a
// journal records a step: output cleaned by Output, other text by Text, the
// start as unix nanoseconds (NULL for the zero time), the duration in
// nanoseconds.
func StepValues(st executor.StepRun) []any {
	return []any{
		st.Job, st.Seq, Text(st.Name), Text(st.Skipped), st.ExitCode, Text(st.Error), Output(st.Output),
		Nanos(st.Started), int64(st.Duration),
	}
}

// ScanStep reads the StepColumns of one row; its start in UTC.
func ScanStep(row Scanner) (executor.StepRun, error) {
	var st executor.StepRun
	var started *int64
	var dur int64
	if err := row.Scan(&st.Job, &st.Seq, &st.Name, &st.Skipped, &st.ExitCode, &st.Error, &st.Output, &started, &dur); err != nil {
		return executor.StepRun{}, err
	}
	st.Started = FromNanos(started)
	st.Duration = time.Duration(dur)
	return st, nil
}

// OwedColumns are the columns of the outbox table that ScanOwed reads, in
// its order.
const OwedColumns = `id, report, created, tries`

// ReportJSON is r as the outbox keeps it, JSON, which ScanOwed decodes.
func ReportJSON(r executor.Report) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("owe report of job %s: %w", r.Job, err)
	}
	return string(b), nil
}

// ScanOwed reads the OwedColumns of one outbox row; its creation in UTC.
func ScanOwed(row Scanner) (executor.OwedReport, error) {
	var o executor.OwedReport
	var report string
	var created int64
	if err := row.Scan(&o.ID, &report, &created, &o.Tries); err != nil {
		return executor.OwedReport{}, err
	}
	if err := json.Unmarshal([]byte(report), &o.Report); err != nil {
		return executor.OwedReport{}, fmt.Errorf("report %d: %w", o.ID, err)
	}
	o.Created = time.Unix(0, created).UTC()
	return o, nil
}

// Nanos is t as unix nanoseconds, nil (NULL) for the zero time. Times are
// stored so, not as a database's time type (PostgreSQL's timestamptz keeps
// microseconds only), so that they round-trip exactly.
func Nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

// FromNanos is the inverse of Nanos, in UTC.
func FromNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}
