package notify

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/deployhook/deployhook/executor"
)

// Slack posts notices to a Slack incoming webhook. It implements
// executor.Notifier and is safe for concurrent use.
type Slack struct{ w *webhook }

// NewSlack returns a Slack sender for opts. The URL must pass CheckURL with
// SlackHost (the error names DEPLOYHOOK_SLACK_WEBHOOK_URL).
func NewSlack(opts Options) (*Slack, error) {
	w, err := newWebhook("Slack", "DEPLOYHOOK_SLACK_WEBHOOK_URL", SlackHost, "application/json", opts)
	if err != nil {
		return nil, err
	}
	return &Slack{w: w}, nil
}

// Notify posts r once (see the package documentation for what and how).
func (s *Slack) Notify(ctx context.Context, r executor.Report) error {
	return s.w.post(ctx, slackMessage(noticeOf(r, s.w.github)))
}

// slackPayload is the JSON of a Slack message.
type slackPayload struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type string    `json:"type"`
	Text slackText `json:"text"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackMessage returns the JSON of n's Slack message: the summary as the
// notification's text, and a section of mrkdwn lines.
func slackMessage(n notice) []byte {
	var b strings.Builder
	b.WriteString("*" + n.headline + "*: " + slackEscape(n.target))
	if n.environment != "" {
		b.WriteString(" (environment " + slackEscape(n.environment) + ")")
	}
	b.WriteString("\n" + slackLink(n.commitURL, n.short) + " of " + slackEscape(n.repo))
	if n.actor != "" {
		b.WriteString(" by " + slackEscape(n.actor))
	}
	if n.description != "" {
		b.WriteString("\n" + slackEscape(n.description))
	}
	if n.jobURL != "" {
		b.WriteString("\n" + slackLink(n.jobURL, "Job page"))
	}
	out, _ := json.Marshal(slackPayload{ // strings only: it cannot fail
		Text:   slackEscape(n.summary()),
		Blocks: []slackBlock{{Type: "section", Text: slackText{Type: "mrkdwn", Text: b.String()}}},
	})
	return out
}

// slackEscaper escapes the three characters Slack's mrkdwn gives meaning to
// (&, <, >) as Slack documents; everything else is shown as written.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackEscape(s string) string { return slackEscaper.Replace(s) }

// slackLink is <url|text>, or the escaped text alone when there is no url. A
// | in the URL, which would end it, is percent-encoded.
func slackLink(url, text string) string {
	if url == "" {
		return slackEscape(text)
	}
	return "<" + slackEscape(strings.ReplaceAll(url, "|", "%7C")) + "|" + slackEscape(text) + ">"
}
