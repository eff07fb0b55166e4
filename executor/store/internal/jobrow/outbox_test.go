package jobrow

import (
	"slices"
	"testing"
)

// A drainer claims a job's reports only from its oldest owed one on, never
// one behind a report it does not claim: a job's reports are not split
// between drainers, nor sent out of order.
func TestInOrder(t *testing.T) {
	all := []IDJob{{7, "b"}, {1, "a"}, {2, "b"}, {3, "a"}, {5, "c"}, {6, "c"}, {4, "b"}}
	cands := []IDJob{{1, "a"}, {3, "a"}, {4, "b"}, {7, "b"}, {6, "c"}}
	// a: 1 and 3 both candidates; b: 2 is not, so 4 and 7 wait behind it;
	// c: 5 is not, so 6 waits.
	if got, want := InOrder(cands, all), []int64{1, 3}; !slices.Equal(got, want) {
		t.Errorf("InOrder = %v, want %v", got, want)
	}
	if got := InOrder(nil, nil); got == nil || len(got) != 0 {
		t.Errorf("InOrder of nothing = %#v, want an empty slice", got)
	}
	if got, want := JobsOf(cands), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("JobsOf = %v, want %v", got, want)
	}
}
