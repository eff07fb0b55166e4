package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployhook/deployhook/internal/sshdtest"
)

// vm is the "VM" of the TestVM_ tests: a real OpenSSH sshd on 127.0.0.1, a real
// git origin (a bare repository) with a developer's clone to commit from, and
// the app's checkout at app, owned by the app user, whose PATH (the target's
// env) finds stand-in systemctl, uv and git scripts in bin that log every call
// to log as "SHA USER TOOL ARGS..." (SHA is the step's DEPLOYHOOK_SHA).
type vm struct {
	srv     *sshdtest.Server
	sudoLog string // the stand-in sudo's log; empty when sudo is real
	keyFile string
	dir     string // everything of the VM
	origin  string // the bare repository
	work    string // the developer's clone
	app     string // the checkout the deploy runs in (app_dir)
	bin     string // the stand-ins
	ctl     string // control files of the stand-ins
	log     string // the stand-ins' log
	lock    string // the deploy lock (lock)
	user    string // app_user
	uid     int
	gid     int
	git     string // the real git
	gitEnv  []string
	first   string // the commit the checkout starts at
}

// vmOptions changes how newVM sets the VM up.
type vmOptions struct {
	// realSudo: never put the stand-in sudo in place (see newVM).
	realSudo bool
}

// newVM starts the VM. As root (CI) the app user is a real user, created here
// and removed at the end, so the default sequence's sudo -n -u runs for real.
// Otherwise the app user is the current user: when it may "sudo -n -u" to
// itself, sudo runs for real too; when it may not, sudo on the login PATH is a
// stand-in that logs the command line deployhook built (to sudo.log), refuses
// one without -n or for another user, and runs the command as this user.
func newVM(t *testing.T, o vmOptions) *vm {
	t.Helper()
	v := &vm{git: sshdtest.Require(t, "git", "/usr/bin/git")}
	sshdtest.Require(t, "sudo", "/usr/bin/sudo")
	sshdtest.Require(t, "flock", "/usr/bin/flock")
	sshdtest.Require(t, "timeout", "/usr/bin/timeout")
	v.dir = t.TempDir()
	// The app user must reach the VM's files: open the test's temp dirs (0700).
	for _, d := range []string{v.dir, filepath.Dir(v.dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(v.dir, "home") // the app user's: the repositories
	v.origin = filepath.Join(home, "origin.git")
	v.work = filepath.Join(home, "work")
	v.app = filepath.Join(home, "app")
	v.bin = filepath.Join(v.dir, "bin")
	v.ctl = filepath.Join(v.dir, "ctl")
	v.log = filepath.Join(v.dir, "calls.log")
	v.lock = filepath.Join(v.dir, "lock", "deploy.lock")
	for _, d := range []string{v.bin, v.ctl} {
		mkdir(t, d, 0o777)
	}
	// The lock's directory must be writable by the login user only (the
	// transport refuses others); writeConfig hands it to another login user.
	mkdir(t, filepath.Dir(v.lock), 0o700)
	writeFile(t, v.log, "", 0o666)

	var sshdOpts sshdtest.Options
	if os.Geteuid() == 0 {
		v.user = addAppUser(t)
	} else {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		v.user = u.Username
		if out, err := exec.Command("sudo", "-n", "-u", v.user, "true").CombinedOutput(); err != nil && !o.realSudo {
			t.Logf("not root, and sudo -n -u %s true fails (%v: %s): a stand-in sudo checks the command lines deployhook builds; run as root (as CI does) for the real sudo",
				v.user, err, strings.TrimSpace(string(out)))
			sudoBin := filepath.Join(v.dir, "sudo-bin")
			mkdir(t, sudoBin, 0o755)
			v.sudoLog = filepath.Join(v.dir, "sudo.log")
			writeFile(t, filepath.Join(sudoBin, "sudo"), fmt.Sprintf(sudoStandIn, v.sudoLog), 0o755)
			sshdOpts.Env = []string{"PATH=" + sudoBin + ":/usr/local/bin:/usr/bin:/bin"}
		}
	}
	v.srv = sshdtest.Start(t, sshdOpts)
	v.keyFile = v.srv.ClientKeyFile(t)
	u, err := user.Lookup(v.user)
	if err != nil {
		t.Fatal(err)
	}
	v.uid, _ = strconv.Atoi(u.Uid)
	v.gid, _ = strconv.Atoi(u.Gid)

	v.gitEnv = append(os.Environ(),
		"HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Deploy Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Deploy Test", "GIT_COMMITTER_EMAIL=test@example.com")
	mkdir(t, home, 0o755)
	if err := os.Chown(home, v.uid, v.gid); err != nil {
		t.Fatal(err)
	}
	v.run(t, home, "-c", "init.defaultBranch=main", "init", "--quiet", "--bare", v.origin)
	v.run(t, home, "-c", "init.defaultBranch=main", "init", "--quiet", v.work)
	v.first = v.commit(t, "initial", map[string]string{
		"app.py":         "print('hello')\n",
		"uv.lock":        "version = 1\n",
		"pyproject.toml": "[project]\nname = \"app\"\n",
		"dagster.yaml":   "telemetry: {enabled: false}\n",
	})
	v.run(t, home, "clone", "--quiet", v.origin, v.app)

	writeFile(t, filepath.Join(v.bin, "systemctl"), fmt.Sprintf(systemctlStandIn, v.log, v.ctl, v.app), 0o755)
	writeFile(t, filepath.Join(v.bin, "uv"), fmt.Sprintf(`#!/bin/sh
echo "$DEPLOYHOOK_SHA $(id -un) uv $*" >> '%s'
`, v.log), 0o755)
	writeFile(t, filepath.Join(v.bin, "git"), fmt.Sprintf(`#!/bin/sh
echo "$DEPLOYHOOK_SHA $(id -un) git $*" >> '%s'
exec '%s' "$@"
`, v.log, v.git), 0o755)
	return v
}

// systemctlStandIn answers "restart UNIT" (it waits while ctl/hold-SHA exists)
// and the two "show" queries of the verify step. A unit runs the checked-out
// app.py: when that contains CRASH, the unit crash-loops (active, but NRestarts
// grows with every look).
const systemctlStandIn = `#!/bin/sh
log='%s'; ctl='%s'; app='%s'
[ "$1" = --no-ask-password ] && shift
case "$1" in
restart)
  echo "$DEPLOYHOOK_SHA $(id -un) systemctl restart $2" >> "$log"
  while [ -e "$ctl/hold-$DEPLOYHOOK_SHA" ]; do sleep 0.05; done
  ;;
show)
  prop=${2#--property=}; unit=$4
  echo "$DEPLOYHOOK_SHA $(id -un) systemctl show $prop $unit" >> "$log"
  case "$prop" in
  ActiveState) echo active ;;
  NRestarts)
    n=0
    if grep -q CRASH "$app/app.py"; then
      n=$(cat "$ctl/restarts-$unit" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$ctl/restarts-$unit"
    fi
    echo $n ;;
  *) echo "systemctl stand-in: unknown property $prop" >&2; exit 1 ;;
  esac ;;
*) echo "systemctl stand-in: unexpected call: $*" >&2; exit 1 ;;
esac
`

// sudoStandIn stands in for sudo where the tests may not use the real one. It
// logs "sudo OPTIONS -- COMMAND", e.g. "sudo -n -u dagster -- sh -c".
const sudoStandIn = `#!/bin/sh
opts=
while [ $# -gt 0 ] && [ "$1" != -- ]; do opts="$opts $1"; shift; done
[ "$1" = -- ] && shift
echo "sudo$opts -- $1 $2" >> '%s'
case "$opts" in
" -n -u $(id -un)"|" -n") exec "$@" ;;
" -n -u "*) echo "sudo stand-in: cannot run as another user:$opts" >&2; exit 1 ;;
*) echo "sudo stand-in: a sudo without -n could prompt for a password:$opts" >&2; exit 1 ;;
esac
`

// run runs the real git as the app user, who owns every repository of the VM
// (git refuses to work in, or fetch from, a repository of another user).
func (v *vm) run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := v.gitCmd(dir, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files in the developer's clone, commits, pushes to origin and
// returns the commit's SHA.
func (v *vm) commit(t *testing.T, msg string, files map[string]string) string {
	t.Helper()
	for name, body := range files {
		mkdir(t, filepath.Dir(filepath.Join(v.work, name)), 0o755)
		writeFile(t, filepath.Join(v.work, name), body, 0o644)
	}
	v.run(t, v.work, "add", "--all")
	v.run(t, v.work, "commit", "--quiet", "-m", msg)
	v.run(t, v.work, "push", "--quiet", v.origin, "HEAD:refs/heads/main")
	return v.run(t, v.work, "rev-parse", "HEAD")
}

// github returns a fake GitHub whose compare API answers from the origin.
func (v *vm) github(t *testing.T) *fakeGitHub {
	gh := newFakeGitHub(t)
	gh.graph = func(base, head string) (int, error) {
		if head == "main" {
			head = "refs/heads/main"
		}
		err := v.gitCmd(v.origin, "merge-base", "--is-ancestor", base, head).Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), nil
		}
		return 0, err
	}
	return gh
}

func (v *vm) gitCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(v.git, args...)
	cmd.Dir, cmd.Env = dir, v.gitEnv
	if os.Geteuid() != v.uid {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(v.uid), Gid: uint32(v.gid)}}
	}
	return cmd
}

// head returns the checkout's HEAD.
func (v *vm) head(t *testing.T) string {
	t.Helper()
	out, err := v.gitCmd(v.app, "rev-parse", "HEAD").CombinedOutput()
	if err != nil {
		t.Fatalf("git rev-parse HEAD in the checkout: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// call is one line of the stand-ins' log.
type call struct {
	sha  string // DEPLOYHOOK_SHA of the step
	user string // who ran it
	cmd  string // "systemctl restart dagster", "uv sync --frozen", "git fetch ..."
}

// calls returns the stand-ins' log, whose command starts with prefix.
func (v *vm) calls(t *testing.T, prefix string) []call {
	t.Helper()
	b, err := os.ReadFile(v.log)
	if err != nil {
		t.Fatal(err)
	}
	var out []call
	for l := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSpace(l), " ", 3)
		if len(f) != 3 {
			t.Fatalf("stand-in log line %q", l)
		}
		if c := (call{f[0], f[1], f[2]}); strings.HasPrefix(c.cmd, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// vmConfig is what a test sets in its target's configuration.
type vmConfig struct {
	loginUser  string // ssh.user; default the sshd's user
	knownHosts string // default the sshd's known_hosts
	// app sets app_dir and app_user: the deploy reads the previous commit and
	// the changed files from the checkout; without steps, it runs the default
	// sequence (units dagster-code and dagster, settle 1s).
	app   bool
	steps string // explicit steps: YAML lines, indented 6 spaces
}

// writeConfig writes deployhook's configuration for one ssh target on v.
func (v *vm) writeConfig(t *testing.T, c vmConfig) string {
	t.Helper()
	if c.loginUser == "" {
		c.loginUser = v.srv.User
	}
	if c.loginUser != v.srv.User {
		if out, err := exec.Command("chown", c.loginUser, filepath.Dir(v.lock)).CombinedOutput(); err != nil {
			t.Fatalf("chown the lock directory to %s: %v %s", c.loginUser, err, out)
		}
	}
	if c.knownHosts == "" {
		c.knownHosts = v.srv.KnownHosts
	}
	var b strings.Builder
	fmt.Fprintf(&b, "    env: {PATH: \"%s:/usr/local/bin:/usr/bin:/bin\"}\n", v.bin)
	if c.app {
		fmt.Fprintf(&b, "    app_dir: %s\n    app_user: %s\n", v.app, v.user)
	}
	if c.app && c.steps == "" {
		b.WriteString("    units: [dagster-code, dagster]\n    settle: 1s\n")
	}
	if c.steps != "" {
		b.WriteString("    steps:\n" + c.steps)
	}
	return writeSSHConfig(t, v.dir, sshTarget{addr: v.srv.Addr, user: c.loginUser, keyFile: v.keyFile,
		knownHosts: c.knownHosts, lock: v.lock, keys: b.String()})
}

// push delivers a push of sha to p and returns the job's ID.
func push(t *testing.T, p *program, sha string) string {
	t.Helper()
	code, body := deliver(t, p.url, "push", "delivery-"+sha[:12], pushBody(t, sha))
	if code != http.StatusAccepted {
		t.Fatalf("push %s: %d %v", sha[:7], code, body)
	}
	job, _ := body["job"].(string)
	return job
}

// final returns the last status of sha once it is final.
func final(t *testing.T, gh *fakeGitHub, sha string) status {
	t.Helper()
	ss := gh.waitFinal(t, sha, 45*time.Second)
	return ss[len(ss)-1]
}

// jobPage is what a job page's JSON (the server's jobView) says.
type jobPage struct {
	State       string `json:"state"`
	Description string `json:"description"`
	PreviousSHA string `json:"previous_sha"`
	Steps       []struct {
		Name     string `json:"name"`
		ExitCode int    `json:"exit_code"`
		Skipped  string `json:"skipped"`
		Output   string `json:"output"`
		Error    string `json:"error"`
	} `json:"steps"`
}

func getJob(t *testing.T, p *program, job string) jobPage {
	t.Helper()
	resp, err := http.Get(p.url + "/jobs/" + job + "?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var j jobPage
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		t.Fatal(err)
	}
	return j
}

// output returns the output of the job's step named name.
func (j jobPage) output(name string) string {
	for _, s := range j.Steps {
		if s.Name == name {
			return s.Output
		}
	}
	return ""
}

func (j jobPage) stepNames() []string {
	var out []string
	for _, s := range j.Steps {
		out = append(out, s.Name)
	}
	return out
}

// waitFor waits until cond holds: an event the test needs before it goes on.
// The bound turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// pids returns the processes whose command line matches the regexp pattern.
func pids(t *testing.T, pattern string) []int {
	t.Helper()
	pgrep := sshdtest.Require(t, "pgrep", "/usr/bin/pgrep")
	out, err := exec.Command(pgrep, "-f", pattern).Output()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return nil // nothing matched
	} else if err != nil {
		t.Fatalf("pgrep -f %q: %v", pattern, err)
	}
	var out2 []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil && n != os.Getpid() {
			out2 = append(out2, n)
		}
	}
	return out2
}

// parent returns the parent pid and the command name of pid.
func parent(pid int) (int, string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", err
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return 0, "", fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 2 {
		return 0, "", fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, s[open+1 : end], err
}

// cutConnection kills the sshd processes that serve pid's SSH connection (its
// sshd ancestors below the listening sshd), as a network cut would end them.
func cutConnection(t *testing.T, pid int) {
	t.Helper()
	var sshds []int
	for p := pid; p > 1; {
		pp, comm, err := parent(p)
		if err != nil {
			t.Fatalf("walk up from %d: %v", pid, err)
		}
		if strings.HasPrefix(comm, "sshd") {
			sshds = append(sshds, p)
		}
		p = pp
	}
	if len(sshds) < 2 {
		t.Fatalf("process %d: sshd ancestors %v, want the connection's and the listener", pid, sshds)
	}
	for _, p := range sshds[:len(sshds)-1] { // the last is the listener
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
			t.Fatalf("kill sshd %d: %v", p, err)
		}
	}
}

// addAppUser creates the app user (root only) and removes it when the test ends.
// Its password field is "*", not "!": sshd refuses a locked account even with a
// key, and TestVM_SudoNeverPrompts logs in as it.
func addAppUser(t *testing.T) string {
	t.Helper()
	useradd := sshdtest.Require(t, "useradd", "/usr/sbin/useradd")
	userdel := sshdtest.Require(t, "userdel", "/usr/sbin/userdel")
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "dh-app-" + hex.EncodeToString(b[:])
	if out, err := exec.Command(useradd, "--create-home", "--shell", "/bin/sh", "--password", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("pkill", "-KILL", "-u", name).Run()
		if out, err := exec.Command(userdel, "--remove", name).CombinedOutput(); err != nil {
			t.Logf("userdel %s: %v\n%s", name, err, out)
		}
	})
	return name
}

func randomMarker(t *testing.T) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%06d", (int(b[0])<<16|int(b[1])<<8|int(b[2]))%1000000)
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func cmds(cs []call) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.cmd)
	}
	return out
}

func shas(cs []call) []string {
	var out []string
	for _, c := range cs {
		if !slices.Contains(out, c.sha) {
			out = append(out, c.sha)
		}
	}
	return out
}
