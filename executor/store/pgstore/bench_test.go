package pgstore_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/pgstore"
	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
)

// BenchmarkIntake is the journal's part of a delivery that deploys
// (CreateJob with its delivery, body hash, owner and queued report), on a
// real PostgreSQL server on this machine (the test server: fsync off), as
// store's BenchmarkIntake is on SQLite; owner=lane is a replica's job, which
// the lane's unique (target, SHA) index also checks.
func BenchmarkIntake(b *testing.B) {
	t0 := time.Date(2026, 11, 26, 15, 4, 5, 0, time.UTC)
	for _, owner := range []string{"serve-1", executor.LaneOwner("production")} {
		name := "journal=postgres/owner=process"
		if owner != "serve-1" {
			name = "journal=postgres/owner=lane"
		}
		b.Run(name, func(b *testing.B) {
			s, err := pgstore.Open(b.Context(), slog.New(slog.DiscardHandler), pgtest.Shared(b).NewDatabase(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			i := 0
			for b.Loop() {
				j := executor.Job{
					ID: fmt.Sprintf("job-%d", i), Target: "production", State: executor.StateQueued,
					Description: "queued: push by octocat", Owner: owner, Created: t0.Add(time.Duration(i)),
					Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main",
						SHA: fmt.Sprintf("%040x", i), Delivery: fmt.Sprintf("guid-%d", i),
						BodyHash: fmt.Sprintf("%064x", i), Actor: "octocat", Reason: "push by octocat"},
				}
				r := executor.Report{Job: j.ID, Target: j.Target, Environment: j.Target, Repo: "acme/app",
					SHA: j.Trigger.SHA, State: executor.StateQueued, Description: j.Description,
					URL: "https://deploy.example.com/jobs/" + j.ID}
				if _, err := s.CreateJob(b.Context(), j, r); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
