package executor

import "sync"

// tailBuffer keeps the last n bytes written to it (the watch's output and
// what its checks print; steps keep theirs in their live log).
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
