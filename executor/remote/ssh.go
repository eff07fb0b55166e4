package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
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

// lockExitCode is what flock(1) exits with when its wait ran out (-E); 75 is
// EX_TEMPFAIL of sysexits.h, unlike flock's default 1, which a failing shell also
// gives.
const lockExitCode = 75

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
// target with flock(1) as the login user, waiting at most lockWait. The lock is a
// session that holds flock while its stdin is open: Close, the connection dying or
// the deployer dying ends it, and with it the lock. Errors: a *HostKeyError when the
// target's host key is not pinned; an error wrapping executor.ErrLocked when the
// wait ran out; ctx.Err() when ctx ended.
func (t *SSH) Open(ctx context.Context, target, lock string, lockWait time.Duration) (executor.Session, error) {
	if target == "" {
		target = t.opts.Target
	}
	client, conn, err := t.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", target, err)
	}
	s := &sshSession{t: t, target: target, client: client, conn: conn, stop: make(chan struct{}), gone: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = client.Wait()
		close(s.gone)
	}()
	if t.opts.KeepAlive > 0 {
		s.wg.Add(1)
		go s.keepalive(t.opts.KeepAlive, t.opts.KeepAliveMax)
	}
	if lock != "" {
		if err := s.takeLock(ctx, lock, lockWait); err != nil {
			s.Close()
			return nil, fmt.Errorf("target %s: %w", target, err)
		}
	}
	return s, nil
}

func (t *SSH) connect(ctx context.Context) (*ssh.Client, net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.opts.HandshakeTimeout)
	defer cancel()
	conn, err := t.opts.Dial(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
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
			return nil, nil, fmt.Errorf("ssh handshake: %w", context.Cause(ctx))
		}
	}
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, nil, hk
		}
		return nil, nil, fmt.Errorf("ssh handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), conn, nil
}

type sshSession struct {
	t      *SSH
	target string
	client *ssh.Client
	conn   net.Conn
	stop   chan struct{}
	gone   chan struct{} // closed when the connection is gone
	wg     sync.WaitGroup // keepalive and step goroutines

	lockSess  *ssh.Session
	lockStdin io.WriteCloser
	lockDone  chan error

	mu       sync.Mutex
	closed   bool
	deadWhy  string // why the connection was given up, for errors
	closeErr error
}

// takeLock starts the lock session and waits until flock holds the lock.
func (s *sshSession) takeLock(ctx context.Context, lock string, wait time.Duration) error {
	sess, err := s.client.NewSession()
	if err != nil {
		return fmt.Errorf("open lock session: %w", err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return err
	}
	var stderr bytes.Buffer
	sess.Stderr = &limitedBuffer{buf: &stderr, max: 4096}
	q := quote(lock)
	cmd := fmt.Sprintf(`mkdir -p -- "$(dirname -- %s)" && exec flock -E %d -w %s %s sh -c 'echo locked; exec cat >/dev/null'`,
		q, lockExitCode, strings.TrimSuffix(seconds(wait), "s"), q)
	if err := sess.Start(cmd); err != nil {
		sess.Close()
		return fmt.Errorf("start lock session: %w", err)
	}
	s.lockSess, s.lockStdin = sess, stdin
	locked := make(chan bool, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		locked <- line == "locked\n"
		// Drain: nothing more is written; this returns when the session ends.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	s.lockDone = make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.lockDone <- sess.Wait()
	}()
	// flock's own -w bounds the wait; the extra is for the round trips.
	timer := time.NewTimer(wait + s.t.opts.HandshakeTimeout)
	defer timer.Stop()
	select {
	case ok := <-locked:
		if ok {
			s.t.lg.Debug("deploy lock taken", "target", s.target, "lock", lock)
			return nil
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("take lock %s: no answer from flock after %v", lock, wait)
	}
	// flock ended without taking the lock: why?
	var err2 error
	select {
	case err2 = <-s.lockDone:
		s.lockDone <- err2
	case <-ctx.Done():
		return ctx.Err()
	}
	var ee *ssh.ExitError
	if errors.As(err2, &ee) && ee.ExitStatus() == lockExitCode {
		return fmt.Errorf("%w: %s still held after %v (a manual deploy, or another deployhook?)", executor.ErrLocked, lock, wait)
	}
	return fmt.Errorf("take lock %s: %v: %s", lock, err2, strings.TrimSpace(stderr.String()))
}

// keepalive sends keepalive@openssh.com requests every interval and closes the
// connection after max intervals without an answer.
func (s *sshSession) keepalive(interval time.Duration, max int) {
	defer s.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	replies := make(chan error, 1)
	inflight, missed := false, 0
	for {
		select {
		case <-s.stop:
			return
		case err := <-replies:
			inflight, missed = false, 0
			if err != nil {
				return // the connection is gone
			}
		case <-tick.C:
			if !inflight {
				inflight = true
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
					replies <- err
				}()
				continue
			}
			missed++
			if missed >= max {
				why := fmt.Sprintf("no answer to %d keepalives in %v", missed, time.Duration(missed+1)*interval)
				s.t.lg.Warn("ssh peer stopped answering; closing the connection", "target", s.target, "why", why)
				s.mu.Lock()
				s.deadWhy = why
				s.mu.Unlock()
				s.client.Close()
				return
			}
		}
	}
}

// Run implements executor.Session: one SSH session per step.
func (s *sshSession) Run(ctx context.Context, cmd executor.Command, out io.Writer) (int, error) {
	line, err := commandLine(cmd, s.t.opts.KillGrace)
	if err != nil {
		return -1, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return -1, fmt.Errorf("target %s: session closed", s.target)
	}
	sess, err := s.client.NewSession()
	if err != nil {
		return -1, s.transportError(cmd, "open session", err)
	}
	defer sess.Close()
	w := &syncWriter{w: out}
	sess.Stdout = w
	sess.Stderr = w
	start := time.Now()
	if err := sess.Start(line); err != nil {
		return -1, s.transportError(cmd, "start", err)
	}
	done := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		done <- sess.Wait()
	}()
	// The wrapper's timeout(1) on the target kills the step; this timer is the
	// backstop for a wrapper that cannot.
	backstop := time.NewTimer(cmd.Timeout + 2*s.t.opts.KillGrace + time.Second)
	defer backstop.Stop()
	var cause error
	select {
	case err := <-done:
		return s.result(cmd, err, time.Since(start))
	case <-ctx.Done():
		cause = ctx.Err()
	case <-backstop.C:
		cause = executor.ErrTimeout
	}
	// sshd delivers "signal" to the session's process group (OpenSSH 7.9+): the
	// wrapper, or sudo which relays it to the wrapper; the wrapper kills the step's
	// group. If the session is still there after the grace, close it; the
	// timeout(1) on the target still ends the step at its deadline.
	s.t.lg.Info("killing step", "target", s.target, "step", cmd.Name, "cause", cause)
	_ = sess.Signal(ssh.SIGTERM)
	grace := time.NewTimer(s.t.opts.KillGrace + time.Second)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		s.t.lg.Warn("step still running after SIGTERM and the grace; closing its session", "target", s.target, "step", cmd.Name)
		sess.Close()
	}
	return -1, cause
}

func (s *sshSession) result(cmd executor.Command, err error, elapsed time.Duration) (int, error) {
	code := 0
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitStatus()
		if sig := ee.Signal(); sig != "" {
			code = 128 + signalNumber(sig)
		}
	default:
		return -1, s.transportError(cmd, "wait", err)
	}
	if timedOut(code, elapsed, cmd.Timeout) {
		return -1, executor.ErrTimeout
	}
	return code, nil
}

func (s *sshSession) transportError(cmd executor.Command, what string, err error) error {
	s.mu.Lock()
	why, closed := s.deadWhy, s.closed
	s.mu.Unlock()
	switch {
	case why != "":
		return fmt.Errorf("target %s: step %q: %s: connection lost (%s): %w", s.target, cmd.Name, what, why, err)
	case closed:
		return fmt.Errorf("target %s: step %q: %s: session closed: %w", s.target, cmd.Name, what, err)
	}
	return fmt.Errorf("target %s: step %q: %s: connection lost: %w", s.target, cmd.Name, what, err)
}

// Close releases the lock (ending the lock session and waiting briefly for flock to
// exit), closes the connection, which ends a running Run with a transport error, and
// waits for the session's goroutines. It is safe to call twice.
func (s *sshSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeErr
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	if s.lockSess != nil {
		// EOF on cat's stdin ends flock's child and so the lock; wait for it so the
		// lock is free when Close returns.
		_ = s.lockStdin.Close()
		t := time.NewTimer(s.t.opts.HandshakeTimeout)
		select {
		case <-s.lockDone:
		case <-s.gone:
		case <-t.C:
		}
		t.Stop()
	}
	err := s.client.Close()
	s.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.closeErr = fmt.Errorf("close connection to %s: %w", s.target, err)
	}
	return s.closeErr
}

// syncWriter serializes the writes of the stdout and stderr copiers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
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
