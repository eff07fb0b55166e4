// Package remote runs deploy steps on a target: the executor.Transport
// implementations SSH (x/crypto/ssh over TCP or any net.Conn, such as an IAP
// tunnel) and Local (/bin/sh on this machine).
//
// # The command a step becomes
//
// Both transports turn an executor.Command into the same POSIX command line:
//
//	exec [sudo -n [-u USER] --] sh -c WRAPPER deployhook SECS GRACE INNER NAME
//
// INNER exports the step's environment (names must match [A-Z_][A-Z0-9_]*, values
// are single-quoted), changes into its directory and runs its script. It is built
// inside the sudo'd shell, because sudo resets the environment. Every piece of
// configuration is one single-quoted word, so a name, value or directory with
// quotes, $() or backquotes is data, never code. sudo runs with -n: a sudo that
// would ask for a password fails at once ("a password is required") instead of
// hanging until the timeout.
//
// # Killing the process tree
//
// WRAPPER (a fixed script) starts coreutils timeout(1) in the background, which,
// without --foreground, makes itself the leader of a new process group and, when
// the step's time is up, signals the whole group (TERM, then KILL after the grace):
// the script, its children and grandchildren such as "sleep 1000 &". timeout exits
// as soon as its direct child is gone, which can leave members that ignore TERM, so
// after a timeout the wrapper KILLs what is left of the group. A TERM, HUP or INT
// sent to the wrapper is forwarded to the group the same way. The kill happens on
// the target, so it happens even when deployhook or the connection is gone. Exit
// code 124 (TERM) or 137 (KILL) after at least the step's timeout becomes
// executor.ErrTimeout with exit code -1. Processes that leave the group on purpose
// (setsid, daemons, systemd units) are not killed.
//
// When ctx ends during a step, Local sends SIGTERM (then SIGKILL) to the step's
// process group, which the wrapper forwards. SSH sends a "signal" request, which
// sshd delivers to the session's process group (OpenSSH 7.9 and later, except for
// root logins, which run without privilege separation); as that is not always
// delivered, the wrapper announces its pid in a first line of output, which the
// transport strips, and SSH also sends SIGTERM to that pid through a second
// session, as the step's user.
//
// # The deploy lock
//
// Open takes an exclusive flock(2) on the lock file, the lock flock(1) takes, so
// a person deploying by hand with "flock /var/lock/app.lock ./deploy.sh" and
// deployhook never overlap. Local holds the file descriptor. SSH runs, as the
// login user, a session "flock -w WAIT LOCK sh -c 'echo locked; exec cat'": the
// lock is held while that session's stdin stays open, so it is released by Close,
// by the connection dying and by deployhook dying, never left behind. The lock
// file's directory is created when missing; the file must be writable by the
// login user (or exist and be readable by it) and readable by whoever deploys by
// hand. A wait that runs out is an error wrapping executor.ErrLocked.
//
// # Host keys
//
// There is no trust on first use. NewSSH needs at least one pinned host key for
// the host key alias: lines of a known_hosts file (plain or hashed names,
// revoked keys excluded) and keys given directly (from the VM's guest attributes).
// The connection offers only the algorithms of the pinned keys (an ssh-rsa pin
// offers rsa-sha2-512 and rsa-sha2-256 first) and accepts only a key equal to a
// pinned one; anything else ends the handshake, before anything runs, with a
// *HostKeyError naming the alias and the SHA256 fingerprint presented, and saying
// how to fix it.
//
// # Connections
//
// Each Open makes one connection, bounded by HandshakeTimeout; each Run one SSH
// session. keepalive@openssh.com requests notice a peer that stopped answering and
// close the connection, which fails a running step with a transport error (one
// that is neither ErrTimeout nor a context error, and names the target). To save
// round trips, the channel for the next step is opened while the current one runs
// and exec requests are sent without waiting for their reply.
package remote
