package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strings"
)

// validRepo checks that repo is owner/name as GitHub spells it: ASCII only,
// so a name can never match another by Unicode case folding (K, U+212A KELVIN
// SIGN, folds to k).
func validRepo(repo string) error {
	owner, name, ok := strings.Cut(repo, "/")
	switch {
	case !ok || !ownerRE.MatchString(owner) || !repoRE.MatchString(name):
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

// requireSecure checks an endpoint override that receives credentials (a
// bearer token, an access token): https or wss for any host; plain http or ws
// only when the host is loopback (127.0.0.0/8, ::1 or localhost), for tests
// and local fakes. name says which setting it is.
func requireSecure(name, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q is not an absolute URL", name, rawURL)
	}
	switch asciiLower(u.Scheme) {
	case "https", "wss":
		return nil
	case "http", "ws":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%s %q: %s sends credentials in cleartext; use https (or wss), or a loopback host (127.0.0.1, ::1, localhost)", name, rawURL, u.Scheme)
	}
	return fmt.Errorf("%s %q: the scheme must be https (or wss)", name, rawURL)
}

// isLoopback reports whether host names this machine without a lookup: an
// address in 127.0.0.0/8 or ::1, or the name localhost.
func isLoopback(host string) bool {
	if asciiLower(host) == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
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
