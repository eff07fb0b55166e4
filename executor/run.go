package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// run deploys j to l's target and records and reports the outcome. ctx ends when
// the grace period of a shutdown is over.
func (e *Executor) run(ctx context.Context, l *lane, j *Job) {
	lg := e.jobLogger(*j)
	// Journal writes and reports must still happen after ctx is cancelled.
	bg := context.WithoutCancel(ctx)
	j.State = StateRunning
	j.Started = time.Now()
	j.Description = "deploying " + short(j.Trigger.SHA)
	if err := e.update(bg, j); err != nil {
		lg.Error("record job start", "err", err)
	}
	lg.Info("deploy started")

	d := &deploy{e: e, lg: lg, t: l.t, j: j}
	d.execute(ctx)

	j.Finished = time.Now()
	if err := e.update(bg, j); err != nil {
		lg.Error("record job end", "err", err)
	}
	l.mu.Lock()
	if d.now != "" {
		l.current = d.now
		l.lastJob = j.ID
	}
	l.mu.Unlock()
	lg.Info("deploy finished", "state", j.State, "description", j.Description,
		"duration", j.Finished.Sub(j.Started).Round(time.Millisecond))
}

// deploy is one run of a target's steps.
type deploy struct {
	e    *Executor
	lg   *slog.Logger
	t    Target
	j    *Job
	sess Session
	seq  int
	now  string // the SHA the target runs after the deploy, when known for sure

	changed      []string // files changed between previous and new SHA
	changedKnown bool
	changedTried bool
}

// stepError says why a step did not succeed.
type stepError struct {
	step      string
	exitCode  int
	err       error // nil for a non-zero exit
	transport bool  // the session broke: no further command can run
}

func (s *stepError) Error() string {
	switch {
	case s.transport:
		return fmt.Sprintf("step %s: connection lost: %v", s.step, s.err)
	case errors.Is(s.err, ErrTimeout):
		return fmt.Sprintf("step %s timed out", s.step)
	case s.err != nil:
		return fmt.Sprintf("step %s: %v", s.step, s.err)
	}
	return fmt.Sprintf("step %s exited %d", s.step, s.exitCode)
}

// public is the step failure as GitHub may see it: no output, no hostnames.
func (s *stepError) public() string {
	switch {
	case s.transport:
		return "connection lost during " + s.step
	case errors.Is(s.err, ErrTimeout):
		return s.step + " timed out"
	case errors.Is(s.err, context.Canceled):
		return "interrupted: deployhook shutting down during " + s.step
	case s.err != nil:
		return s.step + " did not finish"
	}
	return fmt.Sprintf("%s failed (exit %d)", s.step, s.exitCode)
}

func (d *deploy) execute(ctx context.Context) {
	j := d.j
	sess, err := d.e.tr.Open(ctx, d.t.Name, d.t.Lock, d.t.LockWait)
	if err != nil {
		d.record(StepRun{Name: "connect", ExitCode: -1, Error: err.Error()})
		j.State = StateError
		switch {
		case errors.Is(err, ErrLocked):
			j.Description = "another deploy holds the target's lock; nothing ran"
		case ctx.Err() != nil:
			j.Description = "interrupted: deployhook shutting down; nothing ran"
		default:
			j.Description = "could not reach the target; nothing ran (see the job page)"
		}
		d.lg.Error("open session", "err", err)
		return
	}
	d.sess = sess
	defer sess.Close()

	prev, err := d.previous(ctx)
	if err != nil {
		j.State = StateError
		j.Description = "could not read the target's current commit; nothing ran"
		d.lg.Error("read current SHA", "err", err)
		return
	}
	j.PreviousSHA = prev
	if err := d.e.store.UpdateJob(context.WithoutCancel(ctx), *j); err != nil {
		d.lg.Error("record previous SHA", "err", err)
	}

	failed, checkpoint := d.steps(ctx, j.Trigger.SHA, prev, "")
	if failed == nil {
		j.State = StateSuccess
		d.now = j.Trigger.SHA
		j.Description = "deployed " + short(j.Trigger.SHA) + d.notApplied(ctx)
		return
	}
	d.lg.Warn("deploy failed", "err", failed)
	cause := failed.public()
	switch {
	case failed.transport || errors.Is(failed.err, context.Canceled):
		j.State = StateError
		j.Description = cause
		if checkpoint {
			j.Description += "; target state unknown"
		}
		return
	case !checkpoint:
		j.State = StateFailure
		j.Description = cause + "; nothing was changed"
		return
	case !d.t.Rollback:
		j.State = StateFailure
		j.Description = cause + "; rollback is off, target state unknown"
		return
	case prev == "":
		j.State = StateFailure
		j.Description = cause + "; no previous commit to roll back to"
		return
	}
	rbFailed, _ := d.steps(ctx, prev, j.Trigger.SHA, "rollback: ")
	if rbFailed != nil {
		d.lg.Error("rollback failed", "err", rbFailed)
		j.State = StateError
		j.Description = fmt.Sprintf("%s; rollback to %s failed at %s: target state unknown",
			cause, short(prev), rbFailed.step)
		return
	}
	j.State = StateFailure
	d.now = prev
	j.Description = cause + "; rolled back to " + short(prev)
}

// previous returns the SHA the target runs before the deploy.
func (d *deploy) previous(ctx context.Context) (string, error) {
	if d.t.Current == nil {
		return d.e.Current(d.t.Name), nil
	}
	var out bytes.Buffer
	code, err := d.sess.Run(ctx, d.command(*d.t.Current, d.j.Trigger.SHA, ""), &out)
	if err != nil {
		return "", err
	}
	sha := strings.TrimSpace(out.String())
	if code != 0 || !isSHA(sha) {
		// A fresh target has no commit yet: that is no previous commit, not an error.
		d.lg.Warn("current SHA unknown", "exit", code, "output", tail(out.String(), 200))
		return "", nil
	}
	return sha, nil
}

// steps runs the target's steps for sha, with prev as the previous SHA. It returns
// the first failure and whether a checkpoint step had started before it.
func (d *deploy) steps(ctx context.Context, sha, prev, prefix string) (*stepError, bool) {
	checkpoint := false
	for _, st := range d.t.Steps {
		if prefix != "" && st.NoRollback {
			continue
		}
		name := prefix + st.Name
		if len(st.WhenChanged) > 0 {
			if changed, known := d.changedFiles(ctx, sha, prev); known && !matchAny(st.WhenChanged, changed) {
				d.record(StepRun{Name: name, Skipped: "no change to " + strings.Join(st.WhenChanged, ", ")})
				continue
			}
		}
		checkpoint = checkpoint || st.Checkpoint
		if err := d.step(ctx, name, d.command(st, sha, prev)); err != nil {
			return err, checkpoint
		}
	}
	return nil, checkpoint
}

// step runs one command and records it.
func (d *deploy) step(ctx context.Context, name string, cmd Command) *stepError {
	out := newTail(d.e.opts.OutputLimit)
	var w io.Writer = out
	if d.e.opts.Output != nil {
		w = io.MultiWriter(out, prefixWriter(d.e.opts.Output, name))
	}
	rec := StepRun{Name: name, ExitCode: -1, Started: time.Now()}
	seq := d.record(rec)
	d.lg.Info("step started", "step", name)
	code, err := d.sess.Run(ctx, cmd, w)
	rec.Seq = seq
	rec.Duration = time.Since(rec.Started)
	rec.ExitCode = code
	rec.Output = out.String()
	if err != nil {
		rec.ExitCode = -1
		rec.Error = err.Error()
	}
	d.update(rec)
	d.lg.Info("step finished", "step", name, "exit", rec.ExitCode, "err", err,
		"duration", rec.Duration.Round(time.Millisecond))
	switch {
	case err == nil && code == 0:
		return nil
	case err == nil:
		return &stepError{step: name, exitCode: code}
	case errors.Is(err, ErrTimeout), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &stepError{step: name, exitCode: -1, err: err}
	}
	return &stepError{step: name, exitCode: -1, err: err, transport: true}
}

// command resolves a step into what the transport runs.
func (d *deploy) command(st Step, sha, prev string) Command {
	env := make(map[string]string, len(d.t.Env)+len(st.Env)+8)
	for k, v := range d.t.Env {
		env[k] = v
	}
	for k, v := range st.Env {
		env[k] = v
	}
	env["DEPLOYHOOK_SHA"] = sha
	env["DEPLOYHOOK_PREVIOUS_SHA"] = prev
	env["DEPLOYHOOK_TARGET"] = d.t.Name
	env["DEPLOYHOOK_JOB"] = d.j.ID
	env["DEPLOYHOOK_BRANCH"] = d.t.Branch
	env["DEPLOYHOOK_REPO"] = d.t.Repo
	env["DEPLOYHOOK_KIND"] = string(d.j.Trigger.Kind)
	if sha != d.j.Trigger.SHA {
		env["DEPLOYHOOK_ROLLBACK"] = "true" // the automatic rollback to the previous SHA
	}
	dir := st.Dir
	if dir == "" {
		dir = d.t.Dir
	}
	return Command{Name: st.Name, Run: st.Run, User: st.User, Sudo: st.Sudo, Dir: dir, Env: env, Timeout: st.Timeout}
}

// changedFiles returns the files changed between prev and sha, and whether that is
// known. It asks the target once per deploy.
func (d *deploy) changedFiles(ctx context.Context, sha, prev string) ([]string, bool) {
	if d.changedTried {
		return d.changed, d.changedKnown
	}
	if d.t.Changed == nil || prev == "" || prev == sha {
		return nil, prev == sha && prev != ""
	}
	d.changedTried = true
	var out bytes.Buffer
	// The diff is symmetric: a rollback sees the same files.
	cmd := d.command(*d.t.Changed, d.j.Trigger.SHA, d.j.PreviousSHA)
	code, err := d.sess.Run(ctx, cmd, &out)
	if err != nil || code != 0 {
		d.lg.Warn("changed files unknown: every conditional step runs", "exit", code, "err", err)
		return nil, false
	}
	for _, f := range strings.Split(out.String(), "\n") {
		if f = strings.TrimSpace(f); f != "" {
			d.changed = append(d.changed, f)
		}
	}
	d.changedKnown = true
	return d.changed, true
}

// notApplied returns "; not applied: a, b" for the changed files the deploy does
// not apply, or "".
func (d *deploy) notApplied(ctx context.Context) string {
	if len(d.t.NotApplied) == 0 {
		return ""
	}
	changed, known := d.changedFiles(ctx, d.j.Trigger.SHA, d.j.PreviousSHA)
	if !known {
		return ""
	}
	var hit []string
	for _, g := range d.t.NotApplied {
		if matchAny([]string{g}, changed) {
			hit = append(hit, strings.TrimSuffix(strings.TrimSuffix(g, "**"), "*"))
		}
	}
	if len(hit) == 0 {
		return ""
	}
	sort.Strings(hit)
	d.lg.Warn("the deploy does not apply these changes", "not_applied", hit)
	return "; not applied: " + strings.Join(hit, ", ")
}

// record adds a step record and returns its sequence number.
func (d *deploy) record(s StepRun) int {
	d.seq++
	s.Job, s.Seq = d.j.ID, d.seq
	d.update(s)
	return s.Seq
}

func (d *deploy) update(s StepRun) {
	s.Job = d.j.ID
	if err := d.e.store.AddStep(context.Background(), s); err != nil {
		d.lg.Error("record step", "step", s.Name, "err", err)
	}
}

// matchAny reports whether any file matches any glob. A glob matches a path
// exactly (path.Match), or, ending in "/**" or "/", everything below a directory;
// a glob without a slash also matches the base name anywhere.
func matchAny(globs, files []string) bool {
	for _, g := range globs {
		for _, f := range files {
			if matchGlob(g, f) {
				return true
			}
		}
	}
	return false
}

func matchGlob(g, f string) bool {
	if dir, ok := strings.CutSuffix(g, "**"); ok {
		return strings.HasPrefix(f, dir)
	}
	if strings.HasSuffix(g, "/") {
		return strings.HasPrefix(f, g)
	}
	if ok, _ := path.Match(g, f); ok {
		return true
	}
	if !strings.Contains(g, "/") {
		ok, _ := path.Match(g, path.Base(f))
		return ok
	}
	return false
}

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	n       int
	buf     []byte
	dropped bool
}

func newTail(n int) *tailBuffer { return &tailBuffer{n: n} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.n; over > 0 {
		// Trim in chunks so a long stream is not copied on every write.
		if over > t.n/4 || len(t.buf) > 2*t.n {
			t.buf = append(t.buf[:0], t.buf[over:]...)
			t.dropped = true
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.n {
		b, t.dropped = b[len(b)-t.n:], true
	}
	if t.dropped {
		return "…\n" + string(b)
	}
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// prefixWriter writes each line to w behind "[name] ".
func prefixWriter(w io.Writer, name string) io.Writer {
	return &linePrefixer{w: w, prefix: []byte("[" + name + "] "), bol: true}
}

type linePrefixer struct {
	w      io.Writer
	prefix []byte
	bol    bool
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if p.bol {
			if _, err := p.w.Write(p.prefix); err != nil {
				return 0, err
			}
			p.bol = false
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			_, err := p.w.Write(b)
			return n, err
		}
		if _, err := p.w.Write(b[:i+1]); err != nil {
			return 0, err
		}
		b = b[i+1:]
		p.bol = true
	}
	return n, nil
}
