package executor

import "testing"

// TestParseCutMarker: what CutMarker writes parses back to its count, and
// nothing else is a marker.
func TestParseCutMarker(t *testing.T) {
	for _, n := range []int64{1, 48, 12345, 1 << 40} {
		if got, ok := ParseCutMarker(CutMarker(n)); !ok || got != n {
			t.Errorf("ParseCutMarker(%q) = %d, %v; want %d, true", CutMarker(n), got, ok, n)
		}
	}
	for _, line := range []string{"", "[… bytes cut …]", "[… 0 bytes cut …]", "[… -5 bytes cut …]", "[… +5 bytes cut …]",
		"[… 5 bytes cut …] ", " [… 5 bytes cut …]", "[… 5x bytes cut …]", "[... 5 bytes cut ...]", "[… 99999999999999999999 bytes cut …]"} {
		if n, ok := ParseCutMarker(line); ok {
			t.Errorf("ParseCutMarker(%q) = %d, true; want not a marker", line, n)
		}
	}
}
