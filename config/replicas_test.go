package config

import (
	"strings"
	"testing"
)

// replicas: true is refused without a PostgreSQL journal, and accepted with
// store or DEPLOYHOOK_DATABASE_URL.
func TestConfig_validateReplicas(t *testing.T) {
	tests := []struct {
		name     string
		c        Config
		wantFail bool
	}{
		{"off", Config{}, false},
		{"SQLite journal", Config{Replicas: true}, true},
		{"store", Config{Replicas: true, Store: "postgres://deployhook@db/deployhook"}, false},
		{"environment", Config{Replicas: true, DatabaseURL: "postgres://deployhook:pw@db/deployhook"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.c.validateReplicas()
			if got := len(errs) > 0; got != tt.wantFail {
				t.Fatalf("validateReplicas() = %v, want failure %v", errs, tt.wantFail)
			}
			if tt.wantFail && !strings.Contains(errs[0].Error(), "DEPLOYHOOK_DATABASE_URL") {
				t.Errorf("error %q does not say what to set", errs[0])
			}
		})
	}
}
