package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// namedFile is a file that holds a secret, with the setting that names it.
type namedFile struct{ setting, path string }

// keyFiles lists the files that hold secrets or private keys: the NAME_FILE
// variables that were set, github.private_key_file, each target's
// ssh.private_key_file and GOOGLE_APPLICATION_CREDENTIALS (or its _FILE form).
func (c *Config) keyFiles() []namedFile {
	out := append([]namedFile(nil), c.secretFiles...)
	if c.GitHub.PrivateKeyFile != "" {
		out = append(out, namedFile{"github.private_key_file", c.GitHub.PrivateKeyFile})
	}
	for _, t := range c.Targets {
		if t.SSH.PrivateKeyFile != "" {
			out = append(out, namedFile{fmt.Sprintf("targets %s ssh.private_key_file", t.Name), t.SSH.PrivateKeyFile})
		}
	}
	if c.GoogleCredentials != "" {
		out = append(out, namedFile{c.googleSetting, c.GoogleCredentials})
	}
	return out
}

// FileWarnings returns one line for each file holding a secret or a private
// key (see keyFiles) that users other than its owner may read: mode bits for
// group or others. These are warnings, not errors: a mounted secret is often
// group-readable on purpose (Kubernetes' fsGroup). A file that cannot be
// examined is left to the code that reads it.
func (c *Config) FileWarnings() []string {
	var out []string
	for _, f := range c.keyFiles() {
		fi, err := os.Stat(f.path)
		if err != nil {
			continue
		}
		if msg := readableByOthers(f.setting, f.path, fi.Mode()); msg != "" {
			out = append(out, msg)
		}
	}
	return out
}

// readableByOthers decides the warning for one key file of mode m; "" when
// only its owner may read it.
func readableByOthers(setting, path string, m fs.FileMode) string {
	if m.Perm()&0o044 == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s is readable by group or others (mode %04o): chmod 600 %s", setting, path, m.Perm(), path)
}

// PrepareDataDir makes sure dir can hold the journal: a missing dir is created
// with mode 0700 (its missing parents too); an existing one must be a
// directory, not a symbolic link, owned by the user deployhook runs as, and
// not writable by group or others. Anyone who can write data_dir can replace
// the journal, and with it what deployhook believes is deployed. The error says
// what to fix.
func PrepareDataDir(dir string) error {
	if dir == "" {
		return errors.New("data_dir is empty: set data_dir (or --data-dir) to the directory of the journal")
	}
	// Without a trailing slash, Lstat looks at a symbolic link itself.
	dir = filepath.Clean(dir)
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create data_dir: %w", err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	uid, ok := fileOwner(fi)
	return dataDirProblem(dir, fi.Mode(), uid, ok, os.Geteuid())
}

// dataDirProblem decides whether an existing data_dir with mode m, owned by
// owner (known when hasOwner), may be used by the user euid.
func dataDirProblem(dir string, m fs.FileMode, owner int, hasOwner bool, euid int) error {
	switch {
	case m&fs.ModeSymlink != 0:
		return fmt.Errorf("data_dir %s is a symbolic link: set data_dir to the directory it points to", dir)
	case !m.IsDir():
		return fmt.Errorf("data_dir %s is not a directory: set data_dir to a directory (a missing one is created)", dir)
	case hasOwner && owner != euid:
		return fmt.Errorf("data_dir %s is owned by uid %d, not by the user deployhook runs as (uid %d): chown %d %s, or set data_dir to a directory that does not exist yet (deployhook creates it with mode 0700)", dir, owner, euid, euid, dir)
	case m.Perm()&0o022 != 0:
		return fmt.Errorf("data_dir %s is writable by group or others (mode %04o): chmod 700 %s", dir, m.Perm(), dir)
	}
	return nil
}
