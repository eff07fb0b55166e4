package server

import (
	"slices"
	"testing"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/storetest"
)

// The server's fake journal answers Job and Jobs as the journal does: it
// passes the read side of the journal's conformance suite (issue 9: before,
// Jobs listed jobs in the slice's order and with their steps).
func TestFakeJournal(t *testing.T) {
	storetest.RunReader(t, func(t *testing.T, jobs []executor.Job) storetest.Reader {
		// fakeJournal.jobs lists the last recorded first.
		jobs = slices.Clone(jobs)
		slices.Reverse(jobs)
		return &fakeJournal{jobs: jobs}
	})
}
