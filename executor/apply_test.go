package executor_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// The tests in this file deploy with the default sequence over a real
// OpenSSH sshd on 127.0.0.1, as root (the login user, whose sudo -n is real)
// into a real git checkout owned by a real app user, with stand-ins for
// systemctl and systemd-analyze on the target's PATH (the real-systemd cases
// come with the harness that boots one). They hold invariant 4 (every job
// ends final, with the rollback's outcome) and 5 (the description carries
// no step output, host or address: only deployhook's words and file names).

// vm is the "VM" of these tests.
type vm struct {
	t        *testing.T
	dir      string
	srv      *sshdtest.Server
	app      string // the checkout (app_dir), the app user's
	origin   string // the bare repository the checkout fetches from
	work     string // a developer's clone to commit from
	home     string // the app user's HOME for git
	bin      string // stand-ins, first on the target's PATH
	log      string // what the stand-ins were asked, one call a line
	units    string // apply_units.to
	dagster  string // DAGSTER_HOME
	backup   string // apply_backup_dir
	lock     string
	user     string // the app user
	uid, gid int
	first    string // the commit the checkout is at
}

// newVM starts sshd and sets up the app user, the repositories and the
// stand-ins. It needs root (CI runs as root): the app user is a real user.
func newVM(t *testing.T, files map[string]string) *vm {
	t.Helper()
	sshdtest.Require(t, "git", "/usr/bin/git")
	sshdtest.Require(t, "sudo", "/usr/bin/sudo")
	sshdtest.Require(t, "flock", "/usr/bin/flock")
	sshdtest.Require(t, "runuser", "/usr/sbin/runuser", "/sbin/runuser")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the apply tests need root (a real app user and sudo): CI runs as root")
		}
		t.Skip("the apply tests need root: they create an app user and install files as root")
	}
	v := &vm{t: t, dir: t.TempDir()}
	for _, d := range []string{v.dir, filepath.Dir(v.dir)} {
		if err := os.Chmod(d, 0o755); err != nil { // the app user must reach its files
			t.Fatal(err)
		}
	}
	v.user = addUser(t)
	u, err := user.Lookup(v.user)
	if err != nil {
		t.Fatal(err)
	}
	v.uid, _ = strconv.Atoi(u.Uid)
	v.gid, _ = strconv.Atoi(u.Gid)
	v.home = v.mkdir("home", true)
	v.origin = filepath.Join(v.home, "origin.git")
	v.work = filepath.Join(v.home, "work")
	v.app = filepath.Join(v.home, "app")
	v.bin = v.mkdir("bin", false)
	v.units = v.mkdir("systemd", false)
	v.dagster = v.mkdir("dagster-home", true)
	v.backup = filepath.Join(v.dir, "backup")
	v.lock = filepath.Join(v.mkdir("lock", false), "deploy.lock")
	if err := os.Chmod(filepath.Dir(v.lock), 0o700); err != nil {
		t.Fatal(err)
	}
	v.log = filepath.Join(v.dir, "calls.log")
	write(t, v.log, "", 0o666)
	write(t, filepath.Join(v.bin, "systemctl"), fmt.Sprintf(systemctlStandIn, v.log), 0o755)
	write(t, filepath.Join(v.bin, "systemd-analyze"), fmt.Sprintf(analyzeStandIn, v.log), 0o755)

	v.git(v.home, "init", "--quiet", "--bare", "--initial-branch=main", v.origin)
	v.git(v.home, "init", "--quiet", "--initial-branch=main", v.work)
	v.first = v.commit("initial", files)
	v.git(v.home, "clone", "--quiet", v.origin, v.app)
	v.srv = sshdtest.Start(t, sshdtest.Options{})
	return v
}

// systemctlStandIn logs "systemctl ARGS" and answers the verify step's
// queries: every unit active, never restarted.
const systemctlStandIn = `#!/bin/sh
echo "systemctl $*" >> '%s'
[ "$1" = --no-ask-password ] && shift
case "$1" in
daemon-reload|restart|try-restart) exit 0 ;;
show) case "$2" in --property=ActiveState) echo active ;; *) echo 0 ;; esac ;;
*) echo "systemctl stand-in: unexpected $*" >&2; exit 1 ;;
esac
`

// analyzeStandIn logs "systemd-analyze verify NAME..." (the files' base
// names: they must carry the unit's real name) and refuses a file that says
// INVALID, as the real one refuses a unit with an unknown section.
const analyzeStandIn = `#!/bin/sh
[ "$1" = verify ] || { echo "systemd-analyze stand-in: unexpected $*" >&2; exit 1; }
shift
line="systemd-analyze verify"; bad=0
for f in "$@"; do
  line="$line ${f##*/}"
  [ -f "$f" ] || { echo "$f: no such file" >&2; bad=1; }
  if grep -q INVALID "$f"; then echo "$f:1: Unknown section 'INVALID'" >&2; bad=1; fi
done
echo "$line" >> '%s'
exit $bad
`

func (v *vm) mkdir(name string, app bool) string {
	v.t.Helper()
	d := filepath.Join(v.dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		v.t.Fatal(err)
	}
	if app {
		if err := os.Chown(d, v.uid, v.gid); err != nil {
			v.t.Fatal(err)
		}
	}
	return d
}

// git runs the real git as the app user, who owns every repository here.
func (v *vm) git(dir string, args ...string) string {
	v.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+v.home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(v.uid), Gid: uint32(v.gid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		v.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (an empty body removes the file) in the developer's
// clone, commits, pushes, and returns the commit.
func (v *vm) commit(msg string, files map[string]string) string {
	v.t.Helper()
	for name, body := range files {
		p := filepath.Join(v.work, name)
		if body == "" {
			v.git(v.work, "rm", "--quiet", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			v.t.Fatal(err)
		}
		write(v.t, p, body, 0o644)
		if err := os.Chown(p, v.uid, v.gid); err != nil {
			v.t.Fatal(err)
		}
		for d := filepath.Dir(p); d != v.work; d = filepath.Dir(d) {
			_ = os.Chown(d, v.uid, v.gid)
		}
	}
	v.git(v.work, "add", "--all")
	v.git(v.work, "commit", "--quiet", "-m", msg)
	v.git(v.work, "push", "--quiet", v.origin, "HEAD:refs/heads/main")
	return v.git(v.work, "rev-parse", "HEAD")
}

// sequence is the default sequence for this VM: restart app.service.
func (v *vm) sequence() executor.Sequence {
	return executor.Sequence{
		AppDir: v.app, AppUser: v.user, Units: []string{"app"}, Settle: 0,
		Apply: executor.Apply{BackupDir: v.backup}, VerifyWithin: 2 * time.Second,
	}
}

// deploy runs one push of sha with seq, to the end, and returns the job
// with its steps.
func (v *vm) deploy(seq executor.Sequence, sha string) executor.Job {
	v.t.Helper()
	if err := seq.Validate(); err != nil {
		v.t.Fatal(err)
	}
	steps, current, changed, contains := seq.Steps()
	target := executor.Target{
		Name: "production", Repo: "acme/app", Branch: "main", Steps: steps,
		Current: current, Changed: changed, Contains: contains,
		NotApplied: []string{"infra/**", "dagster.yaml"}, Rollback: true, Dir: v.app,
		Env:  map[string]string{"PATH": v.bin + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
		Lock: v.lock, LockWait: time.Minute,
	}
	lg := slog.New(slog.NewTextHandler(testWriter{v.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr, err := remote.NewSSH(lg, remote.SSHOptions{
		Addr: v.srv.Addr, User: v.srv.User, PrivateKey: v.srv.ClientPEM, KnownHostsFile: v.srv.KnownHosts,
		HandshakeTimeout: 20 * time.Second,
	})
	if err != nil {
		v.t.Fatal(err)
	}
	store := executor.NewMemStore()
	e, err := executor.New(lg, executor.Options{Targets: []executor.Target{target}}, store, tr, &reporter{})
	if err != nil {
		v.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(v.t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	q, err := e.Enqueue(ctx, "production", executor.Trigger{
		Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: sha,
		Delivery: "d-" + sha[:12], Actor: "octocat", Reason: "push",
	})
	if err != nil {
		v.t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if _, err := e.Wait(wctx, q.Job.ID); err != nil {
		v.t.Fatal(err)
	}
	j, err := store.Job(ctx, q.Job.ID)
	if err != nil {
		v.t.Fatal(err)
	}
	for _, s := range j.Steps {
		v.t.Logf("step %q exit %d skipped %q:\n%s", s.Name, s.ExitCode, s.Skipped, s.Output)
	}
	return j
}

// calls returns the stand-ins' log lines.
func (v *vm) calls() []string {
	v.t.Helper()
	b, err := os.ReadFile(v.log)
	if err != nil {
		v.t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// head returns the checkout's HEAD.
func (v *vm) head() string { return v.git(v.app, "rev-parse", "HEAD") }

// file returns a file's content and owner; "" and -1 when it is missing.
func file(t *testing.T, p string) (string, int, os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return "", -1, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), int(fi.Sys().(*syscall.Stat_t).Uid), fi.Mode().Perm()
}

func step(j executor.Job, name string) *executor.StepRun {
	for i := range j.Steps {
		if j.Steps[i].Name == name {
			return &j.Steps[i]
		}
	}
	return nil
}

func stepNames(j executor.Job) []string {
	var out []string
	for _, s := range j.Steps {
		out = append(out, s.Name)
	}
	return out
}

type reporter struct{}

func (reporter) Report(context.Context, executor.Report) (int64, error) { return 0, nil }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// addUser creates a user and removes it when the test ends.
func addUser(t *testing.T) string {
	t.Helper()
	useradd := sshdtest.Require(t, "useradd", "/usr/sbin/useradd")
	userdel := sshdtest.Require(t, "userdel", "/usr/sbin/userdel")
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "dh-ap-" + hex.EncodeToString(b[:])
	if out, err := exec.Command(useradd, "--no-create-home", "--shell", "/bin/sh", "--password", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(userdel, name).CombinedOutput(); err != nil {
			t.Logf("userdel %s: %v\n%s", name, err, out)
		}
	})
	return name
}

func write(t *testing.T, p, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// count returns how many of lines are line.
func count(lines []string, line string) int {
	n := 0
	for _, l := range lines {
		if l == line {
			n++
		}
	}
	return n
}

// after returns the lines after the first that is line.
func after(lines []string, line string) []string {
	for i, l := range lines {
		if l == line {
			return lines[i+1:]
		}
	}
	return nil
}
