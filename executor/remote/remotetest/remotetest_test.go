package remotetest_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/remote/remotetest"
)

// brokenEnv names the variable that makes TestSuiteFails, in a child process,
// run the suite against a Local transport broken in the named way.
const brokenEnv = "DEPLOYHOOK_REMOTETEST_BROKEN"

// TestSuiteFails runs subtests of the suite, each in a child process, against
// Local transports that each break one promise, and checks that the subtest of
// that promise fails: the suite can fail. (The real transports pass it; see
// executor/remote and executor/iap.)
func TestSuiteFails(t *testing.T) {
	if mode := os.Getenv(brokenEnv); mode != "" {
		home := t.TempDir()
		t.Setenv("HOME", home)
		remotetest.Run(t, func(t *testing.T) executor.Transport {
			lg := slog.New(slog.DiscardHandler)
			return &brokenTransport{remote.NewLocal(lg, remote.LocalOptions{KillGrace: 500 * time.Millisecond,
				LockPoll: 10 * time.Millisecond}), mode}
		}, remotetest.Options{Home: home})
		return
	}
	for _, tt := range []struct {
		broken  string // the broken promise
		subtest string // the suite's subtest that must fail
		want    string // and what it must say
	}{
		{"exit codes", "ExitCodes/exit_42", "Run() code = 1, want 42"},
		{"stderr dropped", "OutputCombinedInOrder", `Run("interleaved") = 0, output "out 0\nout 1\n`},
		{"deployhook's environment leaks", "Env", `the step's environment holds "hook-secret-value"`},
		{"Close does nothing", "Close/without_lock", "Run() after Close = 0, <nil>; want -1 and an error"},
		{"lock ignored", "Lock/held_by_a_session", "flock -n took the lock an open session holds"},
		{"cancel leaves the tree running", "CancelKillsTree/login_user", "processes of the step survived"},
	} {
		t.Run(tt.broken, func(t *testing.T) {
			t.Parallel()
			c := exec.CommandContext(t.Context(), os.Args[0], "-test.v", "-test.run=^TestSuiteFails$/^"+
				strings.ReplaceAll(tt.subtest, "/", "$/^")+"$")
			c.Env = append(os.Environ(), brokenEnv+"="+tt.broken)
			out, err := c.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a transport whose %s:\n%s", tt.broken, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestSuiteFails/"+tt.subtest+" ") ||
				!strings.Contains(string(out), tt.want) {
				t.Errorf("subtest %s did not fail saying %q for a transport whose %s:\n%s", tt.subtest, tt.want, tt.broken, out)
			}
		})
	}
}

// brokenTransport breaks one promise of the transport it wraps.
type brokenTransport struct {
	executor.Transport
	mode string
}

func (b *brokenTransport) Open(ctx context.Context, target, lock string, lockWait time.Duration) (executor.Session, error) {
	if b.mode == "lock ignored" {
		lock = ""
	}
	s, err := b.Transport.Open(ctx, target, lock, lockWait)
	if err != nil {
		return nil, err
	}
	return &brokenSession{s, b.mode}, nil
}

type brokenSession struct {
	executor.Session
	mode string
}

func (b *brokenSession) Run(ctx context.Context, cmd executor.Command, out io.Writer) (int, error) {
	switch b.mode {
	case "exit codes":
		code, err := b.Session.Run(ctx, cmd, out)
		if err == nil && code > 1 {
			code = 1
		}
		return code, err
	case "stderr dropped":
		cmd.Run = "exec 2>/dev/null\n" + cmd.Run
	case "deployhook's environment leaks":
		env := map[string]string{"DEPLOYHOOK_WEBHOOK_SECRET": os.Getenv("DEPLOYHOOK_WEBHOOK_SECRET")}
		for k, v := range cmd.Env {
			env[k] = v
		}
		cmd.Env = env
	case "cancel leaves the tree running":
		// Run goes on without ctx; the suite's cleanup kills what is left.
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			code, err := b.Session.Run(context.WithoutCancel(ctx), cmd, out)
			done <- result{code, err}
		}()
		select {
		case r := <-done:
			return r.code, r.err
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
	return b.Session.Run(ctx, cmd, out)
}

func (b *brokenSession) Close() error {
	if b.mode == "Close does nothing" {
		return nil
	}
	return b.Session.Close()
}
