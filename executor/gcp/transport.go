package gcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/gce"
	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/executor/oslogin"
	"github.com/deployhook/deployhook/executor/remote"
)

// Compute is the part of the Compute Engine API a Transport calls;
// *gce.Client implements it.
type Compute interface {
	// Instance reads the instance: numeric ID, status and first interface.
	Instance(ctx context.Context, project, zone, name string) (gce.Instance, error)
	// HostKeys reads the host keys the instance's guest agent published; an
	// error wrapping gce.ErrNoHostKeys when there are none.
	HostKeys(ctx context.Context, project, zone, name string) ([]ssh.PublicKey, error)
}

// OSLogin is the part of the OS Login API a Transport calls, for the
// deployer's account.
type OSLogin interface {
	// Key makes a key, imports it into the account's profile for project,
	// valid for ttl, and returns it with the POSIX user of the login profile.
	Key(ctx context.Context, project string, ttl time.Duration, regions ...string) (oslogin.Key, error)
	// Delete removes the key with fingerprint from the profile.
	Delete(ctx context.Context, fingerprint string) error
}

// Clients gives a Transport its Google clients when it first needs them, so
// that only a deploy to an iap target needs Google credentials. *Google
// implements it. The methods are called concurrently.
type Clients interface {
	// Compute returns the Compute Engine API and the token source of the
	// deployer's identity, which the IAP relay also takes.
	Compute(ctx context.Context) (Compute, oauth2.TokenSource, error)
	// OSLogin returns the OS Login API for the deployer's account.
	OSLogin(ctx context.Context) (OSLogin, error)
}

// Options configures a Transport for one target.
type Options struct {
	// Target names the target in logs and errors.
	Target string
	// Project, Zone and Instance name the VM; required.
	Project, Zone, Instance string
	// Interface is the network interface the tunnel connects to; the
	// instance's first one when empty.
	Interface string
	// Port is the sshd port on the VM; 22 when zero.
	Port int
	// IAPEndpoint overrides the IAP relay's URL (iap.Options.Endpoint).
	IAPEndpoint string
	// IAPObserver, when set, is told about the transport's IAP tunnels
	// (iap.Options.Observer).
	IAPObserver iap.Observer

	// SSH holds the settings of the SSH connection through the tunnel: User
	// and the key (Signer, PrivateKey, PrivateKeyFile, Passphrase,
	// CertificateFile; all unused with OSLogin), HandshakeTimeout, KeepAlive,
	// KillGrace, and the host-key pins: HostKeys are pinned whatever the
	// instance's ID; the lines of KnownHostsFile (read by New) for the alias
	// compute.<id> pin the keys of the instance with that ID. Addr, Dial and
	// HostKeyAlias must be empty: the transport sets them on every connection.
	SSH remote.SSHOptions
	// GuestAttributes pins the host keys the VM's guest agent published in its
	// guest attributes when KnownHostsFile pins none for the instance's ID.
	// Ignored when SSH.HostKeys are set: they win.
	GuestAttributes bool
	// OSLogin logs in with a key made for each connection, imported into the
	// deployer's OS Login profile with a short expiry, as the user OS Login
	// names.
	OSLogin bool

	// Clients gives the transport its Google clients; required.
	Clients Clients
}

// keyTTL is how long an OS Login key is valid. sshd needs the key only while
// it authenticates the connection, seconds after the key is made (a session
// keeps its one connection for the whole deploy, lock wait included), so the
// expiry only bounds the life of a key whose deletion failed; 10 minutes
// leaves room for a slow import and clock skew.
const keyTTL = 10 * time.Minute

// deleteTimeout bounds the deletion of a key after a deploy.
const deleteTimeout = 10 * time.Second

// callTimeout bounds each Compute Engine and OS Login call: the Google
// clients retry 503 and 504 answers until the call's context ends.
const callTimeout = 30 * time.Second

var (
	_ executor.Transport = (*Transport)(nil)
	_ Compute            = (*gce.Client)(nil)
	_ Clients            = (*Google)(nil)
)

// ErrClosed is returned by Open, Client and DialTunnel after Close.
var ErrClosed = errors.New("gcp transport closed")

// Transport is an executor.Transport to one Compute Engine VM through IAP.
// Its methods are safe for concurrent use.
type Transport struct {
	lg       *slog.Logger
	opts     Options
	hostKeys hostKeys // the strategy, chosen by New

	mu      sync.Mutex
	closed  bool
	deletes sync.WaitGroup // background deletions of OS Login keys; Close waits
}

// hostKeys selects the host keys to pin for inst, a RUNNING instance.
type hostKeys func(ctx context.Context, c Compute, inst gce.Instance) ([]ssh.PublicKey, error)

// New checks opts, reads SSH.KnownHostsFile, chooses the host-key strategy
// and returns the transport. It makes no request: a missing credential or
// permission shows on the first Open.
func New(lg *slog.Logger, opts Options) (*Transport, error) {
	switch {
	case lg == nil:
		return nil, errors.New("gcp transport: nil logger")
	case opts.Clients == nil:
		return nil, errors.New("gcp transport: no Google clients")
	case opts.Project == "" || opts.Zone == "" || opts.Instance == "":
		return nil, fmt.Errorf("target %s: set the VM's project, zone and instance", opts.Target)
	case opts.SSH.Addr != "" || opts.SSH.Dial != nil || opts.SSH.HostKeyAlias != "":
		return nil, fmt.Errorf("target %s: the ssh address, dialer and host-key alias are the transport's to set", opts.Target)
	}
	if opts.Port == 0 {
		opts.Port = 22
	}
	if opts.SSH.Target == "" {
		opts.SSH.Target = opts.Target
	}
	var pins gce.Pins
	pinned := opts.SSH.KnownHostsFile != ""
	if pinned {
		b, err := os.ReadFile(opts.SSH.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("target %s: read ssh.known_hosts_file: %w", opts.Target, err)
		}
		if pins, err = gce.ParsePins(b); err != nil {
			return nil, fmt.Errorf("target %s: ssh.known_hosts_file: %w", opts.Target, err)
		}
		opts.SSH.KnownHostsFile = "" // its pins are selected by instance ID
	}
	t := &Transport{lg: lg, opts: opts}
	switch {
	case len(opts.SSH.HostKeys) > 0:
		t.hostKeys = fixedKeys(opts.SSH.HostKeys)
	case opts.GuestAttributes:
		t.hostKeys = t.publishedKeys(pins)
	case !pinned:
		return nil, fmt.Errorf("target %s: no host key pin: set ssh.known_hosts_file or ssh.host_keys, or read them from guest attributes; deployhook never trusts a host key on first use", opts.Target)
	default:
		t.hostKeys = pinnedKeys(pins)
	}
	t.opts.SSH.HostKeys = nil // given to each connection by hostKeys
	return t, nil
}

// fixedKeys pins keys whatever the instance's ID.
func fixedKeys(keys []ssh.PublicKey) hostKeys {
	return func(context.Context, Compute, gce.Instance) ([]ssh.PublicKey, error) { return keys, nil }
}

// pinnedKeys pins the keys configured for the instance's ID, and refuses an
// instance whose ID has none (a VM recreated under the same name).
func pinnedKeys(pins gce.Pins) hostKeys {
	return func(_ context.Context, _ Compute, inst gce.Instance) ([]ssh.PublicKey, error) {
		keys := pins.For(inst.ID)
		if len(keys) == 0 {
			return nil, fmt.Errorf("no host key pinned for %s in ssh.known_hosts_file (the VM may have been recreated: its ID changed); refusing to connect", gce.HostKeyAlias(inst.ID))
		}
		return keys, nil
	}
}

// publishedKeys pins the keys configured for the instance's ID if any, else
// those its guest agent published (read only then); neither is an error
// wrapping gce.ErrNoHostKeys.
func (t *Transport) publishedKeys(pins gce.Pins) hostKeys {
	return func(ctx context.Context, c Compute, inst gce.Instance) ([]ssh.PublicKey, error) {
		o := t.opts
		var published []ssh.PublicKey
		if len(pins.For(inst.ID)) == 0 {
			var err error
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			published, err = c.HostKeys(cctx, o.Project, o.Zone, o.Instance)
			cancel()
			if err != nil && !errors.Is(err, gce.ErrNoHostKeys) {
				return nil, err
			}
		}
		keys, src, err := pins.Select(inst.ID, published)
		if err != nil {
			return nil, fmt.Errorf("instance %q in project %q zone %q: %w", o.Instance, o.Project, o.Zone, err)
		}
		t.lg.Debug("host keys selected", "id", inst.ID, "host_keys", len(keys), "host_keys_from", string(src))
		return keys, nil
	}
}

// Open implements executor.Transport. With OSLogin, the session logs in with a
// key of its own, deleted from the OS Login profile when the session is closed.
func (t *Transport) Open(ctx context.Context, target, lock string, wait time.Duration) (executor.Session, error) {
	tr, key, err := t.connection(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := tr.Open(ctx, target, lock, wait)
	if key.Fingerprint == "" {
		return sess, err
	}
	if err != nil {
		t.deleteKey(key)
		return nil, err
	}
	return &keyedSession{Session: sess, deleteKey: func() { t.deleteKey(key) }}, nil
}

// Client connects as Open does, without a lock, and returns the SSH client
// itself (deployhook ssh). An OS Login key is deleted once the client has
// logged in. The caller closes the client.
func (t *Transport) Client(ctx context.Context) (*ssh.Client, error) {
	tr, key, err := t.connection(ctx)
	if err != nil {
		return nil, err
	}
	c, err := tr.Client(ctx)
	if key.Fingerprint != "" {
		t.deleteKey(key)
	}
	return c, err
}

// DialTunnel opens one IAP tunnel to the VM's port (deployhook tunnel). It
// looks the instance up only to learn its interface, when Options.Interface
// does not name it.
func (t *Transport) DialTunnel(ctx context.Context) (net.Conn, error) {
	if err := t.alive(); err != nil {
		return nil, err
	}
	c, tokens, err := t.opts.Clients.Compute(ctx)
	if err != nil {
		return nil, err
	}
	nic := t.opts.Interface
	if nic == "" {
		inst, err := t.instance(ctx, c)
		if err != nil {
			return nil, err
		}
		nic = inst.NIC
	}
	return iap.Dial(ctx, t.lg, t.iapOptions(nic, tokens))
}

// Close waits for the deletions of OS Login keys still running (each bounded
// by its own deadline); Open, Client and DialTunnel fail after it. The Google
// clients are the caller's to close. Close is safe to call twice.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.deletes.Wait()
	return nil
}

func (t *Transport) alive() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("target %s: %w", t.opts.Target, ErrClosed)
	}
	return nil
}

// instance looks the instance up and checks that it is RUNNING.
func (t *Transport) instance(ctx context.Context, c Compute) (gce.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	inst, err := c.Instance(ctx, t.opts.Project, t.opts.Zone, t.opts.Instance)
	if err != nil {
		return inst, err
	}
	return inst, inst.Running()
}

// connection resolves the VM (one instance lookup) and returns an SSH
// transport that dials it through IAP, and with OSLogin the key it logs in
// with, which the caller must have deleted.
func (t *Transport) connection(ctx context.Context) (*remote.SSH, oslogin.Key, error) {
	var key oslogin.Key
	if err := t.alive(); err != nil {
		return nil, key, err
	}
	c, tokens, err := t.opts.Clients.Compute(ctx)
	if err != nil {
		return nil, key, err
	}
	inst, err := t.instance(ctx, c)
	if err != nil {
		return nil, key, err
	}
	keys, err := t.hostKeys(ctx, c, inst)
	if err != nil {
		return nil, key, err
	}
	nic := t.opts.Interface
	if nic == "" {
		nic = inst.NIC
	}
	t.lg.Info("compute instance resolved", "project", t.opts.Project, "zone", t.opts.Zone, "instance", t.opts.Instance,
		"id", inst.ID, "nic", nic, "host_keys", len(keys))
	opts := t.opts.SSH
	opts.HostKeys = keys
	opts.HostKeyAlias = gce.HostKeyAlias(inst.ID)
	iopts := t.iapOptions(nic, tokens)
	opts.Dial = func(ctx context.Context) (net.Conn, error) { return iap.Dial(ctx, t.lg, iopts) }
	if t.opts.OSLogin {
		ol, err := t.opts.Clients.OSLogin(ctx)
		if err != nil {
			return nil, key, err
		}
		kctx, cancel := context.WithTimeout(ctx, callTimeout)
		key, err = ol.Key(kctx, t.opts.Project, keyTTL, region(t.opts.Zone))
		cancel()
		if err != nil {
			return nil, key, err
		}
		opts.User, opts.Signer, opts.PrivateKey, opts.PrivateKeyFile, opts.CertificateFile = key.User, key.Signer, nil, "", ""
		t.lg.Debug("imported an os login key", "user", key.User, "fingerprint", key.Fingerprint, "expires", key.Expires)
	}
	tr, err := remote.NewSSH(t.lg, opts)
	if err != nil {
		if key.Fingerprint != "" {
			t.deleteKey(key)
		}
		return nil, oslogin.Key{}, err
	}
	return tr, key, nil
}

func (t *Transport) iapOptions(nic string, tokens oauth2.TokenSource) iap.Options {
	o := t.opts
	return iap.Options{Endpoint: o.IAPEndpoint, Project: o.Project, Zone: o.Zone, Instance: o.Instance,
		Interface: nic, Port: o.Port, TokenSource: tokens, Observer: o.IAPObserver}
}

// deleteKey deletes key from the OS Login profile in the background, so that
// the deploy's result never waits for it; Close waits. After Close it deletes
// at once. A failure is logged: the key expires anyway.
func (t *Transport) deleteKey(key oslogin.Key) {
	del := func() {
		ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
		defer cancel()
		ol, err := t.opts.Clients.OSLogin(ctx) // made already: the key was imported with it
		if err == nil {
			err = ol.Delete(ctx, key.Fingerprint)
		}
		if err != nil {
			t.lg.Warn("delete the deploy's os login key; it expires by itself", "err", err, "expires", key.Expires)
			return
		}
		t.lg.Debug("deleted the deploy's os login key", "fingerprint", key.Fingerprint)
	}
	t.mu.Lock()
	closed := t.closed
	if !closed {
		t.deletes.Add(1) // under mu, so never after Close began to wait
	}
	t.mu.Unlock()
	if closed {
		del()
		return
	}
	go func() {
		defer t.deletes.Done()
		del()
	}()
}

// keyedSession is a session that logged in with an OS Login key of its own.
type keyedSession struct {
	executor.Session
	deleteKey func()
	once      sync.Once
}

// Close closes the session and starts the deletion of its key.
func (s *keyedSession) Close() error {
	err := s.Session.Close()
	s.once.Do(s.deleteKey)
	return err
}

// region is the region of a zone: us-central1 of us-central1-a.
func region(zone string) string {
	if i := strings.LastIndexByte(zone, '-'); i > 0 {
		return zone[:i]
	}
	return zone
}

// Check is one line of deployhook check.
type Check struct {
	What   string // what was tried: "instance vm-1"
	Detail string // what was found: "RUNNING"
	Err    error  // nil when it worked
}

// Check tries, in the order a deploy needs them, what the transport needs
// before SSH: an access token, the instance RUNNING (one lookup), and a tunnel
// to the sshd port. It stops at the first failure, which is the last line.
func (t *Transport) Check(ctx context.Context) []Check {
	var out []Check
	c, tokens, err := t.opts.Clients.Compute(ctx)
	if err != nil {
		return append(out, Check{What: "Google credentials", Err: err})
	}
	if _, err := tokens.Token(); err != nil {
		return append(out, Check{What: "Google access token", Err: err})
	}
	out = append(out, Check{What: "Google access token obtained"})
	inst, err := t.instance(ctx, c)
	out = append(out, Check{What: "instance " + t.opts.Instance, Detail: inst.Status, Err: err})
	if err != nil {
		return out
	}
	nic := t.opts.Interface
	if nic == "" {
		nic = inst.NIC
	}
	conn, err := iap.Dial(ctx, t.lg, t.iapOptions(nic, tokens))
	if err == nil {
		conn.Close()
	}
	return append(out, Check{What: "IAP tunnel to port " + strconv.Itoa(t.opts.Port), Err: err})
}
