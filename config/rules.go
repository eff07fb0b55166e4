package config

import (
	"fmt"
	"path"
	"strings"
)

// validRepo checks that repo is owner/name as GitHub spells it: ASCII only,
// so a name can never match another by Unicode case folding (K, U+212A KELVIN
// SIGN, folds to k).
func validRepo(repo string) error {
	owner, name, ok := strings.Cut(repo, "/")
	switch {
	case !ok || !ownerName.MatchString(owner) || !repoName.MatchString(name):
		return fmt.Errorf("repo %+q must be owner/name, in ASCII letters, digits, -, _ and . (as in github.com/OWNER/NAME)", repo)
	case name == "." || name == "..":
		return fmt.Errorf("repo %q: %q is not a repository name", repo, name)
	case strings.HasSuffix(asciiLower(name), ".git"):
		return fmt.Errorf("repo %q: write the name without .git", repo)
	}
	return nil
}

// asciiLower lower-cases the ASCII letters of s and nothing else: the only case
// folding config uses (strings.ToLower and strings.EqualFold fold Unicode).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// sharedDirs are the directories every user of a Linux machine may write to.
var sharedDirs = []string{"/tmp", "/var/tmp", "/run/lock", "/var/lock", "/dev/shm"}

// sharedDir returns the directory of sharedDirs that holds the lock file
// directly, or "" when none does. A lock there can be created or held by any
// user (and a FIFO put in its place), so it cannot serialize deploys.
func sharedDir(lock string) string {
	if lock == "" {
		return ""
	}
	dir := path.Dir(path.Clean(lock))
	for _, d := range sharedDirs {
		if dir == d {
			return d
		}
	}
	return ""
}
