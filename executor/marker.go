package executor

import (
	"strconv"
	"strings"
)

// The cut marker's text around its byte count (see CutMarker).
const (
	markerPrefix = "[… "
	markerSuffix = " bytes cut …]"
)

// CutMarker returns the line that, in a step's output, stands for n bytes
// dropped from its middle to keep it within Options.OutputLimit: the
// journal's StepRun.Output and the live log both carry it.
func CutMarker(n int64) string { return markerPrefix + strconv.FormatInt(n, 10) + markerSuffix }

// ParseCutMarker reports whether line is a cut marker (CutMarker), and the
// number of bytes it stands for: the lines (each with its newline) dropped
// between the output's head and its tail. A step's own output may print such
// a line too; a reader that places the tail by the count takes the first one.
func ParseCutMarker(line string) (int64, bool) {
	s, ok := strings.CutPrefix(line, markerPrefix)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, markerSuffix)
	if !ok || s == "" || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
