package storetest

import (
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// Owner returns the row Beat recorded last, every field, Until to the
// nanosecond; ErrNotFound for an owner that never beat or that Prune
// removed.
func testOwner(t *testing.T, s executor.Store) {
	ctx := t.Context()
	_, err := s.Owner(ctx, "ghost")
	wantNotFound(t, "Owner(ghost)", err)

	first := executor.Owner{ID: "serve-1", Kind: "serve", Host: "vm-1", PID: 4242, Until: t0.Add(time.Minute)}
	if err := s.Beat(ctx, first); err != nil {
		t.Fatal(err)
	}
	renewed := executor.Owner{ID: "serve-1", Kind: "serve", Host: "vm-2", PID: 77, Until: t0.Add(2*time.Minute + time.Nanosecond)}
	if err := s.Beat(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	other := executor.Owner{ID: "cli-1", Kind: "cli", Host: "laptop", PID: 9, Until: t0.Add(-time.Hour)}
	if err := s.Beat(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, want := range []executor.Owner{renewed, other} {
		got, err := s.Owner(ctx, want.ID)
		if err != nil {
			t.Fatalf("Owner(%s): %v", want.ID, err)
		}
		got.Until, want.Until = utc(got.Until), utc(want.Until)
		if got != want {
			t.Errorf("Owner(%s) = %+v, want %+v", want.ID, got, want)
		}
	}

	// Prune removes the rows of leases that ended before its cut-off.
	if _, err := s.Prune(ctx, t0, 0); err != nil {
		t.Fatal(err)
	}
	_, err = s.Owner(ctx, "cli-1")
	wantNotFound(t, "Owner(cli-1) after Prune", err)
	if _, err := s.Owner(ctx, "serve-1"); err != nil {
		t.Errorf("Owner(serve-1) after Prune: %v, want its row kept", err)
	}
}
