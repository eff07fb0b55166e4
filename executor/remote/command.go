package remote

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deployhook/deployhook/executor"

	"github.com/deployhook/deployhook/internal/shell"
)

// DefaultKillGrace is how long a timed-out or cancelled step has between SIGTERM and
// SIGKILL.
const DefaultKillGrace = 5 * time.Second

// Exit codes of the wrapper that mean "killed by the timeout": coreutils timeout(1)
// exits 124 when it had to send the TERM signal and 128+9 when it had to follow up
// with KILL (--kill-after). See timeout(1), EXIT STATUS.
const (
	exitTimedOut = 124
	exitKilled   = 137
)

// wrapper is the fixed shell program that runs every step on the target, as the
// step's user. It never contains data from configuration: the timeout, the grace,
// the inner script and the step's name come in as positional parameters
// ($1 timeout, $2 kill grace, $3 script, $4 name), so nothing can inject into it.
//
// timeout(1) runs in the background of this shell so that its pid ($p) is known.
// Not run with --foreground, timeout makes itself the leader of a new process group
// and, when the time is up, signals that whole group (the script, its children and
// grandchildren such as "sleep 1000 &"), then KILLs it after the grace. timeout
// exits as soon as its direct child is gone, which can leave group members that
// ignore TERM; so after a timeout or a signal the wrapper KILLs what is left of the
// group, and does not exit before the group is gone (zombies count until they are
// reaped; after about 30 s it gives up and says so). A TERM, HUP or INT sent to the
// wrapper is forwarded to the group the same way; when it arrives before timeout
// has made its group, timeout itself is signalled. "wait" returns early when a
// trapped signal arrives, hence the loop until $p is really gone.
//
// The wrapper writes nothing to the step's output while it runs (its stderr is
// /dev/null, the output is kept as fd 4 for a last warning): after a dropped
// connection the output is a broken pipe, and a shell message such as
// "Terminated" would kill the wrapper with SIGPIPE before it killed the group.
//
// The wrapper's stdin stays connected to deployhook (the SSH channel, Local's
// pipe) for as long as the step runs; the step's script gets /dev/null. A
// watcher, a subshell reading that stdin (fd 3, because POSIX sh gives an
// asynchronous list /dev/null as stdin), sends the wrapper USR1 when it reaches
// end of file: the connection dropped, deployhook died or deployhook ended the
// step on purpose (it closes its side to kill a step). The wrapper then kills
// the group as for TERM. On a normal exit the wrapper kills the watcher, which
// holds nothing else (its output goes to /dev/null).
//
// A step that exits by itself is not waited for beyond its direct child:
// processes it left running in the background (on purpose, as a daemon) stay.
const wrapper = `p= s=0 e=
k() { s=1; [ -z "$p" ] || kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; }
trap k HUP INT TERM
trap 'e=1; k' USR1
exec 3<&0 4>&2 2>/dev/null
{ while read -r _; do :; done; kill -USR1 $$; } <&3 >/dev/null 4>&- & w=$!
timeout -k "$2" "$1" sh -c "$3" "$4" </dev/null 3<&- 2>&1 4>&- & p=$!
[ $s = 0 ] || k
while :; do wait $p; r=$?; kill -0 $p 2>/dev/null || break; done
g=$p p=
[ -n "$e" ] || kill $w 2>/dev/null
if [ $s = 1 ] || [ $r = 124 ] || [ $r = 137 ]; then
	n=0
	while kill -KILL -$g 2>/dev/null; do
		n=$((n+1))
		if [ $n -gt 300 ]; then echo "deployhook: processes of the step survived SIGKILL" >&4; break; fi
		sleep 0.1
	done
fi
exit $r`

// pidAnnounce starts the line with which an announcing wrapper gives its pid.
const pidAnnounce = "@deployhook-pid "

// announce, put before the wrapper, prints the wrapper's pid on a line of its
// own, which the SSH transport strips from the output and uses to send the
// wrapper SIGTERM through a second session, besides closing its stdin.
const announce = `echo "` + pidAnnounce + `$$"
`

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// seconds formats d for timeout(1) ("1.5s"): fractional seconds are allowed.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// validUser reports whether u looks like a POSIX user name; sudo would refuse
// anything else anyway, this only gives a clearer error sooner.
var validUser = regexp.MustCompile(`^[a-z_][a-z0-9_.-]*[$]?$`)

// commandLine builds the one POSIX shell command line that runs cmd on a target:
//
//	exec [flock -o -s STEPS] [sudo -n [-u USER] --] sh -c WRAPPER deployhook SECS GRACE INNER NAME
//
// INNER exports cmd.Env (names checked, values quoted), changes into cmd.Dir and
// then runs cmd.Run. Environment and directory are set inside the sudo'd shell,
// because sudo resets the environment. steps, when not empty, is the shell word
// of the steps lock (see lockPaths): flock(1) holds it shared, as the login
// user, for as long as the wrapper runs; -o keeps the descriptor out of the
// step's processes, so a daemon a step leaves behind does not hold it. The
// result is meant for "sh -c" (Local) or an SSH exec request (the login shell
// runs it).
func commandLine(cmd executor.Command, grace time.Duration, announcePid bool, steps string) (string, error) {
	if cmd.Timeout <= 0 {
		return "", fmt.Errorf("step %q: timeout must be positive, got %v", cmd.Name, cmd.Timeout)
	}
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	if cmd.User != "" && !validUser.MatchString(cmd.User) {
		return "", fmt.Errorf("step %q: invalid user name %q", cmd.Name, cmd.User)
	}
	var inner strings.Builder
	names := make([]string, 0, len(cmd.Env))
	for k := range cmd.Env {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("step %q: invalid environment variable name %q (want [A-Za-z_][A-Za-z0-9_]*)", cmd.Name, k)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&inner, "export %s=%s\n", k, shell.Quote(cmd.Env[k]))
	}
	if cmd.Dir != "" {
		fmt.Fprintf(&inner, "cd -- %s || exit 1\n", shell.Quote(cmd.Dir))
	}
	inner.WriteString(cmd.Run)

	name := "deployhook"
	if cmd.Name != "" {
		name = "deployhook: " + cmd.Name
	}
	w := wrapper
	if announcePid {
		w = announce + wrapper
	}
	hold := ""
	if steps != "" {
		hold = "flock -o -s " + steps + " "
	}
	return fmt.Sprintf("exec %s%ssh -c %s deployhook %s %s %s %s", hold, sudoPrefix(cmd),
		shell.Quote(w), seconds(cmd.Timeout), seconds(grace), shell.Quote(inner.String()), shell.Quote(name)), nil
}

// sudoPrefix is the sudo command, with a trailing space, that runs as cmd's user;
// empty for the login user. -n: never prompt, fail at once.
func sudoPrefix(cmd executor.Command) string {
	switch {
	case cmd.User != "":
		return "sudo -n -u " + shell.Quote(cmd.User) + " -- "
	case cmd.Sudo:
		return "sudo -n -- "
	}
	return ""
}

// timedOut reports whether a step that exited with code after running for elapsed
// was killed by its timeout. The clock check keeps a step that itself exits 124 or
// 137 (an OOM kill, say) early from being reported as a timeout.
func timedOut(code int, elapsed, timeout time.Duration) bool {
	return (code == exitTimedOut || code == exitKilled) && elapsed >= timeout
}
