package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
)

// RunText checks, against the stores that open returns, that a journal keeps
// the text it is given as deployhook's journals do (package jobrow): NUL
// bytes and invalid UTF-8 replaced by U+FFFD, a step's output cut to its
// last jobrow.MaxOutput bytes, other text to its first jobrow.MaxText bytes
// ending with "…". Each subtest writes through every method that stores
// text and reads the same text back. This is no part of executor.Store's
// contract (fakes need not clean), but what the SQLite and the PostgreSQL
// journal must agree on: PostgreSQL refuses NUL bytes and invalid UTF-8,
// SQLite keeps them, and a journal moved from one to the other must show
// the same pages.
func RunText(t *testing.T, open func(t *testing.T) executor.Store) {
	t.Helper()
	cases := []storeCase{
		{"CreateJob and AddStep/NUL bytes and invalid UTF-8", testTextCreate},
		{"UpdateJob/a description with NUL bytes, invalid UTF-8, too long", testTextUpdate},
		{"AddStep/output longer than MaxOutput once cleaned", testTextOutput},
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

// Dirty text, and what a journal keeps of it.
const (
	dirtyOutput = "Collecting dagster\x00==1.9.3\n\xff\xfebad bytes\ncaf\xc3 ✓\n"
	cleanOutput = "Collecting dagster\uFFFD==1.9.3\n\uFFFD\uFFFDbad bytes\ncaf\uFFFD ✓\n"
	dirtyText   = "exit\x00status \xe2\x82 1 ✓"
	cleanText   = "exit\uFFFDstatus \uFFFD\uFFFD 1 ✓"
)

// longDescription is a description of more than jobrow.MaxText bytes, with
// a NUL byte and an invalid one near its start, and its cleaned form: a
// prefix on a character boundary (é is two bytes) and "…".
func longDescription() (dirty, clean string) {
	const ell = "…"
	dirty = "failed\x00: \xff " + strings.Repeat("é", jobrow.MaxText)
	prefix := "failed\uFFFD: \uFFFD "
	n := (jobrow.MaxText - len(ell) - len(prefix)) / 2
	return dirty, prefix + strings.Repeat("é", n) + ell
}

// A job whose trigger and description hold NUL bytes and invalid UTF-8,
// with a step whose name, skip reason, error and output do, is recorded
// (PostgreSQL refuses such text raw) and read back cleaned; so is a step
// added later.
func testTextCreate(t *testing.T, s executor.Store) {
	ctx := t.Context()
	j := job("j1", "production", executor.StateRunning, t0)
	j.Trigger.Actor, j.Trigger.Reason = "octo\x00cat", "manual: "+dirtyText
	j.Description = dirtyText
	j.Steps = []executor.StepRun{{Job: "j1", Seq: 1, Name: "fetch\x00", Skipped: "lock\xff", ExitCode: 1,
		Error: dirtyText, Output: dirtyOutput, Started: t0, Duration: time.Second}}
	mustCreate(t, s, j)
	st := executor.StepRun{Job: "j1", Seq: 2, Name: "sync", ExitCode: 2, Error: dirtyText, Output: dirtyOutput}
	if err := s.AddStep(ctx, st); err != nil {
		t.Fatalf("AddStep: %v", err)
	}
	want := j
	want.Trigger.Actor, want.Trigger.Reason = "octo\uFFFDcat", "manual: "+cleanText
	want.Description = cleanText
	want.Steps = []executor.StepRun{
		{Job: "j1", Seq: 1, Name: "fetch\uFFFD", Skipped: "lock\uFFFD", ExitCode: 1,
			Error: cleanText, Output: cleanOutput, Started: t0, Duration: time.Second},
		{Job: "j1", Seq: 2, Name: "sync", ExitCode: 2, Error: cleanText, Output: cleanOutput},
	}
	equalJob(t, "Job(j1)", mustJob(t, s, "j1"), want)
	jobs, err := s.Jobs(ctx, "production", 0)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Jobs = %v, %v; want j1", ids(jobs), err)
	}
	equalJob(t, "Jobs()[0]", jobs[0], withoutSteps(want))
}

// UpdateJob keeps a description cleaned and cut: both stores read back the
// same prefix ending with "…".
func testTextUpdate(t *testing.T, s executor.Store) {
	j := job("j1", "production", executor.StateRunning, t0)
	mustCreate(t, s, j)
	dirty, clean := longDescription()
	j.State, j.Description, j.Finished = executor.StateFailure, dirty, t0.Add(time.Minute)
	if err := s.UpdateJob(t.Context(), j); err != nil {
		t.Fatalf("UpdateJob: %v", err)
	}
	got := mustJob(t, s, "j1")
	if got.Description != clean {
		t.Errorf("description = %q… (%d bytes), want %q… (%d bytes)", got.Description[:min(40, len(got.Description))],
			len(got.Description), clean[:40], len(clean))
	}
	want := j
	want.Description = clean
	equalJob(t, "Job(j1)", got, want)
}

// Output longer than jobrow.MaxOutput once its NUL bytes and invalid bytes
// became U+FFFD (three bytes each) keeps its last jobrow.MaxOutput bytes at
// most, on a character boundary.
func testTextOutput(t *testing.T, s executor.Store) {
	mustCreate(t, s, job("j1", "production", executor.StateRunning, t0))
	out := "head\n" + strings.Repeat("\x00\xff", jobrow.MaxOutput/2)
	if err := s.AddStep(t.Context(), executor.StepRun{Job: "j1", Seq: 1, Name: "sync", ExitCode: 1, Output: out}); err != nil {
		t.Fatalf("AddStep: %v", err)
	}
	steps := mustJob(t, s, "j1").Steps
	if len(steps) != 1 {
		t.Fatalf("steps = %+v, want 1", steps)
	}
	if want := strings.Repeat("\uFFFD", jobrow.MaxOutput/3); steps[0].Output != want {
		t.Errorf("output is %d bytes (%q…), want %d U+FFFD (%d bytes)", len(steps[0].Output),
			steps[0].Output[:min(12, len(steps[0].Output))], jobrow.MaxOutput/3, len(want))
	}
}
