package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store"
	"github.com/deployhook/deployhook/internal/gitsha"
	"github.com/deployhook/deployhook/webhook"
)

// setup says what a command needs of deployhook: how its configuration is
// loaded and what is assembled from it.
type setup struct {
	// load are the options of config.Load (WithoutWebhookOrGitHub for the
	// commands that neither receive webhooks nor talk to GitHub).
	load []config.LoadOption
	// exec, when not nil, assembles the whole app with these executor options:
	// the journal, the reporter, the transports and the executor. Nil
	// assembles the transports only (ssh, tunnel): no journal is opened and no
	// data directory is made.
	exec *executor.Options
	// preflight is deployhook check's way: the configuration's outcome and its
	// warnings are lines on stdout ("✓ configuration", "✗ ...", "! ..."), a
	// failure is a reported exitError (exitUsage), and --target is not looked
	// up (it only filters the targets checked).
	preflight bool
}

// withApp is the sequence the commands that work on targets share: load the
// configuration (c's flags, as s says), assemble what s asks for, run fn
// with it, and close it once fn has returned, whatever fn returns.
func (e *env) withApp(ctx context.Context, c *common, s setup, fn func(*app) error) error {
	var cfg *config.Config
	var lg *slog.Logger
	var err error
	if s.preflight {
		cfg, lg, err = e.loadPreflight(c)
	} else {
		cfg, lg, err = e.load(c, s.load...)
	}
	if err != nil {
		return err
	}
	var a *app
	if s.exec == nil {
		tr, err := newTransports(lg, cfg, nil)
		if err != nil {
			return usageError(err)
		}
		a = &app{cfg: cfg, lg: lg, tr: tr}
	} else if a, err = e.assemble(ctx, cfg, lg, *s.exec, nil); err != nil {
		if s.preflight {
			fmt.Fprintf(e.stdout, "✗ %v\n", err)
			return exitError{code: exitUsage, err: err, reported: true}
		}
		return err
	}
	defer a.close()
	return fn(a)
}

// loadPreflight is e.load for deployhook check: it reports the configuration
// on stdout as check lines instead of failing with it or logging its warnings.
func (e *env) loadPreflight(c *common) (*config.Config, *slog.Logger, error) {
	path, err := e.configPath(c)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(path, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stdout, "✗ configuration: %v\n", err)
		return nil, nil, exitError{code: exitUsage, err: err, reported: true}
	}
	fmt.Fprintf(e.stdout, "✓ configuration: %d target(s)\n", len(cfg.Targets))
	for _, w := range cfg.FileWarnings() {
		fmt.Fprintf(e.stdout, "! %s\n", w)
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	return cfg, e.logger(cfg.Log), nil
}

func (e *env) deployCmd() *cobra.Command {
	var c common
	var sha string
	var force bool
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Deploy one commit to a target now, streaming the steps' output",
		Long: `Deploy runs one deploy in this process, through the same journal, lock and
reports as the service, and streams the output of every step to the terminal.
Without --sha it deploys the head of the target's branch (read from GitHub).

The commit must be on the target's branch or one the target deployed
successfully before; --force (with --sha) deploys any other commit, on purpose.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return e.runOne(cmd.Context(), &c, cliRequest{kind: executor.KindManual, sha: sha, force: force})
		},
	}
	c.flags(cmd, true)
	cmd.Flags().StringVar(&sha, "sha", "", "commit to deploy (full SHA; default: the branch head)")
	cmd.Flags().BoolVar(&force, "force", false, "deploy --sha even when it is neither on the branch nor deployed before")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

func (e *env) rollbackCmd() *cobra.Command {
	var c common
	var to string
	var force bool
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Deploy an earlier commit (default: the previous successful deploy)",
		Long: `Rollback deploys an earlier commit: the previous successful deploy, or --to.
The commit must be on the target's branch or one the target deployed
successfully before; --force (with --to) rolls back to any other commit, on
purpose.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return e.runOne(cmd.Context(), &c, cliRequest{kind: executor.KindRollback, sha: to, force: force})
		},
	}
	c.flags(cmd, true)
	cmd.Flags().StringVar(&to, "to", "", "commit to roll back to (default: the previous successful deploy)")
	cmd.Flags().BoolVar(&force, "force", false, "roll back to --to even when it is neither on the branch nor deployed before")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

// cliRequest is what deployhook deploy or rollback was asked for.
type cliRequest struct {
	kind  executor.Kind // KindManual or KindRollback
	sha   string        // --sha or --to; empty: the branch head, or the previous deploy
	force bool          // --force
}

// check refuses a request that cannot be meant: --force names no commit
// without --sha (--to), and the default commits need no force.
func (r cliRequest) check() error {
	if r.force && r.sha == "" {
		if r.kind == executor.KindRollback {
			return errors.New("--force needs --to: name the commit to roll back to")
		}
		return errors.New("--force needs --sha: name the commit to deploy")
	}
	return nil
}

// cliTrigger returns the trigger of a command-line deploy or rollback of sha
// to t by actor. sha is what the person typed: it is lower-cased
// (gitsha.Lower), and the executor refuses it if it is then not a full SHA.
// It always forces (a person may redeploy what runs now); only --force lets
// the commit be one neither on the branch nor deployed before
// (Trigger.AnyCommit), which no webhook can ask for.
func cliTrigger(r cliRequest, t *config.Target, sha, actor string) executor.Trigger {
	reason := "manual deploy by " + actor
	if r.kind == executor.KindRollback {
		reason = "rollback by " + actor
	}
	if r.force {
		reason += " (forced)"
	}
	return executor.Trigger{
		Kind: r.kind, Repo: t.Repo, Branch: t.Branch, SHA: gitsha.Lower(sha),
		Actor: actor, Reason: reason, Force: true, AnyCommit: r.force,
	}
}

// runOne runs one deploy or rollback in this process and waits for its end.
//
// It shares the journal with a running service, so it does not recover the
// journal (that would close the service's running job). The remote lock keeps the
// two from deploying at once.
func (e *env) runOne(ctx context.Context, c *common, r cliRequest) error {
	if err := r.check(); err != nil {
		return usageError(err)
	}
	// On a terminal the steps' output and the progress lines share stdout.
	var view *progressView
	out := e.stdout
	if isTerminal(e.stdout) {
		view = &progressView{w: e.stdout}
		out = view
	}
	// Ctrl-C cancels the deploy after a short grace: it is reported as interrupted.
	opts := executor.Options{Output: out, NoRecover: true, Grace: 5 * time.Second}
	return e.withApp(ctx, c, setup{exec: &opts}, func(a *app) error {
		return e.runJob(ctx, a, a.cfg.Target(c.target), r, view)
	})
}

// runJob runs the executor of a, enqueues r's job on t, waits for its end,
// and stops the executor.
//
// With a view (on a terminal) it also shows each step as it starts and ends,
// with the time since the deploy started.
func (e *env) runJob(ctx context.Context, a *app, t *config.Target, r cliRequest, view *progressView) error {
	var out io.Writer = e.stdout
	if view != nil {
		out = view
	}
	kind, sha, lg := r.kind, r.sha, a.lg
	var err error
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.ex.Run(runCtx) }()
	<-a.ex.Started() // the trigger below waits for the start-up recovery
	defer func() {
		stop()
		if err := <-done; err != nil {
			lg.Error("executor", "err", err)
		}
	}()

	switch {
	case sha != "":
	case kind == executor.KindRollback:
		if sha, err = a.ex.RollbackSHA(ctx, t.Name); err != nil {
			return err
		}
	case a.gh != nil:
		if sha, err = a.gh.BranchHead(ctx, t.Repo, t.Branch); err != nil {
			return unreachable(fmt.Errorf("read the head of %s: %w", t.Branch, err))
		}
	default:
		return usageError(errors.New("GitHub is not configured: give --sha"))
	}
	actor := "deployhook CLI"
	if u, err := user.Current(); err == nil {
		actor = u.Username
	}
	en, err := a.ex.Enqueue(ctx, t.Name, cliTrigger(r, t, sha, actor))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "job %s: %s %s to %s\n", en.Job.ID, kind, sha, t.Name)
	endProgress := func() {}
	if view != nil {
		view.follow(func(ctx context.Context) (executor.Job, error) { return a.store.Job(ctx, en.Job.ID) }, stepCount(a.cfg, t.Name))
		pctx, stop := context.WithCancel(ctx)
		shown := make(chan struct{})
		go func() {
			defer close(shown)
			view.watch(pctx, 250*time.Millisecond)
		}()
		endProgress = func() { stop(); <-shown }
	}
	j, err := a.ex.Wait(ctx, en.Job.ID)
	endProgress()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(e.stdout, "interrupted: cancelling the deploy")
			return ctx.Err() // the deferred stop ends the deploy and reports it
		}
		return err
	}
	fmt.Fprintf(out, "%s: %s\n", j.State, j.Description)
	return jobExit(&j)
}

// stepCount is how many steps target name runs (its configured or default
// sequence), for the progress display.
func stepCount(cfg *config.Config, name string) int {
	for _, t := range executorTargets(cfg) {
		if t.Name == name {
			return len(t.Steps)
		}
	}
	return 0
}

// descUnreachable is in the description of a job whose session could not be
// opened (executor's outcome): nothing ran because the target did not answer.
const descUnreachable = "could not reach the target"

// jobExit decides how deploy and rollback exit after job j, whose outcome
// is already on stdout: nil for a success, exitUnreachable when the target
// could not be reached and nothing ran, else exitFailed.
func jobExit(j *executor.Job) error {
	switch {
	case j.State == executor.StateSuccess:
		return nil
	case j.State == executor.StateError && strings.Contains(j.Description, descUnreachable): // behind who asked for it
		return exitError{code: exitUnreachable, err: fmt.Errorf("deploy %s: the target could not be reached", j.State), reported: true}
	}
	return failed(fmt.Errorf("deploy %s", j.State))
}

// statusLong is deployhook status --help, with the JSON it writes.
const statusLong = `Status shows, for each target, the commit it runs (its last successful
deploy) and its last jobs, newest first.

With -o json it writes one JSON object instead; its field names are stable:

  {"targets": [{
     "name": "production", "repo": "acme/app", "branch": "main",
     "current": {"sha": "<40 hex>", "job": "<job id>", "finished": "<RFC 3339>"},
     "jobs": [{"id": "<job id>", "kind": "push", "sha": "<40 hex>",
               "state": "success", "description": "deployed 1a2b3c4",
               "actor": "octocat", "created": "<RFC 3339>",
               "finished": "<RFC 3339>"}]}]}

"current" is null when the target has no successful deploy; "finished" is
left out of a job that has not finished. kind is push, workflow_run,
workflow_dispatch, manual, rollback or reconcile; state is queued, running,
success, failure, error, superseded or skipped.`

// statusJSON is status -o json's document: its field names are a contract
// (statusLong documents them).
type statusJSON struct {
	Targets []targetStatus `json:"targets"`
}

type targetStatus struct {
	Name    string      `json:"name"`
	Repo    string      `json:"repo"`
	Branch  string      `json:"branch"`
	Current *runsStatus `json:"current"`
	Jobs    []jobStatus `json:"jobs"`
}

type runsStatus struct {
	SHA      string    `json:"sha"`
	Job      string    `json:"job"`
	Finished time.Time `json:"finished"`
}

type jobStatus struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	SHA         string    `json:"sha"`
	State       string    `json:"state"`
	Description string    `json:"description"`
	Actor       string    `json:"actor"`
	Created     time.Time `json:"created"`
	Finished    time.Time `json:"finished,omitzero"`
}

func (e *env) statusCmd() *cobra.Command {
	var c common
	var limit int
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the last deploys and the commit each target runs",
		Long:  statusLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError(fmt.Errorf("-o %q: use text or json", output))
			}
			// It reads the journal: no webhook secret, no GitHub.
			s := setup{load: []config.LoadOption{config.WithoutWebhookOrGitHub()}, exec: &executor.Options{NoRecover: true}}
			return e.withApp(cmd.Context(), &c, s, func(a *app) error {
				doc := statusJSON{Targets: []targetStatus{}}
				for _, t := range a.cfg.Targets {
					if c.target != "" && t.Name != c.target {
						continue
					}
					ts := targetStatus{Name: t.Name, Repo: t.Repo, Branch: t.Branch, Jobs: []jobStatus{}}
					if last, err := a.store.LastSuccess(cmd.Context(), t.Name); err == nil {
						ts.Current = &runsStatus{SHA: last.Trigger.SHA, Job: last.ID, Finished: last.Finished}
					} else if !errors.Is(err, executor.ErrNotFound) {
						return err
					}
					jobs, err := a.store.Jobs(cmd.Context(), t.Name, limit)
					if err != nil {
						return err
					}
					for _, j := range jobs {
						ts.Jobs = append(ts.Jobs, jobStatus{
							ID: j.ID, Kind: string(j.Trigger.Kind), SHA: j.Trigger.SHA, State: string(j.State),
							Description: j.Description, Actor: j.Trigger.Actor, Created: j.Created, Finished: j.Finished,
						})
					}
					doc.Targets = append(doc.Targets, ts)
				}
				if output == "json" {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(doc)
				}
				return writeStatus(e.stdout, doc)
			})
		},
	}
	c.flags(cmd, true)
	cmd.Flags().IntVar(&limit, "limit", 10, "jobs to show per target")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// writeStatus writes doc as status's table.
func writeStatus(out io.Writer, doc statusJSON) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, t := range doc.Targets {
		current := "unknown"
		if t.Current != nil {
			current = t.Current.SHA[:7] + " (" + t.Current.Finished.Local().Format(time.DateTime) + ")"
		}
		fmt.Fprintf(w, "%s\t%s %s\truns %s\n", t.Name, t.Repo, t.Branch, current)
		for _, j := range t.Jobs {
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", j.ID, j.Created.Local().Format(time.DateTime),
				j.SHA[:7], j.State, j.Description)
		}
	}
	return w.Flush()
}

func (e *env) checkCmd() *cobra.Command {
	var c common
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Preflight: configuration, GitHub, tunnel, SSH and sudo for every target",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := setup{exec: &executor.Options{NoRecover: true}, preflight: true}
			return e.withApp(cmd.Context(), &c, s, func(a *app) error {
				nfailed := 0
				report := func(ok bool, format string, args ...any) {
					mark := markOK
					if !ok {
						mark, nfailed = markFailed, nfailed+1
					}
					fmt.Fprintf(e.stdout, "%s %s\n", mark, fmt.Sprintf(format, args...))
				}
				mark, line := reportingCheck(a.cfg)
				fmt.Fprintf(e.stdout, "%s %s\n", mark, line)
				for _, t := range a.cfg.Targets {
					if c.target != "" && t.Name != c.target {
						continue
					}
					e.checkTarget(cmd.Context(), a, t, report)
				}
				if nfailed > 0 {
					return failed(fmt.Errorf("%d check(s) failed", nfailed))
				}
				return nil
			})
		},
	}
	c.flags(cmd, true)
	return cmd
}

// checkTarget checks what a deploy of t needs, in the order a deploy needs it.
func (e *env) checkTarget(ctx context.Context, a *app, t config.Target, report func(bool, string, ...any)) {
	if a.gh != nil {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		sha, err := a.gh.BranchHead(cctx, t.Repo, t.Branch)
		cancel()
		report(err == nil, "%s: GitHub: head of %s %s%s", t.Name, t.Repo, t.Branch, resultText(sha, err))
	}
	for _, c := range a.tr.checks(ctx, t) {
		report(c.err == nil, "%s: %s%s", t.Name, c.what, resultText(c.detail, c.err))
	}
	if s := targetSudoers(t); s != "" {
		fmt.Fprintf(e.stdout, "%s: the sudoers lines its login user needs on the VM (check them with visudo -cf FILE, install as /etc/sudoers.d/deployhook):\n%s\n", t.Name, s)
	}
}

// The marks of deployhook check's lines.
const (
	markOK      = "✓" // works
	markWarning = "!" // works, but not as a deployment would want: says what to set
	markFailed  = "✗" // a deploy would fail: check exits 1
)

// reportingCheck decides check's line about reporting to GitHub. It is a
// tick only when commit statuses and Deployments will reach GitHub; when
// they are only logged it is a warning that says what to set. (Reporting on
// without credentials never gets here: Load refuses it.)
func reportingCheck(cfg *config.Config) (mark, line string) {
	gh := cfg.GitHub
	haveCredentials := cfg.GitHubToken != "" || gh.AppID != 0
	switch {
	case *gh.Report && gh.AppID != 0:
		return markOK, fmt.Sprintf("GitHub reporting: as GitHub App %d, installation %d", gh.AppID, gh.InstallationID)
	case *gh.Report:
		return markOK, "GitHub reporting: with DEPLOYHOOK_GITHUB_TOKEN"
	case haveCredentials:
		return markWarning, "GitHub reporting is off (github.report: false): commit statuses and Deployments are only logged, nothing reaches GitHub; remove github.report: false to report"
	}
	return markWarning, "GitHub reporting is off: commit statuses and Deployments are only logged, nothing reaches GitHub; set DEPLOYHOOK_GITHUB_TOKEN (or DEPLOYHOOK_GITHUB_TOKEN_FILE), or github.app_id, github.installation_id and github.private_key_file, to report"
}

func resultText(detail string, err error) string {
	switch {
	case err != nil:
		return ": " + err.Error()
	case detail != "":
		return ": " + detail
	}
	return ""
}

//go:embed testdata/push.json
var samplePush []byte

func (e *env) sendTestWebhookCmd() *cobra.Command {
	var url, event, sha, repo, branch, cfgPath string
	cmd := &cobra.Command{
		Use:   "send-test-webhook",
		Short: "Send a signed sample delivery, as GitHub would (DEPLOYHOOK_WEBHOOK_SECRET signs it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret := e.getenv("DEPLOYHOOK_WEBHOOK_SECRET")
			if f := e.getenv("DEPLOYHOOK_WEBHOOK_SECRET_FILE"); secret == "" && f != "" {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				secret = strings.TrimRight(string(b), "\r\n")
			}
			if secret == "" {
				return errors.New("set DEPLOYHOOK_WEBHOOK_SECRET to the secret the service uses")
			}
			if repo == "" || branch == "" {
				cfg, err := config.Parse(config.Local())
				if cfgPath != "" {
					var b []byte
					if b, err = os.ReadFile(cfgPath); err == nil {
						cfg, err = config.Parse(b)
					}
				}
				if err != nil {
					return err
				}
				if repo == "" {
					repo = cfg.Targets[0].Repo
				}
				if branch == "" {
					branch = cfg.Targets[0].Branch
					if branch == "" {
						branch = "main"
					}
				}
			}
			if sha == "" {
				var b [20]byte
				_, _ = rand.Read(b[:])
				sha = hex.EncodeToString(b[:])
			}
			body, err := sampleDelivery(event, repo, branch, sha)
			if err != nil {
				return err
			}
			return e.post(cmd.Context(), url, event, secret, body)
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:8080/webhook", "the webhook URL")
	cmd.Flags().StringVar(&event, "event", "push", "push or ping")
	cmd.Flags().StringVar(&sha, "sha", "", "the pushed commit (default: random)")
	cmd.Flags().StringVar(&repo, "repo", "", "owner/name (default: the first target's)")
	cmd.Flags().StringVar(&branch, "branch", "", "branch (default: the first target's)")
	cmd.Flags().StringVar(&cfgPath, "config", "", "configuration to take the repo and branch from (default: the local demo)")
	return cmd
}

// sampleDelivery returns GitHub's own sample push payload, rewritten for repo,
// branch and sha, or a ping.
func sampleDelivery(event, repo, branch, sha string) ([]byte, error) {
	var p map[string]any
	if err := json.Unmarshal(samplePush, &p); err != nil {
		return nil, err
	}
	switch event {
	case "push":
		p["ref"] = "refs/heads/" + branch
		p["after"] = sha
		p["deleted"], p["created"] = false, false
		if r, ok := p["repository"].(map[string]any); ok {
			r["full_name"] = repo
			r["name"] = repo[strings.IndexByte(repo, '/')+1:]
		}
		if hc, ok := p["head_commit"].(map[string]any); ok {
			hc["id"] = sha
		}
	case "ping":
		p = map[string]any{"zen": "Design for failure.", "hook_id": 1,
			"repository": map[string]any{"full_name": repo}}
	default:
		return nil, fmt.Errorf("--event %q: use push or ping", event)
	}
	return json.Marshal(p)
}

func (e *env) post(ctx context.Context, url, event, secret string, body []byte) error {
	var guid [16]byte
	_, _ = rand.Read(guid[:])
	delivery := fmt.Sprintf("%x-%x-%x-%x-%x", guid[0:4], guid[4:6], guid[6:8], guid[8:10], guid[10:])
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/deployhook-test")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(body, []byte(secret)))
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return unreachable(fmt.Errorf("send: %w", err))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(e.stdout, "delivery %s: %s %s\n", delivery, resp.Status, bytes.TrimSpace(answer))
	if resp.StatusCode >= 300 {
		return failed(fmt.Errorf("webhook answered %s", resp.Status))
	}
	return nil
}

// completions registers the shell completions of the commands under root
// (deployhook completion bash|zsh|fish writes the scripts that ask for them):
// --target with the configuration's target names, and deploy's --sha and
// rollback's --to with the commits the journal recorded for the target.
func (e *env) completions(root *cobra.Command) {
	for _, cmd := range root.Commands() {
		if cmd.Flags().Lookup("target") != nil {
			_ = cmd.RegisterFlagCompletionFunc("target", e.completeTargets)
		}
		switch cmd.Name() {
		case "deploy":
			_ = cmd.RegisterFlagCompletionFunc("sha", e.completeSHAs)
		case "rollback":
			_ = cmd.RegisterFlagCompletionFunc("to", e.completeSHAs)
		}
	}
}

// completionConfig reads the configuration that cmd's --config (or
// DEPLOYHOOK_CONFIG) names, without secrets or validation: completion must
// work where the secrets are not set. Nil when there is none.
func (e *env) completionConfig(cmd *cobra.Command) *config.Config {
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		path = e.getenv("DEPLOYHOOK_CONFIG")
	}
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	cfg, err := config.Parse(b)
	if err != nil {
		return nil
	}
	return cfg
}

// completeTargets completes --target with the configuration's target names.
func (e *env) completeTargets(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	var out []string
	if cfg := e.completionConfig(cmd); cfg != nil {
		for _, t := range cfg.Targets {
			if strings.HasPrefix(t.Name, toComplete) {
				out = append(out, t.Name)
			}
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeSHAs completes --sha and --to with the commits of the target's
// last jobs in the journal, newest first, each described by its job. It
// never creates the journal or its directory.
func (e *env) completeSHAs(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	const none = cobra.ShellCompDirectiveNoFileComp
	cfg := e.completionConfig(cmd)
	target, _ := cmd.Flags().GetString("target")
	if cfg == nil || target == "" {
		return nil, none
	}
	dir, _ := cmd.Flags().GetString("data-dir")
	if dir == "" {
		dir = cfg.DataDir
		if dir == "" {
			dir = "./.deployhook"
		}
	}
	db := filepath.Join(dir, "deployhook.db")
	if _, err := os.Stat(db); err != nil {
		return nil, none
	}
	ctx := cmd.Context()
	st, err := store.Open(ctx, slog.New(slog.DiscardHandler), db)
	if err != nil {
		return nil, none
	}
	defer st.Close()
	jobs, err := st.Jobs(ctx, target, 20)
	if err != nil {
		return nil, none
	}
	var out []string
	seen := map[string]bool{}
	for _, j := range jobs {
		sha := j.Trigger.SHA
		if seen[sha] || !strings.HasPrefix(sha, gitsha.Lower(toComplete)) {
			continue
		}
		seen[sha] = true
		out = append(out, fmt.Sprintf("%s\t%s %s: %s", sha, j.Created.Local().Format(time.DateTime), j.State, j.Description))
	}
	return out, none | cobra.ShellCompDirectiveKeepOrder
}
