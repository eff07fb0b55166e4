package executor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/internal/dagstertest"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// The default watch check's scripts, parsed and run by a real sh against a
// stand-in systemctl and the fake Dagster GraphQL endpoint.

// systemctlStandIn answers "show --property=P --value UNIT" from files in
// $CTL: state-UNIT (default active) and restarts-UNIT (default 0).
const systemctlStandIn = `#!/bin/sh
[ "$1" = show ] || { echo "unexpected: $*" >&2; exit 1; }
prop=${2#--property=}; unit=$4
case $prop in
ActiveState) cat "$CTL/state-$unit" 2>/dev/null || echo active ;;
NRestarts) cat "$CTL/restarts-$unit" 2>/dev/null || echo 0 ;;
*) exit 1 ;;
esac
`

// checkEnv makes a directory with the stand-in systemctl and returns the
// control directory and the environment the scripts run with.
func checkEnv(t *testing.T) (ctl string, env []string) {
	t.Helper()
	sshdtest.Require(t, "curl", "/usr/bin/curl")
	dir := t.TempDir()
	bin, ctl := filepath.Join(dir, "bin"), filepath.Join(dir, "ctl")
	for _, d := range []string{bin, ctl} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(systemctlStandIn), 0o755); err != nil {
		t.Fatal(err)
	}
	return ctl, []string{"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin", "CTL=" + ctl, "LC_ALL=C"}
}

// runScript runs script with sh and returns its exit code and output.
func runScript(t *testing.T, script string, env ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestWatchCheck_Parses(t *testing.T) {
	fr := &FailedRuns{MaxShare: 0.5, MinRuns: 3}
	for _, tc := range []struct {
		name string
		seq  Sequence
		sig  WatchSignals
	}{
		{"no units", Sequence{}, WatchSignals{}},
		{"units", Sequence{Units: []string{"dagster-code", "dagster"}}, WatchSignals{}},
		{"units, probes and runs", Sequence{Units: []string{"a@b.service"}}, WatchSignals{ProbeScript: "exit 0", FailedRuns: fr}},
	} {
		check, baseline := tc.seq.WatchCheck(tc.sig)
		for _, st := range []Step{check, baseline} {
			if out, err := exec.Command("sh", "-n", "-c", st.Run).CombinedOutput(); err != nil {
				t.Errorf("%s: %s: sh -n: %v\n%s\n%s", tc.name, st.Name, err, out, st.Run)
			}
			if st.Timeout <= 0 || st.User != "" || st.Sudo {
				t.Errorf("%s: %s runs as %q sudo %v with timeout %s; want the login user, bounded", tc.name, st.Name, st.User, st.Sudo, st.Timeout)
			}
		}
	}
}

func TestWatchCheck_Baseline(t *testing.T) {
	ctl, env := checkEnv(t)
	os.WriteFile(filepath.Join(ctl, "restarts-dagster"), []byte("4\n"), 0o644)
	_, baseline := Sequence{Units: []string{"dagster-code", "dagster"}}.WatchCheck(WatchSignals{})
	before := time.Now().Unix()
	code, out := runScript(t, baseline.Run, env...)
	m := regexp.MustCompile(`^since=(\d+) n0=0 n1=4\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("baseline exit %d, output %q; want since=T n0=0 n1=4", code, out)
	}
	if since, _ := strconv.ParseInt(m[1], 10, 64); since < before-1 || since > time.Now().Unix()+1 {
		t.Errorf("since=%d, want the clock now (%d)", since, before)
	}
	os.WriteFile(filepath.Join(ctl, "restarts-dagster"), []byte("\n"), 0o644)
	if code, out := runScript(t, baseline.Run, env...); code != 2 {
		t.Errorf("unreadable NRestarts: exit %d, output %q; want 2", code, out)
	}
}

func TestWatchCheck_Run(t *testing.T) {
	type counts struct{ failedAfter, okAfter, failedBefore, okBefore int }
	tests := []struct {
		name     string
		states   map[string]string // unit → ActiveState, default active
		restarts map[string]string // unit → NRestarts now; the baseline has 0 and 2
		runs     counts
		probes   string
		down     bool // the GraphQL endpoint answers 503
		wantCode int
		wantLast string
	}{
		{name: "healthy", runs: counts{0, 3, 0, 9}, wantCode: 0,
			wantLast: "dagster-code, dagster active, no restarts; 0 of 3 runs failed since deploy, 0 of 9 before"},
		{name: "runs failing since the deploy", runs: counts{4, 1, 0, 9}, wantCode: 1,
			wantLast: "4 of 5 runs failed since deploy, 0 of 9 before"},
		{name: "nothing ran before", runs: counts{2, 1, 0, 0}, wantCode: 1,
			wantLast: "2 of 3 runs failed since deploy, 0 of 0 before"},
		{name: "exactly the share", runs: counts{2, 2, 1, 3}, wantCode: 1,
			wantLast: "2 of 4 runs failed since deploy, 1 of 4 before"},
		{name: "too few runs", runs: counts{2, 0, 0, 9}, wantCode: 0,
			wantLast: "dagster-code, dagster active, no restarts; 2 of 2 runs failed since deploy, 0 of 9 before"},
		{name: "below the share", runs: counts{1, 2, 0, 9}, wantCode: 0,
			wantLast: "dagster-code, dagster active, no restarts; 1 of 3 runs failed since deploy, 0 of 9 before"},
		{name: "no worse than before", runs: counts{3, 1, 6, 2}, wantCode: 0,
			wantLast: "dagster-code, dagster active, no restarts; 3 of 4 runs failed since deploy, 6 of 8 before"},
		{name: "unit failed", states: map[string]string{"dagster": "failed"}, runs: counts{4, 1, 0, 9}, wantCode: 1,
			wantLast: "dagster is failed"},
		{name: "units restarted", restarts: map[string]string{"dagster-code": "1", "dagster": "5"}, wantCode: 1,
			wantLast: "dagster-code restarted 1 time since deploy; dagster restarted 3 times since deploy"},
		{name: "restarted by hand", restarts: map[string]string{"dagster": "0"}, wantCode: 2,
			wantLast: "dagster was restarted by hand since the deploy (NRestarts 2 -> 0): the check cannot tell"},
		{name: "probe fails", probes: "echo probing\necho 'http 127.0.0.1:3000/server_info: 500, want 200'\nexit 1", wantCode: 1,
			wantLast: "http 127.0.0.1:3000/server_info: 500, want 200"},
		{name: "probe passes", probes: "echo probing", runs: counts{0, 1, 0, 0}, wantCode: 0,
			wantLast: "dagster-code, dagster active, no restarts; 0 of 1 runs failed since deploy, 0 of 0 before"},
		{name: "probe cannot tell", probes: "exit 3", wantCode: 2, wantLast: "the probes exited 3"},
		{name: "Dagster down", down: true, wantCode: 2, wantLast: "Dagster's GraphQL API did not answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctl, env := checkEnv(t)
			for u, s := range tt.states {
				os.WriteFile(filepath.Join(ctl, "state-"+u), []byte(s+"\n"), 0o644)
			}
			restarts := map[string]string{"dagster-code": "0", "dagster": "2"}
			for u, n := range tt.restarts {
				restarts[u] = n
			}
			for u, n := range restarts {
				os.WriteFile(filepath.Join(ctl, "restarts-"+u), []byte(n+"\n"), 0o644)
			}
			gql := dagstertest.Start(t)
			gql.Down(tt.down)
			// The deploy was a minute ago: the window before it is the
			// minute before that. Runs are half-way into their windows.
			now := time.Now()
			since := now.Add(-time.Minute)
			add := func(n int, status string, at time.Time) {
				for i := range n {
					gql.Add(dagstertest.Run{ID: fmt.Sprintf("%s-%d-%d", status, at.Unix(), i), Status: status, Created: at, Updated: at})
				}
			}
			add(tt.runs.failedAfter, "FAILURE", now.Add(-30*time.Second))
			add(tt.runs.okAfter, "SUCCESS", now.Add(-30*time.Second))
			add(tt.runs.failedBefore, "FAILURE", since.Add(-30*time.Second))
			add(tt.runs.okBefore, "SUCCESS", since.Add(-30*time.Second))
			add(5, "FAILURE", since.Add(-5*time.Minute)) // before both windows

			check, _ := Sequence{Units: []string{"dagster-code", "dagster"}}.WatchCheck(WatchSignals{
				ProbeScript: tt.probes,
				FailedRuns:  &FailedRuns{URL: gql.URL, MaxShare: 0.5, MinRuns: 3},
			})
			code, out := runScript(t, check.Run, append(env,
				fmt.Sprintf("DEPLOYHOOK_WATCH_BASELINE=since=%d n0=0 n1=2", since.Unix()))...)
			if code != tt.wantCode || lastLine(out) != tt.wantLast {
				t.Errorf("exit %d, last line %q; want %d, %q\noutput:\n%s", code, lastLine(out), tt.wantCode, tt.wantLast, out)
			}
			if got := watchReason(out); tt.wantCode == 1 && strings.Contains(got, gql.URL) {
				t.Errorf("public reason %q names the endpoint", got)
			}
		})
	}
}

// A baseline taken after the deploy's end (a watch resumed after
// deployhook stopped) dates since back by $DEPLOYHOOK_WATCH_ELAPSED, so that
// Dagster's runs are still counted from the deploy; the unit restarts are
// counted from now. A value that is not a number makes it fail.
func TestWatchCheck_BaselineAtResume(t *testing.T) {
	ctl, env := checkEnv(t)
	os.WriteFile(filepath.Join(ctl, "restarts-dagster"), []byte("7\n"), 0o644)
	_, baseline := Sequence{Units: []string{"dagster"}}.WatchCheck(WatchSignals{})
	before := time.Now().Unix()
	code, out := runScript(t, baseline.Run, append(env, "DEPLOYHOOK_WATCH_ELAPSED=300")...)
	m := regexp.MustCompile(`^since=(\d+) n0=7\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("baseline exit %d, output %q; want since=T n0=7", code, out)
	}
	if since, _ := strconv.ParseInt(m[1], 10, 64); since < before-301 || since > time.Now().Unix()-299 {
		t.Errorf("since=%d, want the clock 300 s ago (%d)", since, before-300)
	}
	for _, bad := range []string{"-5", "3e2", "1;id"} {
		if code, out := runScript(t, baseline.Run, append(env, "DEPLOYHOOK_WATCH_ELAPSED="+bad)...); code != 2 ||
			lastLine(out) != "DEPLOYHOOK_WATCH_ELAPSED is not a number: "+bad {
			t.Errorf("DEPLOYHOOK_WATCH_ELAPSED=%s: exit %d, output %q; want 2", bad, code, out)
		}
	}
}

// Without a baseline the check cannot tell.
func TestWatchCheck_NoBaseline(t *testing.T) {
	_, env := checkEnv(t)
	check, _ := Sequence{Units: []string{"dagster"}}.WatchCheck(WatchSignals{})
	if code, out := runScript(t, check.Run, env...); code != 2 || lastLine(out) != "no baseline" {
		t.Errorf("exit %d, output %q; want 2, no baseline", code, out)
	}
}
