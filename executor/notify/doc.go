// Package notify posts deployhook's notices (a deploy failed, rolled back,
// or recovered) to chat channels through their incoming webhooks: Slack
// (NewSlack) and Google Chat (NewGoogleChat). Both implement
// executor.Notifier; the executor owes notices in its outbox and retries
// them, so this package makes one attempt per call.
//
// # What it sends
//
// A notice names the event, the target (and its GitHub environment when that
// differs), the repository, the short SHA linked to the commit on GitHub, who
// or what asked for the deploy, the job's public description (never step
// output) and a link to the job's page. To Slack:
//
//	POST <webhook URL>  Content-Type: application/json
//	{"text": "<headline>", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "<lines>"}}]}
//
// To Google Chat, a card, whose text is HTML:
//
//	POST <webhook URL>  Content-Type: application/json; charset=UTF-8
//	{"text": "<headline>", "cardsV2": [{"cardId": "deployhook", "card": {"sections": [{"widgets": [{"textParagraph": {"text": "<lines>"}}]}]}}]}
//
// # Nothing a commit author writes becomes markup
//
// Every value of a notice is text to show, not markup: a description may
// carry what a commit or a VM printed. In Slack's mrkdwn, &, < and > are
// escaped as &amp;, &lt; and &gt; (Slack's own rule), so "<!channel>" or
// "<https://evil|click>" is shown as written and neither pings a channel nor
// hides a link. In a Google Chat card every value is HTML-escaped; the
// plain-text headline of a Chat message has no escape at all (Chat's text
// syntax has none), so there < and > are replaced by ‹ and ›, which no mention
// ("<users/all>") or link syntax matches. Control characters (newlines
// included) become spaces, so no value starts a line of its own.
//
// # Answers and errors
//
// A 2xx answer is success. 429 (rate limited), 408 and 5xx, and any error
// before an answer (a refused connection, a timeout), are worth a retry; any
// other answer (400 invalid payload, 403, 404 a deleted webhook, 410, a
// redirect, which is never followed) will never succeed and wraps
// executor.ErrPermanent. The webhook URL is the secret: no error of this
// package contains it or any part of its path or query (net/url's errors
// quote the whole URL, so they are never returned as they are).
package notify
