package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// Orphans lists the unfinished jobs whose owner's lease ended before now
// (no owner, no row for it, or an Until before now), newest first, without
// steps; Beat replaces an owner's row, so a renewed lease takes its jobs off
// the list.
func testOrphans(t *testing.T, s executor.Store) {
	ctx := t.Context()
	now := t0.Add(time.Hour)
	for _, o := range []executor.Owner{
		{ID: "expired", Kind: "cli", Host: "vm-1", PID: 4242, Until: now.Add(-time.Nanosecond)},
		{ID: "edge", Kind: "serve", Host: "vm-1", PID: 1, Until: now}, // alive at now itself
		{ID: "live", Kind: "serve", Host: "vm-1", PID: 1, Until: now.Add(time.Minute)},
	} {
		if err := s.Beat(ctx, o); err != nil {
			t.Fatalf("Beat(%s): %v", o.ID, err)
		}
	}
	jobs := []struct {
		id     string
		state  executor.State
		owner  string
		orphan bool
	}{
		{"legacy", executor.StateRunning, "", true}, // recorded before owners existed
		{"no-row", executor.StateQueued, "gone", true},
		{"expired-running", executor.StateRunning, "expired", true},
		{"expired-queued", executor.StateQueued, "expired", true},
		{"expired-final", executor.StateError, "expired", false},
		{"expired-skipped", executor.StateSkipped, "expired", false},
		{"legacy-final", executor.StateSuccess, "", false},
		{"edge", executor.StateRunning, "edge", false},
		{"live-running", executor.StateRunning, "live", false},
		{"live-queued", executor.StateQueued, "live", false},
	}
	all := map[string]executor.Job{}
	var want []string
	for i, jj := range jobs {
		j := job(jj.id, "production", jj.state, t0.Add(time.Duration(i)*time.Minute))
		j.Owner = jj.owner
		mustCreate(t, s, j)
		all[j.ID] = j
		if jj.orphan {
			want = append([]string{jj.id}, want...) // newest first
		}
	}
	if err := s.AddStep(ctx, executor.StepRun{Job: "legacy", Seq: 1, Name: "fetch"}); err != nil {
		t.Fatal(err)
	}
	orphans, err := s.Orphans(ctx, now)
	if err != nil {
		t.Fatalf("Orphans: %v", err)
	}
	if got := ids(orphans); !slices.Equal(got, want) {
		t.Fatalf("Orphans(now) = %v, want %v", got, want)
	}
	for _, j := range orphans {
		equalJob(t, "orphan "+j.ID, j, all[j.ID]) // without its step
	}

	// A renewed lease takes its jobs off the list; the "live" and "edge"
	// leases have ended a nanosecond after now+1m.
	renewed := executor.Owner{ID: "expired", Kind: "serve", Host: "vm-2", PID: 77, Until: now.Add(time.Hour)}
	if err := s.Beat(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	orphans, err = s.Orphans(ctx, now.Add(time.Minute+time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(orphans), []string{"live-queued", "live-running", "edge", "no-row", "legacy"}; !slices.Equal(got, want) {
		t.Errorf("Orphans(now+1m) = %v, want %v", got, want)
	}
	// A lease can also be shortened: Beat replaces the row.
	renewed.Until = now.Add(-time.Hour)
	if err := s.Beat(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	orphans, err = s.Orphans(ctx, now)
	if got := ids(orphans); err != nil || !slices.Equal(got, want) {
		t.Errorf("Orphans(now) after the lease was shortened = %v, %v; want %v", got, err, want)
	}
}

// Adopt is a compare-and-set of a job's owner: it succeeds only from the
// owner the job has, and only while the job is not final; ErrNotFound
// otherwise, with nothing changed.
func testAdopt(t *testing.T, s executor.Store) {
	ctx := t.Context()
	all := map[string]executor.Job{}
	for _, j := range []executor.Job{
		job("running", "production", executor.StateRunning, t0),
		job("queued", "production", executor.StateQueued, t0.Add(time.Second)),
		job("final", "production", executor.StateError, t0.Add(2*time.Second)),
		job("skipped", "production", executor.StateSkipped, t0.Add(3*time.Second)),
		job("legacy", "production", executor.StateRunning, t0.Add(4*time.Second)),
	} {
		if j.ID != "legacy" {
			j.Owner = "dead"
		}
		mustCreate(t, s, j)
		all[j.ID] = j
	}
	steps := []struct {
		name      string
		id        string
		from, to  string
		wantErr   bool   // ErrNotFound
		wantOwner string // the job's owner afterwards
	}{
		{"from another owner", "running", "someone-else", "me", true, "dead"},
		{"adopt running", "running", "dead", "me", false, "me"},
		{"twice: the CAS sees the new owner", "running", "dead", "other", true, "me"},
		{"adopt queued", "queued", "dead", "me", false, "me"},
		{"final jobs stay as they are", "final", "dead", "me", true, "dead"},
		{"skipped jobs are final too", "skipped", "dead", "me", true, "dead"},
		{"job recorded before owners", "legacy", "", "me", false, "me"},
		{"unknown job", "nope", "dead", "me", true, ""},
	}
	for _, st := range steps {
		err := s.Adopt(ctx, st.id, st.from, st.to)
		if st.wantErr != errors.Is(err, executor.ErrNotFound) || (!st.wantErr && err != nil) {
			t.Errorf("%s: Adopt(%s, %q, %q) = %v; want ErrNotFound %v", st.name, st.id, st.from, st.to, err, st.wantErr)
		}
		if st.wantOwner == "" {
			_, err := s.Job(ctx, st.id)
			wantNotFound(t, st.name+": Job("+st.id+")", err)
			continue
		}
		want := all[st.id]
		want.Owner = st.wantOwner
		equalJob(t, st.name+": Job("+st.id+")", mustJob(t, s, st.id), want)
	}
}

// AdoptSuccess is a compare-and-set on a successful job's owner only: a
// job of another state, another owner or none is ErrNotFound and changes
// nothing; of concurrent calls from the owner, exactly one wins.
func testAdoptSuccess(t *testing.T, s executor.Store) {
	ctx := t.Context()
	all := map[string]executor.Job{}
	for _, j := range []executor.Job{
		job("watched", "production", executor.StateSuccess, t0),
		job("failed", "production", executor.StateFailure, t0.Add(time.Second)),
		job("running", "production", executor.StateRunning, t0.Add(2*time.Second)),
		job("race", "production", executor.StateSuccess, t0.Add(3*time.Second)),
	} {
		j.Owner = "dead"
		mustCreate(t, s, j)
		all[j.ID] = j
	}
	for _, st := range []struct {
		name, id, from, to string
		wantErr            bool
		wantOwner          string
	}{
		{"from another owner", "watched", "someone-else", "me", true, "dead"},
		{"a success", "watched", "dead", "me", false, "me"},
		{"twice: the CAS sees the new owner", "watched", "dead", "other", true, "me"},
		{"a failure stays as it is", "failed", "dead", "me", true, "dead"},
		{"an unfinished job is Adopt's", "running", "dead", "me", true, "dead"},
	} {
		err := s.AdoptSuccess(ctx, st.id, st.from, st.to)
		if st.wantErr != errors.Is(err, executor.ErrNotFound) || (!st.wantErr && err != nil) {
			t.Errorf("%s: AdoptSuccess(%s, %q, %q) = %v; want ErrNotFound %v", st.name, st.id, st.from, st.to, err, st.wantErr)
		}
		want := all[st.id]
		want.Owner = st.wantOwner
		equalJob(t, st.name+": Job("+st.id+")", mustJob(t, s, st.id), want)
	}
	if err := s.AdoptSuccess(ctx, "nope", "dead", "me"); !errors.Is(err, executor.ErrNotFound) {
		t.Errorf("AdoptSuccess(unknown job) = %v, want ErrNotFound", err)
	}
	oneWinner(t, s, "AdoptSuccess", s.AdoptSuccess, "race")
}

// Of concurrent Adopt calls for one orphan from its owner, exactly one wins.
func testAdoptConcurrent(t *testing.T, s executor.Store) {
	j := job("orphan", "production", executor.StateRunning, t0)
	j.Owner = "dead"
	mustCreate(t, s, j)
	oneWinner(t, s, "Adopt", s.Adopt, "orphan")
}

// oneWinner calls adopt (named what) for job id from owner "dead" in 16
// goroutines at once, each for its own new owner, and fails t unless
// exactly one wins (the others ErrNotFound) and the job is the winner's.
func oneWinner(t *testing.T, s executor.Store, what string, adopt func(ctx context.Context, id, from, to string) error, id string) {
	t.Helper()
	const n = 16
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = adopt(t.Context(), id, "dead", fmt.Sprintf("p%02d", i))
		})
	}
	close(start)
	wg.Wait()
	var winners []string
	for i, err := range errs {
		switch {
		case err == nil:
			winners = append(winners, fmt.Sprintf("p%02d", i))
		case !errors.Is(err, executor.ErrNotFound):
			t.Errorf("%s %d: %v, want nil or ErrNotFound", what, i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d %s calls won (%v), want exactly 1", len(winners), what, winners)
	}
	if got := mustJob(t, s, id).Owner; got != winners[0] {
		t.Errorf("owner = %q, want the winner %q", got, winners[0])
	}
}

// pruneJobs are the jobs that testPrune prunes, in the order recorded:
// production's p1..p9 created a minute apart (p3 its newest success, p5 and
// p9 unfinished), and staging's s1 (its only success) and s2, half a minute
// after production's jobs of the same minute.
func pruneJobs() []executor.Job {
	jobs := []struct {
		id     string
		target string
		state  executor.State
		at     time.Duration
	}{
		{"p1", "production", executor.StateSuccess, 1 * time.Minute},
		{"s1", "staging", executor.StateSuccess, 90 * time.Second},
		{"p2", "production", executor.StateFailure, 2 * time.Minute},
		{"s2", "staging", executor.StateFailure, 150 * time.Second},
		{"p3", "production", executor.StateSuccess, 3 * time.Minute},
		{"p4", "production", executor.StateFailure, 4 * time.Minute},
		{"p5", "production", executor.StateRunning, 5 * time.Minute},
		{"p6", "production", executor.StateSkipped, 6 * time.Minute},
		{"p7", "production", executor.StateSuperseded, 7 * time.Minute},
		{"p8", "production", executor.StateError, 8 * time.Minute},
		{"p9", "production", executor.StateQueued, 9 * time.Minute},
	}
	var out []executor.Job
	for _, jj := range jobs {
		j := job(jj.id, jj.target, jj.state, t0.Add(jj.at))
		if jj.id == "p1" {
			j.Trigger.BodyHash = bodyHash1
		}
		j.Steps = []executor.StepRun{{Job: jj.id, Seq: 1, Name: "fetch", Output: "ok"}}
		out = append(out, j)
	}
	return out
}

// pruneCase is one call of Prune on the jobs of pruneJobs.
type pruneCase struct {
	name    string
	before  time.Time
	keep    int
	deleted []string // newest first
}

// pruneCases are the calls of Prune that Run checks, each on a store of its
// own.
func pruneCases() []pruneCase {
	return []pruneCase{
		{name: "nothing old, no count", before: t0, keep: 0},
		{name: "negative keep is no count", before: t0, keep: -3},
		{name: "by age", before: t0.Add(4*time.Minute + 30*time.Second), keep: 0,
			// p3 and s1 are their targets' newest successes.
			deleted: []string{"p4", "s2", "p2", "p1"}},
		{name: "by count, of jobs in every state", before: t0, keep: 3,
			// production, newest first: p9 p8 p7 | p6 p5 p4 p3 p2 p1; p5 runs, p3 is the newest success.
			deleted: []string{"p6", "p4", "p2", "p1"}},
		{name: "zero before is no age limit", keep: 3,
			deleted: []string{"p6", "p4", "p2", "p1"}},
		{name: "keep 1", before: t0, keep: 1,
			// staging: s2 is the newest, s1 the newest success.
			deleted: []string{"p8", "p7", "p6", "p4", "p2", "p1"}},
		{name: "everything old", before: t0.Add(time.Hour), keep: 0,
			deleted: []string{"p8", "p7", "p6", "p4", "s2", "p2", "p1"}},
		{name: "age and count together", before: t0.Add(2*time.Minute + 45*time.Second), keep: 5,
			deleted: []string{"p4", "s2", "p2", "p1"}},
	}
}

// testPrune records pruneJobs, with a report owed for p1, and calls Prune as
// tt says. Prune deletes final jobs created before a time, and final jobs
// beyond the newest keep of their target (counting jobs in every state), but
// never a target's newest success nor an unfinished job, and it keeps every
// owed report. A deleted job's delivery and body hash no longer deduplicate.
func testPrune(t *testing.T, s executor.Store, tt pruneCase) {
	ctx := t.Context()
	jobs := pruneJobs()
	byID := map[string]executor.Job{}
	var owed executor.Report
	for _, j := range jobs {
		steps := j.Steps
		j.Steps = nil
		var owe []executor.Report
		if j.ID == "p1" {
			owed = report(j, executor.StateSuccess, "deployed")
			owe = append(owe, owed)
		}
		mustCreate(t, s, j, owe...)
		for _, st := range steps {
			if err := s.AddStep(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
		j.Steps = steps
		byID[j.ID] = j
	}

	n, err := s.Prune(ctx, tt.before, tt.keep)
	if err != nil || n != len(tt.deleted) {
		t.Errorf("Prune(%v, %d) = %d, %v; want %d, nil", tt.before, tt.keep, n, err, len(tt.deleted))
	}
	all := []string{"p9", "p8", "p7", "p6", "p5", "p4", "p3", "s2", "p2", "s1", "p1"} // newest first
	want := []string{}
	for _, id := range all {
		if !slices.Contains(tt.deleted, id) {
			want = append(want, id)
		}
	}
	left, err := s.Jobs(ctx, "", 0)
	if got := ids(left); err != nil || !slices.Equal(got, want) {
		t.Errorf("jobs left = %v, %v; want %v", got, err, want)
	}
	for _, id := range all {
		if slices.Contains(tt.deleted, id) {
			_, err := s.Job(ctx, id)
			wantNotFound(t, "Job("+id+") of a deleted job", err)
			continue
		}
		equalJob(t, "Job("+id+") of a job kept", mustJob(t, s, id), byID[id])
	}
	if got := reportsOf(mustOwed(t, s)); !reflect.DeepEqual(got, []executor.Report{owed}) {
		t.Errorf("Owed after Prune = %+v, want p1's report, deleted or not", got)
	}
	// p1's delivery and body hash deduplicate as long as p1 is there.
	again := job("again", "production", executor.StateQueued, t0.Add(time.Hour))
	again.Trigger.Delivery, again.Trigger.BodyHash = "d-p1", bodyHash1
	existing, err := s.CreateJob(ctx, again)
	if slices.Contains(tt.deleted, "p1") {
		if err != nil || existing != "again" {
			t.Errorf("CreateJob(deleted p1's delivery and body) = %q, %v; want again, nil", existing, err)
		}
	} else if !errors.Is(err, executor.ErrDuplicate) || existing != "p1" {
		t.Errorf("CreateJob(p1's delivery and body) = %q, %v; want p1, ErrDuplicate", existing, err)
	}
}

// Prune deletes the owner rows whose lease ended before before (their jobs
// become orphans), and no other.
func testPruneOwners(t *testing.T, s executor.Store) {
	ctx := t.Context()
	for _, o := range []executor.Owner{
		{ID: "old", Kind: "cli", Until: t0.Add(-time.Nanosecond)},
		{ID: "edge", Kind: "cli", Until: t0},
		{ID: "live", Kind: "serve", Until: t0.Add(time.Hour)},
	} {
		if err := s.Beat(ctx, o); err != nil {
			t.Fatal(err)
		}
		j := job("job-of-"+o.ID, "production", executor.StateRunning, t0.Add(-time.Hour))
		j.Owner = o.ID
		mustCreate(t, s, j)
	}
	// A second before the oldest lease ends, no job is an orphan.
	then := t0.Add(-time.Second)
	orphans, err := s.Orphans(ctx, then)
	if got := ids(orphans); err != nil || len(got) != 0 {
		t.Fatalf("Orphans before Prune = %v, %v; want none", got, err)
	}
	if n, err := s.Prune(ctx, t0, 0); err != nil || n != 0 {
		t.Fatalf("Prune = %d, %v; want 0 jobs deleted", n, err)
	}
	orphans, err = s.Orphans(ctx, then)
	if got := ids(orphans); err != nil || !slices.Equal(got, []string{"job-of-old"}) {
		t.Errorf("Orphans after Prune = %v, %v; want [job-of-old]: the old owner's row is gone, the others stay", got, err)
	}
}

// Check succeeds on a journal that takes writes, any number of times.
func testCheck(t *testing.T, s executor.Store) {
	for i := range 3 {
		if err := s.Check(t.Context()); err != nil {
			t.Fatalf("Check %d: %v", i, err)
		}
	}
}

// Close closes the journal: it returns nil, and a closed journal accepts no
// writes, so Check fails.
func testClose(t *testing.T, s executor.Store) {
	mustCreate(t, s, job("j1", "production", executor.StateQueued, t0))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Check(t.Context()); err == nil {
		t.Error("Check after Close = nil, want an error")
	}
}

// testPruneKeepsLastSuccess: the success Prune always keeps is the one
// LastSuccess returns, the one that finished last, not the newest created (a
// command-line deploy may start before the service's and finish after it).
// Keeping the newest created would delete what the journal says is live.
func testPruneKeepsLastSuccess(t *testing.T, s executor.Store) {
	ctx := t.Context()
	cli := job("cli", "production", executor.StateSuccess, t0.Add(time.Minute))
	cli.Trigger.SHA = sha2
	cli.Started, cli.Finished = t0.Add(time.Minute), t0.Add(10*time.Minute)
	svc := job("svc", "production", executor.StateSuccess, t0.Add(2*time.Minute))
	svc.Started, svc.Finished = t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	failed := job("failed", "production", executor.StateFailure, t0.Add(11*time.Minute))
	for _, j := range []executor.Job{cli, svc, failed} {
		mustCreate(t, s, j)
	}
	if last, err := s.LastSuccess(ctx, "production"); err != nil || last.ID != "cli" {
		t.Fatalf("LastSuccess before Prune = %s, %v; want cli (finished last)", last.ID, err)
	}
	if n, err := s.Prune(ctx, t0.Add(time.Hour), 1); err != nil || n != 2 {
		t.Errorf("Prune = %d, %v; want 2 (svc and failed), nil", n, err)
	}
	if last, err := s.LastSuccess(ctx, "production"); err != nil || last.ID != "cli" {
		t.Errorf("LastSuccess after Prune = %s, %v; want cli: Prune deleted what the journal says is live", last.ID, err)
	}
}
