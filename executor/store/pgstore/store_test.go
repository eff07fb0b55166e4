package pgstore_test

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/pgstore"
	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
	"github.com/deployhook/deployhook/executor/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testLogger routes a store's logs to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// mustOpen opens a store on a new, empty database of the shared server.
func mustOpen(t *testing.T) (*pgstore.Store, string) {
	t.Helper()
	url := pgtest.Shared(t).NewDatabase(t)
	s, err := pgstore.Open(t.Context(), testLogger(t), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, url
}

// TestStore runs the journal's conformance suite against a real PostgreSQL
// server, each subtest on a database of its own.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) executor.Store {
		s, _ := mustOpen(t)
		return s
	})
}

// TestLanes runs the conformance suite of executor.Lanes against a real
// PostgreSQL server.
func TestLanes(t *testing.T) {
	storetest.RunLanes(t, func(t *testing.T) storetest.LaneStore {
		s, _ := mustOpen(t)
		return s
	})
}

// TestText checks that the PostgreSQL journal keeps text as the SQLite one
// does.
func TestText(t *testing.T) {
	storetest.RunText(t, func(t *testing.T) executor.Store {
		s, _ := mustOpen(t)
		return s
	})
}
