// Package iap reaches a TCP port of a Compute Engine VM through Identity-Aware Proxy
// TCP forwarding, natively: Dial returns a net.Conn (*Conn) that speaks the relay's
// WebSocket protocol (the one `gcloud compute start-iap-tunnel` speaks) to
// tunnel.cloudproxy.app. No gcloud binary is involved; golang.org/x/crypto/ssh runs on
// top of the Conn.
//
// # Protocol
//
// Dial opens a WebSocket to ENDPOINT/connect?project=…&port=…&newWebsocket=True&zone=…
// &instance=…&interface=nic0 (ENDPOINT must be wss://, ws:// only for a loopback host;
// no redirect is followed) with "Authorization: Bearer <access token>",
// "Origin: bot:iap-tunneler" and the subprotocol relay.tunnel.cloudproxy.app, which the
// relay must echo. Every WebSocket binary message carries exactly one relay frame: a
// big-endian uint16 tag and a body. The relay first sends CONNECT_SUCCESS_SID (tag 1,
// a length-prefixed session id); only then is the tunnel open (Dial waits at most
// Options.ConnectTimeout). Both sides then send DATA (tag 4, uint32 length and 1–16384
// payload bytes; larger writes are split, empty ones never sent) and ACK (tag 7, the
// uint64 cumulative count of payload bytes received). Unknown tags are ignored; bytes
// after a frame in the same message are discarded; a truncated frame, DATA or ACK
// before the SID, a second SID, a non-binary message, a message longer than the
// largest frame (16390 bytes), or an ACK that is zero, goes backwards or covers more
// than was sent are protocol violations (ErrProtocol) that end the tunnel, without a
// reconnect.
//
// # Acknowledgements
//
// The relay stops sending once about 1 MiB is unacknowledged. The tunnel ACKs as soon
// as more than Ack.Threshold (32 KiB) received bytes are unacknowledged, and flushes
// any unacknowledged bytes after Ack.Idle (500 ms, at most 1 s) without new data, so
// at most 1 MiB is ever unacknowledged. While received bytes waiting for Read hold
// more than RecvBuffer bytes of memory, it withholds ACKs: that is its backpressure
// on the relay. Memory, not payload, is counted, and small frames are packed into
// the room left in the buffer before them, so a relay sending 1-byte frames costs
// about a byte per byte, not a 16 KiB buffer each. Relay ACKs release
// data from the send buffer (partially acknowledged chunks are kept and trimmed on
// resend); Write blocks while SendBuffer bytes are unacknowledged.
//
// # Reconnect
//
// When the WebSocket drops without a close frame (1006) or the relay closes it with a
// retryable code (4004 re-authentication required, 4000, 1001, 1011–1014), the tunnel
// resumes the same session: it takes a fresh token from the TokenSource and dials
// ENDPOINT/reconnect?sid=…&ack=<bytes received>&newWebsocket=True&zone=…, expects
// RECONNECT_SUCCESS_ACK (tag 2) with the number of bytes the relay holds, drops what
// that confirms and resends everything else before new data; the relay replays what
// the tunnel did not receive. The first attempt is immediate, later ones back off from
// Reconnect.Backoff (1 s) doubling to Reconnect.MaxBackoff (20 s), for at most
// Reconnect.MaxAttempts (5). Reads and writes just wait meanwhile (deadlines apply).
// 4001, 4002 and 4074 during a reconnect, or any final code, end the tunnel. The
// session has a reconnect budget: at most Reconnect.PerMinute (12) attempts in any
// minute and Reconnect.Total (120) in all, and the backoff starts over only after a
// resumed websocket held for a minute; a relay that accepts every reconnect and drops
// it again ends the tunnel with ErrReconnectBudget.
//
// # Close codes
//
// Read returns io.EOF when the relay closes with 1000, 4009 or 4010 (the VM side ended
// the connection). Other codes surface as *CloseError, whose message says what to fix:
//
//	code  meaning                      what to do
//	4033  not authorized               grant roles/iap.tunnelResourceAccessor (IAP-secured
//	                                   Tunnel User) to the deployer's service account
//	4003  failed to connect to backend allow 35.235.240.0/20 to tcp/PORT in the VPC
//	                                   firewall; or the VM is stopped, booting, or not
//	                                   listening on PORT
//	4047  failed to lookup instance    check project ID, zone, instance name, interface
//	                                   (or the VM was just created: retry in a minute)
//	4001  SID unknown                  }
//	4002  SID in use                   } reconnecting failed: open a new tunnel
//	4074  failed to rewind             }
//	4004  re-authentication required  retried with a fresh token (reported if that fails)
//	1006  connection dropped           retried (reported if reconnecting fails)
//
// An HTTP status instead of the WebSocket upgrade is a *HandshakeError.
//
// The package iaptest has a faithful local fake of the relay for tests.
package iap
