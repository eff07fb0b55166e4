package main

import (
	"context"
	"log/slog"
	"net/url"
	"strings"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor/ghstatus"
	"github.com/deployhook/deployhook/server"
)

// newServer builds the HTTP server over the assembled service a: the
// webhook receiver and the operator console, whose people auth signs in.
// The executor streams live logs and cancels jobs when it can (server.Live),
// and GitHub, when reporting is on, tells the history pages about commits.
func newServer(lg *slog.Logger, cfg *config.Config, a *app, auth server.Auth) (*server.Server, error) {
	var resolver server.Resolver = noResolver{}
	var commits server.Commits
	if a.gh != nil {
		resolver = a.gh
		commits = commitLookup{a.gh}
	}
	deps := server.Deps{
		Queue: a.ex, Journal: a.store, Resolver: resolver, Rollbacks: a.ex, Checker: readiness{a},
		Auth: auth, Commits: commits,
	}
	if live, ok := any(a.ex).(server.Live); ok {
		deps.Live = live
	}
	return server.New(lg, server.Options{
		Secrets: cfg.WebhookSecrets, MaxBody: int64(cfg.MaxBody), Routes: routes(cfg),
		PublicURL: cfg.PublicURL, Badges: cfg.Badges.On(), PrivateBadges: cfg.Badges.Private(),
		ShowOutput: *cfg.ShowOutput, Version: version, WebURL: webURL(cfg.GitHub.APIURL),
	}, deps)
}

// commitLookup is server.Commits through GitHub's API.
type commitLookup struct{ gh *ghstatus.Client }

func (c commitLookup) Commit(ctx context.Context, repo, sha string) (server.CommitInfo, error) {
	ci, err := c.gh.Commit(ctx, repo, sha)
	return server.CommitInfo(ci), err
}

// webURL is GitHub's web address for its REST API root api:
// https://github.com for https://api.github.com/, https://HOST for GitHub
// Enterprise Server's https://HOST/api/v3/; "" (the server's default,
// github.com) for anything else.
func webURL(api string) string {
	u, err := url.Parse(api)
	if err != nil || u.Host == "" {
		return ""
	}
	switch {
	case strings.EqualFold(u.Host, "api.github.com"):
		return "https://github.com"
	case strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/api/v3"):
		return u.Scheme + "://" + u.Host
	}
	return ""
}
