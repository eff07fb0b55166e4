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

	"github.com/deployhook/deployhook/internal/gitsha"
)

// run deploys j to l's target, decides the outcome, applies it to the lane under
// its lock and records and reports it. ctx ends when the grace period of a
// shutdown is over. It returns once the journal took the outcome (or ctx ended):
// the lane starts no new job before. It returns the deploy when the job
// succeeded and the target watches it (Watch), else nil.
func (e *Executor) run(ctx context.Context, l *lane, j Job) *deploy {
	lg := e.jobLogger(j)
	// Journal writes and reports must still happen after ctx is cancelled.
	bg := context.WithoutCancel(ctx)
	j.State = StateRunning
	j.Owner = e.jobOwner(j.Target)
	j.Started = time.Now()
	j.Description = runningDescription(j.Trigger)
	l.publish(j)
	if err := e.update(bg, j); errors.Is(err, ErrFenced) {
		// The lane moved before the job started: its next holder runs it.
		lg.Warn("deploy not started: this replica lost the lane")
		l.mu.Lock()
		l.running = nil
		l.mu.Unlock()
		e.live.drop(j.ID)
		return nil
	} else if err != nil {
		lg.Error("record job start", "err", err)
	}
	lg.Info("deploy started")

	d := &deploy{e: e, lg: lg, t: l.t, j: &j, unsaved: map[int]StepRun{}}
	res := d.execute(ctx)
	state, desc, now := outcome(res)
	if d.stashed {
		// Whatever happened next, the changes are in the stash: say where.
		desc += "; local changes stashed (git stash list)"
	}

	l.mu.Lock()
	j.State, j.Description, j.Finished = state, desc, time.Now()
	if now != "" {
		l.current, l.lastJob = now, j.ID
	}
	l.running = nil
	l.mu.Unlock()

	d.announceWatch(l)
	e.end(bg, j, d.unsavedSteps()...)
	lg.Info("deploy finished", "state", j.State, "description", j.Description,
		"duration", j.Finished.Sub(j.Started).Round(time.Millisecond))
	e.jr.waitWritten(ctx, j.ID)
	if j.State == StateSuccess && l.t.Watch != nil && !e.opts.NoRecover {
		return d
	}
	return nil
}

// deploy is one run of a target's steps.
type deploy struct {
	e    *Executor
	lg   *slog.Logger
	t    Target
	j    *Job // the worker's own copy
	sess Session
	seq  int

	deployedBefore bool            // a person asked for a SHA this target deployed successfully before
	recover        string          // the interrupted job whose leftovers the preflight may clear
	unsaved        map[int]StepRun // step records the journal refused, by seq

	stashed bool       // a step kept local changes in a git stash (StashedMarker)
	notes   applyNotes // what the apply steps said about the changed files

	// watchRec is the watch step's record, recorded before the job's end
	// is published when the job will be watched (announceWatch); nil else.
	watchRec *StepRun

	changed      []string // files changed between previous and new SHA
	changedKnown bool
	changedTried bool

	// A fleet's VM (fleet.go): its steps' records are the job's, numbered
	// and kept by parent, and named behind label ("vm-2: ").
	parent *deploy
	vm     string     // the VM's name (Member.Name), "" for one VM
	label  string     // vm + ": ", or ""
	mu     sync.Mutex // guards seq and unsaved, which a fleet's VMs share
}

// stepError says why a step did not succeed.
type stepError struct {
	step      string
	exitCode  int
	err       error  // nil for a non-zero exit
	transport bool   // the session broke: no further command can run
	unstarted bool   // the context had ended before the step could start
	reason    string // for a non-zero exit: public words the step printed (probeFailure)
}

func (s *stepError) Error() string {
	switch {
	case s.transport:
		// The transport's error names the target, the step and what broke
		// (executor/remote: `target vm: step "restart": wait: connection lost
		// (…): EOF`); saying it again doubled the text.
		return s.err.Error()
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
	case s.reason != "":
		return s.reason
	}
	return fmt.Sprintf("%s failed (exit %d)", s.step, s.exitCode)
}

// runResult is what happened during one run, as the worker saw it; outcome
// turns it into the job's final state.
type runResult struct {
	sha, prev  string // the SHA deployed, and the one the target ran before ("" unknown)
	open       error  // the session could not be opened
	cancelled  bool   // the run's context had ended when open failed (shutdown)
	current    error  // the target's current SHA could not be read
	verdict    verdict
	failed     *stepError // the first step that failed; nil: all passed
	checkpoint bool       // a checkpoint step had started before failed
	rollbackOn bool       // the target rolls back after a failure past the checkpoint
	rolledBack bool       // the rollback ran
	rollback   *stepError // the rollback step that failed; nil: the rollback worked
	notApplied string     // "; not applied: …" for a success
	fleet      *fleetRun  // a fleet target's run (fleet.go); nil for one VM
	kind       Kind       // the trigger's kind
	by         string     // the person who asked for the job (requester); "" for automatic ones
	cancelBy   string     // the person whose Cancel ended the steps; "" when none did
}

// needsRollback reports whether r's failure calls for the automatic rollback:
// a step failed (not the connection, not a shutdown; a person's cancel is a
// failure) after the checkpoint, the target rolls back, and the previous SHA
// is known.
func needsRollback(r runResult) bool {
	f := r.failed
	return f != nil && !f.transport && (!errors.Is(f.err, context.Canceled) || r.cancelBy != "") &&
		r.checkpoint && r.rollbackOn && r.prev != ""
}

// outcome decides a run's final state and public description, and the SHA the
// target runs for sure afterwards ("" when unchanged or unknown). The
// description of a job a person asked for names them (credit).
func outcome(r runResult) (st State, description, now string) {
	st, description, now = decide(r)
	if st != StateSuccess {
		description = credit(r.kind, r.by, r.cancelBy, description)
	}
	return st, description, now
}

// decide is outcome before the credit.
func decide(r runResult) (st State, description, now string) {
	if r.fleet != nil {
		return decideFleet(r)
	}
	if r.cancelBy != "" {
		return cancelled(r)
	}
	if r.open != nil {
		switch {
		case errors.Is(r.open, ErrLocked):
			return StateError, "another deploy holds the target's lock; nothing ran", ""
		case r.cancelled:
			return StateError, "interrupted: deployhook shutting down; nothing ran", ""
		}
		return StateError, "could not reach the target; nothing ran (see the job page)", ""
	}
	if r.current != nil {
		return StateError, "could not read the target's current commit; nothing ran", ""
	}
	if r.verdict.state != "" {
		return r.verdict.state, r.verdict.description, ""
	}
	f := r.failed
	if f == nil {
		return StateSuccess, successDescription(r.kind, r.sha, r.by) + r.notApplied, r.sha
	}
	cause := f.public()
	switch {
	case f.transport || errors.Is(f.err, context.Canceled):
		if r.checkpoint {
			cause += "; target state unknown"
		}
		return StateError, cause, ""
	case !r.checkpoint:
		return StateFailure, cause + "; nothing was changed", ""
	case !r.rollbackOn:
		return StateFailure, cause + "; rollback is off, target state unknown", ""
	case r.prev == "":
		return StateFailure, cause + "; no previous commit to roll back to", ""
	}
	description, ok := rollbackEnd(r, cause)
	if !ok {
		return StateError, description, ""
	}
	return StateFailure, description, r.prev
}

// rollbackEnd words the end of a run whose rollback was due (a checkpoint
// had passed, rollback is on, the previous SHA is known): cause, then what
// the rollback did. ok reports whether it put the target back on r.prev;
// when it did not, the target's state is unknown.
func rollbackEnd(r runResult, cause string) (description string, ok bool) {
	switch {
	case !r.rolledBack:
		return cause + "; rollback did not run: target state unknown", false
	case r.rollback != nil:
		return fmt.Sprintf("%s; rollback to %s failed at %s: target state unknown",
			cause, short(r.prev), r.rollback.step), false
	}
	return cause + "; rolled back to " + short(r.prev), true
}

// answer is what a question about the commit graph got.
type answer uint8

const (
	answerUnasked answer = iota // not asked, or no one to ask
	answerYes
	answerNo
	answerUnknown // asked, but the answer could not be had
)

// facts is what the executor learnt before any step of a job, to decide
// whether it may run.
type facts struct {
	automatic      bool   // no person asked for it
	sha, prev      string // the SHA to deploy; the one the target runs ("" unknown)
	branch, target string
	contained      answer // sha is prev or one of its ancestors
	onBranch       answer // sha is on the branch (asked through GitHub, for custom steps)
	deployedBefore bool   // the target deployed sha successfully before
	anyCommit      bool   // a person allowed any commit
}

// verdict is admit's decision: the final state of a job that must not run, or
// the zero verdict to go ahead.
type verdict struct {
	state       State
	description string
}

// admit decides whether a job may run its steps. Production moves forward only:
// an automatic trigger never deploys a commit the target's deployed one
// contains (it ends Skipped: its code is live), nor one off the branch; a
// person may go back, but only to a commit on the branch or one deployed
// before, unless they allowed any commit. When unsure, nothing runs.
func admit(f facts) verdict {
	sha7, prev7 := short(f.sha), short(f.prev)
	if f.automatic && f.prev != "" {
		switch f.contained {
		case answerYes:
			return verdict{StateSkipped, "already live: contained in deployed " + prev7}
		case answerUnknown:
			return verdict{StateError, "could not tell whether " + sha7 + " is older than the deployed " + prev7 + "; nothing ran"}
		}
	}
	if !f.automatic && (f.anyCommit || f.deployedBefore) {
		return verdict{}
	}
	switch f.onBranch {
	case answerNo:
		if f.automatic {
			return verdict{StateFailure, sha7 + " is not on branch " + f.branch + "; nothing ran"}
		}
		return verdict{StateFailure, sha7 + " is neither on branch " + f.branch + " nor deployed to " + f.target + " before; nothing ran"}
	case answerUnknown:
		return verdict{StateError, "could not tell whether " + sha7 + " is on branch " + f.branch + "; nothing ran"}
	}
	return verdict{}
}

// commitsTimeout bounds one question to GitHub about the commit graph.
const commitsTimeout = 30 * time.Second

// facts learns what admit needs, asking only what it needs: the target's
// Contains probe or GitHub for the ancestry of an automatic trigger's SHA, the
// journal for a person's, and GitHub for the branch when the target's steps
// do not check it themselves (no Contains probe).
func (d *deploy) facts(ctx context.Context, prev string) facts {
	j, t := d.j, d.t
	f := facts{
		automatic: j.Trigger.Kind.Automatic(), sha: j.Trigger.SHA, prev: prev,
		branch: t.Branch, target: t.Name, anyCommit: j.Trigger.AnyCommit,
	}
	customSteps := t.Contains == nil && d.e.opts.Commits != nil
	if f.automatic {
		if prev != "" {
			f.contained = d.contained(ctx, f.sha, prev)
		}
		if f.contained != answerYes && customSteps {
			f.onBranch = d.onBranch(ctx)
		}
		return f
	}
	old, err := d.e.store.Deployed(ctx, t.Name, f.sha)
	switch {
	case err == nil:
		f.deployedBefore = true
		d.lg.Info("deployed successfully before", "by_job", old.ID)
	case !errors.Is(err, ErrNotFound):
		d.lg.Warn("could not read the journal: treating the SHA as never deployed", "err", err)
	}
	if !f.deployedBefore && !f.anyCommit && customSteps {
		f.onBranch = d.onBranch(ctx)
	}
	return f
}

// contained asks whether sha is prev or one of its ancestors: the target's
// Contains probe, else GitHub.
func (d *deploy) contained(ctx context.Context, sha, prev string) answer {
	if sha == prev {
		return answerYes
	}
	if p := d.t.Contains; p != nil {
		var out bytes.Buffer
		code, err := d.sess.Run(ctx, d.command(*p, sha, prev), &out)
		switch {
		case err == nil && code == 0:
			return answerYes
		case err == nil && code == 1:
			return answerNo
		}
		d.lg.Error("ancestry unknown", "probe", p.Name, "exit", code, "err", err, "output", tail(out.String(), 200))
		return answerUnknown
	}
	if d.e.opts.Commits == nil {
		d.lg.Warn("ancestry not checked: no contains probe and no GitHub to ask")
		return answerUnasked
	}
	cctx, cancel := context.WithTimeout(ctx, commitsTimeout)
	defer cancel()
	in, err := d.e.opts.Commits.Contains(cctx, d.repo(), prev, sha)
	switch {
	case err != nil:
		d.lg.Error("ancestry unknown", "err", err)
		return answerUnknown
	case in:
		return answerYes
	}
	return answerNo
}

// onBranch asks GitHub whether the job's SHA is on the target's branch.
func (d *deploy) onBranch(ctx context.Context) answer {
	cctx, cancel := context.WithTimeout(ctx, commitsTimeout)
	defer cancel()
	in, err := d.e.opts.Commits.Contains(cctx, d.repo(), d.t.Branch, d.j.Trigger.SHA)
	switch {
	case errors.Is(err, ErrNotFound):
		return answerNo // GitHub knows no such commit
	case err != nil:
		d.lg.Error("branch membership unknown", "err", err)
		return answerUnknown
	case in:
		return answerYes
	}
	return answerNo
}

// repo is the repository as GitHub spells it.
func (d *deploy) repo() string {
	if d.j.Trigger.Repo != "" {
		return d.j.Trigger.Repo
	}
	return d.t.Repo
}

// execute opens the session, learns what admit needs, runs the steps and, when
// needed, the rollback. It writes nothing but step records and the previous SHA.
func (d *deploy) execute(ctx context.Context) (r runResult) {
	if d.t.Rollout != nil {
		return d.fleet(ctx)
	}
	j := d.j
	r.sha, r.rollbackOn = j.Trigger.SHA, d.t.Rollback
	r.kind, r.by = j.Trigger.Kind, requester(j.Trigger)
	// Everything up to the last step runs under sctx, which a person's
	// Cancel also ends; the rollback runs under ctx, which it does not.
	sctx, disarm := d.e.arm(ctx, d.t.Name, j.ID)
	defer disarm()
	sess, err := d.e.tr.Open(sctx, d.t.Name, d.t.Lock, d.t.LockWait)
	if err != nil {
		d.record(StepRun{Name: "connect", ExitCode: -1, Error: d.e.live.red.line(err.Error())})
		r.open, r.cancelled, r.cancelBy = err, sctx.Err() != nil, canceller(sctx)
		d.lg.Error("open session", "err", err)
		return r
	}
	d.sess = sess
	defer sess.Close()

	if !d.admitted(ctx, sctx, &r) {
		return r
	}
	prev := r.prev

	r.failed, r.checkpoint = d.steps(sctx, j.Trigger.SHA, prev, "")
	if r.failed != nil && errors.Is(r.failed.err, context.Canceled) {
		r.cancelBy = canceller(sctx)
	}
	disarm() // from here on, a Cancel changes nothing
	if r.failed == nil {
		r.notApplied = d.notApplied(ctx)
		return r
	}
	d.lg.Warn("deploy failed", "err", r.failed, "cancelled_by", r.cancelBy)
	if needsRollback(r) {
		r.rolledBack = true
		r.rollback, _ = d.steps(ctx, prev, j.Trigger.SHA, "rollback: ")
		d.e.opts.Observer.RolledBack(d.t.Name, r.rollback == nil)
		if r.rollback != nil {
			d.lg.Error("rollback failed", "err", r.rollback)
		}
	}
	return r
}

// admitted reads, over the open d.sess, the SHA the target runs, records it
// as the job's previous SHA, and decides whether any step may run. It returns
// false when none may, with r saying why (current, verdict or cancelBy); on
// true, r.prev, d.deployedBefore and d.recover are set. The target is asked
// under sctx; the job record is written even when sctx has ended.
func (d *deploy) admitted(ctx, sctx context.Context, r *runResult) bool {
	prev, err := d.previous(sctx)
	if err != nil {
		r.current, r.cancelBy = err, canceller(sctx)
		d.lg.Error("read current SHA", "err", err)
		return false
	}
	r.prev = prev
	d.j.PreviousSHA = prev
	if err := d.e.jr.wrote(d.e.updateJob(context.WithoutCancel(ctx), *d.j)); err != nil {
		d.lg.Error("record previous SHA", "err", err)
	}

	f := d.facts(sctx, prev)
	if r.verdict = admit(f); r.verdict.state != "" {
		r.cancelBy = canceller(sctx)
		d.lg.Warn("nothing ran", "state", r.verdict.state, "why", r.verdict.description)
		return false
	}
	d.deployedBefore = f.deployedBefore
	d.recover = d.interrupted(sctx)
	if r.cancelBy = canceller(sctx); r.cancelBy != "" {
		d.lg.Warn("cancelled before any step ran", "by", r.cancelBy)
		return false
	}
	return true
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
	if code != 0 || !gitsha.Valid(sha) {
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
		name := d.label + prefix + st.Name
		if err := ctx.Err(); err != nil {
			return &stepError{step: name, exitCode: -1, err: err, unstarted: true}, checkpoint
		}
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

// step runs one command and records it. Its output goes, line by line and
// redacted, to the job's live log as it arrives, and to the journal at most
// every journalEvery while it runs and once at its end; its end is published
// once the journal has the final record.
func (d *deploy) step(ctx context.Context, name string, cmd Command) *stepError {
	rec := StepRun{Job: d.j.ID, Name: name, ExitCode: -1, Started: time.Now()}
	rec.Seq = d.record(rec)
	f := d.e.live.open(d.j.ID)
	out := d.e.live.output(f, f.startStep(rec.Seq, name), name)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		d.journal(rec, out, stop)
	}()
	d.lg.Info("step started", "step", name)
	code, err := d.sess.Run(ctx, cmd, out)
	out.close()
	close(stop)
	<-stopped // no write of the output so far may land after the final one
	rec.Duration = time.Since(rec.Started)
	rec.ExitCode = code
	rec.Output = f.output(out.s)
	if err != nil {
		rec.ExitCode = -1
		rec.Error = d.e.live.red.line(err.Error())
	}
	d.update(rec)
	d.e.opts.Observer.StepEnded(d.t.Name, strings.TrimPrefix(name, d.label), rec.Duration, err == nil && code == 0)
	f.doneStep(out.s, rec.ExitCode, rec.Duration)
	if stash, ok := stashedAs(rec.Output); ok && err == nil && code == 0 {
		d.stashed = true
		d.lg.Warn("local changes kept in a git stash", "step", name, "stash", stash)
	}
	d.notes.read(rec.Output)
	d.lg.Info("step finished", "step", name, "exit", rec.ExitCode, "err", err,
		"duration", rec.Duration.Round(time.Millisecond))
	switch {
	case err == nil && code == 0:
		return nil
	case err == nil:
		return &stepError{step: name, exitCode: code, reason: probeFailure(rec.Output)}
	case errors.Is(err, ErrTimeout), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &stepError{step: name, exitCode: -1, err: err}
	}
	return &stepError{step: name, exitCode: -1, err: err, transport: true}
}

// stashedAs returns the stash name a step's output announces with
// StashedMarker at the start of a line.
func stashedAs(output string) (string, bool) {
	for line := range strings.Lines(output) {
		if name, ok := strings.CutPrefix(line, StashedMarker); ok {
			return strings.TrimSpace(name), true
		}
	}
	return "", false
}

// command resolves a step into what the transport runs.
// interrupted returns the id of the target's last job before this one if it
// ran and ended with the target's state unknown (cut off, or its deployhook
// killed, after its checkpoint): what it left on the target (a half-done
// checkout, a stale git index lock) is deployhook's own, and the default
// sequence's preflight may clear it, keeping any change in a stash. "" when the
// last job ended cleanly, or the journal cannot tell.
func (d *deploy) interrupted(ctx context.Context) string {
	jobs, err := d.e.store.Jobs(ctx, d.t.Name, 5)
	if err != nil {
		return ""
	}
	for _, j := range jobs { // newest first
		if j.ID == d.j.ID || j.Started.IsZero() || !j.State.Final() {
			continue
		}
		if j.State == StateError && strings.HasSuffix(j.Description, "target state unknown") {
			return j.ID
		}
		return ""
	}
	return ""
}

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
	// Only the executor says these: never the target's or the step's env.
	delete(env, "DEPLOYHOOK_ROLLBACK")
	delete(env, "DEPLOYHOOK_DEPLOYED_BEFORE")
	delete(env, "DEPLOYHOOK_ANY_COMMIT")
	delete(env, "DEPLOYHOOK_RECOVER")
	delete(env, "DEPLOYHOOK_VM")
	if d.vm != "" {
		env["DEPLOYHOOK_VM"] = d.vm // the fleet's VM the step runs on
	}
	if d.recover != "" {
		env["DEPLOYHOOK_RECOVER"] = d.recover // the job whose interrupted checkout may have left changes
	}
	if sha != d.j.Trigger.SHA {
		env["DEPLOYHOOK_ROLLBACK"] = "true" // the automatic rollback to the previous SHA
	}
	if d.deployedBefore {
		env["DEPLOYHOOK_DEPLOYED_BEFORE"] = "true" // a person's redeploy of a SHA deployed before
	}
	if d.j.Trigger.AnyCommit {
		env["DEPLOYHOOK_ANY_COMMIT"] = "true" // a person allowed a SHA off the branch
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

// notApplied returns the end of a successful deploy's description: what the
// apply steps installed and left installed, and the changed files the deploy
// does not apply (changeSummary); "" when there is nothing to say.
func (d *deploy) notApplied(ctx context.Context) string {
	var changed []string
	known := false
	if len(d.t.NotApplied) > 0 {
		changed, known = d.changedFiles(ctx, d.j.Trigger.SHA, d.j.PreviousSHA)
	}
	s := changeSummary(d.notes, d.t.NotApplied, changed, known)
	if s != "" {
		d.lg.Info("what the deploy applied and did not apply", "summary", strings.TrimPrefix(s, "; "))
	}
	return s
}

// record adds a step record and returns its sequence number.
func (d *deploy) record(s StepRun) int {
	if d.parent != nil {
		return d.parent.record(s)
	}
	d.mu.Lock()
	d.seq++
	s.Job, s.Seq = d.j.ID, d.seq
	d.mu.Unlock()
	d.update(s)
	return s.Seq
}

// update records s; a record the journal refuses is kept to be written with
// the job's outcome.
func (d *deploy) update(s StepRun) {
	if d.parent != nil {
		d.parent.update(s)
		return
	}
	s.Job = d.j.ID
	err := d.e.jr.wrote(d.e.addStep(context.Background(), d.t.Name, s))
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.lg.Error("record step", "step", s.Name, "err", err)
		d.unsaved[s.Seq] = s
		return
	}
	delete(d.unsaved, s.Seq)
}

// unsavedSteps returns the step records the journal refused, in order.
func (d *deploy) unsavedSteps() []StepRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]StepRun, 0, len(d.unsaved))
	for _, s := range d.unsaved {
		out = append(out, s)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	return out
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
