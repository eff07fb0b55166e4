package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/metadata"
	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/gce"
	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/executor/oslogin"
	"github.com/deployhook/deployhook/executor/remote"
)

// cloudPlatformScope is the OAuth scope the IAP relay and the Compute API need
// (IAP-PROTOCOL.md §8).
const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// transports is the executor's Transport: it opens each target's session with the
// transport its configuration names.
type transports struct {
	lg     *slog.Logger
	cfg    *config.Config
	byName map[string]executor.Transport
	iaps   map[string]*iapTransport

	mu      sync.Mutex
	google  *googleClients // made on first use: only iap targets need credentials
	osLogin *osLogin       // made on first use: only oslogin targets need it

	deletes sync.WaitGroup // best-effort deletions of OS Login keys; Close waits
}

func newTransports(ctx context.Context, lg *slog.Logger, cfg *config.Config) (*transports, error) {
	ts := &transports{lg: lg, cfg: cfg, byName: map[string]executor.Transport{}, iaps: map[string]*iapTransport{}}
	for _, t := range cfg.Targets {
		tlg := lg.With("target", t.Name)
		switch t.Transport {
		case "local":
			ts.byName[t.Name] = remote.NewLocal(tlg, remote.LocalOptions{})
		case "ssh":
			opts, err := sshOptions(cfg, t)
			if err != nil {
				return nil, err
			}
			opts.Addr = t.SSH.Address
			tr, err := remote.NewSSH(tlg, opts)
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", t.Name, err)
			}
			ts.byName[t.Name] = tr
		case "iap":
			x := &iapTransport{lg: tlg, ts: ts, t: t}
			if t.SSH.KnownHostsFile != "" {
				b, err := os.ReadFile(t.SSH.KnownHostsFile)
				if err != nil {
					return nil, fmt.Errorf("target %s: read ssh.known_hosts_file: %w", t.Name, err)
				}
				if x.pins, err = gce.ParsePins(b); err != nil {
					return nil, fmt.Errorf("target %s: ssh.known_hosts_file: %w", t.Name, err)
				}
			}
			for _, k := range t.SSH.HostKeys {
				pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
				if err != nil {
					return nil, fmt.Errorf("target %s: ssh.host_keys: %q: %w", t.Name, k, err)
				}
				x.keys = append(x.keys, pk)
			}
			ts.byName[t.Name] = x
			ts.iaps[t.Name] = x
		}
	}
	return ts, nil
}

// Open implements executor.Transport.
func (ts *transports) Open(ctx context.Context, target, lock string, wait time.Duration) (executor.Session, error) {
	tr := ts.byName[target]
	if tr == nil {
		return nil, fmt.Errorf("no transport for target %q", target)
	}
	return tr.Open(ctx, target, lock, wait)
}

// Close waits for the deletions of OS Login keys still running, then releases
// the Google clients.
func (ts *transports) Close() {
	ts.deletes.Wait()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.google != nil {
		ts.google.compute.Close()
	}
	if ts.osLogin != nil {
		ts.osLogin.client.Close()
	}
}

// googleClients are what iap targets need: credentials and the Compute API.
type googleClients struct {
	creds   *google.Credentials
	tokens  oauth2.TokenSource
	compute *gce.Client
}

// osLogin is what oslogin targets need: the OS Login API and the account whose
// profile takes the keys.
type osLogin struct {
	client  *oslogin.Client
	account string
}

// osLoginAPI returns the OS Login client and the deployer's account, made on
// first use.
func (ts *transports) osLoginAPI(ctx context.Context) (*osLogin, error) {
	g, err := ts.googleAPIs(ctx)
	if err != nil {
		return nil, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.osLogin != nil {
		return ts.osLogin, nil
	}
	account, err := serviceAccountEmail(ctx, g.creds)
	if err != nil {
		return nil, err
	}
	c, err := oslogin.New(ctx, ts.lg, oslogin.Options{
		Endpoint:      ts.cfg.OSLoginURL,
		ClientOptions: []option.ClientOption{option.WithTokenSource(g.tokens)},
	})
	if err != nil {
		return nil, err
	}
	ts.osLogin = &osLogin{client: c, account: account}
	return ts.osLogin, nil
}

// serviceAccountEmail returns the email of the service account creds act as:
// the client_email of a key file, the account an impersonating credentials file
// names, or, without a file, the VM's default service account from the
// metadata server.
func serviceAccountEmail(ctx context.Context, creds *google.Credentials) (string, error) {
	if len(creds.JSON) > 0 {
		var f struct {
			ClientEmail      string `json:"client_email"`
			ImpersonationURL string `json:"service_account_impersonation_url"`
		}
		_ = json.Unmarshal(creds.JSON, &f) // the credentials were parsed already
		if f.ClientEmail != "" {
			return f.ClientEmail, nil
		}
		if _, rest, ok := strings.Cut(f.ImpersonationURL, "/serviceAccounts/"); ok {
			if email, _, ok := strings.Cut(rest, ":generateAccessToken"); ok && email != "" {
				return email, nil
			}
		}
		return "", errors.New("ssh.oslogin: the Google credentials name no service account (no client_email): set GOOGLE_APPLICATION_CREDENTIALS to a service account key file")
	}
	if metadata.OnGCEWithContext(ctx) {
		email, err := metadata.EmailWithContext(ctx, "default")
		if err != nil {
			return "", fmt.Errorf("ssh.oslogin: read the VM's service account from the metadata server: %w", err)
		}
		return email, nil
	}
	return "", errors.New("ssh.oslogin: no service account to import keys for: set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run on Google Cloud with a service account")
}

// googleAPIs returns the Google clients, made from Application Default
// Credentials on first use.
func (ts *transports) googleAPIs(ctx context.Context) (*googleClients, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.google != nil {
		return ts.google, nil
	}
	creds, err := googleCredentials(ctx, ts.cfg.GoogleCredentials)
	if err != nil {
		return nil, err
	}
	compute, err := gce.New(ctx, ts.lg, gce.Options{
		Endpoint:      ts.cfg.ComputeURL,
		ClientOptions: []option.ClientOption{option.WithTokenSource(creds.TokenSource)},
	})
	if err != nil {
		return nil, err
	}
	ts.google = &googleClients{creds: creds, tokens: creds.TokenSource, compute: compute}
	return ts.google, nil
}

// googleCredentials returns Application Default Credentials with the
// cloud-platform scope: the JSON file GOOGLE_APPLICATION_CREDENTIALS names
// (whose own token_uri is honoured), else the other ADC sources.
func googleCredentials(ctx context.Context, file string) (*google.Credentials, error) {
	if file == "" {
		creds, err := google.FindDefaultCredentials(ctx, cloudPlatformScope)
		if err != nil {
			return nil, fmt.Errorf("google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run on Google Cloud: %w", err)
		}
		return creds, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read GOOGLE_APPLICATION_CREDENTIALS: %w", err)
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("GOOGLE_APPLICATION_CREDENTIALS is not a credentials JSON file: %w", err)
	}
	// The type is checked against the known kinds, so a file of an unexpected
	// kind cannot make deployhook fetch or run what it names.
	switch t := google.CredentialsType(head.Type); t {
	case google.ServiceAccount, google.ExternalAccount, google.AuthorizedUser, google.ImpersonatedServiceAccount:
		creds, err := google.CredentialsFromJSONWithType(ctx, b, t, cloudPlatformScope)
		if err != nil {
			return nil, fmt.Errorf("GOOGLE_APPLICATION_CREDENTIALS: %w", err)
		}
		return creds, nil
	default:
		return nil, fmt.Errorf("GOOGLE_APPLICATION_CREDENTIALS: credentials of type %q are not supported (use a service account key)", head.Type)
	}
}

// sshOptions are the SSH settings shared by the ssh and iap transports.
func sshOptions(cfg *config.Config, t config.Target) (remote.SSHOptions, error) {
	opts := remote.SSHOptions{
		User:             t.SSH.User,
		PrivateKeyFile:   t.SSH.PrivateKeyFile,
		Passphrase:       cfg.SSHPassphrase,
		CertificateFile:  t.SSH.CertificateFile,
		KnownHostsFile:   t.SSH.KnownHostsFile,
		HandshakeTimeout: time.Duration(t.SSH.Timeout),
		KeepAlive:        time.Duration(t.SSH.KeepAlive),
		Target:           t.Name,
	}
	if opts.PrivateKeyFile == "" {
		opts.PrivateKey = cfg.SSHKey
	}
	for _, k := range t.SSH.HostKeys {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return opts, fmt.Errorf("target %s: ssh.host_keys: %q: %w", t.Name, k, err)
		}
		opts.HostKeys = append(opts.HostKeys, pk)
	}
	return opts, nil
}

// iapTransport reaches a VM through Identity-Aware Proxy: on every Open it looks
// the instance up (a VM that is not RUNNING fails fast), selects the host keys to
// pin for its numeric ID, and runs SSH over a fresh IAP tunnel.
type iapTransport struct {
	lg   *slog.Logger
	ts   *transports
	t    config.Target
	pins gce.Pins        // from ssh.known_hosts_file, keyed by compute.<id>
	keys []ssh.PublicKey // ssh.host_keys: pinned whatever the instance ID
}

// osLoginKeyTTL is how long an OS Login key is valid. sshd needs the key only
// while it authenticates the connection, seconds after the key is made (a
// session keeps its one connection for the whole deploy, lock wait included),
// so the expiry only bounds the life of a key whose deletion failed; 10
// minutes leaves room for a slow import and clock skew.
const osLoginKeyTTL = 10 * time.Minute

// osLoginDeleteTimeout bounds the deletion of a key after a deploy.
const osLoginDeleteTimeout = 10 * time.Second

// Open implements executor.Transport. With ssh.oslogin, every session logs in
// with a key of its own, deleted from the OS Login profile when the session is
// closed.
func (x *iapTransport) Open(ctx context.Context, target, lock string, wait time.Duration) (executor.Session, error) {
	tr, key, err := x.dial(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := tr.Open(ctx, target, lock, wait)
	if key.Fingerprint == "" {
		return sess, err
	}
	del := func() { x.deleteKey(context.WithoutCancel(ctx), key) }
	if err != nil {
		del()
		return nil, err
	}
	return &keyedSession{Session: sess, deleteKey: del}, nil
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

// deleteKey deletes key from the OS Login profile in the background, so that
// the deploy's result never waits for it; transports.Close waits. A failure is
// logged: the key expires anyway.
func (x *iapTransport) deleteKey(ctx context.Context, key oslogin.Key) {
	x.ts.mu.Lock()
	ol := x.ts.osLogin // set: a key was made with it
	x.ts.mu.Unlock()
	x.ts.deletes.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, osLoginDeleteTimeout)
		defer cancel()
		if err := ol.client.Delete(ctx, ol.account, key.Fingerprint); err != nil {
			x.lg.Warn("delete the deploy's os login key; it expires by itself", "err", err, "expires", key.Expires)
			return
		}
		x.lg.Debug("deleted the deploy's os login key", "fingerprint", key.Fingerprint)
	})
}

// dial resolves the VM and returns an SSH transport that dials it through IAP,
// and with ssh.oslogin the key it logs in with.
func (x *iapTransport) dial(ctx context.Context) (*remote.SSH, oslogin.Key, error) {
	var key oslogin.Key
	g, err := x.ts.googleAPIs(ctx)
	if err != nil {
		return nil, key, err
	}
	vm := x.t.VM
	var inst gce.Instance
	var keys []ssh.PublicKey
	switch {
	case len(x.keys) > 0:
		if inst, err = g.compute.Instance(ctx, vm.Project, vm.Zone, vm.Instance); err == nil {
			err = inst.Running()
		}
		keys = x.keys
	case !*x.t.SSH.GuestAttributes:
		if inst, err = g.compute.Instance(ctx, vm.Project, vm.Zone, vm.Instance); err == nil {
			err = inst.Running()
		}
		if keys = x.pins.For(inst.ID); err == nil && len(keys) == 0 {
			err = fmt.Errorf("no host key pinned for %s in ssh.known_hosts_file (the VM may have been recreated: its ID changed); refusing to connect", gce.HostKeyAlias(inst.ID))
		}
	default:
		var tg gce.Target
		if tg, err = g.compute.Target(ctx, vm.Project, vm.Zone, vm.Instance, x.pins); err == nil {
			inst, keys = tg.Instance, tg.HostKeys
		}
	}
	if err != nil {
		return nil, key, err
	}
	nic := vm.Interface
	if nic == "" {
		nic = inst.NIC
	}
	opts, err := sshOptions(x.ts.cfg, x.t)
	if err != nil {
		return nil, key, err
	}
	opts.KnownHostsFile = "" // known_hosts pins were selected by instance ID above
	opts.HostKeys = keys
	opts.HostKeyAlias = gce.HostKeyAlias(inst.ID)
	iopts := iap.Options{
		Endpoint: x.ts.cfg.IAPURL, Project: vm.Project, Zone: vm.Zone, Instance: vm.Instance,
		Interface: nic, Port: vm.Port, TokenSource: g.tokens,
	}
	opts.Dial = func(ctx context.Context) (net.Conn, error) {
		return iap.Dial(ctx, x.lg, iopts)
	}
	if x.t.SSH.OSLogin {
		ol, err := x.ts.osLoginAPI(ctx)
		if err != nil {
			return nil, key, err
		}
		if key, err = ol.client.Key(ctx, ol.account, vm.Project, osLoginKeyTTL, region(vm.Zone)); err != nil {
			return nil, key, err
		}
		opts.User, opts.Signer, opts.PrivateKey = key.User, key.Signer, nil
		x.lg.Debug("imported an os login key", "user", key.User, "fingerprint", key.Fingerprint, "expires", key.Expires)
	}
	tr, err := remote.NewSSH(x.lg, opts)
	if err != nil && key.Fingerprint != "" {
		x.deleteKey(context.WithoutCancel(ctx), key)
		key = oslogin.Key{}
	}
	return tr, key, err
}

// region is the region of a zone: us-central1 of us-central1-a.
func region(zone string) string {
	if i := strings.LastIndexByte(zone, '-'); i > 0 {
		return zone[:i]
	}
	return zone
}

// dialTunnel opens one IAP tunnel to the target's VM port (deployhook tunnel).
func (x *iapTransport) dialTunnel(ctx context.Context) (net.Conn, error) {
	g, err := x.ts.googleAPIs(ctx)
	if err != nil {
		return nil, err
	}
	vm := x.t.VM
	nic := vm.Interface
	if nic == "" {
		inst, err := g.compute.Instance(ctx, vm.Project, vm.Zone, vm.Instance)
		if err != nil {
			return nil, err
		}
		if err := inst.Running(); err != nil {
			return nil, err
		}
		nic = inst.NIC
	}
	return iap.Dial(ctx, x.lg, iap.Options{
		Endpoint: x.ts.cfg.IAPURL, Project: vm.Project, Zone: vm.Zone, Instance: vm.Instance,
		Interface: nic, Port: vm.Port, TokenSource: g.tokens,
	})
}

// check is one line of deployhook check.
type check struct {
	what   string
	detail string
	err    error
}

// checks opens a session on t the way a deploy does and runs harmless commands:
// the tunnel and SSH handshake with a pinned key, and sudo without a password.
func (ts *transports) checks(ctx context.Context, t config.Target) []check {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var out []check
	if x := ts.iaps[t.Name]; x != nil {
		g, err := ts.googleAPIs(ctx)
		if err != nil {
			return append(out, check{what: "Google credentials", err: err})
		}
		if _, err := g.tokens.Token(); err != nil {
			return append(out, check{what: "Google access token", err: err})
		}
		out = append(out, check{what: "Google access token obtained"})
		inst, err := g.compute.Instance(ctx, t.VM.Project, t.VM.Zone, t.VM.Instance)
		if err == nil {
			err = inst.Running()
		}
		out = append(out, check{what: "instance " + t.VM.Instance, detail: inst.Status, err: err})
		if err != nil {
			return out
		}
		c, err := x.dialTunnel(ctx)
		if err == nil {
			c.Close()
		}
		out = append(out, check{what: "IAP tunnel to port " + fmt.Sprint(t.VM.Port), err: err})
		if err != nil {
			return out
		}
	}
	sess, err := ts.Open(ctx, t.Name, "", 0)
	out = append(out, check{what: "session (" + t.Transport + ")", err: err})
	if err != nil {
		return out
	}
	defer sess.Close()
	var buf strings.Builder
	code, err := sess.Run(ctx, executor.Command{Name: "check", Run: "id -un", Timeout: 30 * time.Second}, &buf)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit %d", code)
	}
	out = append(out, check{what: "run a command", detail: "as " + strings.TrimSpace(buf.String()), err: err})
	if t.Transport != "local" {
		buf.Reset()
		code, err = sess.Run(ctx, executor.Command{Name: "check sudo", Run: "true", Sudo: true, Timeout: 30 * time.Second}, &buf)
		if err == nil && code != 0 {
			err = errors.New("sudo -n true failed: the login user needs passwordless sudo for systemctl (" + strings.TrimSpace(buf.String()) + ")")
		}
		out = append(out, check{what: "sudo -n without a password", err: err})
	}
	if t.AppUser != "" && t.Transport != "local" {
		buf.Reset()
		code, err = sess.Run(ctx, executor.Command{Name: "check app user", Run: "git rev-parse HEAD", User: t.AppUser, Dir: t.AppDir, Timeout: 30 * time.Second}, &buf)
		if err == nil && code != 0 {
			err = fmt.Errorf("git rev-parse HEAD as %s in %s failed: %s", t.AppUser, t.AppDir, strings.TrimSpace(buf.String()))
		}
		out = append(out, check{what: "checkout " + t.AppDir + " as " + t.AppUser, detail: strings.TrimSpace(buf.String()), err: err})
	}
	return out
}
