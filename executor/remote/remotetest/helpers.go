package remotetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/shell"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// The helpers below are what the suite uses to look at the target (this
// machine) from outside the transport: processes by a marker in their command
// line, flock(1) on lock files, users. They are exported for the
// transport-specific tests of the same promises (a cut connection, a deployhook
// killed with SIGKILL).

// Marker returns a unique number usable as a sleep duration ("300.123456"), so
// that Pgrep finds exactly the processes of one test: "sleep MARKER" runs for
// about five minutes unless it is killed.
func Marker(t testing.TB) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("300.%d", 100000+int(b[0])<<16|int(b[1])<<8|int(b[2]))
}

// RandomName returns prefix followed by eight random hex digits.
func RandomName(t testing.TB, prefix string) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// Pgrep lists the processes whose command line contains pattern, one "PID
// COMMAND LINE" per line, leaving out pgrep and shells that merely mention it.
func Pgrep(t testing.TB, pattern string) string {
	t.Helper()
	p := sshdtest.Require(t, "pgrep", "/usr/bin/pgrep")
	out, err := exec.Command(p, "-af", pattern).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return "" // nothing matched
		}
		t.Fatalf("pgrep: %v", err)
	}
	var lines []string
	for l := range strings.Lines(string(out)) {
		if !strings.Contains(l, "pgrep") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "")
}

// RequireGone waits until no process matches pattern, and fails the test (and
// kills them) when some are still there after five seconds. A SIGKILLed process
// disappears within microseconds; the bound only turns a leak into a failure
// instead of a hang: without the kill, "sleep MARKER" lives for 300 s.
func RequireGone(t testing.TB, pattern string) {
	t.Helper()
	var left string
	for range 100 {
		if left = Pgrep(t, pattern); left == "" {
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
	KillAll(pattern)
}

// KillAll SIGKILLs the processes whose command line contains pattern (a
// Marker or a file of the test), to clean up after a failure.
func KillAll(pattern string) {
	_ = exec.Command("pkill", "-KILL", "-f", pattern).Run()
}

// WaitFor polls cond every 10 ms until it holds, and fails the test after a
// minute: the generous bound only turns a hang into a failure.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SignalWriter collects a step's output and closes Seen when Want first
// appears in it. It is safe for concurrent use.
type SignalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

// NewSignalWriter returns a SignalWriter waiting for want.
func NewSignalWriter(want string) *SignalWriter {
	return &SignalWriter{want: want, seen: make(chan struct{})}
}

// Seen is closed once the output contains the awaited text.
func (w *SignalWriter) Seen() <-chan struct{} { return w.seen }

// Write implements io.Writer.
func (w *SignalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// String returns the output so far.
func (w *SignalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// HoldFlock runs flock(1) on path the way a person deploying by hand would,
// and returns once it holds the lock; the holder is ended when the test ends
// or when release is called.
func HoldFlock(t testing.TB, path string) (release func()) {
	t.Helper()
	flock := sshdtest.Require(t, "flock", "/usr/bin/flock")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
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

// FlockFree reports whether flock(1) could take path at once; a file that does
// not exist is free (and is not created).
func FlockFree(t testing.TB, path string) bool {
	t.Helper()
	flock := sshdtest.Require(t, "flock", "/usr/bin/flock")
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return true
	}
	err := exec.Command(flock, "-n", path, "true").Run()
	if err == nil {
		return true
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return false
	}
	t.Fatalf("flock -n: %v", err)
	return false
}

// OpenCount returns how many file descriptors of processes on this machine
// (those /proc lets the test see: all of them as root) refer to path. A
// transport waiting for a lock holds its file open, in this process (Local) or
// in a flock(1) on the target (SSH): a rise of the count says the wait began.
func OpenCount(path string) int {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		if err != nil {
			continue // gone, or another user's
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && l == path {
				n++
			}
		}
	}
	return n
}

// IsRoot reports whether the test runs as root (on CI it does).
func IsRoot() bool { return os.Geteuid() == 0 }

// AddUser creates a user for the test (home directory, /bin/sh as its shell)
// and deletes it, with its processes, when the test ends. It needs root.
func AddUser(t testing.TB, prefix string) string {
	t.Helper()
	useradd := sshdtest.Require(t, "useradd", "/usr/sbin/useradd")
	name := RandomName(t, prefix)
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

// MarkerDir returns a directory for marker files that any step's user can
// write (mode 0777), removed when the test ends.
func MarkerDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "dh-marks")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// MarkerScript is a step that writes a line "main NANOS" to file every 50 ms
// for ever, with a background child that ignores SIGTERM and writes "child
// NANOS" lines; it prints "started" once both have written.
func MarkerScript(file string) string {
	q := shell.Quote(file)
	return `m() { while :; do echo "$1 $(date +%s%N)" >>` + q + `; sleep 0.05; done; }
(trap '' TERM; m child) &
echo "main $(date +%s%N)" >>` + q + `
while ! grep -q '^child ' ` + q + `; do sleep 0.01; done
echo started
m main`
}

// startScript is the next deploy's step: it writes "start NANOS" to file
// first, lists the processes whose command line names old, which must be none,
// and runs for a few of the old step's 50 ms periods, so that an old process
// still alive would write a marker newer than the start. The pattern is a
// regular expression that matches old but not itself, so that pgrep does not
// find this step.
func startScript(file, old string) string {
	pattern := filepath.Join(filepath.Dir(old), strings.ReplaceAll(filepath.Base(old), ".", "[.]"))
	return `echo "start $(date +%s%N)" >>` + shell.Quote(file) + `
pgrep -af ` + shell.Quote(pattern) + ` || true
sleep 0.3`
}

// markers reads the lines of a marker file: what wrote them, and when.
func markers(t testing.TB, file string) (last map[string]int64, lines int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	last = make(map[string]int64)
	for l := range strings.Lines(string(b)) {
		who, ns, ok := strings.Cut(strings.TrimSpace(l), " ")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil {
			t.Fatalf("marker file %s: bad line %q", file, l)
		}
		last[who] = max(last[who], n)
		lines++
	}
	return last, lines
}

// RunUntilStarted runs cmd (a MarkerScript step) on s in the background and
// returns when it printed "started"; the channel gets Run's error.
func RunUntilStarted(t *testing.T, s executor.Session, cmd executor.Command) <-chan error {
	t.Helper()
	out := NewSignalWriter("started")
	done := make(chan error, 1)
	go func() {
		_, err := s.Run(t.Context(), cmd, out)
		done <- err
	}()
	select {
	case <-out.Seen():
	case err := <-done:
		t.Fatalf("marker step ended before it started: %v (output %q)", err, out.String())
	}
	return done
}

// CheckNoOverlap runs the next deploy's first step on s, writing to a file in
// dir, and checks that every process of the old MarkerScript step (writing to
// oldMarks) was gone when it started: no marker of the old step is newer than
// the new step's start, pgrep found none of them then, and none is found
// later.
func CheckNoOverlap(t *testing.T, s executor.Session, dir, oldMarks string) {
	t.Helper()
	newMarks := filepath.Join(dir, "new.marks")
	var out strings.Builder
	code, err := s.Run(t.Context(), executor.Command{Name: "first step of the next deploy",
		Run: startScript(newMarks, oldMarks), Timeout: time.Minute}, &out)
	if err != nil || code != 0 {
		t.Fatalf("next deploy's step: %d, %v (output %q)", code, err, out.String())
	}
	if out.String() != "" {
		t.Errorf("processes of the old step were alive when the next deploy's step ran:\n%s", out.String())
	}
	start, _ := markers(t, newMarks)
	old, n := markers(t, oldMarks)
	for _, who := range []string{"main", "child"} {
		if old[who] == 0 {
			t.Fatalf("no %q marker among the %d old ones: the old step did not run as meant", who, n)
		}
		if old[who] >= start["start"] {
			t.Errorf("the old step's %s wrote a marker %v after the next deploy's step started",
				who, time.Duration(old[who]-start["start"]))
		}
	}
	RequireGone(t, oldMarks)
}
