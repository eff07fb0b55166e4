package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Fleets. A target whose Rollout is set deploys to several VMs. At the start
// of each job the Transport, which then implements Fleet, resolves the VMs
// (a list, a managed instance group, a label selector: the transport's
// business). The first VM's session is opened as one VM's is, and answers
// the target's probes: Current (the previous SHA of the whole fleet) and
// Contains (whether an automatic trigger moves it forward), so that admit
// decides once for the fleet. Changed runs on each VM, in its own checkout,
// when a when_changed step asks: the files changed between two commits are
// the same in every clone, and no VM waits for another.
//
// Then every VM is prepared (prepare), at most prepareParallel at once: its
// session is opened, which takes its remote lock (invariant 3 holds per VM),
// and the steps before the checkpoint run on it (splitSteps: preflight,
// fetch…; by the checkpoint's contract they change nothing that runs). The
// locks are kept until the job ends, so no other deploy reaches any VM of
// the fleet mid-rollout, nor interleaves with its rollback. When a VM's
// preparation fails, the others' are stopped and the job ends before the
// canary: no VM changed ("vm-4: fetch failed (exit 1); no VM changed").
// With allow_dirty, the default sequence's stash step is one of those steps:
// each VM's local changes are kept in a named stash before the canary, and
// the job's description says so, whatever becomes of the rollout.
//
// Then the VMs deploy stage by stage (plan): the canaries, then the batches,
// the VMs of a stage in parallel, each running the steps from the checkpoint
// on, on its open session. Step records are the job's, named behind the VM's
// name ("vm-2: fetch", "vm-2: checkout"). After a VM's steps pass, the job's
// description says how many VMs are done ("deploying 2/5"), through the job
// update that owes a report: one report per VM, not per step.
//
// When a VM fails, no further stage starts (unless Rollout.KeepGoing), the
// running stage's other VMs finish, and every VM the job moved is rolled back
// with the target's rollback steps (all of them, from the first), as one VM
// is, in parallel. The VMs of later stages ran only the steps before the
// checkpoint. The job's description counts and names ("3/5 deployed, rolled
// back; vm-4: verify failed (exit 1)"): VM names are public, never addresses.

// membersTimeout bounds the resolution of a fleet's VMs (Fleet.Members): a
// few pages of the Compute API at most.
const membersTimeout = time.Minute

// prepareParallel bounds how many VMs are prepared at once: so many SSH
// handshakes, IAP tunnels and fetches together, whatever the fleet's size.
const prepareParallel = 10

// errPrepareHalted is why the preparation of the other VMs stops when one
// VM's fails.
var errPrepareHalted = errors.New("another VM's preparation failed")

// vmResult is what became of one VM in the rollout.
type vmResult struct {
	vm         string
	ran        bool       // the VM's turn came
	open       error      // its session could not be opened
	failed     *stepError // its first failed step; nil with open nil: every step passed
	checkpoint bool       // a checkpoint step had started before failed: the VM changed
}

func (v vmResult) ok() bool { return v.ran && v.open == nil && v.failed == nil }

// public is the VM's failure as GitHub may see it: its name and the step.
func (v vmResult) public() string {
	switch {
	case v.open != nil && errors.Is(v.open, ErrLocked):
		return v.vm + ": another deploy holds the VM's lock"
	case v.open != nil && errors.Is(v.open, context.Canceled):
		return "interrupted: deployhook shutting down while connecting to " + v.vm
	case v.open != nil:
		return v.vm + ": could not reach the VM"
	}
	return v.failed.public()
}

// broken reports whether the VM failed for a reason other than its own
// steps: unreachable, connection lost, interrupted.
func (v vmResult) broken() bool {
	return v.open != nil || v.failed.transport || errors.Is(v.failed.err, context.Canceled)
}

// fate is what the end of a rollout does with one VM.
type fate uint8

const (
	fateKeep     fate = iota // left as it is: never started, unchanged, or deployed and kept
	fateRollBack             // rolled back with the target's rollback steps
	fateNew                  // deployed, but cannot be rolled back: left on the new commit
	fateUnknown              // changed, and cannot be rolled back: its state is unknown
)

// fateOf decides what becomes of VM v once the rollout has stopped: failed
// says some VM failed; halt that the rollout halts on failure; canRollBack
// that the rollback can run (the target rolls back, the previous SHA is known
// and deployhook is not shutting down); cancelBy who cancelled the job.
func fateOf(v vmResult, failed, halt, canRollBack bool, cancelBy string) fate {
	switch {
	case !v.ran || v.open != nil:
		return fateKeep
	case v.failed == nil && (!failed || !halt):
		return fateKeep
	case v.failed == nil && canRollBack:
		return fateRollBack
	case v.failed == nil:
		return fateNew
	case !v.checkpoint:
		return fateKeep // failed before it changed anything
	case v.failed.transport || (errors.Is(v.failed.err, context.Canceled) && cancelBy == ""):
		return fateUnknown // connection lost, or interrupted by a shutdown
	case canRollBack:
		return fateRollBack
	}
	return fateUnknown
}

// fleetRun is what a fleet job did, for decideFleet.
type fleetRun struct {
	resolve   error // the VMs could not be resolved (wraps ErrNoMembers for none)
	started   bool  // the rollout began: the first VM was reached and the job admitted
	prepare   bool  // the rollout stopped while the VMs were prepared: no VM changed
	n         int   // VMs in the fleet
	keepGoing bool  // Rollout.KeepGoing

	deployed       []string     // VMs whose steps all passed, in the order they finished
	failed         []vmResult   // VMs that failed (in prepare, or in their stage), in the fleet's order
	rolledBack     []string     // VMs whose rollback ran and passed
	rollbackFailed []*stepError // the failed rollback step of each VM whose rollback failed
	leftNew        []string     // deployed VMs that should have been rolled back and could not be
	unknown        []string     // changed VMs whose state is unknown
	why            string       // why VMs were not rolled back: "rollback is off"...
}

// decideFleet is decide for a fleet target.
func decideFleet(r runResult) (st State, description, now string) {
	f := r.fleet
	switch {
	case f.resolve != nil && r.cancelBy != "":
		return StateError, "cancelled by " + r.cancelBy + " before it ran", ""
	case f.resolve != nil && r.cancelled:
		return StateError, "interrupted: deployhook shutting down; nothing ran", ""
	case errors.Is(f.resolve, ErrNoMembers):
		return StateError, "the fleet has no VMs; nothing ran", ""
	case f.resolve != nil:
		return StateError, "could not list the fleet's VMs; nothing ran (see the job page)", ""
	case !f.started:
		one := r
		one.fleet = nil
		return decide(one)
	case f.prepare:
		return decidePrepare(r)
	case len(f.failed) == 0:
		return StateSuccess, fleetSuccess(r.kind, r.sha, r.by, f.n) + r.notApplied, r.sha
	}
	st = StateFailure
	moved := len(f.deployed) > 0
	for _, v := range f.failed {
		moved = moved || v.checkpoint
		if v.broken() {
			st = StateError
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d deployed", len(f.deployed), f.n)
	switch {
	case len(f.rollbackFailed) > 0:
		b.WriteString(", rollback failed at " + f.rollbackFailed[0].step)
	case len(f.rolledBack) > 0 && len(f.leftNew) == 0 && f.keepGoing:
		b.WriteString(", failed VMs rolled back")
	case len(f.rolledBack) > 0 && len(f.leftNew) == 0:
		b.WriteString(", rolled back")
	case len(f.leftNew) > 0 || (len(f.unknown) > 0 && f.why != ""):
		b.WriteString(", not rolled back (" + f.why + ")")
	}
	cause := failedCause(r)
	if r.cancelBy != "" {
		st = StateError
	}
	b.WriteString("; " + cause)
	switch {
	case len(f.rollbackFailed) > 0 || len(f.unknown) > 0:
		st = StateError
		b.WriteString("; fleet state unknown")
	case !moved:
		b.WriteString("; nothing was changed")
	case len(f.leftNew) == 0 && (!f.keepGoing || len(f.deployed) == 0):
		now = r.prev // every VM that changed is back on the previous commit
	}
	return st, b.String(), now
}

// decidePrepare is decideFleet for a rollout that stopped while the VMs
// were prepared: no step past the checkpoint ran anywhere, so nothing is
// rolled back and the fleet runs what it ran.
func decidePrepare(r runResult) (st State, description, now string) {
	st = StateFailure
	for _, v := range r.fleet.failed {
		if v.broken() {
			st = StateError
		}
	}
	if r.cancelBy != "" || len(r.fleet.failed) == 0 {
		st = StateError
	}
	return st, failedCause(r) + "; no VM changed", ""
}

// failedCause words why a fleet job failed: the first failed VM and its
// step, and how many more failed; or who cancelled it, and when.
func failedCause(r runResult) string {
	f := r.fleet
	if len(f.failed) == 0 {
		// Not reached: a rollout stops only on a failure or a cancel, and
		// a cancel fails the VMs it stopped. Say no more than is known.
		return "interrupted"
	}
	first := f.failed[0]
	if r.cancelBy != "" {
		// The cancel stopped every VM that was running: it is the cause.
		by := "cancelled by " + r.cancelBy
		switch {
		case first.failed == nil:
			return by + " while connecting to " + first.vm
		case first.failed.unstarted:
			return by + " before " + first.failed.step
		}
		return by + " during " + first.failed.step
	}
	cause := first.public()
	if more := len(f.failed) - 1; more > 0 {
		cause += fmt.Sprintf(" (+%d more)", more)
	}
	return cause
}

// fleetSuccess is a fleet job's success description: "deployed abc1234 to
// 5 VMs", naming the person who asked for it.
func fleetSuccess(kind Kind, sha, by string, n int) string {
	vms := fmt.Sprintf("%d VMs", n)
	if n == 1 {
		vms = "1 VM"
	}
	switch {
	case by == "":
		return "deployed " + short(sha) + " to " + vms
	case kind == KindRollback:
		return "rolled back " + vms + " to " + short(sha) + " by " + by
	}
	return "deployed " + short(sha) + " to " + vms + " by " + by
}

// plan splits a fleet of n VMs into the stages of rollout o, as indexes:
// the canaries, then batches of o.Batch (or o.BatchPercent of n, rounded
// up), the last one smaller when n does not divide; without a batch size,
// all the others at once.
func plan(n int, o Rollout) [][]int {
	var stages [][]int
	stage := func(from, to int) {
		s := make([]int, 0, to-from)
		for i := from; i < to; i++ {
			s = append(s, i)
		}
		stages = append(stages, s)
	}
	i := min(max(o.Canary, 0), n)
	if i > 0 {
		stage(0, i)
	}
	b := o.Batch
	if o.BatchPercent > 0 {
		b = (n*o.BatchPercent + 99) / 100
	}
	if b <= 0 {
		b = n - i
	}
	b = max(b, 1)
	for ; i < n; i += b {
		stage(i, min(i+b, n))
	}
	return stages
}

// checkFleet checks a fleet target's rollout against New's preconditions.
func checkFleet(t Target, tr Transport) error {
	o := t.Rollout
	if o == nil {
		return nil
	}
	if _, ok := tr.(Fleet); !ok {
		return fmt.Errorf("executor: target %q is a fleet, but the transport resolves no fleets", t.Name)
	}
	if t.Watch != nil {
		// The watch checks and rolls back through one session: one VM.
		return fmt.Errorf("executor: target %q is a fleet: it cannot have a watch", t.Name)
	}
	if o.Canary < 0 || o.Batch < 0 || o.BatchPercent < 0 || o.BatchPercent > 100 || (o.Batch > 0 && o.BatchPercent > 0) {
		return fmt.Errorf("executor: target %q: rollout canary %d, batch %d, batch percent %d", t.Name, o.Canary, o.Batch, o.BatchPercent)
	}
	return nil
}

// members resolves the fleet's VMs and checks what Fleet promises.
func (d *deploy) members(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, membersTimeout)
	defer cancel()
	ms, err := d.e.tr.(Fleet).Members(ctx, d.t.Name)
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("target %s: %w", d.t.Name, ErrNoMembers)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if m.Name == "" || m.Transport == nil || seen[m.Name] {
			return nil, fmt.Errorf("target %s: the fleet's VMs need unique names and a transport (got %q)", d.t.Name, m.Name)
		}
		seen[m.Name] = true
	}
	return ms, nil
}

// member returns the deploy of one VM of the fleet.
func (d *deploy) member(m Member) *deploy {
	j := *d.j
	return &deploy{e: d.e, lg: d.lg.With("vm", m.Name), t: d.t, j: &j, parent: d, vm: m.Name, label: m.Name + ": "}
}

// open opens the VM's session, and records a failure as its connect step.
func (v *deploy) open(ctx context.Context, m Member) error {
	sess, err := m.Transport.Open(ctx, v.t.Name, v.t.Lock, v.t.LockWait)
	if err != nil {
		v.record(StepRun{Name: v.label + "connect", ExitCode: -1, Error: v.e.live.red.line(err.Error())})
		v.lg.Error("open session", "err", err)
		return err
	}
	v.sess = sess
	return nil
}

// fleet is execute for a fleet target: it resolves the VMs, learns and
// admits on the first one, prepares them all, rolls out, and rolls back what
// it moved when a VM failed. It writes nothing but step records, the
// previous SHA and the progress of the rollout. Every VM's session, hence
// its lock, is closed before it returns, whatever happened.
func (d *deploy) fleet(ctx context.Context) (r runResult) {
	j := d.j
	r.sha, r.rollbackOn = j.Trigger.SHA, d.t.Rollback
	r.kind, r.by = j.Trigger.Kind, requester(j.Trigger)
	f := &fleetRun{keepGoing: d.t.Rollout.KeepGoing}
	r.fleet = f
	sctx, disarm := d.e.arm(ctx, d.t.Name, j.ID)
	defer disarm()

	members, err := d.members(sctx)
	if err != nil {
		d.record(StepRun{Name: "members", ExitCode: -1, Error: d.e.live.red.line(err.Error())})
		f.resolve, r.cancelled, r.cancelBy = err, sctx.Err() != nil, canceller(sctx)
		d.lg.Error("resolve the fleet's VMs", "err", err)
		return r
	}
	f.n = len(members)
	vms := make([]*deploy, len(members))
	names := make([]string, len(members))
	for i, m := range members {
		vms[i], names[i] = d.member(m), m.Name
	}
	d.lg.Info("fleet resolved", "vms", names)
	defer func() {
		for _, v := range vms {
			if v.sess != nil {
				v.sess.Close()
			}
		}
	}()

	// The first VM answers for the fleet: what it runs, and whether the job
	// may run at all.
	if err := vms[0].open(sctx, members[0]); err != nil {
		r.open, r.cancelled, r.cancelBy = err, sctx.Err() != nil, canceller(sctx)
		return r
	}
	d.sess = vms[0].sess
	if !d.admitted(ctx, sctx, &r) {
		return r
	}
	prev := r.prev
	for _, v := range vms {
		v.j.PreviousSHA, v.deployedBefore, v.recover = prev, d.deployedBefore, d.recover
	}
	f.started = true

	pre, post := splitSteps(d.t.Steps)
	if res, ok := d.prepare(sctx, vms, members, pre, prev); !ok {
		f.prepare = true
		for _, v := range res {
			if v.ran && !v.ok() {
				f.failed = append(f.failed, v)
				if v.interrupted() && r.cancelBy == "" {
					r.cancelBy = canceller(sctx)
				}
			}
		}
		disarm()
		for _, v := range vms {
			d.stashed = d.stashed || v.stashed
		}
		d.lg.Warn("fleet not deployed: a VM's preparation failed", "failed", len(f.failed), "cancelled_by", r.cancelBy)
		return r
	}

	res := d.rollout(ctx, sctx, f, vms, post, prev)
	for _, v := range res {
		if v.ran && !v.ok() {
			f.failed = append(f.failed, v)
			if v.failed != nil && errors.Is(v.failed.err, context.Canceled) && r.cancelBy == "" {
				r.cancelBy = canceller(sctx)
			}
		}
	}
	disarm() // from here on, a Cancel changes nothing
	for _, v := range vms {
		d.stashed = d.stashed || v.stashed
	}
	if len(f.failed) == 0 {
		first := vms[0]
		d.notes, d.changed, d.changedKnown, d.changedTried = first.notes, first.changed, first.changedKnown, first.changedTried
		r.notApplied = d.notApplied(ctx)
		return r
	}
	d.lg.Warn("fleet deploy failed", "failed", len(f.failed), "deployed", len(f.deployed), "cancelled_by", r.cancelBy)
	d.fleetRollback(ctx, r, vms, res)
	return r
}

// splitSteps splits a target's steps at the first checkpoint step: pre, the
// steps before it, change nothing that runs (Step.Checkpoint's contract), so
// they may run on every VM before the canary; post is the rest, from the
// checkpoint on. Without a checkpoint step nothing says which steps leave a
// VM unchanged: pre is empty and every step runs in the VM's stage.
func splitSteps(steps []Step) (pre, post []Step) {
	for i, st := range steps {
		if st.Checkpoint {
			return steps[:i], steps[i:]
		}
	}
	return nil, steps
}

// prepare opens every VM's session (the first VM's is open already), which
// takes its remote lock, and runs the steps before the checkpoint (pre) on
// it, at most prepareParallel VMs at once, under sctx. The first VM whose
// preparation fails stops the others': a VM stopped so, or never started,
// has ran false in the results. It returns what became of each VM, in the
// fleet's order, and whether every VM is ready for its stage. It returns
// once no VM's preparation runs; the sessions it opened stay open (fleet
// closes them).
func (d *deploy) prepare(sctx context.Context, vms []*deploy, members []Member, pre []Step, prev string) ([]vmResult, bool) {
	pctx, halt := context.WithCancelCause(sctx)
	defer halt(nil)
	res := make([]vmResult, len(vms))
	slots := make(chan struct{}, min(len(vms), prepareParallel))
	var wg sync.WaitGroup
	for i, v := range vms {
		res[i].vm = v.vm
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			if pctx.Err() != nil {
				return // stopped before its turn: never touched
			}
			out := v.prepareVM(pctx, members[i], pre, prev)
			if !out.ok() {
				if errors.Is(context.Cause(pctx), errPrepareHalted) && out.interrupted() {
					out.ran = false // stopped by another VM's failure: not a failure of its own
				} else {
					halt(errPrepareHalted)
				}
			}
			res[i] = out
		})
	}
	wg.Wait()
	ok := true
	for i, v := range res {
		if !v.ok() {
			ok = false
			if v.ran {
				vms[i].lg.Warn("VM preparation failed", "open", v.open, "step", v.failed)
			}
		}
	}
	return res, ok
}

// prepareVM opens the VM's session unless it is open, and runs the steps
// before the checkpoint on it.
func (v *deploy) prepareVM(ctx context.Context, m Member, pre []Step, prev string) vmResult {
	out := vmResult{vm: v.vm, ran: true}
	if v.sess == nil {
		if out.open = v.open(ctx, m); out.open != nil {
			return out
		}
	}
	out.failed, out.checkpoint = v.stepsIn(ctx, pre, v.j.Trigger.SHA, prev, "")
	return out
}

// interrupted reports whether the VM stopped because its context ended
// (transports return ctx.Err() or, from a handshake, the context's cause).
func (v vmResult) interrupted() bool {
	err := v.open
	if v.failed != nil {
		err = v.failed.err
	}
	var c *cancelCause
	return err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, errPrepareHalted) || errors.As(err, &c))
}

// stepsIn runs the steps list, a part of the target's steps, as steps runs
// them all. Only the VM's own goroutine uses v while it runs.
func (v *deploy) stepsIn(ctx context.Context, list []Step, sha, prev, prefix string) (*stepError, bool) {
	all := v.t.Steps
	v.t.Steps = list
	defer func() { v.t.Steps = all }()
	return v.steps(ctx, sha, prev, prefix)
}

// rollout runs the steps from the checkpoint on (post) stage by stage (plan)
// on the prepared VMs, the VMs of a stage in parallel under sctx, and stops
// starting stages after a failure unless the rollout keeps going. It says
// the progress, once per VM that passed, in the job's description. It
// returns what became of each VM, in the fleet's order.
func (d *deploy) rollout(ctx, sctx context.Context, f *fleetRun, vms []*deploy, post []Step, prev string) []vmResult {
	res := make([]vmResult, len(vms))
	for i, v := range vms {
		res[i].vm = v.vm
	}
	for _, stage := range plan(len(vms), *d.t.Rollout) {
		if len(f.deployed) < countRan(res) && !f.keepGoing {
			break // a VM failed: halt
		}
		done := make(chan int, len(stage))
		var wg sync.WaitGroup
		for _, i := range stage {
			wg.Go(func() {
				res[i] = vms[i].runVM(sctx, post, prev)
				done <- i
			})
		}
		for range stage {
			i := <-done
			if !res[i].ok() {
				vms[i].lg.Warn("VM failed", "open", res[i].open, "step", res[i].failed)
				continue
			}
			f.deployed = append(f.deployed, res[i].vm)
			if len(f.deployed) < len(vms) {
				d.progress(ctx, len(f.deployed), len(vms))
			}
		}
		wg.Wait()
	}
	return res
}

// countRan is how many VMs' turn came.
func countRan(res []vmResult) int {
	n := 0
	for _, v := range res {
		if v.ran {
			n++
		}
	}
	return n
}

// runVM runs the steps from the checkpoint on (post) on the prepared VM. A
// VM whose turn comes after ctx ended fails with its first step unstarted:
// nothing changed on it.
func (v *deploy) runVM(ctx context.Context, post []Step, prev string) vmResult {
	out := vmResult{vm: v.vm, ran: true}
	out.failed, out.checkpoint = v.stepsIn(ctx, post, v.j.Trigger.SHA, prev, "")
	return out
}

// progress says in the job's description, and to GitHub, that k of n VMs
// are deployed.
func (d *deploy) progress(ctx context.Context, k, n int) {
	d.j.Description = fmt.Sprintf("deploying %d/%d", k, n)
	if l := d.e.lanes[d.t.Name]; l != nil {
		l.publish(*d.j)
	}
	if err := d.e.update(context.WithoutCancel(ctx), *d.j); err != nil {
		d.lg.Error("record the rollout's progress", "err", err)
	}
}

// fleetRollback rolls back, in parallel, every VM whose fate is it, and
// records in r.fleet what became of the VMs.
func (d *deploy) fleetRollback(ctx context.Context, r runResult, vms []*deploy, res []vmResult) {
	f := r.fleet
	canRollBack := r.rollbackOn && r.prev != "" && ctx.Err() == nil
	switch {
	case !r.rollbackOn:
		f.why = "rollback is off"
	case r.prev == "":
		f.why = "no previous commit to roll back to"
	case ctx.Err() != nil:
		f.why = "deployhook shutting down"
	}
	var back []int
	for i, v := range res {
		switch fateOf(v, true, !f.keepGoing, canRollBack, r.cancelBy) {
		case fateRollBack:
			back = append(back, i)
		case fateNew:
			f.leftNew = append(f.leftNew, v.vm)
		case fateUnknown:
			f.unknown = append(f.unknown, v.vm)
		}
	}
	if len(back) == 0 {
		return
	}
	errs := make([]*stepError, len(vms))
	var wg sync.WaitGroup
	for _, i := range back {
		wg.Go(func() {
			errs[i], _ = vms[i].steps(ctx, r.prev, r.sha, "rollback: ")
		})
	}
	wg.Wait()
	ok := true
	for _, i := range back {
		if errs[i] != nil {
			ok = false
			f.rollbackFailed = append(f.rollbackFailed, errs[i])
			vms[i].lg.Error("rollback failed", "err", errs[i])
			continue
		}
		f.rolledBack = append(f.rolledBack, vms[i].vm)
	}
	d.e.opts.Observer.RolledBack(d.t.Name, ok)
}
