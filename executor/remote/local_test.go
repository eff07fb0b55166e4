package remote

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/remote/remotetest"
)

// TestLocal runs the conformance suite against the Local transport, with HOME
// set to an empty directory (relative locks land there).
func TestLocal(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	remotetest.Run(t, func(t *testing.T) executor.Transport {
		return NewLocal(testLogger(t), LocalOptions{KillGrace: 500 * time.Millisecond, LockPoll: 10 * time.Millisecond})
	}, remotetest.Options{Home: home, Sudo: true})
}

// TestLocal_Run_env: a local step gets what a shell needs of deployhook's
// environment (the suite checks that it gets nothing else). Before, steps
// inherited all of it (issue 8, item 10).
func TestLocal_Run_env(t *testing.T) {
	t.Setenv("LC_TIME", "C")
	t.Setenv("TZ", "UTC")
	t.Setenv("SHELL", "/bin/zsh")
	s, err := NewLocal(testLogger(t), LocalOptions{}).Open(t.Context(), "local", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out strings.Builder
	code, err := s.Run(t.Context(), executor.Command{Name: "env", Run: "env", Timeout: 30 * time.Second,
		Env: map[string]string{"APP_MODE": "prod"}}, &out)
	if err != nil || code != 0 {
		t.Fatalf("Run() = %d, %v", code, err)
	}
	env := map[string]string{}
	for l := range strings.Lines(out.String()) {
		k, v, _ := strings.Cut(strings.TrimSuffix(l, "\n"), "=")
		env[k] = v
	}
	for k, want := range map[string]string{"APP_MODE": "prod", "LC_TIME": "C", "TZ": "UTC",
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "SHELL": ""} {
		if env[k] != want {
			t.Errorf("%s = %q in the step, want %q", k, env[k], want)
		}
	}
}

func TestStepEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{
			name: "keeps what a shell needs",
			environ: []string{"PATH=/bin", "HOME=/home/d", "USER=d", "LOGNAME=d", "LANG=C.UTF-8", "LC_ALL=C",
				"TZ=UTC", "TMPDIR=/tmp/d", "SHELL=/bin/bash"},
			want: []string{"PATH=/bin", "HOME=/home/d", "USER=d", "LOGNAME=d", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC", "TMPDIR=/tmp/d"},
		},
		{
			name: "drops secrets and settings",
			environ: []string{"PATH=/bin", "DEPLOYHOOK_WEBHOOK_SECRET=x", "DEPLOYHOOK_GITHUB_TOKEN=y",
				"DEPLOYHOOK_SSH_KEY=z", "AWS_SECRET_ACCESS_KEY=w", "PATHX=1", "LC=2"},
			want: []string{"PATH=/bin"},
		},
		{
			name:    "a default PATH",
			environ: []string{"HOME=/root"},
			want:    []string{"HOME=/root", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stepEnv(tt.environ); !slices.Equal(got, tt.want) {
				t.Errorf("stepEnv() = %q, want %q", got, tt.want)
			}
		})
	}
}
