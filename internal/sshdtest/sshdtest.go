// Package sshdtest starts a real OpenSSH sshd on 127.0.0.1 for tests: its own host
// key, its own authorized_keys, an unprivileged free port and a temporary directory.
//
// When sshd is not installed, Start fails the test if the CI environment variable is
// set and skips it, with a message, otherwise.
package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Server is a running sshd.
type Server struct {
	Addr      string     // 127.0.0.1:PORT
	User      string     // the login user (the user running the test)
	HostKey   ssh.Signer // the server's ed25519 host key
	ClientKey ssh.Signer // a key in authorized_keys
	ClientPEM []byte     // ClientKey as an OpenSSH private key file
	Dir       string     // sshd's directory: config, keys, log
	// Home is HOME in every session: an empty directory, so the login shell reads
	// no start-up file of the user's real home (a root ~/.bashrc that prints
	// would end up in every command's output). sshd still starts sessions in the
	// real home directory; a test that needs a path relative to the home uses
	// "$HOME".
	Home       string
	KnownHosts string // a known_hosts file pinning HostKey for Addr
	cmd        *exec.Cmd
}

// Options changes how the server is started.
type Options struct {
	// ExtraConfig lines appended to sshd_config. Not SetEnv: sshd keeps only
	// the first SetEnv line, which Start writes (use Env).
	ExtraConfig []string
	// Env is set in every session ("NAME=value"), beside HOME.
	Env []string
	// ClientPEM is the OpenSSH private key the server accepts (Server.ClientPEM);
	// a new ed25519 key when nil.
	ClientPEM []byte
}

// Require returns the path of an executable, or fails (CI) or skips the test.
func Require(tb testing.TB, name string, paths ...string) string {
	tb.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s not found: CI must install it (see .ci/run)", name)
	}
	tb.Skipf("%s not found: install it (Debian: see .ci/run) to run this test", name)
	return ""
}

// Start starts sshd and stops it when the test ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	sshd := Require(tb, "sshd", "/usr/sbin/sshd")
	dir := tb.TempDir()
	u, err := user.Current()
	if err != nil {
		tb.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation needs this directory when run as root.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	s := &Server{User: u.Username, Dir: dir, Home: filepath.Join(dir, "home")}
	if err := os.Mkdir(s.Home, 0o700); err != nil {
		tb.Fatal(err)
	}
	st := Prepare(tb, dir, 0o600, opts.ClientPEM, append([]string{
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"PermitRootLogin prohibit-password",
		// SetEnv overrides what sshd sets from the password database, HOME
		// included. One line: sshd keeps only the first SetEnv.
		"SetEnv " + strings.Join(append([]string{"HOME=" + s.Home}, opts.Env...), " "),
	}, opts.ExtraConfig...))
	s.Addr, s.HostKey, s.ClientKey, s.ClientPEM, s.KnownHosts = st.Addr, st.HostKey, st.ClientKey, st.ClientPEM, st.KnownHosts

	var log bytes.Buffer
	s.cmd = exec.Command(sshd, "-D", "-e", "-f", st.Config)
	s.cmd.Stderr = &log
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start sshd: %v", err)
	}
	tb.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		if tb.Failed() {
			tb.Logf("sshd log:\n%s", log.String())
		}
	})
	if err := WaitListening(s.Addr, 10*time.Second); err != nil {
		tb.Fatalf("sshd did not listen on %s: %v\n%s", s.Addr, err, log.String())
	}
	return s
}

// Setup is an sshd's files, as Prepare writes them in one directory.
type Setup struct {
	Addr       string     // 127.0.0.1:PORT, on a port that was free
	HostKey    ssh.Signer // a new ed25519 host key
	ClientKey  ssh.Signer // the key authorized_keys accepts
	ClientPEM  []byte     // ClientKey as an OpenSSH private key file
	Config     string     // the sshd_config file
	KnownHosts string     // a known_hosts file pinning HostKey for Addr
}

// Prepare writes into dir what an sshd for a test reads: a new ed25519 host
// key (mode 0600), an authorized_keys file accepting clientPEM (a new
// ed25519 key when nil), an sshd_config and a known_hosts file pinning the
// host key. The configuration listens on a free port of 127.0.0.1, takes
// public keys only, without PAM or strict modes, allows TCP forwarding and
// 64 sessions, accepts DEPLOYHOOK_* variables and logs VERBOSE; the lines of
// config follow, in order. sshd keeps the first value of a keyword, so config
// adds keywords (PidFile, PermitRootLogin, SetEnv; Match blocks last) but
// cannot change these. The files but the host key get mode perm: 0644 where
// sshd reads authorized_keys as a user other than the test's.
func Prepare(tb testing.TB, dir string, perm os.FileMode, clientPEM []byte, config []string) *Setup {
	tb.Helper()
	s := &Setup{Config: filepath.Join(dir, "sshd_config"), KnownHosts: filepath.Join(dir, "known_hosts")}
	hostPEM, hostSigner := newKey(tb)
	s.HostKey = hostSigner
	if clientPEM != nil {
		k, err := ssh.ParsePrivateKey(clientPEM)
		if err != nil {
			tb.Fatalf("sshdtest: client key: %v", err)
		}
		s.ClientPEM, s.ClientKey = clientPEM, k
	} else {
		s.ClientPEM, s.ClientKey = newKey(tb)
	}
	write(tb, filepath.Join(dir, "host_ed25519"), hostPEM, 0o600)
	write(tb, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(s.ClientKey.PublicKey()), perm)

	port := freePort(tb)
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	conf := []string{
		fmt.Sprintf("Port %d", port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(dir, "host_ed25519"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"AllowTcpForwarding yes",
		"LogLevel VERBOSE",
		"MaxSessions 64",
		"MaxStartups 64",
		"AcceptEnv DEPLOYHOOK_*",
	}
	conf = append(conf, config...)
	write(tb, s.Config, []byte(strings.Join(conf, "\n")+"\n"), perm)
	line := fmt.Sprintf("[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))
	write(tb, s.KnownHosts, []byte(line), perm)
	return s
}

// WaitListening waits until addr accepts a TCP connection, for at most
// timeout, and returns the last dial error when it never did.
func WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ClientKeyFile writes ClientPEM to a file and returns its path.
func (s *Server) ClientKeyFile(tb testing.TB) string {
	p := filepath.Join(tb.TempDir(), "id_ed25519")
	write(tb, p, s.ClientPEM, 0o600)
	return p
}

func newKey(tb testing.TB) ([]byte, ssh.Signer) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(block), signer
}

func write(tb testing.TB, path string, b []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		tb.Fatal(err)
	}
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Fleet is several servers that accept one client key: the VMs of a fleet.
type Fleet struct {
	Servers   []*Server
	ClientPEM []byte // the client key every server accepts
	// KnownHosts is a known_hosts file pinning each server's own host key
	// for its address, as a fleet's ssh.known_hosts_file does.
	KnownHosts string
}

// StartN starts n servers with opts (ClientPEM, when nil, is one new key for
// all) and stops them when the test ends.
func StartN(tb testing.TB, n int, opts Options) *Fleet {
	tb.Helper()
	if opts.ClientPEM == nil {
		opts.ClientPEM, _ = newKey(tb)
	}
	f := &Fleet{ClientPEM: opts.ClientPEM, KnownHosts: filepath.Join(tb.TempDir(), "known_hosts")}
	var kh []byte
	for range n {
		s := Start(tb, opts)
		f.Servers = append(f.Servers, s)
		b, err := os.ReadFile(s.KnownHosts)
		if err != nil {
			tb.Fatal(err)
		}
		kh = append(kh, b...)
	}
	write(tb, f.KnownHosts, kh, 0o600)
	return f
}
