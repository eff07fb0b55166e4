package executor_test

import (
	"testing"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/storetest"
)

// The executor's fakes of the journal pass the conformance suite of Store
// that the SQLite store passes (issue 9: a fake that disagrees with its
// contract makes every test that uses it lie).
func TestMemStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) executor.Store { return executor.NewMemStore() })
}

func TestFaultStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) executor.Store { return executor.NewFaultStore() })
}
