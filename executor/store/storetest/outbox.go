package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// outboxReports are three reports with every field set (the last one is a
// notice: Notify, Event and Actor).
func outboxReports() []executor.Report {
	return []executor.Report{
		{Job: "j1", Target: "production", Environment: "prod", Repo: "acme/app", SHA: sha1,
			State: executor.StateRunning, Description: "deploying 0123456", URL: "https://deploy.example.com/jobs/j1"},
		{Job: "j1", Target: "production", Environment: "prod", Repo: "acme/app", SHA: sha1,
			State: executor.StateSuccess, Description: "deployed", URL: "https://deploy.example.com/jobs/j1", Deployment: 77},
		{Job: "j2", Target: "staging", Environment: "staging", Repo: "acme/app", SHA: sha2,
			State: executor.StateFailure, Description: "verify failed (exit 3); rolled back to 89abcde", URL: "https://deploy.example.com/jobs/j2",
			Notify: "slack", Event: executor.EventRollback, Actor: "octocat"},
	}
}

// mustOwe owes every report, and fails t if the store refuses one.
func mustOwe(t *testing.T, s executor.Store, reports ...executor.Report) {
	t.Helper()
	for _, r := range reports {
		if err := s.Owe(t.Context(), r); err != nil {
			t.Fatalf("Owe(%+v): %v", r, err)
		}
	}
}

// entry is an owed report as the suite compares it: no id, no time.
type entry struct {
	Report executor.Report
	Tries  int
}

func entries(owed []executor.OwedReport) []entry {
	out := []entry{}
	for _, o := range owed {
		out = append(out, entry{o.Report, o.Tries})
	}
	return out
}

// Owe keeps every field of a report; Owed lists them oldest first, with zero
// tries, the time they were owed, and ids that grow and are never reused.
func testOwed(t *testing.T, s executor.Store) {
	if owed := mustOwed(t, s); len(owed) != 0 {
		t.Fatalf("Owed(empty outbox) = %+v, want none", owed)
	}
	reports := outboxReports()
	before := time.Now()
	mustOwe(t, s, reports...)
	after := time.Now()
	owed := mustOwed(t, s)
	want := []entry{{reports[0], 0}, {reports[1], 0}, {reports[2], 0}}
	if got := entries(owed); !reflect.DeepEqual(got, want) {
		t.Fatalf("Owed =\n%+v\nwant\n%+v", got, want)
	}
	for i, o := range owed {
		// A second of slack: a store may take the time from another clock
		// (a database server's).
		if o.Created.Before(before.Add(-time.Second)) || o.Created.After(after.Add(time.Second)) {
			t.Errorf("owed[%d].Created = %v, want between %v and %v", i, o.Created, before, after)
		}
		if i > 0 && o.ID <= owed[i-1].ID {
			t.Errorf("owed[%d].ID = %d after %d, want ids that grow", i, o.ID, owed[i-1].ID)
		}
	}
	last := owed[len(owed)-1].ID
	if err := s.Settle(t.Context(), last); err != nil {
		t.Fatalf("Settle(%d): %v", last, err)
	}
	mustOwe(t, s, reports[2])
	owed = mustOwed(t, s)
	if got := owed[len(owed)-1].ID; got <= last {
		t.Errorf("the id of a report owed after report %d was settled is %d, want one above it: ids are never reused", last, got)
	}
}

// Owed returns at most limit reports, the oldest; all of them when limit <= 0.
func testOwedLimit(t *testing.T, s executor.Store) {
	reports := outboxReports()
	mustOwe(t, s, reports...)
	tests := []struct {
		limit int
		want  []executor.Report
	}{
		{1, reports[:1]},
		{2, reports[:2]},
		{3, reports},
		{10, reports},
		{0, reports},
		{-1, reports},
	}
	for _, tt := range tests {
		owed, err := s.Owed(t.Context(), tt.limit)
		if err != nil {
			t.Errorf("Owed(%d): %v", tt.limit, err)
			continue
		}
		if got := reportsOf(owed); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Owed(%d) =\n%+v\nwant\n%+v", tt.limit, got, tt.want)
		}
	}
}

// Settle removes one report; ErrNotFound once it is gone, or for an id never
// owed.
func testSettle(t *testing.T, s executor.Store) {
	reports := outboxReports()
	mustOwe(t, s, reports...)
	owed := mustOwed(t, s)
	if err := s.Settle(t.Context(), owed[1].ID); err != nil {
		t.Fatalf("Settle(%d): %v", owed[1].ID, err)
	}
	want := []entry{{reports[0], 0}, {reports[2], 0}}
	if got := entries(mustOwed(t, s)); !reflect.DeepEqual(got, want) {
		t.Errorf("Owed after Settle =\n%+v\nwant\n%+v", got, want)
	}
	wantNotFound(t, "Settle(settled)", s.Settle(t.Context(), owed[1].ID))
	wantNotFound(t, "Retry(settled)", s.Retry(t.Context(), owed[1].ID))
	wantNotFound(t, "Settle(never owed)", s.Settle(t.Context(), owed[2].ID+1000))
	if got := entries(mustOwed(t, s)); !reflect.DeepEqual(got, want) {
		t.Errorf("Owed after the refused calls =\n%+v\nwant\n%+v", got, want)
	}
}

// Retry counts a failed attempt of one report, and changes nothing else;
// ErrNotFound for an id not in the outbox.
func testRetry(t *testing.T, s executor.Store) {
	reports := outboxReports()
	mustOwe(t, s, reports...)
	owed := mustOwed(t, s)
	for range 2 {
		if err := s.Retry(t.Context(), owed[0].ID); err != nil {
			t.Fatalf("Retry(%d): %v", owed[0].ID, err)
		}
	}
	if err := s.Retry(t.Context(), owed[2].ID); err != nil {
		t.Fatalf("Retry(%d): %v", owed[2].ID, err)
	}
	wantNotFound(t, "Retry(never owed)", s.Retry(t.Context(), owed[2].ID+1000))
	after := mustOwed(t, s)
	want := []entry{{reports[0], 2}, {reports[1], 0}, {reports[2], 1}}
	if got := entries(after); !reflect.DeepEqual(got, want) {
		t.Errorf("Owed after Retry =\n%+v\nwant\n%+v", got, want)
	}
	for i := range after {
		if after[i].ID != owed[i].ID || !after[i].Created.Equal(owed[i].Created) {
			t.Errorf("owed[%d] = id %d, created %v after Retry; want id %d, created %v (unchanged)",
				i, after[i].ID, after[i].Created, owed[i].ID, owed[i].Created)
		}
	}
}
