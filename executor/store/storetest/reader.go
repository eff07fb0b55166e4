package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// Reader is the read side of the journal: executor.Store's Job and Jobs, with
// their contracts. server.Journal is one.
type Reader interface {
	Job(ctx context.Context, id string) (executor.Job, error)
	Jobs(ctx context.Context, target string, limit int, states ...executor.State) ([]executor.Job, error)
}

// RunReader runs the subtests of Run that only read jobs (Job and Jobs)
// against the Reader that open returns, for a fake of the journal that
// implements no more. open must return a Reader that holds exactly jobs, as if
// recorded in the order of the slice (of two jobs created at the same time, the
// later in the slice is the newer), or fail t. RunReader calls it once; its
// subtests only read.
func RunReader(t *testing.T, open func(t *testing.T, jobs []executor.Job) Reader) {
	t.Helper()
	runReader(t, open(t, readerJobs()))
}

// readerJobs are the jobs that the read subtests read, in the order recorded:
// created out of that order, so that a store that lists in insertion order
// fails, and s1 and s3 created at the same instant (s3, recorded later, is
// the newer). p4 has every field and three steps.
func readerJobs() []executor.Job {
	p4 := FullJob("p4")
	p4.Created, p4.State = t0.Add(4*time.Minute), executor.StateQueued
	return []executor.Job{
		job("p2", "production", executor.StateFailure, t0.Add(2*time.Minute)),
		job("p1", "production", executor.StateSuccess, t0.Add(1*time.Minute)),
		job("s1", "staging", executor.StateRunning, t0.Add(90*time.Second)),
		p4,
		job("p3", "production", executor.StateRunning, t0.Add(3*time.Minute)),
		job("s3", "staging", executor.StateFailure, t0.Add(90*time.Second)),
		job("s2", "staging", executor.StateSuccess, t0.Add(5*time.Minute)),
	}
}

// recordJobs records readerJobs in s, in order, each step with AddStep (last
// step first), and returns s.
func recordJobs(t *testing.T, s executor.Store) Reader {
	t.Helper()
	for _, j := range readerJobs() {
		steps := j.Steps
		j.Steps = nil
		mustCreate(t, s, j)
		for _, st := range slices.Backward(steps) {
			if err := s.AddStep(t.Context(), st); err != nil {
				t.Fatalf("AddStep(%s, %d): %v", st.Job, st.Seq, err)
			}
		}
	}
	return s
}

// runReader runs the read subtests on r, which holds readerJobs.
func runReader(t *testing.T, r Reader) {
	t.Helper()
	all := map[string]executor.Job{}
	for _, j := range readerJobs() {
		all[j.ID] = j
	}
	t.Run("Job/returns the job with its steps", func(t *testing.T) {
		for id, want := range all {
			equalJob(t, "Job("+id+")", mustJob(t, r, id), want)
		}
	})
	t.Run("Job/unknown job", func(t *testing.T) {
		_, err := r.Job(t.Context(), "nope")
		wantNotFound(t, "Job(unknown)", err)
	})

	const (
		queued  = executor.StateQueued
		running = executor.StateRunning
		success = executor.StateSuccess
		failure = executor.StateFailure
	)
	tests := []struct {
		name   string
		target string
		limit  int
		states []executor.State
		want   []string
	}{
		{name: "all, newest first", want: []string{"s2", "p4", "p3", "p2", "s3", "s1", "p1"}},
		{name: "one target", target: "production", want: []string{"p4", "p3", "p2", "p1"}},
		{name: "ties in creation time: the later recorded first", target: "staging", want: []string{"s2", "s3", "s1"}},
		{name: "limit", target: "production", limit: 2, want: []string{"p4", "p3"}},
		{name: "limit of all targets", limit: 1, want: []string{"s2"}},
		{name: "negative limit is no limit", limit: -1, want: []string{"s2", "p4", "p3", "p2", "s3", "s1", "p1"}},
		{name: "limit above the count", target: "production", limit: 10, want: []string{"p4", "p3", "p2", "p1"}},
		{name: "one state", states: []executor.State{running}, want: []string{"p3", "s1"}},
		{name: "unfinished states", states: []executor.State{queued, running}, want: []string{"p4", "p3", "s1"}},
		{name: "target, states and limit", target: "production", limit: 1,
			states: []executor.State{success, failure}, want: []string{"p2"}},
		{name: "no job in that state", states: []executor.State{executor.StateSuperseded}, want: []string{}},
		{name: "unknown target", target: "dev", want: []string{}},
	}
	for _, tt := range tests {
		t.Run("Jobs/"+tt.name, func(t *testing.T) {
			jobs, err := r.Jobs(t.Context(), tt.target, tt.limit, tt.states...)
			if err != nil {
				t.Fatalf("Jobs(%q, %d, %v): %v", tt.target, tt.limit, tt.states, err)
			}
			if got := ids(jobs); !slices.Equal(got, tt.want) {
				t.Fatalf("Jobs(%q, %d, %v) = %v, want %v", tt.target, tt.limit, tt.states, got, tt.want)
			}
			for _, j := range jobs {
				// Every field but the steps.
				equalJob(t, "Jobs: job "+j.ID, j, withoutSteps(all[j.ID]))
			}
		})
	}
}
