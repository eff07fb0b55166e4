package main

import (
	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
)

// replicaOptions are the executor options of deployhook serve: as one of
// several replicas (executor.Options.Replicas) when the configuration says
// replicas: true, which config allows only with a PostgreSQL journal.
func replicaOptions(cfg *config.Config) executor.Options {
	return executor.Options{Replicas: cfg.Replicas && cfg.JournalURL() != ""}
}

// pgNotReady is /readyz's public reason while the PostgreSQL journal does not
// take writes (the database is down, unreachable, failing over or read-only):
// the load balancer then sends deliveries to another replica, and this one
// answers those it still gets 503, which GitHub lets a person redeliver. The
// driver's error, which names the host and database, goes to the log only.
const pgNotReady = "PostgreSQL journal unreachable or not writable: deliveries are answered 503 until it takes writes again; see the log"
