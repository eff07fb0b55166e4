package executor

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// allow_dirty deploys over local changes (issue 12): a local edit to a file
// the commit changes made the checkout fail before ("your local changes would
// be overwritten"), and this test failed at the checkout. Now the changes are
// kept in a stash named after the job, the commit is checked out, and the
// changes can be had back from the stash; a clean tree stashes nothing.
func TestSequence_AllowDirtyStashes(t *testing.T) {
	tests := []struct {
		name      string
		dirty     bool
		wantStash string // git stash list's line; "" for none
	}{
		{name: "local edit to a file the commit changes", dirty: true, wantStash: "stash@{0}: On (no branch): deployhook job-7 "},
		{name: "clean work tree", dirty: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			seq := testSequence()
			seq.AllowDirty = true
			steps, _, _, _ := seq.Steps()
			if tc.dirty {
				if err := os.WriteFile(filepath.Join(r.app, "app.py"), []byte("patched on the VM"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{"DEPLOYHOOK_SHA": r.c3, "DEPLOYHOOK_PREVIOUS_SHA": r.c2, "DEPLOYHOOK_BRANCH": "main",
				"DEPLOYHOOK_KIND": "push", "DEPLOYHOOK_JOB": "job-7"}
			var outs strings.Builder
			for _, st := range steps {
				code, out := r.run(&st, env)
				outs.WriteString(out)
				if code != 0 {
					t.Fatalf("%s exited %d: %s", st.Name, code, out)
				}
				if st.Name == "checkout" {
					break
				}
			}
			if got := r.git(r.app, "rev-parse", "HEAD"); got != r.c3 {
				t.Errorf("HEAD = %s, want %s", got, r.c3)
			}
			if b, _ := os.ReadFile(filepath.Join(r.app, "app.py")); string(b) != "3" {
				t.Errorf("app.py = %q after the checkout, want the commit's content", b)
			}
			list := r.git(r.app, "stash", "list")
			name, announced := stashedAs(outs.String())
			if tc.wantStash == "" {
				if list != "" || announced {
					t.Errorf("clean tree: stash list %q, announced %v; want nothing stashed", list, announced)
				}
				return
			}
			want := tc.wantStash + r.c3[:7]
			if list != want {
				t.Errorf("git stash list = %q, want %q", list, want)
			}
			if !announced || name != "deployhook job-7 "+r.c3[:7] {
				t.Errorf("the step announced %q (%v), want the stash's name; output:\n%s", name, announced, outs.String())
			}
			if !strings.Contains(outs.String(), "get them back with: git stash list") {
				t.Errorf("the log does not say how to get the changes back:\n%s", outs.String())
			}
			if diff := r.git(r.app, "stash", "show", "-p", "stash@{0}"); !strings.Contains(diff, "+patched on the VM") {
				t.Errorf("the stash does not hold the local change:\n%s", diff)
			}
		})
	}
}

func TestSequence_StashOnlyWithAllowDirty(t *testing.T) {
	for _, allow := range []bool{false, true} {
		seq := testSequence()
		seq.AllowDirty = allow
		steps, _, _, _ := seq.Steps()
		var names []string
		for _, st := range steps {
			names = append(names, st.Name)
		}
		has := strings.Contains(strings.Join(names, ","), "fetch,stash,checkout")
		if has != allow {
			t.Errorf("allow_dirty %v: steps %v", allow, names)
		}
	}
}

// stashTransport is fakeTransport whose "stash" step announces a stash.
type stashTransport struct{ *fakeTransport }

func (s stashTransport) Open(ctx context.Context, target, lock string, wait time.Duration) (Session, error) {
	sess, err := s.fakeTransport.Open(ctx, target, lock, wait)
	if err != nil {
		return nil, err
	}
	return stashSession{sess}, nil
}

type stashSession struct{ Session }

func (s stashSession) Run(ctx context.Context, c Command, out io.Writer) (int, error) {
	if c.Name == "stash" {
		io.WriteString(out, "local changes in /srv/app:\n M app.py\n"+StashedMarker+"deployhook "+c.Env["DEPLOYHOOK_JOB"]+"\n")
	}
	return s.Session.Run(ctx, c, out)
}

// The job's status description says that local changes were stashed and
// where to find them, also when the deploy then failed and rolled back.
func TestExecutor_StashedIsDescribed(t *testing.T) {
	tests := []struct {
		name     string
		failAt   string
		wantDesc string
	}{
		{name: "deployed", wantDesc: "deployed " + sha(2)[:7] + "; local changes stashed (git stash list)"},
		{name: "rolled back", failAt: "verify",
			wantDesc: "verify failed (exit 1); rolled back to " + sha(1)[:7] + "; local changes stashed (git stash list)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tt := testTarget()
				tt.NotApplied = nil
				tt.Steps = append(tt.Steps[:1], append([]Step{{Name: "stash", Run: "stash", Timeout: time.Minute}}, tt.Steps[1:]...)...)
				ft := &fakeTransport{behave: func(_ context.Context, c Command) (int, error) {
					return exitIf(c.Name == tc.failAt && c.Env["DEPLOYHOOK_SHA"] == sha(2), 1)
				}}
				store := newMemStore()
				seedSuccess(t, store, sha(1))
				rep := &fakeReporter{}
				ex, err := New(testLogger(t), Options{Targets: []Target{tt}, PublicURL: "https://deploy.example.com/",
					RetryMin: time.Second, RetryMax: 10 * time.Second}, store, stashTransport{ft}, rep)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- ex.Run(ctx) }()
				synctest.Wait()
				h := &harness{t: t, store: store, tr: ft, rep: rep, ex: ex, cancel: cancel, done: done}
				defer h.stop()
				h.push(2, "d-2")
				h.settle()
				if got := rep.last(sha(2)).Description; got != tc.wantDesc {
					t.Errorf("description = %q, want %q", got, tc.wantDesc)
				}
			})
		})
	}
}

func TestStashedAs(t *testing.T) {
	tests := []struct {
		name, output, want string
		ok                 bool
	}{
		{name: "announced", output: "local changes:\n M a\n" + StashedMarker + "deployhook j 1234567\nmore\n", want: "deployhook j 1234567", ok: true},
		{name: "nothing stashed", output: "ran stash\n"},
		{name: "marker not at a line's start", output: "echo " + StashedMarker + "x\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := stashedAs(tc.output)
			if got != tc.want || ok != tc.ok {
				t.Errorf("stashedAs = %q %v, want %q %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestSequence_RecoverAfterInterruptedCheckout: a deploy cut off in its
// checkout leaves a half-updated work tree and git's index lock; the next
// deploy, told by DEPLOYHOOK_RECOVER which job was interrupted, removes the
// stale lock and stashes what the checkout left, and deploys. Without it, the
// preflight refuses every later deploy until a person cleans up (found by the
// chaos test, seed 2026). A person's change with no interrupted job before
// is still refused.
func TestSequence_RecoverAfterInterruptedCheckout(t *testing.T) {
	tests := []struct {
		name    string
		recover string
		wantErr string // the preflight's refusal; "" when the deploy goes on
	}{
		{name: "after an interrupted job", recover: "job-6"},
		{name: "no interrupted job", wantErr: "refusing to deploy: the work tree"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			steps, _, _, _ := testSequence().Steps()
			// What a checkout killed half-way leaves.
			if err := os.WriteFile(filepath.Join(r.app, "app.py"), []byte("half checked out"), 0o644); err != nil {
				t.Fatal(err)
			}
			lock := filepath.Join(r.app, ".git", "index.lock")
			if err := os.WriteFile(lock, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"DEPLOYHOOK_SHA": r.c3, "DEPLOYHOOK_PREVIOUS_SHA": r.c2, "DEPLOYHOOK_BRANCH": "main",
				"DEPLOYHOOK_KIND": "push", "DEPLOYHOOK_JOB": "job-7"}
			if tc.recover != "" {
				env["DEPLOYHOOK_RECOVER"] = tc.recover
			}
			var outs strings.Builder
			for _, st := range steps {
				code, out := r.run(&st, env)
				outs.WriteString(out)
				if code != 0 {
					if tc.wantErr != "" && st.Name == "preflight" && strings.Contains(out, tc.wantErr) {
						return
					}
					t.Fatalf("%s exited %d: %s", st.Name, code, out)
				}
				if st.Name == "checkout" {
					break
				}
			}
			if tc.wantErr != "" {
				t.Fatalf("the deploy went on; want the preflight to refuse: %s", outs.String())
			}
			if got := r.git(r.app, "rev-parse", "HEAD"); got != r.c3 {
				t.Errorf("HEAD = %s, want %s", got, r.c3)
			}
			if _, err := os.Stat(lock); err == nil {
				t.Errorf("the stale index.lock is still there")
			}
			name, announced := stashedAs(outs.String())
			if want := "deployhook job-7: left by the interrupted job job-6"; !announced || name != want {
				t.Errorf("stashed as %q (%v), want %q; output:\n%s", name, announced, want, outs.String())
			}
			if diff := r.git(r.app, "stash", "show", "-p", "stash@{0}"); !strings.Contains(diff, "+half checked out") {
				t.Errorf("the stash does not hold what the interrupted checkout left:\n%s", diff)
			}
		})
	}
}

// TestExecutor_TellsStepsOfAnInterruptedJob: DEPLOYHOOK_RECOVER names the
// target's last job when it ran and ended with the target's state unknown, and
// only then (a clean end, or nothing run, says nothing).
func TestExecutor_TellsStepsOfAnInterruptedJob(t *testing.T) {
	tests := []struct {
		name  string
		state State
		desc  string
		want  string
	}{
		{"cut off after its checkpoint", StateError, "connection lost during checkout; target state unknown", "last"},
		{"its deployhook killed", StateError, "interrupted: the deployhook that ran it stopped; target state unknown", "last"},
		{"nothing ran", StateError, "could not reach the target; nothing ran (see the job page)", ""},
		{"ended cleanly", StateFailure, "verify failed (exit 1); rolled back to c000000", ""},
		{"deployed", StateSuccess, "deployed c000000", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemStore()
				seedSuccess(t, store, sha(0))
				time.Sleep(time.Second)
				last := Job{ID: "last", Target: "production", State: tc.state, Description: tc.desc,
					Trigger: Trigger{Kind: KindPush, Repo: "acme/app", Branch: "main", SHA: sha(1)},
					Created: time.Now(), Started: time.Now(), Finished: time.Now()}
				if _, err := store.CreateJob(context.Background(), last); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				tr, rep := &fakeTransport{}, &fakeReporter{}
				h := start(t, Options{}, store, tr, rep)
				if _, err := h.ex.Enqueue(context.Background(), "production", Trigger{Kind: KindPush, Repo: "acme/app",
					Branch: "main", SHA: sha(2), Delivery: "d-2"}); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				h.stop()
				tr.mu.Lock()
				defer tr.mu.Unlock()
				ran := 0
				for _, c := range tr.calls {
					if c.Env["DEPLOYHOOK_SHA"] != sha(2) || c.Name == "current" || c.Name == "contains" {
						continue
					}
					ran++
					if got := c.Env["DEPLOYHOOK_RECOVER"]; got != tc.want {
						t.Errorf("step %s: DEPLOYHOOK_RECOVER = %q, want %q", c.Name, got, tc.want)
					}
				}
				if ran == 0 {
					t.Fatalf("no step of the new deploy ran: %+v", tr.calls)
				}
			})
		})
	}
}
