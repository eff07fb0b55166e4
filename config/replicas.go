package config

import (
	"errors"
	"fmt"
	"time"
)

// Bounds of lane_lease, the lease a replica holds on a target's lane (it
// renews it every third of it). After a replica dies, another one takes its
// lanes over once the lease has run out.
const (
	// MinLaneLease leaves a renewal (every third of the lease) a second or
	// more: a slow query to a database across the network must not make the
	// holder lose a lane it is deploying on.
	MinLaneLease = 3 * time.Second
	// MaxLaneLease bounds how long a dead replica's deploys wait: the lane,
	// the jobs queued on it and the commit statuses left pending.
	MaxLaneLease = 5 * time.Minute
)

// validateReplicas checks the replicas keys: several deployhook processes
// share their journal, and only a PostgreSQL one can be shared (the SQLite
// journal is a file of one machine); lane_lease, the lease of a target's
// lane, is for replicas only, within MinLaneLease and MaxLaneLease.
func (c *Config) validateReplicas() []error {
	var errs []error
	if c.Replicas && c.JournalURL() == "" {
		errs = append(errs, errors.New("replicas: true needs a PostgreSQL journal: set store (postgres://…) or DEPLOYHOOK_DATABASE_URL, or remove replicas"))
	}
	switch l := time.Duration(c.LaneLease); {
	case l == 0:
	case !c.Replicas:
		errs = append(errs, errors.New("lane_lease is only for replicas: set replicas: true, or remove lane_lease"))
	case l < MinLaneLease || l > MaxLaneLease:
		errs = append(errs, fmt.Errorf("lane_lease %s: between %s and %s (default 15s); after a replica dies, another takes its targets' deploys over this long after its last renewal",
			l, MinLaneLease, MaxLaneLease))
	}
	return errs
}
