package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/gcp"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/internal/metrics"
)

// transports is the executor's Transport: it opens each target's session with the
// transport its configuration names.
type transports struct {
	byName map[string]executor.Transport
	iaps   map[string]*gcp.Transport
	google *gcp.Google       // the Google clients of the iap targets, made on first use
	fleets map[string]*fleet // the fleet targets (fleet.go)
	fc     fleetClient
}

func newTransports(lg *slog.Logger, cfg *config.Config, m *metrics.Metrics) (*transports, error) {
	ts := &transports{byName: map[string]executor.Transport{}, iaps: map[string]*gcp.Transport{}}
	for _, t := range cfg.Targets {
		tlg := lg.With("target", t.Name)
		if t.Transport == executor.TransportLocal {
			ts.byName[t.Name] = remote.NewLocal(tlg, remote.LocalOptions{})
			continue
		}
		opts, err := sshOptions(cfg, t)
		if err != nil {
			return nil, err
		}
		if t.IsFleet() {
			if err := ts.addFleet(tlg, cfg, t, opts, m); err != nil {
				return nil, err
			}
			continue
		}
		switch t.Transport {
		case executor.TransportSSH:
			opts.Addr = t.SSH.Address
			tr, err := remote.NewSSH(tlg, opts)
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", t.Name, err)
			}
			ts.byName[t.Name] = tr
		case executor.TransportIAP:
			if ts.google == nil {
				ts.google = gcp.NewGoogle(lg, gcp.GoogleOptions{CredentialsFile: cfg.GoogleCredentials,
					ComputeEndpoint: cfg.ComputeURL, OSLoginEndpoint: cfg.OSLoginURL})
			}
			tr, err := gcp.New(tlg, gcp.Options{
				Target: t.Name, Project: t.VM.Project, Zone: t.VM.Zone, Instance: t.VM.Instance,
				Interface: t.VM.Interface, Port: t.VM.Port, IAPEndpoint: cfg.IAPURL,
				SSH: opts, GuestAttributes: *t.SSH.GuestAttributes,
				OSLogin: t.SSH.OSLogin, Clients: ts.google, IAPObserver: iapObserver(m, t.Name),
			})
			if err != nil {
				return nil, err
			}
			ts.byName[t.Name], ts.iaps[t.Name] = tr, tr
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

// Close waits for the iap transports' deletions of OS Login keys, then
// releases the Google clients.
func (ts *transports) Close() {
	for _, x := range ts.iaps {
		x.Close()
	}
	ts.closeFleets()
	if ts.google != nil {
		ts.google.Close()
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

// check is one line of deployhook check.
type check struct {
	what   string
	detail string
	err    error
}

// checks opens a session on t the way a deploy does and runs harmless commands:
// the tunnel and SSH handshake with a pinned key, and sudo without a password.
func (ts *transports) checks(ctx context.Context, t config.Target) []check {
	if ts.fleets[t.Name] != nil {
		return ts.fleetChecks(ctx, t) // its own bound: a session per VM
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var out []check
	if x := ts.iaps[t.Name]; x != nil {
		for _, c := range x.Check(ctx) {
			out = append(out, check{what: c.What, detail: c.Detail, err: c.Err})
			if c.Err != nil {
				return out
			}
		}
	}
	sess, err := ts.Open(ctx, t.Name, "", 0)
	out = append(out, check{what: "session (" + string(t.Transport) + ")", err: err})
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
	if t.Transport != executor.TransportLocal {
		buf.Reset()
		code, err = sess.Run(ctx, executor.Command{Name: "check sudo", Run: "true", Sudo: true, Timeout: 30 * time.Second}, &buf)
		if err == nil && code != 0 {
			err = errors.New("sudo -n true failed: the login user needs passwordless sudo for systemctl (" + strings.TrimSpace(buf.String()) + ")")
		}
		out = append(out, check{what: "sudo -n without a password", err: err})
	}
	if t.AppUser != "" && t.Transport != executor.TransportLocal {
		buf.Reset()
		code, err = sess.Run(ctx, executor.Command{Name: "check app user", Run: "git rev-parse HEAD", User: t.AppUser, Dir: t.AppDir, Timeout: 30 * time.Second}, &buf)
		if err == nil && code != 0 {
			err = fmt.Errorf("git rev-parse HEAD as %s in %s failed: %s", t.AppUser, t.AppDir, strings.TrimSpace(buf.String()))
		}
		out = append(out, check{what: "checkout " + t.AppDir + " as " + t.AppUser, detail: strings.TrimSpace(buf.String()), err: err})
	}
	return out
}
