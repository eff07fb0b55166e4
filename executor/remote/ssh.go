package remote

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/executor"
)

// SSH defaults.
const (
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultKeepAlive        = 15 * time.Second
	DefaultKeepAliveMax     = 3
)

// SSHOptions configures an SSH transport. The key (Signer, PrivateKey or
// PrivateKeyFile) and at least one host key pin (KnownHostsFile or HostKeys) are
// required.
type SSHOptions struct {
	// Addr is host:port of the target's sshd, dialed over TCP when Dial is nil.
	Addr string
	// User is the login user.
	User string
	// Dial opens the byte stream to sshd (the IAP tunnel plugs in here); default: TCP
	// to Addr. The conn must allow a concurrent reader and writer, and Close must
	// unblock both.
	Dial func(ctx context.Context) (net.Conn, error)
	// HostKeyAlias is the name host keys are pinned under in KnownHostsFile (gcloud
	// uses compute.<instance id>) and that logs and errors name; default Addr.
	HostKeyAlias string

	// Signer authenticates the client; when nil, the key is parsed from PrivateKey
	// (PEM bytes, e.g. from the environment) or else read from PrivateKeyFile.
	Signer         ssh.Signer
	PrivateKey     []byte
	PrivateKeyFile string
	// Passphrase decrypts an encrypted private key.
	Passphrase []byte
	// CertificateFile is an optional OpenSSH certificate (id_ed25519-cert.pub) for
	// the key, for sshds that trust a user CA.
	CertificateFile string

	// KnownHostsFile is an OpenSSH known_hosts file; its lines for HostKeyAlias pin
	// the target's host keys.
	KnownHostsFile string
	// HostKeys are more pinned host keys (from the VM's guest attributes).
	HostKeys []ssh.PublicKey

	// HandshakeTimeout bounds dial + SSH handshake + authentication; default
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// KeepAlive is the interval of keepalive@openssh.com requests; default
	// DefaultKeepAlive; negative disables them. After KeepAliveMax intervals without
	// an answer the connection is closed, which fails a running step with a
	// transport error.
	KeepAlive    time.Duration
	KeepAliveMax int
	// KillGrace is the time between SIGTERM and SIGKILL for a step that timed out
	// or was cancelled; default DefaultKillGrace.
	KillGrace time.Duration
	// Target names the target in logs and errors when Open is given no name.
	Target string
}

// SSH is a Transport that runs commands on a target over SSH (x/crypto/ssh), over
// TCP or any net.Conn such as an IAP tunnel. Each Open makes one connection; each
// Run one SSH session. It is safe for concurrent use.
type SSH struct {
	lg     *slog.Logger
	opts   SSHOptions
	config *ssh.ClientConfig
	pins   *pins
}

// NewSSH checks opts, loads the key and the host key pins, and returns the
// transport. It fails when no key or no host key pin is configured: deployhook
// never trusts a host key on first use.
func NewSSH(lg *slog.Logger, opts SSHOptions) (*SSH, error) {
	if opts.HostKeyAlias == "" {
		opts.HostKeyAlias = opts.Addr
	}
	if opts.Dial == nil {
		if opts.Addr == "" {
			return nil, errors.New("ssh transport: set the address (host:port) or a dialer")
		}
		addr := opts.Addr
		opts.Dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if opts.HostKeyAlias == "" {
		return nil, errors.New("ssh transport: set the host key alias the host keys are pinned under")
	}
	if opts.User == "" {
		return nil, fmt.Errorf("ssh transport to %s: set the login user", opts.HostKeyAlias)
	}
	if opts.Target == "" {
		opts.Target = opts.HostKeyAlias
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.KeepAliveMax <= 0 {
		opts.KeepAliveMax = DefaultKeepAliveMax
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	p, err := loadPins(opts.HostKeyAlias, opts.KnownHostsFile, opts.HostKeys)
	if err != nil {
		return nil, fmt.Errorf("ssh transport: %w", err)
	}
	signer, err := loadSigner(opts)
	if err != nil {
		return nil, fmt.Errorf("ssh transport to %s: %w", opts.HostKeyAlias, err)
	}
	return &SSH{
		lg:   lg,
		opts: opts,
		pins: p,
		config: &ssh.ClientConfig{
			User:              opts.User,
			Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback:   p.check,
			HostKeyAlgorithms: p.algorithms(),
		},
	}, nil
}

func loadSigner(opts SSHOptions) (ssh.Signer, error) {
	signer := opts.Signer
	if signer == nil {
		pemBytes := opts.PrivateKey
		if len(pemBytes) == 0 {
			if opts.PrivateKeyFile == "" {
				return nil, errors.New("no private key: set the private key file or the key itself")
			}
			b, err := os.ReadFile(opts.PrivateKeyFile)
			if err != nil {
				return nil, fmt.Errorf("read private key: %w", err)
			}
			pemBytes = b
		}
		var err error
		if len(opts.Passphrase) > 0 {
			signer, err = ssh.ParsePrivateKeyWithPassphrase(pemBytes, opts.Passphrase)
		} else {
			signer, err = ssh.ParsePrivateKey(pemBytes)
		}
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			return nil, errors.New("the private key is encrypted: set its passphrase")
		case errors.Is(err, x509.IncorrectPasswordError):
			return nil, errors.New("decrypt private key: wrong passphrase")
		case err != nil:
			return nil, fmt.Errorf("parse private key: %w", err)
		}
	}
	if opts.CertificateFile == "" {
		return signer, nil
	}
	b, err := os.ReadFile(opts.CertificateFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse certificate %s: %w", opts.CertificateFile, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%s is a public key, not a certificate", opts.CertificateFile)
	}
	cs, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", opts.CertificateFile, err)
	}
	return cs, nil
}

// Open connects to the target, authenticates (the handshake bounded by
// HandshakeTimeout and ctx) and, when lock is not empty, takes the deploy lock on the
// target with flock(1) as the login user, waiting at most lockWait for it and at
// most lockWait again for the processes of an earlier deploy to be gone (see the
// package doc). A relative lock is relative to the login user's home. The lock is a
// session that holds flock while its stdin is open: Close, the connection dying or
// the deployer dying ends it, and with it the lock, once no step process of this
// session is left on the target. Errors: a *HostKeyError when the target's host key
// is not pinned; an error wrapping executor.ErrLocked when a wait ran out; ctx.Err()
// when ctx ended; an error naming the risk when the lock's directory or file is
// unsafe (a symlink, not a regular file, writable by other users).
func (t *SSH) Open(ctx context.Context, target, lock string, lockWait time.Duration) (executor.Session, error) {
	if target == "" {
		target = t.opts.Target
	}
	if lock != "" {
		c, err := cleanLock(lock)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", target, err)
		}
		lock = c
	}
	client, err := t.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", target, err)
	}
	s := newSSHSession(t, target, client)
	if lock != "" {
		if err := s.takeLock(ctx, lock, lockWait); err != nil {
			s.Close()
			return nil, fmt.Errorf("target %s: %w", target, err)
		}
	}
	return s, nil
}

func (t *SSH) connect(ctx context.Context) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, t.opts.HandshakeTimeout)
	defer cancel()
	conn, err := t.opts.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	// ssh.NewClientConn has no timeout of its own: bound it with the conn's deadline,
	// and close the conn when ctx ends first.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, t.opts.HostKeyAlias, t.config)
	if !stop() {
		if c != nil {
			c.Close()
		}
		conn.Close()
		if err == nil || ctx.Err() != nil {
			return nil, fmt.Errorf("ssh handshake: %w", context.Cause(ctx))
		}
	}
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		if strings.Contains(err.Error(), "no common algorithm for host key") {
			// Only the pinned key types are offered: the server has none of them.
			return nil, fmt.Errorf("ssh handshake with %s: the server has no host key of a pinned type (%s); pin its current key: %w",
				t.opts.HostKeyAlias, strings.Join(t.config.HostKeyAlgorithms, ", "), err)
		}
		return nil, err // "ssh: handshake failed: …"
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// syncWriter serializes the writes of the stdout and stderr copiers, and drops
// them once detached.
type syncWriter struct {
	mu       sync.Mutex
	w        io.Writer
	detached bool
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.detached {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *syncWriter) detach() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.detached = true
}

// pidWriter passes a step's stdout on, minus the first line when it is the
// wrapper's pid announcement, whose pid it records.
type pidWriter struct {
	w    io.Writer
	mu   sync.Mutex
	head []byte // the start of the output while the first line is incomplete
	done bool   // the first line has been handled
	p    int
}

func (w *pidWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return w.w.Write(p)
	}
	w.head = append(w.head, p...)
	i := bytes.IndexByte(w.head, '\n')
	if i < 0 && len(w.head) < len(pidAnnounce)+20 {
		return len(p), nil
	}
	w.done = true
	rest := w.head
	if i >= 0 && bytes.HasPrefix(w.head, []byte(pidAnnounce)) {
		if pid, err := strconv.Atoi(string(w.head[len(pidAnnounce):i])); err == nil {
			w.p = pid
			rest = w.head[i+1:]
		}
	}
	w.head = nil
	if len(rest) > 0 {
		if _, err := w.w.Write(rest); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush passes on a partial first line at the end of the output.
func (w *pidWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && len(w.head) > 0 {
		_, _ = w.w.Write(w.head)
	}
	w.done, w.head = true, nil
}

func (w *pidWriter) pid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.p
}

// limitedBuffer keeps the first max bytes and discards the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// signalNumber maps an SSH signal name (RFC 4254 6.10) to its Linux number.
func signalNumber(sig string) int {
	switch ssh.Signal(sig) {
	case ssh.SIGHUP:
		return 1
	case ssh.SIGINT:
		return 2
	case ssh.SIGQUIT:
		return 3
	case ssh.SIGILL:
		return 4
	case ssh.SIGABRT:
		return 6
	case ssh.SIGFPE:
		return 8
	case ssh.SIGKILL:
		return 9
	case ssh.SIGSEGV:
		return 11
	case ssh.SIGPIPE:
		return 13
	case ssh.SIGALRM:
		return 14
	case ssh.SIGTERM:
		return 15
	case ssh.SIGUSR1:
		return 10
	case ssh.SIGUSR2:
		return 12
	}
	return 0
}
