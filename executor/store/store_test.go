package store

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// newLogger routes the store's logs to the test's output.
func newLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustOpen opens a journal at path and closes it when the test ends.
func mustOpen(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Open(tb.Context(), newLogger(tb), path)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// newStore opens a journal in a fresh temporary directory.
func newStore(tb testing.TB) *Store {
	return mustOpen(tb, filepath.Join(tb.TempDir(), "journal.db"))
}

// paris is a non-UTC location, to check that times round-trip as instants.
var paris = time.FixedZone("CET", 3600)

// t0 is an arbitrary instant with a nanosecond part.
var t0 = time.Date(2026, 11, 26, 15, 4, 5, 123456789, paris)

const sha1 = "0123456789abcdef0123456789abcdef01234567"
const sha2 = "89abcdef0123456789abcdef0123456789abcdef"

// fullJob has every field of a job set, steps included.
func fullJob(id string) executor.Job {
	return executor.Job{
		ID:     id,
		Target: "production",
		Trigger: executor.Trigger{
			Kind:     executor.KindWorkflowRun,
			Repo:     "acme/data-platform",
			Branch:   "main",
			SHA:      sha1,
			Delivery: "delivery-" + id,
			Actor:    "octocat",
			Reason:   "CI run 42 passed",
			Force:    true,
		},
		State:       executor.StateRunning,
		Description: "deploying 0123456",
		PreviousSHA: sha2,
		Deployment:  1234567890123,
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

// queuedJob is a minimal job of target created at created.
func queuedJob(id, target string, state executor.State, created time.Time) executor.Job {
	return executor.Job{
		ID:      id,
		Target:  target,
		Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: sha1, Delivery: "d-" + id},
		State:   state,
		Created: created,
	}
}

// normalize returns j as the journal gives it back: times as UTC instants
// (zero stays zero), no steps if j has none.
func normalize(j executor.Job) executor.Job {
	utc := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Time{}
		}
		return time.Unix(0, t.UnixNano()).UTC()
	}
	j.Created, j.Started, j.Finished = utc(j.Created), utc(j.Started), utc(j.Finished)
	if len(j.Steps) == 0 {
		j.Steps = nil
	}
	steps := make([]executor.StepRun, len(j.Steps))
	for i, st := range j.Steps {
		st.Started = utc(st.Started)
		steps[i] = st
	}
	if j.Steps != nil {
		j.Steps = steps
	}
	return j
}

func mustCreate(tb testing.TB, s *Store, j executor.Job) {
	tb.Helper()
	if _, err := s.CreateJob(tb.Context(), j); err != nil {
		tb.Fatalf("CreateJob(%s): %v", j.ID, err)
	}
}

func mustJob(tb testing.TB, s *Store, id string) executor.Job {
	tb.Helper()
	j, err := s.Job(tb.Context(), id)
	if err != nil {
		tb.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

func ids(jobs []executor.Job) []string {
	out := []string{}
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func diffJob(t *testing.T, got, want executor.Job) {
	t.Helper()
	want = normalize(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("job differs:\n got %+v\nwant %+v", got, want)
	}
}

// TestStore is the contract of executor.Store, one subtest per promise, each
// on a fresh journal file.
func TestStore(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *Store)
	}{
		{"CreateJob/round trip of every field", func(t *testing.T, s *Store) {
			want := fullJob("j1")
			got, err := s.CreateJob(t.Context(), want)
			if err != nil || got != "j1" {
				t.Fatalf("CreateJob = %q, %v; want j1, nil", got, err)
			}
			diffJob(t, mustJob(t, s, "j1"), want)
		}},
		{"CreateJob/zero times stay zero", func(t *testing.T, s *Store) {
			want := queuedJob("j1", "production", executor.StateQueued, t0)
			mustCreate(t, s, want)
			got := mustJob(t, s, "j1")
			if !got.Started.IsZero() || !got.Finished.IsZero() {
				t.Errorf("Started, Finished = %v, %v; want zero", got.Started, got.Finished)
			}
			diffJob(t, got, want)
		}},
		{"CreateJob/zero created is now", func(t *testing.T, s *Store) {
			before := time.Now()
			mustCreate(t, s, queuedJob("j1", "production", executor.StateQueued, time.Time{}))
			got := mustJob(t, s, "j1").Created
			if got.Before(before.Truncate(time.Nanosecond)) || got.After(time.Now()) {
				t.Errorf("Created = %v, want between %v and now", got, before)
			}
		}},
		{"CreateJob/duplicate delivery", func(t *testing.T, s *Store) {
			first := queuedJob("j1", "production", executor.StateQueued, t0)
			mustCreate(t, s, first)
			second := queuedJob("j2", "production", executor.StateQueued, t0.Add(time.Second))
			second.Trigger.Delivery = first.Trigger.Delivery
			existing, err := s.CreateJob(t.Context(), second)
			if !errors.Is(err, executor.ErrDuplicate) || existing != "j1" {
				t.Fatalf("CreateJob(duplicate) = %q, %v; want j1, ErrDuplicate", existing, err)
			}
			if _, err := s.Job(t.Context(), "j2"); !errors.Is(err, executor.ErrNotFound) {
				t.Errorf("Job(j2) error = %v, want ErrNotFound: the duplicate must not be recorded", err)
			}
		}},
		{"CreateJob/empty delivery never dedups", func(t *testing.T, s *Store) {
			for _, id := range []string{"j1", "j2"} {
				j := queuedJob(id, "production", executor.StateQueued, t0)
				j.Trigger.Delivery = ""
				j.Trigger.Kind = executor.KindManual
				mustCreate(t, s, j)
			}
			jobs, err := s.Jobs(t.Context(), "", 0)
			if err != nil || len(jobs) != 2 {
				t.Errorf("Jobs = %v, %v; want 2 jobs", ids(jobs), err)
			}
		}},
		{"CreateJob/same id twice", func(t *testing.T, s *Store) {
			mustCreate(t, s, queuedJob("j1", "production", executor.StateQueued, t0))
			again := queuedJob("j1", "production", executor.StateQueued, t0)
			again.Trigger.Delivery = "another"
			_, err := s.CreateJob(t.Context(), again)
			if err == nil || errors.Is(err, executor.ErrDuplicate) {
				t.Fatalf("CreateJob(same id) error = %v, want a non-ErrDuplicate error", err)
			}
			// The failed job's delivery must not have been recorded.
			fresh := queuedJob("j2", "production", executor.StateQueued, t0)
			fresh.Trigger.Delivery = "another"
			if _, err := s.CreateJob(t.Context(), fresh); err != nil {
				t.Errorf("CreateJob(j2 with the failed job's delivery): %v", err)
			}
		}},
		{"CreateJob/refuses incomplete jobs", func(t *testing.T, s *Store) {
			for _, j := range []executor.Job{
				queuedJob("", "production", executor.StateQueued, t0),
				queuedJob("j1", "", executor.StateQueued, t0),
				queuedJob("j1", "production", "", t0),
			} {
				if _, err := s.CreateJob(t.Context(), j); err == nil {
					t.Errorf("CreateJob(%+v) = nil error, want one", j)
				}
			}
		}},
		{"UpdateJob/stores state, description, previous SHA and times only", func(t *testing.T, s *Store) {
			orig := fullJob("j1")
			mustCreate(t, s, orig)
			if err := s.SetDeployment(t.Context(), "j1", 42); err != nil {
				t.Fatal(err)
			}
			upd := queuedJob("j1", "other-target", executor.StateFailure, t0.Add(time.Hour))
			upd.Description = "failure: rolled back to 89abcde"
			upd.PreviousSHA = sha1
			upd.Started = t0.Add(5 * time.Second)
			upd.Finished = time.Time{}
			upd.Deployment = 0 // must not clear the recorded one
			upd.Steps = nil    // must not remove steps
			if err := s.UpdateJob(t.Context(), upd); err != nil {
				t.Fatal(err)
			}
			want := orig
			want.State, want.Description, want.PreviousSHA = upd.State, upd.Description, upd.PreviousSHA
			want.Started, want.Finished = upd.Started, upd.Finished
			want.Deployment = 42
			diffJob(t, mustJob(t, s, "j1"), want)
		}},
		{"UpdateJob/unknown job", func(t *testing.T, s *Store) {
			err := s.UpdateJob(t.Context(), queuedJob("nope", "production", executor.StateSuccess, t0))
			if !errors.Is(err, executor.ErrNotFound) {
				t.Errorf("UpdateJob(unknown) error = %v, want ErrNotFound", err)
			}
		}},
		{"SetDeployment", func(t *testing.T, s *Store) {
			mustCreate(t, s, queuedJob("j1", "production", executor.StateQueued, t0))
			if err := s.SetDeployment(t.Context(), "j1", 987654321); err != nil {
				t.Fatal(err)
			}
			if got := mustJob(t, s, "j1").Deployment; got != 987654321 {
				t.Errorf("Deployment = %d, want 987654321", got)
			}
			if err := s.SetDeployment(t.Context(), "nope", 1); !errors.Is(err, executor.ErrNotFound) {
				t.Errorf("SetDeployment(unknown) error = %v, want ErrNotFound", err)
			}
		}},
		{"Job/unknown job", func(t *testing.T, s *Store) {
			if _, err := s.Job(t.Context(), "nope"); !errors.Is(err, executor.ErrNotFound) {
				t.Errorf("Job(unknown) error = %v, want ErrNotFound", err)
			}
		}},
		{"Jobs/filters, limit and order", testJobs},
		{"LastSuccess", func(t *testing.T, s *Store) {
			if _, err := s.LastSuccess(t.Context(), "production"); !errors.Is(err, executor.ErrNotFound) {
				t.Errorf("LastSuccess(empty journal) error = %v, want ErrNotFound", err)
			}
			for _, j := range []executor.Job{
				queuedJob("old-ok", "production", executor.StateSuccess, t0),
				queuedJob("new-ok", "production", executor.StateSuccess, t0.Add(time.Minute)),
				queuedJob("newer-failed", "production", executor.StateFailure, t0.Add(2*time.Minute)),
				queuedJob("running", "production", executor.StateRunning, t0.Add(3*time.Minute)),
				queuedJob("staging-ok", "staging", executor.StateSuccess, t0.Add(4*time.Minute)),
			} {
				mustCreate(t, s, j)
			}
			got, err := s.LastSuccess(t.Context(), "production")
			if err != nil || got.ID != "new-ok" {
				t.Errorf("LastSuccess(production) = %q, %v; want new-ok", got.ID, err)
			}
			if _, err := s.LastSuccess(t.Context(), "dev"); !errors.Is(err, executor.ErrNotFound) {
				t.Errorf("LastSuccess(dev) error = %v, want ErrNotFound", err)
			}
		}},
		{"AddStep/insert then replace", func(t *testing.T, s *Store) {
			mustCreate(t, s, queuedJob("j1", "production", executor.StateRunning, t0))
			started := executor.StepRun{Job: "j1", Seq: 2, Name: "sync", ExitCode: -1, Started: t0}
			first := executor.StepRun{Job: "j1", Seq: 1, Name: "fetch", Output: "ok\n", Started: t0, Duration: time.Second}
			ended := started
			ended.ExitCode, ended.Output, ended.Duration = 0, "Resolved 42 packages\n", 3*time.Second
			for _, st := range []executor.StepRun{started, first, ended} {
				if err := s.AddStep(t.Context(), st); err != nil {
					t.Fatalf("AddStep(%d): %v", st.Seq, err)
				}
			}
			want := normalize(executor.Job{Steps: []executor.StepRun{first, ended}}).Steps
			if got := mustJob(t, s, "j1").Steps; !reflect.DeepEqual(got, want) {
				t.Errorf("Steps =\n%+v\nwant\n%+v", got, want)
			}
		}},
		{"AddStep/unknown job", func(t *testing.T, s *Store) {
			err := s.AddStep(t.Context(), executor.StepRun{Job: "nope", Seq: 1, Name: "fetch"})
			if !errors.Is(err, executor.ErrNotFound) {
				t.Errorf("AddStep(unknown job) error = %v, want ErrNotFound", err)
			}
		}},
		{"AddStep/output keeps its last MaxOutput bytes", func(t *testing.T, s *Store) {
			mustCreate(t, s, queuedJob("j1", "production", executor.StateRunning, t0))
			out := strings.Repeat("x", 3*MaxOutput) + strings.Repeat("the end\n", 100)
			if err := s.AddStep(t.Context(), executor.StepRun{Job: "j1", Seq: 1, Name: "n", Output: out}); err != nil {
				t.Fatal(err)
			}
			got := mustJob(t, s, "j1").Steps[0].Output
			if len(got) != MaxOutput || got != out[len(out)-MaxOutput:] {
				t.Errorf("stored output: %d bytes, tail match %v; want the last %d bytes",
					len(got), strings.HasSuffix(out, got), MaxOutput)
			}
		}},
		{"Outbox/order, Retry and Settle", testOutbox},
		{"Ping and Close", func(t *testing.T, s *Store) {
			if err := s.Ping(t.Context()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := s.Ping(t.Context()); err == nil {
				t.Error("Ping after Close = nil, want an error")
			}
			if _, err := s.Jobs(t.Context(), "", 0); err == nil {
				t.Error("Jobs after Close = nil error, want one")
			}
			// The cleanup closes it a second time, which must succeed too.
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newStore(t))
		})
	}
}

func testJobs(t *testing.T, s *Store) {
	// Created out of order, so the order comes from created, not insertion.
	for _, j := range []executor.Job{
		queuedJob("p2", "production", executor.StateFailure, t0.Add(2*time.Minute)),
		queuedJob("p1", "production", executor.StateSuccess, t0.Add(1*time.Minute)),
		queuedJob("s1", "staging", executor.StateRunning, t0.Add(90*time.Second)),
		queuedJob("p4", "production", executor.StateQueued, t0.Add(4*time.Minute)),
		queuedJob("p3", "production", executor.StateRunning, t0.Add(3*time.Minute)),
		queuedJob("s2", "staging", executor.StateSuccess, t0.Add(5*time.Minute)),
	} {
		mustCreate(t, s, j)
	}
	if err := s.AddStep(t.Context(), executor.StepRun{Job: "p4", Seq: 1, Name: "fetch"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target string
		limit  int
		states []executor.State
		want   []string
	}{
		{name: "all", want: []string{"s2", "p4", "p3", "p2", "s1", "p1"}},
		{name: "one target", target: "production", want: []string{"p4", "p3", "p2", "p1"}},
		{name: "limit", target: "production", limit: 2, want: []string{"p4", "p3"}},
		{name: "negative limit is none", limit: -1, want: []string{"s2", "p4", "p3", "p2", "s1", "p1"}},
		{name: "one state", states: []executor.State{executor.StateRunning}, want: []string{"p3", "s1"}},
		{name: "unfinished states", states: []executor.State{executor.StateQueued, executor.StateRunning},
			want: []string{"p4", "p3", "s1"}},
		{name: "target, states and limit", target: "production", limit: 1,
			states: []executor.State{executor.StateSuccess, executor.StateFailure}, want: []string{"p2"}},
		{name: "unknown target", target: "dev", want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := s.Jobs(t.Context(), tt.target, tt.limit, tt.states...)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(jobs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Jobs(%q, %d, %v) = %v, want %v", tt.target, tt.limit, tt.states, got, tt.want)
			}
			for _, j := range jobs {
				if j.Steps != nil {
					t.Errorf("job %s has steps %v, want none from Jobs", j.ID, j.Steps)
				}
				if j.Trigger.Repo != "acme/app" || j.Created.IsZero() {
					t.Errorf("job %s not fully read: %+v", j.ID, j)
				}
			}
		})
	}
}

func testOutbox(t *testing.T, s *Store) {
	ctx := t.Context()
	if owed, err := s.Owed(ctx, 10); err != nil || len(owed) != 0 {
		t.Fatalf("Owed(empty) = %v, %v; want none", owed, err)
	}
	reports := []executor.Report{
		{Job: "j1", Target: "production", Environment: "prod", Repo: "acme/app", SHA: sha1,
			State: executor.StateRunning, Description: "deploying 0123456", URL: "https://deploy.example.com/jobs/j1"},
		{Job: "j1", Target: "production", Environment: "prod", Repo: "acme/app", SHA: sha1,
			State: executor.StateSuccess, Description: "deployed", URL: "https://deploy.example.com/jobs/j1", Deployment: 77},
		{Job: "j2", Target: "production", Environment: "prod", Repo: "acme/app", SHA: sha2,
			State: executor.StateSuperseded, Description: "superseded by 89abcde"},
	}
	before := time.Now()
	for _, r := range reports {
		if err := s.Owe(ctx, r); err != nil {
			t.Fatalf("Owe: %v", err)
		}
	}
	owed, err := s.Owed(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(owed) != len(reports) {
		t.Fatalf("Owed = %d reports, want %d", len(owed), len(reports))
	}
	for i, o := range owed {
		if o.Report != reports[i] {
			t.Errorf("owed[%d].Report = %+v, want %+v", i, o.Report, reports[i])
		}
		if o.Tries != 0 || o.Created.Before(before.Add(-time.Second)) || o.Created.After(time.Now()) {
			t.Errorf("owed[%d] = tries %d, created %v; want 0 tries, created just now", i, o.Tries, o.Created)
		}
		if i > 0 && o.ID <= owed[i-1].ID {
			t.Errorf("owed ids not increasing: %d after %d", o.ID, owed[i-1].ID)
		}
	}
	if got, _ := s.Owed(ctx, 2); len(got) != 2 || got[0].ID != owed[0].ID || got[1].ID != owed[1].ID {
		t.Errorf("Owed(2) = %+v, want the 2 oldest", got)
	}

	for range 2 {
		if err := s.Retry(ctx, owed[0].ID); err != nil {
			t.Fatalf("Retry: %v", err)
		}
	}
	if err := s.Settle(ctx, owed[1].ID); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if err := s.Settle(ctx, owed[1].ID); !errors.Is(err, executor.ErrNotFound) {
		t.Errorf("Settle(settled) error = %v, want ErrNotFound", err)
	}
	if err := s.Retry(ctx, owed[1].ID); !errors.Is(err, executor.ErrNotFound) {
		t.Errorf("Retry(settled) error = %v, want ErrNotFound", err)
	}
	if err := s.Owe(ctx, reports[1]); err != nil {
		t.Fatal(err)
	}
	after, err := s.Owed(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		report executor.Report
		tries  int
	}
	var got []entry
	for _, o := range after {
		got = append(got, entry{o.Report, o.Tries})
	}
	want := []entry{{reports[0], 2}, {reports[2], 0}, {reports[1], 0}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outbox after Retry, Settle, Owe =\n%+v\nwant\n%+v", got, want)
	}
	if last := after[len(after)-1].ID; last <= owed[len(owed)-1].ID {
		t.Errorf("new report id %d not above every earlier id (%d): ids must never be reused", last, owed[len(owed)-1].ID)
	}
}

// TestStore_CreateJob_concurrentDelivery races CreateJob calls for one delivery
// from two Store handles on one file (as two processes would): exactly one
// records a job, every other call returns its id and ErrDuplicate.
func TestStore_CreateJob_concurrentDelivery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	stores := []*Store{mustOpen(t, path), mustOpen(t, path)}
	const n = 16
	type result struct {
		existing string
		err      error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			j := queuedJob(fmt.Sprintf("j%02d", i), "production", executor.StateQueued, t0)
			j.Trigger.Delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
			<-start
			existing, err := stores[i%2].CreateJob(t.Context(), j)
			results[i] = result{existing, err}
		})
	}
	close(start)
	wg.Wait()

	var winners []string
	for i, r := range results {
		if r.err == nil {
			winners = append(winners, fmt.Sprintf("j%02d", i))
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d calls recorded a job (%v), want exactly 1; results %+v", len(winners), winners, results)
	}
	for i, r := range results {
		if r.err != nil && (!errors.Is(r.err, executor.ErrDuplicate) || r.existing != winners[0]) {
			t.Errorf("call %d = %q, %v; want %s, ErrDuplicate", i, r.existing, r.err, winners[0])
		}
	}
	jobs, err := stores[0].Jobs(t.Context(), "", 0)
	if err != nil || !reflect.DeepEqual(ids(jobs), winners) {
		t.Errorf("Jobs = %v, %v; want %v", ids(jobs), err, winners)
	}
}

// TestOpen_reopen writes, closes, opens again (migrations run again) and finds
// everything as it was.
func TestOpen_reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	s, err := Open(t.Context(), newLogger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	want := fullJob("j1")
	mustCreate(t, s, want)
	report := executor.Report{Job: "j1", Target: "production", SHA: sha1, State: executor.StateSuccess, Description: "deployed"}
	if err := s.Owe(t.Context(), report); err != nil {
		t.Fatal(err)
	}
	schemaBefore := schemaSQL(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		s := mustOpen(t, path)
		diffJob(t, mustJob(t, s, "j1"), want)
		owed, err := s.Owed(t.Context(), 0)
		if err != nil || len(owed) != 1 || owed[0].Report != report {
			t.Errorf("reopen %d: Owed = %+v, %v; want the one report", i, owed, err)
		}
		if got := userVersion(t, s.r); got != latestVersion(t) {
			t.Errorf("reopen %d: user_version = %d, want %d", i, got, latestVersion(t))
		}
		if got := schemaSQL(t, s); got != schemaBefore {
			t.Errorf("reopen %d: schema changed:\n%s\nwas\n%s", i, got, schemaBefore)
		}
		// A duplicate is still a duplicate after a restart.
		dup := queuedJob("j2", "production", executor.StateQueued, t0)
		dup.Trigger.Delivery = want.Trigger.Delivery
		if existing, err := s.CreateJob(t.Context(), dup); !errors.Is(err, executor.ErrDuplicate) || existing != "j1" {
			t.Errorf("reopen %d: CreateJob(duplicate) = %q, %v; want j1, ErrDuplicate", i, existing, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpen_files checks what Open creates on disk, and what it refuses.
func TestOpen_files(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "deployhook")
	path := filepath.Join(dir, "journal.db")
	s := mustOpen(t, path)
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	for name, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", filepath.Base(name), fi.Mode(), want)
		}
	}
	pragmas := []struct {
		name string
		want string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"busy_timeout", fmt.Sprint(BusyTimeout.Milliseconds())},
	}
	for _, db := range []*sql.DB{s.w, s.r} {
		for _, p := range pragmas {
			var got string
			if err := db.QueryRowContext(t.Context(), "PRAGMA "+p.name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != p.want {
				t.Errorf("PRAGMA %s = %s, want %s", p.name, got, p.want)
			}
		}
	}
	if _, err := s.r.ExecContext(t.Context(), "DELETE FROM jobs"); err == nil {
		t.Error("a write through the read pool succeeded, want query_only to refuse it")
	}

	t.Run("not a database", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "journal.db")
		if err := os.WriteFile(bad, []byte(strings.Repeat("not sqlite\n", 100)), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(t.Context(), newLogger(t), bad); err == nil {
			s.Close()
			t.Fatal("Open(garbage) = nil error, want one")
		}
	})
	t.Run("question mark in path", func(t *testing.T) {
		if s, err := Open(t.Context(), newLogger(t), filepath.Join(t.TempDir(), "a?b.db")); err == nil {
			s.Close()
			t.Fatal("Open(a?b.db) = nil error, want one")
		}
	})
}

// TestOpen_newerSchema: a journal written by a newer deployhook is refused and
// left as it is.
func TestOpen_newerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	s, err := Open(t.Context(), newLogger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(t.Context(), "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(t.Context(), newLogger(t), path)
	if err == nil {
		s.Close()
		t.Fatal("Open(newer journal) = nil error, want one")
	}
	want := fmt.Sprintf("journal schema version 99 is newer than this deployhook knows (%d)", latestVersion(t))
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Open error = %q, want it to contain %q", err, want)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := userVersion(t, db); got != 99 {
		t.Errorf("user_version after refusal = %d, want 99 (untouched)", got)
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		name string
		s    string
		max  int
		want string
	}{
		{name: "short", s: "abc", max: 5, want: "abc"},
		{name: "exact", s: "abcde", max: 5, want: "abcde"},
		{name: "long keeps the tail", s: "abcdefgh", max: 3, want: "fgh"},
		{name: "cut inside a rune moves to its end", s: "a€€", max: 5, want: "€"},
		{name: "cut on a rune start", s: "a€€", max: 6, want: "€€"},
		{name: "invalid UTF-8 is cut by bytes", s: "\xff\xff\xff\xff\xffab", max: 5, want: "\xff\xff\xffab"},
		{name: "empty", s: "", max: 0, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tail(tt.s, tt.max); got != tt.want {
				t.Errorf("tail(%q, %d) = %q, want %q", tt.s, tt.max, got, tt.want)
			}
		})
	}
}

func userVersion(tb testing.TB, db *sql.DB) int {
	tb.Helper()
	var v int
	if err := db.QueryRowContext(tb.Context(), "PRAGMA user_version").Scan(&v); err != nil {
		tb.Fatal(err)
	}
	return v
}

func latestVersion(tb testing.TB) int {
	tb.Helper()
	ms, err := loadMigrations(schema())
	if err != nil {
		tb.Fatal(err)
	}
	return len(ms)
}

// schemaSQL is every table and index definition of the journal.
func schemaSQL(tb testing.TB, s *Store) string {
	tb.Helper()
	rows, err := s.r.QueryContext(tb.Context(), "SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var typ, name, text string
		if err := rows.Scan(&typ, &name, &text); err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s: %s\n", typ, name, text)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

// One push may deploy several targets: the delivery deduplicates per target.
func TestStore_CreateJob_deliveryPerTarget(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	a := queuedJob("a", "production", executor.StateQueued, time.Now())
	b := queuedJob("b", "staging", executor.StateQueued, time.Now())
	a.Trigger.Delivery, b.Trigger.Delivery = "guid-1", "guid-1"
	for _, j := range []executor.Job{a, b} {
		if _, err := s.CreateJob(ctx, j); err != nil {
			t.Fatalf("CreateJob %s: %v", j.ID, err)
		}
	}
	again := queuedJob("c", "staging", executor.StateQueued, time.Now())
	again.Trigger.Delivery = "guid-1"
	if id, err := s.CreateJob(ctx, again); !errors.Is(err, executor.ErrDuplicate) || id != "b" {
		t.Errorf("same delivery and target: %q, %v; want b, ErrDuplicate", id, err)
	}
}

// A job's state change and the report it owes GitHub are one transaction.
func TestStore_oweWithJob(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	r := executor.Report{Job: "a", Target: "production", SHA: sha1, State: executor.StateQueued, Description: "queued"}
	a := queuedJob("a", "production", executor.StateQueued, time.Now())
	if _, err := s.CreateJob(ctx, a, r); err != nil {
		t.Fatal(err)
	}
	dup := queuedJob("b", "production", executor.StateQueued, time.Now())
	dup.Trigger.Delivery = a.Trigger.Delivery
	if _, err := s.CreateJob(ctx, dup, executor.Report{Job: "b"}); !errors.Is(err, executor.ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	a.State, a.Description = executor.StateSuccess, "deployed"
	final := r
	final.State, final.Description = executor.StateSuccess, "deployed"
	if err := s.UpdateJob(ctx, a, final); err != nil {
		t.Fatal(err)
	}
	missing := queuedJob("nope", "production", executor.StateSuccess, time.Now())
	if err := s.UpdateJob(ctx, missing, executor.Report{Job: "nope"}); !errors.Is(err, executor.ErrNotFound) {
		t.Fatalf("update of a missing job: %v", err)
	}
	owed, err := s.Owed(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range owed {
		got = append(got, o.Report.Job+":"+string(o.Report.State))
	}
	if want := []string{"a:queued", "a:success"}; !slices.Equal(got, want) {
		t.Errorf("owed %v, want %v (nothing for the duplicate or the missing job)", got, want)
	}
}
