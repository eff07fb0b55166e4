package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// queuedChannel is the PostgreSQL notification channel on which CreateJob
// announces a queued job, with the job's target as the payload.
const queuedChannel = "deployhook_queued"

// Pace of WatchQueue's reconnections after its connection is lost.
const (
	listenRetryMin = time.Second
	listenRetryMax = 30 * time.Second
)

var _ executor.QueueWatcher = (*Store)(nil)

// WatchQueue implements executor.QueueWatcher: on a connection of its own
// (taken from the pool for good), it LISTENs on queuedChannel and calls
// queued with the target of each job that any process recorded queued
// (CreateJob notifies in the job's transaction, so the news comes after the
// commit), until ctx ends. Each time it starts listening, at first and after
// a lost connection (retried with a backoff from 1 s to 30 s, logged), it
// calls queued(""): news may have been missed meanwhile.
func (s *Store) WatchQueue(ctx context.Context, queued func(target string)) {
	wait := listenRetryMin
	for {
		listened, err := s.listen(ctx, queued)
		if ctx.Err() != nil {
			return
		}
		if listened {
			wait = listenRetryMin
		}
		s.lg.Warn("listen for queued jobs: lanes poll the journal until it is back", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, listenRetryMax)
	}
}

// listen listens on one connection until it fails or ctx ends; listened
// says whether its LISTEN succeeded.
func (s *Store) listen(ctx context.Context, queued func(target string)) (listened bool, err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	// A connection that LISTENs must not go back to the pool: it would
	// keep listening for whoever takes it next.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+queuedChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	queued("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("wait for a notification: %w", err)
		}
		queued(n.Payload)
	}
}
