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
