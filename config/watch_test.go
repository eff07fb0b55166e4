package config

import (
	"strings"
	"testing"
	"time"
)

// watchTarget is ssh8 with the given lines added to its target.
func watchTarget(t *testing.T, lines string) Target {
	t.Helper()
	c := withDefaults(t, ssh8+lines)
	return c.Targets[0]
}

func TestValidateWatch(t *testing.T) {
	steps := "    steps: [{name: deploy, run: ./deploy.sh, timeout: 5m}]\n"
	tests := []struct {
		name  string
		lines string
		want  string // "" for no problem
	}{
		{"no watch", "", ""},
		{"for only", "    watch: {for: 15m}\n", ""},
		{"every key", "    watch: {for: 15m, every: 30s, trips: 2, timeout: 1m, failed_runs: {max_share: 0.5, min_runs: 3, url: \"http://127.0.0.1:3000/graphql\"}}\n", ""},
		{"failed runs with defaults", "    watch: {for: 15m, failed_runs: {}}\n", ""},
		{"own check with steps", steps + "    watch: {for: 15m, run: ./check.sh}\n", ""},
		{"no for", "    watch: {every: 30s}\n", "watch needs for: how long to keep checking after a deploy (e.g. for: 15m)"},
		{"for too long", "    watch: {for: 2d}\n", "watch.for 48h0m0s: at most 24h"},
		{"every too short", "    watch: {for: 15m, every: 1s}\n", "watch.every 1s: at least 5s between checks"},
		{"every longer than for", "    watch: {for: 1m, every: 2m}\n", "watch.every 2m0s is longer than watch.for 1m0s: no check would run"},
		{"trips", "    watch: {for: 15m, trips: -1}\n", "watch.trips -1: between 1 and 100"},
		{"timeout", "    watch: {for: 15m, timeout: 1h}\n", "watch.timeout 1h0m0s: between 1s and 10m"},
		{"rollback off", "    rollback: false\n    watch: {for: 15m}\n", "watch needs rollback: true: the watch rolls back a deploy that degrades"},
		{"steps without run", steps + "    watch: {for: 15m}\n", "watch on a target with steps: needs watch.run"},
		{"run and failed runs", "    watch: {for: 15m, run: ./check.sh, failed_runs: {}}\n", "give failed_runs (the default check reads Dagster's runs) or run (a check of your own), not both"},
		{"share above 1", "    watch: {for: 15m, failed_runs: {max_share: 1.5}}\n", "watch.failed_runs.max_share 1.5: a share of runs above 0 and at most 1"},
		{"negative min runs", "    watch: {for: 15m, failed_runs: {min_runs: -2}}\n", "watch.failed_runs.min_runs -2: at least 1 run"},
		{"url", "    watch: {for: 15m, failed_runs: {url: \"127.0.0.1:3000\"}}\n", "watch.failed_runs.url \"127.0.0.1:3000\": the Dagster webserver's GraphQL endpoint"},
		{"fleet", "    vms: [dagster-1, dagster-2]\n    watch: {for: 15m}\n", "watch is for a target on one VM: a fleet (vms, group, labels or ssh.addresses) has no watch yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := watchTarget(t, tt.lines)
			problems := validateWatch("targets[0] (prod)", tg)
			checkOne(t, problems, tt.want)
			if tt.want != "" && !strings.HasPrefix(problems[0].Error(), "targets[0] (prod): watch") {
				t.Errorf("problem %q does not say where", problems[0])
			}
		})
	}
}

// The whole configuration's validation reports the watch's problems.
func TestValidate_Watch(t *testing.T) {
	c := withDefaults(t, ssh8+"    watch: {for: 15m, every: 1h}\n")
	c.WebhookSecrets = [][]byte{[]byte("0123456789abcdef")}
	c.GitHub.Report = boolPtr(false)
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "targets[0] (prod): watch.every 1h0m0s is longer than watch.for 15m0s") {
		t.Errorf("Validate = %v, want the watch's problem", err)
	}
}

func TestWatch_WithDefaults(t *testing.T) {
	got := watchTarget(t, "    watch: {for: 15m, failed_runs: {}}\n").Watch.WithDefaults()
	if time.Duration(got.For) != 15*time.Minute || time.Duration(got.Every) != 30*time.Second || got.Trips != 2 ||
		time.Duration(got.Timeout) != time.Minute || got.Run != "" {
		t.Errorf("WithDefaults = %+v", got)
	}
	if f := got.FailedRuns; f == nil || f.MaxShare != 0.5 || f.MinRuns != 3 || f.URL != "http://127.0.0.1:3000/graphql" {
		t.Errorf("failed_runs with defaults = %+v", f)
	}
	if w := watchTarget(t, "    watch: {for: 15m}\n").Watch.WithDefaults(); w.FailedRuns != nil {
		t.Errorf("failed_runs is on without the key: %+v", w.FailedRuns)
	}
}

// Unknown keys under watch: are found like any other.
func TestParse_WatchUnknownKey(t *testing.T) {
	_, err := Parse([]byte(ssh8 + "    watch: {for: 15m, trip: 2, failed_runs: {max_shares: 0.5}}\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown key "trip" in targets[0] (prod).watch; did you mean "trips"?`) ||
		!strings.Contains(err.Error(), `unknown key "max_shares" in targets[0] (prod).watch.failed_runs; did you mean "max_share"?`) {
		t.Errorf("Parse = %v", err)
	}
}

// The watch block of example.yaml, uncommented, is a valid watch.
func TestExample_Watch(t *testing.T) {
	var block []string
	in := false
	for line := range strings.Lines(string(Example())) {
		switch {
		case strings.HasPrefix(line, "    # watch:"):
			in = true
		case in && !strings.HasPrefix(line, "    #   "):
			in = false
		}
		if in && !strings.HasPrefix(line, "    #   #") {
			block = append(block, "    "+strings.TrimPrefix(line, "    # "))
		}
	}
	if len(block) < 5 {
		t.Fatalf("no watch block in example.yaml: %q", block)
	}
	tg := watchTarget(t, strings.Join(block, ""))
	if tg.Watch == nil || tg.Watch.FailedRuns == nil || time.Duration(tg.Watch.For) != 15*time.Minute {
		t.Fatalf("example watch = %+v", tg.Watch)
	}
	checkOne(t, validateWatch("targets[0] (prod)", tg), "")
}
