package sshdtest

import (
	"net"
	"os"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestStart(t *testing.T) {
	s := Start(t, Options{Env: []string{"DEPLOYHOOK_TEST_A=one", "DEPLOYHOOK_TEST_B=two"}})
	cfg := &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.ClientKey)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey.PublicKey()),
	}
	c, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run := func(cmd string) string {
		t.Helper()
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		out, err := sess.Output(cmd)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return string(out)
	}
	if got := run("echo hello"); got != "hello\n" {
		t.Fatalf("got %q, want hello", got)
	}
	// The login shell gets the empty Home, so it reads no ~/.bashrc or
	// ~/.profile of the user running the tests (a root .bashrc that printed
	// broke exact-output assertions once).
	if got := run(`printf '%s\n' "$HOME"`); got != s.Home+"\n" {
		t.Errorf("HOME in a session = %q, want %q", got, s.Home)
	}
	// Options.Env reaches the session beside HOME: sshd keeps only the first
	// SetEnv line, so a second one (as ExtraConfig once had) was dropped.
	if got := run(`printf '%s %s\n' "$DEPLOYHOOK_TEST_A" "$DEPLOYHOOK_TEST_B"`); got != "one two\n" {
		t.Errorf("Options.Env in a session = %q, want %q", got, "one two\n")
	}
	entries, err := os.ReadDir(s.Home)
	if err != nil || len(entries) != 0 {
		t.Errorf("Home %s: %v entries, err %v; want an empty directory", s.Home, len(entries), err)
	}
}

// StartN's servers accept the one client key, and its known_hosts pins each
// server's own host key for its own address only.
func TestStartN(t *testing.T) {
	f := StartN(t, 3, Options{})
	key, err := ssh.ParsePrivateKey(f.ClientPEM)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(f.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range f.Servers {
		c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: cb})
		if err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
		c.Close()
		other := f.Servers[(i+1)%len(f.Servers)]
		addr, err := net.ResolveTCPAddr("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := cb(s.Addr, addr, other.HostKey.PublicKey()); err == nil {
			t.Errorf("known_hosts accepts server %d's key for server %d's address", (i+1)%3, i)
		}
	}
}
