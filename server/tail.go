package server

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// tailEvery is how often a tailed stream reads its job from the journal: one
// read per interval per stream bounds what a page costs the journal. The
// executor writes a running step's output at most every 250 ms.
const tailEvery = 500 * time.Millisecond

// eventReset is the kind of the event that tells the page to clear the
// steps' output: the events after it replay the job from its start. It is
// sent when a stream cannot resume after the browser's Last-Event-ID (an ID
// of the other kind of stream, or a position in output the journal no longer
// holds).
const eventReset = "reset"

// clippedMark starts a step's output that the executor kept only the end of
// (the post-deploy watch's: its first line may be cut anywhere).
const clippedMark = clippedLine + "\n"

// clippedLine is the line a tailed stream sends for the start of a clipped
// output, as the journal's record has it.
const clippedLine = "…"

// tailPos is where a tailed stream stands in a job. Its ID ("j3.1024",
// "j3.done") is what the browser sends back as Last-Event-ID; it is computed
// from the journal's record alone, so that any replica resumes there.
type tailPos struct {
	seq  int   // the step whose start was sent last; 0: nothing sent
	off  int64 // the bytes of step seq's output sent, its cut middle counted
	done bool  // step seq's end was sent
}

// id returns p as an event ID.
func (p tailPos) id() string {
	if p.done {
		return "j" + strconv.Itoa(p.seq) + ".done"
	}
	return "j" + strconv.Itoa(p.seq) + "." + strconv.FormatInt(p.off, 10)
}

// parseTailPos parses what tailPos.id returns.
func parseTailPos(v string) (tailPos, bool) {
	rest, ok := strings.CutPrefix(v, "j")
	if !ok {
		return tailPos{}, false
	}
	seqText, offText, ok := strings.Cut(rest, ".")
	if !ok {
		return tailPos{}, false
	}
	seq, err := strconv.Atoi(seqText)
	if err != nil || seq < 1 || seqText[0] == '+' {
		return tailPos{}, false
	}
	if offText == "done" {
		return tailPos{seq: seq, done: true}, true
	}
	off, err := strconv.ParseInt(offText, 10, 64)
	if err != nil || off < 0 || offText[0] == '+' {
		return tailPos{}, false
	}
	return tailPos{seq: seq, off: off}, true
}

// tailEvent is one event of a tailed stream and its ID ("" for none).
type tailEvent struct {
	id string
	ev executor.LogEvent
}

// tailer turns successive journal records of one job into the events of a
// tailed stream: "step" when a step starts, "line" for each line of output
// not sent before, "done" when the step ended, and "end" when the stream's
// phase ended. A step's output in the journal grows at its end until it
// outgrows the executor's limit; then its middle is cut and stands as one
// marker line (executor.CutMarker), its tail going on behind it. A line is
// placed by its byte offset in all the step printed (the marker's count
// included), so that no line is sent twice and a line cut away before it
// was sent is missing, as a marker sent in its place says.
//
// The watch's output is cut differently: its first bytes are dropped and it
// starts with "…". Its lines are placed by the last one sent; a stream
// that resumes in such a step, where it has not sent that line, starts over
// with a reset.
type tailer struct {
	pos tailPos
	// final: the stream began on a final job whose post-deploy watch ran
	// (afterEnd); it ends when the watch ends, not when the job is final.
	final bool
	// mem is the line sent last (of step mem.seq, up to mem.off): where a
	// clipped output goes on.
	mem struct {
		seq  int
		off  int64
		line string
	}
}

// next returns the events of j's record after t's position, and moves t
// past them; end reports that the last of them is "end". It is pure: the
// events depend on the record and t only.
func (t *tailer) next(j executor.Job) (evs []tailEvent, end bool) {
	steps := j.Steps
	if !slices.IsSortedFunc(steps, func(a, b executor.StepRun) int { return a.Seq - b.Seq }) {
		steps = slices.SortedFunc(slices.Values(steps), func(a, b executor.StepRun) int { return a.Seq - b.Seq })
	}
	jobEnded := j.State.Final() && !afterEnd(j)
	for i, st := range steps {
		if st.Skipped != "" || st.Seq < t.pos.seq || (st.Seq == t.pos.seq && t.pos.done) {
			continue // the live log leaves skipped steps out too
		}
		if st.Seq > t.pos.seq {
			t.pos = tailPos{seq: st.Seq}
			evs = append(evs, tailEvent{t.pos.id(), executor.LogEvent{Kind: executor.EventStep, Step: st.Seq, Name: st.Name, Time: st.Started}})
		}
		done := st.ExitCode != -1 || st.Error != "" || i < len(steps)-1 || jobEnded
		lines, ok := t.lines(st, done)
		if !ok {
			// A resume inside a clipped output: start over.
			*t = tailer{final: t.final}
			evs, end = t.next(j)
			return append([]tailEvent{{"", executor.LogEvent{Kind: eventReset, Time: j.Created}}}, evs...), end
		}
		evs = append(evs, lines...)
		if !done {
			break
		}
		t.pos.done = true
		evs = append(evs, tailEvent{t.pos.id(), executor.LogEvent{Kind: executor.EventDone, Step: st.Seq,
			Exit: st.ExitCode, Millis: st.Duration.Milliseconds(), Time: st.Started.Add(st.Duration)}})
	}
	if t.final {
		end = !afterEnd(j)
	} else {
		end = j.State.Final()
	}
	if end {
		evs = append(evs, tailEvent{"", executor.LogEvent{Kind: executor.EventEnd, State: j.State, Description: j.Description, Time: j.Finished}})
	}
	return evs, end
}

// lines returns the line events of step st (t.pos.seq) after t.pos.off, and
// moves t.pos.off past them. A last line without its newline is sent only
// once the step is done. It reports false when t cannot place its position
// in the output (a resume inside a clipped one).
func (t *tailer) lines(st executor.StepRun, done bool) ([]tailEvent, bool) {
	out := st.Output
	if !done {
		out = out[:strings.LastIndexByte(out, '\n')+1]
	}
	var evs []tailEvent
	emit := func(line string, to int64) {
		t.pos.off = to
		t.mem.seq, t.mem.off, t.mem.line = t.pos.seq, to, line
		evs = append(evs, tailEvent{t.pos.id(), executor.LogEvent{Kind: executor.EventLine, Step: st.Seq, Line: line, Time: st.Started}})
	}
	if rest, ok := strings.CutPrefix(out, clippedMark); ok {
		return evs, t.clipped(rest, emit)
	}
	var at int64 // the offset of the line in all the step printed
	cut := false
	for line := range strings.Lines(out) {
		text := strings.TrimSuffix(line, "\n")
		if n, ok := executor.ParseCutMarker(text); ok && !cut {
			cut = true
			if end := at + n; end > t.pos.off {
				// What was dropped after what this stream sent.
				emit(executor.CutMarker(end-max(at, t.pos.off)), end)
			}
			at += n
			continue
		}
		start := at
		at += int64(len(text)) + 1
		if start >= t.pos.off {
			emit(text, at)
		}
	}
	return evs, true
}

// clipped emits the lines of a clipped output (rest follows the "…") that
// come after the last line this stream sent of it; it reports false when
// this stream sent none of it but is past its start (a resume).
func (t *tailer) clipped(rest string, emit func(line string, to int64)) bool {
	var lines []string
	for line := range strings.Lines(rest) {
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	from := -1 // the first line may start anywhere in a line: not sent unless it was
	switch {
	case t.pos.off == 0:
	case t.mem.seq != t.pos.seq || t.mem.off != t.pos.off:
		return false // nothing says where its lines were
	case t.mem.line == clippedLine:
		from = 1
	default:
		for i, l := range slices.Backward(lines) {
			if l == t.mem.line {
				from = i + 1
				break
			}
		}
	}
	off := t.pos.off
	if from < 0 {
		// From the start, or all this stream sent was dropped since: mark
		// the gap.
		off, from = int64(len(clippedLine))+1, 1
		emit(clippedLine, off)
	}
	for _, l := range lines[min(from, len(lines)):] {
		off += int64(len(l)) + 1
		emit(l, off)
	}
	return true
}

// tail streams job j from the journal (see handleEvents): it sends the
// events after from, reads the job every tailEvery, and returns after "end",
// when ctx ends, or when the journal cannot be read (the browser reconnects
// with the last ID it read).
func (s *Server) tail(ctx context.Context, w *eventWriter, j executor.Job, from resumeFrom, show bool) {
	id := j.ID
	t := &tailer{pos: from.tail, final: j.State.Final()}
	var pre []tailEvent
	if from.after > 0 {
		// A live stream's ID: its events are not this stream's.
		pre = append(pre, tailEvent{"", executor.LogEvent{Kind: eventReset, Time: s.deps.Now()}})
	}
	send := func(j executor.Job) (bool, error) {
		evs, end := t.next(j)
		for _, e := range append(pre, evs...) {
			if e.ev.Kind == executor.EventLine && !show {
				continue
			}
			if err := w.send(e.id, e.ev); err != nil {
				return true, err
			}
		}
		pre = nil
		return end, nil
	}
	if end, err := send(j); end || err != nil {
		return
	}
	poll := time.NewTicker(tailEvery)
	defer poll.Stop()
	heartbeat := time.NewTicker(heartbeatEvery)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			if err := w.raw([]byte(": heartbeat\n\n")); err != nil {
				return
			}
		case <-poll.C:
			j, err := s.deps.Journal.Job(ctx, id)
			if err != nil {
				if ctx.Err() == nil {
					s.lg.Warn("tail a job: read the journal", "job", id, "err", err)
				}
				return
			}
			if end, err := send(j); end || err != nil {
				return
			}
		}
	}
}
