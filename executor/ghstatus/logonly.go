package ghstatus

import (
	"context"
	"log/slog"

	"github.com/deployhook/deployhook/executor"
)

// LogOnly returns a Reporter that tells GitHub nothing: it logs each report at
// INFO (job, target, repo, sha, state, description) and returns 0, nil. It is
// for trying deployhook out without a GitHub token (the demo configuration).
func LogOnly(lg *slog.Logger) executor.Reporter {
	return logOnly{lg: lg}
}

type logOnly struct{ lg *slog.Logger }

func (l logOnly) Report(ctx context.Context, r executor.Report) (int64, error) {
	l.lg.LogAttrs(ctx, slog.LevelInfo, "report (not sent: no GitHub credentials)",
		slog.String("job", r.Job),
		slog.String("target", r.Target),
		slog.String("repo", r.Repo),
		slog.String("sha", r.SHA),
		slog.String("state", string(r.State)),
		slog.String("description", Truncate(r.Description)),
	)
	return 0, nil
}
