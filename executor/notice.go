package executor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Event is what a notice announces about a job's final state.
type Event string

// The events a target may announce (NoticeRule.On).
const (
	// EventFailure is a job that ended failure or error (not superseded, not
	// skipped).
	EventFailure Event = "failure"
	// EventRollback is a job that rolled the target back to its previous
	// commit, after a failed step or by the post-deploy watch: its
	// description says "rolled back". It is a failure too.
	EventRollback Event = "rollback"
	// EventRecovery is the first success of a target after a failure or an
	// error of it.
	EventRecovery Event = "recovery"
)

// Events returns every Event, in the order a person reads them (a new slice
// on each call).
func Events() []Event { return []Event{EventFailure, EventRollback, EventRecovery} }

// Valid reports whether ev is one of the Event constants.
func (ev Event) Valid() bool {
	return ev == EventFailure || ev == EventRollback || ev == EventRecovery
}

// NoticeRule says which events of a target's jobs are announced, and where.
type NoticeRule struct {
	// On lists the events announced. A rolled-back job is announced when On
	// has EventRollback or EventFailure (it is both).
	On []Event
	// Channels names the channels a notice goes to, each a key of
	// Options.Notifiers (e.g. "slack", "google_chat"). Empty: none.
	Channels []string
}

// wants reports whether the rule announces ev.
func (r NoticeRule) wants(ev Event) bool {
	return ev != "" && (slices.Contains(r.On, ev) || ev == EventRollback && slices.Contains(r.On, EventFailure))
}

// Notifier sends notices to one chat channel (a Slack or Google Chat
// webhook). Implementation: executor/notify.
type Notifier interface {
	// Notify posts the notice r (a Report with Notify, Event and Actor set) and
	// returns nil once the channel took it. An error wrapping ErrPermanent
	// will never succeed on a retry (the webhook refused it: 4xx other than
	// 429); any other error is retried later with the outbox's backoff. The
	// error never contains the webhook's URL, which is a secret. It is safe
	// for concurrent use.
	Notify(ctx context.Context, r Report) error
}

// noticeEvent decides which event a job that ended in state with description
// announces, or "" for none: failure and error are EventFailure, or
// EventRollback when the description says the job rolled back; a success is
// EventRecovery when prev, the final state of the target's deploy before it
// (success, failure or error; "" none or unknown), is a failure or an error.
// Superseded and skipped jobs, and states that are not final, announce
// nothing.
func noticeEvent(state State, description string, prev State) Event {
	switch state {
	case StateFailure, StateError:
		if rolledBack(description) {
			return EventRollback
		}
		return EventFailure
	case StateSuccess:
		if prev == StateFailure || prev == StateError {
			return EventRecovery
		}
	}
	return ""
}

// rolledBack reports whether a job's public description says it rolled the
// target back: outcome ends a failure with "; rolled back to abc1234", the
// post-deploy watch starts its own with "rolled back after 6 min: …". A
// rollback that failed ("rollback to abc1234 failed at …") did not.
func rolledBack(description string) bool {
	return strings.HasPrefix(description, "rolled back ") || strings.Contains(description, "; rolled back ")
}

// notices holds the channels notices go to, each with its own sender.
type notices struct {
	channels []*channel // sorted by name
}

// channel is one notice channel: its Notifier and what wakes its sender.
type channel struct {
	name string
	n    Notifier
	wake chan struct{} // capacity 1: a notice to it was owed
}

// newNotices returns the channels of notifiers, after checking that every
// target's rule names only events that exist and channels that have a
// Notifier: a rule that could never be followed is a programming error
// (config.Validate tells a person what to fix).
func newNotices(notifiers map[string]Notifier, targets []Target) (*notices, error) {
	nt := &notices{}
	for _, name := range slices.Sorted(maps.Keys(notifiers)) {
		if name == "" || notifiers[name] == nil {
			return nil, fmt.Errorf("executor: notifier %q: want a name and a Notifier", name)
		}
		nt.channels = append(nt.channels, &channel{name: name, n: notifiers[name], wake: make(chan struct{}, 1)})
	}
	for _, t := range targets {
		for _, ev := range t.Notify.On {
			if !ev.Valid() {
				return nil, fmt.Errorf("executor: target %q announces unknown event %q", t.Name, ev)
			}
		}
		for _, c := range t.Notify.Channels {
			if nt.channel(c) == nil {
				return nil, fmt.Errorf("executor: target %q notifies channel %q, which has no Notifier", t.Name, c)
			}
		}
	}
	return nt, nil
}

// channel returns the channel named name, or nil.
func (nt *notices) channel(name string) *channel {
	for _, c := range nt.channels {
		if c.name == name {
			return c
		}
	}
	return nil
}

// wake wakes the senders of the channels that reports are owed to.
func (nt *notices) wake(reports []Report) {
	for _, r := range reports {
		if c := nt.channel(r.Notify); c != nil {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
}

// noticesFor returns the notices owed for j, a job whose state is about to be
// recorded: one Report per channel of its target's rule when j's final state
// announces an event the rule wants (noticeEvent), none otherwise. They are
// owed in the same transaction as the state (see end), so a notice is owed
// exactly when the state is recorded. To tell a recovery it reads the
// target's previous deploy from the journal; when that read fails, no
// recovery is announced.
func (e *Executor) noticesFor(ctx context.Context, j Job) []Report {
	l := e.lanes[j.Target]
	if l == nil || len(l.t.Notify.Channels) == 0 || !j.State.Final() {
		return nil
	}
	rule := l.t.Notify
	var prev State
	if j.State == StateSuccess && rule.wants(EventRecovery) {
		prev = e.previousOutcome(ctx, j)
	}
	ev := noticeEvent(j.State, j.Description, prev)
	if !rule.wants(ev) {
		return nil
	}
	r := e.report(l.t, j)
	r.Event, r.Actor = ev, j.Trigger.Actor
	out := make([]Report, 0, len(rule.Channels))
	for _, c := range rule.Channels {
		r.Notify = c
		out = append(out, r)
	}
	return out
}

// previousOutcome returns the final state of the newest deploy of j's target
// other than j that ended success, failure or error, or "" when there is none
// or the journal cannot tell.
func (e *Executor) previousOutcome(ctx context.Context, j Job) State {
	jobs, err := e.store.Jobs(ctx, j.Target, 2, StateSuccess, StateFailure, StateError)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			e.jobLogger(j).Warn("read the target's previous deploy: no recovery notice", "err", err)
		}
		return ""
	}
	for _, p := range jobs {
		if p.ID != j.ID {
			return p.State
		}
	}
	return ""
}
