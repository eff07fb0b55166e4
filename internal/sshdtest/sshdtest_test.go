package sshdtest

import (
	"os"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestStart(t *testing.T) {
	s := Start(t, Options{})
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
	entries, err := os.ReadDir(s.Home)
	if err != nil || len(entries) != 0 {
		t.Errorf("Home %s: %v entries, err %v; want an empty directory", s.Home, len(entries), err)
	}
}
