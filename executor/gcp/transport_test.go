package gcp

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/gce"
	"github.com/deployhook/deployhook/executor/gce/gcetest"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
	"github.com/deployhook/deployhook/executor/oslogin/oslogintest"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// The VM every test deploys to, and the deployer's identity.
const (
	project  = "acme-prod"
	zone     = "us-central1-a"
	instance = "dagster"
	vmID     = uint64(7394028471928374651)
	account  = "deployhook@acme-prod.iam.gserviceaccount.com"
	token    = "ya29.gcp-test-token"
)

// rig is a VM behind the fake relay, with the fake Compute API (which is
// also the token endpoint of the deployer's key) and the fake OS Login.
type rig struct {
	sshd    *sshdtest.Server
	relay   *iaptest.Relay
	compute *gcetest.Server
	osLogin *oslogintest.Server
	google  *Google
	dir     string
}

// newRig starts a real sshd reachable only through the relay, publishes its
// host key in the instance's guest attributes, and makes the Google clients
// from a service account key file, as deployhook does.
func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{sshd: sshdtest.Start(t, sshdtest.Options{}), dir: t.TempDir()}
	r.relay = iaptest.NewRelay(t, iaptest.RelayOptions{Tokens: []string{token}, Project: project, Zone: zone,
		Instances: map[string]string{instance: "127.0.0.1"}})
	r.compute = gcetest.NewServer(t, gcetest.Options{Tokens: []string{token}})
	r.compute.SetInstance(gcetest.Instance{Project: project, Zone: zone, Name: instance, ID: vmID,
		Attributes: gcetest.HostKeyAttributes(r.sshd.HostKey.PublicKey())})
	r.osLogin = oslogintest.NewServer(t, oslogintest.Options{Account: account, Tokens: []string{token}})
	r.google = NewGoogle(testLogger(t), GoogleOptions{
		CredentialsFile: r.compute.ServiceAccountKey(t, r.dir, account),
		ComputeEndpoint: r.compute.URL(), OSLoginEndpoint: r.osLogin.URL(),
	})
	t.Cleanup(func() { r.google.Close() })
	return r
}

// options are the transport's options for the rig's VM: host keys from guest
// attributes, the sshd's client key.
func (r *rig) options(t *testing.T) Options {
	_, port, err := net.SplitHostPort(r.sshd.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Options{
		Target: "production", Project: project, Zone: zone, Instance: instance, Port: p,
		IAPEndpoint:     r.relay.URL(),
		SSH:             remote.SSHOptions{User: r.sshd.User, PrivateKey: r.sshd.ClientPEM, HandshakeTimeout: 20 * time.Second},
		GuestAttributes: true,
		Clients:         r.google,
	}
}

func newTransport(t *testing.T, opts Options) *Transport {
	t.Helper()
	tr, err := New(testLogger(t), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run runs script in sess and returns its output, failing the test on an
// error or a non-zero exit.
func run(t *testing.T, sess executor.Session, script string) string {
	t.Helper()
	var out strings.Builder
	code, err := sess.Run(t.Context(), executor.Command{Name: "test", Run: script, Timeout: 30 * time.Second}, &out)
	if err != nil || code != 0 {
		t.Fatalf("run %q: exit %d, %v\n%s", script, code, err, out.String())
	}
	return out.String()
}

// A session runs commands on the real sshd through the relay, and every Open
// looks the instance up exactly once (package main's transport looked it up
// up to four times around a deploy and its checks).
func TestTransport_Open(t *testing.T) {
	r := newRig(t)
	tr := newTransport(t, r.options(t))
	for i := range 2 {
		sess, err := tr.Open(t.Context(), "production", "", 0)
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		if got := run(t, sess, "echo through iap as $(id -un)"); got != "through iap as "+r.sshd.User+"\n" {
			t.Errorf("output %q", got)
		}
		if err := sess.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if got := r.compute.Count(gcetest.OpGet); got != i+1 {
			t.Errorf("after %d Open(s): %d instance lookups, want %d", i+1, got, i+1)
		}
	}
	if got := r.compute.Count(gcetest.OpGetGuestAttributes); got != 2 {
		t.Errorf("%d guest attribute reads, want one per Open", got)
	}
	if got := r.relay.Stats().Connects; got != 2 {
		t.Errorf("%d tunnels, want one per Open", got)
	}
	if got := r.compute.Scopes(); !slices.Equal(got, []string{cloudPlatformScope}) {
		t.Errorf("token scopes %v, want cloud-platform", got)
	}
	for _, req := range r.compute.Requests() {
		if req.Auth != "Bearer "+token {
			t.Errorf("%s %s: Authorization %q", req.Method, req.URI, req.Auth)
		}
	}
}

// line is a known_hosts line pinning k under hosts.
func line(hosts string, k ssh.PublicKey) string {
	return hosts + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func newKey(t *testing.T) ssh.PublicKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

// The host keys pinned come from the strategy New chose, by instance ID, and
// a VM whose key is not pinned is refused before anything runs on it.
func TestTransport_hostKeys(t *testing.T) {
	other := newKey(t)
	tests := []struct {
		name       string
		knownHosts func(host ssh.PublicKey) string // "" for none
		hostKeys   func(host ssh.PublicKey) []ssh.PublicKey
		guestAttrs bool
		published  func(host ssh.PublicKey) []ssh.PublicKey
		wantAttrs  int    // guest attribute reads
		wantErr    string // "" to connect
		wantIs     error
	}{
		{
			name: "guest attributes", guestAttrs: true,
			published: func(h ssh.PublicKey) []ssh.PublicKey { return []ssh.PublicKey{h} },
			wantAttrs: 1,
		},
		{
			name: "guest attributes publish another key", guestAttrs: true,
			published: func(ssh.PublicKey) []ssh.PublicKey { return []ssh.PublicKey{other} },
			wantAttrs: 1, wantErr: "host key of compute.7394028471928374651 is not pinned",
		},
		{
			name: "known_hosts pin for the ID wins; guest attributes not read", guestAttrs: true,
			knownHosts: func(h ssh.PublicKey) string { return line("compute.7394028471928374651", h) },
			published:  func(ssh.PublicKey) []ssh.PublicKey { return []ssh.PublicKey{other} },
		},
		{
			name:       "known_hosts pin alone",
			knownHosts: func(h ssh.PublicKey) string { return line("compute.7394028471928374651", h) },
		},
		{
			name:       "recreated VM: the pin is for the old ID",
			knownHosts: func(h ssh.PublicKey) string { return line("compute.1111", h) },
			published:  func(h ssh.PublicKey) []ssh.PublicKey { return []ssh.PublicKey{h} },
			wantErr:    "no host key pinned for compute.7394028471928374651 in ssh.known_hosts_file",
		},
		{
			name: "recreated VM: old pin ignored, new guest attributes used", guestAttrs: true,
			knownHosts: func(h ssh.PublicKey) string { return line("compute.1111", other) },
			published:  func(h ssh.PublicKey) []ssh.PublicKey { return []ssh.PublicKey{h} },
			wantAttrs:  1,
		},
		{
			name: "no keys anywhere", guestAttrs: true,
			wantAttrs: 1, wantErr: `instance "dagster" in project "acme-prod" zone "us-central1-a": no host key for instance id 7394028471928374651`,
			wantIs: gce.ErrNoHostKeys,
		},
		{
			name:      "ssh.host_keys whatever the ID; guest attributes not read",
			hostKeys:  func(h ssh.PublicKey) []ssh.PublicKey { return []ssh.PublicKey{h} },
			published: func(ssh.PublicKey) []ssh.PublicKey { return []ssh.PublicKey{other} }, guestAttrs: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			host := r.sshd.HostKey.PublicKey()
			var published []ssh.PublicKey
			if tt.published != nil {
				published = tt.published(host)
			}
			r.compute.Update(project, zone, instance, func(i *gcetest.Instance) {
				i.Attributes = gcetest.HostKeyAttributes(published...)
			})
			opts := r.options(t)
			opts.GuestAttributes = tt.guestAttrs
			if tt.knownHosts != nil {
				opts.SSH.KnownHostsFile = filepath.Join(r.dir, "known_hosts")
				if err := os.WriteFile(opts.SSH.KnownHostsFile, []byte(tt.knownHosts(host)+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.hostKeys != nil {
				opts.SSH.HostKeys = tt.hostKeys(host)
			}
			tr := newTransport(t, opts)
			sess, err := tr.Open(t.Context(), "production", "", 0)
			if got := r.compute.Count(gcetest.OpGetGuestAttributes); got != tt.wantAttrs {
				t.Errorf("%d guest attribute reads, want %d", got, tt.wantAttrs)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if got := run(t, sess, "echo pinned"); got != "pinned\n" {
					t.Errorf("output %q", got)
				}
				sess.Close()
				return
			}
			if err == nil {
				sess.Close()
				t.Fatal("Open connected, want a refusal")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open error %q, want it to say %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Open error %v does not wrap %v", err, tt.wantIs)
			}
		})
	}
}

// A VM that is not RUNNING fails Open at once, naming its status, before any
// host key is read or tunnel opened.
func TestTransport_Open_notRunning(t *testing.T) {
	r := newRig(t)
	r.compute.Update(project, zone, instance, func(i *gcetest.Instance) { i.Status = "TERMINATED" })
	tr := newTransport(t, r.options(t))
	_, err := tr.Open(t.Context(), "production", "", 0)
	if !errors.Is(err, gce.ErrNotRunning) || !strings.Contains(err.Error(), `"dagster" (id 7394028471928374651) is TERMINATED, not RUNNING: the VM is stopped`) {
		t.Fatalf("Open = %v, want ErrNotRunning naming TERMINATED", err)
	}
	if n := r.relay.Stats().Connects; n != 0 {
		t.Errorf("%d tunnels to a stopped VM", n)
	}
	if n := r.compute.Count(gcetest.OpGetGuestAttributes); n != 0 {
		t.Errorf("%d guest attribute reads for a stopped VM", n)
	}
	if n := r.compute.Count(gcetest.OpGet); n != 1 {
		t.Errorf("%d instance lookups, want 1", n)
	}
}

// osLoginRig is the rig with OS Login in charge of the sshd's authorized keys:
// only the keys in the profile can log in, as the user the profile names.
func osLoginRig(t *testing.T) (*rig, Options) {
	r := newRig(t)
	r.osLogin = oslogintest.NewServer(t, oslogintest.Options{
		Account: account, Tokens: []string{token},
		Accounts:           []oslogintest.PosixAccount{{Username: r.sshd.User, UID: 2147483649, Primary: true}},
		AuthorizedKeysFile: filepath.Join(r.sshd.Dir, "authorized_keys"),
	})
	r.google = NewGoogle(testLogger(t), GoogleOptions{
		CredentialsFile: filepath.Join(r.dir, "service-account.json"),
		ComputeEndpoint: r.compute.URL(), OSLoginEndpoint: r.osLogin.URL(),
	})
	t.Cleanup(func() { r.google.Close() })
	opts := r.options(t)
	opts.OSLogin = true
	opts.SSH.User, opts.SSH.PrivateKey = "", nil
	return r, opts
}

// With OSLogin a session logs in with a key imported for it, valid 10
// minutes, for the VM's region; the key is deleted when the session closes,
// and Transport.Close waits for that deletion.
func TestTransport_OSLogin(t *testing.T) {
	r, opts := osLoginRig(t)
	tr, err := New(testLogger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	sess, err := tr.Open(t.Context(), "production", "", 0)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := run(t, sess, "id -un"); got != r.sshd.User+"\n" {
		t.Errorf("logged in as %q, want the OS Login user %q", got, r.sshd.User)
	}
	imports := r.osLogin.Imports()
	if len(imports) != 1 {
		t.Fatalf("%d imports, want 1", len(imports))
	}
	imp := imports[0]
	if imp.Project != project || !slices.Equal(imp.Regions, []string{"us-central1"}) {
		t.Errorf("import for project %q regions %q, want %s [us-central1]", imp.Project, imp.Regions, project)
	}
	if imp.Expires.Before(before.Add(keyTTL)) || imp.Expires.After(time.Now().Add(keyTTL)) {
		t.Errorf("key expires %v, want 10 minutes from the Open (%v)", imp.Expires, before)
	}
	if got := r.osLogin.Keys(); !slices.Equal(got, []string{imp.Fingerprint}) {
		t.Errorf("profile keys during the session %q, want the imported one", got)
	}
	if err := sess.Close(); err != nil {
		t.Errorf("session Close: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := r.osLogin.Deleted(); !slices.Equal(got, []string{imp.Fingerprint}) {
		t.Errorf("deleted %q once Close returned, want the imported key", got)
	}
	if got := r.osLogin.Keys(); len(got) != 0 {
		t.Errorf("profile keys after Close %q, want none", got)
	}
	if _, err := tr.Open(t.Context(), "production", "", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close = %v, want ErrClosed", err)
	}
}

// A key imported for a connection that then fails is deleted too.
func TestTransport_OSLogin_connectFails(t *testing.T) {
	r, opts := osLoginRig(t)
	r.compute.Update(project, zone, instance, func(i *gcetest.Instance) {
		i.Attributes = gcetest.HostKeyAttributes(newKey(t)) // not the sshd's key
	})
	tr, err := New(testLogger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	var hk *remote.HostKeyError
	if _, err := tr.Open(t.Context(), "production", "", 0); !errors.As(err, &hk) {
		t.Fatalf("Open = %v, want a HostKeyError", err)
	}
	tr.Close()
	imports := r.osLogin.Imports()
	if len(imports) != 1 || !slices.Equal(r.osLogin.Deleted(), []string{imports[0].Fingerprint}) {
		t.Errorf("imports %+v, deleted %q: want the one key deleted", imports, r.osLogin.Deleted())
	}
}

// A 403 from OS Login fails Open with the roles to grant, before any tunnel.
func TestTransport_OSLogin_denied(t *testing.T) {
	r, opts := osLoginRig(t)
	r.osLogin.Inject(oslogintest.Fault{Op: oslogintest.OpImport, Status: 403})
	tr := newTransport(t, opts)
	_, err := tr.Open(t.Context(), "production", "", 0)
	if err == nil || !strings.Contains(err.Error(), "roles/compute.osAdminLogin") || !strings.Contains(err.Error(), "roles/iam.serviceAccountUser") {
		t.Fatalf("Open = %v, want the roles to grant", err)
	}
	if n := r.relay.Stats().Connects; n != 0 {
		t.Errorf("%d tunnels without a key", n)
	}
}

// Check says, line by line, what works before SSH, with one instance lookup.
func TestTransport_Check(t *testing.T) {
	r := newRig(t)
	tr := newTransport(t, r.options(t))
	got := tr.Check(t.Context())
	port := strconv.Itoa(r.options(t).Port)
	want := []Check{
		{What: "Google access token obtained"},
		{What: "instance dagster", Detail: "RUNNING"},
		{What: "IAP tunnel to port " + port},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Check = %+v, want %+v", got, want)
	}
	if n := r.compute.Count(gcetest.OpGet); n != 1 {
		t.Errorf("%d instance lookups, want 1", n)
	}

	r.compute.Update(project, zone, instance, func(i *gcetest.Instance) { i.Status = "STOPPING" })
	got = tr.Check(t.Context())
	if len(got) != 2 || got[1].What != "instance dagster" || got[1].Detail != "STOPPING" || !errors.Is(got[1].Err, gce.ErrNotRunning) {
		t.Errorf("Check of a stopping VM = %+v, want it to stop at the instance", got)
	}
	if n := r.relay.Stats().Connects; n != 1 {
		t.Errorf("%d tunnels, want only the first check's", n)
	}
}

// DialTunnel forwards bytes to the VM's port: an SSH handshake goes through.
func TestTransport_DialTunnel(t *testing.T) {
	r := newRig(t)
	tr := newTransport(t, r.options(t))
	conn, err := tr.DialTunnel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, chans, reqs, err := ssh.NewClientConn(conn, "vm", &ssh.ClientConfig{
		User: r.sshd.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(r.sshd.ClientKey)},
		HostKeyCallback: ssh.FixedHostKey(r.sshd.HostKey.PublicKey()),
	})
	if err != nil {
		t.Fatalf("ssh through the tunnel: %v", err)
	}
	ssh.NewClient(c, chans, reqs).Close()
}

func TestNew_errors(t *testing.T) {
	r := newRig(t)
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no clients", func(o *Options) { o.Clients = nil }, "no Google clients"},
		{"no instance", func(o *Options) { o.Instance = "" }, "set the VM's project, zone and instance"},
		{"address set", func(o *Options) { o.SSH.Addr = "10.0.0.1:22" }, "the transport's to set"},
		{"no pin", func(o *Options) { o.GuestAttributes = false }, "no host key pin"},
		{"unreadable known_hosts", func(o *Options) { o.SSH.KnownHostsFile = filepath.Join(r.dir, "missing") }, "read ssh.known_hosts_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := r.options(t)
			tt.edit(&opts)
			if _, err := New(testLogger(t), opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
