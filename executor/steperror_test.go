package executor

import (
	"context"
	"errors"
	"testing"
)

// TestStepError_Error: the log's text of a failed step says each thing once.
// Before issue 9 a lost connection read `step restart: connection lost: target
// vm: step "restart": wait: connection lost (…): EOF`, the transport's own
// error already naming the step and the lost connection.
func TestStepError_Error(t *testing.T) {
	lost := errors.New(`target vm: step "restart": wait: connection lost (no answer to keepalive): EOF`)
	tests := []struct {
		name string
		err  *stepError
		want string
	}{
		{"exit", &stepError{step: "verify", exitCode: 3}, "step verify exited 3"},
		{"timeout", &stepError{step: "sync", exitCode: -1, err: ErrTimeout}, "step sync timed out"},
		{"cancelled", &stepError{step: "sync", exitCode: -1, err: context.Canceled}, "step sync: context canceled"},
		{"connection lost", &stepError{step: "restart", exitCode: -1, err: lost, transport: true}, lost.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}
