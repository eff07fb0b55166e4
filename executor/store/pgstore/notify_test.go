package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/pgstore"
)

// WatchQueue hears of every job that another process (another Store on the
// same database) records queued, by target, after it commits, and of no job
// recorded in another state. It says "" when it starts listening, and again
// when it listens anew after its connection was cut (the server ended it),
// and then hears the next jobs again.
func TestStore_WatchQueue(t *testing.T) {
	a, url := mustOpen(t)
	defer a.Close()
	b, err := pgstore.Open(t.Context(), testLogger(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	heard := make(chan string, 100)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.WatchQueue(ctx, func(target string) { heard <- target })
	}()
	defer func() { cancel(); <-done }()
	next := func(what string) string {
		t.Helper()
		select {
		case s := <-heard:
			return s
		case <-time.After(2 * time.Minute): // a generous deadline, not a timed assertion
			t.Fatalf("gave up waiting for %s", what)
			return ""
		}
	}
	create := func(id, target string, st executor.State) {
		t.Helper()
		j := executor.Job{ID: id, Target: target, State: st, Created: time.Now(),
			Trigger: executor.Trigger{Kind: executor.KindPush, SHA: fmt.Sprintf("%040x", len(id)+len(target)), Delivery: id}}
		if _, err := b.CreateJob(t.Context(), j); err != nil {
			t.Fatal(err)
		}
	}

	if got := next("the first listen"); got != "" {
		t.Fatalf("first news = %q, want \"\" (listening)", got)
	}
	create("j1", "production", executor.StateSuccess) // not queued: no news
	create("j2", "staging", executor.StateQueued)
	if got := next("the queued job"); got != "staging" {
		t.Errorf("news = %q, want staging (and none of the job recorded final)", got)
	}

	// The server ends the listening connection: WatchQueue listens again.
	exec(t, url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN deployhook_queued'`)
	if got := next("listening again"); got != "" {
		t.Fatalf("news after the cut = %q, want \"\" (listening again)", got)
	}
	create("j3", "production", executor.StateQueued)
	if got := next("the job queued after the cut"); got != "production" {
		t.Errorf("news = %q, want production", got)
	}
}
