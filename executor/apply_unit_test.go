package executor

import (
	"slices"
	"testing"
	"time"
)

func TestApplyNotes_Read(t *testing.T) {
	var n applyNotes
	n.read("installed /etc/systemd/system/a.service\n" + AppliedMarker + "infra/files/a.service\n" +
		InPlaceMarker + "infra/files/b.service\r\n" + NotUninstalledMarker + "infra/files/c.timer\n" +
		AppliedMarker + "infra/files/a.service\n" + AppliedMarker + "x@host\n")
	n.read(AppliedMarker + "dagster.yaml\n")
	if want := []string{"infra/files/a.service", "dagster.yaml"}; !slices.Equal(n.applied, want) {
		t.Errorf("applied %q, want %q (once each, nothing unsafe)", n.applied, want)
	}
	if !slices.Equal(n.inPlace, []string{"infra/files/b.service"}) || !slices.Equal(n.removed, []string{"infra/files/c.timer"}) {
		t.Errorf("in place %q, removed %q", n.inPlace, n.removed)
	}
}

func TestChangeSummary(t *testing.T) {
	def := []string{"infra/**", "dagster.yaml"}
	tests := []struct {
		name       string
		notes      applyNotes
		notApplied []string
		changed    []string
		known      bool
		want       string
	}{
		{"nothing changed", applyNotes{}, def, []string{"app.py"}, true, ""},
		{"nothing applied", applyNotes{}, def, []string{"dagster.yaml", "infra/main.tf", "app.py"}, true,
			"; not applied: dagster.yaml; infra/ changed: terraform apply needed"},
		{"dagster.yaml applied", applyNotes{applied: []string{"dagster.yaml"}}, def, []string{"dagster.yaml"}, true,
			"; applied: dagster.yaml"},
		{"units applied, terraform not", applyNotes{applied: []string{"infra/files/dagster-code.service"}}, def,
			[]string{"infra/files/dagster-code.service", "infra/main.tf"}, true,
			"; applied: dagster-code.service; infra/ changed: terraform apply needed"},
		{"only unit files under infra", applyNotes{applied: []string{"infra/files/a.service"}, inPlace: []string{"infra/files/b.timer"}}, def,
			[]string{"infra/files/a.service", "infra/files/b.timer"}, true, "; applied: a.service"},
		{"removed unit", applyNotes{removed: []string{"infra/files/x.service"}}, def, []string{"infra/files/x.service"}, true,
			"; infra/files/x.service removed: not uninstalled"},
		{"change unknown", applyNotes{applied: []string{"dagster.yaml"}}, def, nil, false, "; applied: dagster.yaml"},
		{"no not_applied", applyNotes{}, nil, []string{"infra/main.tf"}, true, ""},
		{"other globs sorted", applyNotes{}, []string{"secrets/**", "docs/*"}, []string{"docs/a.md", "secrets/x"}, true,
			"; not applied: docs/, secrets/"},
	}
	for _, tc := range tests {
		if got := changeSummary(tc.notes, tc.notApplied, tc.changed, tc.known); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestApply_Validate(t *testing.T) {
	tests := []struct {
		name  string
		apply Apply
		want  string
	}{
		{"defaults", Apply{Units: &ApplyUnits{}, DagsterYAML: &ApplyDagsterYAML{}}, ""},
		{"dagster layout", Apply{Units: &ApplyUnits{From: "infra/files", To: "/etc/systemd/system", Order: []string{"dagster-code.service", "x.timer"}},
			DagsterYAML: &ApplyDagsterYAML{From: "dagster.yaml", To: "/var/dagster/home"}, BackupDir: "/var/lib/deployhook/backup"}, ""},
		{"from outside", Apply{Units: &ApplyUnits{From: "../etc"}},
			`apply_units.from "../etc": a clean path inside the checkout, relative to app_dir (e.g. infra/files)`},
		{"from absolute", Apply{DagsterYAML: &ApplyDagsterYAML{From: "/etc/dagster.yaml"}},
			`apply_dagster_yaml.from "/etc/dagster.yaml": a clean path inside the checkout, relative to app_dir (e.g. dagster.yaml)`},
		{"to relative", Apply{Units: &ApplyUnits{To: "etc/systemd"}}, `apply_units.to "etc/systemd": a clean absolute directory on the target`},
		{"to root", Apply{DagsterYAML: &ApplyDagsterYAML{To: "/"}}, `apply_dagster_yaml.to "/": a clean absolute directory on the target`},
		{"order", Apply{Units: &ApplyUnits{Order: []string{"dagster-code", "a.service", "a.service"}}},
			"apply_units.order: \"dagster-code\" is not a unit file name: write NAME.service or NAME.timer\napply_units.order: \"a.service\" is given twice"},
		{"backup", Apply{BackupDir: "backup"}, `apply_backup_dir "backup": a clean absolute directory on the target`},
	}
	for _, tc := range tests {
		got := ""
		if err := tc.apply.Validate(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The apply steps come after sync (past the checkpoint) and before the
// restarts, as root; the applied units restart after the sequence's own
// restarts; probes come last, as the app user or the command's user.
func TestSequence_ApplyAndProbeSteps(t *testing.T) {
	seq := Sequence{AppDir: "/srv/app", AppUser: "app", Units: []string{"dagster-code", "dagster"}, Settle: time.Second,
		Apply:  Apply{Units: &ApplyUnits{}, DagsterYAML: &ApplyDagsterYAML{}},
		Probes: []Probe{{TCP: "127.0.0.1:4000"}, {Command: &CommandProbe{Run: "true", User: "ops"}}, {DagsterCodeLocation: &DagsterCodeLocationProbe{Port: 4000, Location: "etl"}}},
	}
	if err := seq.Validate(); err != nil {
		t.Fatal(err)
	}
	steps, _, _, _ := seq.Steps()
	var names, users []string
	for _, s := range steps {
		names = append(names, s.Name)
		u := s.User
		if s.Sudo {
			u = "root"
		}
		users = append(users, u)
	}
	wantNames := []string{"preflight", "fetch", "checkout", "sync", "apply units", "apply dagster.yaml", "restart dagster-code", "restart dagster",
		"restart applied units", "verify", "probe: tcp port 4000", "probe: command", "probe: dagster_code_location etl"}
	wantUsers := []string{"app", "app", "app", "app", "root", "root", "root", "root", "root", "", "app", "ops", "app"}
	if !slices.Equal(names, wantNames) || !slices.Equal(users, wantUsers) {
		t.Errorf("steps %q as %q,\nwant %q as %q", names, users, wantNames, wantUsers)
	}
	byName := map[string]Step{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	if w := byName["apply units"].WhenChanged; !slices.Equal(w, []string{"infra/files/*.service", "infra/files/*.timer"}) {
		t.Errorf("apply units runs when %q changed", w)
	}
	if w := byName["apply dagster.yaml"].WhenChanged; !slices.Equal(w, []string{"dagster.yaml"}) {
		t.Errorf("apply dagster.yaml runs when %q changed", w)
	}
	if p := byName["probe: tcp port 4000"]; p.Timeout != DefaultVerifyWithin+2*time.Minute || p.Dir != "/srv/app" {
		t.Errorf("probe step timeout %v dir %q", p.Timeout, p.Dir)
	}
	dup := seq
	dup.Probes = []Probe{{TCP: "127.0.0.1:4000"}, {TCP: "localhost:4000"}}
	if err := dup.Validate(); err == nil || err.Error() != `verify[1]: a second probe named "tcp port 4000": give each its own name` {
		t.Errorf("duplicate names: %v", err)
	}
}
