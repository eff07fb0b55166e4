// Package gitsha is deployhook's one rule for what a Git commit id looks like:
// the full SHA-1 id, 40 hexadecimal digits, written in lower case.
//
// Every package that takes a SHA from outside checks it with Valid: package
// webhook (push and workflow_run payloads), package server (workflow_dispatch
// inputs, branch heads), the executor (every trigger it queues, the target's
// current commit) and executor/ghstatus (before a SHA goes into a GitHub API
// path). It is a leaf package of the standard library only, so that package
// webhook, which imports nothing of deployhook's, can share the rule too.
//
// Upper case is not a second spelling. GitHub writes commit ids in lower case
// in every payload and API answer, and git prints them so; a SHA in upper or
// mixed case is not Valid. What a person types (deployhook deploy --sha,
// rollback --to, the sha input of a workflow_dispatch) is passed through
// Lower first, so a SHA copied in upper case still names its commit, and the
// journal, the queue and GitHub only ever see one spelling of it.
package gitsha

// Len is the length of a full SHA-1 commit id in hexadecimal.
const Len = 40

// Valid reports whether s is a full commit id as deployhook stores and
// compares it: exactly Len characters, each one of 0-9 and a-f.
func Valid(s string) bool {
	if len(s) != Len {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Lower returns s with its ASCII letters A-Z lower-cased and every other
// byte unchanged, for a SHA a person typed: Valid(Lower(s)) holds when s is
// 40 hexadecimal digits in any case. Only ASCII is folded: strings.ToLower
// would also turn U+212A KELVIN SIGN into k.
func Lower(s string) string {
	for i := range len(s) {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
