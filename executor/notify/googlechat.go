package notify

import (
	"context"
	"encoding/json"
	"html"
	"strings"

	"github.com/deployhook/deployhook/executor"
)

// GoogleChat posts notices to a Google Chat incoming webhook. It implements
// executor.Notifier and is safe for concurrent use.
type GoogleChat struct{ w *webhook }

// NewGoogleChat returns a Google Chat sender for opts. The URL must pass
// CheckURL with GoogleChatHost (the error names
// DEPLOYHOOK_GOOGLE_CHAT_WEBHOOK_URL).
func NewGoogleChat(opts Options) (*GoogleChat, error) {
	w, err := newWebhook("Google Chat", "DEPLOYHOOK_GOOGLE_CHAT_WEBHOOK_URL", GoogleChatHost,
		"application/json; charset=UTF-8", opts)
	if err != nil {
		return nil, err
	}
	return &GoogleChat{w: w}, nil
}

// Notify posts r once (see the package documentation for what and how).
func (g *GoogleChat) Notify(ctx context.Context, r executor.Report) error {
	return g.w.post(ctx, chatMessage(noticeOf(r, g.w.github)))
}

// chatPayload is the JSON of a Google Chat message with one card.
type chatPayload struct {
	Text    string     `json:"text"`
	CardsV2 []chatCard `json:"cardsV2"`
}

type chatCard struct {
	CardID string `json:"cardId"`
	Card   struct {
		Sections []chatSection `json:"sections"`
	} `json:"card"`
}

type chatSection struct {
	Widgets []chatWidget `json:"widgets"`
}

type chatWidget struct {
	TextParagraph chatParagraph `json:"textParagraph"`
}

type chatParagraph struct {
	Text string `json:"text"`
}

// chatMessage returns the JSON of n's Google Chat message: the summary as
// plain text (chatPlain), and a card whose paragraph is HTML-escaped.
func chatMessage(n notice) []byte {
	var b strings.Builder
	b.WriteString("<b>" + n.headline + "</b>: " + html.EscapeString(n.target))
	if n.environment != "" {
		b.WriteString(" (environment " + html.EscapeString(n.environment) + ")")
	}
	b.WriteString("<br>" + chatLink(n.commitURL, n.short) + " of " + html.EscapeString(n.repo))
	if n.actor != "" {
		b.WriteString(" by " + html.EscapeString(n.actor))
	}
	if n.description != "" {
		b.WriteString("<br>" + html.EscapeString(n.description))
	}
	if n.jobURL != "" {
		b.WriteString("<br>" + chatLink(n.jobURL, "Job page"))
	}
	card := chatCard{CardID: "deployhook"}
	card.Card.Sections = []chatSection{{Widgets: []chatWidget{{TextParagraph: chatParagraph{Text: b.String()}}}}}
	out, _ := json.Marshal(chatPayload{Text: chatPlain(n.summary()), CardsV2: []chatCard{card}}) // strings only: it cannot fail
	return out
}

// chatPlainer makes text safe in a Chat text message, whose syntax has no
// escape: < and > (which start a mention, "<users/all>", or a link) become
// the look-alikes ‹ and ›.
var chatPlainer = strings.NewReplacer("<", "‹", ">", "›")

func chatPlain(s string) string { return chatPlainer.Replace(s) }

// chatLink is an HTML link to url, or the escaped text alone when there is
// no url.
func chatLink(url, text string) string {
	if url == "" {
		return html.EscapeString(text)
	}
	return `<a href="` + html.EscapeString(url) + `">` + html.EscapeString(text) + "</a>"
}
