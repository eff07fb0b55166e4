package main

import (
	"testing"
	"time"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
)

// serve runs as a replica only with replicas: true and a PostgreSQL journal,
// and with the lane lease that lane_lease sets (0 leaves the executor's
// default).
func TestReplicas_options(t *testing.T) {
	const pg = "postgres://deployhook@db/deployhook"
	tests := []struct {
		name string
		cfg  config.Config
		want executor.Options
	}{
		{"one process", config.Config{}, executor.Options{}},
		{"replicas", config.Config{Replicas: true, Store: pg}, executor.Options{Replicas: true}},
		{"replicas with lane_lease", config.Config{Replicas: true, Store: pg, LaneLease: config.Duration(40 * time.Second)},
			executor.Options{Replicas: true, LaneLease: 40 * time.Second}},
		{"no PostgreSQL", config.Config{Replicas: true}, executor.Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := replicaOptions(&tt.cfg)
			if got.Replicas != tt.want.Replicas || got.LaneLease != tt.want.LaneLease {
				t.Errorf("replicaOptions = replicas %v, lane lease %v; want %v, %v", got.Replicas, got.LaneLease, tt.want.Replicas, tt.want.LaneLease)
			}
		})
	}
}
