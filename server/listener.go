package server

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns is the default Options.MaxConns. Each open connection costs
// the HTTP server a goroutine and its buffers, some 20 KB while it waits.
const DefaultMaxConns = 512

// refusal is what a connection past the cap gets before it is closed: a minimal
// 503 that a client reading its answer can show, without reading the request.
// TestRefusal checks that it parses and that its Content-Length is right.
const refusal = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\n" +
	"Connection: close\r\n" +
	"Content-Length: 76\r\n" +
	"\r\n" +
	`{"error":"busy: too many connections; redeliver from GitHub's delivery log"}`

// refusalTimeout bounds writing the refusal. A new connection's send buffer is
// empty, so the write does not wait; the bound is against the impossible.
const refusalTimeout = 100 * time.Millisecond

// capListener is a net.Listener that keeps at most max connections open. Past
// the cap it does not stall Accept (as netutil.LimitListener would, for every
// client alike): it answers the new connection with a minimal 503, closes it and
// accepts the next. A connection counts until it is closed.
type capListener struct {
	net.Listener
	lg      *slog.Logger
	max     int64
	open    atomic.Int64 // connections handed out and not closed
	refused atomic.Int64 // connections refused, ever
	lastLog atomic.Int64 // unix nanoseconds of the last "cap reached" log line
}

func limitConns(lg *slog.Logger, ln net.Listener, max int) *capListener {
	return &capListener{Listener: ln, lg: lg, max: int64(max)}
}

// Accept returns the next connection under the cap, refusing those past it.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &capConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refuse(c)
	}
}

// refuse answers c with the refusal and closes it. It logs at most once a minute,
// so that a flood of connections does not flood the log too.
func (l *capListener) refuse(c net.Conn) {
	n := l.refused.Add(1)
	now := time.Now().UnixNano()
	if last := l.lastLog.Load(); now-last > int64(time.Minute) && l.lastLog.CompareAndSwap(last, now) {
		l.lg.Warn("connection cap reached: refusing new connections", "max_conns", l.max, "refused_total", n)
	}
	c.SetWriteDeadline(time.Now().Add(refusalTimeout))
	c.Write([]byte(refusal))
	c.Close()
}

// capConn is a connection that frees its slot when closed.
type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

// Close closes the connection and frees its slot once.
func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
