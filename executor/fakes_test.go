package executor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"
)

// memStore is a hand-written in-memory Store for the executor's tests that keeps
// the Store contract of types.go to the letter: it passes the conformance
// suite executor/store/storetest, as the SQLite journal does (TestMemStore).
type memStore struct {
	mu         sync.Mutex
	jobs       map[string]*Job
	order      []string          // job ids, in the order recorded
	deliveries map[string]string // delivery GUID + "\x00" + target → job id
	bodies     map[string]string // target + "\x00" + body hash → job id
	owners     map[string]Owner
	outbox     []OwedReport
	nextID     int64
	closed     bool
}

func newMemStore() *memStore {
	return &memStore{jobs: map[string]*Job{}, deliveries: map[string]string{},
		bodies: map[string]string{}, owners: map[string]Owner{}}
}

func (m *memStore) CreateJob(_ context.Context, j Job, owe ...Report) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if j.ID == "" || j.Target == "" {
		return "", errors.New("memstore: job without id or target")
	}
	if _, ok := m.jobs[j.ID]; ok {
		return "", fmt.Errorf("memstore: job %s exists", j.ID)
	}
	delivery := j.Trigger.Delivery + "\x00" + j.Target
	if j.Trigger.Delivery != "" {
		if id, ok := m.deliveries[delivery]; ok {
			return id, ErrDuplicate
		}
	}
	body := j.Target + "\x00" + j.Trigger.BodyHash
	if j.Trigger.BodyHash != "" {
		if id, ok := m.bodies[body]; ok {
			return id, ErrDuplicate
		}
	}
	if j.Trigger.Delivery != "" {
		m.deliveries[delivery] = j.ID
	}
	if j.Trigger.BodyHash != "" {
		m.bodies[body] = j.ID
	}
	jc := j
	jc.Steps = nil
	for _, st := range j.Steps {
		st.Job = j.ID
		putStep(&jc, st)
	}
	m.jobs[j.ID] = &jc
	m.order = append(m.order, j.ID)
	for _, r := range owe {
		m.owe(r)
	}
	return j.ID, nil
}

func (m *memStore) UpdateJob(_ context.Context, j Job, owe ...Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.jobs[j.ID]
	if !ok {
		return ErrNotFound
	}
	// Target, trigger, creation time, steps and deployment are not updated.
	old.State, old.Description, old.PreviousSHA, old.Owner = j.State, j.Description, j.PreviousSHA, j.Owner
	old.Started, old.Finished = j.Started, j.Finished
	for _, r := range owe {
		m.owe(r)
	}
	return nil
}

func (m *memStore) SetDeployment(_ context.Context, id string, dep int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return ErrNotFound
	}
	j.Deployment = dep
	return nil
}

func (m *memStore) Job(_ context.Context, id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return Job{}, ErrNotFound
	}
	jc := *j
	jc.Steps = slices.Clone(j.Steps)
	return jc, nil
}

func (m *memStore) Jobs(_ context.Context, target string, limit int, states ...State) ([]Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobsLocked(func(j *Job) bool {
		return (target == "" || j.Target == target) && (len(states) == 0 || slices.Contains(states, j.State))
	}, limit), nil
}

// jobsLocked returns the jobs that keep accepts, newest first, at most limit
// (all if limit <= 0), without steps.
func (m *memStore) jobsLocked(keep func(*Job) bool, limit int) []Job {
	var out []Job
	for _, j := range m.newestFirst() {
		if !keep(j) {
			continue
		}
		jc := *j
		jc.Steps = nil
		out = append(out, jc)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// newestFirst lists the jobs newest (by creation) first; of jobs created at
// the same time, the one recorded last first.
func (m *memStore) newestFirst() []*Job {
	jobs := make([]*Job, 0, len(m.order))
	for _, id := range slices.Backward(m.order) {
		jobs = append(jobs, m.jobs[id])
	}
	slices.SortStableFunc(jobs, func(a, b *Job) int { return b.Created.Compare(a.Created) })
	return jobs
}

func (m *memStore) LastSuccess(ctx context.Context, target string) (Job, error) {
	js, _ := m.Jobs(ctx, target, 0, StateSuccess) // newest created first
	if len(js) == 0 {
		return Job{}, ErrNotFound
	}
	last := js[0]
	for _, j := range js[1:] {
		if j.Finished.After(last.Finished) {
			last = j
		}
	}
	return last, nil
}

func (m *memStore) Deployed(_ context.Context, target, sha string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	js := m.jobsLocked(func(j *Job) bool {
		return j.Target == target && j.Trigger.SHA == sha && j.State == StateSuccess
	}, 1)
	if len(js) == 0 {
		return Job{}, ErrNotFound
	}
	return js[0], nil
}

func (m *memStore) AddStep(_ context.Context, s StepRun) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[s.Job]
	if !ok {
		return ErrNotFound
	}
	putStep(j, s)
	return nil
}

// putStep adds s to j's steps, or replaces the one with its seq, keeping them
// in seq order.
func putStep(j *Job, s StepRun) {
	i, found := slices.BinarySearchFunc(j.Steps, s.Seq, func(st StepRun, seq int) int { return cmp.Compare(st.Seq, seq) })
	if found {
		j.Steps[i] = s
		return
	}
	j.Steps = slices.Insert(j.Steps, i, s)
}

func (m *memStore) Beat(_ context.Context, o Owner) error {
	if o.ID == "" {
		return errors.New("memstore: owner without id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.owners[o.ID] = o
	return nil
}

func (m *memStore) Owner(_ context.Context, id string) (Owner, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.owners[id]
	if !ok {
		return Owner{}, ErrNotFound
	}
	return o, nil
}

func (m *memStore) Orphans(_ context.Context, now time.Time) ([]Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobsLocked(func(j *Job) bool {
		if j.State.Final() {
			return false
		}
		o, ok := m.owners[j.Owner]
		return j.Owner == "" || !ok || o.Until.Before(now)
	}, 0), nil
}

func (m *memStore) AdoptSuccess(_ context.Context, id, from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok || j.Owner != from || j.State != StateSuccess {
		return ErrNotFound
	}
	j.Owner = to
	return nil
}

func (m *memStore) Adopt(_ context.Context, id, from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok || j.Owner != from || j.State.Final() {
		return ErrNotFound
	}
	j.Owner = to
	return nil
}

func (m *memStore) Prune(_ context.Context, before time.Time, keep int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	newestOK := map[string]*Job{} // target → its successful job that finished last (LastSuccess's)
	for _, j := range m.newestFirst() {
		if last := newestOK[j.Target]; j.State == StateSuccess && (last == nil || j.Finished.After(last.Finished)) {
			newestOK[j.Target] = j
		}
	}
	rank := map[string]int{} // target → jobs seen so far, newest first, in every state
	doomed := map[string]bool{}
	for _, j := range m.newestFirst() {
		rank[j.Target]++
		if !j.State.Final() || newestOK[j.Target] == j {
			continue
		}
		if j.Created.Before(before) || (keep > 0 && rank[j.Target] > keep) {
			doomed[j.ID] = true
		}
	}
	m.order = slices.DeleteFunc(m.order, func(id string) bool { return doomed[id] })
	for id := range doomed {
		delete(m.jobs, id)
	}
	maps.DeleteFunc(m.deliveries, func(_, id string) bool { return doomed[id] })
	maps.DeleteFunc(m.bodies, func(_, id string) bool { return doomed[id] })
	maps.DeleteFunc(m.owners, func(_ string, o Owner) bool { return o.Until.Before(before) })
	return len(doomed), nil
}

// Check fails once the store is closed: a closed journal takes no writes.
func (m *memStore) Check(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("memstore: closed")
	}
	return nil
}

func (m *memStore) Owe(_ context.Context, r Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.owe(r)
	return nil
}

func (m *memStore) owe(r Report) {
	m.nextID++
	m.outbox = append(m.outbox, OwedReport{ID: m.nextID, Report: r, Created: time.Now()})
}

func (m *memStore) Owed(_ context.Context, limit int) ([]OwedReport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.outbox)
	if limit > 0 {
		n = min(limit, n)
	}
	return slices.Clone(m.outbox[:n]), nil
}

func (m *memStore) Settle(_ context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.outbox, func(o OwedReport) bool { return o.ID == id })
	if i < 0 {
		return ErrNotFound
	}
	m.outbox = slices.Delete(m.outbox, i, i+1)
	return nil
}

func (m *memStore) Retry(_ context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.outbox, func(o OwedReport) bool { return o.ID == id })
	if i < 0 {
		return ErrNotFound
	}
	m.outbox[i].Tries++
	return nil
}

// Close marks the store closed for Check; every other method keeps working,
// for tests that read the journal after the executor stopped.
func (m *memStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *memStore) owedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.outbox)
}

// fakeTransport runs commands by looking up their script in a table of behaviours.
type fakeTransport struct {
	mu      sync.Mutex
	openErr error
	// behave decides what a command does: exit code and error. It may block.
	behave func(ctx context.Context, c Command) (int, error)
	// changed is what the "changed files" command prints; empty: it fails.
	changed string
	// contains is the exit code of the "contains" probe for a SHA and the
	// previous one; nil: linear history (sha(n) contains sha(m) for m <= n).
	contains func(sha, prev string) int
	calls    []Command
	opens    int
	closes   int
	live     int // sessions open now
	maxLive  int // the most sessions open at once
}

func (f *fakeTransport) Open(ctx context.Context, target, lock string, wait time.Duration) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.openErr != nil {
		return nil, f.openErr
	}
	f.live++
	f.maxLive = max(f.maxLive, f.live)
	return &fakeSession{f: f}, nil
}

// deploySteps lists the commands that ran for sha, probes left out.
func (f *fakeTransport) deploySteps(sha string) []string {
	var out []string
	for _, c := range f.commands() {
		if c.Env["DEPLOYHOOK_SHA"] == sha && c.Name != "contains" && c.Name != "changed files" {
			out = append(out, c.Name)
		}
	}
	return out
}

func (f *fakeTransport) commands() []Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

type fakeSession struct {
	f      *fakeTransport
	closed bool
}

func (s *fakeSession) Run(ctx context.Context, c Command, out io.Writer) (int, error) {
	s.f.mu.Lock()
	s.f.calls = append(s.f.calls, c)
	behave, changed, contains := s.f.behave, s.f.changed, s.f.contains
	s.f.mu.Unlock()
	if c.Name == "contains" {
		if contains == nil {
			contains = linearContains
		}
		return contains(c.Env["DEPLOYHOOK_SHA"], c.Env["DEPLOYHOOK_PREVIOUS_SHA"]), nil
	}
	if c.Name == "changed files" {
		if changed == "" {
			return 1, nil
		}
		_, err := io.WriteString(out, changed)
		return 0, err
	}
	fmt.Fprintf(out, "ran %s\n", c.Name)
	if behave == nil {
		return 0, nil
	}
	return behave(ctx, c)
}

func (s *fakeSession) Close() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.f.closes++
		s.f.live--
	}
	return nil
}

// fakeReporter records reports; fail decides whether one attempt fails.
type fakeReporter struct {
	mu       sync.Mutex
	sent     []Report
	attempts int
	fail     func(r Report) error
	nextDep  int64
}

func (f *fakeReporter) Report(_ context.Context, r Report) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.fail != nil {
		if err := f.fail(r); err != nil {
			return 0, err
		}
	}
	if r.Deployment == 0 {
		f.nextDep++
		r.Deployment = f.nextDep
	}
	f.sent = append(f.sent, r)
	return r.Deployment, nil
}

func (f *fakeReporter) reports() []Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

// statesOf lists the states reported for sha, in order.
func (f *fakeReporter) statesOf(sha string) []State {
	var out []State
	for _, r := range f.reports() {
		if r.SHA == sha {
			out = append(out, r.State)
		}
	}
	return out
}

func (f *fakeReporter) last(sha string) Report {
	var last Report
	for _, r := range f.reports() {
		if r.SHA == sha {
			last = r
		}
	}
	return last
}

// testLogger routes slog to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func sha(n int) string {
	return fmt.Sprintf("%07x%033x", n+0xa000000, n)
}

func stepNames(cs []Command) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// idle reports whether no job is running or waiting on any target.
func (e *Executor) idle() bool {
	for _, l := range e.lanes {
		l.mu.Lock()
		busy := l.running != nil || l.pending != nil
		l.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// shaNum is n for sha(n).
func shaNum(s string) int {
	var n int
	fmt.Sscanf(s[7:], "%x", &n)
	return n
}

// linearContains is the history sha(1) ← sha(2) ← … ← sha(59) of branch main;
// sha(60) and later are commits off the branch. It answers like the contains
// probe: 0 contained, 1 not.
func linearContains(sha, prev string) int {
	if n, p := shaNum(sha), shaNum(prev); n <= p && p < 60 {
		return 0
	}
	return 1
}

// fakeCommits is GitHub's commit graph for the compare API: the history of
// linearContains, with "main" as the branch head.
type fakeCommits struct {
	mu    sync.Mutex
	err   error // every answer fails with it when set
	calls []string
}

func (f *fakeCommits) Contains(_ context.Context, repo, ref, sha string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, repo+" "+ref+" "+sha[:7])
	switch {
	case f.err != nil:
		return false, f.err
	case repo != "acme/app":
		return false, fmt.Errorf("repository %s: %w", repo, ErrNotFound)
	case ref == "main":
		return shaNum(sha) < 60, nil
	}
	return linearContains(sha, ref) == 0, nil
}

func (f *fakeCommits) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// errDiskFull is what faultStore's writes fail with.
var errDiskFull = errors.New("database or disk is full")

// faultStore is a memStore whose writes (and Check) fail on command, as a
// journal on a full disk or a read-only file system does. Reads keep working.
type faultStore struct {
	*memStore
	mu      sync.Mutex
	failing map[string]bool // method name → fails; "*" fails every write
}

func (f *faultStore) fail(methods ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = map[string]bool{}
	for _, m := range methods {
		f.failing[m] = true
	}
}

func (f *faultStore) err(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing[method] || f.failing["*"] {
		return fmt.Errorf("%s: %w", method, errDiskFull)
	}
	return nil
}

func (f *faultStore) CreateJob(ctx context.Context, j Job, owe ...Report) (string, error) {
	if err := f.err("CreateJob"); err != nil {
		return "", err
	}
	return f.memStore.CreateJob(ctx, j, owe...)
}

func (f *faultStore) UpdateJob(ctx context.Context, j Job, owe ...Report) error {
	if err := f.err("UpdateJob"); err != nil {
		return err
	}
	return f.memStore.UpdateJob(ctx, j, owe...)
}

func (f *faultStore) SetDeployment(ctx context.Context, id string, dep int64) error {
	if err := f.err("SetDeployment"); err != nil {
		return err
	}
	return f.memStore.SetDeployment(ctx, id, dep)
}

func (f *faultStore) AddStep(ctx context.Context, s StepRun) error {
	if err := f.err("AddStep"); err != nil {
		return err
	}
	return f.memStore.AddStep(ctx, s)
}

func (f *faultStore) Beat(ctx context.Context, o Owner) error {
	if err := f.err("Beat"); err != nil {
		return err
	}
	return f.memStore.Beat(ctx, o)
}

func (f *faultStore) AdoptSuccess(ctx context.Context, id, from, to string) error {
	if err := f.err("AdoptSuccess"); err != nil {
		return err
	}
	return f.memStore.AdoptSuccess(ctx, id, from, to)
}

func (f *faultStore) Adopt(ctx context.Context, id, from, to string) error {
	if err := f.err("Adopt"); err != nil {
		return err
	}
	return f.memStore.Adopt(ctx, id, from, to)
}

func (f *faultStore) Prune(ctx context.Context, before time.Time, keep int) (int, error) {
	if err := f.err("Prune"); err != nil {
		return 0, err
	}
	return f.memStore.Prune(ctx, before, keep)
}

func (f *faultStore) Check(ctx context.Context) error {
	if err := f.err("Check"); err != nil {
		return err
	}
	return f.memStore.Check(ctx)
}

func (f *faultStore) Owe(ctx context.Context, r Report) error {
	if err := f.err("Owe"); err != nil {
		return err
	}
	return f.memStore.Owe(ctx, r)
}

func (f *faultStore) Settle(ctx context.Context, id int64) error {
	if err := f.err("Settle"); err != nil {
		return err
	}
	return f.memStore.Settle(ctx, id)
}

func (f *faultStore) Retry(ctx context.Context, id int64) error {
	if err := f.err("Retry"); err != nil {
		return err
	}
	return f.memStore.Retry(ctx, id)
}

// NewMemStore returns a new, empty memStore, and NewFaultStore a faultStore
// on one that fails nothing until told, for the conformance suite of Store,
// which runs in package executor_test (executor/store/storetest imports
// this package).
func NewMemStore() Store   { return newMemStore() }
func NewFaultStore() Store { return &faultStore{memStore: newMemStore()} }
