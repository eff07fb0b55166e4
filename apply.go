package main

import (
	"slices"
	"time"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
)

// targetSequence is the default deploy sequence of target t, with what it
// applies and the probes it runs (issue 13), as executorTargets runs it and
// check prints its sudoers lines.
func targetSequence(t config.Target) executor.Sequence {
	return executor.Sequence{
		AppDir: t.AppDir, AppUser: t.AppUser, Units: t.Units,
		Settle: time.Duration(t.Settle), AllowDirty: t.AllowDirty,
		Apply: t.ApplyOptions.Executor(), Probes: t.VerifyOptions.Probes(),
		VerifyWithin: time.Duration(t.VerifyWithin),
	}
}

// targetSudoers returns the sudoers lines t's login user needs on the VM for
// the steps t runs (sudoersFor), as check prints them; "" with OS Login
// (its admin role grants sudo), for transport local, and when no step uses
// sudo.
func targetSudoers(t config.Target) string {
	if t.SSH.OSLogin || t.Transport == executor.TransportLocal {
		return ""
	}
	et := executorTargets(&config.Config{Targets: []config.Target{t}})[0]
	steps := slices.Clone(et.Steps)
	for _, p := range []*executor.Step{et.Current, et.Changed, et.Contains} {
		if p != nil {
			steps = append(steps, *p)
		}
	}
	return sudoersFor(t.SSH.User, steps)
}
