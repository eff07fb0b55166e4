package main

import (
	"time"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
)

// targetWatch returns the executor's post-deploy watch of target t (nil
// without watch:): the default sequence seq's check, or, with watch.run,
// the target's own.
func targetWatch(t *config.Target, seq executor.Sequence) *executor.Watch {
	if t.Watch == nil {
		return nil
	}
	w := t.Watch.WithDefaults()
	out := &executor.Watch{For: time.Duration(w.For), Every: time.Duration(w.Every), Trips: w.Trips}
	if w.Run != "" {
		out.Check = executor.Step{Name: "watch check", Run: w.Run, Timeout: time.Duration(w.Timeout)}
		return out
	}
	sig := executor.WatchSignals{}
	if probes := watchProbes(seq.Probes); len(probes) > 0 {
		// The target's verify: probes join every check, one attempt each.
		sig.ProbeScript = executor.ProbeScript(probes, 0)
	}
	if f := w.FailedRuns; f != nil {
		sig.FailedRuns = &executor.FailedRuns{URL: f.URL, MaxShare: f.MaxShare, MinRuns: f.MinRuns}
	}
	check, baseline := seq.WatchCheck(sig)
	check.Timeout, baseline.Timeout = time.Duration(w.Timeout), time.Duration(w.Timeout)
	out.Check, out.Baseline = check, &baseline
	return out
}

// watchProbes returns the probes a watch check runs: all but the command
// probes, which run as their own user (the app user by default) in the deploy
// while the check runs as the login user. A command worth watching can be the
// watch's own run: instead.
func watchProbes(all []executor.Probe) []executor.Probe {
	var out []executor.Probe
	for _, p := range all {
		if p.Command == nil {
			out = append(out, p)
		}
	}
	return out
}
