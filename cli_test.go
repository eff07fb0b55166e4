package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store"
)

// TestCLITrigger: --force, and only --force, lets a person deploy or roll back
// to a commit neither on the branch nor deployed before (Trigger.AnyCommit).
// Before issue 8 the CLI had no --force and never set AnyCommit.
func TestCLITrigger(t *testing.T) {
	tg := &config.Target{Repo: "acme/app", Branch: "main"}
	upper := strings.ToUpper(sha(5))
	tests := []struct {
		name string
		req  cliRequest
		sha  string
		want executor.Trigger
	}{
		{"deploy", cliRequest{kind: executor.KindManual, sha: sha(5)}, sha(5),
			executor.Trigger{Kind: executor.KindManual, Repo: "acme/app", Branch: "main", SHA: sha(5), Actor: "ann",
				Reason: "manual deploy by ann", Force: true}},
		{"deploy --force", cliRequest{kind: executor.KindManual, sha: upper, force: true}, upper,
			executor.Trigger{Kind: executor.KindManual, Repo: "acme/app", Branch: "main", SHA: sha(5), Actor: "ann",
				Reason: "manual deploy by ann (forced)", Force: true, AnyCommit: true}},
		{"rollback", cliRequest{kind: executor.KindRollback}, sha(4),
			executor.Trigger{Kind: executor.KindRollback, Repo: "acme/app", Branch: "main", SHA: sha(4), Actor: "ann",
				Reason: "rollback by ann", Force: true}},
		{"rollback --force", cliRequest{kind: executor.KindRollback, sha: sha(4), force: true}, sha(4),
			executor.Trigger{Kind: executor.KindRollback, Repo: "acme/app", Branch: "main", SHA: sha(4), Actor: "ann",
				Reason: "rollback by ann (forced)", Force: true, AnyCommit: true}},
		// Only ASCII is lower-cased: K (KELVIN SIGN) stays, and the executor
		// refuses the SHA, instead of it folding into a k.
		{"kelvin sign", cliRequest{kind: executor.KindManual, sha: "\u212a"}, "\u212a",
			executor.Trigger{Kind: executor.KindManual, Repo: "acme/app", Branch: "main", SHA: "\u212a", Actor: "ann",
				Reason: "manual deploy by ann", Force: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.req.check(); err != nil {
				t.Fatalf("check: %v", err)
			}
			if got := cliTrigger(tc.req, tg, tc.sha, "ann"); got != tc.want {
				t.Errorf("trigger\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestRun_ForceNeedsACommit: --force names no commit by itself.
func TestRun_ForceNeedsACommit(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "--target", "production", "--force"}, "--force needs --sha: name the commit to deploy"},
		{[]string{"rollback", "--target", "production", "--force"}, "--force needs --to: name the commit to roll back to"},
	} {
		var out bytes.Buffer
		err := run(t.Context(), tc.args, func(string) string { return "" }, nil, &out, t.Output())
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestRun_ForcedRollback rolls back with --to and --force through the whole
// program; the journal records the forced trigger.
func TestRun_ForcedRollback(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		args = append(args, "--config", cfg, "--data-dir", data, "--target", "production")
		err := run(context.Background(), args, testEnv(gh), nil, &out, t.Output())
		return out.String(), err
	}
	for _, n := range []int{1, 2} {
		if out, err := cli("deploy", "--sha", sha(n)); err != nil {
			t.Fatalf("deploy %d: %v\n%s", n, err, out)
		}
	}
	out, err := cli("rollback", "--to", sha(1), "--force")
	if err != nil || !strings.Contains(out, "rollback "+sha(1)) || !strings.Contains(out, "success: rolled back to "+sha(1)[:7]+" by ") {
		t.Fatalf("forced rollback: %v\n%s", err, out)
	}
	st, err := store.Open(t.Context(), slog.New(slog.NewTextHandler(t.Output(), nil)), filepath.Join(data, "deployhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	jobs, err := st.Jobs(t.Context(), "production", 1)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %v %v", jobs, err)
	}
	if tr := jobs[0].Trigger; tr.Kind != executor.KindRollback || tr.SHA != sha(1) || !strings.HasSuffix(tr.Reason, " (forced)") {
		t.Errorf("last job's trigger %+v, want the forced rollback to %s", tr, sha(1)[:7])
	}
}

// TestRun_RefusesUnsafeDataDir: the program refuses a data_dir that others
// can write or that is a symbolic link, and says what to fix. Before issue 8
// it opened the journal there (the test then timed out, serving).
func TestRun_RefusesUnsafeDataDir(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ data, want string }{
		{open, "data_dir " + open + " is writable by group or others (mode 0777): chmod 700 " + open},
		{link, "data_dir " + link + " is a symbolic link: set data_dir to the directory it points to"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := run(ctx, []string{"serve", "--config", cfg, "--data-dir", tc.data, "--listen", "127.0.0.1:0"},
			testEnv(gh), nil, &bytes.Buffer{}, t.Output())
		cancel()
		if err == nil || err.Error() != tc.want {
			t.Errorf("serve --data-dir %s: %v\nwant %q", tc.data, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(tc.data, "deployhook.db")); err == nil {
			t.Errorf("a journal was created in %s", tc.data)
		}
	}
}

// TestRun_CheckWarnsOfReadableSecretFiles: deployhook check names a secret
// file that others may read, and does not fail for it.
func TestRun_CheckWarnsOfReadableSecretFiles(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	gh.head = sha(9)
	cfg := writeConfig(t, dir, "")
	secretFile := filepath.Join(dir, "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secretFile, 0o644); err != nil {
		t.Fatal(err)
	}
	base := testEnv(gh)
	getenv := func(k string) string {
		switch k {
		case "DEPLOYHOOK_WEBHOOK_SECRET":
			return ""
		case "DEPLOYHOOK_WEBHOOK_SECRET_FILE":
			return secretFile
		}
		return base(k)
	}
	var out bytes.Buffer
	err := run(t.Context(), []string{"check", "--config", cfg, "--data-dir", filepath.Join(dir, "data")}, getenv, nil, &out, t.Output())
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	want := "! DEPLOYHOOK_WEBHOOK_SECRET_FILE " + secretFile + " is readable by group or others (mode 0644): chmod 600 " + secretFile + "\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("check output:\n%s\nwant the line %q", out.String(), want)
	}
	if strings.Contains(out.String(), testSecret) {
		t.Errorf("check output contains the secret:\n%s", out.String())
	}
}

// TestRun_Setup: the commands that share withApp load, assemble and answer
// as each did with its own sequence: check reports the configuration as
// check lines, status needs no webhook secret or GitHub, and ssh and tunnel
// build the transports only, never the journal or its directory.
func TestRun_Setup(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	openDir := filepath.Join(dir, "open")
	if err := os.Mkdir(openDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openDir, 0o777); err != nil {
		t.Fatal(err)
	}
	full := testEnv(newFakeGitHub(t))
	none := func(string) string { return "" }
	tests := []struct {
		name     string
		args     []string
		getenv   func(string) string
		wantOut  string
		wantErr  string
		reported bool // the error is already on stdout (exitError.reported)
		noData   bool // the data directory must not be made
	}{
		{name: "check: configuration error", args: []string{"check", "--config", cfg}, getenv: none,
			wantOut:  "✗ configuration: " + cfg + ": no webhook secret: set DEPLOYHOOK_WEBHOOK_SECRET (or DEPLOYHOOK_WEBHOOK_SECRET_FILE) to the secret of the GitHub webhook; deployhook never accepts unsigned deliveries\n",
			wantErr:  cfg + ": no webhook secret: set DEPLOYHOOK_WEBHOOK_SECRET (or DEPLOYHOOK_WEBHOOK_SECRET_FILE) to the secret of the GitHub webhook; deployhook never accepts unsigned deliveries",
			reported: true, noData: true},
		{name: "check: unsafe data dir", args: []string{"check", "--config", cfg, "--data-dir", openDir}, getenv: full,
			wantOut:  "✓ configuration: 1 target(s)\n✗ data_dir " + openDir + " is writable by group or others (mode 0777): chmod 700 " + openDir + "\n",
			wantErr:  "data_dir " + openDir + " is writable by group or others (mode 0777): chmod 700 " + openDir,
			reported: true},
		{name: "status: unknown target", args: []string{"status", "--config", cfg, "--target", "nope"}, getenv: none,
			wantErr: `no target "nope" in the configuration (targets: production)`, noData: true},
		{name: "status: no secret, no GitHub", args: []string{"status", "--config", cfg}, getenv: none,
			wantOut: "production  acme/app main  runs unknown\n"},
		{name: "ssh: local target", args: []string{"ssh", "--config", cfg, "--target", "production"}, getenv: none,
			wantErr: "target production uses transport local: there is nothing to ssh to", noData: true},
		{name: "tunnel: local target", args: []string{"tunnel", "--config", cfg, "--target", "production"}, getenv: none,
			wantErr: "target production does not use transport iap", noData: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			args := tc.args
			if !slices.Contains(args, "--data-dir") {
				args = append(args, "--data-dir", data)
			}
			var out bytes.Buffer
			err := run(t.Context(), args, tc.getenv, nil, &out, t.Output())
			if got := out.String(); got != tc.wantOut {
				t.Errorf("stdout:\n%q\nwant\n%q", got, tc.wantOut)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
			var ex exitError
			if got := errors.As(err, &ex) && ex.reported; got != tc.reported {
				t.Errorf("error is already reported: %v, want %v", got, tc.reported)
			}
			_, statErr := os.Stat(data)
			if made := statErr == nil; tc.noData && made {
				t.Errorf("the data directory %s was made", data)
			}
		})
	}
}
