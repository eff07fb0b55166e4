package remote

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name    string
		cmd     executor.Command
		steps   string   // the steps lock's shell word
		prefix  string   // the line starts with this
		want    []string // and contains these
		wantErr string
	}{
		{
			name:   "plain",
			cmd:    executor.Command{Name: "fetch", Run: "git fetch", Timeout: 90 * time.Second},
			prefix: "exec sh -c '",
			want:   []string{" deployhook 90s 5s 'git fetch' 'deployhook: fetch'"},
		},
		{
			name:   "user",
			cmd:    executor.Command{Name: "sync", Run: "uv sync", User: "dagster", Timeout: 1500 * time.Millisecond},
			prefix: "exec sudo -n -u 'dagster' -- sh -c '",
			want:   []string{" deployhook 1.5s 5s 'uv sync' 'deployhook: sync'"},
		},
		{
			name:   "steps lock held by the login user, before sudo",
			cmd:    executor.Command{Name: "sync", Run: "uv sync", User: "dagster", Timeout: time.Minute},
			steps:  `"$HOME"/'.deployhook/deploy.lock.steps'`,
			prefix: `exec flock -o -s "$HOME"/'.deployhook/deploy.lock.steps' sudo -n -u 'dagster' -- sh -c '`,
			want:   []string{" deployhook 60s 5s 'uv sync' 'deployhook: sync'"},
		},
		{
			name:   "sudo",
			cmd:    executor.Command{Run: "systemctl restart dagster", Sudo: true, Timeout: time.Minute},
			prefix: "exec sudo -n -- sh -c '",
			want:   []string{" 'systemctl restart dagster' 'deployhook'"},
		},
		{
			name: "env sorted and dir, inside the sudo'd shell",
			cmd: executor.Command{Run: "make", User: "app", Dir: "/srv/my app", Timeout: time.Minute,
				Env: map[string]string{"DEPLOYHOOK_SHA": "abc", "A_B": "it's $(x)"}},
			prefix: "exec sudo -n -u 'app' -- sh -c '",
			want:   []string{`'export A_B='\''it'\''\'\'''\''s $(x)'\''` + "\n" + `export DEPLOYHOOK_SHA='\''abc'\''` + "\n" + `cd -- '\''/srv/my app'\'' || exit 1` + "\nmake'"},
		},
		{
			name:   "hostile name",
			cmd:    executor.Command{Name: "x'; rm -rf / #", Run: "true", Timeout: time.Second},
			prefix: "exec sh -c '",
			want:   []string{`'deployhook: x'\''; rm -rf / #'`},
		},
		{name: "no timeout", cmd: executor.Command{Run: "true"}, wantErr: "timeout must be positive"},
		{name: "bad env name", cmd: executor.Command{Run: "true", Timeout: time.Second, Env: map[string]string{"PATH;id": "x"}}, wantErr: "invalid environment variable name"},
		{name: "bad user", cmd: executor.Command{Run: "true", Timeout: time.Second, User: "root -s"}, wantErr: "invalid user name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := commandLine(tt.cmd, 0, false, tt.steps)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("commandLine() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.prefix) {
				t.Errorf("commandLine() = %s\nwant prefix %s", got, tt.prefix)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("commandLine() = %s\nwant it to contain %s", got, w)
				}
			}
		})
	}
}

// TestCommandLine_noInjection runs built command lines whose every field is
// hostile and checks that the values arrive intact and nothing else ran.
func TestCommandLine_noInjection(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	evil := "'; touch " + marker + "; echo '$(touch " + marker + ")`touch " + marker + "`\"\\"
	workdir := filepath.Join(dir, "d "+evil[:5])
	if err := os.Mkdir(workdir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := executor.Command{
		Name:    evil,
		Run:     `printf '%s\n' "$EVIL" "$(pwd)"`,
		Dir:     workdir,
		Env:     map[string]string{"EVIL": evil},
		Timeout: 10 * time.Second,
	}
	line, err := commandLine(cmd, time.Second, false, "")
	if err != nil {
		t.Fatal(err)
	}
	// The wrapper lives only while its stdin is open (see wrapper).
	stdin, keep, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	c := exec.CommandContext(t.Context(), "/bin/sh", "-c", line)
	c.Stdin = stdin
	out, err := c.CombinedOutput()
	stdin.Close()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if want := evil + "\n" + workdir + "\n"; string(out) != want {
		t.Errorf("output = %q, want %q", out, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("a field was executed: %s exists", marker)
	}
}

func TestTimedOut(t *testing.T) {
	tests := []struct {
		name    string
		code    int
		elapsed time.Duration
		want    bool
	}{
		{"timeout's TERM", 124, 2 * time.Second, true},
		{"timeout's KILL", 137, 7 * time.Second, true},
		{"exit 124 early", 124, time.Millisecond, false},
		{"OOM kill early", 137, time.Millisecond, false},
		{"failure after the deadline", 1, 3 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := timedOut(tt.code, tt.elapsed, time.Second); got != tt.want {
				t.Errorf("timedOut(%d, %v, 1s) = %v, want %v", tt.code, tt.elapsed, got, tt.want)
			}
		})
	}
}
