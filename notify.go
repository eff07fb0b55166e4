package main

import (
	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/notify"
)

// wireNotify builds the Slack and Google Chat senders whose URLs the
// configuration has, and sets each of opts.Targets' notice rule
// (config.NotifyOf). The URLs are secrets: they go to the senders only.
func wireNotify(cfg *config.Config, opts *executor.Options) error {
	no := notify.Options{
		AllowAnyHost: cfg.Notify.AllowAnyHost,
		GitHubURL:    cfg.GitHub.WebURL,
		UserAgent:    "deployhook/" + version,
	}
	notifiers := map[string]executor.Notifier{}
	if u := cfg.Notify.SlackURL; u != "" {
		o := no
		o.URL = u
		s, err := notify.NewSlack(o)
		if err != nil {
			return err
		}
		notifiers[config.ChannelSlack] = s
	}
	if u := cfg.Notify.GoogleChatURL; u != "" {
		o := no
		o.URL = u
		g, err := notify.NewGoogleChat(o)
		if err != nil {
			return err
		}
		notifiers[config.ChannelGoogleChat] = g
	}
	for i := range opts.Targets {
		if t := cfg.Target(opts.Targets[i].Name); t != nil {
			on, channels := cfg.NotifyOf(t)
			opts.Targets[i].Notify = executor.NoticeRule{On: on, Channels: channels}
		}
	}
	opts.Notifiers = notifiers
	return nil
}
