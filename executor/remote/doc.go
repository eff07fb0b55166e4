// Package remote runs deploy steps on a target: the executor.Transport
// implementations SSH (x/crypto/ssh over TCP or any net.Conn, such as an IAP
// tunnel) and Local (/bin/sh on this machine).
//
// # The command a step becomes
//
// Both transports turn an executor.Command into the same POSIX command line:
//
//	exec [flock -o -s STEPS] [sudo -n [-u USER] --] sh -c WRAPPER deployhook SECS GRACE INNER NAME
//
// INNER exports the step's environment (names must match [A-Z_][A-Z0-9_]*, values
// are single-quoted), changes into its directory and runs its script. It is built
// inside the sudo'd shell, because sudo resets the environment. Every piece of
// configuration is one single-quoted word, so a name, value or directory with
// quotes, $() or backquotes is data, never code. sudo runs with -n: a sudo that
// would ask for a password fails at once ("a password is required") instead of
// hanging until the timeout. Local steps get only PATH, HOME, USER, LOGNAME, LANG,
// LC_*, TZ and TMPDIR of deployhook's environment, never its secrets.
//
// # Killing the process tree
//
// WRAPPER (a fixed script) starts coreutils timeout(1) in the background, which,
// without --foreground, makes itself the leader of a new process group and, when
// the step's time is up, signals the whole group (TERM, then KILL after the grace):
// the script, its children and grandchildren such as "sleep 1000 &". timeout exits
// as soon as its direct child is gone, which can leave members that ignore TERM, so
// after a timeout the wrapper KILLs what is left of the group, and exits only when
// the group is gone. A TERM, HUP or INT sent to the wrapper is forwarded to the
// group the same way. The kill happens on the target, so it happens even when
// deployhook or the connection is gone. Exit code 124 (TERM) or 137 (KILL) after
// at least the step's timeout becomes executor.ErrTimeout with exit code -1.
// Processes that leave the group on purpose (setsid, daemons, systemd units), and
// background processes of a step that exited by itself, are not killed.
//
// The wrapper's stdin stays connected to deployhook while the step runs (the SSH
// channel; Local's pipe), and a watcher in the wrapper kills the group when it
// reaches end of file: when the connection drops, when deployhook dies (even with
// SIGKILL) and when deployhook ends the step on purpose. That is how both
// transports kill a step when ctx ends or the session is closed: they close the
// step's stdin. SSH also sends SIGTERM to the wrapper through a second session, as
// the step's user, using the pid the wrapper announces in a first line of output
// (which the transport strips). sshd's "signal" request is not used: it signals
// the session's whole process group, including the flock(1) that holds the steps
// lock.
//
// # The deploy lock
//
// Open takes an exclusive flock(2) on the lock file, the lock flock(1) takes, so
// a person deploying by hand with "flock ~/.deployhook/deploy.lock ./deploy.sh"
// and deployhook never overlap. A relative lock path is relative to the login
// user's home (Local: $HOME). Local holds the file descriptor. SSH runs, as the
// login user, a lock session whose flock(1) holds the lock while that session's
// stdin stays open, so it is released by Close, by the connection dying and by
// deployhook dying, never left behind.
//
// Releasing the deploy lock must not let the next deploy start beside processes
// of this one, which a dropped connection or a killed deployhook leaves running
// for as long as their wrapper takes to kill them. So every step holds a second
// lock, the steps lock (the lock file's name + ".steps"), shared, through a
// flock(1) run as the login user before sudo, for as long as its wrapper runs.
// After taking the deploy lock, Open waits (at most the lock wait again) until it
// could take the steps lock exclusively: no step of an earlier deploy is left.
// When the lock session's stdin ends, it waits for the same before it exits and
// releases the deploy lock; Local's Close ends its running steps and does the
// same. So the deploy lock is free only when no process of the deploy is alive.
//
// The lock's directory is created (mode 0700) when missing. Open refuses a
// directory that is a symlink, is owned by another user than the login user or
// root, or is writable by group or others (such as /run/lock: any user of the VM
// could pre-create the lock file, or hold it and block every deploy), and a lock
// file that is a symlink or not a regular file (a FIFO would block the open). The
// lock files are created mode 0600; Local opens them with O_NOFOLLOW and
// O_NONBLOCK. A wait that runs out is an error wrapping executor.ErrLocked.
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
//
// # Conformance
//
// Package remotetest is the conformance suite of these promises and of the
// executor.Transport contract. Local, SSH over TCP and SSH through an IAP tunnel
// pass it; a new transport must too.
package remote
