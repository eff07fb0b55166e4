package iap

import (
	"context"
	"errors"
	"net"
)

// Event is something that happened to a tunnel, as an Observer is told it.
type Event string

// The tunnel events.
const (
	// EventConnect: Dial opened a tunnel (the relay sent CONNECT_SUCCESS_SID).
	EventConnect Event = "connect"
	// EventConnectFailed: Dial failed after it reached for the relay (a
	// refusal, an HTTP status, a handshake that timed out, a token that could
	// not be had).
	EventConnectFailed Event = "connect_failed"
	// EventReconnect: a dropped tunnel resumed its session on a new websocket.
	EventReconnect Event = "reconnect"
	// EventReconnectFailed: a dropped tunnel could not be resumed and ended
	// with an error.
	EventReconnectFailed Event = "reconnect_failed"
)

// Observer is told what happens to tunnels, for metrics (internal/metrics
// implements it). Tunnel is called on the tunnel's goroutines: it must be safe
// for concurrent use and return at once.
type Observer interface {
	Tunnel(ev Event)
}

// observe tells o, if any, about ev.
func observe(o Observer, ev Event) {
	if o != nil {
		o.Tunnel(ev)
	}
}

// observeFailure tells o, if any, about the failure ev with err, unless err
// says the tunnel's owner gave up first (a cancelled dial, a closed tunnel):
// that is no failure of the relay's.
func observeFailure(o Observer, ev Event, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) {
		return
	}
	observe(o, ev)
}
