package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/deployhook/deployhook/executor"
)

// FleetOptions are a target's keys for a fleet of VMs (issue 11): which VMs
// (transport iap: vms, group or labels; transport ssh: ssh.addresses) and
// how a job moves them (rollout). The VMs are resolved at the start of each
// job.
type FleetOptions struct {
	// VMs lists instances in vm.project: names (in vm.zone), or
	// {instance, zone} items.
	VMs []FleetVM `yaml:"vms"`
	// Group is a managed instance group in vm.project, zonal or regional:
	// its RUNNING instances.
	Group *FleetGroup `yaml:"group"`
	// Labels selects the RUNNING instances of vm.project that carry every
	// label given (instances.aggregatedList with a filter).
	Labels map[string]string `yaml:"labels"`
	// Rollout says how a job moves the VMs; defaults for every fleet.
	Rollout *Rollout `yaml:"rollout"`
}

// FleetVM is one item of vms: an instance name, or {instance, zone}.
type FleetVM struct {
	Instance string `yaml:"instance"`
	Zone     string `yaml:"zone"` // empty: vm.zone
}

// UnmarshalYAML reads "vm-1" or {instance: vm-1, zone: us-central1-b}.
func (v *FleetVM) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		v.Instance = n.Value
		return nil
	}
	if err := onlyKeys(n, "instance", "zone"); err != nil {
		return err
	}
	type plain FleetVM
	return n.Decode((*plain)(v))
}

// FleetGroup is group: a managed instance group, zonal (zone) or regional
// (region).
type FleetGroup struct {
	Name   string `yaml:"name"`
	Zone   string `yaml:"zone"`
	Region string `yaml:"region"`
}

// SSHAddress is one item of ssh.addresses: "host:port", named vm-N by its
// place in the list (from 1), or {name, address}. The name is public (it
// appears in commit statuses); the address never is.
type SSHAddress struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
}

// UnmarshalYAML reads "10.0.0.5:22" or {name: vm-a, address: 10.0.0.5:22}.
func (a *SSHAddress) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		a.Address = n.Value
		return nil
	}
	if err := onlyKeys(n, "name", "address"); err != nil {
		return err
	}
	type plain SSHAddress
	return n.Decode((*plain)(a))
}

// Rollout is rollout.
type Rollout struct {
	// Canary is how many VMs deploy first, alone (default 0).
	Canary *int `yaml:"canary"`
	// Batch is how many VMs deploy at once afterwards: a number, or a
	// percentage of the fleet ("25%"). Default: all of them.
	Batch *Batch `yaml:"batch"`
	// HaltOnFailure stops the rollout at the first failed VM and rolls back
	// every VM the job moved (default true); false goes on, rolling back only
	// the VMs that failed.
	HaltOnFailure *bool `yaml:"halt_on_failure"`
}

// Batch is rollout.batch: N VMs, or Percent of the fleet.
type Batch struct {
	N, Percent int
}

// UnmarshalYAML reads a whole number or a percentage ("25%").
func (b *Batch) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if n.Kind == yaml.ScalarNode {
		if p, ok := strings.CutSuffix(s, "%"); ok {
			v, err := strconv.Atoi(strings.TrimSpace(p))
			if err == nil && v >= 1 && v <= 100 {
				b.Percent = v
				return nil
			}
		} else if v, err := strconv.Atoi(s); err == nil && v >= 1 {
			b.N = v
			return nil
		}
	}
	return fmt.Errorf("line %d: batch %q: write a number of VMs (2) or a percentage of the fleet (25%%)", n.Line, s)
}

// onlyKeys refuses a mapping with keys other than keys (config's keys are
// strict everywhere: a typo must never turn a setting off).
func onlyKeys(n *yaml.Node, keys ...string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a name or a mapping (%s)", n.Line, strings.Join(keys, ", "))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(keys, k.Value) {
			return fmt.Errorf("line %d: unknown key %q (use %s)", k.Line, k.Value, strings.Join(keys, ", "))
		}
	}
	return nil
}

// IsFleet reports whether the target deploys to several VMs: vms, group,
// labels or ssh.addresses.
func (t Target) IsFleet() bool {
	return len(t.VMs) > 0 || t.Group != nil || len(t.Labels) > 0 || len(t.SSH.Addresses) > 0
}

// ExecutorRollout returns the target's rollout for the executor, with the
// defaults, or nil when the target is not a fleet.
func (t Target) ExecutorRollout() *executor.Rollout {
	if !t.IsFleet() {
		return nil
	}
	out := &executor.Rollout{}
	r := t.Rollout
	if r == nil {
		return out
	}
	if r.Canary != nil {
		out.Canary = *r.Canary
	}
	if r.Batch != nil {
		out.Batch, out.BatchPercent = r.Batch.N, r.Batch.Percent
	}
	out.KeepGoing = r.HaltOnFailure != nil && !*r.HaltOnFailure
	return out
}

// SSHMembers returns ssh.addresses with their names: given, or vm-N.
func (t Target) SSHMembers() []SSHAddress {
	out := make([]SSHAddress, len(t.SSH.Addresses))
	for i, a := range t.SSH.Addresses {
		if a.Name == "" {
			a.Name = "vm-" + strconv.Itoa(i+1)
		}
		out[i] = a
	}
	return out
}

// gceName is a Compute Engine resource name (RFC 1035: lower-case letters,
// digits and hyphens, starting with a letter, at most 63 characters).
var gceName = nameRule{first: isLower, rest: or(isLowerDigit, is('-')), max: 63}

// labelKey and labelValue are Compute Engine label keys and values, ASCII
// only here: they are written into an API filter.
var (
	labelKey   = nameRule{first: isLower, rest: or(isLowerDigit, is('_', '-')), max: 63}
	labelValue = nameRule{first: or(isLowerDigit, is('_', '-')), rest: or(isLowerDigit, is('_', '-')), max: 63}
)

// validateFleet checks target t's fleet keys: one way to name the VMs, for
// the transport that can reach them, each valid and named once, a host-key
// pin per VM, and a rollout only for a fleet, within bounds.
func validateFleet(where string, t Target) []error {
	var p problems
	if !t.IsFleet() {
		if t.Rollout != nil {
			p.add("%s: rollout is for a fleet: name the VMs with vms, group or labels (transport iap) or ssh.addresses (transport ssh), or remove rollout", where)
		}
		return p
	}
	ways := 0
	for _, set := range []bool{t.VM.Instance != "", len(t.VMs) > 0, t.Group != nil, len(t.Labels) > 0} {
		if set {
			ways++
		}
	}
	iapFleet := len(t.VMs) > 0 || t.Group != nil || len(t.Labels) > 0
	switch {
	case iapFleet && t.Transport != executor.TransportIAP:
		p.add("%s: vms, group and labels name Compute Engine VMs: they need transport iap (for transport ssh, list ssh.addresses)", where)
		return p
	case len(t.SSH.Addresses) > 0 && t.Transport != executor.TransportSSH:
		p.add("%s: ssh.addresses needs transport ssh", where)
		return p
	case ways > 1:
		p.add("%s: name the VMs one way: vm.instance, vms, group or labels", where)
	case len(t.SSH.Addresses) > 0 && t.SSH.Address != "":
		p.add("%s: set ssh.address (one VM) or ssh.addresses (a fleet), not both", where)
	}
	if len(t.SSH.HostKeys) > 0 {
		p.add("%s: ssh.host_keys would pin every VM of the fleet to the same keys: pin each VM's own, with ssh.known_hosts_file (by address for ssh, by compute.ID for iap) or host_keys_from_guest_attributes (iap)", where)
	}
	seen := map[string]bool{}
	name := func(kind, n string) {
		if seen[n] {
			p.add("%s: %s %q is listed twice", where, kind, n)
		}
		seen[n] = true
	}
	for i, v := range t.VMs {
		switch {
		case !gceName.MatchString(v.Instance):
			p.add("%s: vms[%d]: %q is not an instance name (lower-case letters, digits and -)", where, i, v.Instance)
		case v.Zone == "" && t.VM.Zone == "":
			p.add("%s: vms[%d] (%s) has no zone: set vm.zone, or write {instance: %s, zone: ZONE}", where, i, v.Instance, v.Instance)
		case v.Zone != "" && !gceName.MatchString(v.Zone):
			p.add("%s: vms[%d]: zone %q is not a zone name", where, i, v.Zone)
		}
		name("vm", v.Instance)
	}
	if g := t.Group; g != nil {
		switch {
		case !gceName.MatchString(g.Name):
			p.add("%s: group.name %q is not a managed instance group name", where, g.Name)
		case (g.Zone == "") == (g.Region == ""):
			p.add("%s: group %s: set group.zone (a zonal group) or group.region (a regional one), one of them", where, g.Name)
		case !gceName.MatchString(g.Zone + g.Region):
			p.add("%s: group %s: %q is not a zone or region name", where, g.Name, g.Zone+g.Region)
		}
	}
	keys := make([]string, 0, len(t.Labels))
	for k := range t.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !labelKey.MatchString(k) || (t.Labels[k] != "" && !labelValue.MatchString(t.Labels[k])) {
			p.add("%s: labels: %s: %q: label keys and values are lower-case letters, digits, _ and - (keys start with a letter)", where, k, t.Labels[k])
		}
	}
	if iapFleet && t.VM.Project == "" {
		p.add("%s: a fleet of Compute Engine VMs needs vm.project", where)
	}
	for i, a := range t.SSHMembers() {
		if !gceName.MatchString(a.Name) {
			p.add("%s: ssh.addresses[%d]: name %q: lower-case letters, digits and - (it appears on GitHub)", where, i, a.Name)
		}
		if host, port, err := net.SplitHostPort(a.Address); err != nil || host == "" || port == "" {
			p.add("%s: ssh.addresses[%d] (%s): %q is not host:port", where, i, a.Name, a.Address)
		}
		name("VM name", a.Name)
	}
	if r := t.Rollout; r != nil && r.Canary != nil && *r.Canary < 0 {
		p.add("%s: rollout.canary %d: a number of VMs, 0 or more", where, *r.Canary)
	}
	return p
}
