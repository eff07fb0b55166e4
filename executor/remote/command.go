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
// group. A TERM, HUP or INT sent to the wrapper (Local's process-group kill, sshd's
// "signal" request, sudo relaying either) is forwarded to the group the same way.
// "wait" returns early when a trapped signal arrives, hence the loop until $p is
// really gone.
//
// With announce, the wrapper first prints its pid on a line of its own
// (pidAnnounce), which the SSH transport strips from the output and uses to
// signal the wrapper through a second session when sshd does not deliver
// "signal" requests (it does not for root logins, which run without privilege
// separation).
const wrapper = `timeout -k "$2" "$1" sh -c "$3" "$4" </dev/null 2>&1 & p=$!
s=0
trap 's=1; kill -TERM -$p 2>/dev/null' HUP INT TERM
while :; do wait $p; r=$?; kill -0 $p 2>/dev/null || break; done
if [ $s = 1 ] || [ $r = 124 ] || [ $r = 137 ]; then kill -KILL -$p 2>/dev/null; fi
exit $r`

// pidAnnounce starts the line with which an announcing wrapper gives its pid.
const pidAnnounce = "@deployhook-pid "

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
//	exec [sudo -n [-u USER] --] sh -c WRAPPER deployhook SECS GRACE INNER NAME
//
// INNER exports cmd.Env (names checked, values quoted), changes into cmd.Dir and
// then runs cmd.Run. Environment and directory are set inside the sudo'd shell,
// because sudo resets the environment. The result is meant for "sh -c" (Local) or
// an SSH exec request (the login shell runs it).
func commandLine(cmd executor.Command, grace time.Duration, announcePid bool) (string, error) {
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
	return fmt.Sprintf("exec %ssh -c %s deployhook %s %s %s %s", sudoPrefix(cmd),
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
