package remote

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote/remotetest"
	"github.com/deployhook/deployhook/internal/sshdtest"

	"github.com/deployhook/deployhook/internal/shell"
)

// deploySteps stands in for the default deploy sequence after the lock (DESIGN.md,
// "The deploy sequence"): check the work tree and record HEAD, fetch and check out,
// verify the checkout, uv sync (usually skipped), restart two units, verify them.
var deploySteps = []string{
	"test -z \"$(echo)\" && echo 0123456789abcdef0123456789abcdef01234567",
	"true fetch && true checkout",
	"echo 0123456789abcdef0123456789abcdef01234567",
	"true uv sync",
	"true restart dagster-code",
	"true restart dagster",
	"echo active && echo active",
}

// benchServer starts sshd for a benchmark. As root it logs in as a fresh user
// whose login shell is /bin/sh, as a deploy user on a VM would: root's own
// ~/.bashrc on a developer machine (pyenv init, say) would dominate both
// measurements and measure nothing of the transport.
func benchServer(b *testing.B) (*sshdtest.Server, string) {
	srv := sshdtest.Start(b, sshdtest.Options{})
	if !remotetest.IsRoot() {
		return srv, srv.User
	}
	u := remotetest.AddUser(b, "dh-bench-")
	if out, err := exec.Command("usermod", "-p", "*", u).CombinedOutput(); err != nil {
		b.Fatalf("unlock %s: %v %s", u, err, out)
	}
	for _, p := range []string{filepath.Dir(srv.Dir), srv.Dir, filepath.Join(srv.Dir, "authorized_keys")} {
		if err := os.Chmod(p, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	return srv, u
}

// benchLock returns a lock path in a directory only user can write, as Open
// requires.
func benchLock(b *testing.B, user string) string {
	dir, err := os.MkdirTemp("", "dh-bench-lock")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if remotetest.IsRoot() {
		out, err := exec.Command("chown", user, dir).CombinedOutput()
		if err != nil {
			b.Fatalf("chown %s: %v %s", user, err, out)
		}
	}
	return filepath.Join(dir, "deploy.lock")
}

// BenchmarkSSHDeploy is one no-op deploy over the SSH transport: a new connection,
// the lock, the seven steps, Close.
func BenchmarkSSHDeploy(b *testing.B) {
	srv, user := benchServer(b)
	opts := sshOptions(b, srv)
	opts.User = user
	tr := newSSH(b, opts)
	lock := benchLock(b, user)
	var out strings.Builder
	for b.Loop() {
		s, err := tr.Open(b.Context(), "bench", lock, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		for i, step := range deploySteps {
			out.Reset()
			code, err := s.Run(b.Context(), executor.Command{Name: fmt.Sprint("step", i), Run: step, Timeout: time.Minute}, &out)
			if err != nil || code != 0 {
				b.Fatalf("step %d: %d, %v: %s", i, code, err, out.String())
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenSSHOneShot is the floor: the OpenSSH client running the lock and
// the same seven commands in one "ssh host 'a && b && ...'". "default" uses the
// client's default key exchange (sntrup761x25519-sha512 with OpenSSH 9.x, which
// costs tens of milliseconds of CPU); "curve25519" the one x/crypto/ssh
// negotiates with OpenSSH 9.2, curve25519-sha256, for a like-for-like floor.
func BenchmarkOpenSSHOneShot(b *testing.B) {
	sshBin := sshdtest.Require(b, "ssh", "/usr/bin/ssh")
	srv, user := benchServer(b)
	key := srv.ClientKeyFile(b)
	lock := benchLock(b, user)
	host, port, _ := strings.Cut(srv.Addr, ":")
	script := "flock -w 10 " + shell.Quote(lock) + " sh -c " + shell.Quote(strings.Join(deploySteps, " && "))
	for _, kex := range []string{"default", "curve25519"} {
		b.Run(kex, func(b *testing.B) {
			args := []string{"-i", key, "-o", "UserKnownHostsFile=" + srv.KnownHosts, "-o", "BatchMode=yes",
				"-o", "StrictHostKeyChecking=yes", "-F", "/dev/null", "-p", port, "-l", user}
			if kex == "curve25519" {
				args = append(args, "-o", "KexAlgorithms=curve25519-sha256")
			}
			args = append(args, host, script)
			for b.Loop() {
				out, err := exec.CommandContext(b.Context(), sshBin, args...).CombinedOutput()
				if err != nil {
					b.Fatalf("ssh: %v\n%s", err, out)
				}
			}
		})
	}
}
