package remote

import (
	"strings"
	"testing"
)

// The lock's promises (waits, ErrLocked, the steps lock, its location and
// modes, unsafe locations refused, the path as data) are checked for every
// transport by remotetest; here only the path's cleaning.

func TestCleanLock(t *testing.T) {
	tests := []struct {
		lock, want, wantErr string
	}{
		{lock: ".deployhook/deploy.lock", want: ".deployhook/deploy.lock"},
		{lock: "/var/lib/deployhook//deploy.lock", want: "/var/lib/deployhook/deploy.lock"},
		{lock: "./deploy.lock", want: "deploy.lock"},
		{lock: "/", wantErr: "not a file name"},
		{lock: ".", wantErr: "not a file name"},
		{lock: "locks/..", wantErr: "not a file name"},
	}
	for _, tt := range tests {
		got, err := cleanLock(tt.lock)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("cleanLock(%q) = %q, %v; want an error containing %q", tt.lock, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("cleanLock(%q) = %q, %v; want %q", tt.lock, got, err, tt.want)
		}
	}
}
