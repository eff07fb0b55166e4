package config

import (
	"net/url"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// Watch configures a target's post-deploy watch (watch:): after a deploy
// succeeds, a check runs on the VM every Every until For has passed, and
// Trips degraded checks in a row roll the deploy back; the job then ends
// failure, "rolled back after 6 min: REASON". With the default sequence the
// check looks at the units (active, no restart by systemd since the deploy)
// and, with FailedRuns, at Dagster's runs; a target with steps: gives its
// own check in Run. Zero values take the defaults (WithDefaults).
type Watch struct {
	For        Duration    `yaml:"for"`         // required: how long after the deploy (at most 24h)
	Every      Duration    `yaml:"every"`       // between checks; default 30s, at least 5s
	Trips      int         `yaml:"trips"`       // degraded checks in a row that roll back; default 2
	FailedRuns *FailedRuns `yaml:"failed_runs"` // Dagster's runs; off unless given ({} for the defaults)
	// Run is a check script of the target's own, run as the login user:
	// exit 0 healthy, 1 degraded (its last output line is the public reason,
	// shown on GitHub), anything else unknown. Required with steps:; with
	// the default sequence it replaces the default check.
	Run     string   `yaml:"run"`
	Timeout Duration `yaml:"timeout"` // of one check; default 1m
}

// FailedRuns configures the Dagster signal of the watch: a check is degraded
// when at least MinRuns runs were updated since the deploy, at least MaxShare
// of them failed, and a smaller share failed in the same length of time
// before the deploy. The runs are read from the Dagster webserver's GraphQL
// API at URL, on the VM, with curl (Dagster 1.7.7 or later).
type FailedRuns struct {
	MaxShare float64 `yaml:"max_share"` // default 0.5; in (0, 1]
	MinRuns  int     `yaml:"min_runs"`  // default 3
	URL      string  `yaml:"url"`       // default http://127.0.0.1:3000/graphql
}

// The watch's defaults and bounds.
const (
	DefaultWatchEvery   = 30 * time.Second
	DefaultWatchTrips   = 2
	DefaultWatchTimeout = time.Minute
	DefaultMaxShare     = 0.5
	DefaultMinRuns      = 3
	// DefaultDagsterGraphQL is dagster-webserver's GraphQL endpoint on its
	// default port.
	DefaultDagsterGraphQL = executor.DefaultDagsterGraphQL
	// MaxWatch bounds watch.for: the lane's next deploy ends a watch anyway,
	// and a day covers a daily schedule's runs.
	MaxWatch = 24 * time.Hour
	// MinWatchEvery keeps the checks from crowding the VM and its SSH server.
	MinWatchEvery = 5 * time.Second
)

// WithDefaults returns w with the defaults of the keys left out.
func (w Watch) WithDefaults() Watch {
	if w.Every == 0 {
		w.Every = Duration(DefaultWatchEvery)
	}
	if w.Trips == 0 {
		w.Trips = DefaultWatchTrips
	}
	if w.Timeout == 0 {
		w.Timeout = Duration(DefaultWatchTimeout)
	}
	if w.FailedRuns != nil {
		f := *w.FailedRuns
		if f.MaxShare == 0 {
			f.MaxShare = DefaultMaxShare
		}
		if f.MinRuns == 0 {
			f.MinRuns = DefaultMinRuns
		}
		if f.URL == "" {
			f.URL = DefaultDagsterGraphQL
		}
		w.FailedRuns = &f
	}
	return w
}

// validateWatch checks the watch of t, the target named where in problems.
func validateWatch(where string, t Target) []error {
	if t.Watch == nil {
		return nil
	}
	var p problems
	w := t.Watch.WithDefaults()
	where += ": watch"
	if t.IsFleet() {
		// The watch checks and rolls back one VM through one session.
		p.add("%s is for a target on one VM: a fleet (vms, group, labels or ssh.addresses) has no watch yet", where)
	}
	forD, every := time.Duration(w.For), time.Duration(w.Every)
	switch {
	case forD <= 0:
		p.add("%s needs for: how long to keep checking after a deploy (e.g. for: 15m)", where)
	case forD > MaxWatch:
		p.add("%s.for %s: at most 24h (the next deploy ends a watch anyway)", where, forD)
	}
	switch {
	case every < MinWatchEvery:
		p.add("%s.every %s: at least 5s between checks (default 30s)", where, every)
	case forD > 0 && every > forD:
		p.add("%s.every %s is longer than watch.for %s: no check would run", where, every, forD)
	}
	if w.Trips < 1 || w.Trips > 100 {
		p.add("%s.trips %d: between 1 and 100 degraded checks in a row roll back (default 2)", where, w.Trips)
	}
	if to := time.Duration(w.Timeout); to <= 0 || to > 10*time.Minute {
		p.add("%s.timeout %s: between 1s and 10m (default 1m)", where, to)
	}
	if !*t.Rollback {
		p.add("%s needs rollback: true: the watch rolls back a deploy that degrades", where)
	}
	switch {
	case len(t.Steps) > 0 && w.Run == "":
		p.add("%s on a target with steps: needs watch.run, a check script (exit 0 healthy, 1 degraded with the reason as its last line)", where)
	case w.Run != "" && w.FailedRuns != nil:
		p.add("%s: give failed_runs (the default check reads Dagster's runs) or run (a check of your own), not both", where)
	}
	if f := w.FailedRuns; f != nil {
		if f.MaxShare <= 0 || f.MaxShare > 1 {
			p.add("%s.failed_runs.max_share %g: a share of runs above 0 and at most 1 (default 0.5)", where, f.MaxShare)
		}
		if f.MinRuns < 1 {
			p.add("%s.failed_runs.min_runs %d: at least 1 run (default 3)", where, f.MinRuns)
		}
		if u, err := url.Parse(f.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("%s.failed_runs.url %q: the Dagster webserver's GraphQL endpoint as the VM reaches it (default %s)", where, f.URL, DefaultDagsterGraphQL)
		}
	}
	return p
}
