package executor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deployhook/deployhook/internal/shell"
)

// Sequence describes the default deploy of a git checkout run by systemd units:
// the user's manual procedure (git pull, uv sync, restart both units, look at
// systemctl status), done safely.
//
// AppDir and AppUser are required (Validate; the configuration enforces it):
// git runs as the checkout's owner, never as the login user who may use sudo.
type Sequence struct {
	AppDir  string        // the checkout on the target (/home/dagster/data-platform)
	AppUser string        // owner of the checkout; git and uv run as this user
	Units   []string      // restarted in this order, then verified
	Settle  time.Duration // how long the units must stay up, without restarts, after the restart
	// AllowDirty deploys over local changes to tracked files instead of
	// refusing: before the checkout they are kept in a git stash named
	// "deployhook JOB SHA7" (never discarded), which the job's log and status
	// description mention. Untracked files are left in place.
	AllowDirty bool
	Sync       string   // the dependency command; default "uv sync --frozen"
	SyncWhen   []string // files whose change makes Sync run; default uv.lock, pyproject.toml
	// Apply installs unit files and dagster.yaml from the checkout, after
	// sync and before the restarts; the zero value installs nothing.
	Apply Apply
	// Probes run after verify, one step each ("probe: NAME"), each retried
	// every second for up to VerifyWithin (default DefaultVerifyWithin). A
	// probe runs as the app user (a command probe as its own user, if it
	// names one), in AppDir.
	Probes       []Probe
	VerifyWithin time.Duration
}

// Validate reports what the sequence lacks to run safely.
func (s Sequence) Validate() error {
	var missing []string
	if s.AppDir == "" {
		missing = append(missing, "app_dir (the checkout on the target)")
	}
	if s.AppUser == "" {
		missing = append(missing, "app_user (the checkout's owner: git never runs as the login user)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the default deploy sequence needs %s", strings.Join(missing, " and "))
	}
	errs := []error{s.Apply.Validate()}
	seen := map[string]bool{}
	for i, p := range s.Probes {
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("verify[%d]: %w", i, err))
			continue
		}
		if n := p.name(); seen[n] {
			errs = append(errs, fmt.Errorf("verify[%d]: a second probe named %q: give each its own name", i, n))
		}
		seen[p.name()] = true
	}
	return errors.Join(errs...)
}

// StashedMarker starts the line the default sequence's stash step prints
// when it kept local changes in a git stash, followed by the stash's name.
// The executor then says so in the job's status description.
const StashedMarker = "deployhook: local changes stashed as "

// safeGit starts every script that runs git: git ignores the repository's own
// hooks and file-system monitor, which anyone who can write the checkout's
// .git could otherwise make run arbitrary code (a post-checkout hook that
// swaps the code after deployhook checked the SHA).
const safeGit = `git() { command git -c core.hooksPath=/dev/null -c core.fsmonitor=false "$@"; }
`

// Steps returns the default sequence:
//
//  1. preflight: refuse files marked assume-unchanged or skip-worktree (their
//     local changes are hidden from git status), and a work tree with local
//     changes (unless AllowDirty);
//  2. fetch: fetch the branch and check that the SHA is on it, except for the
//     automatic rollback (DEPLOYHOOK_ROLLBACK), a SHA the target deployed
//     before (DEPLOYHOOK_DEPLOYED_BEFORE=true) and a person's explicit
//     override (DEPLOYHOOK_ANY_COMMIT=true);
//     with AllowDirty, stash: keep local changes to tracked files in a git
//     stash named "deployhook $DEPLOYHOOK_JOB <sha7>" and print StashedMarker
//     with that name (nothing when there are none);
//  3. checkout (the checkpoint): check out exactly the SHA, detached, and verify
//     git rev-parse HEAD;
//  4. sync: uv sync --frozen, only when uv.lock or pyproject.toml changed;
//  5. with Apply, "apply units" and "apply dagster.yaml" (as root), each only
//     when its files changed: install them with a backup; in the automatic
//     rollback, restore what the job replaced (see Apply);
//  6. one restart per unit, as root through sudo -n (never a password prompt);
//     with Apply.Units, then "restart applied units";
//  7. verify: every unit active, and still active with an unchanged NRestarts
//     after Settle;
//  8. one "probe: NAME" step per probe (ProbeScript).
//
// It also returns the probes: current (git rev-parse HEAD), changed (git diff
// --name-only between the previous and the new SHA) and contains (exit 0 when
// $DEPLOYHOOK_SHA is $DEPLOYHOOK_PREVIOUS_SHA or one of its ancestors, 1 when
// not, or not in the clone at all, anything else when git cannot tell).
// Every git command runs without the repository's hooks and fsmonitor.
func (s Sequence) Steps() (steps []Step, current, changed, contains *Step) {
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
		st.Name, st.Run = name, safeGit+run
		return st
	}
	// A deploy cut off in its checkout (DEPLOYHOOK_RECOVER names it) can leave
	// git's index lock behind: no git of a deploy is alive (the steps lock
	// says so), so it is stale.
	preflight := `if [ -n "$DEPLOYHOOK_RECOVER" ]; then
  gitdir=$(git rev-parse --git-dir) || exit 1
  if [ -e "$gitdir/index.lock" ]; then
    rm -f "$gitdir/index.lock" || exit 1
    echo "removed the stale $gitdir/index.lock left by the interrupted job $DEPLOYHOOK_RECOVER"
  fi
fi
flags=$(git ls-files -v) || exit 1
hidden=$(printf '%s\n' "$flags" | sed -n 's/^[a-z] //p')
skipped=$(printf '%s\n' "$flags" | sed -n 's/^S //p')
bad=0
if [ -n "$hidden" ]; then
  echo "refusing to deploy: files in $PWD are marked assume-unchanged, so git hides their local changes:"
  echo "$hidden"
  echo "clear it with: git update-index --no-assume-unchanged FILE"
  bad=1
fi
if [ -n "$skipped" ]; then
  echo "refusing to deploy: files in $PWD are marked skip-worktree, so git does not check them out:"
  echo "$skipped"
  echo "clear it with: git update-index --no-skip-worktree FILE"
  bad=1
fi
[ $bad = 0 ] || exit 1`
	if !s.AllowDirty {
		preflight += `
changes=$(git status --porcelain --untracked-files=no) || exit 1
if [ -n "$changes" ] && [ -n "$DEPLOYHOOK_RECOVER" ]; then
  # Left by the interrupted job, most likely its half-done checkout: kept,
  # never lost, and out of the way.
  name="deployhook $DEPLOYHOOK_JOB: left by the interrupted job $DEPLOYHOOK_RECOVER"
  echo "the work tree in $PWD has changes since the interrupted job $DEPLOYHOOK_RECOVER:"
  echo "$changes"
  git -c user.name=deployhook -c user.email=deployhook@localhost stash push --quiet -m "$name" || { echo "could not stash them"; exit 1; }
  echo "` + StashedMarker + `$name"
  echo "get them back with: git stash list (the entry \"$name\"), then git stash apply stash@{N}"
  changes=
fi
if [ -n "$changes" ]; then
  echo "refusing to deploy: the work tree in $PWD has local changes:"
  echo "$changes"
  echo "commit or discard them (or set allow_dirty: true for this target)"
  exit 1
fi`
	}
	steps = append(steps, with(git, "preflight", preflight))
	steps = append(steps, with(git, "fetch",
		`git fetch --quiet origin "+refs/heads/$DEPLOYHOOK_BRANCH:refs/remotes/origin/$DEPLOYHOOK_BRANCH" || exit 1
if ! git cat-file -e "$DEPLOYHOOK_SHA^{commit}" 2>/dev/null; then
  echo "commit $DEPLOYHOOK_SHA is not in origin"; exit 1
fi
if [ -n "$DEPLOYHOOK_ROLLBACK" ] || [ "$DEPLOYHOOK_DEPLOYED_BEFORE" = true ] || [ "$DEPLOYHOOK_ANY_COMMIT" = true ]; then
  exit 0
fi
if ! git merge-base --is-ancestor "$DEPLOYHOOK_SHA" "origin/$DEPLOYHOOK_BRANCH"; then
  echo "commit $DEPLOYHOOK_SHA is not on branch $DEPLOYHOOK_BRANCH"; exit 1
fi`))
	if s.AllowDirty {
		// Before the checkpoint: a stash that fails changed nothing, and the
		// checkout never meets (nor overwrites) a local change.
		steps = append(steps, with(git, "stash",
			`changes=$(git status --porcelain --untracked-files=no) || exit 1
[ -n "$changes" ] || exit 0
name="deployhook $DEPLOYHOOK_JOB $(printf %.7s "$DEPLOYHOOK_SHA")"
at=$(git rev-parse --short HEAD) || exit 1
echo "local changes in $PWD:"
echo "$changes"
git -c user.name=deployhook -c user.email=deployhook@localhost stash push --quiet -m "$name" || { echo "could not stash them: nothing was checked out"; exit 1; }
echo "`+StashedMarker+`$name"
echo "they were made over $at; get them back with: git stash list (the entry \"$name\"), then git stash apply stash@{N}"`))
	}
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
	apply := s.Apply.withDefaults()
	var unitFiles []string
	if u := apply.Units; u != nil {
		unitFiles = []string{u.From + "/*.service", u.From + "/*.timer"}
		steps = append(steps, Step{
			Name: "apply units", Sudo: true, Dir: s.AppDir, Timeout: 5 * time.Minute, WhenChanged: unitFiles,
			Run: unitsScript(s.AppUser, apply.BackupDir, *u),
		})
	}
	if y := apply.DagsterYAML; y != nil {
		steps = append(steps, Step{
			Name: "apply dagster.yaml", Sudo: true, Dir: s.AppDir, Timeout: 2 * time.Minute, WhenChanged: []string{y.From},
			Run: dagsterYAMLScript(s.AppUser, apply.BackupDir, *y),
		})
	}
	for _, u := range s.Units {
		steps = append(steps, Step{
			Name: "restart " + u, Sudo: true, Timeout: 5 * time.Minute,
			Run: "systemctl --no-ask-password restart " + shell.Quote(u),
		})
	}
	if u := apply.Units; u != nil {
		var skip []string
		for _, n := range s.Units {
			skip = append(skip, unitFile(n))
		}
		steps = append(steps, Step{
			Name: "restart applied units", Sudo: true, Timeout: 5 * time.Minute, WhenChanged: unitFiles,
			Run: restartAppliedScript(apply.BackupDir, u.Order, skip),
		})
	}
	if len(s.Units) > 0 {
		steps = append(steps, Step{
			Name: "verify", Timeout: time.Duration(settle)*time.Second + 2*time.Minute,
			Run: verifyScript(s.Units, settle),
		})
	}
	steps = append(steps, s.probeSteps()...)
	probe := Step{User: s.AppUser, Dir: s.AppDir, Timeout: time.Minute}
	c := with(probe, "current", "git rev-parse HEAD")
	ch := with(probe, "changed files", `git diff --name-only "$DEPLOYHOOK_PREVIOUS_SHA" "$DEPLOYHOOK_SHA"`)
	in := with(probe, "contains", `[ -n "$DEPLOYHOOK_PREVIOUS_SHA" ] || exit 2
git cat-file -e "$DEPLOYHOOK_SHA^{commit}" 2>/dev/null || exit 1
git merge-base --is-ancestor "$DEPLOYHOOK_SHA" "$DEPLOYHOOK_PREVIOUS_SHA"`)
	return steps, &c, &ch, &in
}

// probeSteps returns one step per probe.
func (s Sequence) probeSteps() []Step {
	within := s.VerifyWithin
	if within <= 0 {
		within = DefaultVerifyWithin
	}
	var steps []Step
	for _, p := range s.Probes {
		user := s.AppUser
		if p.Command != nil && p.Command.User != "" {
			user = p.Command.User
		}
		if d := p.DagsterCodeLocation; d != nil && d.Venv == "" {
			c := *d
			c.Venv = strings.TrimSuffix(s.AppDir, "/") + "/.venv"
			p.DagsterCodeLocation = &c
		}
		steps = append(steps, Step{
			Name: "probe: " + p.name(), User: user, Dir: s.AppDir,
			Timeout: within + 2*time.Minute, Run: ProbeScript([]Probe{p}, within),
		})
	}
	return steps
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
