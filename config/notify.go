package config

import (
	"slices"
	"strings"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/notify"
)

// The notice channels, as the configuration names them (notify.slack,
// notify.google_chat) and as main names them to the executor.
const (
	ChannelSlack      = "slack"
	ChannelGoogleChat = "google_chat"
)

// The variables the webhook URLs come from (or NAME_FILE: a file holding it).
const (
	SlackURLEnv      = "DEPLOYHOOK_SLACK_WEBHOOK_URL"
	GoogleChatURLEnv = "DEPLOYHOOK_GOOGLE_CHAT_WEBHOOK_URL"
)

// Notify is the global notify: block: the defaults of every target's, and
// where notices may go. The webhook URLs are secrets: they come from the
// environment only, never from the YAML.
type Notify struct {
	NotifyRule `yaml:",inline"`
	// AllowAnyHost accepts webhook URLs on other hosts than hooks.slack.com
	// and chat.googleapis.com (a relay). Still https only.
	AllowAnyHost bool `yaml:"allow_any_host"`

	// SlackURL is DEPLOYHOOK_SLACK_WEBHOOK_URL (or _FILE), GoogleChatURL
	// DEPLOYHOOK_GOOGLE_CHAT_WEBHOOK_URL (or _FILE). Never logged.
	SlackURL      string `yaml:"-"`
	GoogleChatURL string `yaml:"-"`
}

// NotifyRule says which events of a target's jobs are announced, and on
// which channels. A target's notify: overrides the global one key by key.
type NotifyRule struct {
	// On lists the events: failure, rollback, recovery. Default all three.
	On []executor.Event `yaml:"on"`
	// Slack and GoogleChat turn a channel on or off. Default: on when its
	// URL is set.
	Slack      *bool `yaml:"slack"`
	GoogleChat *bool `yaml:"google_chat"`
}

// readNotifyEnv reads the webhook URLs with secret (NAME or NAME_FILE).
func (c *Config) readNotifyEnv(secret func(name string) ([]byte, error)) error {
	slack, err := secret(SlackURLEnv)
	if err != nil {
		return err
	}
	chat, err := secret(GoogleChatURLEnv)
	if err != nil {
		return err
	}
	c.Notify.SlackURL, c.Notify.GoogleChatURL = strings.TrimSpace(string(slack)), strings.TrimSpace(string(chat))
	return nil
}

// NotifyOf returns what target t announces and the channels it announces on
// (ChannelSlack, ChannelGoogleChat), each key taken from t's notify:, else
// the global notify:, else its default: every event (executor.Events), and a channel on
// when its URL is set. Validate makes sure every channel returned has a URL.
func (c *Config) NotifyOf(t *Target) (on []executor.Event, channels []string) {
	var own NotifyRule
	if t.Notify != nil {
		own = *t.Notify
	}
	on = executor.Events()
	switch {
	case own.On != nil:
		on = own.On
	case c.Notify.On != nil:
		on = c.Notify.On
	}
	enabled := func(own, global *bool, url string) bool {
		switch {
		case own != nil:
			return *own
		case global != nil:
			return *global
		}
		return url != ""
	}
	if enabled(own.Slack, c.Notify.Slack, c.Notify.SlackURL) {
		channels = append(channels, ChannelSlack)
	}
	if enabled(own.GoogleChat, c.Notify.GoogleChat, c.Notify.GoogleChatURL) {
		channels = append(channels, ChannelGoogleChat)
	}
	return slices.Clone(on), channels
}

// NotifySecrets returns the webhook URLs that are set: values that must never
// be stored or shown (main adds them to what the journal redacts).
func (c *Config) NotifySecrets() []string {
	var out []string
	for _, u := range []string{c.Notify.SlackURL, c.Notify.GoogleChatURL} {
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}

// validateNotify checks notify: and each target's: the events exist, a
// webhook URL that is set is one notices may be posted to (notify.CheckURL:
// https, the service's host unless allow_any_host), and a channel turned on
// has its URL. No problem quotes a URL.
func (c *Config) validateNotify() []error {
	var p problems
	checkOn := func(where string, on []executor.Event) {
		for _, ev := range on {
			if !ev.Valid() {
				p.add("%snotify.on: %q is not an event: use failure, rollback or recovery", where, ev)
			}
		}
	}
	checkOn("", c.Notify.On)
	for i := range c.Targets {
		if c.Targets[i].Notify != nil {
			checkOn(targetWhere(i, c.Targets[i])+": ", c.Targets[i].Notify.On)
		}
	}
	for _, ch := range []struct {
		key, env, url, host string
	}{
		{ChannelSlack, SlackURLEnv, c.Notify.SlackURL, notify.SlackHost},
		{ChannelGoogleChat, GoogleChatURLEnv, c.Notify.GoogleChatURL, notify.GoogleChatHost},
	} {
		if ch.url != "" {
			if err := notify.CheckURL(ch.env, ch.url, ch.host, c.Notify.AllowAnyHost); err != nil {
				p.add("%v", err)
			}
			continue
		}
		var on []string
		for i := range c.Targets {
			if _, channels := c.NotifyOf(&c.Targets[i]); slices.Contains(channels, ch.key) {
				on = append(on, c.Targets[i].Name)
			}
		}
		if len(on) > 0 {
			p.add("notify.%s is on (targets %s) but %s is not set: set it (or %s_FILE) to the incoming webhook's URL, or set %s: false",
				ch.key, strings.Join(on, ", "), ch.env, ch.env, ch.key)
		}
	}
	return p
}
