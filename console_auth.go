package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/server"
	"github.com/deployhook/deployhook/server/auth"
)

// noneLogin is who everyone is with ui: {auth: none}: the name the console
// shows and records on actions.
const noneLogin = "anyone"

// consoleAuth returns the console's sign-in as cfg.UI says (config.Load
// validated it): GitHub's OAuth web flow, IAP's signed headers, or, for an
// explicit none (the local demo), everyone with every right. It fails when
// ui.auth is not set: Load with WithoutWebhookOrGitHub lets that through,
// and no command that loads so may serve the console.
func consoleAuth(lg *slog.Logger, cfg *config.Config) (server.Auth, error) {
	switch cfg.UI.Auth {
	case config.AuthGitHub:
		return auth.GitHub(lg, auth.GitHubOptions{
			ClientID:     cfg.UI.GitHub.ClientID,
			ClientSecret: cfg.UI.OAuthClientSecret,
			WebURL:       cfg.GitHub.WebURL,
			APIURL:       cfg.GitHub.APIURL,
			PublicURL:    cfg.PublicURL,
			Team:         cfg.UI.GitHub.Team,
			SessionKey:   cfg.UI.SessionKey,
			SessionTTL:   time.Duration(cfg.UI.SessionTTL),
		})
	case config.AuthIAP:
		return auth.IAP(lg, auth.IAPOptions{
			Audience:   cfg.UI.IAP.Audience,
			Viewers:    cfg.UI.IAP.Viewers,
			Operators:  cfg.UI.IAP.Operators,
			KeysURL:    cfg.UI.IAP.KeysURL,
			SessionKey: cfg.UI.SessionKey,
		})
	case config.AuthNone:
		lg.Warn("ui.auth none: the console asks nobody to sign in; everyone who reaches it may see every target and redeploy, roll back and cancel")
		return server.AllowAll(noneLogin), nil
	}
	return nil, fmt.Errorf("ui.auth %q: the console needs github, iap or none", cfg.UI.Auth)
}
