package config

import (
	"strings"
	"testing"
	"time"
)

// replicas: true is refused without a PostgreSQL journal, and accepted with
// store or DEPLOYHOOK_DATABASE_URL.
func TestConfig_validateReplicas(t *testing.T) {
	tests := []struct {
		name     string
		c        Config
		wantFail bool
	}{
		{"off", Config{}, false},
		{"SQLite journal", Config{Replicas: true}, true},
		{"store", Config{Replicas: true, Store: "postgres://deployhook@db/deployhook"}, false},
		{"environment", Config{Replicas: true, DatabaseURL: "postgres://deployhook:pw@db/deployhook"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.c.validateReplicas()
			if got := len(errs) > 0; got != tt.wantFail {
				t.Fatalf("validateReplicas() = %v, want failure %v", errs, tt.wantFail)
			}
			if tt.wantFail && !strings.Contains(errs[0].Error(), "DEPLOYHOOK_DATABASE_URL") {
				t.Errorf("error %q does not say what to set", errs[0])
			}
		})
	}
}

// lane_lease is read from the YAML into LaneLease, left 0 (the executor's
// default) when absent, and refused outside its bounds or without replicas,
// each time saying what to write.
func TestValidate_LaneLease(t *testing.T) {
	const base = "ui: {auth: none}\nstore: postgres://deployhook@db.internal/deployhook\ntargets: [{name: prod, repo: acme/app, transport: local, steps: [{name: deploy, run: \"true\", timeout: 1m}]}]\n"
	tests := []struct {
		name string
		yaml string
		want time.Duration // LaneLease when valid
		err  string        // the problem, "" when valid
	}{
		{"default", "replicas: true\n", 0, ""},
		{"15s", "replicas: true\nlane_lease: 15s\n", 15 * time.Second, ""},
		{"lowest", "replicas: true\nlane_lease: 3s\n", 3 * time.Second, ""},
		{"highest", "replicas: true\nlane_lease: 5m\n", 5 * time.Minute, ""},
		{"too short", "replicas: true\nlane_lease: 2s\n", 0,
			"lane_lease 2s: between 3s and 5m0s (default 15s); after a replica dies, another takes its targets' deploys over this long after its last renewal"},
		{"too long", "replicas: true\nlane_lease: 301s\n", 0,
			"lane_lease 5m1s: between 3s and 5m0s (default 15s); after a replica dies, another takes its targets' deploys over this long after its last renewal"},
		{"without replicas", "lane_lease: 15s\n", 0, "lane_lease is only for replicas: set replicas: true, or remove lane_lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, problems := loadProblems(t, tt.yaml+base)
			if tt.err != "" {
				if len(problems) != 1 || problems[0] != tt.err {
					t.Fatalf("problems = %q, want [%q]", problems, tt.err)
				}
				return
			}
			if problems != nil {
				t.Fatalf("problems = %q, want none", problems)
			}
			if got := time.Duration(c.LaneLease); got != tt.want || !c.Replicas {
				t.Errorf("LaneLease = %v (replicas %v), want %v with replicas", got, c.Replicas, tt.want)
			}
		})
	}
}

// The lane_lease line of example.yaml, uncommented next to replicas: true
// and a store, is valid and gives the default lease.
func TestExample_LaneLease(t *testing.T) {
	var line string
	for l := range strings.Lines(string(Example())) {
		if strings.HasPrefix(l, "# lane_lease:") {
			line = strings.TrimPrefix(l, "# ")
		}
	}
	if line == "" {
		t.Fatal("no lane_lease line in example.yaml")
	}
	c, problems := loadProblems(t, "replicas: true\nstore: postgres://deployhook@db.internal/deployhook\n"+line+applyBase)
	if problems != nil {
		t.Fatalf("problems = %q", problems)
	}
	if time.Duration(c.LaneLease) != 15*time.Second {
		t.Errorf("example lane_lease = %v, want 15s (the default, spelled out)", time.Duration(c.LaneLease))
	}
}
