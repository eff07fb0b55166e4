package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor"
)

const (
	slackURL = "https://hooks.slack.com/services/T0001/B0001/s3cr3tSlackPathPart"
	chatURL  = "https://chat.googleapis.com/v1/spaces/AAAA1234/messages?key=AIzaK3y&token=s3cr3tChatToken"
)

// twoTargets is ssh8's target twice, as prod and stage; notify and the
// targets' own notify blocks are added by the rows.
func twoTargets(global, prod, stage string) string {
	t := func(name, own string) string {
		s := strings.Replace(strings.Replace(ssh8, "ui: {auth: none}\ntargets:\n", "\n", 1), "name: prod", "name: "+name, 1)
		if own != "" {
			s += "    notify: " + own + "\n"
		}
		return s
	}
	out := "ui: {auth: none}\n"
	if global != "" {
		out += "notify: " + global + "\n"
	}
	return out + "targets:" + t("prod", prod) + t("stage", stage)
}

func TestConfig_NotifyOf(t *testing.T) {
	all := []executor.Event{executor.EventFailure, executor.EventRollback, executor.EventRecovery}
	tests := []struct {
		name                       string
		global, prod, stage        string
		env                        []string
		wantProdOn, wantStageOn    []executor.Event
		wantProdChans, wantStageCh []string
	}{
		{name: "nothing set: no channel", wantProdOn: all, wantStageOn: all},
		{name: "a URL turns its channel on", env: []string{SlackURLEnv, slackURL},
			wantProdOn: all, wantStageOn: all, wantProdChans: []string{"slack"}, wantStageCh: []string{"slack"}},
		{name: "both URLs", env: []string{SlackURLEnv, slackURL, GoogleChatURLEnv, chatURL},
			wantProdOn: all, wantStageOn: all, wantProdChans: []string{"slack", "google_chat"}, wantStageCh: []string{"slack", "google_chat"}},
		{name: "global on and off", global: "{on: [failure], google_chat: false}", env: []string{SlackURLEnv, slackURL, GoogleChatURLEnv, chatURL},
			wantProdOn: []executor.Event{"failure"}, wantStageOn: []executor.Event{"failure"},
			wantProdChans: []string{"slack"}, wantStageCh: []string{"slack"}},
		{name: "a target overrides key by key", global: "{on: [failure], slack: false}", prod: "{on: [recovery, rollback], slack: true}",
			stage: "{google_chat: false}", env: []string{SlackURLEnv, slackURL, GoogleChatURLEnv, chatURL},
			wantProdOn: []executor.Event{"recovery", "rollback"}, wantStageOn: []executor.Event{"failure"},
			wantProdChans: []string{"slack", "google_chat"}, wantStageCh: nil},
		{name: "on: [] announces nothing", prod: "{on: []}", env: []string{SlackURLEnv, slackURL},
			wantProdOn: []executor.Event{}, wantStageOn: all, wantProdChans: []string{"slack"}, wantStageCh: []string{"slack"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(twoTargets(tt.global, tt.prod, tt.stage)), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path, env(append([]string{"DEPLOYHOOK_WEBHOOK_SECRET", secret16}, tt.env...)...))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []struct {
				name  string
				on    []executor.Event
				chans []string
			}{{"prod", tt.wantProdOn, tt.wantProdChans}, {"stage", tt.wantStageOn, tt.wantStageCh}} {
				on, chans := c.NotifyOf(c.Target(w.name))
				if !slices.Equal(on, w.on) || (on == nil) != (w.on == nil) || !slices.Equal(chans, w.chans) {
					t.Errorf("%s: on %#v, channels %q; want %#v, %q", w.name, on, chans, w.on, w.chans)
				}
			}
		})
	}
}

// Each row is one rule of validateNotify; an error row produces exactly that
// one problem, and no problem shows a URL.
func TestValidate_Notify(t *testing.T) {
	tests := []struct {
		name                string
		global, prod, stage string
		env                 []string
		want                string
	}{
		{name: "valid", global: "{on: [failure, rollback, recovery]}", env: []string{SlackURLEnv, slackURL, GoogleChatURLEnv, chatURL}},
		{name: "no URL, nothing on"},
		{name: "unknown event", global: "{on: [failure, success]}",
			want: `notify.on: "success" is not an event: use failure, rollback or recovery`},
		{name: "unknown event in a target", stage: "{on: [deployed]}",
			want: `targets[1] (stage): notify.on: "deployed" is not an event`},
		{name: "slack on without its URL", global: "{slack: true}", prod: "{slack: false}",
			want: "notify.slack is on (targets stage) but DEPLOYHOOK_SLACK_WEBHOOK_URL is not set: set it (or DEPLOYHOOK_SLACK_WEBHOOK_URL_FILE)"},
		{name: "chat on in a target without its URL", prod: "{google_chat: true}",
			want: "notify.google_chat is on (targets prod) but DEPLOYHOOK_GOOGLE_CHAT_WEBHOOK_URL is not set"},
		{name: "slack URL over plain http", env: []string{SlackURLEnv, strings.Replace(slackURL, "https:", "http:", 1)},
			want: "DEPLOYHOOK_SLACK_WEBHOOK_URL uses plain http"},
		{name: "slack URL on another host", env: []string{SlackURLEnv, "https://hooks.example.com/services/s3cr3tSlackPathPart"},
			want: "DEPLOYHOOK_SLACK_WEBHOOK_URL is not on hooks.slack.com: set the URL the service shows for the webhook, or notify.allow_any_host: true"},
		{name: "another host allowed", global: "{allow_any_host: true}", env: []string{SlackURLEnv, "https://hooks.example.com/services/s3cr3tSlackPathPart"}},
		{name: "chat URL is Slack's", env: []string{GoogleChatURLEnv, slackURL},
			want: "DEPLOYHOOK_GOOGLE_CHAT_WEBHOOK_URL is not on chat.googleapis.com"},
		{name: "a URL turned off everywhere is still checked", global: "{slack: false}", env: []string{SlackURLEnv, "http://hooks.slack.com/s3cr3tSlackPathPart"},
			want: "DEPLOYHOOK_SLACK_WEBHOOK_URL uses plain http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(twoTargets(tt.global, tt.prod, tt.stage)))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.readEnv(env(tt.env...)); err != nil {
				t.Fatal(err)
			}
			c.defaults()
			problems := c.validateNotify()
			checkOne(t, problems, tt.want)
			if err := errors.Join(problems...); err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("a problem shows the URL: %v", err)
			}
		})
	}
}

// The URLs come from NAME or NAME_FILE (not both); a file's trailing newline
// is cut, and a file others may read is warned about. NotifySecrets returns
// them for the redaction list.
func TestLoad_NotifyURLs(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(twoTargets("", "", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "chat-url")
	if err := os.WriteFile(file, []byte(chatURL+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(cfg, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, SlackURLEnv, slackURL, GoogleChatURLEnv+"_FILE", file))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.NotifySecrets(); !slices.Equal(got, []string{slackURL, chatURL}) {
		t.Errorf("NotifySecrets = %q, want both URLs", got)
	}
	if w := c.FileWarnings(); len(w) != 1 || !strings.HasPrefix(w[0], GoogleChatURLEnv+"_FILE "+file+" is readable by group or others") {
		t.Errorf("FileWarnings = %q, want the Chat URL's file named", w)
	}
	_, err = Load(cfg, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, SlackURLEnv, slackURL, SlackURLEnv+"_FILE", file))
	if err == nil || !strings.Contains(err.Error(), "both DEPLOYHOOK_SLACK_WEBHOOK_URL and DEPLOYHOOK_SLACK_WEBHOOK_URL_FILE are set: set one") {
		t.Errorf("both set: %v", err)
	}
	if c, err := Load(cfg, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16)); err != nil || c.NotifySecrets() != nil {
		t.Errorf("no URLs: %v, secrets %q", err, c.NotifySecrets())
	}
}

// notify: and a target's notify: take only their keys: a typo is named.
func TestParse_NotifyKeys(t *testing.T) {
	_, err := Parse([]byte(twoTargets("{on: [failure], slak: true}", "{googlechat: true}", "")))
	if err == nil || !strings.Contains(err.Error(), `unknown key "slak" in notify; did you mean "slack"?`) ||
		!strings.Contains(err.Error(), `unknown key "googlechat" in targets[0] (prod).notify; did you mean "google_chat"?`) {
		t.Errorf("Parse: %v, want both unknown keys named", err)
	}
}
