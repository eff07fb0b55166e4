package main

import (
	"net/url"
	"strings"

	"github.com/deployhook/deployhook/config"
)

// minKeyLine is the shortest line of the SSH private key that is redacted:
// its base64 body lines (70 characters in OpenSSH's format), not its armour.
const minKeyLine = 16

// redactions returns the secrets that a step's output must never carry into
// the journal, the live log or the terminal (executor.Options.Redact): the
// webhook secrets, the GitHub token, the SSH key's passphrase and the body
// lines of the SSH key from the environment, the journal database's
// password, the console's OAuth client secret and the notification webhook
// URLs. A secret that another part of the configuration adds belongs here too.
func redactions(cfg *config.Config) []string {
	var out []string
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	for _, s := range cfg.WebhookSecrets {
		add(string(s))
	}
	add(cfg.GitHubToken)
	add(string(cfg.SSHPassphrase))
	for line := range strings.Lines(string(cfg.SSHKey)) {
		if line = strings.TrimSpace(line); len(line) >= minKeyLine && !strings.HasPrefix(line, "-----") {
			add(line)
		}
	}
	add(cfg.UI.OAuthClientSecret)
	for _, s := range cfg.NotifySecrets() {
		add(s)
	}
	if u, err := url.Parse(cfg.DatabaseURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			add(pw)
		}
	}
	return out
}
