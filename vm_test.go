package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// The TestVM_ tests run the whole program (serve, a configuration with
// transport: ssh) against a "VM" made of real parts: OpenSSH's sshd on
// 127.0.0.1, a git origin and the app's checkout, sudo, flock and timeout(1),
// with stand-in systemctl and uv (vm_helpers_test.go). The statuses are read
// from the fake GitHub of main_test.go.

// A push deploys exactly the pushed commit, syncs only when the lock file
// changed, restarts both units in order and reports success.
func TestVM_PushDeploysExactSHA(t *testing.T) {
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	p := startProgram(t, v.writeConfig(t, vmConfig{app: true}), filepath.Join(v.dir, "data"), testEnv(gh))

	// An app change: no uv sync.
	c2 := v.commit(t, "app change", map[string]string{"app.py": "print('two')\n"})
	push(t, p, c2)
	if s := final(t, gh, c2); s.State != "success" || s.Description != "deployed "+c2[:7] {
		t.Fatalf("status %s %q, want success deployed %s", s.State, s.Description, c2[:7])
	}
	if got := v.head(t); got != c2 {
		t.Errorf("checkout at %s, want %s", got, c2)
	}
	if got := v.calls(t, "uv"); len(got) != 0 {
		t.Errorf("uv ran though uv.lock did not change: %v", got)
	}
	restarts := v.calls(t, "systemctl restart")
	if got, want := cmds(restarts), []string{"systemctl restart dagster-code", "systemctl restart dagster"}; !slices.Equal(got, want) {
		t.Errorf("restarts %q, want %q", got, want)
	}
	for _, c := range restarts {
		if c.user != "root" && os.Geteuid() == 0 {
			t.Errorf("%s ran as %s, want root (sudo -n)", c.cmd, c.user)
		}
	}
	if v.sudoLog != "" {
		// Not root and no sudo rights: the stand-in sudo saw the command lines.
		b, err := os.ReadFile(v.sudoLog)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, want := range []string{"sudo -n -u " + v.user + " -- sh -c", "sudo -n -- sh -c"} {
			if !slices.Contains(lines, want) {
				t.Errorf("no %q among the sudo command lines %q", want, lines)
			}
		}
	}
	if got := v.calls(t, "systemctl show"); len(got) != 8 {
		t.Errorf("verify looked %d times at the units, want 8 (state and restarts of both, before and after settle): %v", len(got), got)
	}

	// A lock file change, then another commit on top: the deploy of the first
	// checks out exactly it (not the branch head) and syncs, as the app user.
	c3 := v.commit(t, "lock change", map[string]string{"uv.lock": "version = 2\n"})
	c4 := v.commit(t, "later", map[string]string{"app.py": "print('four')\n"})
	push(t, p, c3)
	if s := final(t, gh, c3); s.State != "success" {
		t.Fatalf("status %s %q, want success", s.State, s.Description)
	}
	if got := v.head(t); got != c3 {
		t.Errorf("checkout at %s, want exactly %s (not the branch head %s)", got, c3, c4)
	}
	uv := v.calls(t, "uv")
	if len(uv) != 1 || uv[0].cmd != "uv sync --frozen" || uv[0].sha != c3 {
		t.Errorf("uv calls %v, want one uv sync --frozen for %s", uv, c3[:7])
	}
	for _, c := range append(uv, v.calls(t, "git")...) {
		if c.user != v.user {
			t.Errorf("%q ran as %s, want the app user %s (sudo -n -u)", c.cmd, c.user, v.user)
		}
	}
	if got := len(v.calls(t, "systemctl restart")); got != 4 {
		t.Errorf("%d restarts after two deploys, want 4", got)
	}
}

// A host key that is not the pinned one: nothing runs on the VM.
func TestVM_ChangedHostKeyRefused(t *testing.T) {
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(other)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(v.srv.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.Fields(string(old))[0] // [127.0.0.1]:PORT
	kh := filepath.Join(v.dir, "known_hosts")
	writeFile(t, kh, host+" "+string(ssh.MarshalAuthorizedKey(signer.PublicKey())), 0o600)
	p := startProgram(t, v.writeConfig(t, vmConfig{app: true, knownHosts: kh}), filepath.Join(v.dir, "data"), testEnv(gh))

	c2 := v.commit(t, "app change", map[string]string{"app.py": "print('two')\n"})
	job := push(t, p, c2)
	s := final(t, gh, c2)
	if s.State != "error" || !strings.Contains(s.Description, "nothing ran") {
		t.Errorf("status %s %q, want error saying nothing ran", s.State, s.Description)
	}
	if got := v.calls(t, ""); len(got) != 0 {
		t.Errorf("commands ran on the VM: %v", got)
	}
	if got := v.head(t); got != v.first {
		t.Errorf("checkout moved to %s", got)
	}
	if j := getJob(t, p, job); !slices.Equal(j.stepNames(), []string{"connect"}) {
		t.Errorf("steps %v, want only the failed connect", j.stepNames())
	}
}

// A step that outlives its timeout is killed on the VM with its children, the
// status names it, and the rollback checks the previous commit out again.
func TestVM_StepTimeoutKilledAndRolledBack(t *testing.T) {
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	mark := "300." + randomMarker(t)
	steps := fmt.Sprintf(`      - name: checkout
        user: %[1]s
        run: git fetch --quiet origin && git -c advice.detachedHead=false checkout --quiet --detach "$DEPLOYHOOK_SHA"
        timeout: 30s
        checkpoint: true
      - name: migrate
        user: %[1]s
        run: sleep %[2]s & sleep %[2]s; wait
        timeout: 2s
        rollback: false
`, v.user, mark)
	p := startProgram(t, v.writeConfig(t, vmConfig{app: true, steps: steps}), filepath.Join(v.dir, "data"), testEnv(gh))
	sleeps := "^sleep " + strings.ReplaceAll(mark, ".", `\.`) + "$"
	t.Cleanup(func() {
		for _, pid := range pids(t, sleeps) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	c2 := v.commit(t, "slow migration", map[string]string{"app.py": "print('two')\n"})
	job := push(t, p, c2)
	waitFor(t, "both sleeps of the step run on the VM", func() bool { return len(pids(t, sleeps)) == 2 })
	s := final(t, gh, c2)
	if want := "migrate timed out; rolled back to " + v.first[:7]; s.State != "failure" || s.Description != want {
		t.Errorf("status %s %q, want failure %q", s.State, s.Description, want)
	}
	// Killed processes vanish at once; unkilled ones would live for 300 s.
	for deadline := time.Now().Add(5 * time.Second); len(pids(t, sleeps)) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("processes of the timed-out step still run: %v", pids(t, sleeps))
		}
	}
	if got := v.head(t); got != v.first {
		t.Errorf("checkout at %s after the rollback, want %s", got, v.first)
	}
	var checkouts []string
	for _, c := range v.calls(t, "git -c advice.detachedHead=false checkout") {
		checkouts = append(checkouts, c.sha)
	}
	if want := []string{c2, v.first}; !slices.Equal(checkouts, want) {
		t.Errorf("checkouts of %v, want %v (the deploy, then the rollback)", checkouts, want)
	}
	if got, want := getJob(t, p, job).stepNames(), []string{"checkout", "migrate", "rollback: checkout"}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

// A unit that crash-loops after the restart fails the verification, and the
// deploy rolls back to the previous commit, which runs.
func TestVM_CrashLoopRollsBack(t *testing.T) {
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	p := startProgram(t, v.writeConfig(t, vmConfig{app: true}), filepath.Join(v.dir, "data"), testEnv(gh))

	c2 := v.commit(t, "crashes", map[string]string{"app.py": "raise SystemExit('CRASH')\n"})
	job := push(t, p, c2)
	s := final(t, gh, c2)
	if want := "verify failed (exit 1); rolled back to " + v.first[:7]; s.State != "failure" || s.Description != want {
		t.Errorf("status %s %q, want failure %q", s.State, s.Description, want)
	}
	if got := v.head(t); got != v.first {
		t.Errorf("checkout at %s after the rollback, want %s", got, v.first)
	}
	j := getJob(t, p, job)
	if out := j.output("verify"); !strings.Contains(out, "dagster-code restarted by systemd within 1s") || !strings.Contains(out, "crash loop") {
		t.Errorf("verify output %q does not name the crash loop", out)
	}
	if out := j.output("rollback: verify"); !strings.Contains(out, "dagster-code, dagster active for 1s") {
		t.Errorf("rollback verify output %q", out)
	}
	var restarted []string
	for _, c := range v.calls(t, "systemctl restart") {
		restarted = append(restarted, c.sha[:7]+" "+strings.TrimPrefix(c.cmd, "systemctl restart "))
	}
	want := []string{c2[:7] + " dagster-code", c2[:7] + " dagster", v.first[:7] + " dagster-code", v.first[:7] + " dagster"}
	if !slices.Equal(restarted, want) {
		t.Errorf("restarts %v, want %v", restarted, want)
	}
}

// A work tree with local changes is refused with the reason, and left alone.
func TestVM_DirtyTreeRefused(t *testing.T) {
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	p := startProgram(t, v.writeConfig(t, vmConfig{app: true}), filepath.Join(v.dir, "data"), testEnv(gh))
	const local = "print('hotfix on the VM')\n"
	if err := os.WriteFile(filepath.Join(v.app, "app.py"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}

	c2 := v.commit(t, "app change", map[string]string{"app.py": "print('two')\n"})
	job := push(t, p, c2)
	s := final(t, gh, c2)
	if s.State != "failure" || s.Description != "preflight failed (exit 1); nothing was changed" {
		t.Errorf("status %s %q, want failure of the preflight", s.State, s.Description)
	}
	out := getJob(t, p, job).output("preflight")
	for _, want := range []string{"refusing to deploy: the work tree in " + v.app + " has local changes", "M app.py", "allow_dirty"} {
		if !strings.Contains(out, want) {
			t.Errorf("preflight output %q does not say %q", out, want)
		}
	}
	if got := v.head(t); got != v.first {
		t.Errorf("checkout moved to %s", got)
	}
	if b, _ := os.ReadFile(filepath.Join(v.app, "app.py")); string(b) != local {
		t.Errorf("the local change is gone: app.py is %q", b)
	}
	if got := v.calls(t, "systemctl"); len(got) != 0 {
		t.Errorf("units touched: %v", got)
	}
}

// A step that needs sudo, run by a login user without sudo rights, fails at
// once, and sudo does not even try to read a password: deployhook's sudo -n
// never prompts. (A sudo without -n, here without a terminal, says it needs
// one to read the password; with one it would wait until the step's timeout.)
func TestVM_SudoNeverPrompts(t *testing.T) {
	v := newVM(t, vmOptions{realSudo: true})
	login := v.srv.User
	if os.Geteuid() == 0 {
		// Log in as the app user, who has no sudo rights: it must be able to read
		// the sshd's authorized_keys (sshd reads it as the user).
		login = v.user
		for _, f := range []string{v.srv.Dir, filepath.Join(v.srv.Dir, "authorized_keys")} {
			if err := os.Chmod(f, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	} else if err := exec.Command("sudo", "-n", "true").Run(); err == nil {
		msg := "this user has passwordless sudo: no sudo here would prompt; run as root (as CI does) to test it with a user without sudo rights"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	tests := []struct {
		name string
		as   string // how the step becomes root
	}{
		{name: "sudo", as: "sudo: true"},      // sudo -n --
		{name: "user root", as: "user: root"}, // sudo -n -u root --
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gh := v.github(t)
			cfg := v.writeConfig(t, vmConfig{loginUser: login, steps: fmt.Sprintf(`      - name: restart dagster
        %s
        run: systemctl restart dagster
        timeout: 2m
`, tc.as)})
			p := startProgram(t, cfg, filepath.Join(v.dir, fmt.Sprintf("data-%d", i)), testEnv(gh))
			sha := v.commit(t, tc.name, map[string]string{"app.py": fmt.Sprintf("print(%d)\n", i)})
			job := push(t, p, sha)
			s := final(t, gh, sha)
			if want := "restart dagster failed (exit 1); nothing was changed"; s.State != "failure" || s.Description != want {
				t.Errorf("status %s %q, want failure %q", s.State, s.Description, want)
			}
			out := getJob(t, p, job).output("restart dagster")
			if !strings.Contains(out, "a password is required") || strings.Contains(out, "to read the password") {
				t.Errorf("step output %q, want sudo -n's refusal, without an attempt to read a password", out)
			}
			if got := v.calls(t, "systemctl"); len(got) != 0 {
				t.Errorf("systemctl ran without sudo rights: %v", got)
			}
		})
	}
}

// Two deployhooks deploying to one VM take its lock in turn: the second waits
// while the first holds it, and the steps of the two never interleave.
func TestVM_RacingDeploysSerialized(t *testing.T) {
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	cfg := v.writeConfig(t, vmConfig{app: true})
	a := startProgram(t, cfg, filepath.Join(v.dir, "data-a"), testEnv(gh))
	b := startProgram(t, cfg, filepath.Join(v.dir, "data-b"), testEnv(gh))
	c2 := v.commit(t, "two", map[string]string{"app.py": "print('two')\n"})
	c3 := v.commit(t, "three", map[string]string{"app.py": "print('three')\n"})

	// A's restart waits for the hold file to go: A holds the lock meanwhile.
	hold := filepath.Join(v.ctl, "hold-"+c2)
	writeFile(t, hold, "", 0o644)
	t.Cleanup(func() { os.Remove(hold) }) // before the programs stop
	push(t, a, c2)
	waitFor(t, "A restarts dagster-code", func() bool {
		return slices.ContainsFunc(v.calls(t, "systemctl restart"), func(c call) bool { return c.sha == c2 })
	})
	jobB := push(t, b, c3)
	flocks := "^flock -E 75 .*" + regexp.QuoteMeta(v.lock) + " " // the lock sessions, not the steps' flocks
	waitFor(t, "B waits for the lock A holds", func() bool { return len(pids(t, flocks)) == 2 })
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}

	if s := final(t, gh, c2); s.State != "success" {
		t.Errorf("A: status %s %q, want success", s.State, s.Description)
	}
	if s := final(t, gh, c3); s.State != "success" {
		t.Errorf("B: status %s %q, want success", s.State, s.Description)
	}
	calls := v.calls(t, "")
	firstB := slices.IndexFunc(calls, func(c call) bool { return c.sha == c3 })
	for i, c := range calls {
		if c.sha == c2 && firstB >= 0 && i > firstB {
			t.Errorf("A's %q ran after B had started: the deploys interleaved:\n%v", c.cmd, calls)
			break
		}
	}
	if got := shas(calls); !slices.Equal(got, []string{c2, c3}) {
		t.Errorf("deploys on the VM: %v, want %s then %s", got, c2[:7], c3[:7])
	}
	if j := getJob(t, b, jobB); j.PreviousSHA != c2 {
		t.Errorf("B found %q checked out, want A's %s", j.PreviousSHA, c2)
	}
	if got := v.head(t); got != c3 {
		t.Errorf("checkout at %s, want %s", got, c3)
	}
}

// A connection cut in the middle of a step: the status is error (the target's
// state is unknown) and the next deploy reconnects and works.
func TestVM_ConnectionCutMidStep(t *testing.T) {
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	p := startProgram(t, v.writeConfig(t, vmConfig{app: true}), filepath.Join(v.dir, "data"), testEnv(gh))
	c2 := v.commit(t, "two", map[string]string{"app.py": "print('two')\n"})
	hold := filepath.Join(v.ctl, "hold-"+c2)
	writeFile(t, hold, "", 0o644)
	t.Cleanup(func() { os.Remove(hold) }) // before the program stops

	push(t, p, c2)
	restart := regexp.QuoteMeta(filepath.Join(v.bin, "systemctl")) + " --no-ask-password restart dagster-code$"
	var step []int
	waitFor(t, "the restart runs on the VM", func() bool { step = pids(t, restart); return len(step) == 1 })
	cutConnection(t, step[0])
	s := final(t, gh, c2)
	if want := "connection lost during restart dagster-code; target state unknown"; s.State != "error" || s.Description != want {
		t.Errorf("status %s %q, want error %q", s.State, s.Description, want)
	}
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}

	c3 := v.commit(t, "three", map[string]string{"app.py": "print('three')\n"})
	push(t, p, c3)
	if s := final(t, gh, c3); s.State != "success" {
		t.Errorf("the deploy after the cut: %s %q, want success", s.State, s.Description)
	}
	if got := v.head(t); got != c3 {
		t.Errorf("checkout at %s, want %s", got, c3)
	}
}

// Changes the deploy does not apply are named in the status.
func TestVM_NotAppliedNamed(t *testing.T) {
	v := newVM(t, vmOptions{})
	gh := v.github(t)
	p := startProgram(t, v.writeConfig(t, vmConfig{app: true}), filepath.Join(v.dir, "data"), testEnv(gh))
	c2 := v.commit(t, "config", map[string]string{
		"dagster.yaml":                     "telemetry: {enabled: true}\n",
		"infra/files/dagster-code.service": "[Service]\nRestart=always\n",
	})
	push(t, p, c2)
	if s, want := final(t, gh, c2), "deployed "+c2[:7]+"; not applied: dagster.yaml; infra/ changed: terraform apply needed"; s.State != "success" || s.Description != want {
		t.Errorf("status %s %q, want success %q", s.State, s.Description, want)
	}
	if got := v.head(t); got != c2 {
		t.Errorf("checkout at %s, want %s", got, c2)
	}

	// Without such a change, nothing is named.
	c3 := v.commit(t, "app", map[string]string{"app.py": "print('three')\n"})
	push(t, p, c3)
	if s, want := final(t, gh, c3), "deployed "+c3[:7]; s.Description != want {
		t.Errorf("status %s %q, want %q", s.State, s.Description, want)
	}
}
