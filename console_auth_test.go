package main

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/server/auth"
)

func TestConsoleAuth(t *testing.T) {
	base := func(ui config.UI) *config.Config {
		return &config.Config{
			PublicURL: "https://deploy.example.com",
			GitHub:    config.GitHub{APIURL: "https://api.github.com/", WebURL: "https://github.com/"},
			UI:        ui,
		}
	}
	tests := []struct {
		name     string
		cfg      *config.Config
		provider string // the Auth's kind: github, iap or none; "" for an error
	}{
		{"github", base(config.UI{Auth: config.AuthGitHub, GitHub: config.UIGitHub{ClientID: "Iv1.abc"}, OAuthClientSecret: "s"}), "github"},
		{"iap", base(config.UI{Auth: config.AuthIAP, IAP: config.UIIAP{Audience: "/projects/1/apps/acme-prod", Viewers: []string{"domain:example.com"}}}), "iap"},
		{"none", base(config.UI{Auth: config.AuthNone}), "none"},
		{"not set", base(config.UI{}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			a, err := consoleAuth(slog.New(slog.NewTextHandler(&logs, nil)), tt.cfg)
			if tt.provider == "" {
				if err == nil {
					t.Fatal("consoleAuth accepted a configuration without ui.auth")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got string
			switch a.(type) {
			case *auth.GitHubAuth:
				got = "github"
			case *auth.IAPAuth:
				got = "iap"
			default:
				p, ok := a.Who(httptest.NewRequest("GET", "/", nil))
				if ok && p.Login == noneLogin {
					got = p.Provider
				}
			}
			if got != tt.provider {
				t.Errorf("consoleAuth = %T (%s), want %s", a, got, tt.provider)
			}
			if tt.provider == "none" && !strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("none is not warned about: %q", logs.String())
			}
		})
	}
}
