package sshdtest

import (
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
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("echo hello")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello\n" {
		t.Fatalf("got %q, want hello", out)
	}
}
