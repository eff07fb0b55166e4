package executor

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireGit fails the test under CI when git or sh is missing, and skips it
// elsewhere.
func requireGit(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"git", "sh", "sed"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required under CI: %v", bin, err)
			}
			t.Skipf("%s not found: %v", bin, err)
		}
	}
}

// gitEnv is an environment in which git reads no user or system configuration.
func gitEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "DEPLOYHOOK_") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
}

// repo is an origin with branch main (c1 ← c2 ← c3) and branch feature (f1 on
// c1), and a clone of it in app, as the default sequence finds on a VM.
type repo struct {
	t              *testing.T
	home, app      string
	c1, c2, c3, f1 string
}

func (r *repo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, gitEnv(r.home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func newRepo(t *testing.T) *repo {
	requireGit(t)
	base := t.TempDir()
	r := &repo{t: t, home: base}
	origin := filepath.Join(base, "origin")
	if err := os.Mkdir(origin, 0o755); err != nil {
		t.Fatal(err)
	}
	r.git(origin, "init", "--quiet", "--initial-branch=main")
	commit := func(file, text string) string {
		if err := os.WriteFile(filepath.Join(origin, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		r.git(origin, "add", file)
		r.git(origin, "commit", "--quiet", "-m", file+" "+text)
		return r.git(origin, "rev-parse", "HEAD")
	}
	r.c1 = commit("app.py", "1")
	r.git(origin, "checkout", "--quiet", "-b", "feature")
	r.f1 = commit("feature.py", "f")
	r.git(origin, "checkout", "--quiet", "main")
	r.c2 = commit("app.py", "2")
	r.c3 = commit("app.py", "3")
	r.app = filepath.Join(base, "app")
	r.git(base, "clone", "--quiet", origin, r.app)
	r.git(r.app, "checkout", "--quiet", "--detach", r.c2)
	return r
}

// run runs a step of the sequence in the clone (as the test's user: User and
// Sudo are the transport's business) and returns its exit code and output.
func (r *repo) run(st *Step, env map[string]string) (int, string) {
	r.t.Helper()
	cmd := exec.Command("sh", "-c", st.Run)
	cmd.Dir = r.app
	cmd.Env = gitEnv(r.home)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	r.t.Fatalf("run %s: %v", st.Name, err)
	return -1, ""
}

func stepNamed(t *testing.T, steps []Step, name string) *Step {
	t.Helper()
	for i := range steps {
		if steps[i].Name == name {
			return &steps[i]
		}
	}
	t.Fatalf("no step %q", name)
	return nil
}

func testSequence() Sequence {
	return Sequence{AppDir: "/srv/app", AppUser: "app", Units: []string{"app.service"}, Settle: time.Second}
}

// Issue 8 item 5: a dispatch rollback took any SHA in the VM's clone (the fetch
// step skipped the branch check for kind rollback). Now only the automatic
// rollback, a SHA deployed before or an explicit override skips it.
func TestSequence_FetchChecksTheBranch(t *testing.T) {
	r := newRepo(t)
	steps, _, _, _ := testSequence().Steps()
	fetch := stepNamed(t, steps, "fetch")
	tests := []struct {
		name     string
		sha      string
		env      map[string]string
		wantCode int
		wantOut  string
	}{
		{name: "push of a commit on the branch", sha: r.c3, env: map[string]string{"DEPLOYHOOK_KIND": "push"}},
		{name: "rollback to a commit on the branch", sha: r.c1, env: map[string]string{"DEPLOYHOOK_KIND": "rollback"}},
		{name: "rollback to a commit off the branch", sha: r.f1, env: map[string]string{"DEPLOYHOOK_KIND": "rollback"},
			wantCode: 1, wantOut: "commit " + r.f1 + " is not on branch main"},
		{name: "dispatch of a commit off the branch", sha: r.f1, env: map[string]string{"DEPLOYHOOK_KIND": "workflow_dispatch"},
			wantCode: 1, wantOut: "commit " + r.f1 + " is not on branch main"},
		{name: "redeploy of a commit deployed before", sha: r.f1,
			env: map[string]string{"DEPLOYHOOK_KIND": "rollback", "DEPLOYHOOK_DEPLOYED_BEFORE": "true"}},
		{name: "any commit, by a person", sha: r.f1, env: map[string]string{"DEPLOYHOOK_KIND": "manual", "DEPLOYHOOK_ANY_COMMIT": "true"}},
		{name: "the automatic rollback", sha: r.f1, env: map[string]string{"DEPLOYHOOK_KIND": "push", "DEPLOYHOOK_ROLLBACK": "true"}},
		{name: "not in origin", sha: strings.Repeat("ab", 20), env: map[string]string{"DEPLOYHOOK_KIND": "manual", "DEPLOYHOOK_ANY_COMMIT": "true"},
			wantCode: 1, wantOut: "is not in origin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"DEPLOYHOOK_SHA": tc.sha, "DEPLOYHOOK_BRANCH": "main"}
			for k, v := range tc.env {
				env[k] = v
			}
			code, out := r.run(fetch, env)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Errorf("fetch exit %d %q, want %d with %q", code, out, tc.wantCode, tc.wantOut)
			}
		})
	}
}

// Issue 8 item 10: the repository's own hooks and fsmonitor never run (a
// post-checkout hook made a deploy report the SHA while other code ran).
func TestSequence_GitRunsWithoutHooks(t *testing.T) {
	r := newRepo(t)
	marker := filepath.Join(r.home, "hook-ran")
	hook := "#!/bin/sh\necho hook >> " + marker + "\necho evil > app.py\n"
	for _, name := range []string{"post-checkout", "reference-transaction", "fsmonitor"} {
		if err := os.WriteFile(filepath.Join(r.app, ".git", "hooks", name), []byte(hook), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.git(r.app, "config", "core.fsmonitor", filepath.Join(r.app, ".git", "hooks", "fsmonitor"))
	steps, current, changed, contains := testSequence().Steps()
	env := map[string]string{"DEPLOYHOOK_SHA": r.c3, "DEPLOYHOOK_PREVIOUS_SHA": r.c2, "DEPLOYHOOK_BRANCH": "main", "DEPLOYHOOK_KIND": "push"}
	for _, st := range []*Step{stepNamed(t, steps, "preflight"), stepNamed(t, steps, "fetch"), stepNamed(t, steps, "checkout"), current, changed, contains} {
		if code, out := r.run(st, env); st.Name != "contains" && code != 0 {
			t.Fatalf("%s exited %d: %s", st.Name, code, out)
		}
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Errorf("a repository hook ran: %q", b)
	}
	if got := r.git(r.app, "rev-parse", "HEAD"); got != r.c3 {
		t.Errorf("HEAD = %s, want %s", got, r.c3)
	}
	if b, _ := os.ReadFile(filepath.Join(r.app, "app.py")); string(b) != "3" {
		t.Errorf("app.py = %q after the checkout, want the commit's content", b)
	}
}

// Issue 8 item 10: files marked assume-unchanged or skip-worktree hide local
// changes from git status; the preflight names them and refuses, also with
// allow_dirty.
func TestSequence_PreflightRefusesHiddenChanges(t *testing.T) {
	tests := []struct {
		name       string
		flag       string
		allowDirty bool
		wantOut    string
	}{
		{"assume-unchanged", "--assume-unchanged", false, "marked assume-unchanged"},
		{"skip-worktree", "--skip-worktree", false, "marked skip-worktree"},
		{"assume-unchanged with allow_dirty", "--assume-unchanged", true, "marked assume-unchanged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			seq := testSequence()
			seq.AllowDirty = tc.allowDirty
			steps, _, _, _ := seq.Steps()
			preflight := stepNamed(t, steps, "preflight")
			if code, out := r.run(preflight, nil); code != 0 {
				t.Fatalf("preflight of a clean clone exited %d: %s", code, out)
			}
			r.git(r.app, "update-index", tc.flag, "app.py")
			if err := os.WriteFile(filepath.Join(r.app, "app.py"), []byte("patched on the VM"), 0o644); err != nil {
				t.Fatal(err)
			}
			if st := r.git(r.app, "status", "--porcelain", "--untracked-files=no"); st != "" {
				t.Fatalf("git status shows %q: the flag does not hide the change", st)
			}
			code, out := r.run(preflight, nil)
			if code != 1 || !strings.Contains(out, tc.wantOut) || !strings.Contains(out, "\napp.py\n") {
				t.Errorf("preflight exit %d %q, want 1 naming app.py as %s", code, out, tc.wantOut)
			}
		})
	}
}

// The contains probe: exit 0 when the SHA is the previous one or its
// ancestor, 1 when not (or not in the clone), anything else when git cannot tell.
func TestSequence_ContainsProbe(t *testing.T) {
	r := newRepo(t)
	_, _, _, contains := testSequence().Steps()
	missing := strings.Repeat("cd", 20)
	tests := []struct {
		name      string
		sha, prev string
		want      func(int) bool
	}{
		{"ancestor", r.c1, r.c3, func(c int) bool { return c == 0 }},
		{"same commit", r.c3, r.c3, func(c int) bool { return c == 0 }},
		{"newer", r.c3, r.c1, func(c int) bool { return c == 1 }},
		{"other branch", r.f1, r.c3, func(c int) bool { return c == 1 }},
		{"not in the clone", missing, r.c3, func(c int) bool { return c == 1 }},
		{"previous unknown", r.c1, "", func(c int) bool { return c != 0 && c != 1 }},
		{"previous not in the clone", r.c1, missing, func(c int) bool { return c != 0 && c != 1 }},
	}
	for _, tc := range tests {
		code, out := r.run(contains, map[string]string{"DEPLOYHOOK_SHA": tc.sha, "DEPLOYHOOK_PREVIOUS_SHA": tc.prev})
		if !tc.want(code) {
			t.Errorf("%s: exit %d (%s)", tc.name, code, out)
		}
	}
}

func TestSequence_Validate(t *testing.T) {
	tests := []struct {
		name string
		seq  Sequence
		want string
	}{
		{"complete", testSequence(), ""},
		{"no app_user", Sequence{AppDir: "/srv/app"},
			"the default deploy sequence needs app_user (the checkout's owner: git never runs as the login user)"},
		{"nothing", Sequence{},
			"the default deploy sequence needs app_dir (the checkout on the target) and app_user (the checkout's owner: git never runs as the login user)"},
	}
	for _, tc := range tests {
		err := tc.seq.Validate()
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.want {
				t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%s: nil, want %q", tc.name, tc.want)
		}
	}
}
