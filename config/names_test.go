package config

import (
	"regexp"
	"strings"
	"testing"
)

// TestNameRules checks each character rule against the regular expression it
// replaced, on names built from every interesting byte at every position and
// around every length limit.
func TestNameRules(t *testing.T) {
	rules := []struct {
		name string
		rule nameRule
		re   *regexp.Regexp
	}{
		{"owner", ownerName, regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)},
		{"repo", repoName, regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)},
		{"target", targetName, regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)},
		{"user", userName, regexp.MustCompile(`^[a-z_][a-z0-9_.-]*$`)},
		{"env", envName, regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)},
	}
	bytes := "aZ09_-.$/ \n\x00\xc3\x84\u212a"
	var names []string
	for _, c := range strings.Split(bytes, "") {
		names = append(names, c, "a"+c, c+"a", "ab"+c+"cd")
	}
	for _, n := range []int{1, 62, 63, 64, 99, 100, 101} {
		names = append(names, strings.Repeat("a", n), "A"+strings.Repeat("b", n-1))
	}
	names = append(names, "", "octo-cat", "data_platform", "dagster", "DEPLOYHOOK_SHA", "9lives", "_x", ".git", "a.b")
	for _, r := range rules {
		for _, s := range names {
			if got, want := r.rule.MatchString(s), r.re.MatchString(s); got != want {
				t.Errorf("%s rule on %q: %v, the expression says %v", r.name, s, got, want)
			}
		}
	}
}
