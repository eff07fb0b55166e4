package executor

import (
	"fmt"
	"strings"
	"time"

	"github.com/deployhook/deployhook/internal/shell"
)

// WatchSignals says what the default sequence's watch check reads besides
// its units.
type WatchSignals struct {
	// ProbeScript is the hook for the target's probes (verify:): a POSIX
	// shell fragment that runs first on every check, in a subshell, and
	// exits 1 with the failing probe's public reason as its last output line
	// when a probe fails, 0 when all pass; any other exit makes the check
	// unknown. Empty: no probes.
	ProbeScript string
	// FailedRuns, when set, adds Dagster's runs (see FailedRuns).
	FailedRuns *FailedRuns
}

// watchCheckTimeout bounds one check: a few systemctl calls and one GraphQL
// request of at most 20 s.
const watchCheckTimeout = time.Minute

// WatchCheck returns the default sequence's watch check and its baseline
// (Watch.Check, Watch.Baseline), run as the login user.
//
// The baseline prints "since=T n0=N0 n1=N1 …": the target's clock (Unix
// seconds) at the deploy's end (its clock now, less
// $DEPLOYHOOK_WATCH_ELAPSED) and each unit's NRestarts now: a watch resumed
// after deployhook stopped takes it again, and does not see the restarts
// of the gap. Each check then
// runs sig.ProbeScript, and is degraded when a unit is not active ("dagster
// is failed") or systemd restarted it since the deploy ("dagster-code
// restarted 2 times since deploy"), or, with sig.FailedRuns, when Dagster's
// runs say so ("4 of 5 runs failed since deploy, 0 of 9 before"). A unit
// whose NRestarts went down was restarted by hand: the check cannot tell, and
// is unknown. A healthy check prints a summary as its last line.
func (s Sequence) WatchCheck(sig WatchSignals) (check, baseline Step) {
	var base, chk strings.Builder
	// since is the deploy's end on the target's clock: now, less the
	// seconds deployhook counted since then (a resumed watch, a retry).
	base.WriteString(`since=$(date +%s) || exit 2
el=${DEPLOYHOOK_WATCH_ELAPSED:-0}
case $el in ''|*[!0-9]*) echo "DEPLOYHOOK_WATCH_ELAPSED is not a number: $el"; exit 2 ;; esac
since=$((since - el))
line="since=$since"
`)
	chk.WriteString(`set -f
base() {
  for kv in $DEPLOYHOOK_WATCH_BASELINE; do
    case $kv in "$1"=*) printf '%s\n' "${kv#*=}"; return 0 ;; esac
  done
  return 1
}
since=$(base since) || { echo "no baseline"; exit 2; }
`)
	if sig.ProbeScript != "" {
		fmt.Fprintf(&chk, "probes=$( (\n%s\n) 2>&1 )\nrc=$?\n", sig.ProbeScript)
		chk.WriteString(`if [ "$rc" != 0 ]; then
  [ -n "$probes" ] && printf '%s\n' "$probes"
  [ "$rc" = 1 ] && exit 1
  echo "the probes exited $rc"; exit 2
fi
`)
	}
	chk.WriteString("bad=\n")
	for i, u := range s.Units {
		// The unit's name is one quoted word, and "$u" in messages: data, never code.
		q := shell.Quote(u)
		fmt.Fprintf(&base, "u=%s\nn=$(systemctl show --property=NRestarts --value \"$u\") || exit 2\n", q)
		base.WriteString(`case $n in ''|*[!0-9]*) echo "NRestarts of $u unreadable: $n"; exit 2 ;; esac
`)
		fmt.Fprintf(&base, "line=\"$line n%d=$n\"\n", i)

		fmt.Fprintf(&chk, "u=%s\n", q)
		chk.WriteString(`s=$(systemctl show --property=ActiveState --value "$u") || { echo "systemctl show $u failed"; exit 2; }
n=$(systemctl show --property=NRestarts --value "$u") || { echo "systemctl show $u failed"; exit 2; }
`)
		fmt.Fprintf(&chk, "b=$(base n%d) || { echo \"no baseline for $u\"; exit 2; }\n", i)
		chk.WriteString(`case $n in ''|*[!0-9]*) echo "NRestarts of $u unreadable: $n"; exit 2 ;; esac
if [ "$s" != active ]; then
  bad="${bad:+$bad; }$u is $s"
elif [ "$n" -gt "$b" ]; then
  r=$((n - b)); times=times; [ "$r" = 1 ] && times=time
  bad="${bad:+$bad; }$u restarted $r $times since deploy"
elif [ "$n" -lt "$b" ]; then
  echo "$u was restarted by hand since the deploy (NRestarts $b -> $n): the check cannot tell"; exit 2
fi
`)
	}
	base.WriteString("echo \"$line\"\n")
	chk.WriteString("if [ -n \"$bad\" ]; then echo \"$bad\"; exit 1; fi\n")
	summary := "no units"
	if len(s.Units) > 0 {
		summary = strings.Join(s.Units, ", ") + " active, no restarts"
	}
	fmt.Fprintf(&chk, "summary=%s\n", shell.Quote(summary))
	if sig.FailedRuns != nil {
		chk.WriteString(failedRunsScript(*sig.FailedRuns))
	}
	chk.WriteString("echo \"$summary\"\n")
	check = Step{Name: "watch check", Run: chk.String(), Timeout: watchCheckTimeout}
	baseline = Step{Name: "watch baseline", Run: base.String(), Timeout: watchCheckTimeout}
	return check, baseline
}
