package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/gce"
	"github.com/deployhook/deployhook/executor/gcp"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/internal/metrics"
)

// fleet is a fleet target's VMs (config vms, group, labels, ssh.addresses):
// the members transports.Members resolves at the start of each job.
type fleet struct {
	ts   *transports
	lg   *slog.Logger
	cfg  *config.Config
	t    config.Target
	opts remote.SSHOptions
	m    *metrics.Metrics

	ssh []executor.Member // transport ssh: one remote.SSH per address, made at start

	mu  sync.Mutex
	iap map[string]*gcp.Transport // transport iap: by zone/instance, made on first use
}

// fleetClient is the Compute API client that lists groups and labels,
// shared by the iap fleets and made on first use.
type fleetClient struct {
	mu sync.Mutex
	c  *gce.FleetClient
}

// addFleet builds fleet target t's VMs. For transport ssh each address gets
// its own transport, whose known_hosts lookup pins that address's key; for
// iap each instance gets one when a job first finds it, pinned by its ID.
func (ts *transports) addFleet(lg *slog.Logger, cfg *config.Config, t config.Target, opts remote.SSHOptions, m *metrics.Metrics) error {
	if ts.fleets == nil {
		ts.fleets = map[string]*fleet{}
	}
	f := &fleet{ts: ts, lg: lg, cfg: cfg, t: t, opts: opts, m: m, iap: map[string]*gcp.Transport{}}
	switch t.Transport {
	case executor.TransportSSH:
		for _, a := range t.SSHMembers() {
			o := opts
			o.Addr = a.Address
			tr, err := remote.NewSSH(lg.With("vm", a.Name), o)
			if err != nil {
				return fmt.Errorf("target %s: ssh.addresses %s: %w", t.Name, a.Name, err)
			}
			f.ssh = append(f.ssh, executor.Member{Name: a.Name, Transport: tr})
		}
	case executor.TransportIAP:
		ts.googleClients(lg, cfg)
	default:
		return fmt.Errorf("target %s: a fleet needs transport ssh or iap", t.Name)
	}
	ts.fleets[t.Name] = f
	return nil
}

// googleClients makes the Google clients the iap targets share, once.
func (ts *transports) googleClients(lg *slog.Logger, cfg *config.Config) *gcp.Google {
	if ts.google == nil {
		ts.google = gcp.NewGoogle(lg, gcp.GoogleOptions{CredentialsFile: cfg.GoogleCredentials,
			ComputeEndpoint: cfg.ComputeURL, OSLoginEndpoint: cfg.OSLoginURL})
	}
	return ts.google
}

// Members implements executor.Fleet.
func (ts *transports) Members(ctx context.Context, target string) ([]executor.Member, error) {
	f := ts.fleets[target]
	if f == nil {
		return nil, fmt.Errorf("target %q is not a fleet", target)
	}
	return f.members(ctx)
}

// members resolves the fleet's VMs now.
func (f *fleet) members(ctx context.Context) ([]executor.Member, error) {
	if f.t.Transport == executor.TransportSSH {
		return f.ssh, nil
	}
	vms, what, err := f.instances(ctx)
	if err != nil {
		return nil, err
	}
	if len(vms) == 0 {
		return nil, fmt.Errorf("%s: %w", what, executor.ErrNoMembers)
	}
	out := make([]executor.Member, 0, len(vms))
	for _, v := range vms {
		tr, err := f.transport(v)
		if err != nil {
			return nil, err
		}
		out = append(out, executor.Member{Name: v.Name, Transport: tr})
	}
	return out, nil
}

// instances lists the fleet's instances, and says what was looked up.
func (f *fleet) instances(ctx context.Context) ([]gce.FleetMember, string, error) {
	t := f.t
	switch {
	case len(t.VMs) > 0:
		out := make([]gce.FleetMember, 0, len(t.VMs))
		for _, v := range t.VMs {
			zone := v.Zone
			if zone == "" {
				zone = t.VM.Zone
			}
			out = append(out, gce.FleetMember{Name: v.Instance, Zone: zone})
		}
		return out, "vms", nil
	case t.Group != nil:
		c, err := f.ts.fleetClient(ctx, f.lg, f.cfg)
		if err != nil {
			return nil, "", err
		}
		what := fmt.Sprintf("group %s in %s%s", t.Group.Name, t.Group.Zone, t.Group.Region)
		ms, err := c.Group(ctx, t.VM.Project, t.Group.Zone, t.Group.Region, t.Group.Name)
		return ms, what, err
	}
	c, err := f.ts.fleetClient(ctx, f.lg, f.cfg)
	if err != nil {
		return nil, "", err
	}
	ms, err := c.Labeled(ctx, t.VM.Project, t.Labels)
	return ms, "RUNNING instances with " + gce.LabelFilter(t.Labels), err
}

// transport returns the transport of instance v, made on first use.
func (f *fleet) transport(v gce.FleetMember) (*gcp.Transport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := v.Zone + "/" + v.Name
	if tr := f.iap[key]; tr != nil {
		return tr, nil
	}
	t := f.t
	tr, err := gcp.New(f.lg.With("vm", v.Name), gcp.Options{
		Target: t.Name, Project: t.VM.Project, Zone: v.Zone, Instance: v.Name,
		Interface: t.VM.Interface, Port: t.VM.Port, IAPEndpoint: f.cfg.IAPURL,
		SSH: f.opts, GuestAttributes: *t.SSH.GuestAttributes,
		OSLogin: t.SSH.OSLogin, Clients: f.ts.google, IAPObserver: iapObserver(f.m, t.Name),
	})
	if err != nil {
		return nil, err
	}
	f.iap[key] = tr
	return tr, nil
}

// fleetClient returns the Compute API client for groups and labels, made on
// first use with the deployer's credentials.
func (ts *transports) fleetClient(ctx context.Context, lg *slog.Logger, cfg *config.Config) (*gce.FleetClient, error) {
	ts.fc.mu.Lock()
	defer ts.fc.mu.Unlock()
	if ts.fc.c != nil {
		return ts.fc.c, nil
	}
	_, tokens, err := ts.google.Compute(ctx)
	if err != nil {
		return nil, err
	}
	// The client keeps ctx to refresh tokens: it must outlive this call.
	c, err := gce.NewFleetClient(context.WithoutCancel(ctx), lg, gce.Options{
		Endpoint: cfg.ComputeURL, ClientOptions: []option.ClientOption{option.WithTokenSource(tokens)}})
	if err != nil {
		return nil, err
	}
	ts.fc.c = c
	return c, nil
}

// closeFleets waits for the iap VMs' key deletions and closes the fleet client.
func (ts *transports) closeFleets() {
	for _, f := range ts.fleets {
		f.mu.Lock()
		for _, tr := range f.iap {
			tr.Close()
		}
		f.mu.Unlock()
	}
	ts.fc.mu.Lock()
	if ts.fc.c != nil {
		ts.fc.c.Close()
		ts.fc.c = nil
	}
	ts.fc.mu.Unlock()
}

// fleetChecks is deployhook check for a fleet: the VMs it finds now, then a
// session and a command on each.
func (ts *transports) fleetChecks(ctx context.Context, t config.Target) []check {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ms, err := ts.Members(ctx, t.Name)
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	out := []check{{what: "fleet VMs", detail: strings.Join(names, ", "), err: err}}
	if err != nil {
		return out
	}
	for _, m := range ms {
		sess, err := m.Transport.Open(ctx, t.Name, "", 0)
		if err == nil {
			var buf strings.Builder
			var code int
			code, err = sess.Run(ctx, executor.Command{Name: "check", Run: "id -un", Timeout: 30 * time.Second}, &buf)
			if err == nil && code != 0 {
				err = fmt.Errorf("exit %d", code)
			}
			sess.Close()
		}
		out = append(out, check{what: "session to " + m.Name + " (" + string(t.Transport) + ")", err: err})
	}
	return out
}
