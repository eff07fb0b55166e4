// Package jobrow is what deployhook's two journals, the SQLite one
// (executor/store) and the PostgreSQL one (executor/store/pgstore), share
// about the rows they keep: the columns of the jobs and steps tables, how a
// job and a step are written to and read from them, and how the text they
// store is cleaned, so that both keep exactly the same text.
//
// # Text
//
// The journals store text that comes from outside: the output of commands
// run on a VM, their error messages, public descriptions, a trigger's actor
// and reason. PostgreSQL's text type (in a UTF-8 database) refuses NUL bytes
// and invalid UTF-8; SQLite keeps any bytes. Text and Output clean text the
// same way for both, before it is written: each NUL byte and each byte that
// is not part of valid UTF-8 becomes U+FFFD, and text longer than its limit
// is cut on a character boundary. Identifiers (job ids, targets, SHAs,
// delivery GUIDs, body hashes, owners) are compared by the journals and are
// never cleaned: their callers validate them.
package jobrow

import "unicode/utf8"

// MaxOutput is the most bytes of a step's output a journal keeps. The
// executor already bounds what it passes; this is the journal's own guard.
// Longer output keeps its tail, where a failing command says why.
const MaxOutput = 64 << 10

// MaxText is the most bytes a journal keeps of a job's description, a
// step's name, skip reason and error, and a trigger's repository, branch,
// actor and reason. None is near it in practice (a commit status description
// is at most 140 characters, a branch name at most 255 bytes); the limit
// bounds what a journal row costs when a caller passes something else.
const MaxText = 4 << 10

// ellipsis ends a text that Text cut.
const ellipsis = "…"

// Text returns s cleaned for a journal: each NUL byte and each byte of s
// that is not part of valid UTF-8 replaced by U+FFFD and, if the result is
// longer than MaxText bytes, its first bytes up to a character boundary
// followed by "…", MaxText bytes at most in all. Valid text without NUL
// bytes and within the limit is returned as it is.
func Text(s string) string {
	// Only the first MaxText bytes can be kept: clean those. Decoding UTF-8
	// resynchronizes at every character, so they clean as they do within s,
	// except a character cut at the end, which the cut below drops.
	long := len(s) > MaxText
	if long {
		s = s[:MaxText]
	}
	s = valid(s)
	if !long && len(s) <= MaxText {
		return s
	}
	cut := MaxText - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// Output returns a step's output s cleaned for a journal: as Text cleans,
// then cut to its last MaxOutput bytes at most, starting on a character
// boundary. Only the last MaxOutput bytes of s are looked at, so the work
// is bounded whatever the length of s.
func Output(s string) string {
	return tail(valid(tail(s, MaxOutput)), MaxOutput)
}

// tail returns the last max bytes of s at most, starting on a UTF-8
// character boundary when s is valid UTF-8 there.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	for i := 0; i < utf8.UTFMax && i < len(s); i++ {
		if utf8.RuneStart(s[i]) {
			return s[i:]
		}
	}
	return s
}

// valid returns s with each NUL byte and each byte that is not part of valid
// UTF-8 replaced by U+FFFD; s itself when there is none.
func valid(s string) string {
	clean := utf8.ValidString(s)
	for i := 0; clean && i < len(s); i++ {
		clean = s[i] != 0
	}
	if clean {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for _, r := range s { // an invalid byte ranges as utf8.RuneError, one byte long
		if r == 0 {
			r = utf8.RuneError
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}
