package executor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"
)

// memStore is a hand-written in-memory Store for the executor's tests. The SQLite
// journal (executor/store) has its own conformance tests.
type memStore struct {
	mu         sync.Mutex
	jobs       map[string]*Job
	order      []string
	deliveries map[string]string
	outbox     []OwedReport
	nextID     int64
}

func newMemStore() *memStore {
	return &memStore{jobs: map[string]*Job{}, deliveries: map[string]string{}}
}

func (m *memStore) CreateJob(ctx context.Context, j Job, owe ...Report) (string, error) {
	id, err := m.createJob(j)
	if err != nil {
		return id, err
	}
	for _, r := range owe {
		m.Owe(ctx, r)
	}
	return j.ID, nil
}

func (m *memStore) createJob(j Job) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := j.Trigger.Delivery; d != "" {
		d += "\x00" + j.Target
		if id, ok := m.deliveries[d]; ok {
			return id, ErrDuplicate
		}
		m.deliveries[d] = j.ID
	}
	jc := j
	m.jobs[j.ID] = &jc
	m.order = append(m.order, j.ID)
	return "", nil
}

func (m *memStore) UpdateJob(ctx context.Context, j Job, owe ...Report) error {
	m.mu.Lock()
	old, ok := m.jobs[j.ID]
	if !ok {
		m.mu.Unlock()
		return ErrNotFound
	}
	j.Steps, j.Deployment = old.Steps, old.Deployment
	*old = j
	m.mu.Unlock()
	for _, r := range owe {
		m.Owe(ctx, r)
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
	var out []Job
	for i := len(m.order) - 1; i >= 0; i-- {
		j := m.jobs[m.order[i]]
		if target != "" && j.Target != target {
			continue
		}
		if len(states) > 0 && !slices.Contains(states, j.State) {
			continue
		}
		jc := *j
		jc.Steps = nil
		out = append(out, jc)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

func (m *memStore) LastSuccess(ctx context.Context, target string) (Job, error) {
	js, _ := m.Jobs(ctx, target, 1, StateSuccess)
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
	for i := range j.Steps {
		if j.Steps[i].Seq == s.Seq {
			j.Steps[i] = s
			return nil
		}
	}
	j.Steps = append(j.Steps, s)
	sort.Slice(j.Steps, func(a, b int) bool { return j.Steps[a].Seq < j.Steps[b].Seq })
	return nil
}

func (m *memStore) Owe(_ context.Context, r Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	m.outbox = append(m.outbox, OwedReport{ID: m.nextID, Report: r, Created: time.Now()})
	return nil
}

func (m *memStore) Owed(_ context.Context, limit int) ([]OwedReport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := min(limit, len(m.outbox))
	return slices.Clone(m.outbox[:n]), nil
}

func (m *memStore) Settle(_ context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outbox = slices.DeleteFunc(m.outbox, func(o OwedReport) bool { return o.ID == id })
	return nil
}

func (m *memStore) Retry(_ context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.outbox {
		if m.outbox[i].ID == id {
			m.outbox[i].Tries++
		}
	}
	return nil
}

func (m *memStore) Close() error { return nil }

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
	calls   []Command
	opens   int
	closes  int
}

func (f *fakeTransport) Open(ctx context.Context, target, lock string, wait time.Duration) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.openErr != nil {
		return nil, f.openErr
	}
	return &fakeSession{f: f}, nil
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
	behave, changed := s.f.behave, s.f.changed
	s.f.mu.Unlock()
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
