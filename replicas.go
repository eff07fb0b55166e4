package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/pgstore"
)

// replicaOptions are the executor options of deployhook serve: as one of
// several replicas (executor.Options.Replicas) when the configuration says
// replicas: true, which config allows only with a PostgreSQL journal, with
// the lane lease of lane_lease (0: executor.DefaultLaneLease).
func replicaOptions(cfg *config.Config) executor.Options {
	return executor.Options{
		Replicas:  cfg.Replicas && cfg.JournalURL() != "",
		LaneLease: time.Duration(cfg.LaneLease),
	}
}

// pgNotReady is /readyz's public reason while the PostgreSQL journal does not
// take writes (the database is down, unreachable, failing over or read-only):
// the load balancer then sends deliveries to another replica, and this one
// answers those it still gets 503, which GitHub lets a person redeliver. The
// driver's error, which names the host and database, goes to the log only.
const pgNotReady = "PostgreSQL journal unreachable or not writable: deliveries are answered 503 until it takes writes again; see the log"

// pgOpenTimeout bounds openPostgres's first attempt to migrate the journal
// for serve: a database that does not answer within it is waited for by the
// executor's start-up recovery, with /readyz answering meanwhile.
const pgOpenTimeout = 30 * time.Second

// openPostgres opens the PostgreSQL journal at url. Unless patient, that is
// pgstore.Open: connect and migrate, or fail. A patient open (deployhook
// serve) also returns the journal when the database cannot be reached or is
// not taking connections (pgstore.Unavailable): unmigrated, for the
// executor's start-up recovery to migrate once the database answers, which
// it retries with a backoff while /readyz says pgNotReady. So a replica that
// starts during an outage (a Cloud SQL maintenance, a failover) waits for the
// database instead of exiting into a crash loop. A database that answers and
// refuses (a wrong password, no such database, a schema newer than this
// binary knows) fails at once, patient or not: waiting would not fix it.
func openPostgres(ctx context.Context, lg *slog.Logger, url string, patient bool) (executor.Store, error) {
	if !patient {
		return pgstore.Open(ctx, lg, url)
	}
	s, err := pgstore.Connect(lg, url)
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithTimeout(ctx, pgOpenTimeout)
	defer cancel()
	err = s.Migrate(mctx)
	switch {
	case err == nil:
	case pgstore.Unavailable(err) || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil):
		lg.Error("the journal's database does not answer at start: serving, not ready, until it does", "err", err)
	default:
		s.Close()
		return nil, err
	}
	return s, nil
}
