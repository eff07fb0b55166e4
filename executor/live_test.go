package executor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// testOutput returns a step's writer on a fresh live log, and the follower
// that saw it from the start.
func testOutput(t *testing.T, opts Options) (*stepOutput, chan LogEvent) {
	t.Helper()
	if opts.OutputLimit == 0 {
		opts.OutputLimit = 16 << 10
	}
	lv := newLive(opts)
	f := lv.open("job")
	_, ch := f.follow(0)
	return lv.output(f, f.startStep(1, "build"), "build"), ch
}

// lines returns the lines of the line events waiting in ch.
func lines(ch chan LogEvent) []string {
	var out []string
	for {
		select {
		case ev := <-ch:
			if ev.Kind == EventLine {
				out = append(out, ev.Line)
			}
		default:
			return out
		}
	}
}

func write(o *stepOutput, ss ...string) {
	for _, s := range ss {
		o.Write([]byte(s))
	}
}

// Output is published line by line as it arrives: a line split across writes
// is one line, a line without its newline waits a second (or the step's end).
func TestStepOutput_Lines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, ch := testOutput(t, Options{})
		if ev := <-ch; ev.Kind != EventStep || ev.ID != 1 || ev.Step != 1 || ev.Name != "build" {
			t.Errorf("first event = %+v, want the step's start", ev)
		}
		write(o, "a\nb")
		if got := lines(ch); !slices.Equal(got, []string{"a"}) {
			t.Errorf("after %q: lines %q", "a\\nb", got)
		}
		write(o, "c\r\n", "\n")
		if got := lines(ch); !slices.Equal(got, []string{"bc", ""}) {
			t.Errorf("after the newline: lines %q, want %q", got, []string{"bc", ""})
		}
		write(o, "tail")
		time.Sleep(partialAfter - time.Millisecond)
		synctest.Wait()
		if got := lines(ch); len(got) != 0 {
			t.Errorf("a partial line was published before %v: %q", partialAfter, got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := lines(ch); !slices.Equal(got, []string{"tail"}) {
			t.Errorf("after %v without a newline: lines %q, want [tail]", partialAfter, got)
		}
		write(o, "x")
		o.close()
		write(o, "late\n")
		if got := lines(ch); !slices.Equal(got, []string{"x"}) {
			t.Errorf("at the step's end: lines %q, want [x] (nothing written after it)", got)
		}
		if got, want := o.f.output(o.s), "a\nbc\n\ntail\nx\n"; got != want {
			t.Errorf("journal output %q, want %q", got, want)
		}
	})
}

// Secrets never reach a line, the journal or Options.Output, even split
// across writes, across the one-second flush, or across the cut of a line
// longer than the limit.
func TestStepOutput_Redact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		secrets := []string{"hunter2", "s3cr3t-token", "s3cr3t"}
		o, ch := testOutput(t, Options{OutputLimit: 128, Redact: append(secrets, "")}) // the longest line: 31 bytes
		write(o, "token=s3cr", "3t-token ok\n")
		write(o, "short s3cr3t.\n")
		write(o, "pw hun")
		time.Sleep(partialAfter)
		synctest.Wait()
		write(o, "ter2 done\n")
		write(o, strings.Repeat("x", 28)+"hunt", "er2\n")
		write(o, "hunter2hunter2\n")
		o.close()
		want := []string{"token=[redacted] ok", "short [redacted].", "pw ", "[redacted] done",
			strings.Repeat("x", 28), "[redacted]", "[redacted][redacted]"}
		if got := lines(ch); !slices.Equal(got, want) {
			t.Errorf("lines %q,\nwant %q", got, want)
		}
		out := o.f.output(o.s)
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%q reached the journal: %q", s, out)
			}
		}
	})
}

// Options.Output gets the same redacted lines, behind the step's name.
func TestStepOutput_Echo(t *testing.T) {
	var echo strings.Builder
	o, _ := testOutput(t, Options{Output: &echo, Redact: []string{"hunter2"}})
	write(o, "one\npw=hunt", "er2\nthree")
	o.close()
	if got, want := echo.String(), "[build] one\n[build] pw=[redacted]\n[build] three\n"; got != want {
		t.Errorf("echo %q, want %q", got, want)
	}
}

func TestRedactor_Holdback(t *testing.T) {
	r := newRedactor([]string{"abcdef", "xyz"})
	tests := []struct {
		in   string
		want int
	}{
		{"hello", 0},
		{"hello a", 1},
		{"hello abcde", 5},
		{"hello abcdef", 0}, // a whole secret is redacted, not held
		{"hello xy", 2},
		{"ab", 2},
		{"", 0},
	}
	for _, tc := range tests {
		if got := r.holdback([]byte(tc.in)); got != tc.want {
			t.Errorf("holdback(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if got := newRedactor(nil).holdback([]byte("abc")); got != 0 {
		t.Errorf("no secrets: holdback = %d", got)
	}
}

// A step's output is kept within the limit: its first quarter and its end,
// with one marker line for the middle, in the journal and in the live log.
func TestFeed_Bound(t *testing.T) {
	const limit = 256 // head 64 bytes (7 lines of 9), tail 144 (16 lines)
	lv := newLive(Options{OutputLimit: limit})
	f := lv.open("job")
	_, live := f.follow(0)
	s := f.startStep(1, "build")
	var all []string
	for i := range 100 {
		l := fmt.Sprintf("line %03d", i)
		all = append(all, l)
		f.line(s, l)
	}
	f.doneStep(s, 0, time.Second)
	marker := CutMarker(int64(100-7-16) * 9)
	want := strings.Join(all[:7], "\n") + "\n" + marker + "\n" + strings.Join(all[84:], "\n") + "\n"
	if got := f.output(s); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
	if n := len(f.output(s)); n > limit {
		t.Errorf("output has %d bytes, over the limit %d", n, limit)
	}
	// The follower that was there saw every line.
	if got := lines(live); !slices.Equal(got, all) {
		t.Errorf("the live follower saw %d lines, want all 100", len(got))
	}
	// A late one sees what is kept, in ID order.
	f.mu.Lock()
	evs := f.since(0)
	f.mu.Unlock()
	var got []string
	for i, ev := range evs {
		if i > 0 && ev.ID <= evs[i-1].ID {
			t.Errorf("event %d has ID %d after %d", i, ev.ID, evs[i-1].ID)
		}
		got = append(got, ev.Kind+" "+ev.Line)
	}
	wantEv := []string{"step "}
	for _, l := range all[:7] {
		wantEv = append(wantEv, "line "+l)
	}
	wantEv = append(wantEv, "line "+marker)
	for _, l := range all[84:] {
		wantEv = append(wantEv, "line "+l)
	}
	wantEv = append(wantEv, "done ")
	if !slices.Equal(got, wantEv) {
		t.Errorf("replayed events:\n%q\nwant:\n%q", got, wantEv)
	}
	// The marker has the ID of the last line dropped: one that read up to a
	// dropped line gets it, one that read past it does not.
	markerID := evs[8].ID
	if want := int64(1 + 84); markerID != want {
		t.Errorf("marker ID %d, want %d (line 83's)", markerID, want)
	}
	for _, tc := range []struct {
		after      int64
		wantMarker bool
		wantFirst  int64
	}{
		{after: 10, wantMarker: true, wantFirst: markerID},
		{after: markerID - 1, wantMarker: true, wantFirst: markerID},
		{after: markerID, wantMarker: false, wantFirst: markerID + 1},
		{after: 102, wantMarker: false, wantFirst: 0},
	} {
		f.mu.Lock()
		evs := f.since(tc.after)
		f.mu.Unlock()
		if tc.wantFirst == 0 {
			if len(evs) != 0 {
				t.Errorf("since(%d) = %d events, want none", tc.after, len(evs))
			}
			continue
		}
		if evs[0].ID != tc.wantFirst || (evs[0].Line == marker) != tc.wantMarker {
			t.Errorf("since(%d) starts with %+v, want ID %d, marker %v", tc.after, evs[0], tc.wantFirst, tc.wantMarker)
		}
	}
}

// A line longer than a quarter of the limit is cut into lines that fit.
func TestStepOutput_LongLine(t *testing.T) {
	o, ch := testOutput(t, Options{OutputLimit: 128}) // lines of at most 31 bytes
	long := strings.Repeat("é", 40)                   // 80 bytes: cuts fall between runes
	write(o, long+"\n")
	o.close()
	got := lines(ch)
	if strings.Join(got, "") != long {
		t.Errorf("the pieces %q do not make up the line", got)
	}
	for _, l := range got {
		if len(l) > 31 || !strings.HasPrefix(long, l) {
			t.Errorf("piece %q: %d bytes, or not whole runes", l, len(l))
		}
	}
}

// A reader that does not keep up is dropped, never waited for.
func TestFeed_SlowFollowerDropped(t *testing.T) {
	lv := newLive(Options{OutputLimit: 16 << 10})
	f := lv.open("job")
	_, slow := f.follow(0)
	_, fast := f.follow(0)
	s := f.startStep(1, "build")
	n := 0
	for i := range followBuffer + 10 {
		f.line(s, fmt.Sprint(i))
		for range len(fast) {
			<-fast
			n++
		}
	}
	got := 0
	for range slow {
		got++
	}
	if got != followBuffer {
		t.Errorf("the slow reader got %d events before it was dropped, want %d", got, followBuffer)
	}
	if n != followBuffer+11 {
		t.Errorf("the reader that kept up got %d events, want %d", n, followBuffer+11)
	}
	f.mu.Lock()
	left := len(f.subs)
	f.mu.Unlock()
	if left != 1 {
		t.Errorf("%d followers left, want the one that kept up", left)
	}
}
