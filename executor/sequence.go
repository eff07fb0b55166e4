package executor

import (
	"fmt"
	"strings"
	"time"

	"github.com/deployhook/deployhook/internal/shell"
)

// Sequence describes the default deploy of a git checkout run by systemd units:
// the user's manual procedure (git pull, uv sync, restart both units, look at
// systemctl status), done safely.
type Sequence struct {
	AppDir     string        // the checkout on the target (/home/dagster/data-platform)
	AppUser    string        // owner of the checkout; git and uv run as this user
	Units      []string      // restarted in this order, then verified
	Settle     time.Duration // how long the units must stay up, without restarts, after the restart
	AllowDirty bool          // deploy over local changes instead of refusing
	Sync       string        // the dependency command; default "uv sync --frozen"
	SyncWhen   []string      // files whose change makes Sync run; default uv.lock, pyproject.toml
}

// Steps returns the default sequence:
//
//  1. preflight: refuse a work tree with local changes (unless AllowDirty);
//  2. fetch: fetch the branch and check that the SHA is on it (except rollbacks);
//  3. checkout (the checkpoint): check out exactly the SHA, detached, and verify
//     git rev-parse HEAD;
//  4. sync: uv sync --frozen, only when uv.lock or pyproject.toml changed;
//  5. one restart per unit, as root through sudo -n (never a password prompt);
//  6. verify: every unit active, and still active with an unchanged NRestarts
//     after Settle.
//
// It also returns the probes: current (git rev-parse HEAD) and changed (git diff
// --name-only between the previous and the new SHA).
func (s Sequence) Steps() (steps []Step, current, changed *Step) {
	sync, when := s.Sync, s.SyncWhen
	if sync == "" {
		sync = "uv sync --frozen"
	}
	if when == nil {
		when = []string{"uv.lock", "pyproject.toml"}
	}
	settle := int(s.Settle.Round(time.Second) / time.Second)
	git := Step{User: s.AppUser, Dir: s.AppDir, Timeout: 2 * time.Minute}
	with := func(st Step, name, run string) Step {
		st.Name, st.Run = name, run
		return st
	}
	if !s.AllowDirty {
		steps = append(steps, with(git, "preflight",
			`changes=$(git status --porcelain --untracked-files=no) || exit 1
if [ -n "$changes" ]; then
  echo "refusing to deploy: the work tree in $PWD has local changes:"
  echo "$changes"
  echo "commit or discard them (or set allow_dirty: true for this target)"
  exit 1
fi`))
	}
	steps = append(steps, with(git, "fetch",
		`git fetch --quiet origin "+refs/heads/$DEPLOYHOOK_BRANCH:refs/remotes/origin/$DEPLOYHOOK_BRANCH" || exit 1
if ! git cat-file -e "$DEPLOYHOOK_SHA^{commit}" 2>/dev/null; then
  echo "commit $DEPLOYHOOK_SHA is not in origin"; exit 1
fi
case "$DEPLOYHOOK_KIND" in rollback) exit 0;; esac
[ -n "$DEPLOYHOOK_ROLLBACK" ] && exit 0
if ! git merge-base --is-ancestor "$DEPLOYHOOK_SHA" "origin/$DEPLOYHOOK_BRANCH"; then
  echo "commit $DEPLOYHOOK_SHA is not on branch $DEPLOYHOOK_BRANCH"; exit 1
fi`))
	co := with(git, "checkout",
		`git -c advice.detachedHead=false checkout --quiet --detach "$DEPLOYHOOK_SHA" || exit 1
head=$(git rev-parse HEAD)
if [ "$head" != "$DEPLOYHOOK_SHA" ]; then
  echo "checked out $head, expected $DEPLOYHOOK_SHA"; exit 1
fi
echo "at $head"`)
	co.Checkpoint = true
	steps = append(steps, co)
	sy := with(git, "sync", sync)
	sy.Timeout = 15 * time.Minute
	sy.WhenChanged = when
	steps = append(steps, sy)
	for _, u := range s.Units {
		steps = append(steps, Step{
			Name: "restart " + u, Sudo: true, Timeout: 5 * time.Minute,
			Run: "systemctl --no-ask-password restart " + shell.Quote(u),
		})
	}
	if len(s.Units) > 0 {
		steps = append(steps, Step{
			Name: "verify", Timeout: time.Duration(settle)*time.Second + 2*time.Minute,
			Run: verifyScript(s.Units, settle),
		})
	}
	current = &Step{Name: "current", User: s.AppUser, Dir: s.AppDir, Timeout: time.Minute, Run: "git rev-parse HEAD"}
	changed = &Step{Name: "changed files", User: s.AppUser, Dir: s.AppDir, Timeout: time.Minute,
		Run: `git diff --name-only "$DEPLOYHOOK_PREVIOUS_SHA" "$DEPLOYHOOK_SHA"`}
	return steps, current, changed
}

// verifyScript checks that each unit is active, waits settle seconds, and checks
// again that it is active and that systemd did not restart it meanwhile (a unit
// that crash-loops with Restart=always looks "active" most of the time).
func verifyScript(units []string, settle int) string {
	var b strings.Builder
	b.WriteString("fail=0\nstate() { systemctl show --property=ActiveState --value \"$1\"; }\n")
	b.WriteString("restarts() { systemctl show --property=NRestarts --value \"$1\"; }\n")
	for i, u := range units {
		q := shell.Quote(u)
		fmt.Fprintf(&b, "s=$(state %s); n%d=$(restarts %s)\n", q, i, q)
		fmt.Fprintf(&b, "if [ \"$s\" != active ]; then echo \"%s is $s\"; fail=1; fi\n", u)
	}
	b.WriteString("[ $fail = 0 ] || exit 1\n")
	fmt.Fprintf(&b, "sleep %d\n", settle)
	for i, u := range units {
		q := shell.Quote(u)
		fmt.Fprintf(&b, "s=$(state %s); n=$(restarts %s)\n", q, q)
		fmt.Fprintf(&b, "if [ \"$s\" != active ]; then echo \"%s is $s after %ds\"; fail=1; fi\n", u, settle)
		fmt.Fprintf(&b, "if [ \"$n\" != \"$n%d\" ]; then echo \"%s restarted by systemd within %ds (NRestarts $n%d -> $n): crash loop\"; fail=1; fi\n", i, u, settle, i)
	}
	fmt.Fprintf(&b, "[ $fail = 0 ] && echo \"%s active for %ds\"\nexit $fail\n", strings.Join(units, ", "), settle)
	return b.String()
}
