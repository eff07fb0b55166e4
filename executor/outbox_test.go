package executor

import (
	"slices"
	"strings"
	"testing"
)

// TestStaleReports pins which owed reports a later final report of the same
// job makes stale, one row per rule and per case the rules must leave alone.
// Each report is written "job:state", oldest first, as Store.Owed returns them.
func TestStaleReports(t *testing.T) {
	tests := []struct {
		name string
		owed []string
		want []int // the indexes of the stale reports
	}{
		{name: "empty outbox", owed: nil, want: nil},
		{name: "superseded job: queued is stale",
			owed: []string{"a:queued", "a:superseded"}, want: []int{0}},
		{name: "superseded job: running is stale",
			owed: []string{"a:queued", "a:running", "a:superseded"}, want: []int{0, 1}},
		{name: "ended job: running is stale",
			owed: []string{"a:running", "a:success"}, want: []int{0}},
		{name: "ended job: queued is kept so the commit shows pending first",
			owed: []string{"a:queued", "a:running", "a:failure"}, want: []int{1}},
		{name: "skipped job: queued is kept",
			owed: []string{"a:queued", "a:skipped"}, want: nil},
		{name: "errored job: running is stale, queued kept",
			owed: []string{"a:queued", "a:running", "a:error"}, want: []int{1}},
		{name: "no final report yet: nothing is stale",
			owed: []string{"a:queued", "a:running"}, want: nil},
		{name: "final reports are never stale",
			owed: []string{"a:error", "a:superseded"}, want: nil},
		{name: "a pending report after the last final one is kept",
			owed: []string{"a:superseded", "a:running"}, want: nil},
		{name: "the last final report decides",
			owed: []string{"a:queued", "a:success", "a:queued", "a:superseded"}, want: []int{0, 2}},
		{name: "another job's final report makes nothing stale",
			owed: []string{"a:queued", "a:running", "b:superseded", "b:queued"}, want: nil},
		{name: "jobs interleaved",
			owed: []string{"a:queued", "b:queued", "a:running", "b:superseded", "a:success", "c:running"},
			want: []int{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			owed := make([]OwedReport, len(tt.owed))
			for i, s := range tt.owed {
				job, state, _ := strings.Cut(s, ":")
				owed[i] = OwedReport{ID: int64(i + 1), Report: Report{Job: job, State: State(state)}}
			}
			stale := staleReports(owed)
			if len(stale) != len(owed) {
				t.Fatalf("staleReports returned %d answers for %d reports", len(stale), len(owed))
			}
			var got []int
			for i, s := range stale {
				if s {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("stale = %v, want %v", got, tt.want)
			}
		})
	}
}
