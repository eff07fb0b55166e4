package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/internal/sshdtest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// marker returns a unique number usable as a sleep duration ("300.123456"), so
// that pgrep -f finds exactly the processes of one test.
func marker(t testing.TB) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("300.%d", 100000+int(b[0])<<16|int(b[1])<<8|int(b[2]))
}

func randomName(t testing.TB, prefix string) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// pgrep lists the processes whose command line contains pattern.
func pgrep(t testing.TB, pattern string) string {
	t.Helper()
	p := sshdtest.Require(t, "pgrep", "/usr/bin/pgrep")
	out, err := exec.Command(p, "-af", pattern).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return "" // nothing matched
		}
		t.Fatalf("pgrep: %v", err)
	}
	// pgrep never lists itself; drop shells of this test that merely mention it.
	var lines []string
	for l := range strings.Lines(string(out)) {
		if !strings.Contains(l, "pgrep") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "")
}

// requireGone waits until no process matches pattern. A SIGKILLed process
// disappears within microseconds; the bound only turns a leak into a failure
// instead of a hang: without the kill the processes live for 300 s.
func requireGone(t testing.TB, pattern string) {
	t.Helper()
	var left string
	for range 100 {
		if left = pgrep(t, pattern); left == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	var pids []string
	for l := range strings.Lines(left) {
		pid, _, _ := strings.Cut(l, " ")
		pids = append(pids, pid)
	}
	ps, _ := exec.Command("ps", "-o", "pid,ppid,pgid,stat,etime,wchan:32,comm", "-p", strings.Join(pids, ",")).CombinedOutput()
	for _, pid := range pids {
		st, _ := os.ReadFile("/proc/" + pid + "/stack")
		ch, _ := exec.Command("ps", "-o", "pid,stat,wchan:32,args", "--ppid", pid).CombinedOutput()
		ps = fmt.Appendf(ps, "%s stack:\n%s\nchildren:\n%s", pid, st, ch)
	}
	t.Errorf("processes of the step survived:\n%s%s", left, ps)
	killAll(pattern)
}

// waitFor polls cond until it holds; the generous bound only turns a hang into
// a failure.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func killAll(pattern string) {
	_ = exec.Command("pkill", "-KILL", "-f", pattern).Run()
}

// signalWriter collects output and closes seen when want first appears in it.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func newSignalWriter(want string) *signalWriter {
	return &signalWriter{want: want, seen: make(chan struct{})}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// holdFlock runs flock(1) on path the way a person deploying by hand would, and
// returns once it holds the lock; the holder is killed when the test ends or when
// release is called.
func holdFlock(t testing.TB, path string) (release func()) {
	t.Helper()
	flock := sshdtest.Require(t, "flock", "/usr/bin/flock")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, flock, path, "sh", "-c", "echo held; exec cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 5)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "held\n" {
		t.Fatalf("flock holder: %q, %v", line, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			stdin.Close()
			cancel()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(release)
	return release
}

// flockFree reports whether flock(1) could take path at once.
func flockFree(t testing.TB, path string) bool {
	t.Helper()
	err := exec.Command("flock", "-n", path, "true").Run()
	if err == nil {
		return true
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return false
	}
	t.Fatalf("flock -n: %v", err)
	return false
}

// isRoot reports whether the tests run as root (on CI they do).
func isRoot() bool { return os.Geteuid() == 0 }

// addUser creates a system user for the test and deletes it afterwards. It needs
// root.
func addUser(t testing.TB, prefix string) string {
	t.Helper()
	useradd := sshdtest.Require(t, "useradd", "/usr/sbin/useradd")
	name := randomName(t, prefix)
	if out, err := exec.Command(useradd, "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("pkill", "-KILL", "-u", name).Run()
		if out, err := exec.Command("userdel", "--remove", name).CombinedOutput(); err != nil {
			t.Logf("userdel %s: %v\n%s", name, err, out)
		}
	})
	return name
}
