package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestSSH_Open_HandshakeErrorSaidOnce: a failed SSH handshake says so once.
// Before issue 9 Open's error read "connect to vm: ssh handshake: ssh:
// handshake failed: …": x/crypto/ssh's error names the handshake already.
func TestSSH_Open_HandshakeErrorSaidOnce(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewSSH(slog.New(slog.NewTextHandler(t.Output(), nil)), SSHOptions{
		User: "deploy", HostKeyAlias: "vm", Signer: signer, HostKeys: []ssh.PublicKey{signer.PublicKey()},
		Dial: func(context.Context) (net.Conn, error) {
			// A peer that is no sshd: it reads the client's version line and hangs up.
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				_, _ = io.ReadFull(server, make([]byte, 4))
			}()
			return client, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.Open(t.Context(), "vm", "", 0)
	if err == nil {
		t.Fatal("Open succeeded against a peer that is no sshd")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "connect to vm: ssh: handshake failed: ") || strings.Count(msg, "handshake") != 1 {
		t.Errorf("Open: %q, want \"connect to vm: ssh: handshake failed: …\" naming the handshake once", msg)
	}
}
