// Package systemdtest boots a real systemd for tests: systemd as PID 1 of new
// PID, mount, UTS and cgroup namespaces of this machine, with its D-Bus system
// bus and an OpenSSH sshd inside, so that a test can restart real units, read
// their real NRestarts, run systemctl daemon-reload and systemd-analyze verify
// over SSH, as a deploy does on a VM.
//
// The namespaces share the machine's file systems, /dev, clock and kernel.
// Before it boots, Start masks (links to /dev/null under /etc/systemd/system)
// every unit that would reach the shared machine: systemd-tmpfiles-setup would
// empty /tmp for every process on it, udev, sysctl, binfmt, module loading,
// timesyncd and the machine's own enabled units would act on the real
// machine. It keeps its own files under /var/tmp, boots into a target of its
// own with DefaultDependencies=no, gives systemd a cgroup subtree of its own
// (a cgroup namespace rooted at a new cgroup2 directory, so that it never
// touches the machine's cgroups nor remounts the machine's /sys/fs/cgroup),
// and restores the few kernel settings systemd raises as PID 1
// (fs.file-max, net.unix.max_dgram_qlen).
//
// Everything Start creates (masks, unit files, users, a sudoers file, the
// cgroup, directories) is recorded in a state file before it is created and
// removed when the test ends, even when it fails; what a test binary killed
// mid-way left behind is removed by the next Start. Only one VM runs on the
// machine at a time, because the masks live in the shared
// /etc/systemd/system: Start waits for a lock under /var/lock.
//
// Start needs root, systemd, util-linux's unshare and nsenter, dbus, OpenSSH's
// sshd, sudo and the passwd tools. Without one of them it fails the test when
// the CI environment variable is set, and skips it, with the reason,
// otherwise.
package systemdtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/internal/sshdtest"
)

// Paths shared by every VM of the machine.
const (
	// LockFile serializes VMs: one at a time, because the masks are shared.
	LockFile = "/var/lock/deployhook-systemdtest.lock"
	// Root holds the VMs' directories and the state file, outside /tmp.
	Root = "/var/tmp/deployhook-systemdtest"
	// unitDir is where the masks, the target and the tests' units go: the
	// directory of the machine's administrator, read by the namespaces'
	// systemd.
	unitDir    = "/etc/systemd/system"
	sudoersDir = "/etc/sudoers.d"
	systemd    = "/lib/systemd/systemd"
)

// statePath records what the running (or last, killed) VM created.
var statePath = filepath.Join(Root, "state.json")

// Masks are the units of systemd 252 that would reach the shared machine from
// the namespaces: tmpfiles (empties /tmp), udev, sysctl, binfmt, kernel
// modules, the clock, the machine's identity and journals, ldconfig and the
// timers. Start adds every unit the machine itself enables (the links in
// /etc/systemd/system/*.wants and *.requires) but D-Bus.
var Masks = []string{
	"systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service", "systemd-tmpfiles-clean.timer",
	"systemd-udevd.service", "systemd-udev-trigger.service", "systemd-udevd-control.socket",
	"systemd-udevd-kernel.socket", "systemd-sysctl.service", "systemd-binfmt.service",
	"proc-sys-fs-binfmt_misc.automount", "systemd-modules-load.service", "systemd-remount-fs.service",
	"systemd-sysusers.service", "systemd-random-seed.service", "systemd-firstboot.service",
	"systemd-machine-id-commit.service", "systemd-timesyncd.service", "systemd-pstore.service",
	"kmod-static-nodes.service", "systemd-update-utmp.service", "systemd-journal-flush.service",
	"systemd-hwdb-update.service", "ldconfig.service", "systemd-update-done.service",
	"systemd-journald-dev-log.socket", "systemd-journald-audit.socket", "timers.target",
	// Not in the shared recipe, seen starting: modprobe@ loads kernel modules,
	// and these two create their mount points in the shared /dev.
	"modprobe@.service", "dev-hugepages.mount", "dev-mqueue.mount",
	// The machine's own services, enabled or not.
	"ssh.service", "postgresql.service", "getty@tty1.service",
}

// sysctls are the kernel settings systemd as PID 1 raises (its
// bump_file_max_and_nr_open and bump_unix_max_dgram_qlen) or may set
// (core_pattern): shared with the machine, they are restored at teardown.
var sysctls = []string{
	"/proc/sys/fs/file-max",
	"/proc/sys/fs/nr_open",
	"/proc/sys/net/unix/max_dgram_qlen",
	"/proc/sys/kernel/core_pattern",
}

// VM is a systemd running as PID 1 of its own namespaces, with an sshd inside.
// Its methods may be called from several goroutines.
type VM struct {
	PID     int    // systemd, PID 1 in the namespaces, as this machine sees it
	Addr    string // the sshd inside: 127.0.0.1:PORT
	User    string // the login user: sudo -n as root and as AppUser, without a password
	AppUser string // a user without sudo rights, who can own an app's checkout
	// Dir is the VM's directory under Root, readable by both users: sshd's
	// configuration and keys, and room for a test's files (removed at the end).
	Dir        string
	HostKey    ssh.Signer // the sshd's ed25519 host key
	ClientKey  ssh.Signer // a key User may log in with
	ClientPEM  []byte     // ClientKey as an OpenSSH private key file
	KnownHosts string     // a known_hosts file pinning HostKey for Addr
	Target     string     // the target systemd booted into
	nsenter    string
	id         string
	st         *stateFile
}

// Options changes how Start sets the VM up.
type Options struct {
	// SSHConfig lines appended to the sshd's configuration.
	SSHConfig []string
}

// Start boots the VM and tears it down when the test ends: it stops the sshd,
// kills the namespaces' PID 1 (which ends every process in them), removes what
// it created and checks that /tmp kept a file Start put there.
func Start(tb testing.TB, opts Options) *VM {
	tb.Helper()
	tools := require(tb)
	v := &VM{nsenter: tools.nsenter}

	lock := lockMachine(tb)
	// Cleanup order (last registered runs first): the teardown below, then
	// the lock's release.
	tb.Cleanup(func() { lock.Close() })
	if err := cleanStale(tb); err != nil {
		tb.Fatalf("clean up what an earlier VM left: %v", err)
	}

	var b [4]byte
	_, _ = rand.Read(b[:])
	v.id = hex.EncodeToString(b[:])
	v.st = &stateFile{path: statePath}
	canary := filepath.Join(os.TempDir(), "deployhook-systemdtest-canary-"+v.id)
	tb.Cleanup(func() { v.teardown(tb, canary) })

	st := v.st
	v.Dir = filepath.Join(Root, "vm-"+v.id)
	st.record(tb, func(s *state) { s.Dirs = append(s.Dirs, v.Dir) })
	mkdir(tb, v.Dir, 0o755)
	st.record(tb, func(s *state) { s.Canary = canary })
	write(tb, canary, []byte("the systemd of a test must never empty /tmp\n"), 0o644)

	// Users first: the sudoers file names them.
	v.User = v.addUser(tb, "dh-login-"+v.id)
	v.AppUser = v.addUser(tb, "dh-app-"+v.id)
	sudoers := filepath.Join(sudoersDir, "deployhook-systemdtest-"+v.id)
	rules := fmt.Sprintf("# deployhook's systemdtest: what deploys run through sudo -n (removed at teardown).\n%[1]s ALL=(%[2]s) NOPASSWD: ALL\n%[1]s ALL=(root) NOPASSWD: ALL\n", v.User, v.AppUser)
	draft := filepath.Join(v.Dir, "sudoers")
	write(tb, draft, []byte(rules), 0o440)
	if out, err := exec.Command("visudo", "-cf", draft).CombinedOutput(); err != nil {
		tb.Fatalf("visudo -cf: %v\n%s", err, out)
	}
	st.record(tb, func(s *state) { s.Files = append(s.Files, sudoers) })
	write(tb, sudoers, []byte(rules), 0o440)

	// The masks, then the target, then the boot.
	masks, err := masksFor(unitDir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range masks {
		p := filepath.Join(unitDir, m)
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			continue // the machine's own (or a mask already): left as it is
		}
		st.record(tb, func(s *state) { s.Masks = append(s.Masks, p) })
		if err := os.Symlink("/dev/null", p); err != nil {
			tb.Fatalf("mask %s: %v", m, err)
		}
	}
	v.Target = "deployhook-systemdtest-" + v.id + ".target"
	st.record(tb, func(s *state) { s.Target = v.Target })
	v.installFile(tb, v.Target, "[Unit]\nDescription=deployhook systemdtest\nDefaultDependencies=no\n")

	saved := map[string]string{}
	for _, p := range sysctls {
		if b, err := os.ReadFile(p); err == nil {
			saved[p] = strings.TrimSpace(string(b))
		}
	}
	cgDir := filepath.Join(tools.cgroup2, "deployhook-systemdtest-"+v.id)
	st.record(tb, func(s *state) { s.Sysctls = saved; s.Cgroup = cgDir })
	if err := os.Mkdir(cgDir, 0o755); err != nil {
		unavailable(tb, fmt.Sprintf("create a cgroup for systemd: %v", err))
	}
	cgFD, err := syscall.Open(cgDir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer syscall.Close(cgFD)

	logf, err := os.Create(filepath.Join(v.Dir, "unshare.log"))
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	// systemd starts in the new cgroup, as PID 1 of the new namespaces; the
	// cgroup namespace makes that cgroup its root, and the cgroup2 file system
	// mounted in its private mount namespace shows it only that subtree.
	cmd := exec.Command(tools.unshare, "--pid", "--fork", "--mount-proc", "--uts", "--cgroup", "/bin/sh", "-c",
		`mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" --system --unit="$1" --show-status=no --log-target=journal`,
		systemd, v.Target)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: cgFD}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", tools.unshare, err)
	}
	st.record(tb, func(s *state) { s.Unshare = cmd.Process.Pid })
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	st.onKill = func() {
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			tb.Errorf("unshare (pid %d) did not exit after its systemd was killed", cmd.Process.Pid)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for v.PID == 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%[1]d/children", cmd.Process.Pid)); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				v.PID, _ = strconv.Atoi(f[0])
			}
		}
		select {
		case <-exited:
			tb.Fatalf("unshare exited before systemd started:\n%s", readLog(v.Dir, "unshare.log"))
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("unshare started no systemd within 60s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st.record(tb, func(s *state) { s.PID = v.PID })
	var state string
	for {
		out, _ := v.Systemctl("is-system-running")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("systemd did not finish booting %s within 60s: %q\n%s", v.Target, state, readLog(v.Dir, "unshare.log"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if state == "degraded" {
		out, _ := v.Systemctl("--failed", "--no-legend")
		tb.Logf("systemd booted degraded; failed units:\n%s", out)
	}
	if out, err := v.Systemctl("start", "dbus.service"); err != nil {
		tb.Fatalf("start dbus.service: %v\n%s", err, out)
	}
	v.startSSHD(tb, tools.sshd, opts)
	return v
}

// tools are what Start runs.
type tools struct {
	nsenter, unshare, sshd string
	cgroup2                string // where the cgroup2 file system is mounted
}

// require returns the tools Start needs, or fails (CI) or skips the test.
func require(tb testing.TB) tools {
	tb.Helper()
	if os.Geteuid() != 0 {
		unavailable(tb, "booting systemd in namespaces needs root (CI runs the tests as root)")
	}
	if _, err := os.Stat(systemd); err != nil {
		unavailable(tb, "systemd not found at "+systemd+": install it (Debian: see .ci/run)")
	}
	t := tools{
		nsenter: sshdtest.Require(tb, "nsenter", "/usr/bin/nsenter"),
		unshare: sshdtest.Require(tb, "unshare", "/usr/bin/unshare"),
		sshd:    sshdtest.Require(tb, "sshd", "/usr/sbin/sshd"),
	}
	for _, name := range []string{"systemctl", "systemd-run", "dbus-daemon", "sudo", "visudo", "useradd", "userdel", "pkill"} {
		sshdtest.Require(tb, name, "/usr/bin/"+name, "/usr/sbin/"+name, "/bin/"+name)
	}
	var err error
	if t.cgroup2, err = cgroup2Mount(); err != nil {
		unavailable(tb, err.Error())
	}
	return t
}

// startSSHD runs sshd inside the namespaces as a transient unit of their
// systemd, as a VM runs it.
func (v *VM) startSSHD(tb testing.TB, sshd string, opts Options) {
	tb.Helper()
	// 0644: sshd reads authorized_keys as the user logging in.
	st := sshdtest.Prepare(tb, v.Dir, 0o644, nil, append([]string{
		"PidFile none",
		"PermitRootLogin no",
		"AllowUsers " + v.User + " " + v.AppUser,
	}, opts.SSHConfig...))
	v.Addr, v.HostKey, v.ClientKey, v.ClientPEM, v.KnownHosts = st.Addr, st.HostKey, st.ClientKey, st.ClientPEM, st.KnownHosts
	if out, err := v.Exec("systemd-run", "--unit=deployhook-sshd", "--property=DefaultDependencies=no",
		"--property=RuntimeDirectory=sshd", "--", sshd, "-D", "-e", "-f", st.Config); err != nil {
		tb.Fatalf("start sshd in the namespaces: %v\n%s", err, out)
	}
	if err := sshdtest.WaitListening(v.Addr, 30*time.Second); err != nil {
		log, _ := v.Exec("journalctl", "--no-pager", "-u", "deployhook-sshd")
		tb.Fatalf("sshd did not listen on %s: %v\n%s", v.Addr, err, log)
	}
}

// Exec runs a command in the VM's namespaces as root (through nsenter) and
// returns its combined output. The command has two minutes.
func (v *VM) Exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := append([]string{"-t", strconv.Itoa(v.PID), "-m", "-p", "-u", "-C", "--"}, args...)
	out, err := exec.CommandContext(ctx, v.nsenter, a...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Systemctl runs systemctl with args as root in the VM and returns its
// combined output; a non-zero exit (is-active of an inactive unit) is an
// error.
func (v *VM) Systemctl(args ...string) (string, error) {
	return v.Exec(append([]string{"systemctl"}, args...)...)
}

// Show returns a unit's property (systemctl show --property=NAME --value).
func (v *VM) Show(unit, property string) (string, error) {
	out, err := v.Systemctl("show", "--property="+property, "--value", unit)
	return strings.TrimSpace(out), err
}

// InstallUnit writes a unit file name (dagster-code.service) to
// /etc/systemd/system, where systemd reads it, and runs daemon-reload. It
// refuses to replace a file it did not create (the machine's own); the file
// is removed at teardown.
func (v *VM) InstallUnit(tb testing.TB, name, text string) {
	tb.Helper()
	v.installFile(tb, name, text)
	if out, err := v.Systemctl("daemon-reload"); err != nil {
		tb.Fatalf("daemon-reload: %v\n%s", err, out)
	}
}

func (v *VM) installFile(tb testing.TB, name, text string) {
	tb.Helper()
	if name == "" || strings.ContainsAny(name, "/\x00") || name[0] == '.' {
		tb.Fatalf("unit name %q", name)
	}
	p := filepath.Join(unitDir, name)
	if !slices.Contains(v.st.load(tb).Units, p) {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			tb.Fatalf("%s exists and is not the test's: refusing to replace it", p)
		}
		v.st.record(tb, func(s *state) { s.Units = append(s.Units, p) })
	}
	write(tb, p, []byte(text), 0o644)
}

// ClientKeyFile writes ClientPEM to a file readable by root only and returns
// its path.
func (v *VM) ClientKeyFile(tb testing.TB) string {
	p := filepath.Join(v.Dir, "id_ed25519")
	write(tb, p, v.ClientPEM, 0o600)
	return p
}

func (v *VM) addUser(tb testing.TB, name string) string {
	tb.Helper()
	v.st.record(tb, func(s *state) { s.Users = append(s.Users, name) })
	// "*", not "!": sshd refuses a locked account even with a key.
	if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", name).CombinedOutput(); err != nil {
		tb.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	return name
}

// teardown ends the VM and removes what it created; it runs even when Start
// failed half-way.
func (v *VM) teardown(tb testing.TB, canary string) {
	if v.PID != 0 && tb.Failed() {
		// The kernel's messages are the machine's (journald reads the
		// shared /dev/kmsg): the units' are what explains a failure.
		out, _ := v.Exec("journalctl", "--no-pager", "-n", "400")
		var keep []string
		for _, line := range strings.Split(out, "\n") {
			if !strings.Contains(line, " kernel: ") {
				keep = append(keep, line)
			}
		}
		tb.Logf("the VM's journal (without the kernel's):\n%s", strings.Join(keep, "\n"))
	}
	if v.PID != 0 {
		if out, err := v.Systemctl("kill", "--signal=KILL", "deployhook-sshd.service"); err != nil {
			tb.Logf("kill sshd: %v %s", err, out)
		}
	}
	s := v.st.load(tb)
	if err := removeAll(s, v.st.onKill); err != nil {
		tb.Errorf("tear the VM down: %v", err)
	}
	if err := os.Remove(v.st.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		tb.Error(err)
	}
	// The canary is gone only if something emptied /tmp: a mask is missing.
	if _, err := os.Stat(canary); err != nil {
		tb.Errorf("/tmp lost %s while the VM ran: the systemd in the namespaces cleaned /tmp (%v)", canary, err)
	}
	_ = os.Remove(canary)
}

// masksFor returns Masks and the units the machine enables in dir (the
// names in its *.wants and *.requires directories) but D-Bus.
func masksFor(dir string) ([]string, error) {
	out := slices.Clone(Masks)
	for _, pat := range []string{"*.wants/*", "*.requires/*"} {
		links, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		for _, l := range links {
			n := filepath.Base(l)
			if n == "dbus.service" || n == "dbus.socket" || slices.Contains(out, n) {
				continue
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// cgroup2Mount returns where the cgroup2 file system is mounted.
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		// ID PARENT DEV ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		i := slices.Index(f, "-")
		if i > 4 && i+1 < len(f) && f[i+1] == "cgroup2" && f[3] == "/" {
			return f[4], nil
		}
	}
	return "", errors.New("no cgroup2 file system is mounted: systemd needs one for its own cgroup")
}

// inheritedLockEnv names, in a helper process a test starts, the descriptor
// of the machine's VM lock its parent already holds for it: the lock stays
// held when the helper is killed, until the parent lets it go.
const inheritedLockEnv = "DEPLOYHOOK_SYSTEMDTEST_LOCK_FD"

// handedLock, when set, is the machine's VM lock this process already
// holds: the next lockMachine takes it over instead of waiting for it.
var handedLock struct {
	sync.Mutex
	f *os.File
}

// lockMachine takes the machine's VM lock, waiting for it.
func lockMachine(tb testing.TB) *os.File {
	tb.Helper()
	handedLock.Lock()
	f := handedLock.f
	handedLock.f = nil
	handedLock.Unlock()
	if f != nil {
		return f
	}
	if s := os.Getenv(inheritedLockEnv); s != "" {
		fd, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatalf("%s=%q: %v", inheritedLockEnv, s, err)
		}
		// Not passed on: a process the helper starts (unshare, and the
		// VM's systemd under it) outlives a kill and would hold the lock.
		syscall.CloseOnExec(fd)
		f = os.NewFile(uintptr(fd), LockFile)
		// The same open file description as the parent's: this flock is
		// the parent's own and returns at once.
		if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			tb.Fatalf("the inherited lock %s is not held: %v", LockFile, err)
		}
		return f
	}
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		tb.Logf("waiting for %s: another test's systemd runs", LockFile)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			tb.Fatalf("lock %s: %v", LockFile, err)
		}
	}
	return f
}

func unavailable(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("cannot boot systemd for the test: %s", why)
	}
	tb.Skipf("cannot boot systemd for the test: %s", why)
}

func readLog(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return string(b)
}

func mkdir(tb testing.TB, dir string, mode os.FileMode) {
	tb.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		tb.Fatal(err)
	}
}

func write(tb testing.TB, path string, b []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		tb.Fatal(err)
	}
}

// state is what a VM created, recorded before each creation.
type state struct {
	Unshare int               `json:"unshare,omitempty"` // unshare, parent of systemd
	Target  string            `json:"target,omitempty"`  // the target systemd booted into
	PID     int               `json:"pid,omitempty"`     // systemd
	Masks   []string          `json:"masks,omitempty"`   // links to /dev/null
	Units   []string          `json:"units,omitempty"`   // unit files, the target's included
	Files   []string          `json:"files,omitempty"`   // the sudoers file, the canary
	Users   []string          `json:"users,omitempty"`
	Dirs    []string          `json:"dirs,omitempty"`
	Cgroup  string            `json:"cgroup,omitempty"`
	Canary  string            `json:"canary,omitempty"`  // removed by the teardown after it checked it
	Sysctls map[string]string `json:"sysctls,omitempty"` // path: value before the boot
}

// stateFile keeps the state on disk, so that a killed test leaves a list of
// what to remove.
type stateFile struct {
	path   string
	onKill func() // waits for unshare to end, when this process started it
}

func (f *stateFile) load(tb testing.TB) state {
	tb.Helper()
	s, err := readState(f.path)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func (f *stateFile) record(tb testing.TB, change func(*state)) {
	tb.Helper()
	s := f.load(tb)
	change(&s)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	mkdir(tb, filepath.Dir(f.path), 0o755)
	tmp := f.path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		tb.Fatal(err)
	}
}

func readState(path string) (state, error) {
	var s state
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read %s: %w", path, err)
	}
	return s, nil
}

// cleanStale removes what a VM of a killed test left, under the lock (so no
// VM runs).
func cleanStale(tb testing.TB) error {
	s, err := readState(statePath)
	if err != nil {
		return err
	}
	if s.PID == 0 && s.Unshare == 0 && s.Canary == "" && len(s.Masks)+len(s.Units)+len(s.Files)+len(s.Users)+len(s.Dirs) == 0 && s.Cgroup == "" {
		return nil
	}
	tb.Logf("removing what an interrupted test's VM left: systemd %d, %d masks, units %v, files %v, users %v, dirs %v, cgroup %s",
		s.PID, len(s.Masks), s.Units, s.Files, s.Users, s.Dirs, s.Cgroup)
	if err := removeAll(s, nil); err != nil {
		return err
	}
	if s.Canary != "" {
		_ = os.Remove(s.Canary)
	}
	return os.Remove(statePath)
}

// removeAll ends s's systemd and removes what s lists, going on after a
// failure; it returns every failure.
func removeAll(s state, waitUnshare func()) error {
	var errs []error
	if s.PID == 0 && s.Unshare != 0 {
		// Killed before it knew systemd's PID: unshare's child, if any.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%[1]d/children", s.Unshare)); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				s.PID, _ = strconv.Atoi(f[0])
			}
		}
	}
	if s.PID != 0 && isOurSystemd(s.PID, s.Target) {
		if err := syscall.Kill(s.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill systemd %d: %w", s.PID, err))
		}
		if waitUnshare != nil {
			waitUnshare()
		}
		// Its exit waits for every process of the namespace to end.
		for deadline := time.Now().Add(30 * time.Second); isOurSystemd(s.PID, s.Target); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("systemd %d still runs 30s after SIGKILL", s.PID))
				break
			}
		}
	}
	for _, p := range s.Masks {
		if t, err := os.Readlink(p); err == nil && t == "/dev/null" {
			if err := os.Remove(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, p := range slices.Concat(s.Units, s.Files) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, u := range s.Users {
		if _, err := user.Lookup(u); err != nil {
			continue
		}
		_ = exec.Command("pkill", "-KILL", "-u", u).Run()
		if out, err := exec.Command("userdel", "--remove", u).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("userdel %s: %v: %s", u, err, bytes.TrimSpace(out)))
		}
	}
	if s.Cgroup != "" {
		if err := removeCgroup(s.Cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	for p, was := range s.Sysctls {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != was {
			if err := os.WriteFile(p, []byte(was+"\n"), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore %s to %q: %w", p, was, err))
			}
		}
	}
	for _, d := range s.Dirs {
		if !strings.HasPrefix(d, Root+"/") {
			errs = append(errs, fmt.Errorf("refusing to remove %s: not under %s", d, Root))
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// isOurSystemd reports whether pid is still the systemd that booted target
// (or the shell about to exec it), and not a reused PID.
func isOurSystemd(pid int, target string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || target == "" {
		return false
	}
	return slices.Contains(strings.Split(string(b), "\x00"), target) || strings.Contains(string(b), "--unit="+target)
}

// removeCgroup removes the cgroup tree at dir, deepest first; the kernel
// lets go of a cgroup shortly after its last process ended.
func removeCgroup(dir string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var dirs []string
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return err
		})
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			for _, d := range slices.Backward(dirs) {
				if err = syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
					err = fmt.Errorf("remove cgroup %s: %w", d, err)
					break
				}
				err = nil
			}
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
