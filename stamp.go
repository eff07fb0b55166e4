package main

import "fmt"

// commit and date are stamped by make release (and the container build) with
// -ldflags "-X main.commit=SHA -X main.date=RFC3339", next to version. The date
// is the commit's, not the build's, so two builds of one commit are the same
// bytes.
var (
	commit = ""
	date   = ""
)

// versionLine is what the version command prints: "deployhook VERSION", and
// the commit and its date when the build stamped them.
func versionLine() string {
	s := "deployhook " + version
	if commit != "" {
		s += fmt.Sprintf(" (commit %s, %s)", commit, date)
	}
	return s
}
