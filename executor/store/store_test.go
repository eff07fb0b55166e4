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

// Hex SHA-256 digests, as the server computes them from webhook bodies.
const (
	bodyHash1 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
	bodyHash2 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
)

// fullJob has every field of a job set, steps included.
func fullJob(id string) executor.Job {
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
			upd.Owner = "owner-cli-2"
			upd.Trigger.BodyHash = bodyHash2 // must not change the recorded one
			upd.Trigger.AnyCommit = false
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
			want.Owner = upd.Owner
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
		{"CreateJob/duplicate body hash", testBodyHash},
		{"CreateJob/delivery decides before body hash", func(t *testing.T, s *Store) {
			a := queuedJob("a", "production", executor.StateQueued, t0)
			a.Trigger.BodyHash = bodyHash1
			b := queuedJob("b", "production", executor.StateQueued, t0.Add(time.Second))
			b.Trigger.BodyHash = bodyHash2
			mustCreate(t, s, a)
			mustCreate(t, s, b)
			c := queuedJob("c", "production", executor.StateQueued, t0.Add(2*time.Second))
			c.Trigger.Delivery, c.Trigger.BodyHash = a.Trigger.Delivery, b.Trigger.BodyHash
			if existing, err := s.CreateJob(t.Context(), c); !errors.Is(err, executor.ErrDuplicate) || existing != "a" {
				t.Errorf("CreateJob(a's delivery, b's body) = %q, %v; want a, ErrDuplicate", existing, err)
			}
		}},
		{"Deployed", testDeployed},
		{"Beat and Orphans", testOrphans},
		{"Adopt", testAdopt},
		{"Check", func(t *testing.T, s *Store) {
			for i := range 3 {
				if err := s.Check(t.Context()); err != nil {
					t.Fatalf("Check %d: %v", i, err)
				}
			}
			var n int
			if err := s.r.QueryRowContext(t.Context(), "SELECT checks FROM health").Scan(&n); err != nil || n != 3 {
				t.Errorf("health checks = %d, %v; want 3: every Check must commit a write", n, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Check(t.Context()); err == nil {
				t.Error("Check after Close = nil, want an error")
			}
		}},
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

// testBodyHash: an old signed body replayed under a new delivery GUID creates
// no job for a target that has one for that body (issue 8, item 1: before
// the body hash was recorded, the replay was a new job).
func testBodyHash(t *testing.T, s *Store) {
	ctx := t.Context()
	first := queuedJob("j1", "production", executor.StateSuccess, t0)
	first.Trigger.BodyHash = bodyHash1
	mustCreate(t, s, first)
	if got := mustJob(t, s, "j1").Trigger.BodyHash; got != bodyHash1 {
		t.Fatalf("BodyHash = %q, want %q", got, bodyHash1)
	}

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
		{name: "same body, other target", target: "staging", delivery: "new-guid-3", hash: bodyHash1, want: "j-staging"},
		{name: "other body, same target", target: "production", delivery: "new-guid-4", hash: bodyHash2, want: "j-other"},
		{name: "the refused GUID with a new body", target: "production", delivery: "new-guid-1",
			hash: "0000000000000000000000000000000000000000000000000000000000000001", want: "j-reused-guid"},
		{name: "no body hash never deduplicates", target: "production", delivery: "", hash: "", want: "j-local-1"},
		{name: "no body hash, again", target: "production", delivery: "", hash: "", want: "j-local-2"},
	}
	for i, tt := range tests {
		id := tt.want
		if tt.wantDup {
			id = fmt.Sprintf("dup-%d", i)
		}
		j := queuedJob(id, tt.target, executor.StateQueued, t0.Add(time.Duration(i+1)*time.Second))
		j.Trigger.Delivery, j.Trigger.BodyHash = tt.delivery, tt.hash
		r := executor.Report{Job: id, Target: tt.target, SHA: sha1, State: executor.StateQueued}
		got, err := s.CreateJob(ctx, j, r)
		if got != tt.want || errors.Is(err, executor.ErrDuplicate) != tt.wantDup || (!tt.wantDup && err != nil) {
			t.Errorf("%s: CreateJob = %q, %v; want %q, duplicate %v", tt.name, got, err, tt.want, tt.wantDup)
		}
		_, err = s.Job(ctx, id)
		if recorded := err == nil; recorded == tt.wantDup {
			t.Errorf("%s: job %s recorded = %v, want %v", tt.name, id, recorded, !tt.wantDup)
		}
	}
	owed, err := s.Owed(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, o := range owed {
		jobs = append(jobs, o.Report.Job)
	}
	if want := []string{"j-staging", "j-other", "j-reused-guid", "j-local-1", "j-local-2"}; !slices.Equal(jobs, want) {
		t.Errorf("owed reports for %v, want %v (nothing for a duplicate)", jobs, want)
	}
}

func testDeployed(t *testing.T, s *Store) {
	for i, j := range []executor.Job{
		queuedJob("old-ok", "production", executor.StateSuccess, t0.Add(1*time.Minute)),
		queuedJob("new-ok", "production", executor.StateSuccess, t0.Add(3*time.Minute)),
		queuedJob("later-running", "production", executor.StateRunning, t0.Add(5*time.Minute)),
		queuedJob("staging-ok", "staging", executor.StateSuccess, t0.Add(6*time.Minute)),
		queuedJob("sha2-failed", "production", executor.StateFailure, t0.Add(7*time.Minute)),
		queuedJob("sha2-skipped", "production", "skipped", t0.Add(8*time.Minute)),
	} {
		switch j.ID {
		case "staging-ok", "sha2-failed", "sha2-skipped":
			j.Trigger.SHA = sha2
		}
		j.Owner = "owner-" + j.ID
		j.Trigger.BodyHash = fmt.Sprintf("%064x", i+1)
		mustCreate(t, s, j)
	}
	tests := []struct {
		target, sha string
		want        string // "" for ErrNotFound
	}{
		{"production", sha1, "new-ok"},
		{"production", sha2, ""}, // failed and skipped jobs are not deploys
		{"staging", sha2, "staging-ok"},
		{"staging", sha1, ""},
		{"dev", sha1, ""},
	}
	for _, tt := range tests {
		got, err := s.Deployed(t.Context(), tt.target, tt.sha)
		if tt.want == "" {
			if !errors.Is(err, executor.ErrNotFound) {
				t.Errorf("Deployed(%s, %.7s) = %q, %v; want ErrNotFound", tt.target, tt.sha, got.ID, err)
			}
			continue
		}
		if err != nil || got.ID != tt.want {
			t.Errorf("Deployed(%s, %.7s) = %q, %v; want %s", tt.target, tt.sha, got.ID, err, tt.want)
			continue
		}
		// The whole job, as Job reads it.
		diffJob(t, got, mustJob(t, s, tt.want))
		if got.Owner != "owner-"+tt.want || got.Trigger.BodyHash == "" {
			t.Errorf("Deployed(%s, %.7s) lacks owner or body hash: %+v", tt.target, tt.sha, got)
		}
	}
}

// ownerRow reads an owners row back.
func ownerRow(tb testing.TB, s *Store, id string) (executor.Owner, bool) {
	tb.Helper()
	o := executor.Owner{ID: id}
	var until int64
	err := s.r.QueryRowContext(tb.Context(), "SELECT kind, host, pid, until FROM owners WHERE id = ?", id).
		Scan(&o.Kind, &o.Host, &o.PID, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return executor.Owner{}, false
	}
	if err != nil {
		tb.Fatal(err)
	}
	o.Until = time.Unix(0, until).UTC()
	return o, true
}

func testOrphans(t *testing.T, s *Store) {
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
		{"legacy-final", executor.StateSuccess, "", false},
		{"edge", executor.StateRunning, "edge", false},
		{"live-running", executor.StateRunning, "live", false},
		{"live-queued", executor.StateQueued, "live", false},
	}
	var want []string
	for i, jj := range jobs {
		j := queuedJob(jj.id, "production", jj.state, t0.Add(time.Duration(i)*time.Minute))
		j.Owner = jj.owner
		mustCreate(t, s, j)
		if jj.orphan {
			want = append([]string{jj.id}, want...) // newest first
		}
	}
	if err := s.AddStep(ctx, executor.StepRun{Job: "legacy", Seq: 1, Name: "fetch"}); err != nil {
		t.Fatal(err)
	}
	orphans, err := s.Orphans(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(orphans); !slices.Equal(got, want) {
		t.Errorf("Orphans(now) = %v, want %v", got, want)
	}
	for _, j := range orphans {
		if j.Steps != nil {
			t.Errorf("orphan %s has steps, want none", j.ID)
		}
		if j.Trigger.Repo != "acme/app" || j.Created.IsZero() {
			t.Errorf("orphan %s not fully read: %+v", j.ID, j)
		}
	}

	// A renewed lease (Beat replaces the row) takes its jobs off the list;
	// the "live" lease ends in a minute, then its jobs are orphans.
	renewed := executor.Owner{ID: "expired", Kind: "serve", Host: "vm-2", PID: 77, Until: now.Add(time.Hour)}
	if err := s.Beat(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if got, ok := ownerRow(t, s, "expired"); !ok || got != normalizeOwner(renewed) {
		t.Errorf("owner row after Beat = %+v, %v; want %+v", got, ok, renewed)
	}
	orphans, err = s.Orphans(ctx, now.Add(time.Minute+time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(orphans), []string{"live-queued", "live-running", "edge", "no-row", "legacy"}; !slices.Equal(got, want) {
		t.Errorf("Orphans(now+1m) = %v, want %v", got, want)
	}

	for _, o := range []executor.Owner{{ID: "", Until: now}, {ID: "x"}} {
		if err := s.Beat(ctx, o); err == nil {
			t.Errorf("Beat(%+v) = nil, want an error", o)
		}
	}
}

// normalizeOwner is o as the journal gives it back.
func normalizeOwner(o executor.Owner) executor.Owner {
	o.Until = time.Unix(0, o.Until.UnixNano()).UTC()
	return o
}

func testAdopt(t *testing.T, s *Store) {
	ctx := t.Context()
	for _, j := range []executor.Job{
		queuedJob("running", "production", executor.StateRunning, t0),
		queuedJob("queued", "production", executor.StateQueued, t0.Add(time.Second)),
		queuedJob("final", "production", executor.StateError, t0.Add(2*time.Second)),
		queuedJob("legacy", "production", executor.StateRunning, t0.Add(3*time.Second)),
	} {
		if j.ID != "legacy" {
			j.Owner = "dead"
		}
		mustCreate(t, s, j)
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
		{"job recorded before owners", "legacy", "", "me", false, "me"},
		{"unknown job", "nope", "dead", "me", true, ""},
	}
	for _, st := range steps {
		err := s.Adopt(ctx, st.id, st.from, st.to)
		if st.wantErr != errors.Is(err, executor.ErrNotFound) || (!st.wantErr && err != nil) {
			t.Errorf("%s: Adopt(%s, %q, %q) = %v; want ErrNotFound %v", st.name, st.id, st.from, st.to, err, st.wantErr)
		}
		if st.wantOwner == "" {
			continue
		}
		if got := mustJob(t, s, st.id).Owner; got != st.wantOwner {
			t.Errorf("%s: owner of %s = %q, want %q", st.name, st.id, got, st.wantOwner)
		}
	}
	if err := s.Adopt(ctx, "queued", "me", ""); err == nil || errors.Is(err, executor.ErrNotFound) {
		t.Errorf("Adopt(to \"\") = %v, want a refusal", err)
	}
}

// TestStore_CreateJob_concurrentBodyHash races CreateJob calls for one body
// under distinct delivery GUIDs (replays) from two Store handles on one file:
// the unique index lets exactly one record a job.
func TestStore_CreateJob_concurrentBodyHash(t *testing.T) {
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
			j.Trigger.Delivery = fmt.Sprintf("guid-%02d", i)
			j.Trigger.BodyHash = bodyHash1
			<-start
			existing, err := stores[i%2].CreateJob(t.Context(), j, executor.Report{Job: j.ID, State: executor.StateQueued})
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
	if err != nil || !slices.Equal(ids(jobs), winners) {
		t.Errorf("Jobs = %v, %v; want %v", ids(jobs), err, winners)
	}
	var deliveries, owed int
	if err := stores[0].r.QueryRowContext(t.Context(), "SELECT count(*) FROM deliveries").Scan(&deliveries); err != nil || deliveries != 1 {
		t.Errorf("delivery rows = %d, %v; want 1 (the losers' GUIDs must not be recorded)", deliveries, err)
	}
	if err := stores[0].r.QueryRowContext(t.Context(), "SELECT count(*) FROM outbox").Scan(&owed); err != nil || owed != 1 {
		t.Errorf("owed reports = %d, %v; want 1", owed, err)
	}
}

// TestStore_Adopt_concurrent races Adopt calls for one orphan from two Store
// handles on one file (two processes recovering at once): exactly one wins,
// and the job ends up with the winner.
func TestStore_Adopt_concurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	stores := []*Store{mustOpen(t, path), mustOpen(t, path)}
	j := queuedJob("orphan", "production", executor.StateRunning, t0)
	j.Owner = "dead"
	mustCreate(t, stores[0], j)
	const n = 16
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = stores[i%2].Adopt(t.Context(), "orphan", "dead", fmt.Sprintf("p%02d", i))
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
			t.Errorf("Adopt %d: %v, want nil or ErrNotFound", i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d Adopt calls won (%v), want exactly 1", len(winners), winners)
	}
	if got := mustJob(t, stores[1], "orphan").Owner; got != winners[0] {
		t.Errorf("owner = %q, want the winner %q", got, winners[0])
	}
}

// pruneFixture records, on s, the jobs TestStore_Prune prunes: production's
// p1..p9 created a minute apart (p3 its newest success, p5 and p9 not final),
// staging's s1 (its only success) and s2, each with a step and a delivery
// row, p1 with a body hash and an owed report.
func pruneFixture(t *testing.T, s *Store) {
	ctx := t.Context()
	jobs := []struct {
		id     string
		target string
		state  executor.State
		minute int
	}{
		{"p1", "production", executor.StateSuccess, 1},
		{"p2", "production", executor.StateFailure, 2},
		{"p3", "production", executor.StateSuccess, 3},
		{"p4", "production", executor.StateFailure, 4},
		{"p5", "production", executor.StateRunning, 5},
		{"p6", "production", "skipped", 6},
		{"p7", "production", executor.StateSuperseded, 7},
		{"p8", "production", executor.StateError, 8},
		{"p9", "production", executor.StateQueued, 9},
		{"s1", "staging", executor.StateSuccess, 1},
		{"s2", "staging", executor.StateFailure, 2},
	}
	for _, jj := range jobs {
		j := queuedJob(jj.id, jj.target, jj.state, t0.Add(time.Duration(jj.minute)*time.Minute))
		if jj.id == "p1" {
			j.Trigger.BodyHash = bodyHash1
		}
		var owe []executor.Report
		if jj.id == "p1" {
			owe = append(owe, executor.Report{Job: "p1", Target: "production", SHA: sha1, State: executor.StateSuccess})
		}
		if _, err := s.CreateJob(ctx, j, owe...); err != nil {
			t.Fatal(err)
		}
		if err := s.AddStep(ctx, executor.StepRun{Job: jj.id, Seq: 1, Name: "fetch", Output: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
}

// count returns the result of a count(*) query on the journal.
func count(tb testing.TB, s *Store, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := s.r.QueryRowContext(tb.Context(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestStore_Prune checks what retention deletes and what it must keep: never
// an unfinished job, a target's newest success, or an owed report.
func TestStore_Prune(t *testing.T) {
	all := []string{"p9", "p8", "p7", "p6", "p5", "p4", "p3", "s2", "p2", "s1", "p1"} // newest first; ties in insertion order, newest first
	tests := []struct {
		name    string
		before  time.Time
		keep    int
		deleted []string
	}{
		{name: "nothing old, no count", before: t0, keep: 0},
		{name: "negative keep is no count", before: t0, keep: -3},
		{name: "by age", before: t0.Add(4*time.Minute + 30*time.Second), keep: 0,
			// p3 and s1 are their targets' newest successes.
			deleted: []string{"p4", "p2", "s2", "p1"}},
		{name: "by count", before: t0, keep: 3,
			// production, newest first: p9 p8 p7 | p6 p5 p4 p3 p2 p1; p5 runs, p3 is the newest success.
			deleted: []string{"p6", "p4", "p2", "p1"}},
		{name: "zero before is no age limit", keep: 3,
			deleted: []string{"p6", "p4", "p2", "p1"}},
		{name: "keep 1", before: t0, keep: 1,
			deleted: []string{"p8", "p7", "p6", "p4", "p2", "p1"}},
		{name: "everything old", before: t0.Add(time.Hour), keep: 0,
			deleted: []string{"p8", "p7", "p6", "p4", "p2", "s2", "p1"}},
		{name: "age and count together", before: t0.Add(2*time.Minute + 30*time.Second), keep: 5,
			deleted: []string{"p4", "p2", "s2", "p1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ctx := t.Context()
			pruneFixture(t, s)
			n, err := s.Prune(ctx, tt.before, tt.keep)
			if err != nil || n != len(tt.deleted) {
				t.Errorf("Prune = %d, %v; want %d, nil", n, err, len(tt.deleted))
			}
			var want []string
			for _, id := range all {
				if !slices.Contains(tt.deleted, id) {
					want = append(want, id)
				}
			}
			jobs, err := s.Jobs(ctx, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(jobs); !slices.Equal(got, want) {
				t.Errorf("jobs left = %v, want %v", got, want)
			}
			for _, id := range tt.deleted {
				if n := count(t, s, "SELECT count(*) FROM steps WHERE job = ?", id); n != 0 {
					t.Errorf("%d steps of deleted job %s left", n, id)
				}
				if n := count(t, s, "SELECT count(*) FROM deliveries WHERE job = ?", id); n != 0 {
					t.Errorf("delivery row of deleted job %s left", id)
				}
			}
			if got := count(t, s, "SELECT count(*) FROM steps"); got != len(want) {
				t.Errorf("steps left = %d, want %d (one per job left)", got, len(want))
			}
			if got := count(t, s, "SELECT count(*) FROM deliveries"); got != len(want) {
				t.Errorf("delivery rows left = %d, want %d", got, len(want))
			}
			// The owed report of p1 stays, deleted or not.
			if owed, err := s.Owed(ctx, 0); err != nil || len(owed) != 1 || owed[0].Report.Job != "p1" {
				t.Errorf("Owed after Prune = %+v, %v; want p1's report", owed, err)
			}
			rows, err := s.r.QueryContext(ctx, "PRAGMA foreign_key_check")
			if err != nil {
				t.Fatal(err)
			}
			if rows.Next() {
				t.Error("foreign_key_check after Prune found dangling rows")
			}
			rows.Close()
			// A deleted job's delivery and body hash no longer deduplicate.
			j := queuedJob("again", "production", executor.StateQueued, t0.Add(time.Hour))
			j.Trigger.Delivery, j.Trigger.BodyHash = "d-p1", bodyHash1
			_, err = s.CreateJob(ctx, j)
			if p1Deleted := slices.Contains(tt.deleted, "p1"); p1Deleted != (err == nil) {
				t.Errorf("CreateJob(p1's delivery and body) = %v; p1 deleted: %v", err, p1Deleted)
			}
		})
	}
}

// TestStore_Prune_owners: owner rows whose lease ended before the cut-off go.
func TestStore_Prune_owners(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for _, o := range []executor.Owner{
		{ID: "old", Kind: "cli", Until: t0.Add(-time.Nanosecond)},
		{ID: "edge", Kind: "cli", Until: t0},
		{ID: "live", Kind: "serve", Until: t0.Add(time.Hour)},
	} {
		if err := s.Beat(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Prune(ctx, t0, 0); err != nil || n != 0 {
		t.Fatalf("Prune = %d, %v; want 0 jobs", n, err)
	}
	for id, want := range map[string]bool{"old": false, "edge": true, "live": true} {
		if _, ok := ownerRow(t, s, id); ok != want {
			t.Errorf("owner %s kept = %v, want %v", id, ok, want)
		}
	}
}

// TestStore_Prune_batches: one call deletes more than one batch.
func TestStore_Prune_batches(t *testing.T) {
	s := newStore(t)
	const n = 2*pruneBatch + 7
	insertJobs(t, s, "production", n, executor.StateFailure)
	got, err := s.Prune(t.Context(), t0.Add(time.Hour), 0)
	if err != nil || got != n {
		t.Errorf("Prune = %d, %v; want %d", got, err, n)
	}
	if left := count(t, s, "SELECT count(*) FROM jobs"); left != 0 {
		t.Errorf("%d jobs left, want 0", left)
	}
}

// insertJobs records n jobs of target in state, created a millisecond apart
// from t0, each with a step and a delivery, in one transaction (fast setup).
func insertJobs(tb testing.TB, s *Store, target string, n int, state executor.State) {
	tb.Helper()
	ctx := tb.Context()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	for i := range n {
		id := fmt.Sprintf("%s-%07d", target, i)
		created := t0.Add(time.Duration(i) * time.Millisecond).UnixNano()
		if _, err := tx.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`) VALUES (`+jobValues+`)`,
			id, target, "push", "acme/app", "main", sha1, "d-"+id, "octocat", "push", false,
			"", false, string(state), "", "", 0, "", created, nil, nil); err != nil {
			tb.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (guid, target, job) VALUES (?, ?, ?)`, "d-"+id, target, id); err != nil {
			tb.Fatal(err)
		}
		if err := putStep(ctx, tx, executor.StepRun{Job: id, Seq: 1, Name: "fetch", Output: "ok"}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// TestOpen_symlink: a journal file, or its -wal or -shm, that is a symbolic
// link is refused, and nothing it points to is created or changed (issue 8,
// item 10: Open followed the link and wrote where it pointed).
func TestOpen_symlink(t *testing.T) {
	tests := []struct {
		name string
		link string // which file is the link: "", "-wal", "-shm"
		real bool   // whether the link's target exists (a journal)
	}{
		{name: "journal links to a journal", link: "", real: true},
		{name: "dangling journal link", link: "", real: false},
		{name: "wal links elsewhere", link: "-wal", real: true},
		{name: "shm links elsewhere", link: "-shm", real: true},
		{name: "dangling wal link", link: "-wal", real: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "journal.db")
			elsewhere := filepath.Join(t.TempDir(), "elsewhere")
			var before []byte
			if tt.real {
				if err := os.WriteFile(elsewhere, []byte("someone else's file"), 0o600); err != nil {
					t.Fatal(err)
				}
				before = []byte("someone else's file")
			}
			if tt.link != "" {
				// A real journal next to the linked -wal or -shm.
				s := mustOpen(t, path)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				os.Remove(path + tt.link)
			}
			if err := os.Symlink(elsewhere, path+tt.link); err != nil {
				t.Fatal(err)
			}
			s, err := Open(t.Context(), newLogger(t), path)
			if err == nil {
				s.Close()
				t.Fatal("Open(symlinked journal) = nil error, want a refusal")
			}
			for _, want := range []string{path + tt.link + " is a symbolic link", "replace the link"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open error = %q, want it to contain %q", err, want)
				}
			}
			got, err := os.ReadFile(elsewhere)
			switch {
			case !tt.real && !errors.Is(err, os.ErrNotExist):
				t.Errorf("the link's target was created (%v)", err)
			case tt.real && string(got) != string(before):
				t.Errorf("the link's target changed: %q, %v", got, err)
			}
		})
	}
	t.Run("directory in the journal's place", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "journal.db")
		if err := os.Mkdir(path+"-wal", 0o700); err != nil {
			t.Fatal(err)
		}
		s, err := Open(t.Context(), newLogger(t), path)
		if err == nil {
			s.Close()
			t.Fatal("Open with a directory as -wal = nil error, want a refusal")
		}
		if !strings.Contains(err.Error(), "is not a regular file") {
			t.Errorf("Open error = %q, want it to say the file is not a regular file", err)
		}
	})
}
