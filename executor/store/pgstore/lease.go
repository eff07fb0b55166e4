package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deployhook/deployhook/executor"
)

// Owner returns the owner row of id as Beat last recorded it, or an error
// wrapping executor.ErrNotFound when there is none.
func (s *Store) Owner(ctx context.Context, id string) (executor.Owner, error) {
	o := executor.Owner{ID: id}
	var until int64
	err := s.pool.QueryRow(ctx, `SELECT kind, host, pid, "until" FROM owners WHERE id = $1`, id).
		Scan(&o.Kind, &o.Host, &o.PID, &until)
	if errors.Is(err, pgx.ErrNoRows) {
		return executor.Owner{}, fmt.Errorf("owner %q: %w", id, executor.ErrNotFound)
	}
	if err != nil {
		return executor.Owner{}, fmt.Errorf("read owner %q: %w", id, err)
	}
	o.Until = time.Unix(0, until).UTC()
	return o, nil
}
