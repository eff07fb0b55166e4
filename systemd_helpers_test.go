package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/internal/sshdtest"
	"github.com/deployhook/deployhook/internal/systemdtest"
)

// sdVM is the "VM" of the TestSystemd_ tests: the vm of vm_helpers_test.go
// (a git origin, a developer's clone and the app's checkout, owned by the app
// user) on a real systemd booted in its own namespaces (internal/systemdtest),
// reached through the sshd inside them as a login user with sudo -n rights.
// Nothing stands in for systemctl: the app's unit is a real Restart=always
// unit that runs the checkout's start.sh as the app user.
type sdVM struct {
	*vm
	sd   *systemdtest.VM
	unit string // the app's unit, e.g. dhtest-123456.service
	ran  string // start.sh appends the marker of the commit it runs to this file
}

// newSystemdVM boots the VM and starts the app's unit on the first commit,
// whose start.sh runs with the marker "one".
func newSystemdVM(t *testing.T) *sdVM {
	t.Helper()
	sd := systemdtest.Start(t, systemdtest.Options{})
	v, home := vmOn(t, sd)
	v.first = v.commit(t, "initial", map[string]string{
		"start.sh": startScript("one"),
		"uv.lock":  "version = 1\n",
	})
	v.run(t, home, "clone", "--quiet", v.origin, v.app)

	s := &sdVM{vm: v, sd: sd, unit: "dhtest-" + randomMarker(t) + ".service", ran: filepath.Join(v.ctl, "ran")}
	sd.InstallUnit(t, s.unit, s.unitFile(""))
	if out, err := sd.Systemctl("start", s.unit); err != nil {
		t.Fatalf("start %s: %v\n%s", s.unit, err, out)
	}
	waitFor(t, s.unit+" runs the first commit", func() bool { return s.lastRan(t) == "one" })
	return s
}

// vmOn returns the vm of vm_helpers_test.go on the systemd VM sd, and the
// app user's home, where its git origin and the developer's clone are (both
// initialized, still empty). Its files live in sd's directory under
// systemdtest.Root (never /tmp, which no systemd may clean), removed with it,
// even after a killed test; the deploy logs in as sd's login user and the
// app's files belong to sd.AppUser. Its bin holds nothing: the real tools
// run.
func vmOn(t *testing.T, sd *systemdtest.VM) (v *vm, home string) {
	t.Helper()
	sshdtest.Require(t, "flock", "/usr/bin/flock")
	sshdtest.Require(t, "timeout", "/usr/bin/timeout")
	v = &vm{git: sshdtest.Require(t, "git", "/usr/bin/git"), user: sd.AppUser}
	v.dir = filepath.Join(sd.Dir, "vm")
	v.srv = &sshdtest.Server{
		Addr: sd.Addr, User: sd.User, HostKey: sd.HostKey, ClientKey: sd.ClientKey,
		ClientPEM: sd.ClientPEM, Dir: sd.Dir, KnownHosts: sd.KnownHosts,
	}
	v.keyFile = sd.ClientKeyFile(t)
	home = filepath.Join(v.dir, "home")
	v.origin = filepath.Join(home, "origin.git")
	v.work = filepath.Join(home, "work")
	v.app = filepath.Join(home, "app")
	v.bin = filepath.Join(v.dir, "bin")
	v.ctl = filepath.Join(v.dir, "ctl")
	v.log = filepath.Join(v.dir, "calls.log")
	v.lock = filepath.Join(v.dir, "lock", "deploy.lock")
	for _, d := range []string{v.dir, v.bin, home} {
		mkdir(t, d, 0o755)
	}
	mkdir(t, v.ctl, 0o777)
	// Writable by the login user only: the transport refuses others.
	mkdir(t, filepath.Dir(v.lock), 0o700)
	if out, err := exec.Command("chown", sd.User, filepath.Dir(v.lock)).CombinedOutput(); err != nil {
		t.Fatalf("chown the lock directory to %s: %v %s", sd.User, err, out)
	}
	u, err := user.Lookup(v.user)
	if err != nil {
		t.Fatal(err)
	}
	v.uid, _ = strconv.Atoi(u.Uid)
	v.gid, _ = strconv.Atoi(u.Gid)
	if err := os.Chown(home, v.uid, v.gid); err != nil {
		t.Fatal(err)
	}
	v.gitEnv = append(os.Environ(),
		"HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Deploy Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Deploy Test", "GIT_COMMITTER_EMAIL=test@example.com")
	v.run(t, home, "-c", "init.defaultBranch=main", "init", "--quiet", "--bare", v.origin)
	v.run(t, home, "-c", "init.defaultBranch=main", "init", "--quiet", v.work)
	return v, home
}

// startScript is an app's start.sh that appends marker to $RAN and runs.
func startScript(marker string) string {
	return fmt.Sprintf("#!/bin/sh\necho %s >> \"$RAN\"\nexec sleep 600\n", marker)
}

// crashScript is a start.sh that appends marker to $RAN and exits 1 after 2s:
// long enough for the verify step's first look to see the unit active, and
// it crash-loops within the settle time.
func crashScript(marker string) string {
	return fmt.Sprintf("#!/bin/sh\necho %s >> \"$RAN\"\nsleep 2\nexit 1\n", marker)
}

// unitFile returns the app's unit, with extra lines in [Service].
func (s *sdVM) unitFile(extra string) string {
	return fmt.Sprintf(`[Unit]
Description=deployhook test app
DefaultDependencies=no
StartLimitIntervalSec=0

[Service]
User=%s
WorkingDirectory=%s
Environment=RAN=%s
ExecStart=/bin/sh %s
Restart=always
RestartSec=100ms
%s`, s.user, s.app, s.ran, filepath.Join(s.app, "start.sh"), extra)
}

// name is the unit's name without .service, as the configuration and the
// verify step's output name it.
func (s *sdVM) name() string { return strings.TrimSuffix(s.unit, ".service") }

// runs returns the markers start.sh appended, one per start of the unit.
func (s *sdVM) runs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(s.ran)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func (s *sdVM) lastRan(t *testing.T) string {
	r := s.runs(t)
	if len(r) == 0 {
		return ""
	}
	return r[len(r)-1]
}

// show returns a property of the app's unit.
func (s *sdVM) show(t *testing.T, property string) string {
	t.Helper()
	out, err := s.sd.Show(s.unit, property)
	if err != nil {
		t.Fatalf("systemctl show %s %s: %v %s", property, s.unit, err, out)
	}
	return out
}

// config writes deployhook's configuration for one ssh target on the VM,
// logging in as the login user. Without steps it runs the default sequence
// on the app's unit with the given settle time.
func (s *sdVM) config(t *testing.T, settle time.Duration, steps string) string {
	t.Helper()
	keys := fmt.Sprintf("    app_dir: %s\n    app_user: %s\n", s.app, s.user)
	if steps == "" {
		keys += fmt.Sprintf("    units: [%s]\n    settle: %s\n", s.name(), settle)
	} else {
		keys += "    steps:\n" + steps
	}
	return writeSSHConfig(t, s.dir, sshTarget{addr: s.sd.Addr, user: s.sd.User, keyFile: s.keyFile,
		knownHosts: s.sd.KnownHosts, lock: s.lock, keys: keys})
}
