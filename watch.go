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
	sig := executor.WatchSignals{
		// ProbeScript is where the target's verify: probes join every check:
		// the probe-script builder of the apply work is connected here.
		ProbeScript: "",
	}
	if f := w.FailedRuns; f != nil {
		sig.FailedRuns = &executor.FailedRuns{URL: f.URL, MaxShare: f.MaxShare, MinRuns: f.MinRuns}
	}
	check, baseline := seq.WatchCheck(sig)
	check.Timeout, baseline.Timeout = time.Duration(w.Timeout), time.Duration(w.Timeout)
	out.Check, out.Baseline = check, &baseline
	return out
}
