package executor

import (
	"strings"
	"unicode"
)

// maxActor is the longest name of a person that public descriptions carry, in
// characters: a GitHub login has at most 39. Longer names (a local user of
// the CLI) are cut, so that what the job says fits GitHub's 140 characters.
const maxActor = 39

// publicActor returns a person's name as public text: one line, without
// control characters, at most maxActor characters.
func publicActor(a string) string {
	a = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, a)
	a = strings.TrimSpace(a)
	if r := []rune(a); len(r) > maxActor {
		a = strings.TrimSpace(string(r[:maxActor]))
	}
	return a
}

// requester returns who asked for a job in its descriptions: the trigger's
// actor when a person asked for it (any kind but the automatic ones), or "".
func requester(t Trigger) string {
	if t.Kind.Automatic() {
		return ""
	}
	return publicActor(t.Actor)
}

// queuedDescription is a waiting job's description: its trigger's reason,
// naming the person who asked for it when the reason does not.
func queuedDescription(t Trigger) string {
	by := requester(t)
	switch {
	case by == "" || strings.Contains(t.Reason, "by "+by):
		return "queued: " + t.Reason
	case t.Reason == "":
		return "queued: " + string(t.Kind) + " by " + by
	}
	return "queued: " + t.Reason + " by " + by
}

// runningDescription is a running job's description: "deploying abc1234",
// and for a person's job "deploying abc1234 by octocat" or "rollback to
// abc1234 by octocat".
func runningDescription(t Trigger) string {
	by := requester(t)
	switch {
	case by == "":
		return "deploying " + short(t.SHA)
	case t.Kind == KindRollback:
		return "rollback to " + short(t.SHA) + " by " + by
	}
	return "deploying " + short(t.SHA) + " by " + by
}

// successDescription is the start of a successful job's description:
// "deployed abc1234", and for a person's job "deployed abc1234 by octocat"
// or "rolled back to abc1234 by octocat".
func successDescription(kind Kind, sha, by string) string {
	switch {
	case by == "":
		return "deployed " + short(sha)
	case kind == KindRollback:
		return "rolled back to " + short(sha) + " by " + by
	}
	return "deployed " + short(sha) + " by " + by
}

// credit puts who asked for a job in front of the description of its
// unsuccessful end ("rollback by octocat: verify failed (exit 1); …"), where
// cutting the description to GitHub's 140 characters keeps it. It leaves out
// a requester that the description names already as the canceller.
func credit(kind Kind, by, canceller, desc string) string {
	if by == "" || by == canceller {
		return desc
	}
	if kind == KindRollback {
		return "rollback by " + by + ": " + desc
	}
	return "deploy by " + by + ": " + desc
}
