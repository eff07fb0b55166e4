package remote

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/shell"
)

// stepsSuffix names the steps lock beside the deploy lock: LOCK + stepsSuffix.
const stepsSuffix = ".steps"

// Exit codes of the SSH lock session (lockScript and holdScript spell them out);
// 75 is EX_TEMPFAIL of sysexits.h, unlike
// flock's default 1, which a failing shell also gives.
const (
	lockExitCode  = 75 // flock(1) -E: the wait for the deploy lock ran out
	stepsExitCode = 76 // the wait for the steps lock ran out
)

// reapBound is how long the wrapper keeps sending SIGKILL to a killed step's
// process group before it gives up (300 rounds of "sleep 0.1", see wrapper).
const reapBound = 35 * time.Second

// cleanLock checks the configured lock path and returns it cleaned. A relative
// path is relative to the login user's home on the target (Local: $HOME).
func cleanLock(lock string) (string, error) {
	c := path.Clean(lock)
	switch b := path.Base(c); {
	case b == "." || b == ".." || b == "/":
		return "", fmt.Errorf("lock %q: not a file name", lock)
	}
	return c, nil
}

// lockScript runs the SSH lock session on the target, through sh, as the login
// user. Its positional parameters: $1 the lock file and $2 its directory, both
// relative to $HOME unless absolute; $3 the wait in seconds; $4 holdScript. It
// creates the directory (mode 0700) when missing and refuses a directory that is
// a symlink, is not owned by the login user or root, or is writable by group or
// others (any user of the VM could then replace the lock file or hold it), and
// lock files that are symlinks or not regular files (a FIFO would block the
// open). In such a directory nobody else can swap a file between the check and
// the open. Files are created mode 0600 (umask). flock(1) then waits for the
// deploy lock and runs holdScript while holding it.
const lockScript = `umask 077
case $1 in /*) l=$1 d=$2 ;; *) l=$HOME/$1 d=$HOME/$2 ;; esac
if [ ! -e "$d" ] && [ ! -L "$d" ]; then mkdir -p -- "$d" || exit 1; fi
if [ -L "$d" ] || [ ! -d "$d" ]; then echo "lock directory $d is a symlink or not a directory" >&2; exit 1; fi
o=$(stat -c '%u %a' -- "$d") || exit 1
if [ "${o% *}" != 0 ] && [ ! -O "$d" ]; then echo "lock directory $d is owned by uid ${o% *}, neither the login user nor root: that user could replace or hold the lock" >&2; exit 1; fi
if [ $((0${o#* } & 022)) != 0 ]; then echo "lock directory $d is writable by group or others (mode ${o#* }): any user of the VM could replace or hold the lock; use a directory only the login user can write, such as .deployhook in its home" >&2; exit 1; fi
for f in "$l" "$l` + stepsSuffix + `"; do
	if [ -L "$f" ]; then echo "lock file $f is a symlink" >&2; exit 1; fi
	if [ -e "$f" ] && [ ! -f "$f" ]; then echo "lock file $f is not a regular file" >&2; exit 1; fi
done
exec flock -E 75 -w "$3" "$l" sh -c "$4" deployhook-lock "$l` + stepsSuffix + `" "$3"`

// holdScript runs under the deploy lock: $1 the steps lock, $2 the wait. Every
// step holds the steps lock shared for as long as its wrapper runs (see
// commandLine); an exclusive flock on it is free only when no step process is
// left. So the session first waits for the steps of an earlier deploy to be
// gone (a deploy whose connection dropped: its wrappers are still killing their
// process groups), answers "locked", holds the deploy lock while its stdin is
// open, and when stdin ends (Close, a dropped connection, deployhook killed)
// waits again until the steps lock is free before it exits and releases the
// deploy lock.
const holdScript = `flock -E 76 -w "$2" "$1" true || exit
echo locked
cat >/dev/null
exec flock "$1" true`

// lockCommand is the exec request of the SSH lock session.
func lockCommand(lock string, wait time.Duration) string {
	return fmt.Sprintf("exec sh -c %s deployhook-lock %s %s %s %s", shell.Quote(lockScript),
		shell.Quote(lock), shell.Quote(path.Dir(lock)), waitSeconds(wait), shell.Quote(holdScript))
}

// stepsWord is the shell word, for the login shell on the target, of the steps
// lock of lock.
func stepsWord(lock string) string {
	if path.IsAbs(lock) {
		return shell.Quote(lock + stepsSuffix)
	}
	return `"$HOME"/` + shell.Quote(lock+stepsSuffix)
}

// waitSeconds formats d for flock -w.
func waitSeconds(d time.Duration) string {
	s := seconds(d)
	return s[:len(s)-1]
}

// localLock resolves lock for the Local transport: relative to $HOME.
func localLock(lock string) (string, error) {
	c, err := cleanLock(lock)
	if err != nil {
		return "", err
	}
	if filepath.IsAbs(c) {
		return c, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("lock %s is relative to the home directory: %w", lock, err)
	}
	return filepath.Join(home, c), nil
}

// prepareLockDir creates dir (mode 0700) when missing and checks what
// lockScript checks on an SSH target: not a symlink, a directory, owned by this
// process's user or root, not writable by group or others.
func prepareLockDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create lock directory: %w", err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return fmt.Errorf("lock directory: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
		return fmt.Errorf("lock directory %s is a symlink or not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("lock directory %s: no owner information", dir)
	}
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("lock directory %s is owned by uid %d, neither deployhook's user nor root: that user could replace or hold the lock", dir, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("lock directory %s is writable by group or others (mode %#o): any user of the machine could replace or hold the lock; use a directory only deployhook's user can write", dir, fi.Mode().Perm())
	}
	return nil
}

// openLockFile opens (creating, mode 0600) the lock file path without following
// a symlink and without blocking (a FIFO opens at once), and refuses anything
// but a regular file.
func openLockFile(path string) (*os.File, error) {
	// Read-only is enough for flock(2), and lets a lock file owned by another
	// user (the one who deploys by hand) be used as long as it is readable.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0o600)
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("lock file %s is a symlink", path)
	case errors.Is(err, unix.EISDIR):
		return nil, fmt.Errorf("lock file %s is not a regular file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat lock file %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("lock file %s is not a regular file", path)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// flockUntil takes flock(2) how (LOCK_EX) on f, retrying every poll until
// deadline; held is the error when the deadline passes first, ctx.Err() when
// ctx ends first.
func flockUntil(ctx context.Context, f *os.File, how int, deadline time.Time, poll time.Duration, held error) error {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return held
		case <-tick.C:
		}
	}
}

// lockedError is the error of a deploy lock that stayed held.
func lockedError(lock string, wait time.Duration) error {
	return fmt.Errorf("%w: %s still held after %v (a manual deploy, or another deployhook?)", executor.ErrLocked, lock, wait)
}

// stepsHeldError is the error of a steps lock that stayed held: processes of
// an earlier deploy are still there.
func stepsHeldError(lock string, wait time.Duration) error {
	return fmt.Errorf("%w: processes of an earlier deploy still hold %s after %v", executor.ErrLocked, lock+stepsSuffix, wait)
}
