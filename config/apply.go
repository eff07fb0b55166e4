package config

import (
	"slices"
	"strings"

	"github.com/deployhook/deployhook/executor"
)

// ApplyOptions are a target's keys for what the default sequence installs
// from the checkout besides the code (issue 13). Nothing is applied unless
// apply lists it; the sub-keys default to Dagster's layout.
type ApplyOptions struct {
	// Apply lists what is applied: units, dagster_yaml.
	Apply []string `yaml:"apply"`
	// ApplyUnits says where the unit files are and go (default infra/files
	// to /etc/systemd/system) and in which order applied units restart.
	ApplyUnits *ApplyUnits `yaml:"apply_units"`
	// ApplyDagsterYAML says where dagster.yaml is and goes (default
	// dagster.yaml to /var/dagster/home, DAGSTER_HOME).
	ApplyDagsterYAML *ApplyDagsterYAML `yaml:"apply_dagster_yaml"`
	// ApplyBackupDir keeps, per job, the files the job replaced (default
	// /var/lib/deployhook/backup; root's, mode 0700).
	ApplyBackupDir string `yaml:"apply_backup_dir"`
}

// ApplyUnits is apply_units.
type ApplyUnits struct {
	From  string   `yaml:"from"`
	To    string   `yaml:"to"`
	Order []string `yaml:"order"`
}

// ApplyDagsterYAML is apply_dagster_yaml.
type ApplyDagsterYAML struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// The values of apply.
const (
	ApplyUnitsValue       = "units"
	ApplyDagsterYAMLValue = "dagster_yaml"
)

// Executor returns what the default sequence applies (executor.Apply), with
// the executor's defaults for what is not set.
func (a ApplyOptions) Executor() executor.Apply {
	out := executor.Apply{BackupDir: a.ApplyBackupDir}
	if slices.Contains(a.Apply, ApplyUnitsValue) {
		out.Units = &executor.ApplyUnits{}
		if u := a.ApplyUnits; u != nil {
			out.Units = &executor.ApplyUnits{From: u.From, To: u.To, Order: u.Order}
		}
	}
	if slices.Contains(a.Apply, ApplyDagsterYAMLValue) {
		out.DagsterYAML = &executor.ApplyDagsterYAML{}
		if y := a.ApplyDagsterYAML; y != nil {
			out.DagsterYAML = &executor.ApplyDagsterYAML{From: y.From, To: y.To}
		}
	}
	return out
}

// validateApply checks target t's apply keys: known values, once each, only
// for the default sequence, no sub-key for something apply does not list
// (nobody should believe it is applied), the paths (executor.Apply.Validate)
// and a backup directory no other user can write to.
func validateApply(where string, t Target) []error {
	var p problems
	a := t.ApplyOptions
	if len(a.Apply) == 0 && a.ApplyUnits == nil && a.ApplyDagsterYAML == nil && a.ApplyBackupDir == "" {
		return nil
	}
	seen := map[string]bool{}
	for _, v := range a.Apply {
		switch {
		case v != ApplyUnitsValue && v != ApplyDagsterYAMLValue:
			p.add("%s: apply %q: use %s or %s", where, v, ApplyUnitsValue, ApplyDagsterYAMLValue)
		case seen[v]:
			p.add("%s: apply lists %s twice", where, v)
		}
		seen[v] = true
	}
	if len(t.Steps) > 0 || t.AppDir == "" {
		p.add("%s: apply needs the default sequence (app_dir and app_user, no steps:): with steps:, install files in a step of your own", where)
	}
	if a.ApplyUnits != nil && !seen[ApplyUnitsValue] {
		p.add("%s: apply_units is set but apply does not list units: add units to apply, or remove apply_units", where)
	}
	if a.ApplyDagsterYAML != nil && !seen[ApplyDagsterYAMLValue] {
		p.add("%s: apply_dagster_yaml is set but apply does not list dagster_yaml: add dagster_yaml to apply, or remove apply_dagster_yaml", where)
	}
	if err := a.Executor().Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			p.add("%s: %s", where, line)
		}
	}
	if d := a.ApplyBackupDir; d != "" {
		if shared := sharedDir(strings.TrimSuffix(d, "/") + "/x"); shared != "" || sharedDir(d) != "" {
			p.add("%s: apply_backup_dir %q is in or is %s, which every user can write: use a directory only root can write (default %s)",
				where, d, shared+sharedDir(d), executor.DefaultBackupDir)
		}
	}
	return p
}
