// Package storetest is the conformance suite of the journal: the promises of
// executor.Store, written once and run against every implementation of it
// (the SQLite store in executor/store, the PostgreSQL one in
// executor/store/pgstore) and against every fake that stands in for it in
// other packages' tests. A fake that answers differently from the journal
// makes every test that uses it lie.
//
// Run checks every method of executor.Store, each promise in its own subtest
// on a new, empty store. RunReader checks the read side alone (Job and Jobs),
// for fakes that implement only that: server.Journal, for one. RunLanes
// checks executor.Lanes, which the journals that replicas share implement;
// RunText checks that such journals keep text alike. An implementation's
// test runs the suite on stores of its own making:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) executor.Store {
//			s, err := store.Open(t.Context(), lg, filepath.Join(t.TempDir(), "journal.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// The suite asserts what the contract in executor/types.go says, and nothing
// an implementation adds of its own (the SQLite store's output cap, its
// refusals of incomplete jobs, what happens on a second Open of one file): those
// stay in the implementation's own tests. Some subtests call a store from
// several goroutines at once, since every method must be safe for concurrent
// use. Times round-trip as instants to the nanosecond (a Postgres timestamptz
// keeps microseconds: store nanoseconds); their location is not part of the
// contract, so the suite compares them in UTC.
package storetest

import (
	"testing"

	"github.com/deployhook/deployhook/executor"
)

// Run runs the conformance suite of executor.Store against the stores that
// open returns. open must return a new, empty store each time it is called
// (Run calls it once per subtest, so subtests never share data), or fail t.
// Run closes each store when its subtest ends, unless the subtest closed it;
// open need not.
func Run(t *testing.T, open func(t *testing.T) executor.Store) {
	t.Helper()
	cases := []storeCase{
		{"CreateJob/records every field", testCreateJobRoundTrip},
		{"CreateJob/owes its reports", testCreateJobOwes},
		{"CreateJob/duplicate delivery", testCreateJobDuplicateDelivery},
		{"CreateJob/one delivery per target", testCreateJobDeliveryPerTarget},
		{"CreateJob/empty delivery never deduplicates", testCreateJobEmptyDelivery},
		{"CreateJob/duplicate body hash", testCreateJobBodyHash},
		{"CreateJob/delivery decides before body hash", testCreateJobDeliveryFirst},
		{"CreateJob/same id twice", testCreateJobSameID},
		{"CreateJob/concurrent calls for one delivery", testCreateJobConcurrentDelivery},
		{"CreateJob/concurrent replays of one body", testCreateJobConcurrentBody},
		{"UpdateJob/stores state, description, previous SHA, owner and times only", testUpdateJob},
		{"UpdateJob/owes its reports", testUpdateJobOwes},
		{"UpdateJob/unknown job", testUpdateJobUnknown},
		{"UpdateJob/a success turned failure by its watch", testUpdateJobFinalAgain},
		{"SetDeployment", testSetDeployment},
		{"Job and Jobs", func(t *testing.T, s executor.Store) {
			runReader(t, recordJobs(t, s))
		}},
		{"LastSuccess", testLastSuccess},
		{"Deployed", testDeployed},
		{"AddStep/insert or replace by seq", testAddStep},
		{"AddStep/unknown job", testAddStepUnknown},
		{"Owe and Owed/oldest first, every field", testOwed},
		{"Owed/limit", testOwedLimit},
		{"Settle", testSettle},
		{"Retry", testRetry},
		{"Beat and Orphans", testOrphans},
		{"Owner/the row Beat recorded", testOwner},
		{"Adopt/compare and set", testAdopt},
		{"Adopt/concurrent calls for one orphan", testAdoptConcurrent},
		{"AdoptSuccess/compare and set", testAdoptSuccess},
		{"Prune/owners", testPruneOwners},
		{"Prune/keeps LastSuccess", testPruneKeepsLastSuccess},
		{"Check", testCheck},
		{"Close", testClose},
	}
	for _, tt := range pruneCases() {
		cases = append(cases, storeCase{"Prune/" + tt.name, func(t *testing.T, s executor.Store) { testPrune(t, s, tt) }})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &tracked{Store: open(t)}
			t.Cleanup(func() {
				if s.closed {
					return
				}
				if err := s.Store.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			c.run(t, s)
		})
	}
}

// storeCase is one subtest of Run, on a new, empty store.
type storeCase struct {
	name string
	run  func(t *testing.T, s executor.Store)
}

// tracked is a store that remembers whether a subtest closed it.
type tracked struct {
	executor.Store
	closed bool
}

func (s *tracked) Close() error {
	s.closed = true
	return s.Store.Close()
}
