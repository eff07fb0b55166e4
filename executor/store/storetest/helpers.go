package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// t0 is an arbitrary instant with a nanosecond part, in a location other than
// UTC, so that a store that loses either shows it.
var t0 = time.Date(2026, 11, 26, 15, 4, 5, 123456789, time.FixedZone("CET", 3600))

// Full commit SHAs.
const (
	sha1 = "0123456789abcdef0123456789abcdef01234567"
	sha2 = "89abcdef0123456789abcdef0123456789abcdef"
)

// Body hashes, hex SHA-256 digests as the server computes them.
const (
	bodyHash1 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
	bodyHash2 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
)

// job is a minimal job of target, created at created, with a delivery GUID
// of its own and no body hash.
func job(id, target string, state executor.State, created time.Time) executor.Job {
	return executor.Job{
		ID:      id,
		Target:  target,
		Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: sha1, Delivery: "d-" + id},
		State:   state,
		Created: created,
	}
}

// FullJob is a job of target production with every field of the job set,
// three steps included (one skipped, one with an error), its times with
// nanoseconds and in a location other than UTC: the suite's round-trip
// fixture, for an implementation's own tests too.
func FullJob(id string) executor.Job {
	return executor.Job{
		ID:     id,
		Target: "production",
		Trigger: executor.Trigger{
			Kind:      executor.KindWorkflowRun,
			Repo:      "acme/data-platform",
			Branch:    "main",
			SHA:       sha1,
			Delivery:  "delivery-" + id,
			Actor:     "octocat",
			Reason:    "CI run 42 passed",
			Force:     true,
			BodyHash:  bodyHash1,
			AnyCommit: true,
		},
		State:       executor.StateRunning,
		Description: "deploying 0123456",
		PreviousSHA: sha2,
		Deployment:  1234567890123,
		Owner:       "owner-serve-1",
		Created:     t0,
		Started:     t0.Add(time.Second + 7),
		Finished:    t0.Add(time.Minute + 9),
		Steps: []executor.StepRun{
			{Job: id, Seq: 1, Name: "fetch", ExitCode: 0, Output: "HEAD is now at 0123456 ✓\n",
				Started: t0.Add(2 * time.Second), Duration: 1500 * time.Millisecond},
			{Job: id, Seq: 2, Name: "sync", Skipped: "uv.lock unchanged", ExitCode: -1},
			{Job: id, Seq: 3, Name: "rollback: restart", ExitCode: 1, Error: "timed out",
				Output: "Job for dagster.service failed", Started: t0.Add(3 * time.Second), Duration: 10 * time.Minute},
		},
	}
}

// utc is t as an instant in UTC, without a monotonic clock reading; the zero
// time stays zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.Unix(0, t.UnixNano()).UTC()
}

// normalize returns j as the contract lets a store give it back: times as UTC
// instants, and nil steps for none.
func normalize(j executor.Job) executor.Job {
	j.Created, j.Started, j.Finished = utc(j.Created), utc(j.Started), utc(j.Finished)
	if len(j.Steps) == 0 {
		j.Steps = nil
		return j
	}
	steps := make([]executor.StepRun, len(j.Steps))
	for i, st := range j.Steps {
		st.Started = utc(st.Started)
		steps[i] = st
	}
	j.Steps = steps
	return j
}

// withoutSteps is j as the listing methods return it.
func withoutSteps(j executor.Job) executor.Job {
	j.Steps = nil
	return j
}

// equalJob reports, on t, how got differs from want, both normalized.
func equalJob(t *testing.T, what string, got, want executor.Job) {
	t.Helper()
	got, want = normalize(got), normalize(want)
	if reflect.DeepEqual(got, want) {
		return
	}
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %s = %+v, want %+v", what, gv.Type().Field(i).Name, g, w)
		}
	}
}

// ids lists the jobs' ids, in order; an empty list for none.
func ids(jobs []executor.Job) []string {
	out := []string{}
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

// mustCreate records j, owing owe, and fails t if the store refuses it or
// returns another id than j's.
func mustCreate(t *testing.T, s executor.Store, j executor.Job, owe ...executor.Report) {
	t.Helper()
	id, err := s.CreateJob(t.Context(), j, owe...)
	if err != nil || id != j.ID {
		t.Fatalf("CreateJob(%s) = %q, %v; want %q, nil", j.ID, id, err, j.ID)
	}
}

// mustJob reads job id, and fails t if it cannot.
func mustJob(t *testing.T, s Reader, id string) executor.Job {
	t.Helper()
	j, err := s.Job(t.Context(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

// mustOwed lists every owed report, and fails t if it cannot.
func mustOwed(t *testing.T, s executor.Store) []executor.OwedReport {
	t.Helper()
	owed, err := s.Owed(t.Context(), 0)
	if err != nil {
		t.Fatalf("Owed(0): %v", err)
	}
	return owed
}

// reportsOf lists the reports of owed, without their ids, times and tries.
func reportsOf(owed []executor.OwedReport) []executor.Report {
	out := []executor.Report{}
	for _, o := range owed {
		out = append(out, o.Report)
	}
	return out
}

// wantNotFound reports, on t, an error that does not wrap executor.ErrNotFound.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, executor.ErrNotFound) {
		t.Errorf("%s error = %v, want one wrapping ErrNotFound", what, err)
	}
}

// report is a report of job j in state st.
func report(j executor.Job, st executor.State, desc string) executor.Report {
	return executor.Report{
		Job: j.ID, Target: j.Target, Environment: j.Target + "-env", Repo: j.Trigger.Repo, SHA: j.Trigger.SHA,
		State: st, Description: desc, URL: fmt.Sprintf("https://deploy.example.com/jobs/%s", j.ID),
	}
}
