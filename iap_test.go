package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/deployhook/deployhook/executor/gce/gcetest"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
)

const (
	iapProject  = "acme-prod"
	iapZone     = "us-central1-a"
	iapInstance = "dagster"
	iapID       = "7394028471928374651"
	googleToken = "ya29.e2e-access-token"
)

// iapSetup is a VM reachable only through the fake relay, with the fake Google.
type iapSetup struct {
	v      *vm
	google *gcetest.Server
	relay  *iaptest.Relay
	gh     *fakeGitHub
	p      *program
	cfg    string
	env    func(string) string
}

func startIAP(t *testing.T) *iapSetup {
	s := newIAP(t)
	s.p = startProgram(t, s.cfg, filepath.Join(s.v.dir, "data"), s.env)
	return s
}

// newIAP sets up the VM, the relay and the fakes, and writes the configuration.
func newIAP(t *testing.T) *iapSetup {
	t.Helper()
	v := newVM(t, vmOptions{})
	s := &iapSetup{v: v, google: gcetest.NewServer(t, gcetest.Options{Tokens: []string{googleToken}}), gh: v.github(t)}
	id, _ := strconv.ParseUint(iapID, 10, 64)
	s.google.SetInstance(gcetest.Instance{Project: iapProject, Zone: iapZone, Name: iapInstance, ID: id,
		Attributes: gcetest.HostKeyAttributes(v.srv.HostKey.PublicKey())})
	s.relay = iaptest.NewRelay(t, iaptest.RelayOptions{
		Tokens: []string{googleToken}, Project: iapProject, Zone: iapZone,
		Instances: map[string]string{iapInstance: "127.0.0.1"},
	})
	port := v.srv.Addr[strings.LastIndexByte(v.srv.Addr, ':')+1:]
	cfg := fmt.Sprintf(`public_url: https://deploy.example.com
show_output: true # the tests read steps' output and errors from the job pages
log: {format: text, level: debug}
github:
  deployments: false
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    branch: main
    transport: iap
    vm: {project: %s, zone: %s, instance: %s, port: %s}
    ssh:
      user: %s
      private_key_file: %s
      timeout: 20s
    lock: %s
    env: {PATH: "%s:/usr/local/bin:/usr/bin:/bin"}
    app_dir: %s
    app_user: %s
    units: [dagster-code, dagster]
    settle: 1s
`, iapProject, iapZone, iapInstance, port, v.srv.User, v.keyFile, v.lock, v.bin, v.app, v.user)
	cfgPath := filepath.Join(v.dir, "iap.yaml")
	writeFile(t, cfgPath, cfg, 0o600)
	env := map[string]string{
		"DEPLOYHOOK_WEBHOOK_SECRET":      testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN":        testToken,
		"DEPLOYHOOK_GITHUB_API_URL":      s.gh.srv.URL + "/",
		"DEPLOYHOOK_IAP_URL":             s.relay.URL(),
		"DEPLOYHOOK_COMPUTE_URL":         s.google.URL(),
		"GOOGLE_APPLICATION_CREDENTIALS": s.google.ServiceAccountKey(t, v.dir, osLoginAccount),
	}
	s.cfg, s.env = cfgPath, func(k string) string { return env[k] }
	return s
}

// A target with transport iap deploys with nothing but a service account: the
// token from the key's token_uri, the instance and its host keys from the
// Compute API, SSH through the relay to a real sshd.
func TestIAP_DeployThroughTunnel(t *testing.T) {
	s := startIAP(t)
	c2 := s.v.commit(t, "app change", map[string]string{"app.py": "print('iap')\n"})
	push(t, s.p, c2)
	if st := final(t, s.gh, c2); st.State != "success" || st.Description != "deployed "+c2[:7] {
		t.Fatalf("status %s %q, want success", st.State, st.Description)
	}
	if got := s.v.head(t); got != c2 {
		t.Errorf("checkout at %s, want %s", got, c2)
	}
	if got := cmds(s.v.calls(t, "systemctl restart")); len(got) != 2 {
		t.Errorf("restarts %q, want both units", got)
	}
	stats := s.relay.Stats()
	if stats.Connects == 0 {
		t.Error("the relay saw no tunnel: the deploy did not go through IAP")
	}
	if got := s.google.Scopes(); !slices.Equal(got, []string{"https://www.googleapis.com/auth/cloud-platform"}) {
		t.Errorf("token scopes %v, want cloud-platform", got)
	}
	if s.google.Count(gcetest.OpToken) == 0 {
		t.Error("no token was fetched from the key's token_uri")
	}
}

// A VM whose host key is not the one its guest attributes publish is refused.
func TestIAP_HostKeyDiffersFromGuestAttributes(t *testing.T) {
	s := startIAP(t)
	other := newSigner(t)
	s.google.Update(iapProject, iapZone, iapInstance, func(i *gcetest.Instance) {
		i.Attributes = gcetest.HostKeyAttributes(other.PublicKey())
	})
	c2 := s.v.commit(t, "app change", map[string]string{"app.py": "print('x')\n"})
	job := push(t, s.p, c2)
	if st := final(t, s.gh, c2); st.State != "error" {
		t.Fatalf("status %s %q, want error", st.State, st.Description)
	}
	if got := s.v.head(t); got == c2 {
		t.Error("the deploy ran on a VM whose host key was not pinned")
	}
	page := getJob(t, s.p, job)
	if len(page.Steps) != 1 || page.Steps[0].Name != "connect" ||
		!strings.Contains(page.Steps[0].Error, ssh.FingerprintSHA256(s.v.srv.HostKey.PublicKey())) {
		t.Errorf("job page steps %+v: want one connect step naming the seen fingerprint", page.Steps)
	}
}

// A VM that is not running fails fast, before any tunnel, with the reason.
func TestIAP_InstanceNotRunning(t *testing.T) {
	s := startIAP(t)
	s.google.Update(iapProject, iapZone, iapInstance, func(i *gcetest.Instance) { i.Status = "TERMINATED" })
	c2 := s.v.commit(t, "app change", map[string]string{"app.py": "print('y')\n"})
	job := push(t, s.p, c2)
	if st := final(t, s.gh, c2); st.State != "error" {
		t.Fatalf("status %s %q, want error", st.State, st.Description)
	}
	if n := s.relay.Stats().Connects; n != 0 {
		t.Errorf("%d tunnels opened to a stopped VM", n)
	}
	page := getJob(t, s.p, job)
	if len(page.Steps) != 1 || !strings.Contains(page.Steps[0].Error, "TERMINATED") {
		t.Errorf("job page steps %+v: want the connect error naming TERMINATED", page.Steps)
	}
}

// newSigner returns a new ed25519 key: the type of the sshd's host key, so the
// handshake reaches the key comparison.
func newSigner(t *testing.T) ssh.Signer {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deployhook check walks the path a deploy takes and says what works.
func TestIAP_Check(t *testing.T) {
	s := newIAP(t)
	s.gh.head = s.v.first
	var out bytes.Buffer
	err := run(t.Context(), []string{"check", "--config", s.cfg, "--data-dir", filepath.Join(s.v.dir, "data")},
		s.env, nil, &out, t.Output())
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"✓ configuration: 1 target(s)",
		"✓ GitHub reporting: with DEPLOYHOOK_GITHUB_TOKEN",
		"✓ production: GitHub: head of acme/app main: " + s.v.first,
		"✓ production: Google access token obtained",
		"✓ production: instance dagster: RUNNING",
		"✓ production: IAP tunnel to port",
		"✓ production: session (iap)",
		"✓ production: sudo -n without a password",
		"✓ production: checkout " + s.v.app + " as " + s.v.user + ": " + s.v.first,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	s.google.Update(iapProject, iapZone, iapInstance, func(i *gcetest.Instance) { i.Status = "STOPPING" })
	out.Reset()
	err = run(t.Context(), []string{"check", "--config", s.cfg, "--data-dir", filepath.Join(s.v.dir, "data")},
		s.env, nil, &out, t.Output())
	if err == nil || !strings.Contains(out.String(), "✗ production: instance dagster: ") || !strings.Contains(out.String(), "STOPPING") {
		t.Errorf("check of a stopping VM: %v\n%s", err, out.String())
	}
}

// deployhook ssh runs a command on the VM through the tunnel and passes its
// exit status on.
func TestIAP_SSHCommand(t *testing.T) {
	s := newIAP(t)
	var out bytes.Buffer
	args := []string{"ssh", "--config", s.cfg, "--target", "production", "--", "sh", "-c", "echo through iap; exit 3"}
	err := run(t.Context(), args, s.env, strings.NewReader(""), &out, t.Output())
	if out.String() != "through iap\n" {
		t.Errorf("output %q", out.String())
	}
	if err == nil || err.Error() != "remote exit 3" || exitCode(err) != 3 {
		t.Errorf("err = %v (exit code %d), want the remote exit status", err, exitCode(err))
	}
	if s.relay.Stats().Connects != 1 {
		t.Errorf("%d tunnels, want 1", s.relay.Stats().Connects)
	}
}

// deployhook tunnel forwards a local port to the VM's sshd through IAP.
func TestIAP_Tunnel(t *testing.T) {
	s := newIAP(t)
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tunnel", "--config", s.cfg, "--target", "production", "--listen", "127.0.0.1:0"},
			s.env, nil, pw, t.Output())
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	addr := strings.Fields(strings.TrimPrefix(line, "forwarding "))[0]
	client, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            s.v.srv.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.v.srv.ClientKey)},
		HostKeyCallback: ssh.FixedHostKey(s.v.srv.HostKey.PublicKey()),
	})
	if err != nil {
		t.Fatalf("ssh through the tunnel at %s: %v", addr, err)
	}
	sess, _ := client.NewSession()
	got, err := sess.Output("echo forwarded")
	client.Close()
	if err != nil || string(got) != "forwarded\n" {
		t.Errorf("output %q, %v", got, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("tunnel ended with %v", err)
	}
	if s.relay.Stats().Connects != 1 {
		t.Errorf("%d tunnels, want 1", s.relay.Stats().Connects)
	}
}

// openPty returns a new pseudo-terminal's controlling side and its terminal.
func openPty(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no pseudo-terminals: %v", err)
		}
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close(); ptm.Close() })
	return ptm, pts
}

func setSize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
}

// deployhook ssh on a terminal: the remote shell gets a pty of the local
// terminal's size, follows a resize, and its exit status comes back.
func TestIAP_SSHTerminal(t *testing.T) {
	s := newIAP(t)
	ptm, pts := openPty(t)
	setSize(t, pts, 30, 100)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"ssh", "--config", s.cfg, "--target", "production"}, s.env, pts, &out, t.Output())
	}()
	type2 := func(line string) {
		if _, err := io.WriteString(ptm, line+"\r"); err != nil {
			t.Fatal(err)
		}
	}
	go io.Copy(io.Discard, ptm) // what the local terminal would show: nothing comes back here
	waitFor(t, "the remote shell", func() bool { return s.relay.Stats().Connects == 1 })
	type2("tty >/dev/null && echo size=$(stty size)")
	waitFor(t, "the first size", func() bool { return strings.Contains(out.String(), "size=30 100") })
	setSize(t, pts, 40, 120)
	syscall.Kill(os.Getpid(), syscall.SIGWINCH)
	waitFor(t, "the resize", func() bool {
		type2("echo size=$(stty size)")
		time.Sleep(50 * time.Millisecond)
		return strings.Contains(out.String(), "size=40 120")
	})
	type2("exit 5")
	if err := <-done; err == nil || err.Error() != "remote exit 5" {
		t.Errorf("err = %v, want remote exit 5\n%s", err, out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
