package main

import (
	"context"
	"log/slog"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor/ghstatus"
	"github.com/deployhook/deployhook/server"
)

// newServer builds the HTTP server over the assembled service a: the
// webhook receiver and the operator console, whose people auth signs in
// (consoleAuth). The executor streams the live logs and cancels jobs;
// GitHub, when reporting is on, tells the history pages about commits; mon
// observes the deliveries and, when the configuration puts it beside the
// pages, serves /metrics.
func newServer(lg *slog.Logger, cfg *config.Config, a *app, auth server.Auth, mon *monitor) (*server.Server, error) {
	var resolver server.Resolver = noResolver{}
	var commits server.Commits
	if a.gh != nil {
		resolver = a.gh
		commits = commitLookup{a.gh}
	}
	return server.New(lg, server.Options{
		Secrets: cfg.WebhookSecrets, MaxBody: int64(cfg.MaxBody), Routes: routes(cfg),
		PublicURL: cfg.PublicURL, Badges: cfg.Badges.On(), PrivateBadges: cfg.Badges.Private(),
		ShowOutput: *cfg.ShowOutput, Version: version, WebURL: cfg.GitHub.WebURL,
		Observer: mon.m, Metrics: mon.main(),
	}, server.Deps{
		Queue: a.ex, Journal: a.store, Resolver: resolver, Rollbacks: a.ex, Checker: readiness{a},
		Auth: auth, Live: a.ex, Commits: commits,
	})
}

// commitLookup is server.Commits through GitHub's API.
type commitLookup struct{ gh *ghstatus.Client }

func (c commitLookup) Commit(ctx context.Context, repo, sha string) (server.CommitInfo, error) {
	ci, err := c.gh.Commit(ctx, repo, sha)
	return server.CommitInfo(ci), err
}
