package executor

import (
	"context"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"unicode/utf8"
)

func TestPublicActor(t *testing.T) {
	long := strings.Repeat("a", 50)
	tests := []struct{ in, want string }{
		{"octocat", "octocat"},
		{" ann\n", "ann"},
		{"evil\nline\ttab", "evil line tab"},
		{long, long[:maxActor]},
		{strings.Repeat("é", 45), strings.Repeat("é", maxActor)},
		{"", ""},
	}
	for _, tc := range tests {
		if got := publicActor(tc.in); got != tc.want {
			t.Errorf("publicActor(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// What GitHub is told while a job waits and runs names the person who asked
// for it, and nobody for automatic triggers.
func TestDescriptions_NameThePerson(t *testing.T) {
	s := sha(2)
	tests := []struct {
		name                   string
		tr                     Trigger
		queued, running, final string
	}{
		{"push", Trigger{Kind: KindPush, SHA: s, Actor: "octocat", Reason: "push by octocat"},
			"queued: push by octocat", "deploying " + s[:7], "deployed " + s[:7]},
		{"reconcile", Trigger{Kind: KindReconcile, SHA: s, Actor: "deployhook", Reason: "missed webhook"},
			"queued: missed webhook", "deploying " + s[:7], "deployed " + s[:7]},
		{"cli deploy", Trigger{Kind: KindManual, SHA: s, Actor: "ann", Reason: "manual deploy by ann"},
			"queued: manual deploy by ann", "deploying " + s[:7] + " by ann", "deployed " + s[:7] + " by ann"},
		{"dispatch rollback", Trigger{Kind: KindRollback, SHA: s, Actor: "octocat", Reason: "rollback by octocat from Actions"},
			"queued: rollback by octocat from Actions", "rollback to " + s[:7] + " by octocat", "rolled back to " + s[:7] + " by octocat"},
		{"console action, reason without the person", Trigger{Kind: KindWorkflowDispatch, SHA: s, Actor: "octocat", Reason: "redeploy from the console"},
			"queued: redeploy from the console by octocat", "deploying " + s[:7] + " by octocat", "deployed " + s[:7] + " by octocat"},
		{"no reason", Trigger{Kind: KindRollback, SHA: s, Actor: "octocat"},
			"queued: rollback by octocat", "rollback to " + s[:7] + " by octocat", "rolled back to " + s[:7] + " by octocat"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := queuedDescription(tc.tr); got != tc.queued {
				t.Errorf("queued %q, want %q", got, tc.queued)
			}
			if got := runningDescription(tc.tr); got != tc.running {
				t.Errorf("running %q, want %q", got, tc.running)
			}
			_, got, _ := outcome(runResult{sha: s, kind: tc.tr.Kind, by: requester(tc.tr)})
			if got != tc.final {
				t.Errorf("final %q, want %q", got, tc.final)
			}
		})
	}
}

// The person stays in the description when GitHub's 140 characters cut it:
// they come first in an unsuccessful end, and early in the others.
func TestDescriptions_PersonWithinLimit(t *testing.T) {
	by := publicActor(strings.Repeat("x", 60))
	longStep := strings.Repeat("s", 120)
	_, desc, _ := outcome(runResult{sha: sha(2), prev: sha(1), kind: KindRollback, by: by, checkpoint: true, rollbackOn: true,
		rolledBack: true, failed: &stepError{step: longStep, exitCode: 1}})
	if want := "rollback by " + by + ": " + longStep; !strings.HasPrefix(desc, want) {
		t.Errorf("description %q does not start with %q", desc, want)
	}
	cut := []rune(desc)[:140]
	if !strings.Contains(string(cut), "by "+by) {
		t.Errorf("the first 140 characters %q do not name %s", string(cut), by)
	}
	for _, d := range []string{
		runningDescription(Trigger{Kind: KindRollback, SHA: sha(2), Actor: by}),
		successDescription(KindRollback, sha(2), by),
	} {
		if n := utf8.RuneCountInString(d); n > 140 || !strings.HasSuffix(d, "by "+by) {
			t.Errorf("%q: %d characters", d, n)
		}
	}
}

// End to end: a person's rollback is reported running and done with their
// name, from the queued report on (ghstatus creates the Deployment with
// the first report's description).
func TestExecutor_ReportsThePerson(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := &scriptTransport{steps: map[string]func(context.Context, Command, io.Writer) (int, error){
			"restart": func(ctx context.Context, c Command, out io.Writer) (int, error) {
				<-release
				return 0, nil
			},
		}}
		rep := &fakeReporter{}
		h := startWith(t, Options{}, newMemStore(), tr, rep)
		defer h.stop()
		h.enqueue(KindPush, 2, "octocat")
		synctest.Wait()
		release <- struct{}{}
		synctest.Wait()
		h.enqueue(KindRollback, 1, "bob")
		synctest.Wait()
		var got []string
		for _, r := range rep.reports() {
			if r.SHA == sha(1) {
				got = append(got, string(r.State)+": "+r.Description)
			}
		}
		close(release)
		h.settle()
		got = append(got, string(rep.last(sha(1)).State)+": "+rep.last(sha(1)).Description)
		want := []string{"queued: queued: rollback by bob", "running: rollback to " + sha(1)[:7] + " by bob",
			"success: rolled back to " + sha(1)[:7] + " by bob"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("reports:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
