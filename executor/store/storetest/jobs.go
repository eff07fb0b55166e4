package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// CreateJob returns the new job's id, and Job gives back every field of it,
// its steps included; zero times stay zero.
func testCreateJobRoundTrip(t *testing.T, s executor.Store) {
	full := FullJob("j1")
	mustCreate(t, s, full)
	equalJob(t, "Job(j1)", mustJob(t, s, "j1"), full)

	bare := job("j2", "staging", executor.StateQueued, t0)
	mustCreate(t, s, bare)
	got := mustJob(t, s, "j2")
	if !got.Started.IsZero() || !got.Finished.IsZero() {
		t.Errorf("Job(j2): Started, Finished = %v, %v; want zero", got.Started, got.Finished)
	}
	equalJob(t, "Job(j2)", got, bare)
	if owed := mustOwed(t, s); len(owed) != 0 {
		t.Errorf("Owed = %+v, want nothing: no report was given", owed)
	}
}

// CreateJob owes its reports, in order, with the job.
func testCreateJobOwes(t *testing.T, s executor.Store) {
	a := job("a", "production", executor.StateQueued, t0)
	b := job("b", "production", executor.StateQueued, t0.Add(time.Second))
	want := []executor.Report{report(a, executor.StateQueued, "queued"), report(a, executor.StateRunning, "deploying")}
	mustCreate(t, s, a, want...)
	want = append(want, report(b, executor.StateQueued, "queued"))
	mustCreate(t, s, b, want[2])
	owed := mustOwed(t, s)
	if got := reportsOf(owed); !reflect.DeepEqual(got, want) {
		t.Errorf("owed reports =\n%+v\nwant\n%+v", got, want)
	}
	for _, o := range owed {
		if o.Tries != 0 {
			t.Errorf("report %d: %d tries, want 0", o.ID, o.Tries)
		}
	}
}

// A second job for a delivery and target returns the first one's id and
// ErrDuplicate, and records and owes nothing.
func testCreateJobDuplicateDelivery(t *testing.T, s executor.Store) {
	first := job("j1", "production", executor.StateQueued, t0)
	r := report(first, executor.StateQueued, "queued")
	mustCreate(t, s, first, r)
	second := job("j2", "production", executor.StateRunning, t0.Add(time.Second))
	second.Trigger.Delivery = first.Trigger.Delivery
	second.Trigger.SHA = sha2
	existing, err := s.CreateJob(t.Context(), second, report(second, executor.StateQueued, "queued"))
	if !errors.Is(err, executor.ErrDuplicate) || existing != "j1" {
		t.Fatalf("CreateJob(duplicate) = %q, %v; want j1, ErrDuplicate", existing, err)
	}
	_, err = s.Job(t.Context(), "j2")
	wantNotFound(t, "Job(j2) (the duplicate must not be recorded)", err)
	equalJob(t, "Job(j1)", mustJob(t, s, "j1"), first)
	if got := reportsOf(mustOwed(t, s)); !reflect.DeepEqual(got, []executor.Report{r}) {
		t.Errorf("owed reports = %+v, want only the first job's", got)
	}
}

// One push may deploy several targets: a delivery GUID deduplicates per
// target.
func testCreateJobDeliveryPerTarget(t *testing.T, s executor.Store) {
	jobs := []struct {
		id, target string
		want       string // the id CreateJob returns
		dup        bool
	}{
		{"a", "production", "a", false},
		{"b", "staging", "b", false},
		{"c", "staging", "b", true},
		{"d", "production", "a", true},
	}
	for i, jj := range jobs {
		j := job(jj.id, jj.target, executor.StateQueued, t0.Add(time.Duration(i)*time.Second))
		j.Trigger.Delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
		got, err := s.CreateJob(t.Context(), j)
		if got != jj.want || errors.Is(err, executor.ErrDuplicate) != jj.dup || (!jj.dup && err != nil) {
			t.Errorf("CreateJob(%s, %s) = %q, %v; want %q, duplicate %v", jj.id, jj.target, got, err, jj.want, jj.dup)
		}
	}
	jobsLeft, err := s.Jobs(t.Context(), "", 0)
	if got := ids(jobsLeft); err != nil || !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Jobs = %v, %v; want [b a]", got, err)
	}
}

// Jobs without a delivery GUID or a body hash (local triggers) are never
// duplicates.
func testCreateJobEmptyDelivery(t *testing.T, s executor.Store) {
	for i, id := range []string{"j1", "j2", "j3"} {
		j := job(id, "production", executor.StateQueued, t0.Add(time.Duration(i)*time.Second))
		j.Trigger.Kind, j.Trigger.Delivery = executor.KindManual, ""
		mustCreate(t, s, j)
	}
	jobs, err := s.Jobs(t.Context(), "", 0)
	if got := ids(jobs); err != nil || !slices.Equal(got, []string{"j3", "j2", "j1"}) {
		t.Errorf("Jobs = %v, %v; want [j3 j2 j1]", got, err)
	}
}

// An old signed body replayed under a new delivery GUID creates no job for a
// target that has one for that body (issue 8, item 1).
func testCreateJobBodyHash(t *testing.T, s executor.Store) {
	ctx := t.Context()
	first := job("j1", "production", executor.StateSuccess, t0)
	first.Trigger.BodyHash = bodyHash1
	mustCreate(t, s, first)
	tests := []struct {
		name     string
		target   string
		delivery string
		hash     string
		want     string // the id CreateJob returns
		wantDup  bool
	}{
		{name: "same body, new GUID, same target", target: "production", delivery: "new-guid-1", hash: bodyHash1, want: "j1", wantDup: true},
		{name: "same body, new GUID again", target: "production", delivery: "new-guid-2", hash: bodyHash1, want: "j1", wantDup: true},
		{name: "same body, no GUID", target: "production", delivery: "", hash: bodyHash1, want: "j1", wantDup: true},
		{name: "same body, other target", target: "staging", delivery: "new-guid-3", hash: bodyHash1, want: "j-staging"},
		{name: "other body, same target", target: "production", delivery: "new-guid-4", hash: bodyHash2, want: "j-other"},
		{name: "the refused GUID with a new body", target: "production", delivery: "new-guid-1",
			hash: "0000000000000000000000000000000000000000000000000000000000000001", want: "j-reused-guid"},
		{name: "no body hash never deduplicates", target: "production", delivery: "", hash: "", want: "j-local-1"},
		{name: "no body hash, again", target: "production", delivery: "", hash: "", want: "j-local-2"},
	}
	var wantOwed []executor.Report
	for i, tt := range tests {
		id := tt.want
		if tt.wantDup {
			id = fmt.Sprintf("dup-%d", i)
		}
		j := job(id, tt.target, executor.StateQueued, t0.Add(time.Duration(i+1)*time.Second))
		j.Trigger.Delivery, j.Trigger.BodyHash = tt.delivery, tt.hash
		r := report(j, executor.StateQueued, "queued")
		got, err := s.CreateJob(ctx, j, r)
		if got != tt.want || errors.Is(err, executor.ErrDuplicate) != tt.wantDup || (!tt.wantDup && err != nil) {
			t.Errorf("%s: CreateJob = %q, %v; want %q, duplicate %v", tt.name, got, err, tt.want, tt.wantDup)
		}
		_, err = s.Job(ctx, id)
		if recorded := err == nil; recorded == tt.wantDup {
			t.Errorf("%s: job %s recorded = %v, want %v", tt.name, id, recorded, !tt.wantDup)
		}
		if !tt.wantDup {
			wantOwed = append(wantOwed, r)
		}
	}
	if got := reportsOf(mustOwed(t, s)); !reflect.DeepEqual(got, wantOwed) {
		t.Errorf("owed reports =\n%+v\nwant\n%+v (nothing for a duplicate)", got, wantOwed)
	}
}

// A job whose delivery GUID matches one job and whose body hash another is
// the delivery's duplicate.
func testCreateJobDeliveryFirst(t *testing.T, s executor.Store) {
	a := job("a", "production", executor.StateQueued, t0)
	a.Trigger.BodyHash = bodyHash1
	b := job("b", "production", executor.StateQueued, t0.Add(time.Second))
	b.Trigger.BodyHash = bodyHash2
	mustCreate(t, s, a)
	mustCreate(t, s, b)
	c := job("c", "production", executor.StateQueued, t0.Add(2*time.Second))
	c.Trigger.Delivery, c.Trigger.BodyHash = a.Trigger.Delivery, b.Trigger.BodyHash
	if existing, err := s.CreateJob(t.Context(), c); !errors.Is(err, executor.ErrDuplicate) || existing != "a" {
		t.Errorf("CreateJob(a's delivery, b's body) = %q, %v; want a, ErrDuplicate", existing, err)
	}
}

// CreateJob records a new job: an id that exists is an error (not a
// duplicate delivery), and nothing of the refused job is recorded or owed.
func testCreateJobSameID(t *testing.T, s executor.Store) {
	first := job("j1", "production", executor.StateQueued, t0)
	mustCreate(t, s, first)
	again := job("j1", "staging", executor.StateRunning, t0.Add(time.Second))
	again.Trigger.Delivery, again.Trigger.BodyHash = "another", bodyHash2
	_, err := s.CreateJob(t.Context(), again, report(again, executor.StateQueued, "queued"))
	if err == nil || errors.Is(err, executor.ErrDuplicate) {
		t.Fatalf("CreateJob(same id) error = %v, want an error that is not ErrDuplicate", err)
	}
	equalJob(t, "Job(j1)", mustJob(t, s, "j1"), first)
	if owed := mustOwed(t, s); len(owed) != 0 {
		t.Errorf("Owed = %+v, want nothing for the refused job", owed)
	}
	// Neither the refused job's delivery nor its body hash was recorded.
	fresh := job("j2", "staging", executor.StateQueued, t0.Add(2*time.Second))
	fresh.Trigger.Delivery, fresh.Trigger.BodyHash = "another", bodyHash2
	mustCreate(t, s, fresh)
}

// Of concurrent CreateJob calls for one delivery, exactly one records a job;
// every other returns its id and ErrDuplicate, and owes nothing.
func testCreateJobConcurrentDelivery(t *testing.T, s executor.Store) {
	raceCreate(t, s, func(j *executor.Job, i int) {
		j.Trigger.Delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	})
}

// Of concurrent CreateJob calls for one body under distinct delivery GUIDs
// (replays), exactly one records a job.
func testCreateJobConcurrentBody(t *testing.T, s executor.Store) {
	raceCreate(t, s, func(j *executor.Job, i int) {
		j.Trigger.Delivery = fmt.Sprintf("guid-%02d", i)
		j.Trigger.BodyHash = bodyHash1
	})
}

// raceCreate runs concurrent CreateJob calls for jobs that set makes
// duplicates of each other, each owing one report, and checks that exactly
// one wins.
func raceCreate(t *testing.T, s executor.Store, set func(j *executor.Job, i int)) {
	const n = 16
	type result struct {
		existing string
		err      error
	}
	results := make([]result, n)
	reports := make([]executor.Report, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		j := job(fmt.Sprintf("j%02d", i), "production", executor.StateQueued, t0)
		set(&j, i)
		reports[i] = report(j, executor.StateQueued, "queued")
		wg.Go(func() {
			<-start
			existing, err := s.CreateJob(t.Context(), j, reports[i])
			results[i] = result{existing, err}
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, r := range results {
		if r.err != nil {
			continue
		}
		if winner >= 0 {
			t.Fatalf("calls %d and %d both recorded a job; results %+v", winner, i, results)
		}
		winner = i
	}
	if winner < 0 {
		t.Fatalf("no call recorded a job; results %+v", results)
	}
	id := fmt.Sprintf("j%02d", winner)
	for i, r := range results {
		if i != winner && (!errors.Is(r.err, executor.ErrDuplicate) || r.existing != id) {
			t.Errorf("call %d = %q, %v; want %s, ErrDuplicate", i, r.existing, r.err, id)
		}
		if i == winner && r.existing != id {
			t.Errorf("winning call %d returned id %q, want %s", i, r.existing, id)
		}
	}
	jobs, err := s.Jobs(t.Context(), "", 0)
	if got := ids(jobs); err != nil || !slices.Equal(got, []string{id}) {
		t.Errorf("Jobs = %v, %v; want [%s]", got, err, id)
	}
	if got := reportsOf(mustOwed(t, s)); !reflect.DeepEqual(got, []executor.Report{reports[winner]}) {
		t.Errorf("owed reports = %+v, want only the winner's", got)
	}
}

// UpdateJob stores state, description, previous SHA, owner and times, and
// leaves the rest alone: target, trigger, creation time, steps, deployment.
func testUpdateJob(t *testing.T, s executor.Store) {
	orig := FullJob("j1")
	mustCreate(t, s, orig)
	if err := s.SetDeployment(t.Context(), "j1", 42); err != nil {
		t.Fatal(err)
	}
	upd := job("j1", "other-target", executor.StateFailure, t0.Add(time.Hour))
	upd.Description = "failure: rolled back to 89abcde"
	upd.Owner = "owner-cli-2"
	upd.Trigger.BodyHash = bodyHash2
	upd.PreviousSHA = sha1
	upd.Started = t0.Add(5 * time.Second)
	upd.Finished = time.Time{}
	upd.Deployment = 0 // must not clear the recorded one
	upd.Steps = nil    // must not remove the steps
	if err := s.UpdateJob(t.Context(), upd); err != nil {
		t.Fatalf("UpdateJob: %v", err)
	}
	want := orig
	want.State, want.Description, want.PreviousSHA = upd.State, upd.Description, upd.PreviousSHA
	want.Started, want.Finished = upd.Started, upd.Finished
	want.Owner = upd.Owner
	want.Deployment = 42
	equalJob(t, "Job(j1) after UpdateJob", mustJob(t, s, "j1"), want)

	// Steps given to UpdateJob are not recorded either.
	upd.Steps = []executor.StepRun{{Job: "j1", Seq: 9, Name: "not recorded"}}
	if err := s.UpdateJob(t.Context(), upd); err != nil {
		t.Fatalf("UpdateJob: %v", err)
	}
	equalJob(t, "Job(j1) after UpdateJob with steps", mustJob(t, s, "j1"), want)
}

// UpdateJob owes its reports with the state change.
func testUpdateJobOwes(t *testing.T, s executor.Store) {
	j := job("j1", "production", executor.StateQueued, t0)
	queued := report(j, executor.StateQueued, "queued")
	mustCreate(t, s, j, queued)
	j.State, j.Description = executor.StateSuccess, "deployed"
	success := report(j, executor.StateSuccess, "deployed")
	inactive := report(j, executor.StateSuperseded, "replaced")
	if err := s.UpdateJob(t.Context(), j, success, inactive); err != nil {
		t.Fatalf("UpdateJob: %v", err)
	}
	want := []executor.Report{queued, success, inactive}
	if got := reportsOf(mustOwed(t, s)); !reflect.DeepEqual(got, want) {
		t.Errorf("owed reports =\n%+v\nwant\n%+v", got, want)
	}
	if got := mustJob(t, s, "j1"); got.State != executor.StateSuccess || got.Description != "deployed" {
		t.Errorf("Job(j1) = state %s, description %q; want success, deployed", got.State, got.Description)
	}
}

// UpdateJob of an unknown job is ErrNotFound, and records and owes nothing.
func testUpdateJobUnknown(t *testing.T, s executor.Store) {
	j := job("nope", "production", executor.StateSuccess, t0)
	err := s.UpdateJob(t.Context(), j, report(j, executor.StateSuccess, "deployed"))
	wantNotFound(t, "UpdateJob(unknown)", err)
	if owed := mustOwed(t, s); len(owed) != 0 {
		t.Errorf("Owed = %+v, want nothing owed for an unknown job", owed)
	}
	jobs, err := s.Jobs(t.Context(), "", 0)
	if err != nil || len(jobs) != 0 {
		t.Errorf("Jobs = %v, %v; want none", ids(jobs), err)
	}
}

// A final job changes state once more when the post-deploy watch rolls it
// back: the success becomes a failure, its steps and Deployment kept, a step
// added after it was final, and its report owed; LastSuccess goes back to
// the previous success and Deployed no longer knows its SHA.
func testUpdateJobFinalAgain(t *testing.T, s executor.Store) {
	prev := finished(job("prev", "production", executor.StateSuccess, t0), t0.Add(time.Minute))
	prev.Trigger.SHA = sha2
	mustCreate(t, s, prev)
	j := finished(FullJob("watched"), t0.Add(3*time.Minute))
	j.State, j.Description = executor.StateSuccess, "deployed 0123456"
	mustCreate(t, s, j)
	if err := s.SetDeployment(t.Context(), "watched", 77); err != nil {
		t.Fatal(err)
	}
	if last, err := s.LastSuccess(t.Context(), "production"); err != nil || last.ID != "watched" {
		t.Fatalf("LastSuccess = %s, %v; want watched", last.ID, err)
	}
	watch := executor.StepRun{Job: "watched", Seq: 4, Name: "watch", ExitCode: 1,
		Output: "+30s degraded (1 of 1): dagster is failed\n", Started: t0.Add(3 * time.Minute), Duration: 30 * time.Second}
	if err := s.AddStep(t.Context(), watch); err != nil {
		t.Fatalf("AddStep after the job is final: %v", err)
	}
	j.State, j.Description, j.Finished = executor.StateFailure, "rolled back after 1 min: dagster is failed", t0.Add(5*time.Minute)
	failure := report(j, executor.StateFailure, j.Description)
	if err := s.UpdateJob(t.Context(), j, failure); err != nil {
		t.Fatalf("UpdateJob of a final job: %v", err)
	}
	want := j
	want.Deployment = 77
	want.Steps = append(want.Steps, watch)
	equalJob(t, "Job(watched)", mustJob(t, s, "watched"), want)
	if got := reportsOf(mustOwed(t, s)); !reflect.DeepEqual(got, []executor.Report{failure}) {
		t.Errorf("owed reports = %+v, want the failure", got)
	}
	if last, err := s.LastSuccess(t.Context(), "production"); err != nil || last.ID != "prev" {
		t.Errorf("LastSuccess = %s, %v; want prev", last.ID, err)
	}
	_, err := s.Deployed(t.Context(), "production", sha1)
	wantNotFound(t, "Deployed(the rolled-back SHA)", err)
	if got, err := s.Jobs(t.Context(), "production", 0, executor.StateSuccess); err != nil || len(got) != 1 || got[0].ID != "prev" {
		t.Errorf("Jobs(success) = %v, %v; want [prev]", ids(got), err)
	}
}

// SetDeployment records (and replaces) a job's Deployment id, and nothing
// else; ErrNotFound for an unknown job.
func testSetDeployment(t *testing.T, s executor.Store) {
	j := FullJob("j1")
	mustCreate(t, s, j)
	for _, dep := range []int64{987654321, 5} {
		if err := s.SetDeployment(t.Context(), "j1", dep); err != nil {
			t.Fatalf("SetDeployment(j1, %d): %v", dep, err)
		}
		j.Deployment = dep
		equalJob(t, fmt.Sprintf("Job(j1) after SetDeployment(%d)", dep), mustJob(t, s, "j1"), j)
	}
	wantNotFound(t, "SetDeployment(unknown)", s.SetDeployment(t.Context(), "nope", 1))
}

// LastSuccess is the successful job of a target that finished last (ties: the
// newest created); skipped jobs, other states and other targets do not count.
func testLastSuccess(t *testing.T, s executor.Store) {
	_, err := s.LastSuccess(t.Context(), "production")
	wantNotFound(t, "LastSuccess(empty journal)", err)
	jobs := []executor.Job{
		job("old-ok", "production", executor.StateSuccess, t0),
		job("tie-ok-1", "production", executor.StateSuccess, t0.Add(time.Minute)),
		job("tie-ok-2", "production", executor.StateSuccess, t0.Add(time.Minute)), // recorded later: newer
		job("newer-failed", "production", executor.StateFailure, t0.Add(2*time.Minute)),
		job("newer-skipped", "production", executor.StateSkipped, t0.Add(3*time.Minute)),
		job("running", "production", executor.StateRunning, t0.Add(4*time.Minute)),
		job("staging-ok", "staging", executor.StateSuccess, t0.Add(5*time.Minute)),
		job("dev-skipped", "dev", executor.StateSkipped, t0.Add(6*time.Minute)),
		// Created first, finished last: what the target runs.
		finished(job("qa-first-created", "qa", executor.StateSuccess, t0), t0.Add(10*time.Minute)),
		finished(job("qa-later-created", "qa", executor.StateSuccess, t0.Add(time.Minute)), t0.Add(2*time.Minute)),
	}
	for _, j := range jobs {
		mustCreate(t, s, j)
	}
	tests := []struct {
		target string
		want   int // index in jobs; -1 for ErrNotFound
	}{
		{"production", 2},
		{"staging", 6},
		{"qa", 8},
		{"dev", -1},
		{"unknown", -1},
	}
	for _, tt := range tests {
		got, err := s.LastSuccess(t.Context(), tt.target)
		if tt.want < 0 {
			wantNotFound(t, "LastSuccess("+tt.target+")", err)
			continue
		}
		if err != nil {
			t.Errorf("LastSuccess(%s): %v", tt.target, err)
			continue
		}
		equalJob(t, "LastSuccess("+tt.target+")", withoutSteps(got), jobs[tt.want])
	}
}

// finished returns j with its Started and Finished times set to at.
func finished(j executor.Job, at time.Time) executor.Job {
	j.Started, j.Finished = at.Add(-time.Second), at
	return j
}

// Deployed is the newest successful job of a target that deployed a SHA.
func testDeployed(t *testing.T, s executor.Store) {
	jobs := []executor.Job{
		job("old-ok", "production", executor.StateSuccess, t0.Add(1*time.Minute)),
		job("new-ok", "production", executor.StateSuccess, t0.Add(3*time.Minute)),
		job("later-running", "production", executor.StateRunning, t0.Add(5*time.Minute)),
		job("staging-ok", "staging", executor.StateSuccess, t0.Add(6*time.Minute)),
		job("sha2-failed", "production", executor.StateFailure, t0.Add(7*time.Minute)),
		job("sha2-skipped", "production", executor.StateSkipped, t0.Add(8*time.Minute)),
	}
	for i := range jobs {
		switch jobs[i].ID {
		case "staging-ok", "sha2-failed", "sha2-skipped":
			jobs[i].Trigger.SHA = sha2
		}
		jobs[i].Owner = "owner-" + jobs[i].ID
		jobs[i].Trigger.BodyHash = fmt.Sprintf("%064x", i+1)
		mustCreate(t, s, jobs[i])
	}
	tests := []struct {
		target, sha string
		want        int // index in jobs; -1 for ErrNotFound
	}{
		{"production", sha1, 1},
		{"production", sha2, -1}, // failed and skipped jobs are not deploys
		{"staging", sha2, 3},
		{"staging", sha1, -1},
		{"dev", sha1, -1},
	}
	for _, tt := range tests {
		what := fmt.Sprintf("Deployed(%s, %.7s)", tt.target, tt.sha)
		got, err := s.Deployed(t.Context(), tt.target, tt.sha)
		if tt.want < 0 {
			wantNotFound(t, what, err)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		equalJob(t, what, withoutSteps(got), jobs[tt.want])
	}
}

// AddStep inserts a step, or replaces the one of the same job and seq; Job
// lists steps by seq.
func testAddStep(t *testing.T, s executor.Store) {
	mustCreate(t, s, job("j1", "production", executor.StateRunning, t0))
	mustCreate(t, s, job("j2", "production", executor.StateRunning, t0.Add(time.Second)))
	started := executor.StepRun{Job: "j1", Seq: 2, Name: "sync", ExitCode: -1, Started: t0}
	first := executor.StepRun{Job: "j1", Seq: 1, Name: "fetch", Output: "ok\n", Started: t0, Duration: time.Second}
	other := executor.StepRun{Job: "j2", Seq: 2, Name: "other job's step", ExitCode: 3}
	ended := started
	ended.ExitCode, ended.Output, ended.Error, ended.Duration = 0, "Resolved 42 packages\n", "", 3*time.Second
	ended.Skipped = ""
	for _, st := range []executor.StepRun{started, first, other, ended} {
		if err := s.AddStep(t.Context(), st); err != nil {
			t.Fatalf("AddStep(%s, %d): %v", st.Job, st.Seq, err)
		}
	}
	j1 := job("j1", "production", executor.StateRunning, t0)
	j1.Steps = []executor.StepRun{first, ended}
	equalJob(t, "Job(j1)", mustJob(t, s, "j1"), j1)
	j2 := job("j2", "production", executor.StateRunning, t0.Add(time.Second))
	j2.Steps = []executor.StepRun{other}
	equalJob(t, "Job(j2)", mustJob(t, s, "j2"), j2)
}

// AddStep of an unknown job is ErrNotFound.
func testAddStepUnknown(t *testing.T, s executor.Store) {
	err := s.AddStep(t.Context(), executor.StepRun{Job: "nope", Seq: 1, Name: "fetch"})
	wantNotFound(t, "AddStep(unknown job)", err)
	_, err = s.Job(t.Context(), "nope")
	wantNotFound(t, "Job(nope) after AddStep", err)
}
