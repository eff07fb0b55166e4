package store

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/storetest"
)

// benchStore opens a fresh journal whose logs are dropped (benchmarks measure
// the store, not the logger).
func benchStore(b *testing.B) *Store {
	s, err := Open(b.Context(), slog.New(slog.DiscardHandler), filepath.Join(b.TempDir(), "journal.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// Every write commits with an fsync of the WAL (synchronous=FULL): these figures
// are mostly the disk's fsync latency.

func BenchmarkStore_CreateJob(b *testing.B) {
	s := benchStore(b)
	i := 0
	for b.Loop() {
		j := queuedJob(fmt.Sprintf("job-%d", i), "production", executor.StateQueued, t0.Add(time.Duration(i)))
		if _, err := s.CreateJob(b.Context(), j); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkStore_UpdateJob(b *testing.B) {
	s := benchStore(b)
	j := storetest.FullJob("j1")
	mustCreate(b, s, j)
	i := 0
	for b.Loop() {
		j.Finished = t0.Add(time.Duration(i))
		if err := s.UpdateJob(b.Context(), j); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkStore_AddStep(b *testing.B) {
	s := benchStore(b)
	mustCreate(b, s, queuedJob("j1", "production", executor.StateRunning, t0))
	st := executor.StepRun{Job: "j1", Name: "sync", Output: strings.Repeat("Resolved 42 packages\n", 200), Started: t0}
	i := 0
	for b.Loop() {
		st.Seq = i%10 + 1 // a mix of inserts and replaces, as a running job makes
		// A changed row: SQLite skips writing a row replaced by identical bytes,
		// and the benchmark would measure a commit with nothing to sync.
		st.Duration = time.Duration(i)
		if err := s.AddStep(b.Context(), st); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkStore_OweSettle(b *testing.B) {
	s := benchStore(b)
	r := executor.Report{Job: "j1", Target: "production", Environment: "production", Repo: "acme/app",
		SHA: sha1, State: executor.StateSuccess, Description: "deployed 0123456", URL: "https://deploy.example.com/jobs/j1"}
	for b.Loop() {
		if err := s.Owe(b.Context(), r); err != nil {
			b.Fatal(err)
		}
		owed, err := s.Owed(b.Context(), 1)
		if err != nil || len(owed) != 1 {
			b.Fatal(owed, err)
		}
		if err := s.Settle(b.Context(), owed[0].ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStore_CreateJob_bodyHash is CreateJob as webhook intake makes it
// now: with a body hash (one more unique index entry) and an owner.
func BenchmarkStore_CreateJob_bodyHash(b *testing.B) {
	s := benchStore(b)
	i := 0
	for b.Loop() {
		j := queuedJob(fmt.Sprintf("job-%d", i), "production", executor.StateQueued, t0.Add(time.Duration(i)))
		j.Trigger.BodyHash = fmt.Sprintf("%064x", i)
		j.Owner = "serve-1"
		if _, err := s.CreateJob(b.Context(), j); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkStore_CreateJob_replay is a replayed body under a new GUID: the
// unique index refuses it and the transaction rolls back (no fsync).
func BenchmarkStore_CreateJob_replay(b *testing.B) {
	s := benchStore(b)
	first := queuedJob("first", "production", executor.StateQueued, t0)
	first.Trigger.BodyHash = bodyHash1
	mustCreate(b, s, first)
	i := 0
	for b.Loop() {
		j := queuedJob(fmt.Sprintf("job-%d", i), "production", executor.StateQueued, t0.Add(time.Duration(i)))
		j.Trigger.BodyHash = bodyHash1
		if _, err := s.CreateJob(b.Context(), j); !errors.Is(err, executor.ErrDuplicate) {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkStore_Prune deletes 1,000 old final jobs, each with a step and a
// delivery, from a journal that keeps 1,000 newer ones; ns/job is per job
// deleted.
func BenchmarkStore_Prune(b *testing.B) {
	const old, kept = 1000, 1000
	s := benchStore(b)
	insertJobs(b, s, "staging", kept, executor.StateSuccess) // created from t0 on
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		insertJobs(b, s, fmt.Sprintf("old-%d", i), old, executor.StateFailure)
		if _, err := s.w.ExecContext(b.Context(), `UPDATE jobs SET created = created - ? WHERE target = ?`,
			int64(24*time.Hour), fmt.Sprintf("old-%d", i)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, err := s.Prune(b.Context(), t0, 0)
		if err != nil || n != old {
			b.Fatalf("Prune = %d, %v; want %d", n, err, old)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*old), "ns/job")
}

// intakeJob is job i as intake records a delivery that deploys: a delivery
// GUID, a body hash, an owner, and the queued report owed with it.
func intakeJob(i int, owner string) (executor.Job, executor.Report) {
	j := queuedJob(fmt.Sprintf("job-%d", i), "production", executor.StateQueued, t0.Add(time.Duration(i)))
	j.Trigger.SHA = fmt.Sprintf("%040x", i)
	j.Trigger.Delivery = fmt.Sprintf("guid-%d", i)
	j.Trigger.BodyHash = fmt.Sprintf("%064x", i)
	j.Owner = owner
	return j, executor.Report{Job: j.ID, Target: j.Target, Environment: j.Target, Repo: j.Trigger.Repo,
		SHA: j.Trigger.SHA, State: executor.StateQueued, Description: "queued: push by octocat",
		URL: "https://deploy.example.com/jobs/" + j.ID}
}

// BenchmarkIntake is the journal's part of a delivery that deploys
// (CreateJob with its delivery, body hash, owner and queued report), on the
// SQLite journal; pgstore's BenchmarkIntake is the same on PostgreSQL, so
// that go test -bench Intake ./executor/store/... shows them side by side.
func BenchmarkIntake(b *testing.B) {
	for _, owner := range []string{"serve-1", executor.LaneOwner("production")} {
		name := "journal=sqlite/owner=process"
		if owner != "serve-1" {
			name = "journal=sqlite/owner=lane"
		}
		b.Run(name, func(b *testing.B) {
			s := benchStore(b)
			i := 0
			for b.Loop() {
				j, r := intakeJob(i, owner)
				if _, err := s.CreateJob(b.Context(), j, r); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
