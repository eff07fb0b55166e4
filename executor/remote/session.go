package remote

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/executor"
)

// sshSession is an open connection to a target: the lock, if any, and the steps.
//
// Round trips are what a deploy over IAP pays for, so the session keeps one
// "session" channel opened ahead (spare): while a step runs, the channel for the
// next one is already open, and exec requests are sent without waiting for a
// reply (a refused exec shows as a channel closed without an exit status).
type sshSession struct {
	t      *SSH
	target string
	client *ssh.Client
	stop   chan struct{}  // closed by Close: stops the keepalive
	gone   chan struct{}  // closed when the connection is gone
	wg     sync.WaitGroup // every goroutine of the session

	spare   chan openResult // the channel opened ahead; one open is always in flight
	spareMu sync.Mutex      // one taker of spare at a time

	gmu      sync.Mutex // guards draining and wg.Add
	draining bool       // Close is waiting for the goroutines: start no more

	lock   *proc  // the lock session, nil without a lock
	locked bool   // flock holds the lock
	steps  string // the shell word of the steps lock; empty without a lock

	mu       sync.Mutex
	closed   bool
	running  map[*proc]struct{} // the steps running now
	deadWhy  string             // why the connection was given up, for errors
	closeErr error
}

type openResult struct {
	ch   ssh.Channel
	reqs <-chan *ssh.Request
	err  error
}

func newSSHSession(t *SSH, target string, client *ssh.Client) *sshSession {
	s := &sshSession{t: t, target: target, client: client,
		stop: make(chan struct{}), gone: make(chan struct{}), spare: make(chan openResult, 1)}
	s.spawn(func() {
		_ = client.Wait()
		close(s.gone)
	})
	if t.opts.KeepAlive > 0 {
		s.spawn(func() { s.keepalive(t.opts.KeepAlive, t.opts.KeepAliveMax) })
	}
	s.openAhead()
	return s
}

// spawn runs f in a goroutine that Close waits for, unless Close is already
// waiting, in which case it reports false and does not run f.
func (s *sshSession) spawn(f func()) bool {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	if s.draining {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// openAhead opens a session channel in the background into s.spare.
func (s *sshSession) openAhead() {
	s.spawn(func() {
		ch, reqs, err := s.client.OpenChannel("session", nil)
		s.spare <- openResult{ch, reqs, err}
	})
}

// channel returns an open session channel for a step and opens the next one.
func (s *sshSession) channel() (ssh.Channel, <-chan *ssh.Request, error) {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, errors.New("session closed")
	}
	var o openResult
	select {
	case o = <-s.spare:
	case <-s.gone:
		return nil, nil, errors.New("connection closed")
	}
	s.openAhead()
	return o.ch, o.reqs, o.err
}

// proc is a command started on a session channel.
type proc struct {
	ch     ssh.Channel
	done   chan struct{} // closed when the channel is closed and the output copied
	status int           // valid after done
	signal string
	exited bool // an exit-status or exit-signal arrived
	ended  bool // Close ended the command (guarded by the session's mu)
}

// start sends the exec request (not waiting for the reply: the answer that
// matters is the exit status) and copies the output. The command's stdin stays
// open until the channel's write side is closed (CloseWrite, the channel or the
// connection closed): the lock session holds the lock and a step's wrapper lives
// only for as long as it is open.
func (s *sshSession) start(ch ssh.Channel, reqs <-chan *ssh.Request, line string, stdout, stderr io.Writer) (*proc, error) {
	if _, err := ch.SendRequest("exec", false, ssh.Marshal(&struct{ Command string }{line})); err != nil {
		ch.Close()
		return nil, err
	}
	p := &proc{ch: ch, done: make(chan struct{})}
	var copies sync.WaitGroup
	copies.Add(2)
	go func() {
		defer copies.Done()
		_, _ = io.Copy(stdout, ch)
	}()
	go func() {
		defer copies.Done()
		_, _ = io.Copy(stderr, ch.Stderr())
	}()
	ok := s.spawn(func() {
		for r := range reqs {
			switch r.Type {
			case "exit-status":
				if len(r.Payload) >= 4 {
					p.status, p.exited = int(binary.BigEndian.Uint32(r.Payload)), true
				}
			case "exit-signal":
				var m struct {
					Signal string
					Core   bool
					Msg    string
					Lang   string
				}
				if ssh.Unmarshal(r.Payload, &m) == nil {
					p.signal, p.exited = m.Signal, true
				}
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		// The channel is closed: the copies end at once.
		copies.Wait()
		ch.Close()
		close(p.done)
	})
	if !ok {
		// Close is under way: the connection is closed, the copies end at once.
		copies.Wait()
		close(p.done)
	}
	return p, nil
}

// code is the exit code of a finished proc, or an error when it ended without one
// (the connection or the channel died).
func (p *proc) code() (int, error) {
	switch {
	case !p.exited:
		return -1, errors.New("the command ended without an exit status")
	case p.signal != "":
		return 128 + signalNumber(p.signal), nil
	}
	return p.status, nil
}

// takeLock starts the lock session (lockCommand) and waits until it holds the
// deploy lock and no step of an earlier deploy is left. The lock session runs as
// the login user: the lock file (and its directory, created when missing) must
// be writable by it, and readable by whoever deploys by hand.
func (s *sshSession) takeLock(ctx context.Context, lock string, wait time.Duration) error {
	ch, reqs, err := s.client.OpenChannel("session", nil)
	if err != nil {
		return fmt.Errorf("open lock session: %w", err)
	}
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	p, err := s.start(ch, reqs, lockCommand(lock, wait), pw, &limitedBuffer{buf: &stderr, max: 4096})
	if err != nil {
		return fmt.Errorf("start lock session: %w", err)
	}
	s.lock = p
	locked := make(chan bool, 1)
	s.spawn(func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		locked <- line == "locked\n"
		// Nothing more is written; drain until the session ends.
		_, _ = io.Copy(io.Discard, pr)
	})
	s.spawn(func() {
		<-p.done
		pw.Close()
	})
	// flock's own -w bounds each of the two waits (the deploy lock, then the
	// steps lock); the extra is for the round trips.
	timer := time.NewTimer(2*wait + s.t.opts.HandshakeTimeout)
	defer timer.Stop()
	select {
	case ok := <-locked:
		if ok {
			s.locked = true
			s.steps = stepsWord(lock)
			s.t.lg.Debug("deploy lock taken", "target", s.target, "lock", lock)
			return nil
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("take lock %s: no answer from flock after %v", lock, 2*wait)
	}
	// flock ended without taking the lock: why?
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	code, err := p.code()
	switch {
	case err != nil:
		return fmt.Errorf("take lock %s: %w", lock, err)
	case code == lockExitCode:
		return lockedError(lock, wait)
	case code == stepsExitCode:
		return stepsHeldError(lock, wait)
	}
	return fmt.Errorf("take lock %s: exit code %d: %s", lock, code, strings.TrimSpace(stderr.String()))
}

// keepalive sends keepalive@openssh.com requests every interval and closes the
// connection after max intervals without an answer.
func (s *sshSession) keepalive(interval time.Duration, max int) {
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
				inflight = s.spawn(func() {
					_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
					replies <- err
				})
				continue
			}
			missed++
			if missed >= max {
				why := fmt.Sprintf("no answer to keepalives for %v", time.Duration(missed)*interval)
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

// Run implements executor.Session: one SSH session channel per step.
func (s *sshSession) Run(ctx context.Context, cmd executor.Command, out io.Writer) (int, error) {
	line, err := commandLine(cmd, s.t.opts.KillGrace, true, s.steps)
	if err != nil {
		return -1, err
	}
	ch, reqs, err := s.channel()
	if err != nil {
		return -1, s.transportError(cmd, "open session", err)
	}
	w := &syncWriter{w: out}
	// Output that arrives after Run returned (a step killed on a hung
	// connection) must not reach out any more.
	defer w.detach()
	pw := &pidWriter{w: w}
	start := time.Now()
	p, err := s.start(ch, reqs, line, pw, w)
	if err != nil {
		return -1, s.transportError(cmd, "start", err)
	}
	s.mu.Lock()
	if s.running == nil {
		s.running = make(map[*proc]struct{})
	}
	s.running[p] = struct{}{}
	closed := s.closed
	p.ended = closed
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, p)
		s.mu.Unlock()
	}()
	if closed {
		// Close ran between channel() and here and did not see this step.
		_ = p.ch.CloseWrite()
	}
	// The wrapper's timeout(1) on the target kills the step; this timer is the
	// backstop for a wrapper that cannot.
	backstop := time.NewTimer(cmd.Timeout + 2*s.t.opts.KillGrace + time.Second)
	defer backstop.Stop()
	var cause error
	select {
	case <-p.done:
		pw.flush()
		s.mu.Lock()
		ended := p.ended
		s.mu.Unlock()
		if ended {
			// Its exit status is that of the kill, not a failure of the step.
			return -1, fmt.Errorf("target %s: step %q: session closed", s.target, cmd.Name)
		}
		code, err := p.code()
		if err != nil {
			return -1, s.transportError(cmd, "wait", err)
		}
		if timedOut(code, time.Since(start), cmd.Timeout) {
			return -1, executor.ErrTimeout
		}
		return code, nil
	case <-ctx.Done():
		cause = ctx.Err()
	case <-backstop.C:
		cause = executor.ErrTimeout
	}
	s.kill(cmd, p, pw.pid())
	return -1, cause
}

// kill ends a running step: it closes the channel's write side, so the
// wrapper's watcher reads end of file and the wrapper kills the step's process
// group (see wrapper), as it would if the connection dropped. The pid the
// wrapper announced is also sent SIGTERM through a second session, as the
// step's user, in case stdin does not reach the wrapper. (sshd's "signal"
// request is not used: it signals the session's whole process group, which
// includes the flock(1) holding the steps lock, and would release that lock
// before the step is gone.) If the step is still there after the grace, its
// channel is closed; the wrapper on the target goes on killing the group, and
// the steps lock keeps the deploy lock held until it is gone.
func (s *sshSession) kill(cmd executor.Command, p *proc, pid int) {
	s.t.lg.Info("killing step", "target", s.target, "step", cmd.Name)
	_ = p.ch.CloseWrite()
	if pid > 0 {
		s.spawn(func() { s.killPid(cmd, pid) })
	}
	grace := time.NewTimer(s.t.opts.KillGrace + time.Second)
	defer grace.Stop()
	select {
	case <-p.done:
	case <-grace.C:
		s.t.lg.Warn("step still running after SIGTERM and the grace; closing its session", "target", s.target, "step", cmd.Name)
		p.ch.Close()
	}
}

// killPid sends SIGTERM to the wrapper of a step through a new session.
func (s *sshSession) killPid(cmd executor.Command, pid int) {
	sess, err := s.client.NewSession()
	if err != nil {
		return // the connection is gone; timeout(1) on the target ends the step
	}
	defer sess.Close()
	out, err := sess.CombinedOutput("exec " + sudoPrefix(cmd) + "kill -TERM " + strconv.Itoa(pid))
	if err != nil {
		s.t.lg.Debug("kill step through a second session", "target", s.target, "step", cmd.Name, "err", err, "output", string(out))
	}
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

// Close ends running steps (their wrappers read end of file and kill their
// process groups; their Runs return an error with exit code -1), releases the
// lock (ending the lock session, which waits until no step process is left, and
// waiting for it at most HandshakeTimeout), closes the connection, and waits for
// the session's goroutines. It is safe to call twice.
func (s *sshSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeErr
	}
	s.closed = true
	running := make([]*proc, 0, len(s.running))
	for p := range s.running {
		p.ended = true
		running = append(running, p)
	}
	s.mu.Unlock()
	for _, p := range running {
		_ = p.ch.CloseWrite()
	}
	close(s.stop)
	if s.locked {
		// EOF on cat's stdin ends the hold; the lock session then waits for the
		// steps lock and exits, releasing the lock. Wait for it so the lock is
		// free when Close returns. (A flock still waiting gives up when its
		// stdout, closed with the connection, fails.)
		_ = s.lock.ch.CloseWrite()
		t := time.NewTimer(s.t.opts.HandshakeTimeout)
		select {
		case <-s.lock.done:
		case <-s.gone:
		case <-t.C:
		}
		t.Stop()
	}
	err := s.client.Close()
	s.gmu.Lock()
	s.draining = true
	s.gmu.Unlock()
	s.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.closeErr = fmt.Errorf("close connection to %s: %w", s.target, err)
	}
	return s.closeErr
}
