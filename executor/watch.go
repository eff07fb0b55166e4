package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/deployhook/deployhook/internal/gitsha"
)

// Watch is a target's post-deploy watch. After a deploy of the target ends
// StateSuccess (reported at once: commit status, Deployment, LastSuccess and
// the badge move as for any success), the lane's worker keeps checking the
// target every Every until For has passed, and rolls the deploy back when
// Trips checks in a row say the application degraded.
//
// Check runs on the target, through a session that does not take the deploy
// lock (a person's deploy by hand, or a command-line deployhook, may run
// meanwhile): exit 0 healthy; exit 1 degraded, its last output line being the
// public reason (at most a hundred characters of it are kept); any other exit
// code, a timeout or a broken connection is unknown: logged, never a trip,
// and Unknowns of them in a row end the watch with a note. A healthy or
// degraded check ends an unknown streak; an unknown ends a degraded one.
//
// The watch ends without touching the target when a newer job starts on the
// lane or appears in the journal (a command-line deploy), when the target's
// current commit (Target.Current) is no longer the job's, and when For has
// passed; at shutdown it stops, to be resumed (see below). A rollback takes the deploy lock, checks again under
// it that the target runs the job's SHA, runs the job's rollback steps as
// after a failed step past the checkpoint, and then ends the job StateFailure
// ("rolled back after 6 min: REASON") or, when the rollback fails,
// StateError: a final job changes state this one more time, with its report
// owed like any other. The rollback restores the commit the target ran before
// the job, as the rollback of a failed deploy does.
//
// A target watches only when it rolls back (Target.Rollback); a job with no
// previous commit is not watched; a command-line deploy (Options.NoRecover)
// never watches, since it ends when its job is final.
//
// The watch is recorded as the job's last step, running (ExitCode -1) until
// it ends. When its deployhook stops before it ends (killed, crashed, shut
// down, a replica that lost the lane), another process ends that record
// once the watch can no longer run there (see ErrWatchStopped), and resumes
// the watch as a new last step for the rest of For when the job is still
// the target's newest and its last success; otherwise the job stays a
// success, unwatched. A resumed watch takes its baseline again at the
// resume: unit restarts while no deployhook watched are not seen.
type Watch struct {
	For   time.Duration // how long after the deploy; > 0
	Every time.Duration // the time between checks; > 0 and at most For
	Trips int           // degraded checks in a row that roll back; >= 1
	// Check is the script run on the target at each check. It gets the
	// steps' environment, $DEPLOYHOOK_WATCH_BASELINE, and
	// $DEPLOYHOOK_WATCH_ELAPSED: the whole seconds since the deploy's end.
	Check Step
	// Baseline, when set, runs once when the watch starts (or resumes):
	// its last output line is passed to every check as
	// $DEPLOYHOOK_WATCH_BASELINE (unit restart counts, the target's clock
	// at the deploy, which is its clock now less
	// $DEPLOYHOOK_WATCH_ELAPSED). Until it succeeds no check runs: each
	// failed attempt counts as an unknown check.
	Baseline *Step
	// Unknowns is how many unknown checks in a row end the watch; 0 means
	// DefaultWatchUnknowns.
	Unknowns int
}

// DefaultWatchUnknowns is Watch.Unknowns when it is 0.
const DefaultWatchUnknowns = 5

// baselineLimit bounds the baseline passed to every check in its environment.
const baselineLimit = 1024

// reasonLimit bounds the public reason of a degraded check, so that the
// status description keeps its own words within GitHub's 140 characters.
const reasonLimit = 100

// valid reports what makes w unusable on target t, as New's precondition.
func (w *Watch) valid(t Target) error {
	switch {
	case w.For <= 0 || w.Every <= 0 || w.Every > w.For:
		return fmt.Errorf("watch for %s every %s: both > 0, every at most for", w.For, w.Every)
	case w.Trips < 1:
		return fmt.Errorf("watch trips %d: at least 1", w.Trips)
	case w.Check.Run == "" || w.Check.Timeout <= 0:
		return errors.New("watch check without Run or Timeout")
	case w.Baseline != nil && (w.Baseline.Run == "" || w.Baseline.Timeout <= 0):
		return errors.New("watch baseline without Run or Timeout")
	case !t.Rollback:
		return errors.New("a watch needs the rollback on")
	}
	return nil
}

// errNewerDeploy is the cause that ends a watch when a newer job starts.
type errNewerDeploy struct{ job string }

func (e errNewerDeploy) Error() string { return "newer deploy " + e.job }

// stopWatch ends the watch running on l, if any, because job j is newer. The
// caller holds l.mu.
func (l *lane) stopWatch(j *Job) {
	if l.watching != nil {
		l.watching(errNewerDeploy{j.ID})
	}
}

// checkKind is what one check of a watch said.
type checkKind uint8

const (
	checkHealthy checkKind = iota
	checkDegraded
	checkUnknown
	checkMoved // the target or the journal moved on: the watch ends
)

// watchCount is the streaks of a watch: degraded and unknown checks in a row.
type watchCount struct{ degraded, unknown int }

// watchAction is what a watch does after a check.
type watchAction uint8

const (
	watchGoOn watchAction = iota
	watchRollBack
	watchGiveUp
)

// judge decides what a watch does after a check of kind k, given the streaks
// before it, and returns the streaks after it. trips degraded checks in a row
// roll back; unknowns unknown checks in a row end the watch.
func judge(c watchCount, k checkKind, trips, unknowns int) (watchCount, watchAction) {
	switch k {
	case checkDegraded:
		c = watchCount{degraded: c.degraded + 1}
		if c.degraded >= trips {
			return c, watchRollBack
		}
	case checkUnknown:
		c = watchCount{unknown: c.unknown + 1}
		if c.unknown >= unknowns {
			return c, watchGiveUp
		}
	default:
		c = watchCount{}
	}
	return c, watchGoOn
}

// tripped is what a rollback by the watch met, for watchOutcome.
type tripped struct {
	after    time.Duration // from the deploy's end to the trip
	reason   string        // the degraded check's public reason
	prev     string        // the commit rolled back to
	open     error         // the locked session could not be opened
	unread   bool          // under the lock, the target's commit could not be read
	rollback *stepError    // the rollback step that failed; nil: it worked
}

// watchOutcome decides the job's new final state and public description after
// its watch tripped.
func watchOutcome(r tripped) (State, string) {
	when := fmt.Sprintf(" after %s: ", humanAfter(r.after))
	switch {
	case r.open != nil && errors.Is(r.open, ErrLocked):
		return StateError, describe("degraded"+when, r.reason, "; the deploy lock was held: nothing rolled back")
	case r.open != nil:
		return StateError, describe("degraded"+when, r.reason, "; could not reach the target: nothing rolled back")
	case r.unread:
		return StateError, describe("degraded"+when, r.reason, "; the target's commit could not be read: nothing rolled back")
	case r.rollback != nil && (r.rollback.transport || errors.Is(r.rollback.err, context.Canceled)):
		return StateError, describe("degraded"+when, r.reason, "; rollback to "+short(r.prev)+
			" cut off at "+r.rollback.step+": target state unknown")
	case r.rollback != nil:
		return StateError, describe("degraded"+when, r.reason, "; rollback to "+short(r.prev)+
			" failed at "+r.rollback.step+": target state unknown")
	}
	return StateFailure, describe("rolled back"+when, r.reason, "")
}

// maxDescription is GitHub's limit on a commit status or Deployment status
// description (GITHUB-FACTS: longer is a 422 and a lost status).
const maxDescription = 140

// describe joins head, reason and tail, shortening reason so the whole fits
// in maxDescription characters.
func describe(head, reason, tail string) string {
	room := maxDescription - utf8.RuneCountInString(head) - utf8.RuneCountInString(tail)
	return head + shorten(reason, room) + tail
}

// shorten cuts s to at most n characters, ending in "…" when cut.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}

// humanAfter says how long after the deploy: "40 s", "6 min".
func humanAfter(d time.Duration) string {
	if d < 90*time.Second {
		return fmt.Sprintf("%d s", int(d.Round(time.Second)/time.Second))
	}
	return fmt.Sprintf("%d min", int(d.Round(time.Minute)/time.Minute))
}

// watchReason is the public reason of a degraded check: the last non-empty
// line of its output, without control characters, at most reasonLimit
// characters; a fixed text when there is none.
func watchReason(out string) string {
	line := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, lastLine(out))
	// The probes' word filter (safeWord): the line stops before a word that
	// could be a URL, a path or an address (a failing curl's "Failed to
	// connect to 10.0.0.5"), which never reaches GitHub.
	words := strings.Fields(line)
	for i, w := range words {
		if !safeWord(w) {
			words = append(words[:i], "…")
			break
		}
	}
	if len(words) == 0 || words[0] == "…" {
		return "the watch check failed"
	}
	return shorten(strings.Join(words, " "), reasonLimit)
}

// lastLine returns the last line of s that is not blank.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// announceWatch records the watch step, running (ExitCode -1) and started
// at the job's end, when d's job, final, will be watched: a success of a
// target with a Watch, with a previous commit to roll back to, outside a
// command-line deploy, as watch decides. It runs before the job's end is
// written and published, so that a page reading the final job from the
// journal already finds the watch running (the console's afterEnd) and
// follows the live log instead of showing the final page. The watcher takes
// the record over (watcher.begin).
func (d *deploy) announceWatch(l *lane) {
	j := d.j
	if j.State != StateSuccess || l.t.Watch == nil || d.e.opts.NoRecover || j.PreviousSHA == "" {
		return
	}
	rec := StepRun{Name: "watch", ExitCode: -1, Started: j.Finished}
	rec.Seq = d.record(rec)
	rec.Job = j.ID
	d.watchRec = &rec
}

// watcher is one watch: the worker's, for the job it just deployed.
type watcher struct {
	e    *Executor
	l    *lane
	d    *deploy // the deploy of the job: its job, step records and rollback
	w    Watch
	lg   *slog.Logger
	sess Session // the check session, without the lock; nil when not open
	rec  StepRun // the watch step's record
	out  *tailBuffer
	feed *feed     // the job's live log, reopened for the watch
	slog *stepLog  // the watch step in it
	base string    // the baseline's line; "" until taken
	from time.Time // the watch's start, right after the deploy's end
	// began is when the watch step started: from, or the resume of a
	// watch whose deployhook stopped (resumed).
	began   time.Time
	resumed bool
}

// watch watches the target after d's job succeeded, until the watch ends (see
// Watch). ctx ends at shutdown, which ends the watch; runCtx ends when the
// grace period of a shutdown is over, which cuts a rollback short. It returns
// once the job's outcome, if the watch changed it, was written.
func (e *Executor) watch(ctx, runCtx context.Context, l *lane, d *deploy) {
	e.watchJob(ctx, runCtx, l, d, false)
}

// watchJob is watch; resumed says that d is a deploy whose watch another
// deployhook began and left (resumeDeploy): the watch goes on from d's
// watchRec, a new step, for what is left of Watch.For after the job's end,
// with the checks due from then on only.
func (e *Executor) watchJob(ctx, runCtx context.Context, l *lane, d *deploy, resumed bool) {
	w := &watcher{e: e, l: l, d: d, w: *l.t.Watch, lg: d.lg.With("phase", "watch"),
		out: newTail(e.opts.OutputLimit), from: time.Now(), resumed: resumed}
	switch {
	case resumed:
		w.from = d.j.Finished
		w.lg = w.lg.With("resumed", true)
	case d.watchRec != nil:
		w.from = d.watchRec.Started // the step announced at the job's end
	}
	w.began = w.from
	if w.w.Unknowns <= 0 {
		w.w.Unknowns = DefaultWatchUnknowns
	}
	if d.j.PreviousSHA == "" {
		w.lg.Info("not watched: no previous commit to roll back to")
		w.begin("not watched: no previous commit to roll back to")
		w.end(0)
		return
	}
	wctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	l.mu.Lock()
	if l.pending != nil {
		l.mu.Unlock()
		w.begin("watch ended: newer deploy " + l.pendingID())
		w.end(0)
		return
	}
	l.watching = stop
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.watching = nil
		l.mu.Unlock()
	}()
	defer w.closeSession()

	if resumed {
		left := w.w.For - time.Since(w.from).Round(time.Second)
		w.begin(fmt.Sprintf("watch resumed after deployhook stopped: %s of %s left, a check every %s; "+
			"%d degraded in a row roll back to %s; unit restarts while it was stopped are not seen",
			max(left, 0), w.w.For, w.w.Every, w.w.Trips, short(d.j.PreviousSHA)))
		w.lg.Info("watch resumed", "for", w.w.For, "left", left, "every", w.w.Every, "trips", w.w.Trips)
	} else {
		w.begin(fmt.Sprintf("watching for %s: a check every %s; %d degraded in a row roll back to %s",
			w.w.For, w.w.Every, w.w.Trips, short(d.j.PreviousSHA)))
		w.lg.Info("watch started", "for", w.w.For, "every", w.w.Every, "trips", w.w.Trips)
	}
	w.baseline(wctx) // right after the deploy (or the resume); a failure is retried by the first check
	var count watchCount
	for n := 1; ; n++ {
		next := w.from.Add(time.Duration(n) * w.w.Every)
		if next.After(w.from.Add(w.w.For)) {
			if resumed {
				w.print(fmt.Sprintf("watch passed: healthy for the rest of %s", w.w.For))
			} else {
				w.print(fmt.Sprintf("watch passed: healthy for %s", w.w.For))
			}
			w.lg.Info("watch passed")
			w.end(0)
			return
		}
		if next.Before(w.began) {
			continue // due while the deployhook that began the watch was stopped
		}
		if !pause(wctx, time.Until(next)) {
			w.stopped(wctx)
			return
		}
		w.lg.Debug("watch check", "n", n)
		kind, line := w.check(wctx)
		if wctx.Err() != nil {
			w.stopped(wctx) // a check cut short says nothing
			return
		}
		if kind == checkMoved {
			w.print("watch ended: " + line)
			w.lg.Info("watch ended", "why", line)
			w.end(0)
			return
		}
		var act watchAction
		count, act = judge(count, kind, w.w.Trips, w.w.Unknowns)
		at := "+" + time.Since(w.from).Round(time.Second).String()
		switch kind {
		case checkHealthy:
			w.print(at + " healthy: " + line)
		case checkDegraded:
			w.print(fmt.Sprintf("%s degraded (%d of %d): %s", at, count.degraded, w.w.Trips, line))
		case checkUnknown:
			w.print(fmt.Sprintf("%s unknown (%d of %d): %s", at, count.unknown, w.w.Unknowns, line))
		}
		switch act {
		case watchRollBack:
			w.rollBack(runCtx, line)
			return
		case watchGiveUp:
			w.print(fmt.Sprintf("watch ended: %d checks in a row could not tell (see the log)", count.unknown))
			w.lg.Warn("watch ended: the checks could not tell", "unknown", count.unknown)
			w.end(0)
			return
		}
	}
}

// pendingID is the id of l's pending job. The caller holds l.mu.
func (l *lane) pendingID() string {
	if l.pending == nil {
		return ""
	}
	return l.pending.ID
}

// stopped ends the watch that ctx ended: a newer job, a replica's lost
// lane, or shutdown. At shutdown the step says so and stays open (ExitCode
// -1), as a kill leaves it: the next deployhook (or, with replicas, the
// lane's next holder) resumes the watch or ends its record (see
// ErrWatchStopped).
func (w *watcher) stopped(ctx context.Context) {
	var newer errNewerDeploy
	switch cause := context.Cause(ctx); {
	case errors.As(cause, &newer):
		w.print("watch ended: " + newer.Error())
		w.lg.Info("watch ended: newer deploy", "by_job", newer.job)
	case errors.Is(cause, errLaneLost):
		// Its end is fenced off: the lane's new holder ends the record.
		w.print("watch ended: this deployhook lost the target's lane; the deploy stays a success")
		w.lg.Warn("watch ended: the lane was lost; the job stays success")
	default:
		w.print(watchShutdownLine)
		w.lg.Info("watch interrupted by shutdown: left to the next deployhook; the job stays success")
		return
	}
	w.end(0)
}

// begin records the watch step, running, with its first line: it takes over
// the record announceWatch made, or makes one.
func (w *watcher) begin(line string) {
	if r := w.d.watchRec; r != nil {
		w.rec = *r
	} else {
		w.rec = StepRun{Name: "watch", ExitCode: -1, Started: w.from}
		w.rec.Seq = w.d.record(w.rec)
	}
	w.began = w.rec.Started
	w.feed = w.e.live.reopen(w.d.j.ID)
	w.slog = w.feed.startStep(w.rec.Seq, w.rec.Name)
	w.print(line)
}

// print adds a line to the watch step's output and records it.
func (w *watcher) print(line string) {
	line = w.e.live.red.line(line)
	fmt.Fprintln(w.out, line)
	w.feed.line(w.slog, line)
	if o := w.e.opts.Output; o != nil {
		fmt.Fprintf(o, "[watch] %s\n", line)
	}
	w.rec.Output = w.out.String()
	w.rec.Duration = time.Since(w.began)
	w.d.update(w.rec)
}

// end records the watch step as finished with code.
func (w *watcher) end(code int) {
	w.rec.ExitCode = code
	w.rec.Duration = time.Since(w.began)
	w.d.update(w.rec)
	w.feed.doneStep(w.slog, code, w.rec.Duration)
	if code == 0 {
		// The job stays what it was; a rollback's end publishes its own.
		w.e.live.finish(*w.d.j)
	}
}

func (w *watcher) closeSession() {
	if w.sess != nil {
		w.sess.Close()
		w.sess = nil
	}
}

// check runs one check: the journal and the target's commit first (a newer
// deploy ends the watch), then the check script. It returns what it found
// and the line that says it.
func (w *watcher) check(ctx context.Context) (checkKind, string) {
	j, t := w.d.j, w.l.t
	if jobs, err := w.e.store.Jobs(ctx, t.Name, 1); err != nil {
		w.lg.Warn("watch: read the journal", "err", err)
	} else if len(jobs) == 1 && jobs[0].ID != j.ID {
		return checkMoved, "newer deploy " + jobs[0].ID
	}
	if w.sess == nil {
		sess, err := w.e.tr.Open(ctx, t.Name, "", 0)
		if err != nil {
			w.lg.Warn("watch: open a session", "err", err)
			return checkUnknown, "could not reach the target"
		}
		w.sess = sess
	}
	if sha, ok := w.current(ctx); !ok {
		return checkUnknown, "could not read the target's current commit"
	} else if sha != "" && sha != j.Trigger.SHA {
		return checkMoved, "the target runs " + short(sha) + " now, deployed outside this job"
	}
	if !w.baseline(ctx) {
		return checkUnknown, "could not take the baseline"
	}
	out, code, err := w.run(ctx, w.w.Check)
	switch {
	case err == nil && code == 0:
		return checkHealthy, watchReason(out)
	case err == nil && code == 1:
		w.lg.Warn("watch check: degraded", "output", tail(out, 2000))
		return checkDegraded, watchReason(out)
	case err == nil:
		w.lg.Warn("watch check: unknown", "exit", code, "output", tail(out, 2000))
		return checkUnknown, fmt.Sprintf("check exited %d", code)
	case errors.Is(err, ErrTimeout):
		w.lg.Warn("watch check timed out", "output", tail(out, 2000))
		return checkUnknown, "check timed out"
	}
	w.lg.Warn("watch check did not finish", "err", err)
	return checkUnknown, "check did not finish"
}

// baseline takes the baseline if the watch has one and it was not taken yet,
// opening the check session when needed. It reports whether the checks may run.
func (w *watcher) baseline(ctx context.Context) bool {
	if w.base != "" || w.w.Baseline == nil {
		return true
	}
	if w.sess == nil {
		sess, err := w.e.tr.Open(ctx, w.l.t.Name, "", 0)
		if err != nil {
			w.lg.Warn("watch: open a session", "err", err)
			return false
		}
		w.sess = sess
	}
	out, code, err := w.run(ctx, *w.w.Baseline)
	line := lastLine(out)
	if err != nil || code != 0 || line == "" || len(line) > baselineLimit {
		w.lg.Warn("watch: baseline failed", "exit", code, "err", err, "output", tail(out, 500))
		return false
	}
	w.base = line
	w.lg.Info("watch baseline taken", "baseline", line)
	return true
}

// run runs st on the check session with the watch's environment; a transport
// error closes the session, to be opened again by the next check.
func (w *watcher) run(ctx context.Context, st Step) (string, int, error) {
	j := w.d.j
	cmd := w.d.command(st, j.Trigger.SHA, j.PreviousSHA)
	cmd.Env["DEPLOYHOOK_WATCH_BASELINE"] = w.base
	// Whole seconds since the deploy's end: a baseline taken later (a
	// resumed watch, a retry) puts the deploy's time on the target's clock.
	cmd.Env["DEPLOYHOOK_WATCH_ELAPSED"] = strconv.FormatInt(int64(max(time.Since(w.from), 0)/time.Second), 10)
	out := newTail(16 << 10)
	code, err := w.sess.Run(ctx, cmd, out)
	if err != nil && !errors.Is(err, ErrTimeout) && ctx.Err() == nil {
		w.closeSession()
	}
	return out.String(), code, err
}

// current reads the commit the target runs through Target.Current: ok false
// when it cannot be read, sha "" when the target has no probe for it.
func (w *watcher) current(ctx context.Context) (sha string, ok bool) {
	p := w.l.t.Current
	if p == nil {
		return "", true
	}
	out, code, err := w.run(ctx, *p)
	sha = strings.TrimSpace(out)
	if err != nil || code != 0 || !gitsha.Valid(sha) {
		w.lg.Warn("watch: current commit unknown", "exit", code, "err", err, "output", tail(out, 200))
		return "", false
	}
	return sha, true
}

// rollBack rolls the job back after its watch tripped on reason, under the
// deploy lock, and ends the job (watchOutcome), unless the target moved on
// meanwhile: then nothing is touched and the job stays a success.
func (w *watcher) rollBack(ctx context.Context, reason string) {
	d, t := w.d, w.l.t
	j := d.j
	r := tripped{after: time.Since(w.from), reason: reason, prev: j.PreviousSHA}
	w.closeSession()
	w.print("rolling back to " + short(r.prev) + " under the deploy lock")
	w.lg.Warn("watch tripped: rolling back", "reason", reason, "to", r.prev)
	sess, err := w.e.tr.Open(ctx, t.Name, t.Lock, t.LockWait)
	if err != nil {
		w.lg.Error("watch: open the locked session for the rollback", "err", err)
		r.open = err
	} else {
		defer sess.Close()
		d.sess = sess
		why, unread := w.movedUnderLock(ctx, sess)
		switch {
		case unread:
			r.unread = true
		case why != "":
			w.print("watch ended: " + why + "; nothing rolled back")
			w.lg.Info("watch ended before its rollback", "why", why)
			w.end(0)
			return
		default:
			d.recover = "" // the deploy ended cleanly: nothing of an interrupted one is left
			r.rollback, _ = d.steps(ctx, r.prev, j.Trigger.SHA, "rollback: ")
			w.e.opts.Observer.RolledBack(t.Name, r.rollback == nil)
		}
	}
	state, desc := watchOutcome(r)
	w.print(desc)
	w.end(1)

	bg := context.WithoutCancel(ctx)
	lastJob := ""
	if old, err := w.e.store.Deployed(bg, t.Name, r.prev); err == nil {
		lastJob = old.ID
	}
	w.l.mu.Lock()
	j.State, j.Description, j.Finished = state, desc, time.Now()
	if w.l.current == j.Trigger.SHA {
		// As after a failed deploy, the target runs the previous commit
		// as far as the journal knows (LastSuccess, after a restart too).
		w.l.current, w.l.lastJob = r.prev, lastJob
	}
	w.l.mu.Unlock()
	w.e.end(bg, *j, d.unsavedSteps()...)
	w.lg.Warn("watch ended the deploy", "state", state, "description", desc)
	w.e.jr.waitWritten(ctx, j.ID)
}

// movedUnderLock reports why the rollback must not run, or "": under the
// deploy lock the target must still run the job's SHA, and no newer job may
// be in the journal. unread says the target's commit could not be read.
func (w *watcher) movedUnderLock(ctx context.Context, sess Session) (why string, unread bool) {
	j := w.d.j
	if jobs, err := w.e.store.Jobs(ctx, j.Target, 1); err == nil && len(jobs) == 1 && jobs[0].ID != j.ID {
		return "newer deploy " + jobs[0].ID, false
	}
	if w.l.t.Current == nil {
		return "", false
	}
	var out bytes.Buffer
	code, err := sess.Run(ctx, w.d.command(*w.l.t.Current, j.Trigger.SHA, ""), &out)
	sha := strings.TrimSpace(out.String())
	switch {
	case err != nil || code != 0 || !gitsha.Valid(sha):
		w.lg.Error("watch: current commit unknown under the lock", "exit", code, "err", err, "output", tail(out.String(), 200))
		return "", true
	case sha != j.Trigger.SHA:
		return "the target runs " + short(sha) + " now, deployed outside this job", false
	}
	return "", false
}

// A watch whose deployhook stopped (killed, crashed, shut down, or a
// replica that lost the target's lane) leaves its step record open:
// ExitCode -1, started at
// the job's end, which a job's page reads as a watch still running (the
// console follows its live log while it lasts). Another process ends that
// record once the watch can no longer run, and only then: the watch's owner
// is this process's earlier life (at start-up recovery), its lease expired
// (start-up recovery, then each orphan sweep), or, with replicas, the lane's
// new holder took the lane from whoever watched (takeOver). The record keeps
// ExitCode -1 (never finished) and gets ErrWatchStopped as its Error and a
// last line; the job stays a success, its status and Deployment untouched:
// the watch saw nothing that rolls back.
//
// That process resumes the watch when it may (noResume): it is a service
// (not a command-line deploy) whose lane of the target is free, the job is
// the target's newest job and its last success, the target still watches,
// the job has a previous commit, and Watch.For has not passed since the
// job's end. The lane's worker then takes the job over (its owner becomes
// this process's, or the lane's), ends the old record with
// watchResumedLine, and watches for the rest of Watch.For as a new last
// step "watch" (resumeDeploy, watchJob): the same checks, with the baseline
// taken again at the resume, and a rollback as the first watch's would do.
// With replicas only the lane's new holder resumes, never a replica that
// merely starts. Otherwise the record ends with watchStoppedLine.

// ErrWatchStopped is the Error of a watch step whose deployhook stopped
// before the watch ended, recorded by the process that found it so. Its
// ExitCode stays -1: the watch never finished.
var ErrWatchStopped = errors.New("deployhook stopped before the watch finished")

// watchStoppedLine is the last line of a watch step that ErrWatchStopped
// ended.
const watchStoppedLine = "watch ended: deployhook stopped before the watch finished; the deploy stays a success"

// watchShutdownLine is the last line of a watch step whose deployhook shut
// down during the watch, which leaves it open.
const watchShutdownLine = "watch interrupted: deployhook shutting down; the next deployhook resumes it, or ends it"

// watchCutLine is the last line of a watch step whose deployhook stopped
// during the watch's rollback (cutRollback).
const watchCutLine = "watch ended: deployhook stopped during the watch's rollback; the target's state is unknown"

// watchResumedLine is the last line of a watch step that ErrWatchStopped
// ended when another process resumed the watch in a new step.
const watchResumedLine = "watch interrupted: deployhook stopped; resumed in the next step"

// staleScan is how many of a target's newest successful jobs are looked at
// for a watch step left open. A watch runs only on the last job a service
// deployed; the jobs after it, until the service is back, are command-line
// deploys (which never watch), so a few cover them.
const staleScan = 5

// staleWatches is the open watch steps of other, live owners that this
// process found (at start-up recovery): each orphan sweep looks at them
// again, and ends (or resumes) those whose owner's lease has expired since.
// It also holds, per target, the job whose watch the target's lane resumes
// when its worker is next free (resumeDeploy).
type staleWatches struct {
	mu     sync.Mutex
	jobs   map[string]bool   // job ids
	resume map[string]string // target → job id
}

// setResume asks the lane of target to resume the watch of job id.
func (s *staleWatches) setResume(target, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resume == nil {
		s.resume = map[string]string{}
	}
	s.resume[target] = id
}

// takeResume returns the job whose watch the lane of target resumes, and
// forgets it; "" when there is none.
func (s *staleWatches) takeResume(target string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.resume[target]
	delete(s.resume, target)
	return id
}

func (s *staleWatches) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs == nil {
		s.jobs = map[string]bool{}
	}
	s.jobs[id] = true
}

func (s *staleWatches) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.jobs, id)
}

func (s *staleWatches) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.jobs))
}

// openWatch returns j's watch step when it is open: j is a success whose
// last step is the watch, started at or after j's end, not ended (ExitCode
// -1) and not ended by ErrWatchStopped. It is how the console tells that a
// watch still runs (server's afterEnd), for the watch only.
func openWatch(j Job) (StepRun, bool) {
	if j.State != StateSuccess || len(j.Steps) == 0 || j.Finished.IsZero() {
		return StepRun{}, false
	}
	s := j.Steps[len(j.Steps)-1]
	for _, t := range j.Steps {
		if t.Seq > s.Seq {
			s = t
		}
	}
	open := s.Name == "watch" && s.ExitCode == -1 && s.Skipped == "" && s.Error == "" &&
		!s.Started.IsZero() && !s.Started.Before(j.Finished)
	return s, open
}

// cutRollback returns j's watch step and the rollback steps after it that
// are still open, when j's watch tripped and started its rollback (its
// output says "rolling back to", or a "rollback: " step follows it) and
// its job did not end: what a deployhook stopped in the middle of the
// watch's rollback leaves, or right after it, before the job's end was
// written (the watch step then ended with exit 1, its last line the
// outcome). The job is still a success in the journal, and the target may
// run either commit, or a mix.
func cutRollback(j Job) (watch StepRun, open []StepRun, ok bool) {
	if j.State != StateSuccess || j.Finished.IsZero() {
		return StepRun{}, nil, false
	}
	found := false
	for _, s := range j.Steps {
		if s.Name == "watch" && (s.ExitCode == -1 || s.ExitCode == 1) && s.Skipped == "" && s.Error == "" &&
			!s.Started.IsZero() && !s.Started.Before(j.Finished) && (!found || s.Seq > watch.Seq) {
			watch, found = s, true
		}
	}
	if !found {
		return StepRun{}, nil, false
	}
	rolling := strings.HasPrefix(watch.Output, "rolling back to ") || strings.Contains(watch.Output, "\nrolling back to ")
	for _, s := range j.Steps {
		if s.Seq > watch.Seq && strings.HasPrefix(s.Name, "rollback: ") {
			rolling = true
			if s.ExitCode == -1 && s.Skipped == "" && s.Error == "" {
				open = append(open, s)
			}
		}
	}
	return watch, open, rolling
}

// endCutRollback ends j, whose deployhook stopped in the middle of its
// watch's rollback (cutRollback), as any deploy cut off past its
// checkpoint ends: error, the target's state unknown, reported. Its watch
// step and open rollback steps end with ErrWatchStopped. The lane forgets
// which commit the target runs.
func (e *Executor) endCutRollback(ctx context.Context, j Job, watch StepRun, open []StepRun) error {
	if watch.ExitCode == 1 {
		// The rollback ran to its end; only the job's end was not written.
		return e.endFinishedRollback(ctx, j, watch)
	}
	if err := e.endWatch(ctx, j, watch, watchCutLine); err != nil {
		return err
	}
	for _, s := range open {
		s.Job, s.Error = j.ID, ErrWatchStopped.Error()
		if err := e.jr.wrote(e.addStep(ctx, j.Target, s)); err != nil {
			e.jobLogger(j).Warn("end a rollback step that a stopped deployhook left running", "step", s.Name, "err", err)
			return err
		}
	}
	j.Steps = nil
	j.State, j.Finished = StateError, time.Now()
	j.Description = "interrupted: the watch's rollback to " + short(j.PreviousSHA) + " was cut off; target state unknown"
	e.forgetCurrent(j)
	e.jobLogger(j).Error("the watch's rollback was cut off by a stop: the job ends error, the target's state is unknown",
		"owner", j.Owner, "to", j.PreviousSHA)
	e.end(ctx, j)
	return nil
}

// endFinishedRollback ends j, whose watch rolled it back to its end (the
// watch step ended with exit 1) before a stop kept the job's end from
// being written: failure with the watch's outcome, its last line, when
// every rollback step passed; error otherwise, as the watch would have.
func (e *Executor) endFinishedRollback(ctx context.Context, j Job, watch StepRun) error {
	state, ran := StateFailure, 0
	for _, s := range j.Steps {
		if s.Seq > watch.Seq && strings.HasPrefix(s.Name, "rollback: ") && s.Skipped == "" {
			ran++
			if s.ExitCode != 0 {
				state = StateError
			}
		}
	}
	if ran == 0 {
		state = StateError
	}
	desc := lastLine(watch.Output)
	if desc == "" || strings.HasPrefix(desc, "rolling back to ") {
		desc = "rolled back to " + short(j.PreviousSHA) + " after its watch tripped"
	}
	j.Steps = nil
	j.State, j.Description, j.Finished = state, desc, time.Now()
	e.forgetCurrent(j)
	e.jobLogger(j).Warn("the watch rolled back before a stop: its job's end is written now", "state", state, "description", desc)
	e.end(ctx, j)
	return nil
}

// forgetCurrent makes the lane of j's target forget which commit the
// target runs when it thought j's: a rollback of j was cut off, or its
// outcome is written late.
func (e *Executor) forgetCurrent(j Job) {
	l := e.lanes[j.Target]
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.current == j.Trigger.SHA {
		l.current, l.lastJob = "", ""
	}
}

// watchGone reports whether the watch of j, whose step is open, can no
// longer run. start says this process runs no watch yet (Run's start-up
// recovery): one of its own owner is an earlier life's. holder says it has
// just taken the lane of j's target as a replica: one of the lane's owner
// ran on the replica that lost the lane, whose writes are fenced off. Any
// other owner's watch is gone once its lease has expired, or it has no
// lease in the journal.
func (e *Executor) watchGone(ctx context.Context, j Job, start, holder bool) (bool, error) {
	switch {
	case j.Owner == e.opts.Owner.ID:
		return start, nil
	case j.Owner == LaneOwner(j.Target) && holder:
		return true, nil
	}
	o, err := e.store.Owner(ctx, j.Owner)
	switch {
	case errors.Is(err, ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	return o.Until.Before(time.Now()), nil
}

// recoverWatches is the part of Run's start-up recovery that ends or
// resumes the watch steps left open by dead owners on the targets of this
// process (see ErrWatchStopped), and keeps those of live owners for the
// sweeps to look at again. With replicas it does nothing: a lane's new
// holder ends or resumes them. It returns an error when the journal cannot
// be read.
func (e *Executor) recoverWatches(ctx context.Context) error {
	if e.rl != nil {
		return nil
	}
	for _, l := range e.lanes {
		if err := e.endStaleWatches(ctx, l.t.Name, true, false); err != nil {
			return fmt.Errorf("look for watches left running: %w", err)
		}
	}
	return nil
}

// endStaleWatches ends the open watch steps of target's newest successes
// whose watch is gone (watchGone, with start and holder), but hands the one
// that may go on (noResume) to the target's lane, whose worker resumes it.
// Outside a lane's holder, the ones whose owner lives, and the ones the
// journal refused to end, are kept for the sweeps (recheckWatches). It
// returns an error when the journal cannot be read.
func (e *Executor) endStaleWatches(ctx context.Context, target string, start, holder bool) error {
	e.stale.takeResume(target) // looked for again here
	jobs, err := e.store.Jobs(ctx, target, staleScan, StateSuccess)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		full, err := e.store.Job(ctx, j.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // pruned meanwhile
		case err != nil:
			return err
		}
		s, open := openWatch(full)
		w, rs, cut := cutRollback(full)
		if !open && !cut {
			continue
		}
		gone, err := e.watchGone(ctx, full, start, holder)
		switch {
		case err != nil:
			return err
		case gone && cut:
			if e.endCutRollback(ctx, full, w, rs) != nil && !holder {
				e.stale.add(full.ID)
			}
		case !gone:
			e.jobLogger(full).Info("a live deployhook watches this job: its watch is left to it", "owner", full.Owner)
			if !holder {
				e.stale.add(full.ID)
			}
		case e.handOver(ctx, full):
		case e.endWatch(ctx, full, s, watchStoppedLine) != nil && !holder:
			e.stale.add(full.ID)
		}
	}
	return nil
}

// handOver asks the lane of j's target to resume j's watch, whose
// deployhook is gone, and reports whether it did: only when the watch may
// go on (noResume) as far as the journal tells now; the lane's worker asks
// again before it resumes.
func (e *Executor) handOver(ctx context.Context, j Job) bool {
	l := e.lanes[j.Target]
	if l == nil {
		return false
	}
	if why := e.noResume(ctx, l, j); why != "" {
		e.jobLogger(j).Info("the watch of a stopped deployhook is not resumed", "why", why)
		return false
	}
	e.stale.setResume(j.Target, j.ID)
	l.signal()
	e.jobLogger(j).Info("the watch of a stopped deployhook will be resumed", "owner", j.Owner)
	return true
}

// noResume says why the open watch of j, whose deployhook is gone, must
// not be resumed by l's lane, or "" when it may: this process is a
// service, the target still watches, j has a previous commit to roll back
// to, Watch.For has not passed since j's end, j is the target's newest job
// and its last success, and the lane runs and waits for nothing else and
// knows of no other commit on the target.
func (e *Executor) noResume(ctx context.Context, l *lane, j Job) string {
	switch {
	case e.opts.NoRecover:
		return "a command-line deploy never watches"
	case l.t.Watch == nil:
		return "the target no longer watches its deploys"
	case j.PreviousSHA == "":
		return "no previous commit to roll back to"
	case !time.Now().Before(j.Finished.Add(l.t.Watch.For)):
		return "the watch's " + l.t.Watch.For.String() + " are over"
	}
	newest, err := e.store.Jobs(ctx, j.Target, 1)
	switch {
	case err != nil:
		return "the journal could not be read: " + err.Error()
	case len(newest) == 1 && newest[0].ID != j.ID:
		return "newer job " + newest[0].ID
	}
	last, err := e.store.LastSuccess(ctx, j.Target)
	switch {
	case err != nil:
		return "the journal could not be read: " + err.Error()
	case last.ID != j.ID:
		return "not the target's last success"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.pending != nil:
		return "newer job " + l.pending.ID
	case l.running != nil:
		return "job " + l.running.ID + " runs"
	case l.current != "" && l.current != j.Trigger.SHA:
		return "the target runs " + short(l.current)
	}
	return ""
}

// resumeDeploy is the lane's worker taking over the watch that
// endStaleWatches handed to l, if any. When the watch may still go on
// (noResume), it makes the job this process's (fenced, with replicas),
// ends the old step with watchResumedLine and records the new one; it
// returns the deploy to watch (watchJob, resumed). Otherwise it ends the
// old step as stopped, and returns nil.
func (e *Executor) resumeDeploy(ctx context.Context, l *lane) *deploy {
	id := e.stale.takeResume(l.t.Name)
	if id == "" {
		return nil
	}
	j, err := e.store.Job(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil // pruned meanwhile
	case err != nil:
		e.lg.Warn("read a job whose watch was left running", "job", id, "err", err)
		e.retryResume(l, id)
		return nil
	}
	s, open := openWatch(j)
	if !open {
		return nil // another process ended it meanwhile
	}
	lg := e.jobLogger(j)
	if why := e.noResume(ctx, l, j); why != "" {
		lg.Info("the watch of a stopped deployhook is not resumed", "why", why)
		if e.endWatch(ctx, j, s, watchStoppedLine) != nil {
			e.retryResume(l, id)
		}
		return nil
	}
	was := j.Owner
	j.Owner = e.jobOwner(j.Target)
	if j.Owner != was {
		// Another process finds this process's live lease on the job, and
		// leaves its watch alone. Without a lane, the owner's change is a
		// compare-and-set: of two processes that resume this watch, one
		// does (a replica's write is fenced by its lane instead).
		var err error
		if e.rl == nil {
			err = e.jr.wrote(e.store.AdoptSuccess(ctx, j.ID, was, j.Owner))
		} else {
			own := j
			own.Steps = nil
			err = e.jr.wrote(e.updateJob(ctx, own))
		}
		if errors.Is(err, ErrNotFound) {
			lg.Info("another deployhook took the watch of a stopped deployhook over first", "owner", was)
			return nil
		}
		if err != nil {
			lg.Warn("take over the watch of a stopped deployhook", "owner", was, "err", err)
			e.retryResume(l, id)
			return nil
		}
	}
	// Ended even when this write fails: the new step is the job's last.
	_ = e.endWatch(ctx, j, s, watchResumedLine)
	seq := 0
	for _, st := range j.Steps {
		seq = max(seq, st.Seq)
	}
	j.Steps = nil
	d := &deploy{e: e, lg: lg, t: l.t, j: &j, seq: seq, unsaved: map[int]StepRun{}}
	rec := StepRun{Name: "watch", ExitCode: -1, Started: time.Now()}
	rec.Seq = d.record(rec)
	rec.Job = j.ID
	d.watchRec = &rec
	lg.Warn("watch resumed: the deployhook that watched it stopped", "from", was,
		"left", (l.t.Watch.For - time.Since(j.Finished)).Round(time.Second))
	return d
}

// retryResume is resumeDeploy's answer to a journal that failed it: a
// single process's sweeps look at job id again; a replica's lane, which
// has no sweeps of watches, tries again at its next start (LanePoll).
func (e *Executor) retryResume(l *lane, id string) {
	if e.rl == nil {
		e.stale.add(id)
		return
	}
	e.stale.setResume(l.t.Name, id)
}

// resumeWatch runs on l's worker (a single process's): it resumes the
// watch that endStaleWatches handed to l, if any, until that watch ends as
// any watch does (watch).
func (e *Executor) resumeWatch(ctx, runCtx context.Context, l *lane) {
	if d := e.resumeDeploy(runCtx, l); d != nil {
		e.watchJob(ctx, runCtx, l, d, true)
	}
}

// recheckWatches looks again at the open watch steps that endStaleWatches
// kept: it ends those whose owner's lease has expired since, and forgets
// those that ended or are gone from the journal.
func (e *Executor) recheckWatches(ctx context.Context) {
	for _, id := range e.stale.list() {
		j, err := e.store.Job(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			e.stale.drop(id)
			continue
		case err != nil:
			e.lg.Warn("read a job whose watch was left running", "job", id, "err", err)
			continue
		}
		s, open := openWatch(j)
		w, rs, cut := cutRollback(j)
		if !open && !cut {
			e.stale.drop(id) // its watcher ended it, or another process did
			continue
		}
		gone, err := e.watchGone(ctx, j, false, false)
		if err != nil {
			e.jobLogger(j).Warn("read the lease of the job's watcher", "owner", j.Owner, "err", err)
			continue
		}
		switch {
		case !gone:
		case cut:
			if e.endCutRollback(ctx, j, w, rs) == nil {
				e.stale.drop(id)
			}
		case e.handOver(ctx, j) || e.endWatch(ctx, j, s, watchStoppedLine) == nil:
			e.stale.drop(id)
		}
	}
}

// endWatch ends s, the open watch step of j, as ErrWatchStopped says, with
// last as its last line (watchStoppedLine or watchResumedLine), its output
// bounded as a watch's is. The job itself is not written.
func (e *Executor) endWatch(ctx context.Context, j Job, s StepRun, last string) error {
	out := newTail(e.opts.OutputLimit)
	prev := s.Output
	if rest, ok := strings.CutPrefix(prev, "…\n"); ok {
		prev, out.dropped = rest, true
	}
	out.Write([]byte(prev))
	if prev != "" && !strings.HasSuffix(prev, "\n") {
		out.Write([]byte("\n"))
	}
	fmt.Fprintln(out, last)
	s.Job, s.Output, s.Error = j.ID, out.String(), ErrWatchStopped.Error()
	lg := e.jobLogger(j)
	if err := e.jr.wrote(e.addStep(ctx, j.Target, s)); err != nil {
		lg.Warn("end the watch step that a stopped deployhook left running", "owner", j.Owner, "err", err)
		return err
	}
	if last == watchStoppedLine {
		lg.Warn("watch ended: the deployhook that watched it stopped before the watch finished; the job stays success",
			"owner", j.Owner, "watched_for", s.Duration.Round(time.Second))
	}
	return nil
}
