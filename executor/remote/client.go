package remote

import (
	"context"

	"golang.org/x/crypto/ssh"
)

// Client connects to the target as Open does (same dialer, key and host-key
// pins) and returns the SSH client itself, for an interactive shell. The caller
// closes it. No deploy lock is taken.
func (t *SSH) Client(ctx context.Context) (*ssh.Client, error) {
	return t.connect(ctx)
}
