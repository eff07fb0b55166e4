package iap_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/remote/remotetest"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// TestTransport runs the transport conformance suite against the SSH transport
// through the IAP tunnel, as transport: iap deploys: x/crypto/ssh over
// iap.Dial, through the fake relay, to a real sshd on 127.0.0.1. One sshd and
// one relay serve every subtest; each Open is a new tunnel.
func TestTransport(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	r := newRelay(t, iaptest.RelayOptions{Logger: testLogger(t, slog.LevelWarn)})
	port := sshdPort(t, srv)
	remotetest.Run(t, func(t *testing.T) executor.Transport {
		lg := testLogger(t, slog.LevelInfo)
		o := options(r, "vm-1", port, nil)
		tr, err := remote.NewSSH(lg, remote.SSHOptions{
			User:         srv.User,
			Signer:       srv.ClientKey,
			HostKeyAlias: "compute.1234567890",
			HostKeys:     []ssh.PublicKey{srv.HostKey.PublicKey()},
			Dial:         func(ctx context.Context) (net.Conn, error) { return iap.Dial(ctx, lg, o) },
			KillGrace:    500 * time.Millisecond,
			Target:       "vm-1",
		})
		if err != nil {
			t.Fatalf("NewSSH() error = %v", err)
		}
		return tr
	}, remotetest.Options{Home: srv.Home, Sudo: true})
	if st := r.Stats(); st.Connects == 0 {
		t.Errorf("relay stats %+v: no tunnel went through the relay", st)
	}
}
