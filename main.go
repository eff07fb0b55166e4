package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
	"golang.org/x/term"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/ghstatus"
	"github.com/deployhook/deployhook/executor/store"
	"github.com/deployhook/deployhook/internal/metrics"
	"github.com/deployhook/deployhook/server"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ex exitError
		if !errors.As(err, &ex) || !ex.reported {
			fmt.Fprintln(os.Stderr, "deployhook:", err)
		}
	}
	os.Exit(exitCode(err))
}

// The exit codes of deployhook, as the root command's help documents them.
// ssh -- COMMAND exits with the remote command's own code instead.
const (
	exitOK          = 0 // deployed, or nothing failed
	exitFailed      = 1 // the deploy failed, or check found a failure
	exitUsage       = 2 // the command line or the configuration is wrong
	exitUnreachable = 3 // the VM or GitHub could not be reached
)

// exitError is an error with the code the process exits with.
type exitError struct {
	code int
	err  error
	// reported: the error is already on stdout (check's ✗ lines, a deploy's
	// outcome), so main does not print it again.
	reported bool
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// usageError marks err as a mistake in the command line or the configuration.
func usageError(err error) error { return exitError{code: exitUsage, err: err} }

// unreachable marks err as the VM or GitHub not answering.
func unreachable(err error) error { return exitError{code: exitUnreachable, err: err} }

// failed marks err, already on stdout, as a failed deploy or check.
func failed(err error) error { return exitError{code: exitFailed, err: err, reported: true} }

// exitCode is the process's exit code for run's error: 0 for nil, the code an
// exitError carries, else 1.
func exitCode(err error) int {
	var ex exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ex):
		return ex.code
	}
	return exitFailed
}

// env is what run gets from the process, so a test can run the whole program.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// rootLong is deployhook --help: what the program does, where the
// configuration comes from and what the exit codes mean.
const rootLong = `deployhook receives GitHub's webhooks and deploys a repository to a Compute
Engine VM over SSH through Identity-Aware Proxy, reporting to GitHub.

The configuration is --config FILE, or the file DEPLOYHOOK_CONFIG names.
Only "deployhook serve" runs without one: it then serves the embedded local
demo (config/local.yaml), and says so.

Exit codes:
  0  deployed, or everything checked is fine
  1  the deploy failed, or check found a failure
  2  usage or configuration error
  3  the VM or GitHub could not be reached
"deployhook ssh -- COMMAND" exits with the remote command's exit code.`

// run runs the deployhook command line args. Its error says how the process
// exits (exitCode): a usage error (an unknown command or flag, a missing
// --target) is exitUsage.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "deployhook",
		Short:         "Deploy a repository to a Compute Engine VM when GitHub says so",
		Long:          rootLong,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("deployhook {{.Version}}\n")
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		e.serveCmd(), e.deployCmd(), e.rollbackCmd(), e.statusCmd(), e.checkCmd(),
		e.sshCmd(), e.tunnelCmd(), e.sendTestWebhookCmd(), e.versionCmd(), e.initCmd(),
	)
	e.completions(root)
	// Cobra checks the command, its flags and its arguments before RunE: an
	// error before any RunE started is a usage error.
	started := false
	for _, c := range root.Commands() {
		if f := c.RunE; f != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				started = true
				return f(cmd, args)
			}
		}
	}
	err := root.ExecuteContext(ctx)
	var ex exitError
	if err != nil && !started && !errors.As(err, &ex) {
		return usageError(err)
	}
	return err
}

func (e *env) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(e.stdout, versionLine())
			return err
		},
	}
}

// common holds the flags most commands share.
type common struct {
	config  string
	dataDir string
	target  string
	// demo: without --config or DEPLOYHOOK_CONFIG, load the embedded local
	// demo (serve); otherwise that is a usage error.
	demo bool
}

func (c *common) flags(cmd *cobra.Command, withTarget bool) {
	cmd.Flags().StringVar(&c.config, "config", "", "configuration file (default: $DEPLOYHOOK_CONFIG)")
	cmd.Flags().StringVar(&c.dataDir, "data-dir", "", "directory of the journal (overrides data_dir)")
	if withTarget {
		cmd.Flags().StringVar(&c.target, "target", "", "target name")
	}
}

// errNoConfig is the usage error of a command other than serve without a
// configuration.
var errNoConfig = errors.New("no configuration: give --config FILE or set DEPLOYHOOK_CONFIG (only serve runs the embedded demo without one)")

// configPath returns the configuration file c names: --config, else
// DEPLOYHOOK_CONFIG. Empty means the embedded demo, which only c.demo allows.
func (e *env) configPath(c *common) (string, error) {
	if c.config == "" {
		c.config = e.getenv("DEPLOYHOOK_CONFIG")
	}
	if c.config == "" && !c.demo {
		return "", usageError(errNoConfig)
	}
	return c.config, nil
}

// load reads the configuration (see config.Load for opts) and makes the logger.
// A configuration that cannot be used is a usage error.
func (e *env) load(c *common, opts ...config.LoadOption) (*config.Config, *slog.Logger, error) {
	path, err := e.configPath(c)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(path, e.getenv, opts...)
	if err != nil {
		return nil, nil, usageError(err)
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	lg := e.logger(cfg.Log)
	for _, w := range cfg.FileWarnings() {
		lg.Warn(w)
	}
	if c.target != "" && cfg.Target(c.target) == nil {
		var names []string
		for _, t := range cfg.Targets {
			names = append(names, t.Name)
		}
		return nil, nil, usageError(fmt.Errorf("no target %q in the configuration (targets: %s)", c.target, strings.Join(names, ", ")))
	}
	return cfg, lg, nil
}

// logger returns the process's logger: JSON with the field names Cloud Logging
// reads (severity, message) unless stderr is a terminal or text is asked for.
// In both, durations are seconds ("1.5s") and nil values are left out (logAttr).
func (e *env) logger(l config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	text := l.Format == "text"
	if l.Format == "auto" {
		if f, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			text = true
		}
	}
	if text {
		return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: logAttr}))
	}
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: cloudAttr}))
}

// app is deployhook assembled from a configuration.
type app struct {
	cfg      *config.Config
	lg       *slog.Logger
	store    executor.Store
	gh       *ghstatus.Client // nil when GitHub reporting is off
	reporter executor.Reporter
	tr       *transports
	ex       *executor.Executor
}

// assemble opens the journal and builds the reporter, transports and executor.
// What the configuration names but cannot be used (data_dir, key files, host
// key pins) is a usage error.
func (e *env) assemble(ctx context.Context, cfg *config.Config, lg *slog.Logger, opts executor.Options, m *metrics.Metrics) (*app, error) {
	a := &app{cfg: cfg, lg: lg}
	st, err := openJournal(ctx, cfg, lg, !opts.NoRecover)
	if err != nil {
		return nil, err
	}
	a.store = st
	fail := func(err error) (*app, error) {
		a.close()
		return nil, err
	}
	if *cfg.GitHub.Report {
		ts, err := tokenSource(cfg)
		if err != nil {
			return fail(usageError(err))
		}
		a.gh, err = ghstatus.New(lg, ghstatus.Options{
			BaseURL: cfg.GitHub.APIURL, TokenSource: ts, Deployments: *cfg.GitHub.Deployments,
			UserAgent: "deployhook/" + version, Observer: githubObserver(m),
		})
		if err != nil {
			return fail(err)
		}
		a.reporter = a.gh
	} else {
		a.reporter = ghstatus.LogOnly(lg)
	}
	a.tr, err = newTransports(lg, cfg, m)
	if err != nil {
		return fail(usageError(err))
	}
	opts.Targets = executorTargets(cfg)
	if err := wireNotify(cfg, &opts); err != nil {
		return fail(usageError(err))
	}
	if a.gh != nil {
		// Targets with custom steps ask GitHub whether a commit is older than the
		// deployed one, or on the branch; the default sequence asks the VM's clone.
		opts.Heads, opts.Commits = a.gh, a.gh
	}
	opts.PublicURL = cfg.PublicURL
	opts.Redact = append(opts.Redact, redactions(cfg)...)
	opts.Retain, opts.RetainJobs = time.Duration(*cfg.Retain), *cfg.RetainJobs
	opts.Lease = time.Duration(cfg.Lease)
	if opts.Grace == 0 {
		opts.Grace = time.Duration(cfg.ShutdownGrace)
	}
	a.ex, err = executor.New(lg, opts, st, a.tr, a.reporter)
	if err != nil {
		return fail(err)
	}
	return a, nil
}

// openJournal opens the PostgreSQL journal when the configuration names one
// (DEPLOYHOOK_DATABASE_URL or store), the SQLite journal in data_dir
// otherwise. The URL, which may carry a password, is never logged. patient
// (serve) waits for a database that is down (openPostgres).
func openJournal(ctx context.Context, cfg *config.Config, lg *slog.Logger, patient bool) (executor.Store, error) {
	if u := cfg.JournalURL(); u != "" {
		return openPostgres(ctx, lg, u, patient) // it says "open journal" already
	}
	if err := config.PrepareDataDir(cfg.DataDir); err != nil {
		return nil, usageError(err)
	}
	return store.Open(ctx, lg, filepath.Join(cfg.DataDir, "deployhook.db")) // it says "open journal" already
}

func (a *app) close() {
	if a.tr != nil {
		a.tr.Close()
	}
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.lg.Error("close journal", "err", err)
		}
	}
}

// tokenSource returns the GitHub credentials: an App's installation tokens, or a token.
func tokenSource(cfg *config.Config) (oauth2.TokenSource, error) {
	if cfg.GitHub.AppID == 0 {
		return ghstatus.StaticToken(cfg.GitHubToken), nil
	}
	key, err := os.ReadFile(cfg.GitHub.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("read the GitHub App's private key (github.private_key_file): %w", err)
	}
	return ghstatus.NewAppTokenSource(ghstatus.AppOptions{
		AppID: cfg.GitHub.AppID, InstallationID: cfg.GitHub.InstallationID,
		PrivateKeyPEM: key, BaseURL: cfg.GitHub.APIURL,
	})
}

// executorTargets copies the configuration's targets into the executor's.
func executorTargets(cfg *config.Config) []executor.Target {
	var out []executor.Target
	for _, t := range cfg.Targets {
		et := executor.Target{
			Name: t.Name, Repo: t.Repo, Branch: t.Branch, Environment: t.Environment,
			Lock: t.Lock, LockWait: time.Duration(t.LockWait), NotApplied: t.NotApplied,
			Rollback: *t.Rollback, Dir: t.AppDir, Env: t.Env,
			Reconcile: time.Duration(t.Reconcile), DeployOn: t.DeployOn, Workflows: t.Workflows,
			Rollout: t.ExecutorRollout(), // fleet.go
		}
		seq := targetSequence(t)
		steps, current, changed, contains := seq.Steps()
		if t.AppDir != "" {
			et.Current, et.Changed = current, changed
		}
		if len(t.Steps) == 0 {
			// Custom steps: ancestry and the branch are asked of GitHub instead.
			et.Steps, et.Contains = steps, contains
		}
		et.Watch = targetWatch(&t, seq) // watch.go
		for _, s := range t.Steps {
			et.Steps = append(et.Steps, executor.Step{
				Name: s.Name, Run: s.Run, User: s.User, Sudo: s.Sudo, Dir: s.Dir, Env: s.Env,
				Timeout: time.Duration(s.Timeout), WhenChanged: s.WhenChanged,
				Checkpoint: s.Checkpoint, NoRollback: s.Rollback != nil && !*s.Rollback,
			})
		}
		out = append(out, et)
	}
	return out
}

func routes(cfg *config.Config) []server.Route {
	var out []server.Route
	for _, t := range cfg.Targets {
		out = append(out, server.Route{
			Target: t.Name, Repo: t.Repo, Branch: t.Branch, DeployOn: t.DeployOn,
			Workflows: t.Workflows, DispatchWorkflow: t.DispatchWorkflow, Environment: t.Environment,
			RepoID: t.RepoID,
		})
	}
	return out
}

func (e *env) serveCmd() *cobra.Command {
	c := common{demo: true}
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive GitHub webhooks and run the deploys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path, _ := e.configPath(&c); path == "" {
				fmt.Fprint(e.stderr, demoBanner)
			}
			cfg, lg, err := e.load(&c)
			if err != nil {
				return err
			}
			if cfg.Listen, err = listenAddr(listen, e.getenv("PORT"), cfg.Listen); err != nil {
				return err
			}
			if c.config == "" {
				lg.Warn("no --config: serving the embedded local demo (config/local.yaml)")
			}
			return e.serve(cmd.Context(), cfg, lg)
		},
	}
	c.flags(cmd, false)
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (overrides $PORT, which overrides listen)")
	return cmd
}

// demoBanner is what serve writes on stderr, before any log line, when it
// serves the embedded demo: a person who forgot --config must not take it for
// their own configuration.
const demoBanner = `
*** deployhook: no --config and no DEPLOYHOOK_CONFIG ***
*** serving the EMBEDDED LOCAL DEMO (config/local.yaml): it deploys nothing of yours ***
*** give --config FILE or set DEPLOYHOOK_CONFIG for your own targets ***

`

// serve runs the service until ctx ends, then shuts down in order: stop
// taking webhooks (deliveries and /readyz are answered 503 with the reason,
// pages still answer), let the running deploys finish within the grace period
// and stop the executor, stop HTTP, close the journal.
func (e *env) serve(ctx context.Context, cfg *config.Config, lg *slog.Logger) error {
	mon, err := newMonitor(cfg, lg)
	if err != nil {
		return err
	}
	opts := replicaOptions(cfg)
	opts.Observer = mon.m
	a, err := e.assemble(ctx, cfg, lg, opts, mon.m)
	if err != nil {
		return err
	}
	defer a.close() // last: the journal outlives every reader and writer
	mon.watch(a)
	if a.gh == nil {
		lg.Warn("GitHub reporting is off: statuses are logged, not sent")
	}
	auth, err := consoleAuth(lg, cfg)
	if err != nil {
		return err
	}
	srv, err := newServer(lg, cfg, a, auth, mon)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	stopMetrics, err := mon.listen(e.stdout)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopMetrics()
	execCtx, stopExec := context.WithCancel(context.WithoutCancel(ctx))
	defer stopExec()
	execDone := make(chan error, 1)
	go func() { execDone <- a.ex.Run(execCtx) }()
	<-a.ex.Started() // deliveries wait for the start-up recovery
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	lg.Info("deployhook serving", "addr", ln.Addr().String(), "version", version, "targets", len(cfg.Targets))
	fmt.Fprintf(e.stdout, "deployhook listening on http://%s\n", ln.Addr())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-serveDone:
		serveDone <- nil // the listener is gone: nothing to wait for below
	case err := <-execDone:
		// The executor stopped on its own: the journal could not be read.
		shutdown(lg, srv)
		return err
	}
	// Intake stops first, and the listener stays open meanwhile: a delivery is
	// told deployhook is shutting down (503, redeliver later) rather than
	// refused a connection, or accepted with 202 and left queued until the
	// next start.
	srv.Drain()
	lg.Info("shutting down: deliveries are answered 503; the running deploys finish", "grace", time.Duration(cfg.ShutdownGrace))
	stopExec()
	execErr := <-execDone
	shutdown(lg, srv)
	<-serveDone
	if execErr != nil {
		return execErr
	}
	lg.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, net.ErrClosed) {
		return serveErr
	}
	return nil
}

func shutdown(lg *slog.Logger, srv *server.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		lg.Warn("HTTP shutdown", "err", err)
	}
}

// readiness is /readyz: the journal answers and the queue runs.
type readiness struct{ a *app }

// Ready implements server.Checker. Its answer is public: the journal's own errors (which may name files) go to
// the log only.
func (r readiness) Ready(ctx context.Context) error {
	err := r.a.ex.Ready(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, executor.ErrJournal) && r.a.cfg.JournalURL() != "":
		r.a.lg.Error("journal not writable", "err", err)
		return errors.New(pgNotReady)
	case errors.Is(err, executor.ErrJournal):
		r.a.lg.Error("journal not writable", "err", err)
		return errors.New("journal not writable (disk full or read-only?): deliveries are answered 503 until it accepts writes; see the log")
	case errors.Is(err, executor.ErrClosed):
		return err
	}
	r.a.lg.Error("not ready", "err", err)
	return errors.New("queue not running")
}

// noResolver answers workflow_dispatch without a sha when GitHub is not configured.
type noResolver struct{}

func (noResolver) BranchHead(context.Context, string, string) (string, error) {
	return "", errors.New("GitHub is not configured: dispatch with a sha input")
}
