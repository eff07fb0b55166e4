package iap

import (
	"errors"
	"fmt"
)

// Close codes the relay uses (IAP-PROTOCOL.md §6). Codes 1000–1015 are RFC 6455's.
const (
	CodeNormal                = 1000
	CodeAbnormal              = 1006 // no close frame: the connection dropped (local pseudo-code)
	CodeErrorUnknown          = 4000
	CodeSIDUnknown            = 4001
	CodeSIDInUse              = 4002
	CodeFailedToConnect       = 4003
	CodeReauthRequired        = 4004
	CodeBadAck                = 4005
	CodeInvalidAck            = 4006
	CodeInvalidOpcode         = 4007
	CodeInvalidTag            = 4008
	CodeDestinationWriteFail  = 4009
	CodeDestinationReadFail   = 4010
	CodeInvalidData           = 4013
	CodeNotAuthorized         = 4033
	CodeLookupFailed          = 4047
	CodeLookupFailedReconnect = 4051
	CodeFailedToRewind        = 4074
)

// IAPSourceRange is the range IAP connects to VMs from; the VPC firewall must allow it
// (https://cloud.google.com/iap/docs/using-tcp-forwarding).
const IAPSourceRange = "35.235.240.0/20"

// CloseError is the relay closing the tunnel with a WebSocket close code other than the
// ones that mean end of stream (1000, 4009, 4010, which surface as io.EOF). Its Error
// text says what a person must fix; Reason is the relay's own text.
type CloseError struct {
	Code   int
	Reason string
	// Port is the VM port the tunnel was for (used in the 4003 advice).
	Port int
}

// Retryable reports whether the client may resume the same session on a new WebSocket
// (it does so itself, within Options.Reconnect): the connection dropped without a close
// frame (1006), the relay asked for re-authentication (4004), or it reported an unknown
// or transient error (4000, 1001, 1011–1014). Every other code is final for the session:
// the caller must fix something (see Error) or dial a new tunnel.
func (e *CloseError) Retryable() bool {
	switch e.Code {
	case CodeAbnormal, CodeReauthRequired, CodeErrorUnknown, 1001, 1011, 1012, 1013, 1014:
		return true
	}
	return false
}

// Error returns the close code, the relay's reason and what to do about it.
func (e *CloseError) Error() string {
	return fmt.Sprintf("iap relay closed the tunnel [%d: %q]: %s", e.Code, e.Reason, e.advice())
}

func (e *CloseError) advice() string {
	switch e.Code {
	case CodeNotAuthorized:
		return "not authorized: grant roles/iap.tunnelResourceAccessor (IAP-secured Tunnel User) on the instance or project to the service account the deployer runs as"
	case CodeFailedToConnect:
		return fmt.Sprintf("the relay could not connect to the VM: allow ingress from %s to tcp/%d in the VPC firewall, or the VM is stopped, still booting or not listening on port %d", IAPSourceRange, e.Port, e.Port)
	case CodeLookupFailed, CodeLookupFailedReconnect:
		return "instance lookup failed: check the project ID, zone, instance name and network interface (or the VM was just created and is not registered yet: retry in a minute)"
	case CodeSIDUnknown, CodeSIDInUse, CodeFailedToRewind:
		return "reconnecting the tunnel failed: the session cannot be resumed, open a new tunnel"
	case CodeReauthRequired:
		return "the relay requires re-authentication and reconnecting with a fresh token failed"
	case CodeAbnormal:
		return "the connection to the relay dropped and could not be resumed"
	case CodeInvalidAck, CodeBadAck, CodeInvalidOpcode, CodeInvalidTag, CodeInvalidData:
		return "the relay rejected what this client sent (a client bug)"
	}
	return "unexpected close code"
}

// HandshakeError is the relay answering the WebSocket upgrade with an HTTP status
// instead of 101 (IAP-PROTOCOL.md §2.5).
type HandshakeError struct {
	StatusCode int
}

// Error says what the status usually means.
func (e *HandshakeError) Error() string {
	switch e.StatusCode {
	case 403:
		return "iap relay refused the websocket upgrade (HTTP 403): rejected for reasons unrelated to IAM, e.g. a proxy blocking WebSockets"
	case 404:
		return "iap relay refused the websocket upgrade (HTTP 404): zone or backend not found, or missing permissions"
	case 401:
		return "iap relay refused the websocket upgrade (HTTP 401): the access token was rejected"
	}
	return fmt.Sprintf("iap relay refused the websocket upgrade (HTTP %d), may be due to missing permissions", e.StatusCode)
}

var errNoSubprotocol = errors.New("iap relay did not echo the subprotocol " + Subprotocol)
