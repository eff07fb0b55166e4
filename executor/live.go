package executor

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The kinds of LogEvent.
const (
	EventStep = "step" // a step started: Step, Name
	EventLine = "line" // a line of output: Step, Line
	EventDone = "done" // a step ended: Step, Exit, Millis
	EventEnd  = "end"  // the job is final: State, Description
)

// LogEvent is one event of a running job's live log. IDs increase from 1
// within a job.
type LogEvent struct {
	ID          int64     `json:"id"`
	Kind        string    `json:"kind"`           // EventStep, EventLine, EventDone or EventEnd
	Step        int       `json:"step,omitempty"` // the step's Seq
	Name        string    `json:"name,omitempty"`
	Line        string    `json:"line,omitempty"` // one line, without its newline, redacted
	Exit        int       `json:"exit,omitempty"`
	Millis      int64     `json:"ms,omitempty"`
	State       State     `json:"state,omitempty"`
	Description string    `json:"description,omitempty"`
	Time        time.Time `json:"time"`
}

const (
	// journalEvery is how often, at most, a running step's record is rewritten
	// in the journal with its output so far.
	journalEvery = 250 * time.Millisecond
	// partialAfter is how long the end of the output may wait for its newline
	// before it is published as a line of its own.
	partialAfter = time.Second
	// feedRetain is how long a final job's live log is kept, so that a follower
	// that reconnects right after the end still sees EventEnd.
	feedRetain = time.Minute
	// followBuffer is how many events a follower may lag behind the deploy
	// before it is dropped (its channel closed).
	followBuffer = 1024
	// markerReserve is the room kept for the cut marker line in a step's output.
	markerReserve = 48
	// journalWriteTimeout bounds one intermediate write of a step record.
	journalWriteTimeout = 10 * time.Second
	// redacted replaces every secret in a step's output.
	redacted = "[redacted]"
)

// live holds the live logs of the jobs this process runs, or that someone
// follows while they wait in its queue.
type live struct {
	limit int       // Options.OutputLimit: the bound of each step's output
	red   *redactor // Options.Redact
	echo  io.Writer // Options.Output, or nil

	mu    sync.Mutex
	feeds map[string]*feed // job id → its live log
}

func newLive(opts Options) *live {
	return &live{limit: opts.OutputLimit, red: newRedactor(opts.Redact), echo: opts.Output, feeds: map[string]*feed{}}
}

// get returns job's live log, or nil.
func (lv *live) get(job string) *feed {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.feeds[job]
}

// open returns job's live log, making it if there is none.
func (lv *live) open(job string) *feed {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	f := lv.feeds[job]
	if f == nil {
		f = &feed{limit: lv.limit, subs: map[*follower]struct{}{}}
		lv.feeds[job] = f
	}
	return f
}

// finish publishes the end of j (a final job) to its live log, if it has
// one, and forgets the log feedRetain later.
func (lv *live) finish(j Job) {
	f := lv.get(j.ID)
	if f == nil || !f.finish(j.State, j.Description) {
		return
	}
	time.AfterFunc(feedRetain, func() {
		lv.mu.Lock()
		defer lv.mu.Unlock()
		if lv.feeds[j.ID] == f && f.ended() {
			delete(lv.feeds, j.ID) // not when a watch reopened it: its end comes later
		}
	})
}

// drop forgets job's live log and closes its followers without an end: this
// process lost the job (a replica's lane moved), and what ends it is the
// journal's, which Follow then answers from.
func (lv *live) drop(job string) {
	lv.mu.Lock()
	f := lv.feeds[job]
	delete(lv.feeds, job)
	lv.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for fl := range f.subs {
		f.dropLocked(fl)
	}
}

// reopen returns job's live log for a phase after the job's end (the
// post-deploy watch): a log that ended takes events again, with IDs going on
// from its last, until finish publishes its end once more.
func (lv *live) reopen(job string) *feed {
	f := lv.open(job)
	f.mu.Lock()
	f.end = nil
	f.mu.Unlock()
	return f
}

// Follow returns the live log of job: every event with an ID greater than
// after that this process still holds for it, then the new ones as they
// happen. The channel is closed after EventEnd, when ctx ends, when Run has
// returned, and when the reader falls more than a thousand events behind (it
// is dropped so that it never slows the deploy; it may follow again with the
// last ID it read). A reader tells the end of the job from the others by the
// EventEnd it read last.
//
// A running job's events are kept in memory, each step's lines within
// Options.OutputLimit as in the journal (the first quarter and the end, the
// dropped middle as one EventLine carrying the cut marker), and kept for a
// minute after the job ends. A job queued in this process may be followed
// before it runs. For a job this process does not run (another process's, or
// one that ended more than a minute ago) Follow returns an error wrapping
// ErrNotFound: the journal has its record. It is safe for concurrent use.
func (e *Executor) Follow(ctx context.Context, job string, after int64) (<-chan LogEvent, error) {
	if f := e.live.get(job); f != nil {
		return e.follow(ctx, f, after), nil
	}
	j, err := e.store.Job(ctx, job)
	if err != nil {
		return nil, err
	}
	if j.State.Final() || j.Owner != e.opts.Owner.ID || e.lanes[j.Target] == nil {
		return nil, fmt.Errorf("job %s has no live log in this process: %w", job, ErrNotFound)
	}
	f := e.live.open(job)
	ch := e.follow(ctx, f, after)
	// The job may have ended between the read and open, and its end then
	// found no live log to publish to.
	if j, err := e.store.Job(ctx, job); err == nil && j.State.Final() {
		e.live.finish(j)
	}
	return ch, nil
}

// follow adds a follower to f and closes it when ctx ends or Run returns.
func (e *Executor) follow(ctx context.Context, f *feed, after int64) <-chan LogEvent {
	fl, ch := f.follow(after)
	if fl == nil {
		return ch
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-e.stopped:
		case <-fl.gone:
			return
		}
		f.drop(fl)
	}()
	return ch
}

// feed is one job's live log.
type feed struct {
	limit int

	mu    sync.Mutex
	last  int64 // the last event ID given
	steps []*stepLog
	end   *LogEvent
	subs  map[*follower]struct{}
}

// follower is one reader of a feed.
type follower struct {
	ch   chan LogEvent
	gone chan struct{} // closed when ch is
}

// stepLog is what a feed keeps of one step: its start, the first lines up to
// a quarter of the limit (head), the last ones within the rest (tail), how
// much was dropped between them, and its end.
type stepLog struct {
	start     LogEvent
	head      []liveLine
	headBytes int
	headShut  bool // a line did not fit: the rest goes to the tail
	tail      []liveLine
	tailFrom  int // tail[tailFrom:] are kept
	tailBytes int
	cut       int64 // bytes dropped
	cutID     int64 // the ID of the last line dropped: the marker's
	cutTime   time.Time
	done      *LogEvent
}

// liveLine is a line event, kept small: the step's other fields are known.
type liveLine struct {
	id   int64
	time time.Time
	line string
}

func (s *stepLog) event(l liveLine) LogEvent {
	return LogEvent{ID: l.id, Kind: EventLine, Step: s.start.Step, Line: l.line, Time: l.time}
}

// caps returns the bytes of a step's output kept at its start and at its end.
func caps(limit int) (head, tail int) {
	head = limit / 4
	return head, max(limit-head-markerReserve, head)
}

// maxLine is the longest line a step's output is cut into, so that any line
// fits the head and the tail.
func maxLine(limit int) int {
	head, _ := caps(limit)
	return max(head-1, 1)
}

// publish gives ev the next ID and sends it to the followers, dropping those
// that do not keep up. f.mu is held.
func (f *feed) publish(ev LogEvent) LogEvent {
	f.last++
	ev.ID = f.last
	for fl := range f.subs {
		select {
		case fl.ch <- ev:
		default:
			f.dropLocked(fl)
		}
	}
	return ev
}

// startStep publishes the start of step seq.
func (f *feed) startStep(seq int, name string) *stepLog {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &stepLog{start: f.publish(LogEvent{Kind: EventStep, Step: seq, Name: name, Time: time.Now()})}
	f.steps = append(f.steps, s)
	return s
}

// line publishes a line of step s and keeps it within the limit.
func (f *feed) line(s *stepLog, line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := f.publish(LogEvent{Kind: EventLine, Step: s.start.Step, Line: line, Time: time.Now()})
	l := liveLine{id: ev.ID, time: ev.Time, line: line}
	n := len(line) + 1
	headCap, tailCap := caps(f.limit)
	if !s.headShut && s.headBytes+n <= headCap {
		s.head = append(s.head, l)
		s.headBytes += n
		return
	}
	s.headShut = true
	s.tail = append(s.tail, l)
	s.tailBytes += n
	for s.tailBytes > tailCap && s.tailFrom < len(s.tail)-1 {
		old := s.tail[s.tailFrom]
		s.tail[s.tailFrom] = liveLine{}
		s.tailFrom++
		s.tailBytes -= len(old.line) + 1
		s.cut += int64(len(old.line) + 1)
		s.cutID, s.cutTime = old.id, old.time
	}
	if s.tailFrom > 64 && s.tailFrom > len(s.tail)/2 {
		s.tail = slices.Delete(s.tail, 0, s.tailFrom)
		s.tailFrom = 0
	}
}

// output returns step s's output as the journal keeps it: its lines, each
// ending in a newline, with the cut marker for the dropped middle.
func (f *feed) output(s *stepLog) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	b.Grow(s.headBytes + s.tailBytes + markerReserve)
	for _, l := range s.head {
		b.WriteString(l.line)
		b.WriteByte('\n')
	}
	if s.cut > 0 {
		b.WriteString(CutMarker(s.cut))
		b.WriteByte('\n')
	}
	for _, l := range s.tail[s.tailFrom:] {
		b.WriteString(l.line)
		b.WriteByte('\n')
	}
	return b.String()
}

// doneStep publishes the end of step s.
func (f *feed) doneStep(s *stepLog, exit int, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := f.publish(LogEvent{Kind: EventDone, Step: s.start.Step, Exit: exit, Millis: d.Milliseconds(), Time: time.Now()})
	s.done = &ev
}

// ended reports whether the end of the job was published.
func (f *feed) ended() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.end != nil
}

// finish publishes the end of the job and closes every follower. It reports
// false when the end was published before.
func (f *feed) finish(st State, desc string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.end != nil {
		return false
	}
	ev := f.publish(LogEvent{Kind: EventEnd, State: st, Description: desc, Time: time.Now()})
	f.end = &ev
	for fl := range f.subs {
		f.dropLocked(fl)
	}
	return true
}

// follow returns a channel holding the events after after, and the follower
// that receives the next ones (nil when the job has ended: the channel is
// closed already).
func (f *feed) follow(after int64) (*follower, chan LogEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	backlog := f.since(after)
	ch := make(chan LogEvent, len(backlog)+followBuffer)
	for _, ev := range backlog {
		ch <- ev
	}
	if f.end != nil {
		close(ch)
		return nil, ch
	}
	fl := &follower{ch: ch, gone: make(chan struct{})}
	f.subs[fl] = struct{}{}
	return fl, ch
}

// since returns the events kept with an ID greater than after, in order.
// f.mu is held.
func (f *feed) since(after int64) []LogEvent {
	var out []LogEvent
	add := func(ev LogEvent) {
		if ev.ID > after {
			out = append(out, ev)
		}
	}
	for _, s := range f.steps {
		if s.done != nil && s.done.ID <= after {
			continue
		}
		add(s.start)
		for _, l := range s.head {
			add(s.event(l))
		}
		if s.cut > 0 {
			add(LogEvent{ID: s.cutID, Kind: EventLine, Step: s.start.Step, Line: CutMarker(s.cut), Time: s.cutTime})
		}
		for _, l := range s.tail[s.tailFrom:] {
			add(s.event(l))
		}
		if s.done != nil {
			add(*s.done)
		}
	}
	if f.end != nil {
		add(*f.end)
	}
	return out
}

// drop closes fl's channel unless it is closed already.
func (f *feed) drop(fl *follower) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropLocked(fl)
}

func (f *feed) dropLocked(fl *follower) {
	if _, ok := f.subs[fl]; !ok {
		return
	}
	delete(f.subs, fl)
	close(fl.ch)
	close(fl.gone)
}

// stepOutput is the writer a step's output goes to. It cuts the output into
// lines (at most maxLine bytes), redacts each one and publishes it to the
// job's live log, which keeps the journal's copy; the end of the output that
// has no newline yet is published partialAfter later or when the step ends.
// Every published line also goes to Options.Output. It is safe for
// concurrent use.
type stepOutput struct {
	lv    *live
	f     *feed
	s     *stepLog
	echo  io.Writer     // nil: none
	dirty chan struct{} // capacity 1: the journal's copy changed

	mu      sync.Mutex
	partial []byte    // output after the last newline
	since   time.Time // when partial became non-empty
	timer   *time.Timer
	closed  bool
}

func (lv *live) output(f *feed, s *stepLog, name string) *stepOutput {
	o := &stepOutput{lv: lv, f: f, s: s, dirty: make(chan struct{}, 1)}
	if lv.echo != nil {
		o.echo = prefixWriter(lv.echo, name)
	}
	return o
}

func (o *stepOutput) Write(p []byte) (int, error) {
	n := len(p)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return n, nil // the step has ended: what comes late is not its output
	}
	most := maxLine(o.lv.limit)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			o.partial = append(o.partial, p...)
			break
		}
		if len(o.partial) == 0 && i <= most {
			o.emit(p[:i]) // the common case: a whole line in one write
		} else {
			o.partial = append(o.partial, p[:i]...)
			for len(o.partial) > most {
				o.emitPrefix(most)
			}
			o.emit(o.partial)
			o.partial = o.partial[:0]
		}
		p = p[i+1:]
	}
	for len(o.partial) > most {
		o.emitPrefix(most)
	}
	switch {
	case len(o.partial) == 0:
		o.since = time.Time{}
	case o.since.IsZero():
		o.since = time.Now()
		if o.timer == nil {
			o.timer = time.AfterFunc(partialAfter, o.tick)
		} else {
			o.timer.Reset(partialAfter)
		}
	}
	return n, nil
}

// tick publishes the partial line once it has waited partialAfter.
func (o *stepOutput) tick() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || len(o.partial) == 0 {
		return
	}
	if wait := partialAfter - time.Since(o.since); wait > 0 {
		o.timer.Reset(wait)
		return
	}
	o.emitPrefix(len(o.partial))
	if len(o.partial) > 0 { // the start of a secret, held back
		o.since = time.Now()
		o.timer.Reset(partialAfter)
	} else {
		o.since = time.Time{}
	}
}

// emitPrefix publishes at most n bytes of the partial line as a line, but
// neither a start of a secret at its end (it could go on in the next write)
// nor half a UTF-8 sequence, unless that leaves nothing to publish.
func (o *stepOutput) emitPrefix(n int) {
	n = min(n, len(o.partial))
	cut := n - o.lv.red.holdback(o.partial[:n])
	for cut > 0 && cut < len(o.partial) && !utf8.RuneStart(o.partial[cut]) {
		cut--
	}
	if cut <= 0 {
		cut = n
	}
	o.emit(o.partial[:cut])
	o.partial = append(o.partial[:0], o.partial[cut:]...)
}

// emit publishes one line. o.mu is held.
func (o *stepOutput) emit(b []byte) {
	b = bytes.TrimSuffix(b, []byte{'\r'})
	line := o.lv.red.line(string(b))
	o.f.line(o.s, line)
	if o.echo != nil {
		_, _ = io.WriteString(o.echo, line+"\n")
	}
	select {
	case o.dirty <- struct{}{}:
	default:
	}
}

// close publishes what is left of the output and refuses any more.
func (o *stepOutput) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	o.closed = true
	if o.timer != nil {
		o.timer.Stop()
	}
	if len(o.partial) > 0 {
		o.emit(o.partial)
		o.partial = nil
	}
}

// journal rewrites rec in the journal with the output so far whenever it
// changed, at most every journalEvery, until stop is closed. Its writes are
// best effort: the step's final record is written after it returns.
func (d *deploy) journal(rec StepRun, o *stepOutput, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-o.dirty:
		}
		rec.Output = o.f.output(o.s)
		rec.Duration = time.Since(rec.Started)
		ctx, cancel := context.WithTimeout(context.Background(), journalWriteTimeout)
		err := d.e.jr.wrote(d.e.addStep(ctx, d.t.Name, rec)) // fenced on a replica
		cancel()
		if err != nil {
			d.lg.Warn("record a running step's output", "step", rec.Name, "err", err)
		}
		if !pauseOr(stop, journalEvery) {
			return
		}
	}
}

// pauseOr waits d, or until stop is closed; it reports false when it was.
func pauseOr(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// redactor replaces secrets in lines of output.
type redactor struct {
	secrets []string          // longest first
	r       *strings.Replacer // nil: no secrets
}

func newRedactor(secrets []string) *redactor {
	var s []string
	for _, v := range secrets {
		if v != "" && !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return &redactor{}
	}
	// Of two secrets that start at one place, the longer one is replaced.
	slices.SortFunc(s, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(s))
	for _, v := range s {
		pairs = append(pairs, v, redacted)
	}
	return &redactor{secrets: s, r: strings.NewReplacer(pairs...)}
}

// line returns s with every secret replaced by [redacted].
func (r *redactor) line(s string) string {
	// Most lines carry no secret: finding none is cheaper than a Replace
	// that copies the line.
	for _, v := range r.secrets {
		if strings.Contains(s, v) {
			return r.r.Replace(s)
		}
	}
	return s
}

// holdback returns the length of the longest end of p that is the start of a
// secret (and not a whole one): what must wait for the next write before p
// is cut there.
func (r *redactor) holdback(p []byte) int {
	best := 0
	for _, s := range r.secrets {
		for k := min(len(s)-1, len(p)); k > best; k-- {
			if string(p[len(p)-k:]) == s[:k] {
				best = k
				break
			}
		}
	}
	return best
}
