package gce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/deployhook/deployhook/internal/endpoint"
)

// Fleets. A fleet target names its VMs by a managed instance group or by
// labels; FleetClient resolves them, at the start of each job:
//
//   - instanceGroupManagers.listManagedInstances: POST
//     /compute/v1/projects/P/zones/Z/instanceGroupManagers/G/listManagedInstances
//     (a zonal group; compute.instanceGroupManagers.get), and
//     regionInstanceGroupManagers.listManagedInstances: POST
//     /compute/v1/projects/P/regions/R/instanceGroupManagers/G/listManagedInstances
//     (a regional one), every page;
//   - instances.aggregatedList: GET /compute/v1/projects/P/aggregated/instances
//     ?filter=(labels.K = "V") ... (status = "RUNNING") (compute.instances.list),
//     every page, without returnPartialSuccess: a zone that cannot be read
//     fails the call rather than leave its VMs out of the fleet.
//
// roles/compute.viewer has both permissions. Each instance's host keys are
// then pinned as for one VM (Client.HostKeys, by instance ID).

// FleetMember is an instance of a fleet.
type FleetMember struct {
	Name string // the instance name
	Zone string // its zone
}

// FleetClient lists the instances of managed instance groups and of label
// selections. Its methods are safe for concurrent use, except Close.
type FleetClient struct {
	lg       *slog.Logger
	zonal    *compute.InstanceGroupManagersClient
	regional *compute.RegionInstanceGroupManagersClient
	ic       *compute.InstancesClient
}

// NewFleetClient returns a FleetClient on the REST transport of the Compute
// Engine API, configured as New configures a Client (Options). It makes no
// request.
func NewFleetClient(ctx context.Context, lg *slog.Logger, opts Options) (*FleetClient, error) {
	if lg == nil {
		return nil, errors.New("new compute fleet client: nil logger")
	}
	copts, err := endpoint.Option(opts.ClientOptions, "DEPLOYHOOK_COMPUTE_URL", opts.Endpoint, "https://compute.googleapis.com")
	if err != nil {
		return nil, fmt.Errorf("new compute fleet client: %w", err)
	}
	if copts, err = endpoint.WithLimits(ctx, copts, MaxBody); err != nil {
		return nil, fmt.Errorf("new compute fleet client: %w", err)
	}
	f := &FleetClient{lg: lg}
	if f.zonal, err = compute.NewInstanceGroupManagersRESTClient(ctx, copts...); err == nil {
		if f.regional, err = compute.NewRegionInstanceGroupManagersRESTClient(ctx, copts...); err == nil {
			f.ic, err = compute.NewInstancesRESTClient(ctx, copts...)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("new compute fleet client: %w", err)
	}
	return f, nil
}

// Close releases the client's connections; calls after it return ErrClosed.
func (f *FleetClient) Close() error {
	var errs []error
	if f.zonal != nil {
		errs = append(errs, f.zonal.Close())
	}
	if f.regional != nil {
		errs = append(errs, f.regional.Close())
	}
	if f.ic != nil {
		errs = append(errs, f.ic.Close())
	}
	f.zonal, f.regional, f.ic = nil, nil, nil
	return errors.Join(errs...)
}

// groupKeeps says which managed instances are members of the fleet: RUNNING,
// and doing nothing that replaces or stops them (currentAction NONE, or a
// check that keeps the VM: VERIFYING, REFRESHING).
func groupKeeps(status, action string) bool {
	return status == StatusRunning && (action == "" || action == "NONE" || action == "VERIFYING" || action == "REFRESHING")
}

// Group lists the members of managed instance group name in project: zonal
// when zone is set, regional when region is (exactly one of them). Members
// are the instances RUNNING and not being deleted, recreated or stopped,
// sorted by name; the others are logged. A 404 or 403 answer names the group
// or the missing permission.
func (f *FleetClient) Group(ctx context.Context, project, zone, region, name string) ([]FleetMember, error) {
	if f.ic == nil {
		return nil, fmt.Errorf("list managed instances: %w", ErrClosed)
	}
	where := zone + region
	if (zone == "") == (region == "") {
		return nil, errors.New("list managed instances: give a zone or a region")
	}
	if err := checkNames(project, where, name); err != nil {
		return nil, fmt.Errorf("list managed instances: %w", err)
	}
	var it *compute.ManagedInstanceIterator
	if zone != "" {
		it = f.zonal.ListManagedInstances(ctx, &computepb.ListManagedInstancesInstanceGroupManagersRequest{
			Project: project, Zone: zone, InstanceGroupManager: name})
	} else {
		it = f.regional.ListManagedInstances(ctx, &computepb.ListManagedInstancesRegionInstanceGroupManagersRequest{
			Project: project, Region: region, InstanceGroupManager: name})
	}
	var out []FleetMember
	for {
		mi, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list managed instances of group %q in project %q %s: %w", name, project, where, explainGroup(err, project, where, name))
		}
		m, ok := instanceURL(mi.GetInstance())
		if !ok {
			return nil, fmt.Errorf("group %q: managed instance %q: not an instance URL", name, mi.GetInstance())
		}
		if !groupKeeps(mi.GetInstanceStatus(), mi.GetCurrentAction()) {
			f.lg.Info("managed instance left out of the fleet", "group", name, "instance", m.Name, "zone", m.Zone,
				"status", mi.GetInstanceStatus(), "action", mi.GetCurrentAction())
			continue
		}
		out = append(out, m)
	}
	sortMembers(out)
	return out, nil
}

// LabelFilter is the instances.aggregatedList filter of the RUNNING instances
// that carry every label of labels: one parenthesised comparison each, keys
// in order. Label keys and values must be lower-case letters, digits, _ and -
// (config checks them): nothing in them needs quoting.
func LabelFilter(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "(labels.%s = %q) ", k, labels[k])
	}
	b.WriteString(`(status = "RUNNING")`)
	return b.String()
}

// Labeled lists the RUNNING instances of project, in every zone, that carry
// every label of labels (at least one), sorted by name, then zone.
func (f *FleetClient) Labeled(ctx context.Context, project string, labels map[string]string) ([]FleetMember, error) {
	if f.ic == nil {
		return nil, fmt.Errorf("list instances: %w", ErrClosed)
	}
	if len(labels) == 0 {
		return nil, errors.New("list instances: no labels to select by")
	}
	if err := checkNames(project, "-", "-"); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	filter := LabelFilter(labels)
	it := f.ic.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{Project: project, Filter: &filter})
	var out []FleetMember
	for {
		pair, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list instances of project %q with %s: %w", project, filter, explainList(err, project))
		}
		for _, in := range pair.Value.GetInstances() {
			// The filter is the API's; the labels and the status are checked
			// here again, so a filter the API ignored never widens the fleet.
			if in.GetStatus() != StatusRunning || !hasLabels(in.GetLabels(), labels) {
				continue
			}
			zone := in.GetZone()
			zone = zone[strings.LastIndexByte(zone, '/')+1:]
			out = append(out, FleetMember{Name: in.GetName(), Zone: zone})
		}
	}
	sortMembers(out)
	return out, nil
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func sortMembers(ms []FleetMember) {
	slices.SortFunc(ms, func(a, b FleetMember) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Zone, b.Zone)
	})
}

// instanceURL reads the zone and name of an instance's URL
// (https://www.googleapis.com/compute/v1/projects/P/zones/Z/instances/N).
func instanceURL(u string) (FleetMember, bool) {
	parts := strings.Split(u, "/")
	n := len(parts)
	if n < 4 || parts[n-2] != "instances" || parts[n-4] != "zones" || parts[n-1] == "" || parts[n-3] == "" {
		return FleetMember{}, false
	}
	return FleetMember{Name: parts[n-1], Zone: parts[n-3]}, true
}

// explainGroup turns a listManagedInstances error into one a person can act on.
func explainGroup(err error, project, where, name string) error {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return err
	}
	switch ge.Code {
	case http.StatusNotFound:
		return fmt.Errorf("managed instance group %q not found in project %q %s: check group.name and group.zone or group.region: %w", name, project, where, err)
	case http.StatusForbidden:
		return fmt.Errorf("permission compute.instanceGroupManagers.get denied on group %q: grant the deployer's identity a role with it (e.g. roles/compute.viewer): %w", name, err)
	}
	return explain(err, "compute.instanceGroupManagers.get", project, where, name)
}

// explainList turns an aggregatedList error into one a person can act on.
func explainList(err error, project string) error {
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusForbidden {
		return fmt.Errorf("permission compute.instances.list denied in project %q: grant the deployer's identity a role with it (e.g. roles/compute.viewer): %w", project, err)
	}
	return err
}
