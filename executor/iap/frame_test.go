package iap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The vectors of IAP-PROTOCOL.md §3.2 (from gcloud's unit tests).
func TestAppendFrame_vectors(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"ack 0", AppendAck(nil, 0), "00 07 00 00 00 00 00 00 00 00"},
		{"ack 1", AppendAck(nil, 1), "00 07 00 00 00 00 00 00 00 01"},
		{"ack 65534", AppendAck(nil, 65534), "00 07 00 00 00 00 00 00 FF FE"},
		{"ack max", AppendAck(nil, 1<<64-1), "00 07 FF FF FF FF FF FF FF FF"},
		{"data", AppendData(nil, []byte("\x99abcde")), "00 04 00 00 00 06 99 61 62 63 64 65"},
		{"data empty", AppendData(nil, nil), "00 04 00 00 00 00"},
		{"sid", AppendConnectSuccessSID(nil, "z"), "00 01 00 00 00 01 7A"},
		{"reconnect ack", AppendReconnectSuccessAck(nil, 3029), "00 02 00 00 00 00 00 00 0B D5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if want := unhex(t, tt.want); !bytes.Equal(tt.got, want) {
				t.Errorf("got % x, want % x", tt.got, want)
			}
		})
	}
}

func TestDecodeFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Frame
		wantErr bool
	}{
		{name: "ack 0", in: "00 07 00 00 00 00 00 00 00 00", want: Frame{Tag: TagAck}},
		{name: "ack 65534", in: "00 07 00 00 00 00 00 00 FF FE", want: Frame{Tag: TagAck, Ack: 65534}},
		{name: "ack max", in: "00 07 FF FF FF FF FF FF FF FF", want: Frame{Tag: TagAck, Ack: 1<<64 - 1}},
		{name: "data", in: "00 04 00 00 00 06 99 61 62 63 64 65", want: Frame{Tag: TagData, Data: []byte("\x99abcde")}},
		{name: "data empty", in: "00 04 00 00 00 00", want: Frame{Tag: TagData, Data: []byte{}}},
		{name: "sid", in: "00 01 00 00 00 01 7A", want: Frame{Tag: TagConnectSuccessSID, SID: "z"}},
		{name: "reconnect ack", in: "00 02 00 00 00 00 00 00 0B D5", want: Frame{Tag: TagReconnectSuccessAck, Ack: 3029}},
		{name: "unknown tag", in: "10 00 01 02 03", want: Frame{Tag: 0x1000}},
		{name: "long close ignored", in: "00 0A 00 00 0F A0 00 00 00 00", want: Frame{Tag: TagLongClose}},
		{name: "extra bytes after data", in: "00 04 00 00 00 01 41 42 43", want: Frame{Tag: TagData, Data: []byte("A"), Extra: 2}},
		{name: "extra bytes after ack", in: "00 07 00 00 00 00 00 00 00 05 FF", want: Frame{Tag: TagAck, Ack: 5, Extra: 1}},
		{name: "empty message", in: "", wantErr: true},
		{name: "one byte", in: "00", wantErr: true},
		{name: "truncated ack", in: "00 07 00 00 00 00 00 00 00", wantErr: true},
		{name: "truncated reconnect ack", in: "00 02 00", wantErr: true},
		{name: "truncated data header", in: "00 04 00 00 00", wantErr: true},
		{name: "truncated data payload", in: "00 04 00 00 00 06 99 61", wantErr: true},
		{name: "data too long", in: "00 04 00 00 40 01", wantErr: true},
		{name: "truncated sid", in: "00 01 00 00 00 05 7A", wantErr: true},
		{name: "sid header only", in: "00 01 00", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeFrame(unhex(t, tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v, want ErrProtocol", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Tag != tt.want.Tag || got.SID != tt.want.SID || got.Ack != tt.want.Ack || !bytes.Equal(got.Data, tt.want.Data) || got.Extra != tt.want.Extra {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeFrame_maxData(t *testing.T) {
	p := bytes.Repeat([]byte{7}, MaxDataLen)
	f, err := DecodeFrame(AppendData(nil, p))
	if err != nil || !bytes.Equal(f.Data, p) {
		t.Fatalf("decode max DATA: err %v, %d bytes", err, len(f.Data))
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		"00 07 00 00 00 00 00 00 00 01", "00 04 00 00 00 06 99 61 62 63 64 65", "00 01 00 00 00 01 7A",
		"00 02 00 00 00 00 00 00 0B D5", "10 00", "00 04 FF FF FF FF", "00 01 FF FF FF FF 41",
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fr, err := DecodeFrame(msg)
		if err != nil {
			return
		}
		if len(fr.Data) > MaxDataLen || fr.Extra < 0 || fr.Extra > len(msg) {
			t.Fatalf("bad frame %+v from %d bytes", fr, len(msg))
		}
		if fr.Tag == TagData {
			re := AppendData(nil, fr.Data)
			if !bytes.Equal(re, msg[:len(msg)-fr.Extra]) {
				t.Fatalf("DATA does not round-trip")
			}
		}
	})
}

func TestEndpointURLs(t *testing.T) {
	tests := []struct {
		name, endpoint, wantConnect, wantReconnect string
		wantErr                                    bool
	}{
		{
			name:          "default",
			wantConnect:   "wss://tunnel.cloudproxy.app/v4/connect?project=my-proj&port=22&newWebsocket=True&zone=us-central1-a&instance=vm-1&interface=nic0",
			wantReconnect: "wss://tunnel.cloudproxy.app/v4/reconnect?sid=ab%2Fc&ack=3029&newWebsocket=True&zone=us-central1-a",
		},
		{
			name: "override without path", endpoint: "ws://127.0.0.1:8080",
			wantConnect:   "ws://127.0.0.1:8080/v4/connect?project=my-proj&port=22&newWebsocket=True&zone=us-central1-a&instance=vm-1&interface=nic0",
			wantReconnect: "ws://127.0.0.1:8080/v4/reconnect?sid=ab%2Fc&ack=3029&newWebsocket=True&zone=us-central1-a",
		},
		{
			name: "override with path", endpoint: "https://relay.test/x/",
			wantConnect:   "wss://relay.test/x/connect?project=my-proj&port=22&newWebsocket=True&zone=us-central1-a&instance=vm-1&interface=nic0",
			wantReconnect: "wss://relay.test/x/reconnect?sid=ab%2Fc&ack=3029&newWebsocket=True&zone=us-central1-a",
		},
		{name: "mtls", endpoint: MTLSEndpoint,
			wantConnect:   "wss://mtls.tunnel.cloudproxy.app/v4/connect?project=my-proj&port=22&newWebsocket=True&zone=us-central1-a&instance=vm-1&interface=nic0",
			wantReconnect: "wss://mtls.tunnel.cloudproxy.app/v4/reconnect?sid=ab%2Fc&ack=3029&newWebsocket=True&zone=us-central1-a",
		},
		{name: "bad scheme", endpoint: "ftp://x/v4", wantErr: true},
		{name: "no host", endpoint: "ws:///v4", wantErr: true},
		// Issue 8, item 8: the bearer token went in cleartext to any ws:// host.
		{name: "ws elsewhere", endpoint: "ws://relay.example.com/v4", wantErr: true},
		{name: "http elsewhere", endpoint: "http://relay.example.com", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, err := endpointBase(tt.endpoint)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("endpoint %q accepted", tt.endpoint)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := connectURL(base, "my-proj", "us-central1-a", "vm-1", "nic0", 22); got != tt.wantConnect {
				t.Errorf("connect URL\n got %s\nwant %s", got, tt.wantConnect)
			}
			if got := reconnectURL(base, "ab/c", 3029, "us-central1-a"); got != tt.wantReconnect {
				t.Errorf("reconnect URL\n got %s\nwant %s", got, tt.wantReconnect)
			}
		})
	}
}

func TestCloseError_Error(t *testing.T) {
	tests := []struct {
		name          string
		err           *CloseError
		wantRetryable bool
		wantText      []string
	}{
		{"not authorized", &CloseError{Code: 4033, Reason: "not authorized", Port: 22}, false, []string{"4033", "roles/iap.tunnelResourceAccessor", "IAP-secured Tunnel User"}},
		{"backend", &CloseError{Code: 4003, Reason: "failed to connect to backend", Port: 2222}, false, []string{"4003", "35.235.240.0/20", "tcp/2222", "not listening"}},
		{"lookup", &CloseError{Code: 4047, Reason: "Failed to lookup instance", Port: 22}, false, []string{"4047", "project", "zone", "instance name", "interface", "just created"}},
		{"sid unknown", &CloseError{Code: 4001}, false, []string{"reconnecting the tunnel failed"}},
		{"sid in use", &CloseError{Code: 4002}, false, []string{"reconnecting the tunnel failed"}},
		{"rewind", &CloseError{Code: 4074}, false, []string{"reconnecting the tunnel failed"}},
		{"reauth", &CloseError{Code: 4004}, true, []string{"re-authentication"}},
		{"drop", &CloseError{Code: 1006}, true, []string{"dropped"}},
		{"unknown", &CloseError{Code: 4000}, true, []string{"4000"}},
		{"invalid tag", &CloseError{Code: 4008}, false, []string{"client bug"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Retryable(); got != tt.wantRetryable {
				t.Errorf("Retryable() = %v, want %v", got, tt.wantRetryable)
			}
			msg := tt.err.Error()
			for _, w := range tt.wantText {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not contain %q", msg, w)
				}
			}
		})
	}
}
