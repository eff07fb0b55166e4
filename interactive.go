package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote"

	"github.com/deployhook/deployhook/internal/shell"
)

func (e *env) sshCmd() *cobra.Command {
	var c common
	cmd := &cobra.Command{
		Use:   "ssh [-- COMMAND]",
		Short: "Open a shell on the target's VM (through IAP for transport iap)",
		RunE: func(cmd *cobra.Command, args []string) error {
			// It opens a shell: no webhook secret, no GitHub, no journal.
			s := setup{load: []config.LoadOption{config.WithoutWebhookOrGitHub()}}
			return e.withApp(cmd.Context(), &c, s, func(a *app) error {
				t := a.cfg.Target(c.target)
				if t.Transport != executor.TransportIAP && t.Transport != executor.TransportSSH {
					return usageError(fmt.Errorf("target %s uses transport %s: there is nothing to ssh to", t.Name, t.Transport))
				}
				client, err := a.tr.client(cmd.Context(), t)
				if err != nil {
					return unreachable(err)
				}
				defer client.Close()
				return e.shell(client, args)
			})
		},
	}
	c.flags(cmd, true)
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

// client returns an SSH client connected to t.
func (ts *transports) client(ctx context.Context, t *config.Target) (*ssh.Client, error) {
	if t.IsFleet() {
		return nil, fmt.Errorf("target %s is a fleet of VMs: ssh to one of them directly", t.Name)
	}
	switch t.Transport {
	case executor.TransportIAP:
		return ts.iaps[t.Name].Client(ctx)
	case executor.TransportSSH:
		return ts.byName[t.Name].(*remote.SSH).Client(ctx)
	default:
		return nil, fmt.Errorf("target %s uses transport %s: there is nothing to ssh to", t.Name, t.Transport)
	}
}

// shell runs an interactive shell (or args as a command) with a pty when stdin
// is a terminal, and returns the remote exit status as remoteExit does.
func (e *env) shell(client *ssh.Client, args []string) error {
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = e.stdin, e.stdout, e.stderr
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		w, h, err := term.GetSize(fd)
		if err != nil {
			w, h = 80, 24
		}
		termType := e.getenv("TERM")
		if termType == "" {
			termType = "xterm-256color"
		}
		if err := sess.RequestPty(termType, h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
			return fmt.Errorf("request a terminal: %w", err)
		}
		old, err := term.MakeRaw(fd)
		if err != nil {
			return err
		}
		defer term.Restore(fd, old)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		done := make(chan struct{})
		var resizer sync.WaitGroup
		defer resizer.Wait()
		defer close(done)
		resizer.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-winch:
					if w, h, err := term.GetSize(fd); err == nil {
						_ = sess.WindowChange(h, w)
					}
				}
			}
		})
	}
	if len(args) > 0 {
		err = sess.Run(shell.Join(args))
	} else {
		if err = sess.Shell(); err == nil {
			err = sess.Wait()
		}
	}
	return remoteExit(err)
}

// remoteExit turns the end of a remote command into deployhook ssh's exit:
// the command's own exit code, as ssh(1) returns it, and 255 (as ssh(1) does)
// when the command ended without one (killed by a signal, or the connection
// went away).
func remoteExit(err error) error {
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		return exitError{code: exit.ExitStatus(), err: fmt.Errorf("remote exit %d", exit.ExitStatus()), reported: true}
	case errors.As(err, &missing):
		return exitError{code: 255, err: errors.New("the remote command ended without an exit status")}
	}
	return err
}

func (e *env) tunnelCmd() *cobra.Command {
	var c common
	var listen string
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "Forward a local port to the VM's SSH port through IAP",
		Long: `Tunnel listens on a local port and opens one IAP tunnel to the VM for each
connection, for tools that want a port (ssh -p PORT user@127.0.0.1, scp, rsync).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// It forwards a port: no webhook secret, no GitHub, no journal.
			s := setup{load: []config.LoadOption{config.WithoutWebhookOrGitHub()}}
			return e.withApp(cmd.Context(), &c, s, func(a *app) error {
				x := a.tr.iaps[c.target]
				if x == nil {
					return usageError(fmt.Errorf("target %s does not use transport iap", c.target))
				}
				ln, err := net.Listen("tcp", listen)
				if err != nil {
					return err
				}
				vm := a.cfg.Target(c.target).VM
				fmt.Fprintf(e.stdout, "forwarding %s to %s port %d through IAP\n", ln.Addr(), vm.Instance, vm.Port)
				return forward(cmd.Context(), ln, x.DialTunnel, func(err error) { a.lg.Error("tunnel", "err", err) })
			})
		},
	}
	c.flags(cmd, true)
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:2222", "local address to listen on")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

// forward accepts connections on ln until ctx ends and pipes each to a new
// conn from dial. It waits for every pipe to end before it returns.
func forward(ctx context.Context, ln net.Listener, dial func(context.Context) (net.Conn, error), logErr func(error)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		local, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer local.Close()
			remoteConn, err := dial(ctx)
			if err != nil {
				logErr(err)
				return
			}
			defer remoteConn.Close()
			unblock := context.AfterFunc(ctx, func() { local.Close(); remoteConn.Close() })
			defer unblock()
			var pipes sync.WaitGroup
			pipes.Go(func() { _, _ = io.Copy(remoteConn, local); remoteConn.Close() })
			_, _ = io.Copy(local, remoteConn)
			local.Close()
			pipes.Wait()
		})
	}
}
