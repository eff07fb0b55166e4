package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote/remotetest"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// testConn wraps the TCP connection to sshd so a test can cut it or freeze it
// (a peer that stops answering: writes vanish, reads never return).
type testConn struct {
	net.Conn
	frozen atomic.Bool
	gone   chan struct{}
	once   sync.Once
}

func (c *testConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.frozen.Load() {
		<-c.gone
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *testConn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *testConn) Close() error {
	c.once.Do(func() { close(c.gone) })
	return c.Conn.Close()
}

// dialer records the connections it makes.
type dialer struct {
	addr  string
	mu    sync.Mutex
	conns []*testConn
}

func (d *dialer) dial(ctx context.Context) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	tc := &testConn{Conn: c, gone: make(chan struct{})}
	d.mu.Lock()
	d.conns = append(d.conns, tc)
	d.mu.Unlock()
	return tc, nil
}

func (d *dialer) last() *testConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[len(d.conns)-1]
}

func sshOptions(t testing.TB, srv *sshdtest.Server) SSHOptions {
	return SSHOptions{
		Addr:           srv.Addr,
		User:           srv.User,
		PrivateKey:     srv.ClientPEM,
		KnownHostsFile: srv.KnownHosts,
		KillGrace:      500 * time.Millisecond,
		Target:         "test-vm",
	}
}

func newSSH(t testing.TB, opts SSHOptions) *SSH {
	t.Helper()
	tr, err := NewSSH(testLogger(t), opts)
	if err != nil {
		t.Fatalf("NewSSH() error = %v", err)
	}
	return tr
}

func openSSH(t testing.TB, tr *SSH, lock string, wait time.Duration) executor.Session {
	t.Helper()
	s, err := tr.Open(t.Context(), "test-vm", lock, wait)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSSH runs the conformance suite against the SSH transport over TCP to a
// real sshd on 127.0.0.1, shared by its subtests.
func TestSSH(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	remotetest.Run(t, func(t *testing.T) executor.Transport {
		return newSSH(t, sshOptions(t, srv))
	}, remotetest.Options{Home: srv.Home, Sudo: true})
}

// checkEcho checks that s runs a step: the session works.
func checkEcho(t *testing.T, s executor.Session) {
	t.Helper()
	var out strings.Builder
	code, err := s.Run(t.Context(), executor.Command{Name: "echo", Run: "echo ok", Timeout: 30 * time.Second}, &out)
	if err != nil || code != 0 || out.String() != "ok\n" {
		t.Errorf("Run(echo ok) = %d, %v, output %q; want 0, nil, %q", code, err, out.String(), "ok\n")
	}
}

func TestNewSSH_errors(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	tests := []struct {
		name    string
		mod     func(*SSHOptions)
		wantErr string
	}{
		{"no pins", func(o *SSHOptions) { o.KnownHostsFile = "" }, "no host key pinned for " + srv.Addr + ": set known_hosts_file"},
		{"known hosts without the alias", func(o *SSHOptions) { o.HostKeyAlias = "compute.1234" }, "no host key pinned for compute.1234"},
		{"no key", func(o *SSHOptions) { o.PrivateKey = nil }, "no private key"},
		{"no user", func(o *SSHOptions) { o.User = "" }, "set the login user"},
		{"no address", func(o *SSHOptions) { o.Addr = "" }, "set the address"},
		{"missing known hosts file", func(o *SSHOptions) { o.KnownHostsFile = filepath.Join(t.TempDir(), "nope") }, "read known hosts file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := sshOptions(t, srv)
			tt.mod(&opts)
			_, err := NewSSH(testLogger(t), opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewSSH() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSSH_Open_hostKeyPins(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := ssh.NewPublicKey(other.Public())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("changed key refused", func(t *testing.T) {
		opts := sshOptions(t, srv)
		opts.KnownHostsFile = ""
		opts.HostKeys = []ssh.PublicKey{otherPub}
		opts.HostKeyAlias = "compute.42"
		opts.Target = "prod"
		lock := filepath.Join(t.TempDir(), "lockdir", "deploy.lock")
		_, err := newSSH(t, opts).Open(t.Context(), "", lock, time.Second)
		var hk *HostKeyError
		if !errors.As(err, &hk) {
			t.Fatalf("Open() error = %v, want a *HostKeyError", err)
		}
		seen := ssh.FingerprintSHA256(srv.HostKey.PublicKey())
		if hk.Fingerprint != seen || hk.Alias != "compute.42" {
			t.Errorf("HostKeyError = %+v, want fingerprint %s alias compute.42", hk, seen)
		}
		for _, want := range []string{seen, "compute.42", ssh.FingerprintSHA256(otherPub), "pin it", "prod"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		// Nothing ran: the lock session would have created the directory.
		if _, err := os.Stat(filepath.Dir(lock)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the lock directory exists: something ran on the target (%v)", err)
		}
	})
	t.Run("explicit pin accepted", func(t *testing.T) {
		opts := sshOptions(t, srv)
		opts.KnownHostsFile = ""
		opts.HostKeys = []ssh.PublicKey{otherPub, srv.HostKey.PublicKey()}
		s := openSSH(t, newSSH(t, opts), "", 0)
		checkEcho(t, s)
	})
	t.Run("alias in known_hosts", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := "compute.7 " + string(ssh.MarshalAuthorizedKey(srv.HostKey.PublicKey()))
		if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		opts := sshOptions(t, srv)
		opts.KnownHostsFile = kh
		opts.HostKeyAlias = "compute.7"
		openSSH(t, newSSH(t, opts), "", 0)
	})
}

func TestSSH_passphrase(t *testing.T) {
	t.Parallel() // bcrypt: CPU while the other tests wait
	srv := sshdtest.Start(t, sshdtest.Options{})
	raw, err := ssh.ParseRawPrivateKey(srv.ClientPEM)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(raw, "", []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	encrypted := pem.EncodeToMemory(block)
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, encrypted, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		passphrase string
		wantErr    string
	}{
		{"right passphrase", "s3cret", ""},
		{"wrong passphrase", "guess", "wrong passphrase"},
		{"no passphrase", "", "encrypted: set its passphrase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := sshOptions(t, srv)
			opts.PrivateKey = nil
			opts.PrivateKeyFile = keyFile
			opts.Passphrase = []byte(tt.passphrase)
			tr, err := NewSSH(testLogger(t), opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewSSH() error = %v, want one containing %q", err, tt.wantErr)
				}
				if tt.passphrase != "" && strings.Contains(err.Error(), tt.passphrase) {
					t.Errorf("the error shows the passphrase: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := openSSH(t, tr, "", 0)
			checkEcho(t, s)
		})
	}
}

// TestSSH_loginUserWithoutSudo logs in as a user without sudo rights (sshdtest's
// authorized_keys serves every user): a step with Sudo fails at once instead of
// waiting for a password.
func TestSSH_loginUserWithoutSudo(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	sshdtest.Require(t, "sudo", "/usr/bin/sudo")
	if !remotetest.IsRoot() {
		t.Skip("creating users needs root; TestCommandLine covers the sudo command lines")
	}
	app := remotetest.AddUser(t, "dh-app-")
	if out, err := exec.Command("usermod", "-p", "*", app).CombinedOutput(); err != nil {
		t.Fatalf("unlock %s: %v %s", app, err, out)
	}
	// sshd reads authorized_keys as the user logging in.
	for _, p := range []string{filepath.Dir(srv.Dir), srv.Dir, filepath.Join(srv.Dir, "authorized_keys")} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := sshOptions(t, srv)
	opts.User = app
	s := openSSH(t, newSSH(t, opts), "", 0)
	var out strings.Builder
	code, err := s.Run(t.Context(), executor.Command{Name: "restart", Run: "true", Sudo: true, Timeout: 20 * time.Second}, &out)
	if err != nil {
		t.Fatalf("Run() error = %v (output %q)", err, out.String())
	}
	if code == 0 || !strings.Contains(out.String(), "password is required") {
		t.Errorf("Run() = %d, output %q; want a failure saying a password is required", code, out.String())
	}
}

// TestSSH_Open_deadConnection: the lock is released when the holder's
// connection dies (the deployer died, or the tunnel broke).
func TestSSH_Open_deadConnection(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	d := &dialer{addr: srv.Addr}
	opts := sshOptions(t, srv)
	opts.Dial = d.dial
	tr := newSSH(t, opts)
	lock := filepath.Join(t.TempDir(), "var", "deploy.lock")
	s := openSSH(t, tr, lock, time.Second)
	if remotetest.FlockFree(t, lock) {
		t.Fatal("flock -n took the lock an open session holds")
	}
	d.last().Close()
	s2, err := tr.Open(t.Context(), "test-vm", lock, time.Minute)
	if err != nil {
		t.Fatalf("Open() after the holder's connection died: %v", err)
	}
	s2.Close()
	if err := s.Close(); err != nil && !strings.Contains(err.Error(), "closed") {
		t.Logf("Close() of the dead session: %v", err)
	}
}

func TestSSH_Run_connectionCut(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	d := &dialer{addr: srv.Addr}
	opts := sshOptions(t, srv)
	opts.Dial = d.dial
	tr := newSSH(t, opts)
	s := openSSH(t, tr, "", 0)
	m := remotetest.Marker(t)
	out := remotetest.NewSignalWriter("started")
	go func() {
		<-out.Seen()
		d.last().Close()
	}()
	code, err := s.Run(t.Context(), executor.Command{Name: "long", Run: "echo started; sleep " + m, Timeout: 10 * time.Second}, out)
	if err == nil || errors.Is(err, executor.ErrTimeout) || errors.Is(err, context.Canceled) || code != -1 {
		t.Fatalf("Run() = %d, %v; want -1 and a transport error", code, err)
	}
	if !strings.Contains(err.Error(), "test-vm") || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("error %q does not say the connection to test-vm was lost", err)
	}
	remotetest.KillAll(m)
	s2 := openSSH(t, tr, "", 0)
	checkEcho(t, s2)
}

func TestSSH_keepalive(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	d := &dialer{addr: srv.Addr}
	opts := sshOptions(t, srv)
	opts.Dial = d.dial
	opts.KeepAlive = 50 * time.Millisecond
	opts.KeepAliveMax = 3
	s := openSSH(t, newSSH(t, opts), "", 0)
	m := remotetest.Marker(t)
	out := remotetest.NewSignalWriter("started")
	go func() {
		<-out.Seen()
		d.last().frozen.Store(true)
	}()
	// Without keepalives Run would wait for the step's timeout and return
	// ErrTimeout, a failure here. (The step itself is not killed by deployhook
	// when the connection dies: timeout(1) on the target ends it.)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	code, err := s.Run(ctx, executor.Command{Name: "long", Run: "echo started; sleep " + m, Timeout: 10 * time.Second}, out)
	remotetest.KillAll(m)
	if err == nil || errors.Is(err, executor.ErrTimeout) || ctx.Err() != nil || code != -1 {
		t.Fatalf("Run() = %d, %v; want -1 and a transport error", code, err)
	}
	if !strings.Contains(err.Error(), "keepalive") {
		t.Errorf("error %q does not say the peer stopped answering keepalives", err)
	}
}

func TestSSH_certificate(t *testing.T) {
	dir := t.TempDir()
	_, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pub")
	if err := os.WriteFile(caFile, ssh.MarshalAuthorizedKey(ca.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := sshdtest.Start(t, sshdtest.Options{ExtraConfig: []string{"TrustedUserCAKeys " + caFile}})

	// A key that is not in authorized_keys: only its certificate lets it in.
	_, userKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(userKey, "")
	if err != nil {
		t.Fatal(err)
	}
	userPub, err := ssh.NewPublicKey(userKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key: userPub, CertType: ssh.UserCert, KeyId: "deployhook-test",
		ValidPrincipals: []string{srv.User}, ValidBefore: ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "id_ed25519-cert.pub")
	if err := os.WriteFile(certFile, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}

	opts := sshOptions(t, srv)
	opts.PrivateKey = pem.EncodeToMemory(block)
	if _, err := newSSH(t, opts).Open(t.Context(), "test-vm", "", 0); err == nil {
		t.Fatal("Open() without the certificate succeeded: the test proves nothing")
	}
	opts.CertificateFile = certFile
	s := openSSH(t, newSSH(t, opts), "", 0)
	checkEcho(t, s)

	opts.CertificateFile = filepath.Join(dir, "ca.pub")
	if _, err := NewSSH(testLogger(t), opts); err == nil || !strings.Contains(err.Error(), "not a certificate") {
		t.Errorf("NewSSH() with a plain key as certificate: %v", err)
	}
}
