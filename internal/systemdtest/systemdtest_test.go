package systemdtest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// login runs cmd over SSH as v.User and returns its output.
func login(t *testing.T, v *VM, cmd string) (string, error) {
	t.Helper()
	c, err := ssh.Dial("tcp", v.Addr, &ssh.ClientConfig{
		User:            v.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(v.ClientKey)},
		HostKeyCallback: ssh.FixedHostKey(v.HostKey.PublicKey()),
		Timeout:         30 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh to %s as %s: %v", v.Addr, v.User, err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

func mustLogin(t *testing.T, v *VM, cmd string) string {
	t.Helper()
	out, err := login(t, v, cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return out
}

func readSysctls(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range sysctls {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m[p] = strings.TrimSpace(string(b))
	}
	return m
}

// assertRemoved checks that nothing s lists is left on the machine.
func assertRemoved(t *testing.T, s state) {
	t.Helper()
	for _, p := range append(append(append(append([]string{}, s.Masks...), s.Units...), s.Files...), s.Dirs...) {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	for _, u := range s.Users {
		if _, err := user.Lookup(u); err == nil {
			t.Errorf("user %s left behind", u)
		}
	}
	if _, err := os.Stat(s.Cgroup); s.Cgroup == "" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cgroup %q left behind (%v)", s.Cgroup, err)
	}
	if isOurSystemd(s.PID, s.Target) {
		t.Errorf("systemd %d still runs", s.PID)
	}
	if _, err := os.Stat(s.Canary); s.Canary == "" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("canary %q left behind (%v)", s.Canary, err)
	}
}

// The VM is a real systemd, PID 1 of its namespaces, with masks in place, a
// system bus the login user's systemctl reaches without sudo, sudo -n for
// systemctl, real Restart=always restarts counted in NRestarts; and the
// teardown leaves nothing behind and the machine's settings as they were.
func TestStart(t *testing.T) {
	require(t)
	var s state
	t.Run("vm", func(t *testing.T) {
		v := Start(t, Options{})
		s = v.st.load(t)
		if len(s.Masks) == 0 || len(s.Users) != 2 || s.Cgroup == "" || s.PID != v.PID {
			t.Fatalf("state %+v does not list what Start created", s)
		}
		// systemd as PID 1 raised this shared setting: the teardown must
		// restore it.
		if was, _ := strconv.Atoi(s.Sysctls["/proc/sys/net/unix/max_dgram_qlen"]); was < 512 {
			if now := readSysctls(t)["/proc/sys/net/unix/max_dgram_qlen"]; now != "512" {
				t.Errorf("net.unix.max_dgram_qlen %s while the VM runs, want systemd's 512", now)
			}
		}
		if out, err := v.Exec("cat", "/proc/1/comm"); err != nil || out != "systemd\n" {
			t.Errorf("PID 1 in the namespaces: %q, %v; want systemd", out, err)
		}
		if out, err := v.Systemctl("is-system-running"); out != "running\n" {
			failed, _ := v.Systemctl("--failed", "--no-legend")
			t.Errorf("is-system-running: %q, %v; want running (failed units: %s)", out, err, failed)
		}
		for _, u := range []string{"systemd-tmpfiles-setup.service", "systemd-udevd.service", "timers.target"} {
			if got, _ := v.Show(u, "LoadState"); got != "masked" {
				t.Errorf("%s: LoadState %q, want masked", u, got)
			}
		}
		if got := mustLogin(t, v, "id -un; systemctl is-active dbus.service"); got != v.User+"\nactive\n" {
			t.Errorf("login user and its systemctl through D-Bus: %q", got)
		}
		if got := mustLogin(t, v, "sudo -n -u "+v.AppUser+" -- id -un"); got != v.AppUser+"\n" {
			t.Errorf("sudo -n -u %s: %q", v.AppUser, got)
		}
		if out, err := login(t, v, "sudo -n -u "+v.User+" -- true"); err == nil {
			t.Errorf("sudo -n -u %s worked (%q); the rules give root and the app user only", v.User, out)
		}

		unit := "dh-crash-" + v.id + ".service"
		v.InstallUnit(t, unit, `[Unit]
DefaultDependencies=no
StartLimitIntervalSec=0
[Service]
ExecStart=/bin/sh -c 'sleep 0.2; exit 1'
Restart=always
RestartSec=100ms
`)
		mustLogin(t, v, "sudo -n systemctl --no-ask-password start "+unit)
		var n int
		for deadline := time.Now().Add(30 * time.Second); n < 2; time.Sleep(50 * time.Millisecond) {
			out := mustLogin(t, v, "systemctl show --property=NRestarts --value "+unit)
			n, _ = strconv.Atoi(strings.TrimSpace(out))
			if time.Now().After(deadline) {
				t.Fatalf("NRestarts of a unit that exits 1 stayed at %d for 30s", n)
			}
		}
		if got, _ := v.Show(unit, "FragmentPath"); got != "/etc/systemd/system/"+unit {
			t.Errorf("FragmentPath %q", got)
		}
		// InstallUnit replaces the test's own unit, never the machine's (a
		// mask stands for one: it exists, and is not the test's unit).
		v.InstallUnit(t, unit, "[Service]\nExecStart=/bin/true\n")
		if got, _ := v.Show(unit, "ExecStart"); !strings.Contains(got, "path=/bin/true ") {
			t.Errorf("ExecStart after the second InstallUnit: %q", got)
		}
		const machines = "/etc/systemd/system/systemd-tmpfiles-setup.service"
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			v.InstallUnit(ft, "systemd-tmpfiles-setup.service", "[Service]\nExecStart=/bin/true\n")
		}()
		if !ft.fatal {
			t.Error("InstallUnit replaced a file it did not create")
		}
		if target, err := os.Readlink(machines); err != nil || target != "/dev/null" {
			t.Errorf("%s: %q, %v; want the mask kept", machines, target, err)
		}
		// The units' processes live in the VM's own cgroup subtree.
		if _, err := os.Stat(s.Cgroup + "/system.slice/deployhook-sshd.service"); err != nil {
			t.Errorf("sshd's cgroup is not under the VM's: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	assertRemoved(t, s)
	// Under the lock, no other test's VM runs (nor raised the settings).
	l := lockMachine(t)
	defer l.Close()
	if _, err := os.Stat(statePath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file left behind: %v", err)
	}
	if after := readSysctls(t); len(s.Sysctls) != len(sysctls) || fmt.Sprint(after) != fmt.Sprint(s.Sysctls) {
		t.Errorf("kernel settings after the VM %v, want them as before the boot %v", after, s.Sysctls)
	}
}

// fatalRecorder records a Fatal instead of ending the test.
type fatalRecorder struct {
	testing.TB
	fatal bool
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fatal = true
	f.Logf("(expected) "+format, args...)
	panic("fatal")
}

const childEnv = "DEPLOYHOOK_SYSTEMDTEST_CHILD"

// TestKilledChild boots a VM and waits to be killed: the helper process of
// TestStart_CleansStaleLeftovers.
func TestKilledChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("the helper process of TestStart_CleansStaleLeftovers")
	}
	v := Start(t, Options{})
	fmt.Printf("booted %d\n", v.PID)
	time.Sleep(2 * time.Minute) // killed long before
	t.Fatal("not killed")
}

// A test binary killed with its VM running leaves systemd, masks, users and
// files behind; the next Start removes them all first.
func TestStart_CleansStaleLeftovers(t *testing.T) {
	require(t)
	// The child boots under a lock this test holds for it: when the child is
	// killed, no other test process on the machine may take the lock and
	// clean the child's VM away before this test has looked at it.
	lock := lockMachine(t)
	handed := false
	defer func() {
		if !handed {
			lock.Close()
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", inheritedLockEnv+"=3")
	cmd.ExtraFiles = []*os.File{lock}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	booted := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "booted ") {
			booted = true
			break
		}
		t.Logf("child: %s", sc.Text())
	}
	if !booted {
		_ = cmd.Wait()
		t.Fatal("the child exited without booting a VM")
	}
	stale, err := readState(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !isOurSystemd(stale.PID, stale.Target) || len(stale.Users) != 2 {
		t.Fatalf("after the kill, the child's systemd %d runs: %v; state %+v", stale.PID, isOurSystemd(stale.PID, stale.Target), stale)
	}
	for _, p := range append(append([]string{}, stale.Units...), stale.Files...) {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the child's %s is not there: %v", p, err)
		}
	}

	// The lock goes on to the next Start, which cleans the child's VM up
	// before any other test process may look (another test's check that
	// nothing is left must never see the child's leftovers).
	handedLock.Lock()
	handedLock.f = lock
	handedLock.Unlock()
	handed = true
	t.Run("next", func(t *testing.T) {
		v := Start(t, Options{})
		if v.PID == stale.PID {
			t.Fatalf("same PID %d", v.PID)
		}
		// The masks are the same paths again; everything else of the child's
		// is gone.
		stale.Masks = nil
		assertRemoved(t, stale)
	})
}
