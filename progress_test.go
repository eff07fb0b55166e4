package main

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// TestProgressState_update: the lines of the progress display as a job's
// step records arrive, one update after another.
func TestProgressState_update(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	started := func(seq int, name string, at time.Duration) executor.StepRun {
		return executor.StepRun{Seq: seq, Name: name, ExitCode: -1, Started: t0.Add(at)}
	}
	ended := func(s executor.StepRun, code int, d time.Duration) executor.StepRun {
		s.ExitCode, s.Duration = code, d
		return s
	}
	fetch := started(1, "fetch", 0)
	sync := executor.StepRun{Seq: 2, Name: "sync", Skipped: "no change to uv.lock"}
	restart := started(3, "restart app", 1500*time.Millisecond)
	rb := started(4, "rollback: checkout", 3*time.Second)
	updates := []struct {
		steps []executor.StepRun
		want  []string
	}{
		{nil, nil},
		{[]executor.StepRun{fetch}, []string{"[0s] → step 1/3 fetch"}},
		{[]executor.StepRun{fetch}, nil}, // nothing new: nothing said
		{[]executor.StepRun{ended(fetch, 0, 1234*time.Millisecond), sync, restart}, []string{
			"✓ fetch 1.23s",
			"- step 2/3 sync: skipped, no change to uv.lock",
			"[1.5s] → step 3/3 restart app",
		}},
		{[]executor.StepRun{ended(fetch, 0, time.Second), sync, ended(restart, 3, time.Second), rb}, []string{
			"✗ restart app (exit 3) 1s",
			"[3s] → step 4 rollback: checkout", // past the target's steps: no total
		}},
		{[]executor.StepRun{ended(fetch, 0, time.Second), sync, ended(restart, 3, time.Second), ended(rb, 0, 200*time.Millisecond)}, []string{
			"✓ rollback: checkout 200ms",
		}},
	}
	var p progressState
	for i, u := range updates {
		got := p.update(executor.Job{State: executor.StateRunning, Started: t0, Steps: u.steps}, 3)
		if !reflect.DeepEqual(got, u.want) {
			t.Errorf("update %d: %q, want %q", i, got, u.want)
		}
	}
}

// TestProgressView follows a job to its end, says the last step even when
// the caller stops it as the job ends, and puts a step's start before its
// output.
func TestProgressView(t *testing.T) {
	t0 := time.Now()
	step := executor.StepRun{Seq: 1, Name: "verify", ExitCode: -1, Started: t0}
	done := step
	done.ExitCode, done.Duration = 0, 40*time.Millisecond
	jobs := []executor.Job{
		{State: executor.StateRunning, Started: t0, Steps: []executor.StepRun{step}},
		{State: executor.StateSuccess, Started: t0, Steps: []executor.StepRun{done}},
	}
	reads := 0
	read := func(context.Context) (executor.Job, error) {
		j := jobs[min(reads, len(jobs)-1)]
		reads++
		return j, nil
	}
	const want = "[0s] → step 1/1 verify\n✓ verify 40ms\n"

	var out bytes.Buffer
	v := &progressView{w: &out}
	v.follow(read, 1)
	v.watch(t.Context(), time.Millisecond)
	if out.String() != want {
		t.Errorf("watch wrote %q, want %q", out.String(), want)
	}

	// Stopped by the caller when the job ended: one more read says the rest.
	reads, out = 0, bytes.Buffer{}
	v = &progressView{w: &out}
	v.follow(read, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	v.watch(ctx, time.Hour)
	if out.String() != want {
		t.Errorf("watch stopped at the end wrote %q, want %q", out.String(), want)
	}

	// Output of a step comes after the line that says it started.
	reads, out = 0, bytes.Buffer{}
	v = &progressView{w: &out}
	v.Write([]byte("before the job is known\n"))
	v.follow(read, 1)
	v.Write([]byte("[verify] ok\n"))
	v.refresh(t.Context())
	if want := "before the job is known\n[0s] → step 1/1 verify\n[verify] ok\n✓ verify 40ms\n"; out.String() != want {
		t.Errorf("wrote %q, want %q", out.String(), want)
	}
}
