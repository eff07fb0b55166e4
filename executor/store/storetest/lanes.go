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

// LaneStore is a journal that replicas can share: executor.Store and
// executor.Lanes.
type LaneStore interface {
	executor.Store
	executor.Lanes
}

// RunLanes runs the conformance suite of executor.Lanes against the stores
// that open returns, as Run does for executor.Store: each subtest on a new,
// empty store, closed when the subtest ends. Several subtests race two or
// more callers against one store, as replicas sharing a database do.
func RunLanes(t *testing.T, open func(t *testing.T) LaneStore) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, s LaneStore)
	}{
		{"ClaimLane/two owners race, one wins", testClaimLaneRace},
		{"ClaimLane/renewal keeps the token, a new holder gets a greater one", testClaimLaneTokens},
		{"ReleaseLane", testReleaseLane},
		{"UpdateJobFenced/refused once the lane moved", testUpdateJobFenced},
		{"AddStepFenced/refused once the lane moved", testAddStepFenced},
		{"Fenced writes/unknown job", testFencedUnknown},
		{"ClaimOwed/claims, expiry and order", testClaimOwed},
		{"ClaimOwed/two drainers in parallel send each report once", testClaimOwedDrainers},
		{"CreateJob/one unfinished lane job per SHA", testCreateJobLaneSHA},
		{"CreateJob/concurrent lane jobs of one SHA", testCreateJobLaneSHAConcurrent},
		{"CreateJob/concurrent lane jobs of one SHA while its job ends", testCreateJobLaneSHAEnding},
		{"Adopt/an orphan of a SHA the lane has unfinished", testAdoptLaneSHA},
		{"Adopt/an orphan of a SHA whose lane job ends meanwhile", testAdoptLaneSHAEnding},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			c.run(t, s)
		})
	}
}

// mustClaim claims lane for owner from now for a minute, and fails t if the
// store refuses.
func mustClaim(t *testing.T, s LaneStore, lane, owner string, now time.Time) int64 {
	t.Helper()
	tok, err := s.ClaimLane(t.Context(), lane, owner, now, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("ClaimLane(%s, %s, %v): %v", lane, owner, now, err)
	}
	return tok
}

// Of two owners claiming a free lane at once, exactly one gets it (with a
// token), the other ErrLaneHeld; fifty times.
func testClaimLaneRace(t *testing.T, s LaneStore) {
	for round := range 50 {
		lane := fmt.Sprintf("lane-%d", round)
		var toks [2]int64
		var errs [2]error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				<-start
				toks[i], errs[i] = s.ClaimLane(t.Context(), lane, fmt.Sprintf("owner-%d", i), t0, t0.Add(time.Minute))
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i := range 2 {
			switch {
			case errs[i] == nil:
				won++
				if toks[i] <= 0 {
					t.Errorf("round %d: owner-%d got token %d, want > 0", round, i, toks[i])
				}
			case !errors.Is(errs[i], executor.ErrLaneHeld):
				t.Errorf("round %d: owner-%d: %v, want nil or ErrLaneHeld", round, i, errs[i])
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d owners got the lane (%v), want exactly 1", round, won, errs)
		}
	}
}

// A renewal keeps the token, live or expired; a live lease refuses another
// owner (a lease ending exactly at now is live); once it ended, another
// owner gets a greater token, and the first owner is refused.
func testClaimLaneTokens(t *testing.T, s LaneStore) {
	ctx := t.Context()
	a := mustClaim(t, s, "production", "a", t0) // until t0+1m
	if got := mustClaim(t, s, "production", "a", t0.Add(30*time.Second)); got != a {
		t.Errorf("renewal: token %d, want %d", got, a)
	}
	// Renewed until t0+90s.
	for _, now := range []time.Time{t0.Add(time.Minute), t0.Add(90 * time.Second)} {
		if _, err := s.ClaimLane(ctx, "production", "b", now, now.Add(time.Minute)); !errors.Is(err, executor.ErrLaneHeld) {
			t.Errorf("ClaimLane(b) at %v during a's lease: %v, want ErrLaneHeld", now.Sub(t0), err)
		}
	}
	// a renews after its lease ended; no one took the lane: same token.
	late := t0.Add(2 * time.Minute)
	if got := mustClaim(t, s, "production", "a", late); got != a {
		t.Errorf("late renewal: token %d, want %d", got, a)
	}
	after := late.Add(time.Minute + time.Nanosecond)
	b := mustClaim(t, s, "production", "b", after)
	if b <= a {
		t.Errorf("token after the lane changed hands = %d, want > %d", b, a)
	}
	if _, err := s.ClaimLane(ctx, "production", "a", after, after.Add(time.Minute)); !errors.Is(err, executor.ErrLaneHeld) {
		t.Errorf("ClaimLane(a) after b took the lane: %v, want ErrLaneHeld", err)
	}
	back := after.Add(2 * time.Minute)
	if got := mustClaim(t, s, "production", "a", back); got <= b {
		t.Errorf("token when a took the lane back = %d, want > %d", got, b)
	}
	// Lanes are independent.
	if _, err := s.ClaimLane(ctx, "staging", "b", after, after.Add(time.Minute)); err != nil {
		t.Errorf("ClaimLane(staging, b): %v", err)
	}
}

// A released lane is free at once, with a greater token for the next holder;
// only the holder releases.
func testReleaseLane(t *testing.T, s LaneStore) {
	ctx := t.Context()
	a := mustClaim(t, s, "production", "a", t0)
	wantNotFound(t, "ReleaseLane by a non-holder", s.ReleaseLane(ctx, "production", "b"))
	wantNotFound(t, "ReleaseLane of an unknown lane", s.ReleaseLane(ctx, "nowhere", "a"))
	if err := s.ReleaseLane(ctx, "production", "a"); err != nil {
		t.Fatalf("ReleaseLane: %v", err)
	}
	if b := mustClaim(t, s, "production", "b", t0); b <= a {
		t.Errorf("token after a release = %d, want > %d", b, a)
	}
	if _, err := s.ClaimLane(ctx, "production", "a", t0, t0.Add(time.Minute)); !errors.Is(err, executor.ErrLaneHeld) {
		t.Errorf("ClaimLane(a) after b took the released lane: %v, want ErrLaneHeld", err)
	}
}

// A fenced update succeeds while the lane has its token; once the lane has
// moved it is refused with ErrFenced and changes and owes nothing.
func testUpdateJobFenced(t *testing.T, s LaneStore) {
	ctx := t.Context()
	j := job("j1", "production", executor.StateQueued, t0)
	mustCreate(t, s, j)
	running := j
	running.State, running.Description, running.Started = executor.StateRunning, "deploying", t0.Add(time.Second)
	if err := s.UpdateJobFenced(ctx, 1, running); !errors.Is(err, executor.ErrFenced) {
		t.Errorf("UpdateJobFenced before any claim: %v, want ErrFenced", err)
	}
	a := mustClaim(t, s, "production", "a", t0)
	r1 := report(running, executor.StateRunning, "deploying")
	if err := s.UpdateJobFenced(ctx, a, running, r1); err != nil {
		t.Fatalf("UpdateJobFenced with the lane's token: %v", err)
	}
	b := mustClaim(t, s, "production", "b", t0.Add(2*time.Minute))
	final := running
	final.State, final.Description, final.Finished = executor.StateSuccess, "deployed", t0.Add(time.Minute)
	err := s.UpdateJobFenced(ctx, a, final, report(final, executor.StateSuccess, "deployed"))
	if !errors.Is(err, executor.ErrFenced) {
		t.Fatalf("UpdateJobFenced with the old token: %v, want ErrFenced", err)
	}
	equalJob(t, "Job(j1) after a fenced-off update", withoutSteps(mustJob(t, s, "j1")), running)
	if got := reportsOf(mustOwed(t, s)); !reflect.DeepEqual(got, []executor.Report{r1}) {
		t.Errorf("owed reports = %+v, want only the running one", got)
	}
	ended := final
	ended.State, ended.Description = executor.StateError, "interrupted"
	if err := s.UpdateJobFenced(ctx, b, ended); err != nil {
		t.Fatalf("UpdateJobFenced with the new holder's token: %v", err)
	}
	equalJob(t, "Job(j1)", withoutSteps(mustJob(t, s, "j1")), ended)
}

// A fenced step record is kept while the lane has its token, refused once
// it moved.
func testAddStepFenced(t *testing.T, s LaneStore) {
	ctx := t.Context()
	mustCreate(t, s, job("j1", "production", executor.StateRunning, t0))
	a := mustClaim(t, s, "production", "a", t0)
	st1 := executor.StepRun{Job: "j1", Seq: 1, Name: "fetch", ExitCode: 0, Output: "ok\n", Started: t0, Duration: time.Second}
	if err := s.AddStepFenced(ctx, a, st1); err != nil {
		t.Fatalf("AddStepFenced with the lane's token: %v", err)
	}
	mustClaim(t, s, "production", "b", t0.Add(2*time.Minute))
	st2 := executor.StepRun{Job: "j1", Seq: 2, Name: "restart", ExitCode: -1}
	if err := s.AddStepFenced(ctx, a, st2); !errors.Is(err, executor.ErrFenced) {
		t.Fatalf("AddStepFenced with the old token: %v, want ErrFenced", err)
	}
	replaced := st1
	replaced.ExitCode = 1
	if err := s.AddStepFenced(ctx, a, replaced); !errors.Is(err, executor.ErrFenced) {
		t.Fatalf("AddStepFenced replacing a step with the old token: %v, want ErrFenced", err)
	}
	got := mustJob(t, s, "j1").Steps
	if len(got) != 1 || got[0].Seq != 1 || got[0].ExitCode != 0 {
		t.Errorf("steps after fenced-off writes = %+v, want only fetch, exit 0", got)
	}
}

// Fenced writes of an unknown job say ErrNotFound.
func testFencedUnknown(t *testing.T, s LaneStore) {
	ctx := t.Context()
	tok := mustClaim(t, s, "production", "a", t0)
	wantNotFound(t, "UpdateJobFenced(unknown)", s.UpdateJobFenced(ctx, tok, job("nope", "production", executor.StateError, t0)))
	wantNotFound(t, "AddStepFenced(unknown)", s.AddStepFenced(ctx, tok, executor.StepRun{Job: "nope", Seq: 1, Name: "x"}))
}

// oweN owes n reports, for jobs j0…j(jobs-1) in turn, and returns them in
// the order owed.
func oweN(t *testing.T, s executor.Store, n, jobs int) []executor.Report {
	t.Helper()
	var out []executor.Report
	for i := range n {
		j := job(fmt.Sprintf("j%d", i%jobs), "production", executor.StateQueued, t0)
		r := report(j, executor.StateQueued, fmt.Sprintf("report %d", i))
		if err := s.Owe(t.Context(), r); err != nil {
			t.Fatalf("Owe: %v", err)
		}
		out = append(out, r)
	}
	return out
}

// ClaimOwed returns the oldest claimable reports with every field; another
// owner's live claim is skipped, with the later reports of its jobs; one's
// own claims come back; an expired claim is taken; Settle and Retry work on
// claimed reports.
func testClaimOwed(t *testing.T, s LaneStore) {
	ctx := t.Context()
	rs := oweN(t, s, 6, 3) // j0 j1 j2 j0 j1 j2
	all := mustOwed(t, s)
	later := time.Now().Add(time.Hour)
	a, err := s.ClaimOwed(ctx, "a", 2, later)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(withUTC(a), withUTC(all[:2])) {
		t.Errorf("ClaimOwed(a, 2) = %+v, want the two oldest %+v", a, all[:2])
	}
	// b may not take j0's and j1's later reports: their older ones are a's.
	b, err := s.ClaimOwed(ctx, "b", 10, later)
	if err != nil {
		t.Fatal(err)
	}
	if got := reportsOf(b); !reflect.DeepEqual(got, []executor.Report{rs[2], rs[5]}) {
		t.Errorf("ClaimOwed(b) = %+v, want j2's two reports", got)
	}
	if again, err := s.ClaimOwed(ctx, "a", 10, later); err != nil || !reflect.DeepEqual(reportsOf(again), []executor.Report{rs[0], rs[1], rs[3], rs[4]}) {
		t.Errorf("ClaimOwed(a) again = %+v, %v; want its own claims and j0's and j1's later reports", reportsOf(again), err)
	}
	if none, err := s.ClaimOwed(ctx, "c", 10, later); err != nil || len(none) != 0 {
		t.Errorf("ClaimOwed(c) with every report claimed = %+v, %v; want none", none, err)
	}
	// Expired claims are anyone's: b claims until the past.
	if _, err := s.ClaimOwed(ctx, "b", 10, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	c, err := s.ClaimOwed(ctx, "c", 10, later)
	if err != nil || !reflect.DeepEqual(reportsOf(c), []executor.Report{rs[2], rs[5]}) {
		t.Errorf("ClaimOwed(c) after b's claims expired = %+v, %v; want j2's two reports", reportsOf(c), err)
	}
	if err := s.Retry(ctx, c[0].ID); err != nil {
		t.Errorf("Retry(claimed): %v", err)
	}
	if err := s.Settle(ctx, a[0].ID); err != nil {
		t.Errorf("Settle(claimed): %v", err)
	}
	left := mustOwed(t, s)
	if len(left) != 5 || left[1].Tries != 1 {
		t.Errorf("Owed after one Settle and one Retry = %+v, want 5 reports, the second tried once", left)
	}
}

// withUTC is owed with creation times as UTC instants.
func withUTC(owed []executor.OwedReport) []executor.OwedReport {
	out := slices.Clone(owed)
	for i := range out {
		out[i].Created = utc(out[i].Created)
	}
	return out
}

// Two drainers claiming and settling in parallel over 200 reports of 20
// jobs: every report is delivered, none twice, and each job's reports in the
// order they were owed.
func testClaimOwedDrainers(t *testing.T, s LaneStore) {
	const n, jobs = 200, 20
	oweN(t, s, n, jobs)
	var mu sync.Mutex
	sent := map[int64]int{}            // report id → deliveries
	byJob := map[string][]int64{}      // job → report ids, in delivery order
	until := time.Now().Add(time.Hour) // no claim expires: the normal case
	var wg sync.WaitGroup
	for d := range 2 {
		owner := fmt.Sprintf("drainer-%d", d)
		wg.Go(func() {
			for {
				owed, err := s.ClaimOwed(t.Context(), owner, 7, until)
				if err != nil {
					t.Errorf("%s: ClaimOwed: %v", owner, err)
					return
				}
				if len(owed) == 0 {
					left, err := s.Owed(t.Context(), 0)
					if err != nil {
						t.Errorf("%s: Owed: %v", owner, err)
						return
					}
					if len(left) == 0 {
						return
					}
					// What is left is the other drainer's, or waits behind
					// its claims: ask again.
					continue
				}
				for _, o := range owed {
					mu.Lock()
					sent[o.ID]++
					byJob[o.Report.Job] = append(byJob[o.Report.Job], o.ID)
					mu.Unlock()
					if err := s.Settle(t.Context(), o.ID); err != nil {
						t.Errorf("%s: Settle(%d): %v", owner, o.ID, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if len(sent) != n {
		t.Errorf("%d reports delivered, want %d", len(sent), n)
	}
	for id, k := range sent {
		if k != 1 {
			t.Errorf("report %d delivered %d times", id, k)
		}
	}
	for job, seq := range byJob {
		if !slices.IsSorted(seq) {
			t.Errorf("job %s's reports delivered out of order: %v", job, seq)
		}
	}
	if left := mustOwed(t, s); len(left) != 0 {
		t.Errorf("%d reports left owed", len(left))
	}
}

// laneJob is a queued job of target's replicated lane for sha.
func laneJob(id, target, sha string) executor.Job {
	j := job(id, target, executor.StateQueued, t0)
	j.Trigger.SHA = sha
	j.Owner = executor.LaneOwner(target)
	return j
}

// A lane's unfinished job of a SHA refuses another of the same target and
// SHA (ErrDuplicate and its id); other SHAs, other targets, jobs of other
// owners and a SHA whose job finished are recorded.
func testCreateJobLaneSHA(t *testing.T, s LaneStore) {
	ctx := t.Context()
	first := laneJob("first", "production", sha1)
	mustCreate(t, s, first)
	dup := laneJob("dup", "production", sha1)
	if id, err := s.CreateJob(ctx, dup); !errors.Is(err, executor.ErrDuplicate) || id != "first" {
		t.Errorf("CreateJob(same lane and SHA) = %q, %v; want first, ErrDuplicate", id, err)
	}
	running := first
	running.State = executor.StateRunning
	if err := s.UpdateJob(ctx, running); err != nil {
		t.Fatal(err)
	}
	if id, err := s.CreateJob(ctx, dup); !errors.Is(err, executor.ErrDuplicate) || id != "first" {
		t.Errorf("CreateJob(same SHA as a running lane job) = %q, %v; want first, ErrDuplicate", id, err)
	}
	mustCreate(t, s, laneJob("other-sha", "production", sha2))
	mustCreate(t, s, laneJob("other-target", "staging", sha1))
	cli := job("cli", "production", executor.StateQueued, t0)
	cli.Owner = "cli-owner"
	mustCreate(t, s, cli) // a command-line deploy beside the replicas
	done := running
	done.State = executor.StateSuccess
	if err := s.UpdateJob(ctx, done); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, dup)
	if _, err := s.Job(ctx, "dup"); err != nil {
		t.Errorf("Job(dup): %v", err)
	}
}

// Of concurrent CreateJob calls for one SHA of a replicated lane under
// distinct deliveries (replicas receiving a push and a CI run of one
// commit), exactly one records a job.
func testCreateJobLaneSHAConcurrent(t *testing.T, s LaneStore) {
	raceCreate(t, s, func(j *executor.Job, i int) {
		j.Trigger.Delivery = fmt.Sprintf("guid-%02d", i)
		j.Owner = executor.LaneOwner(j.Target)
	})
}

// Sixteen concurrent CreateJob calls of one SHA of a replicated lane, each
// under its own delivery, while the lane's unfinished job of that SHA ends:
// each call either records its job or returns ErrDuplicate and the id of a
// job of that SHA that was unfinished (the one that ends, or the one a call
// of the round recorded), never another error; at most one call records a
// job, and then it is the SHA's only unfinished job. Forty rounds, so that
// the end falls between a call's collision and its look-up of the job it
// collided with.
func testCreateJobLaneSHAEnding(t *testing.T, s LaneStore) {
	const n, rounds = 16, 40
	ctx := t.Context()
	for round := range rounds {
		sha := fmt.Sprintf("%040x", round+1)
		old := laneJob(fmt.Sprintf("r%02d-old", round), "production", sha)
		mustCreate(t, s, old)
		got := make([]string, n)
		errs := make([]error, n)
		var endErr error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			j := laneJob(fmt.Sprintf("r%02d-j%02d", round, i), "production", sha)
			wg.Go(func() {
				<-start
				got[i], errs[i] = s.CreateJob(ctx, j)
			})
			if i == n/2 {
				wg.Go(func() {
					<-start
					done := old
					done.State, done.Finished = executor.StateSuccess, t0.Add(time.Minute)
					endErr = s.UpdateJob(ctx, done)
				})
			}
		}
		close(start)
		wg.Wait()
		if endErr != nil {
			t.Fatalf("round %d: UpdateJob(%s): %v", round, old.ID, endErr)
		}
		winner := ""
		for i, err := range errs {
			id := fmt.Sprintf("r%02d-j%02d", round, i)
			switch {
			case err == nil && got[i] == id && winner == "":
				winner = id
			case err == nil:
				t.Errorf("round %d: CreateJob(%s) = %q, nil after %s won", round, id, got[i], winner)
			case !errors.Is(err, executor.ErrDuplicate):
				t.Errorf("round %d: CreateJob(%s): %v, want nil or ErrDuplicate", round, id, err)
			}
		}
		for i, err := range errs {
			if errors.Is(err, executor.ErrDuplicate) && got[i] != old.ID && (winner == "" || got[i] != winner) {
				t.Errorf("round %d: CreateJob(r%02d-j%02d) = %q, ErrDuplicate; want %s or the round's new job %q",
					round, round, i, got[i], old.ID, winner)
			}
		}
		unfinished, err := s.Jobs(ctx, "production", 0, executor.StateQueued, executor.StateRunning)
		if err != nil {
			t.Fatal(err)
		}
		var open []string
		for _, j := range unfinished {
			if j.Trigger.SHA == sha {
				open = append(open, j.ID)
			}
		}
		want := []string{}
		if winner != "" {
			want = []string{winner}
		}
		if !slices.Equal(open, want) {
			t.Errorf("round %d: unfinished jobs of the SHA = %v, want %v", round, open, want)
		}
		if t.Failed() {
			return
		}
	}
}

// Adopting for a lane an orphan (of a dead command-line deploy, say) whose
// SHA the lane already has unfinished would make two unfinished lane jobs of
// one SHA: Adopt refuses with ErrDuplicate and changes nothing, queued or
// running orphan alike. Adopting it for another owner, or for the lane once
// its job of the SHA ended, works.
func testAdoptLaneSHA(t *testing.T, s LaneStore) {
	ctx := t.Context()
	lane := executor.LaneOwner("production")
	first := laneJob("lane-job", "production", sha1)
	mustCreate(t, s, first)
	var orphans []executor.Job
	for _, st := range []executor.State{executor.StateQueued, executor.StateRunning} {
		o := job("orphan-"+string(st), "production", st, t0.Add(time.Second))
		o.Owner = "dead-cli"
		mustCreate(t, s, o)
		err := s.Adopt(ctx, o.ID, "dead-cli", lane)
		if !errors.Is(err, executor.ErrDuplicate) || errors.Is(err, executor.ErrNotFound) {
			t.Errorf("Adopt(%s) for the lane with its SHA's lane job unfinished: %v, want ErrDuplicate", o.ID, err)
		}
		equalJob(t, "Job("+o.ID+") after the refused Adopt", withoutSteps(mustJob(t, s, o.ID)), o)
		orphans = append(orphans, o)
	}
	other := job("orphan-other-sha", "production", executor.StateQueued, t0)
	other.Trigger.SHA, other.Owner = sha2, "dead-cli"
	mustCreate(t, s, other)
	if err := s.Adopt(ctx, other.ID, "dead-cli", lane); err != nil {
		t.Errorf("Adopt(orphan of another SHA) for the lane: %v", err)
	}
	if err := s.Adopt(ctx, orphans[0].ID, "dead-cli", "serve-2"); err != nil {
		t.Errorf("Adopt(queued orphan) for a process: %v", err)
	}
	done := first
	done.State = executor.StateSuccess
	if err := s.UpdateJob(ctx, done); err != nil {
		t.Fatal(err)
	}
	if err := s.Adopt(ctx, orphans[1].ID, "dead-cli", lane); err != nil {
		t.Errorf("Adopt(running orphan) for the lane once its SHA's lane job ended: %v", err)
	}
	if got := mustJob(t, s, orphans[1].ID).Owner; got != lane {
		t.Errorf("owner of the adopted orphan = %q, want %q", got, lane)
	}
}

// Adopt of an orphan for the lane, while the lane's job of the orphan's SHA
// ends: either the orphan is the lane's (nil), or it keeps its owner
// (ErrDuplicate), never another error. Forty rounds.
func testAdoptLaneSHAEnding(t *testing.T, s LaneStore) {
	ctx := t.Context()
	lane := executor.LaneOwner("production")
	for round := range 40 {
		sha := fmt.Sprintf("%040x", round+1)
		first := laneJob(fmt.Sprintf("r%02d-lane", round), "production", sha)
		mustCreate(t, s, first)
		o := job(fmt.Sprintf("r%02d-orphan", round), "production", executor.StateQueued, t0)
		o.Trigger.SHA, o.Owner = sha, "dead-cli"
		mustCreate(t, s, o)
		var adoptErr, endErr error
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			adoptErr = s.Adopt(ctx, o.ID, "dead-cli", lane)
		})
		wg.Go(func() {
			<-start
			done := first
			done.State = executor.StateSuccess
			endErr = s.UpdateJob(ctx, done)
		})
		close(start)
		wg.Wait()
		if endErr != nil {
			t.Fatalf("round %d: UpdateJob: %v", round, endErr)
		}
		owner := mustJob(t, s, o.ID).Owner
		switch {
		case adoptErr == nil && owner != lane:
			t.Errorf("round %d: Adopt = nil, but the orphan's owner is %q", round, owner)
		case errors.Is(adoptErr, executor.ErrDuplicate) && owner != "dead-cli":
			t.Errorf("round %d: Adopt = %v, but the orphan's owner is %q", round, adoptErr, owner)
		case adoptErr != nil && !errors.Is(adoptErr, executor.ErrDuplicate):
			t.Fatalf("round %d: Adopt: %v, want nil or ErrDuplicate", round, adoptErr)
		}
		// Not two unfinished lane jobs of one SHA: the orphan is done with.
		o.State = executor.StateSuperseded
		o.Owner = owner
		if err := s.UpdateJob(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}
