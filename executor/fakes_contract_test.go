package executor_test

import (
	"testing"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/storetest"
)

// The executor's fakes of the journal pass the conformance suite of Store
// that the SQLite store passes (issue 9: a fake that disagrees with its
// contract makes every test that uses it lie). Before the fixes that came
// with it, memStore failed it: CreateJob returned no id and dropped steps,
// listings were in the order recorded instead of newest by creation, Prune
// counted only final jobs against keep, and Check passed after Close.
func TestMemStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) executor.Store { return executor.NewMemStore() })
}

// TestFaultStore: a faultStore told to fail nothing is a memStore.
func TestFaultStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) executor.Store { return executor.NewFaultStore() })
}
