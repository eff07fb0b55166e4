package iap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Relay frame tags (IAP-PROTOCOL.md §3.1). Every WebSocket binary message carries exactly
// one frame, starting with a big-endian uint16 tag.
const (
	TagConnectSuccessSID   uint16 = 0x0001
	TagReconnectSuccessAck uint16 = 0x0002
	TagData                uint16 = 0x0004
	TagAck                 uint16 = 0x0007
	TagLongClose           uint16 = 0x000A
)

// MaxDataLen is the largest DATA payload, in bytes, either side may send in one frame
// (gcloud's SUBPROTOCOL_MAX_DATA_FRAME_SIZE, IAP Desktop's MaxArrayLength).
const MaxDataLen = 16384

const (
	dataHeaderLen = 6  // tag + uint32 length
	ackFrameLen   = 10 // tag + uint64
	maxDataFrame  = dataHeaderLen + MaxDataLen
	maxSIDLen     = 4096 // a SID is a short printable string; refuse anything absurd
)

// ErrProtocol is wrapped by every error that reports a relay violating the protocol
// (a truncated frame, a frame out of order, an impossible ACK).
var ErrProtocol = errors.New("iap relay protocol violation")

// Frame is one decoded relay frame. Only the fields of its Tag are set; Data aliases the
// decoded message and is valid only until the buffer is reused.
type Frame struct {
	Tag  uint16
	SID  string // TagConnectSuccessSID
	Ack  uint64 // TagReconnectSuccessAck, TagAck
	Data []byte // TagData
	// Extra is the number of bytes that followed the frame in the same message; the
	// protocol says they are discarded.
	Extra int
}

// AppendData appends a DATA frame carrying p to b. It panics if p is longer than
// MaxDataLen (a programming error: callers split).
func AppendData(b, p []byte) []byte {
	if len(p) > MaxDataLen {
		panic("iap: DATA payload larger than MaxDataLen")
	}
	b = binary.BigEndian.AppendUint16(b, TagData)
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	return append(b, p...)
}

// AppendAck appends an ACK frame acknowledging n cumulative payload bytes to b.
func AppendAck(b []byte, n uint64) []byte {
	b = binary.BigEndian.AppendUint16(b, TagAck)
	return binary.BigEndian.AppendUint64(b, n)
}

// AppendConnectSuccessSID appends a CONNECT_SUCCESS_SID frame to b.
func AppendConnectSuccessSID(b []byte, sid string) []byte {
	b = binary.BigEndian.AppendUint16(b, TagConnectSuccessSID)
	b = binary.BigEndian.AppendUint32(b, uint32(len(sid)))
	return append(b, sid...)
}

// AppendReconnectSuccessAck appends a RECONNECT_SUCCESS_ACK frame to b.
func AppendReconnectSuccessAck(b []byte, n uint64) []byte {
	b = binary.BigEndian.AppendUint16(b, TagReconnectSuccessAck)
	return binary.BigEndian.AppendUint64(b, n)
}

// putDataHeader writes a DATA header for n payload bytes into b[0:6].
func putDataHeader(b []byte, n int) {
	binary.BigEndian.PutUint16(b, TagData)
	binary.BigEndian.PutUint32(b[2:], uint32(n))
}

// DecodeFrame decodes the frame at the start of msg, one WebSocket message. A message
// shorter than its frame's header or declared length is an error wrapping ErrProtocol,
// as is a DATA length above MaxDataLen. Unknown tags decode to a Frame with only Tag
// set (callers ignore them). DecodeFrame never panics.
func DecodeFrame(msg []byte) (Frame, error) {
	if len(msg) < 2 {
		return Frame{}, fmt.Errorf("%w: message of %d bytes has no tag", ErrProtocol, len(msg))
	}
	f := Frame{Tag: binary.BigEndian.Uint16(msg)}
	body := msg[2:]
	switch f.Tag {
	case TagConnectSuccessSID:
		if len(body) < 4 {
			return Frame{}, fmt.Errorf("%w: truncated CONNECT_SUCCESS_SID", ErrProtocol)
		}
		n := binary.BigEndian.Uint32(body)
		if n > maxSIDLen || uint64(len(body)-4) < uint64(n) {
			return Frame{}, fmt.Errorf("%w: CONNECT_SUCCESS_SID length %d, message has %d", ErrProtocol, n, len(body)-4)
		}
		f.SID = string(body[4 : 4+n])
		f.Extra = len(body) - 4 - int(n)
	case TagReconnectSuccessAck, TagAck:
		if len(body) < 8 {
			return Frame{}, fmt.Errorf("%w: truncated frame with tag %d", ErrProtocol, f.Tag)
		}
		f.Ack = binary.BigEndian.Uint64(body)
		f.Extra = len(body) - 8
	case TagData:
		if len(body) < 4 {
			return Frame{}, fmt.Errorf("%w: truncated DATA header", ErrProtocol)
		}
		n := binary.BigEndian.Uint32(body)
		if n > MaxDataLen {
			return Frame{}, fmt.Errorf("%w: DATA length %d above %d", ErrProtocol, n, MaxDataLen)
		}
		if uint64(len(body)-4) < uint64(n) {
			return Frame{}, fmt.Errorf("%w: DATA length %d, message has %d", ErrProtocol, n, len(body)-4)
		}
		f.Data = body[4 : 4+n]
		f.Extra = len(body) - 4 - int(n)
	}
	return f, nil
}
