package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// Owner returns the owner row of id as Beat last recorded it, or an error
// wrapping executor.ErrNotFound when there is none.
func (s *Store) Owner(ctx context.Context, id string) (executor.Owner, error) {
	o := executor.Owner{ID: id}
	var until int64
	err := s.r.QueryRowContext(ctx, `SELECT kind, host, pid, until FROM owners WHERE id = ?`, id).
		Scan(&o.Kind, &o.Host, &o.PID, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return executor.Owner{}, fmt.Errorf("owner %q: %w", id, executor.ErrNotFound)
	}
	if err != nil {
		return executor.Owner{}, fmt.Errorf("read owner %q: %w", id, err)
	}
	o.Until = time.Unix(0, until).UTC()
	return o, nil
}
