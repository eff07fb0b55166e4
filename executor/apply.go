package executor

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/deployhook/deployhook/internal/shell"
)

// Apply says which files of the checkout the default sequence installs on
// the target besides the code: systemd unit files and Dagster's instance
// configuration. The zero value applies nothing.
//
// Only files the deploy's commit changed are touched (when the change is
// unknown, those whose content differs from the installed copy). Every file
// replaced is first copied to BackupDir/JOB (root's, mode 0700), and every
// file installed is written to a temporary name and renamed into place. The
// automatic rollback (same job) puts the copies back, removes what the job
// installed new, and reloads systemd before the previous commit's restarts.
type Apply struct {
	// Units, when set, installs changed *.service and *.timer files.
	Units *ApplyUnits
	// DagsterYAML, when set, installs a changed dagster.yaml in DAGSTER_HOME.
	DagsterYAML *ApplyDagsterYAML
	// BackupDir holds a directory per job with the files it replaced; default
	// DefaultBackupDir.
	BackupDir string
}

// ApplyUnits installs the *.service and *.timer files directly in From (a
// directory of the checkout) into To, checked first with systemd-analyze
// verify, then runs systemctl daemon-reload once. After the sequence's own
// restarts, the installed units that the sequence does not restart anyway are
// restarted if they run (systemctl try-restart: a new unit is installed but
// neither enabled nor started, and a timer's service is not run by the
// deploy), those in Order first, in that order, then the rest by name. A file
// removed from From is left installed and named in the status.
type ApplyUnits struct {
	From  string   // relative to the checkout; default DefaultUnitsFrom
	To    string   // default DefaultUnitsTo
	Order []string // unit file names (dagster-code.service)
}

// ApplyDagsterYAML installs the checkout's From as To/dagster.yaml, written
// as the app user (so it is the app user's, as DAGSTER_HOME is), keeping the
// file it replaces as To/dagster.yaml.prev and in the job's backup directory.
type ApplyDagsterYAML struct {
	From string // relative to the checkout; default DefaultDagsterYAMLFrom
	To   string // DAGSTER_HOME; default DefaultDagsterHome
}

// Defaults of Apply: Dagster's layout.
const (
	DefaultUnitsFrom       = "infra/files"
	DefaultUnitsTo         = "/etc/systemd/system"
	DefaultDagsterYAMLFrom = "dagster.yaml"
	DefaultDagsterHome     = "/var/dagster/home"
	DefaultBackupDir       = "/var/lib/deployhook/backup"
)

// The lines the apply steps print about each file the commit changed, each
// followed by the file's path in the checkout. The executor reads them from
// the steps' output for the job's status description ("applied:
// dagster.yaml, dagster-code.service") and leaves the files they name out of
// the changes it says were not applied.
const (
	AppliedMarker        = "deployhook: applied: "         // installed
	InPlaceMarker        = "deployhook: in place: "        // changed, but the installed file has that content already
	NotUninstalledMarker = "deployhook: not uninstalled: " // removed from the checkout, left installed
)

// withDefaults returns a with its defaults filled in.
func (a Apply) withDefaults() Apply {
	if a.BackupDir == "" {
		a.BackupDir = DefaultBackupDir
	}
	if u := a.Units; u != nil {
		c := *u
		if c.From == "" {
			c.From = DefaultUnitsFrom
		}
		if c.To == "" {
			c.To = DefaultUnitsTo
		}
		c.From = strings.TrimSuffix(c.From, "/")
		a.Units = &c
	}
	if y := a.DagsterYAML; y != nil {
		c := *y
		if c.From == "" {
			c.From = DefaultDagsterYAMLFrom
		}
		if c.To == "" {
			c.To = DefaultDagsterHome
		}
		a.DagsterYAML = &c
	}
	return a
}

// Validate reports every problem of a, joined: paths in the checkout must be
// relative and stay inside it, destinations and the backup directory must be
// absolute, and Order must name unit files.
func (a Apply) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	rel := func(key, p string) {
		if p != "" && (path.IsAbs(p) || path.Clean(p) != strings.TrimSuffix(p, "/") || p == "." || strings.HasPrefix(path.Clean(p), "..")) {
			bad("%s %q: a clean path inside the checkout, relative to app_dir (e.g. %s)", key, p, map[bool]string{true: DefaultUnitsFrom, false: DefaultDagsterYAMLFrom}[strings.HasPrefix(key, "apply_units")])
		}
	}
	abs := func(key, p string) {
		if p != "" && (!path.IsAbs(p) || path.Clean(p) != p || p == "/") {
			bad("%s %q: a clean absolute directory on the target", key, p)
		}
	}
	if u := a.Units; u != nil {
		rel("apply_units.from", u.From)
		abs("apply_units.to", u.To)
		seen := map[string]bool{}
		for _, n := range u.Order {
			if !unitFileName(n) {
				bad("apply_units.order: %q is not a unit file name: write NAME.service or NAME.timer", n)
			}
			if seen[n] {
				bad("apply_units.order: %q is given twice", n)
			}
			seen[n] = true
		}
	}
	if y := a.DagsterYAML; y != nil {
		rel("apply_dagster_yaml.from", y.From)
		abs("apply_dagster_yaml.to", y.To)
	}
	abs("apply_backup_dir", a.BackupDir)
	return errors.Join(errs...)
}

// unitFileName reports whether n is a unit file name the apply steps
// install: NAME.service or NAME.timer, of the characters systemd allows in
// unit names (no escapes), not hidden.
func unitFileName(n string) bool {
	base, ok := strings.CutSuffix(n, ".service")
	if !ok {
		base, ok = strings.CutSuffix(n, ".timer")
	}
	if !ok || base == "" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "-") {
		return false
	}
	for _, c := range base {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("@._:-", c)) {
			return false
		}
	}
	return true
}

// unitFile is the unit file name systemctl means by u: u itself when it has
// a unit type suffix, else u.service.
func unitFile(u string) string {
	if i := strings.LastIndexByte(u, '.'); i > 0 {
		switch u[i+1:] {
		case "service", "timer", "socket", "target", "path", "mount", "automount", "swap", "slice", "scope", "device":
			return u
		}
	}
	return u + ".service"
}

// applyPrelude starts every apply step (run as root): the job's backup
// directory, and git and file access as the app user, so that root never
// reads the checkout's repository configuration or follows a link the app
// user placed in a directory it owns.
const applyPrelude = `set -u
umask 077
case ${DEPLOYHOOK_JOB:-} in ''|*[!A-Za-z0-9-]*) echo "no usable job id in DEPLOYHOOK_JOB"; exit 1 ;; esac
asapp() { # run as the app user
  if command -v runuser >/dev/null 2>&1; then runuser -u "$app" -- "$@"
  else sudo -n -u "$app" -- env "PATH=$PATH" "$@"; fi
}
git() { asapp git -c core.hooksPath=/dev/null -c core.fsmonitor=false "$@"; }
private() { # DIR: root's, mode 0700; never through a symbolic link
  if [ -L "$1" ]; then echo "$1 is a symbolic link: refusing to keep backups there"; return 1; fi
  mkdir -p "$1" && chown 0:0 "$1" && chmod 0700 "$1"
}
jobdir="$backup/$DEPLOYHOOK_JOB"
# known: the commit's change is known (git diff from the previous commit)
known=
if [ -n "${DEPLOYHOOK_PREVIOUS_SHA:-}" ] && git cat-file -e "$DEPLOYHOOK_PREVIOUS_SHA^{commit}" 2>/dev/null; then known=1; fi
`

// unitsScript is the "apply units" step.
func unitsScript(appUser, backup string, u ApplyUnits) string {
	return fmt.Sprintf("app=%s; backup=%s; from=%s; to=%s\n", shell.Quote(appUser), shell.Quote(backup), shell.Quote(u.From), shell.Quote(u.To)) +
		applyPrelude + `dir="$jobdir/units"
if [ -n "${DEPLOYHOOK_ROLLBACK:-}" ]; then
  if [ ! -d "$dir" ]; then echo "this job installed no unit file: nothing to restore"; exit 0; fi
  n=0
  for f in "$dir"/old/*; do
    [ -f "$f" ] || continue
    u=${f##*/}
    { cp -p "$f" "$to/.$u.deployhook" && mv -f "$to/.$u.deployhook" "$to/$u"; } || { echo "could not restore $to/$u"; exit 1; }
    echo "restored $to/$u as it was before job $DEPLOYHOOK_JOB"; n=$((n+1))
  done
  if [ -f "$dir/new" ]; then
    while IFS= read -r u; do
      rm -f "$to/$u" || exit 1
      echo "removed $to/$u, which job $DEPLOYHOOK_JOB installed"; n=$((n+1))
    done < "$dir/new"
  fi
  if [ $n = 0 ]; then echo "this job installed no unit file: nothing to restore"; exit 0; fi
  systemctl --no-ask-password daemon-reload || { echo "systemctl daemon-reload failed"; exit 1; }
  echo "systemctl daemon-reload"
  exit 0
fi
{ private "$backup" && private "$jobdir" && private "$dir"; } || exit 1
rm -rf "$dir/stage" && mkdir -p "$dir/stage" "$dir/old" || exit 1
: > "$dir/staged"; : > "$dir/markers"
git ls-tree "$DEPLOYHOOK_SHA" -- "$from/" > "$dir/tree" || { echo "cannot list $from at $DEPLOYHOOK_SHA"; exit 1; }
if [ -n "$known" ]; then
  git diff --no-ext-diff --no-textconv --no-renames --name-status "$DEPLOYHOOK_PREVIOUS_SHA" "$DEPLOYHOOK_SHA" -- "$from/" > "$dir/diff" || { echo "cannot diff $from"; exit 1; }
  while IFS= read -r line; do
    p=${line#*	}; u=${p##*/}
    case $line in D*) ;; *) continue ;; esac
    case $u in *.service|*.timer) ;; *) continue ;; esac
    [ "$p" = "$from/$u" ] || continue
    echo "$p was removed from the checkout: $to/$u stays installed (remove it by hand if it should go)"
    echo "` + NotUninstalledMarker + `$p" >> "$dir/markers"
  done < "$dir/diff"
fi
while IFS= read -r line; do
  meta=${line%%	*}; p=${line#*	}; u=${p##*/}
  case $u in *.service|*.timer) ;; *) continue ;; esac
  [ "$p" = "$from/$u" ] || continue
  case $u in .*|-*|*[!A-Za-z0-9@._:-]*) echo "skipped $p: not a unit file name deployhook installs"; continue ;; esac
  if [ -n "$known" ] && ! grep -qxF -e "M	$p" -e "A	$p" -e "T	$p" "$dir/diff"; then continue; fi
  set -- $meta
  if [ "$2" != blob ] || { [ "$1" != 100644 ] && [ "$1" != 100755 ]; }; then echo "skipped $p: not a regular file in git"; continue; fi
  git cat-file blob "$3" > "$dir/stage/$u" || { echo "cannot read $p at $DEPLOYHOOK_SHA"; exit 1; }
  if [ -L "$to/$u" ]; then echo "$to/$u is a symbolic link (a masked or linked unit): refusing to replace it"; exit 1; fi
  if [ -f "$to/$u" ] && cmp -s "$dir/stage/$u" "$to/$u"; then
    rm -f "$dir/stage/$u"
    if [ -n "$known" ]; then echo "$to/$u has this content already"; echo "` + InPlaceMarker + `$p" >> "$dir/markers"; fi
    continue
  fi
  echo "$u" >> "$dir/staged"
done < "$dir/tree"
if [ ! -s "$dir/staged" ]; then
  echo "no unit file to install"; cat "$dir/markers"; exit 0
fi
set --
while IFS= read -r u; do set -- "$@" "$dir/stage/$u"; done < "$dir/staged"
echo "systemd-analyze verify" $(cat "$dir/staged")
if ! systemd-analyze verify "$@"; then
  echo "systemd-analyze verify found errors: nothing was installed"; exit 1
fi
while IFS= read -r u; do
  if [ -e "$to/$u" ]; then
    [ -e "$dir/old/$u" ] || cp -p "$to/$u" "$dir/old/$u" || { echo "could not back up $to/$u"; exit 1; }
  elif [ ! -e "$dir/old/$u" ] && ! grep -qxF "$u" "$dir/new" 2>/dev/null; then
    echo "$u" >> "$dir/new"
  fi
  { install -m 0644 -o 0 -g 0 "$dir/stage/$u" "$to/.$u.deployhook" && mv -f "$to/.$u.deployhook" "$to/$u"; } || { echo "could not install $to/$u"; exit 1; }
  grep -qxF "$u" "$dir/applied" 2>/dev/null || echo "$u" >> "$dir/applied"
  echo "installed $to/$u (the previous one is kept in $dir/old)"
  echo "` + AppliedMarker + `$from/$u" >> "$dir/markers"
done < "$dir/staged"
systemctl --no-ask-password daemon-reload || { echo "systemctl daemon-reload failed"; exit 1; }
echo "systemctl daemon-reload"
cat "$dir/markers"
`
}

// restartAppliedScript is the "restart applied units" step: the units the
// job installed (in a rollback: restored), but for those the sequence
// restarts itself (skip), in order and then by name, if they run.
func restartAppliedScript(backup string, order, skip []string) string {
	return fmt.Sprintf("backup=%s; order=%s; skip=%s\n", shell.Quote(backup),
		shell.Quote(strings.Join(order, " ")), shell.Quote(" "+strings.Join(skip, " ")+" ")) + `set -u
case ${DEPLOYHOOK_JOB:-} in ''|*[!A-Za-z0-9-]*) echo "no usable job id in DEPLOYHOOK_JOB"; exit 1 ;; esac
dir="$backup/$DEPLOYHOOK_JOB/units"
if [ ! -s "$dir/applied" ]; then echo "this job installed no unit file: nothing to restart"; exit 0; fi
list=
for u in $order; do grep -qxF "$u" "$dir/applied" && list="$list $u"; done
for u in $(sort "$dir/applied"); do
  case " $list " in *" $u "*) ;; *) list="$list $u" ;; esac
done
for u in $list; do
  case $skip in *" $u "*) echo "$u: restarted by its own step"; continue ;; esac
  if [ -n "${DEPLOYHOOK_ROLLBACK:-}" ] && grep -qxF "$u" "$dir/new" 2>/dev/null; then
    echo "$u: its file was removed again"; continue
  fi
  systemctl --no-ask-password try-restart "$u" || { echo "systemctl try-restart $u failed"; exit 1; }
  echo "systemctl try-restart $u"
done
`
}

// dagsterYAMLScript is the "apply dagster.yaml" step.
func dagsterYAMLScript(appUser, backup string, y ApplyDagsterYAML) string {
	return fmt.Sprintf("app=%s; backup=%s; src=%s; to=%s\n", shell.Quote(appUser), shell.Quote(backup), shell.Quote(y.From), shell.Quote(y.To)) +
		applyPrelude + `dir="$jobdir/dagster_yaml"; dest="$to/dagster.yaml"
put() { # FILE: write stdin to FILE as the app user, through a temporary name
  asapp sh -c 'umask 022; rm -f "$1.deployhook" && cat > "$1.deployhook" && mv -f "$1.deployhook" "$1"' sh "$1"
}
if [ -n "${DEPLOYHOOK_ROLLBACK:-}" ]; then
  if [ ! -d "$dir" ]; then echo "this job installed no dagster.yaml: nothing to restore"; exit 0; fi
  if [ -f "$dir/old/dagster.yaml" ]; then
    put "$dest" < "$dir/old/dagster.yaml" || { echo "could not restore $dest"; exit 1; }
    echo "restored $dest as it was before job $DEPLOYHOOK_JOB"
  elif [ -f "$dir/new" ]; then
    asapp rm -f "$dest" || exit 1
    echo "removed $dest, which job $DEPLOYHOOK_JOB installed"
  fi
  exit 0
fi
{ private "$backup" && private "$jobdir" && private "$dir"; } || exit 1
mkdir -p "$dir/old" || exit 1
entry=$(git ls-tree "$DEPLOYHOOK_SHA" -- "$src") || { echo "cannot read $src at $DEPLOYHOOK_SHA"; exit 1; }
if [ -n "$known" ]; then
  git diff --no-ext-diff --no-textconv --no-renames --name-only "$DEPLOYHOOK_PREVIOUS_SHA" "$DEPLOYHOOK_SHA" -- "$src" > "$dir/diff" || { echo "cannot diff $src"; exit 1; }
  if [ ! -s "$dir/diff" ]; then echo "$src did not change"; exit 0; fi
fi
if [ -z "$entry" ]; then
  if [ -n "$known" ]; then
    echo "$src was removed from the checkout: $dest stays as it is"
    echo "` + NotUninstalledMarker + `$src"
  else
    echo "no $src in this commit: nothing to apply"
  fi
  exit 0
fi
set -- ${entry%%	*}
if [ "$2" != blob ] || { [ "$1" != 100644 ] && [ "$1" != 100755 ]; }; then echo "$src is not a regular file in git: not applied"; exit 1; fi
git cat-file blob "$3" > "$dir/dagster.yaml.new" || { echo "cannot read $src at $DEPLOYHOOK_SHA"; exit 1; }
if ! asapp test -d "$to"; then echo "$to does not exist (or $app cannot see it): create DAGSTER_HOME, owned by $app, first"; exit 1; fi
if asapp test -e "$dest"; then
  asapp cat "$dest" > "$dir/current" || { echo "cannot read $dest as $app"; exit 1; }
  if cmp -s "$dir/dagster.yaml.new" "$dir/current"; then
    echo "$dest has this content already"
    [ -z "$known" ] || echo "` + InPlaceMarker + `$src"
    exit 0
  fi
  [ -e "$dir/old/dagster.yaml" ] || cp "$dir/current" "$dir/old/dagster.yaml" || { echo "could not back up $dest"; exit 1; }
  put "$dest.prev" < "$dir/current" || { echo "could not keep $dest.prev"; exit 1; }
elif [ ! -e "$dir/old/dagster.yaml" ]; then
  echo dagster.yaml > "$dir/new"
fi
put "$dest" < "$dir/dagster.yaml.new" || { echo "could not install $dest as $app"; exit 1; }
echo "installed $dest (the previous one is $dest.prev, and in $dir/old)"
echo "` + AppliedMarker + `$src"
`
}

// applyNotes is what a deploy's apply steps said about the changed files
// (the markers), by path in the checkout.
type applyNotes struct {
	applied, inPlace, removed []string
}

// read takes the markers of one step's output.
func (n *applyNotes) read(output string) {
	for line := range strings.Lines(output) {
		line = strings.TrimRight(line, "\r\n")
		for _, m := range []struct {
			marker string
			to     *[]string
		}{{AppliedMarker, &n.applied}, {InPlaceMarker, &n.inPlace}, {NotUninstalledMarker, &n.removed}} {
			if p, ok := strings.CutPrefix(line, m.marker); ok && publicName(p) && !slices.Contains(*m.to, p) {
				*m.to = append(*m.to, p)
			}
		}
	}
}

// covers reports whether the apply steps said something about file f.
func (n *applyNotes) covers(f string) bool {
	return slices.Contains(n.applied, f) || slices.Contains(n.inPlace, f) || slices.Contains(n.removed, f)
}

// changeSummary decides the end of a successful deploy's description: what
// the apply steps installed (by file name), the unit files removed from the
// checkout but left installed, and the changed files the deploy did not
// apply: those matching a notApplied glob that no apply step covered, when
// the change is known. infra/ (Terraform) is named as such: "infra/ changed:
// terraform apply needed".
func changeSummary(n applyNotes, notApplied, changed []string, known bool) string {
	var b strings.Builder
	if len(n.applied) > 0 {
		names := make([]string, len(n.applied))
		for i, p := range n.applied {
			names[i] = path.Base(p)
		}
		b.WriteString("; applied: " + strings.Join(names, ", "))
	}
	for _, p := range n.removed {
		b.WriteString("; " + p + " removed: not uninstalled")
	}
	if !known || len(notApplied) == 0 {
		return b.String()
	}
	var rest []string
	for _, f := range changed {
		if !n.covers(f) {
			rest = append(rest, f)
		}
	}
	var hit []string
	infra := false
	for _, g := range notApplied {
		if !matchAny([]string{g}, rest) {
			continue
		}
		name := strings.TrimSuffix(strings.TrimSuffix(g, "**"), "*")
		if name == "infra/" {
			infra = true
			continue
		}
		hit = append(hit, name)
	}
	sort.Strings(hit)
	if len(hit) > 0 {
		b.WriteString("; not applied: " + strings.Join(hit, ", "))
	}
	if infra {
		b.WriteString("; infra/ changed: terraform apply needed")
	}
	return b.String()
}
