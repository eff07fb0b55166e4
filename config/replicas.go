package config

import "errors"

// validateReplicas checks the replicas key: several deployhook processes
// share their journal, and only a PostgreSQL one can be shared (the SQLite
// journal is a file of one machine).
func (c *Config) validateReplicas() []error {
	if c.Replicas && c.JournalURL() == "" {
		return []error{errors.New("replicas: true needs a PostgreSQL journal: set store (postgres://…) or DEPLOYHOOK_DATABASE_URL, or remove replicas")}
	}
	return nil
}
