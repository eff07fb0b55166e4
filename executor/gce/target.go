package gce

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// Target is a VM ready to be connected to: the instance and the host keys to
// pin for it.
type Target struct {
	Instance Instance
	// HostKeys are the keys the SSH transport must accept, and no others.
	// Never empty.
	HostKeys []ssh.PublicKey
	// Source says where HostKeys come from.
	Source Source
}

// Target looks up instance name in project and zone, checks that it is
// RUNNING (an error wrapping ErrNotRunning otherwise), and selects its host
// keys with pins.Select. The guest attributes are read only when pins hold no
// key for the instance's ID. An error wrapping ErrNoHostKeys means neither
// source has a key; the deploy must not connect.
func (c *Client) Target(ctx context.Context, project, zone, name string, pins Pins) (Target, error) {
	inst, err := c.Instance(ctx, project, zone, name)
	if err != nil {
		return Target{}, err
	}
	if err := inst.Running(); err != nil {
		return Target{}, err
	}
	var published []ssh.PublicKey
	if len(pins.For(inst.ID)) == 0 {
		published, err = c.HostKeys(ctx, project, zone, name)
		if err != nil && !errors.Is(err, ErrNoHostKeys) {
			return Target{}, err
		}
	}
	keys, src, err := pins.Select(inst.ID, published)
	if err != nil {
		return Target{}, fmt.Errorf("instance %q in project %q zone %q: %w", name, project, zone, err)
	}
	c.lg.Info("compute instance resolved", "project", project, "zone", zone, "instance", name,
		"id", inst.ID, "nic", inst.NIC, "host_keys", len(keys), "host_keys_from", string(src))
	return Target{Instance: inst, HostKeys: keys, Source: src}, nil
}
