package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// What a webhook body may cost before its signature is checked (safety invariant 6:
// what arrives before authentication costs bounded memory and time). The body must
// be read whole before the signature can be checked, so the bounds are on reading:
//
//   - nothing is allocated from the client's Content-Length: a buffer is taken only
//     when the first byte arrives and grows (doubling, never past the declared
//     length) only as bytes arrive, so a buffer is at most twice what was sent;
//   - every buffer's capacity is taken from one byte budget shared by all requests
//     (Options.BodyBudget); a delivery whose buffer cannot grow gets 503 at once;
//   - at most Options.MaxReading bodies are read at once; past that, 503 at once;
//   - a body must arrive within Options.BodyTimeout of the handler starting to read
//     it, or the request ends with 408;
//   - buffers come from a pool, and only small ones go back to it, so a burst of
//     large bodies does not stay in memory.

// Defaults of the intake bounds.
const (
	// DefaultBodyBudget is the default Options.BodyBudget: room for two maximal
	// (25 MB) deliveries being read at once, with their buffers growing.
	DefaultBodyBudget = 64 << 20
	// DefaultMaxReading is the default Options.MaxReading.
	DefaultMaxReading = 256
	// DefaultBodyTimeout is the default Options.BodyTimeout. GitHub gives up on a
	// delivery after 10 seconds (github/docs best-practices-for-using-webhooks.md:
	// "respond within 10 seconds"), so it sends a body at once; a client still
	// sending after 10 s is not GitHub.
	DefaultBodyTimeout = 10 * time.Second
)

// Sizes of body buffers.
const (
	// firstBuffer is the smallest body buffer: most pushes are a few KB.
	firstBuffer = 16 << 10
	// keepBuffer is the largest body buffer returned to the pool (at most a 64th of
	// the budget): a push of 2,048 commits fits; a rare 25 MB one is left to the
	// garbage collector instead of staying in memory.
	keepBuffer = 1 << 20
)

// busyReason is the public answer when the intake bounds are reached. GitHub does
// not redeliver by itself, so it says what to do.
const busyReason = "busy: too many deliveries being read at once; redeliver from GitHub's delivery log"

// budget is a weighted semaphore that is never waited on: TryAcquire takes n units
// if that keeps the total within max, else nothing. It is safe for concurrent use.
type budget struct {
	max  int64
	used atomic.Int64
}

// TryAcquire takes n units and reports whether it could.
func (b *budget) TryAcquire(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// Release gives back n units taken by TryAcquire.
func (b *budget) Release(n int64) { b.used.Add(-n) }

// InUse returns the units taken now.
func (b *budget) InUse() int64 { return b.used.Load() }

// intake holds the bounds on reading webhook bodies, shared by all requests.
type intake struct {
	max     int64         // Options.MaxBody
	timeout time.Duration // Options.BodyTimeout
	keep    int           // the largest buffer put back in the pool
	bytes   budget        // bytes of body buffers held
	readers budget        // bodies being read
	pool    sync.Pool     // *[]byte with len 0
}

func newIntake(opts Options) *intake {
	in := &intake{
		max:     opts.MaxBody,
		timeout: opts.BodyTimeout,
		keep:    int(min(keepBuffer, opts.BodyBudget/64)),
		bytes:   budget{max: opts.BodyBudget},
		readers: budget{max: int64(opts.MaxReading)},
	}
	in.pool.New = func() any { return new([]byte) }
	return in
}

// body is one webhook body being read, and what it holds of the intake's budget.
// Release gives everything back; the bytes must not be used after.
type body struct {
	in   *intake
	buf  *[]byte // from the pool; nil until the first byte arrives
	held int64   // bytes of budget held: cap(*buf), and the old buffer while growing
	slot bool    // holds one of the readers
	one  [1]byte // the first byte, read before a buffer is taken
}

// Bytes returns the body read so far.
func (b *body) Bytes() []byte {
	if b.buf == nil {
		return nil
	}
	return *b.buf
}

// Release returns the buffer to the pool (unless it grew large) and the budget.
// It is safe to call more than once.
func (b *body) Release() {
	if b.buf != nil {
		if cap(*b.buf) <= b.in.keep {
			*b.buf = (*b.buf)[:0]
			b.in.pool.Put(b.buf)
		}
		b.buf = nil
	}
	b.in.bytes.Release(b.held)
	b.held = 0
	if b.slot {
		b.in.readers.Release(1)
		b.slot = false
	}
}

// grow makes room for at least one more byte, taking the new capacity from the
// budget first. The capacity doubles, but never past limit: the most a body may
// need (MaxBody+1, or the declared length+1 when smaller, the 1 being room for the
// read that sees the end).
func (b *body) grow(limit int) bool {
	if b.buf == nil {
		b.buf = b.in.pool.Get().(*[]byte)
		if c := int64(cap(*b.buf)); c > 0 {
			if !b.in.bytes.TryAcquire(c) {
				return false
			}
			b.held += c
			return true
		}
	}
	old := *b.buf
	n := min(max(2*cap(old), firstBuffer), limit)
	if n <= len(old) {
		n = len(old) + 1 // a body longer than it said: let MaxBytesReader or EOF say so
	}
	if !b.in.bytes.TryAcquire(int64(n)) {
		return false
	}
	nb := make([]byte, len(old), n)
	copy(nb, old)
	b.held += int64(n) - int64(cap(old))
	b.in.bytes.Release(int64(cap(old)))
	*b.buf = nb // the old array is the garbage collector's
	return true
}

// read reads req's body within the intake's bounds. The caller must Release the
// body, also when read fails; the error is a *publicError: 413 past MaxBody, 503
// when the budget or the readers are exhausted, 408 when the body is not complete
// within the timeout, 400 when the connection fails.
func (in *intake) read(w http.ResponseWriter, req *http.Request) (*body, error) {
	b := &body{in: in}
	if req.ContentLength > in.max {
		return b, in.tooLarge(nil)
	}
	if !in.readers.TryAcquire(1) {
		return b, busy(w, errors.New("readers exhausted"))
	}
	b.slot = true
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(in.timeout)); err == nil {
		defer rc.SetReadDeadline(time.Time{}) // the body is read: the rest is ours
	}
	limit := int(in.max) + 1
	if req.ContentLength >= 0 {
		limit = min(limit, int(req.ContentLength)+1)
	}
	r := http.MaxBytesReader(w, req.Body, in.max)

	// The first byte is read before any buffer is taken: a connection that
	// announces a body and sends nothing holds no memory of ours.
	for {
		n, err := r.Read(b.one[:])
		if n == 1 {
			break
		}
		if err == io.EOF {
			return b, nil // empty body
		}
		if err != nil {
			return b, in.readError(w, err)
		}
	}
	if !b.grow(limit) {
		return b, busy(w, errors.New("body budget exhausted"))
	}
	*b.buf = append(*b.buf, b.one[0]) // grow made room
	for {
		buf := *b.buf
		if len(buf) == cap(buf) {
			if !b.grow(limit) {
				return b, busy(w, fmt.Errorf("body budget exhausted at %d bytes", len(buf)))
			}
			buf = *b.buf
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		*b.buf = buf[:len(buf)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, in.readError(w, err)
		}
	}
}

// readError is the public error for a failed body read.
func (in *intake) readError(w http.ResponseWriter, err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return in.tooLarge(err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		return public(http.StatusRequestTimeout,
			fmt.Sprintf("body not received within %s: a delivery is sent at once", in.timeout), err)
	}
	w.Header().Set("Connection", "close")
	return public(http.StatusBadRequest, "cannot read the request body", err)
}

func (in *intake) tooLarge(err error) error {
	return public(http.StatusRequestEntityTooLarge,
		fmt.Sprintf("payload larger than %d bytes (GitHub caps payloads at 25 MB)", in.max), err)
}

// busy is the 503 of an exhausted bound. The connection closes: the rest of the
// body is not worth reading.
func busy(w http.ResponseWriter, err error) error {
	w.Header().Set("Connection", "close")
	return public(http.StatusServiceUnavailable, busyReason, err)
}
