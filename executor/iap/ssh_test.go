package iap_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
	"github.com/deployhook/deployhook/internal/sshdtest"
	"golang.org/x/crypto/ssh"
)

// sshOver opens an SSH client on conn to srv, with srv's host key pinned.
func sshOver(tb testing.TB, conn net.Conn, srv *sshdtest.Server) *ssh.Client {
	tb.Helper()
	cfg := &ssh.ClientConfig{
		User:              srv.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(srv.ClientKey)},
		HostKeyCallback:   ssh.FixedHostKey(srv.HostKey.PublicKey()),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, "compute.1234567890:22", cfg)
	if err != nil {
		tb.Fatalf("ssh handshake: %v", err)
	}
	client := ssh.NewClient(c, chans, reqs)
	tb.Cleanup(func() { client.Close() })
	return client
}

func sshdPort(tb testing.TB, srv *sshdtest.Server) int {
	_, p, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		tb.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

func TestConn_SSH(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	r := newRelay(t, iaptest.RelayOptions{Instances: map[string]string{"vm-1": "127.0.0.1"}})
	conn := mustDial(t, t.Context(), options(r, "vm-1", sshdPort(t, srv), nil))
	client := sshOver(t, conn, srv)

	out, err := run(client, "echo hello from $(whoami)")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if want := "hello from " + srv.User + "\n"; string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}

	// A command with ~10 MB of output; the relay drops the websocket in the middle.
	const n = 1_500_000
	var want bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintln(&want, i)
	}
	r.Inject(iaptest.Fault{Kind: iaptest.FaultDrop, AfterBytes: 3 << 20})
	out, err = run(client, "seq 1 "+strconv.Itoa(n))
	if err != nil {
		t.Fatalf("run seq: %v", err)
	}
	if sha256.Sum256(out) != sha256.Sum256(want.Bytes()) {
		t.Fatalf("seq output differs: %d bytes, want %d", len(out), want.Len())
	}
	if st := r.Stats(); st.Reconnects != 1 || conn.Reconnects() != 1 {
		t.Fatalf("relay stats %+v, client reconnects %d: want exactly one reconnect", st, conn.Reconnects())
	}
	// The session goes on after the reconnect.
	if out, err := run(client, "echo still here"); err != nil || string(out) != "still here\n" {
		t.Fatalf("after reconnect: %q, %v", out, err)
	}
}

func run(client *ssh.Client, cmd string) ([]byte, error) {
	s, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Output(cmd)
}

// benchSSH returns an SSH client to srv over plain TCP or through a fake relay.
func benchSSH(b *testing.B, srv *sshdtest.Server, transport string) *ssh.Client {
	b.Helper()
	var conn net.Conn
	switch transport {
	case "tcp":
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			b.Fatal(err)
		}
		conn = c
	case "iap":
		r := newRelay(b, iaptest.RelayOptions{Logger: testLogger(b, slog.LevelWarn)})
		c, err := iap.Dial(b.Context(), testLogger(b, slog.LevelWarn), options(r, "vm-1", sshdPort(b, srv), nil))
		if err != nil {
			b.Fatal(err)
		}
		conn = c
	}
	b.Cleanup(func() { conn.Close() })
	return sshOver(b, conn, srv)
}

// BenchmarkSSHThroughput uploads 1 MiB per op into `cat > /dev/null`.
func BenchmarkSSHThroughput(b *testing.B) {
	srv := sshdtest.Start(b, sshdtest.Options{})
	for _, tr := range []string{"tcp", "iap"} {
		b.Run(tr, func(b *testing.B) {
			client := benchSSH(b, srv, tr)
			s, err := client.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			stdin, err := s.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start("cat > /dev/null"); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := stdin.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			stdin.Close()
			if err := s.Wait(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkSSHDownload reads 1 MiB per op from `cat /dev/zero`.
func BenchmarkSSHDownload(b *testing.B) {
	srv := sshdtest.Start(b, sshdtest.Options{})
	for _, tr := range []string{"tcp", "iap"} {
		b.Run(tr, func(b *testing.B) {
			client := benchSSH(b, srv, tr)
			s, err := client.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := s.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start("cat /dev/zero"); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := io.ReadFull(stdout, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			s.Close()
		})
	}
}

// BenchmarkSSHRoundTrip writes 32 bytes to `cat` and reads their echo, per op.
func BenchmarkSSHRoundTrip(b *testing.B) {
	srv := sshdtest.Start(b, sshdtest.Options{})
	for _, tr := range []string{"tcp", "iap"} {
		b.Run(tr, func(b *testing.B) {
			client := benchSSH(b, srv, tr)
			s, err := client.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			stdin, err := s.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := s.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start("cat"); err != nil {
				b.Fatal(err)
			}
			msg := bytes.Repeat([]byte("x"), 32)
			got := make([]byte, len(msg))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := stdin.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(stdout, got); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			stdin.Close()
			s.Wait()
		})
	}
}
