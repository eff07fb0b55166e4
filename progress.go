package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/deployhook/deployhook/executor"
)

// progressView is the progress display of one CLI deploy on a terminal. It is
// also the executor's output writer: before a step's output is written, it
// reads the job from the journal and says what changed first (a step starts
// before it prints), so the lines come out in the order things happened.
type progressView struct {
	mu    sync.Mutex
	w     io.Writer
	total int // steps the target runs
	read  func(context.Context) (executor.Job, error)
	p     progressState
}

// follow starts showing job id's steps, read through read.
func (v *progressView) follow(read func(context.Context) (executor.Job, error), total int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.read, v.total = read, total
}

// Write writes step output, after the progress lines due before it.
func (v *progressView) Write(b []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.refreshLocked(context.Background())
	return v.w.Write(b)
}

// refresh writes the progress lines due and reports whether the job is final.
func (v *progressView) refresh(ctx context.Context) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.refreshLocked(ctx)
}

func (v *progressView) refreshLocked(ctx context.Context) bool {
	if v.read == nil {
		return false
	}
	j, err := v.read(ctx)
	if err != nil {
		return false
	}
	for _, line := range v.p.update(j, v.total) {
		fmt.Fprintln(v.w, line)
	}
	return j.State.Final()
}

// isTerminal reports whether w is a terminal: deploy and rollback then show
// their progress; elsewhere (a pipe, a CI log) the output stays plain lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// watch refreshes v every every until the job is final or ctx ends (then it
// refreshes once more, so that the steps that ended last are said). Step
// output refreshes it too; watch covers the steps that print nothing.
func (v *progressView) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for !v.refresh(ctx) {
		select {
		case <-ctx.Done():
			// The caller saw the job end: say what is left to say of it.
			v.refresh(context.WithoutCancel(ctx))
			return
		case <-t.C:
		}
	}
}

// progressState remembers what progress has said of each step.
type progressState struct {
	started map[int]bool // by StepRun.Seq
	ended   map[int]bool
	n       int // steps started or skipped so far
}

// update returns the lines that j's steps call for since the last update. It is
// pure but for p, so the lines are table-tested.
func (p *progressState) update(j executor.Job, total int) []string {
	if p.started == nil {
		p.started, p.ended = map[int]bool{}, map[int]bool{}
	}
	var lines []string
	at := func(ts time.Time) string {
		if j.Started.IsZero() || ts.IsZero() {
			return ""
		}
		return fmt.Sprintf("[%s] ", ts.Sub(j.Started).Round(100*time.Millisecond))
	}
	for _, s := range j.Steps {
		if !p.started[s.Seq] {
			p.started[s.Seq] = true
			p.n++
			of := fmt.Sprintf("%d/%d", p.n, total)
			if p.n > total {
				of = fmt.Sprintf("%d", p.n)
			}
			if s.Skipped != "" {
				p.ended[s.Seq] = true
				lines = append(lines, fmt.Sprintf("- step %s %s: skipped, %s", of, s.Name, s.Skipped))
				continue
			}
			lines = append(lines, fmt.Sprintf("%s→ step %s %s", at(s.Started), of, s.Name))
		}
		if p.ended[s.Seq] || s.Duration == 0 {
			continue
		}
		p.ended[s.Seq] = true
		mark, what := "✓", ""
		if s.ExitCode != 0 {
			mark, what = "✗", fmt.Sprintf(" (exit %d)", s.ExitCode)
		}
		lines = append(lines, fmt.Sprintf("%s %s%s %s", mark, s.Name, what, s.Duration.Round(10*time.Millisecond)))
	}
	return lines
}
