// Package shell quotes words for a POSIX shell, for the command lines deployhook
// builds (steps run through sh on the target, and deployhook ssh's command).
package shell

import "strings"

// Quote returns s as one single-quoted POSIX shell word: inside single quotes
// nothing is special except the single quote itself, which is written by
// closing the quoted word, adding a backslash-escaped quote and reopening it.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each of args and joins them with spaces: a command line that
// the shell splits back into exactly args.
func Join(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = Quote(a)
	}
	return strings.Join(quoted, " ")
}
