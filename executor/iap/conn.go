package iap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Conn is an open tunnel: a net.Conn whose bytes travel as relay DATA frames. Read and
// Write may be called concurrently (one reader and one writer at a time, more are
// serialised); deadlines work as for net.Conn; Close unblocks both, waits for the
// tunnel's goroutines and is idempotent. Write copies into a bounded send buffer
// (Options.SendBuffer) and blocks while it is full; bytes stay there until the relay
// acknowledges them, so they can be resent after a reconnect.
type Conn struct {
	lg    *slog.Logger
	opts  Options
	base  *url.URL
	raddr *Addr

	ctx    context.Context // the tunnel's life; cancelled by Close or a fatal error
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closedCh  chan struct{} // closed when Close starts
	dead      chan struct{} // closed when err is set

	mu        sync.Mutex
	ws        *websocket.Conn // nil while reconnecting
	gen       uint64          // incremented whenever ws changes
	sid       string
	err       error // terminal error
	chunks    []*chunk
	confirmed uint64 // bytes the relay acknowledged
	sentOff   uint64 // bytes handed to a websocket (bytesSent)
	queued    uint64 // bytes accepted by Write
	inflight  *chunk // chunk the writer goroutine is writing

	sendReady chan struct{} // wakes the writer goroutine
	sendSpace chan struct{} // wakes Write and Close (confirmations, progress)
	ackKick   chan struct{} // arms the idle acker
	ackNow    chan struct{} // asks the acker to apply the threshold now

	ackMu    sync.Mutex
	received uint64 // DATA payload bytes received (bytesReceived)
	lastAck  uint64 // last ACK value sent
	ackBuf   [ackFrameLen]byte
	lastRecv atomic.Int64 // unix nanos of the last DATA received

	rmu       sync.Mutex
	rq        []*rbuf       // received, not yet read
	rqMem     int           // bytes of buffer memory held by rq (len(buf) each), not payload
	withheld  bool          // an ACK was held back because rq was full
	rqReady   chan struct{} // wakes Read
	readLock  chan struct{}
	writeLock chan struct{}
	rdl, wdl  deadline

	stats struct {
		reconnects atomic.Int64
	}

	// Used by the read loop only (reconnect runs there).
	rc reconnectState
}

// stableAfter is how long a resumed websocket must hold before the next drop is
// treated as a new incident (immediate first attempt, backoff from the start)
// rather than the relay dropping the tunnel again.
const stableAfter = time.Minute

// reconnectState is the session-wide reconnect budget and backoff.
type reconnectState struct {
	recent  []time.Time   // attempts in the last minute
	total   int           // attempts in the session
	backoff time.Duration // the next wait
	lastOK  time.Time     // when the last reconnect succeeded
}

// take counts one reconnect attempt at now, or refuses it past the budget.
func (r *reconnectState) take(now time.Time, p ReconnectPolicy) error {
	if r.total >= p.Total {
		return fmt.Errorf("%w: %d reconnects in this tunnel's life, at most %d", ErrReconnectBudget, r.total, p.Total)
	}
	keep := r.recent[:0]
	for _, t := range r.recent {
		if now.Sub(t) < time.Minute {
			keep = append(keep, t)
		}
	}
	r.recent = keep
	if len(r.recent) >= p.PerMinute {
		return fmt.Errorf("%w: %d reconnects within a minute, at most %d: the relay keeps dropping the tunnel", ErrReconnectBudget, len(r.recent), p.PerMinute)
	}
	r.recent = append(r.recent, now)
	r.total++
	return nil
}

// chunk is up to MaxDataLen bytes of the outgoing stream, stored after room for the
// DATA header so a frame is sent without another copy.
type chunk struct {
	buf   []byte // len maxDataFrame
	off   uint64 // stream offset of buf[dataHeaderLen]
	n     int
	fresh bool // never handed to a websocket: Write may still append to it
}

// rbuf holds received payload not yet read: one DATA frame read in place, and any
// small frames that followed it copied into its spare room (see queue).
type rbuf struct {
	buf  []byte // len maxDataFrame
	data []byte // unread payload, a slice of buf whose capacity runs to buf's end
}

var (
	chunkPool = sync.Pool{New: func() any { return &chunk{buf: make([]byte, maxDataFrame)} }}
	rbufPool  = sync.Pool{New: func() any { return &rbuf{buf: make([]byte, maxDataFrame)} }}
)

func newConn(lg *slog.Logger, opts Options, base *url.URL) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{
		lg:        lg,
		opts:      opts,
		base:      base,
		raddr:     &Addr{Project: opts.Project, Zone: opts.Zone, Instance: opts.Instance, Interface: opts.Interface, Port: opts.Port},
		ctx:       ctx,
		cancel:    cancel,
		closedCh:  make(chan struct{}),
		dead:      make(chan struct{}),
		sendReady: make(chan struct{}, 1),
		sendSpace: make(chan struct{}, 1),
		ackKick:   make(chan struct{}, 1),
		ackNow:    make(chan struct{}, 1),
		rqReady:   make(chan struct{}, 1),
		readLock:  make(chan struct{}, 1),
		writeLock: make(chan struct{}, 1),
	}
}

func (c *Conn) start(ws *websocket.Conn) {
	c.wg.Add(3)
	go c.readLoop(ws)
	go c.writeLoop()
	go c.ackLoop()
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// fail records the tunnel's terminal error (the first one wins) and stops it.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		close(c.dead)
	}
	ws := c.ws
	c.ws = nil
	c.gen++
	c.mu.Unlock()
	if ws != nil {
		_ = ws.CloseNow()
	}
	c.cancel()
}

// ---- receive side ----

func (c *Conn) readLoop(ws *websocket.Conn) {
	defer c.wg.Done()
	for {
		err := c.readWS(ws)
		select {
		case <-c.closedCh:
			c.fail(net.ErrClosed)
			return
		default:
		}
		if c.ctx.Err() != nil {
			c.fail(net.ErrClosed)
			return
		}
		if errors.Is(err, ErrProtocol) {
			c.lg.Warn("iap tunnel: relay protocol violation", "target", c.raddr.String(), "err", err)
			c.fail(err)
			return
		}
		cerr := c.classify(err)
		var ce *CloseError
		if !errors.As(cerr, &ce) || !ce.Retryable() || c.opts.Reconnect.MaxAttempts < 0 {
			if cerr != io.EOF {
				c.lg.Warn("iap tunnel closed", "target", c.raddr.String(), "err", cerr)
			}
			c.fail(cerr)
			return
		}
		c.lg.Info("iap tunnel: reconnecting", "target", c.raddr.String(), "cause", ce.Code, "reason", ce.Reason)
		ws, err = c.reconnect(ws)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				err = net.ErrClosed
			}
			c.lg.Warn("iap tunnel: reconnect failed", "target", c.raddr.String(), "err", err)
			observeFailure(c.opts.Observer, EventReconnectFailed, err)
			c.fail(err)
			return
		}
	}
}

// readWS handles frames from ws until it fails.
func (c *Conn) readWS(ws *websocket.Conn) error {
	for {
		rb := rbufPool.Get().(*rbuf)
		// A context without Done: coder/websocket then skips a per-call
		// context.AfterFunc (an allocation and a lock per frame). Close and
		// fail unblock the read by closing ws.
		n, err := readMessage(context.Background(), ws, rb.buf)
		if err != nil {
			rbufPool.Put(rb)
			return err
		}
		f, err := DecodeFrame(rb.buf[:n])
		if err != nil {
			rbufPool.Put(rb)
			return err
		}
		if f.Extra > 0 {
			c.lg.Debug("iap tunnel: discarding bytes after a frame", "tag", f.Tag, "bytes", f.Extra)
		}
		switch f.Tag {
		case TagData:
			if len(f.Data) == 0 {
				rbufPool.Put(rb)
				continue
			}
			if over := c.queue(rb, f.Data); over {
				return fmt.Errorf("%w: relay sent more than %d bytes past the receive buffer without acknowledgement", ErrProtocol, maxOverrun)
			}
			signal(c.rqReady)
			c.lastRecv.Store(time.Now().UnixNano())
			c.ackMu.Lock()
			c.received += uint64(len(f.Data))
			c.ackMu.Unlock()
			if !c.opts.Ack.Disable {
				c.sendAck(false)
				signal(c.ackKick)
			}
		case TagAck:
			rbufPool.Put(rb)
			if err := c.confirm(f.Ack, false); err != nil {
				return err
			}
		case TagConnectSuccessSID, TagReconnectSuccessAck:
			rbufPool.Put(rb)
			return fmt.Errorf("%w: unexpected tag %d on an open tunnel", ErrProtocol, f.Tag)
		default:
			rbufPool.Put(rb)
		}
	}
}

// queue adds payload, read into rb, to the receive queue, and reports whether the
// queue's memory went past RecvBuffer+maxOverrun (the relay ignores withheld ACKs).
// Memory is what counts, not payload: a relay sending 1-byte frames would otherwise
// pin a 16 KiB buffer per byte. So a payload that fits in the room left after the
// last queued buffer's data is copied there and rb goes back to the pool; only a
// payload that does not fit keeps its own buffer. Any two neighbouring buffers then
// hold more than one buffer's worth of payload, so memory stays under twice the
// payload plus one buffer, and full-size frames are never copied.
func (c *Conn) queue(rb *rbuf, payload []byte) (over bool) {
	c.rmu.Lock()
	merged := false
	if k := len(c.rq); k > 0 {
		if last := c.rq[k-1]; cap(last.data)-len(last.data) >= len(payload) {
			last.data = append(last.data, payload...) // within buf: no allocation
			merged = true
		}
	}
	if !merged {
		rb.data = payload
		c.rq = append(c.rq, rb)
		c.rqMem += len(rb.buf)
	}
	over = c.rqMem > c.opts.RecvBuffer+maxOverrun
	c.rmu.Unlock()
	if merged {
		rbufPool.Put(rb)
	}
	return over
}

// sendAck sends an ACK when more than Threshold bytes are unacknowledged, or any are
// and force is set. While the receive queue holds more than RecvBuffer bytes of
// buffer memory it sends nothing: withholding ACKs is how the tunnel makes the relay
// stop sending.
func (c *Conn) sendAck(force bool) {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	un := c.received - c.lastAck
	if un == 0 || (!force && un <= uint64(c.opts.Ack.Threshold)) {
		return
	}
	c.rmu.Lock()
	full := c.rqMem > c.opts.RecvBuffer
	c.withheld = full
	c.rmu.Unlock()
	if full {
		return
	}
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return // reconnecting: the reconnect URL carries the ack
	}
	frame := AppendAck(c.ackBuf[:0], c.received)
	if err := ws.Write(context.Background(), websocket.MessageBinary, frame); err != nil { // see readWS
		return // the read loop sees the broken socket
	}
	c.lastAck = c.received
}

// ackLoop acknowledges received bytes once nothing has arrived for Ack.Idle, and
// sends ACKs that Read released (after they were withheld on a full receive queue).
func (c *Conn) ackLoop() {
	defer c.wg.Done()
	idle := c.opts.Ack.Idle
	t := time.NewTimer(idle)
	t.Stop()
	defer t.Stop()
	var timerC <-chan time.Time
	for {
		select {
		case <-c.ackNow:
			c.sendAck(false)
		case <-c.ackKick:
			if timerC == nil {
				t.Reset(idle)
				timerC = t.C
			}
		case <-timerC:
			timerC = nil
			since := time.Duration(time.Now().UnixNano() - c.lastRecv.Load())
			if since < idle {
				t.Reset(idle - since)
				timerC = t.C
				continue
			}
			c.sendAck(true)
		case <-c.ctx.Done():
			return
		}
	}
}

// confirm applies a relay acknowledgement of a bytes (§4.5). reconnect is set for
// RECONNECT_SUCCESS_ACK, where zero is valid and the send position rewinds to a.
func (c *Conn) confirm(a uint64, reconnect bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case a == 0 && !reconnect:
		return fmt.Errorf("%w: relay sent a zero ACK", ErrProtocol)
	case a < c.confirmed:
		return fmt.Errorf("%w: out-of-order ACK %d after %d", ErrProtocol, a, c.confirmed)
	case a > c.sentOff:
		return fmt.Errorf("%w: relay acknowledged %d bytes but only %d were sent", ErrProtocol, a, c.sentOff)
	}
	i := 0
	for ; i < len(c.chunks); i++ {
		ch := c.chunks[i]
		if ch.off+uint64(ch.n) > a {
			break
		}
		if ch != c.inflight {
			chunkPool.Put(ch)
		}
		c.chunks[i] = nil
	}
	if i > 0 {
		c.chunks = append(c.chunks[:0], c.chunks[i:]...)
	}
	c.confirmed = a
	if reconnect {
		c.sentOff = a
	}
	signal(c.sendSpace)
	return nil
}

// reconnect resumes the session on a new websocket (§5).
func (c *Conn) reconnect(old *websocket.Conn) (*websocket.Conn, error) {
	_ = old.CloseNow()
	c.mu.Lock()
	c.ws = nil
	c.gen++
	c.mu.Unlock()
	p := c.opts.Reconnect
	rc := &c.rc
	// The first attempt is immediate, unless the last reconnect did not hold:
	// then the backoff goes on from where it was.
	wait := time.Duration(0)
	if !rc.lastOK.IsZero() && time.Since(rc.lastOK) < stableAfter {
		wait = rc.backoff
	} else {
		rc.backoff = p.Backoff
	}
	var last error
	for attempt := 0; attempt < p.MaxAttempts; attempt++ {
		if attempt > 0 {
			wait = rc.backoff
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return nil, c.ctx.Err()
			}
			rc.backoff = min(2*rc.backoff, p.MaxBackoff)
		}
		if err := rc.take(time.Now(), p); err != nil {
			if last != nil {
				return nil, fmt.Errorf("reconnect: %w (last attempt: %w)", err, last)
			}
			return nil, fmt.Errorf("reconnect: %w", err)
		}
		c.ackMu.Lock()
		ack := c.received
		c.ackMu.Unlock()
		ws, f, err := c.handshake(c.ctx, reconnectURL(c.base, c.sid, ack, c.opts.Zone), true)
		if err != nil {
			if c.ctx.Err() != nil {
				return nil, c.ctx.Err()
			}
			var ce *CloseError
			if errors.Is(err, ErrProtocol) || (errors.As(err, &ce) && !ce.Retryable()) {
				return nil, fmt.Errorf("reconnect: %w", err)
			}
			last = err
			c.lg.Info("iap tunnel: reconnect attempt failed", "target", c.raddr.String(), "attempt", attempt+1, "err", err)
			continue
		}
		if err := c.confirm(f.Ack, true); err != nil {
			_ = ws.CloseNow()
			return nil, fmt.Errorf("reconnect: %w", err)
		}
		c.ackMu.Lock()
		c.lastAck = ack
		c.ackMu.Unlock()
		c.mu.Lock()
		c.ws = ws
		c.gen++
		c.mu.Unlock()
		c.stats.reconnects.Add(1)
		observe(c.opts.Observer, EventReconnect)
		rc.lastOK = time.Now()
		signal(c.sendReady)
		c.lg.Info("iap tunnel: reconnected", "target", c.raddr.String(), "attempt", attempt+1)
		return ws, nil
	}
	return nil, fmt.Errorf("reconnect: gave up after %d attempts: %w", p.MaxAttempts, last)
}

// ---- send side ----

func (c *Conn) writeLoop() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		for c.err == nil && (c.ws == nil || c.sentOff >= c.queued) {
			c.mu.Unlock()
			select {
			case <-c.sendReady:
			case <-c.ctx.Done():
				return
			}
			c.mu.Lock()
		}
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		i := sort.Search(len(c.chunks), func(i int) bool {
			return c.chunks[i].off+uint64(c.chunks[i].n) > c.sentOff
		})
		ch := c.chunks[i]
		skip := int(c.sentOff - ch.off) // > 0 only right after a reconnect, where those bytes are confirmed
		n := ch.n - skip
		frame := ch.buf[skip : dataHeaderLen+ch.n]
		putDataHeader(frame, n)
		ch.fresh = false
		c.inflight = ch
		c.sentOff = ch.off + uint64(ch.n)
		ws, gen := c.ws, c.gen
		c.mu.Unlock()

		err := ws.Write(context.Background(), websocket.MessageBinary, frame) // see readWS

		c.mu.Lock()
		c.inflight = nil
		broken := err != nil && gen == c.gen
		c.mu.Unlock()
		signal(c.sendSpace)
		if broken {
			// Wake the read loop, which reconnects or ends the tunnel.
			_ = ws.CloseNow()
			for {
				c.mu.Lock()
				moved := c.gen != gen || c.err != nil
				c.mu.Unlock()
				if moved {
					break
				}
				select {
				case <-c.sendReady:
				case <-c.ctx.Done():
					return
				}
			}
		}
	}
}

// Write queues p for sending. It blocks while the send buffer is full, until the write
// deadline (os.ErrDeadlineExceeded) or Close (net.ErrClosed). After the tunnel ended it
// returns the tunnel's error (io.EOF when the VM side closed).
func (c *Conn) Write(p []byte) (int, error) {
	select {
	case c.writeLock <- struct{}{}:
	case <-c.closedCh:
		return 0, net.ErrClosed
	case <-c.wdl.wait():
		return 0, os.ErrDeadlineExceeded
	}
	defer func() { <-c.writeLock }()
	total := 0
	for len(p) > 0 {
		select {
		case <-c.wdl.wait():
			return total, os.ErrDeadlineExceeded
		default:
		}
		c.mu.Lock()
		if c.isClosed() {
			c.mu.Unlock()
			return total, net.ErrClosed
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return total, err
		}
		space := c.opts.SendBuffer - int(c.queued-c.confirmed)
		if space <= 0 {
			c.mu.Unlock()
			select {
			case <-c.sendSpace:
			case <-c.closedCh:
			case <-c.dead:
			case <-c.wdl.wait():
			}
			continue
		}
		var ch *chunk
		if k := len(c.chunks); k > 0 && c.chunks[k-1].fresh && c.chunks[k-1].n < MaxDataLen {
			ch = c.chunks[k-1]
		} else {
			ch = chunkPool.Get().(*chunk)
			ch.off, ch.n, ch.fresh = c.queued, 0, true
			c.chunks = append(c.chunks, ch)
		}
		n := copy(ch.buf[dataHeaderLen+ch.n:], p[:min(len(p), space)])
		ch.n += n
		c.queued += uint64(n)
		c.mu.Unlock()
		signal(c.sendReady)
		p = p[n:]
		total += n
	}
	return total, nil
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.closedCh:
		return true
	default:
		return false
	}
}

// Read reads received bytes. It blocks until data arrives, the read deadline passes
// (os.ErrDeadlineExceeded) or the tunnel ends: io.EOF when the VM side closed the
// connection (close 1000, 4009, 4010), net.ErrClosed after Close, otherwise the
// tunnel's error (*CloseError, ErrProtocol, a failed reconnect). Bytes received before
// the end are returned first.
func (c *Conn) Read(p []byte) (int, error) {
	select {
	case c.readLock <- struct{}{}:
	case <-c.closedCh:
		return 0, net.ErrClosed
	case <-c.rdl.wait():
		return 0, os.ErrDeadlineExceeded
	}
	defer func() { <-c.readLock }()
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	select {
	case <-c.rdl.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		c.rmu.Lock()
		if len(c.rq) > 0 {
			rb := c.rq[0]
			n := copy(p, rb.data)
			rb.data = rb.data[n:]
			if len(rb.data) == 0 {
				c.rq[0] = nil
				c.rq = c.rq[1:]
				c.rqMem -= len(rb.buf)
				rbufPool.Put(rb)
			}
			release := c.withheld && c.rqMem <= c.opts.RecvBuffer
			if release {
				c.withheld = false
			}
			c.rmu.Unlock()
			if release {
				signal(c.ackNow)
				signal(c.ackKick)
			}
			return n, nil
		}
		c.rmu.Unlock()
		select {
		case <-c.rqReady:
		case <-c.closedCh:
			return 0, net.ErrClosed
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		case <-c.dead:
			c.rmu.Lock()
			empty := len(c.rq) == 0
			c.rmu.Unlock()
			if empty {
				c.mu.Lock()
				err := c.err
				c.mu.Unlock()
				return 0, err
			}
		}
	}
}

// Close hands already-written bytes to the relay (waiting at most
// Options.CloseTimeout), closes the websocket with code 1000, stops and waits for the
// tunnel's goroutines, and unblocks pending Read and Write calls, which return
// net.ErrClosed. Further calls do nothing and return nil.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closedCh)
		t := time.NewTimer(c.opts.CloseTimeout)
		defer t.Stop()
	flush:
		for {
			c.mu.Lock()
			done := c.err != nil || c.sentOff >= c.queued
			c.mu.Unlock()
			if done {
				break
			}
			select {
			case <-c.sendSpace:
			case <-c.dead:
			case <-t.C:
				break flush
			}
		}
		c.mu.Lock()
		ws := c.ws
		alive := c.err == nil
		c.mu.Unlock()
		if ws != nil && alive {
			_ = ws.Close(websocket.StatusNormalClosure, "")
		}
		c.fail(net.ErrClosed)
		c.wg.Wait()
		c.rdl.stop()
		c.wdl.stop()
		c.mu.Lock()
		for _, ch := range c.chunks {
			chunkPool.Put(ch)
		}
		c.chunks = nil
		c.mu.Unlock()
	})
	return nil
}

// Reconnects returns how many times the tunnel resumed its session on a new websocket.
func (c *Conn) Reconnects() int { return int(c.stats.reconnects.Load()) }

// LocalAddr returns a placeholder address: the local end is a websocket client.
func (c *Conn) LocalAddr() net.Addr { return localAddr{} }

// RemoteAddr returns the tunnel's target as an *Addr.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the deadline for pending and future Read calls; zero clears it.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline sets the deadline for pending and future Write calls; zero clears it.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// Addr is the target of a tunnel: a port on a network interface of a VM instance.
type Addr struct {
	Project, Zone, Instance, Interface string
	Port                               int
}

// Network returns "iap".
func (a *Addr) Network() string { return "iap" }

// String returns "project/zone/instance/interface:port".
func (a *Addr) String() string {
	return a.Project + "/" + a.Zone + "/" + a.Instance + "/" + a.Interface + ":" + strconv.Itoa(a.Port)
}

type localAddr struct{}

func (localAddr) Network() string { return "iap" }
func (localAddr) String() string  { return "iap-client" }

// deadline is a settable deadline whose wait channel is closed when it passes.
type deadline struct {
	mu sync.Mutex
	t  *time.Timer
	ch chan struct{}
}

func (d *deadline) chanLocked() chan struct{} {
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.chanLocked()
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil && !d.t.Stop() {
		<-d.ch // the timer fired and closed ch (AfterFunc ran or is running: wait for it)
	}
	d.t = nil
	ch := d.chanLocked()
	closed := false
	select {
	case <-ch:
		closed = true
	default:
	}
	if t.IsZero() {
		if closed {
			d.ch = make(chan struct{})
		}
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		if !closed {
			close(ch)
		}
		return
	}
	if closed {
		ch = make(chan struct{})
		d.ch = ch
	}
	d.t = time.AfterFunc(dur, func() { close(ch) })
}

func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil && !d.t.Stop() {
		<-d.ch
	}
	d.t = nil
}
