package server

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/deployhook/deployhook/executor"
)

// MaxPayload is the default cap on a webhook body: GitHub does not deliver events
// whose payload is larger than 25 MB (github/docs data/reusables/webhooks/payload_cap.md),
// so nothing larger can be a genuine delivery.
const MaxPayload = 25 << 20

// DefaultResolveTimeout bounds the GitHub API call that resolves a branch head for a
// workflow_dispatch without a sha. GitHub waits 10 s for the answer to a delivery
// (github/docs best-practices-for-using-webhooks.md), so the lookup must end well
// before that.
const DefaultResolveTimeout = 5 * time.Second

// Queue accepts deploy requests. Implementation: the executor's queue.
type Queue interface {
	// Enqueue queues t for target and returns the job, or the existing job and
	// Duplicate when the delivery or SHA is already known, or Ignored (nothing
	// recorded) when it refuses an automatic trigger: t.BodyHash seen before
	// under another delivery, or a SHA the target deployed before. It returns an
	// error wrapping executor.ErrUnknownTarget or executor.ErrClosed (shutting
	// down); any other error means the journal could not record the job, and the
	// delivery is answered 503. It must not run the deploy: it returns in
	// milliseconds.
	Enqueue(ctx context.Context, target string, t executor.Trigger) (executor.Enqueued, error)
}

// Journal reads jobs. Implementation: the executor's store.
type Journal interface {
	// Job returns the job with its steps, or an error wrapping executor.ErrNotFound.
	Job(ctx context.Context, id string) (executor.Job, error)
	// Jobs lists jobs newest first, of one target (all if empty), in the given states
	// (all if none), at most limit.
	Jobs(ctx context.Context, target string, limit int, states ...executor.State) ([]executor.Job, error)
}

// Resolver finds the SHA a branch points at (GitHub's API), for workflow_dispatch
// deliveries, which carry no SHA.
type Resolver interface {
	// BranchHead returns the full SHA of repo's (owner/name) branch, in lower
	// case as GitHub writes it; any other answer is refused (gitsha.Valid).
	BranchHead(ctx context.Context, repo, branch string) (string, error)
}

// Rollbacks finds what a rollback of a target deploys.
type Rollbacks interface {
	// RollbackSHA returns the SHA of the target's previous successful deploy (the one
	// before the current), or an error wrapping executor.ErrNotFound if there is none.
	RollbackSHA(ctx context.Context, target string) (string, error)
}

// Checker reports readiness for /readyz.
type Checker interface {
	// Ready returns nil when deliveries can be taken. Its error text is shown to
	// callers of /readyz, so it must be public (no hostnames, paths or tokens).
	Ready(ctx context.Context) error
}

// Route says which deliveries deploy a target.
type Route struct {
	Target string // the target's name, as the Queue knows it
	Repo   string // owner/name; compared ignoring ASCII case, as GitHub does
	// RepoID, when not 0, pins the repository's numeric id (repository.id, which
	// survives renames and transfers): a delivery for Repo with another id, or
	// none, is ignored with a reason.
	RepoID int64
	Branch string // branch name without refs/heads/; compared exactly
	// DeployOn is executor.DeployOnPush (every push to Branch deploys) or
	// executor.DeployOnWorkflowRun (a successful run of one of Workflows on a
	// push to Branch deploys); New refuses any other value.
	DeployOn executor.DeployOn
	// Workflows lists the workflow file paths (.github/workflows/ci.yml) whose
	// successful runs deploy, for DeployOnWorkflowRun. A workflow_run route
	// without any deploys on no workflow run (config.Validate refuses it).
	Workflows []string
	// DispatchWorkflow is the workflow file path whose workflow_dispatch deploys
	// (manual deploys and rollbacks); empty: none.
	DispatchWorkflow string
	// Environment is the target's GitHub Deployment environment, shown on pages.
	Environment string
}

// Options configure a Server.
type Options struct {
	// Secrets are the webhook secrets: one, or two while rotating (a delivery signed
	// with either is accepted). New refuses none and refuses an empty one.
	Secrets [][]byte
	// MaxBody caps a webhook body in bytes; 0 means MaxPayload (GitHub's 25 MB).
	MaxBody int64
	// BodyBudget caps the bytes of webhook body buffers held at once, across all
	// requests. Buffers grow as bytes arrive, never from the Content-Length a
	// client announces, and each growth is taken from the budget first: a
	// delivery whose buffer cannot grow is answered 503 at once. 0 means
	// DefaultBodyBudget, or twice MaxBody+1 when that is larger; New refuses a
	// budget smaller than that, which could not hold one delivery of MaxBody.
	BodyBudget int64
	// MaxReading caps the webhook bodies being read at once; past it a delivery
	// is answered 503 at once. 0 means DefaultMaxReading.
	MaxReading int
	// BodyTimeout bounds reading one webhook body, from the end of its headers;
	// a slower client is answered 408. 0 means DefaultBodyTimeout.
	BodyTimeout time.Duration
	// MaxConns caps the connections Serve keeps open; a connection past the cap
	// is answered a minimal 503 and closed at once, without slowing the others.
	// 0 means DefaultMaxConns.
	MaxConns int
	// Routes map deliveries to targets. Every target the index and badges show is
	// a Route's Target.
	Routes []Route
	// PublicURL is the base URL deployhook is reached at (https://deploy.example.com);
	// used for the badge snippets on the index page. Empty: relative links.
	PublicURL string
	// Badges serves /badge/TARGET.svg and .json; off, they are 404.
	Badges bool
	// PrivateBadges puts the badges behind sign-in, like the pages: only a
	// person who may read the target's repository sees its badge (others get
	// 404, as for an unknown target). Off: badges are public.
	PrivateBadges bool
	// ShowOutput puts the steps' output tails and their error texts (which may
	// name hosts and addresses) on job pages, in the job JSON and in the live
	// log for everyone signed in through the "none" mode (AllowAll), where
	// anyone who reaches the server is signed in. A person signed in through
	// a provider (GitHub, IAP) who may read the target's repository always
	// sees them. Off (the zero value), the "none" mode shows a step that did
	// not finish with a public summary only ("timed out", "connection
	// lost"), and no output.
	ShowOutput bool
	// WebURL is GitHub's web address (https://github.com, or
	// https://HOST for GitHub Enterprise Server), for the commit and compare
	// links of the history pages. Empty: https://github.com.
	WebURL string
	// Version is shown on pages.
	Version string
	// Observer, when set, is told how each webhook delivery was answered.
	Observer Observer
	// Metrics, when set, is served at MetricsPath (GET /metrics) to anyone who
	// reaches this server: set it only when the server is not public.
	Metrics http.Handler
	// ResolveTimeout bounds Resolver and Rollbacks calls; 0 means DefaultResolveTimeout.
	ResolveTimeout time.Duration
}

// Deps are the Server's collaborators. Queue, Journal and Auth are required;
// Resolver and Rollbacks are required when a route has a DispatchWorkflow;
// Checker, Live and Commits are optional.
type Deps struct {
	Queue     Queue
	Journal   Journal
	Resolver  Resolver
	Rollbacks Rollbacks
	Checker   Checker
	// Auth signs people in and says what they may see and do. Every route
	// but the webhook, the health checks, the sign-in flow, the static
	// assets and the public badges needs a session. Required: the local
	// demo uses AllowAll.
	Auth Auth
	// Live streams the running jobs' logs and cancels jobs. Nil: job pages
	// follow running jobs from the journal only (read every 500 ms), and
	// there is no cancel button.
	Live Live
	// Commits looks up commit messages and authors for the history pages,
	// cached. Nil: the pages show SHAs alone.
	Commits Commits
	// Now is the clock for ages on pages and badges; nil means time.Now.
	Now func() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

// Server is deployhook's HTTP front: the webhook receiver, health checks, job pages
// and badges. Its methods are safe for concurrent use.
type Server struct {
	lg      *slog.Logger
	opts    Options
	deps    Deps
	targets []string // route targets, unique, in configuration order
	echo    *echo.Echo
	// tmpl parses the pages' templates on the first page view: a service
	// that only takes webhooks never touches html/template's code, which is
	// about 0.5 MB of its resident memory.
	tmpl   func() (*template.Template, error)
	intake *intake
	logs   sync.Pool // *logContext
	// draining is set by Drain and Shutdown: deliveries and /readyz are
	// answered 503. closing is set by Shutdown only: Serve refuses to start.
	draining atomic.Bool
	closing  atomic.Bool
	// streams ends with Shutdown: the live log streams, which would
	// otherwise hold Shutdown until its deadline, end with it.
	streams    context.Context
	endStreams context.CancelFunc
	commits    *commitCache // nil without Deps.Commits

	mu    sync.Mutex
	srv   *http.Server
	conns *capListener // set by Serve
}

// New returns a Server. It fails when Options has no webhook secret or an empty one
// (an unsigned webhook would deploy whatever anyone posts), when a route is
// incomplete (no target, repo or branch, or a DeployOn that is not valid), or
// when a required dependency is nil. The routes are otherwise taken as
// configuration validated them: New does not repeat config.Validate's rules.
func New(lg *slog.Logger, opts Options, deps Deps) (*Server, error) {
	if lg == nil {
		return nil, errors.New("server: nil logger")
	}
	if len(opts.Secrets) == 0 {
		return nil, errors.New("server: no webhook secret: set DEPLOYHOOK_WEBHOOK_SECRET (deployhook never accepts unsigned webhooks)")
	}
	if len(opts.Secrets) > 2 {
		return nil, fmt.Errorf("server: %d webhook secrets: give one, or two while rotating", len(opts.Secrets))
	}
	for i, s := range opts.Secrets {
		if len(s) == 0 {
			return nil, fmt.Errorf("server: webhook secret %d is empty", i+1)
		}
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = MaxPayload
	}
	if opts.ResolveTimeout <= 0 {
		opts.ResolveTimeout = DefaultResolveTimeout
	}
	minBudget := 2 * (opts.MaxBody + 1) // one maximal body, its buffer growing
	switch {
	case opts.BodyBudget == 0:
		opts.BodyBudget = max(DefaultBodyBudget, minBudget)
	case opts.BodyBudget < minBudget:
		return nil, fmt.Errorf("server: body budget %d bytes cannot hold one delivery of %d bytes: give at least %d", opts.BodyBudget, opts.MaxBody, minBudget)
	}
	if opts.MaxReading <= 0 {
		opts.MaxReading = DefaultMaxReading
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	if deps.Queue == nil || deps.Journal == nil {
		return nil, errors.New("server: Queue and Journal are required")
	}
	if deps.Auth == nil {
		return nil, errors.New("server: Auth is required: configure a sign-in mode (for the local demo, AllowAll)")
	}
	opts.WebURL = strings.TrimRight(opts.WebURL, "/")
	if opts.WebURL == "" {
		opts.WebURL = "https://github.com"
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Server{lg: lg, opts: opts, deps: deps}
	s.streams, s.endStreams = context.WithCancel(context.Background())
	if deps.Commits != nil {
		s.commits = newCommitCache(deps.Commits)
	}
	seen := map[string]bool{}
	for i, r := range opts.Routes {
		if r.Target == "" || r.Repo == "" || r.Branch == "" {
			return nil, fmt.Errorf("server: route %d: target, repo and branch are required", i+1)
		}
		if !r.DeployOn.Valid() {
			return nil, fmt.Errorf("server: route %d (%s): DeployOn %q is not an executor.DeployOn value", i+1, r.Target, r.DeployOn)
		}
		if r.DispatchWorkflow != "" && (deps.Resolver == nil || deps.Rollbacks == nil) {
			return nil, fmt.Errorf("server: target %s has a dispatch workflow: Resolver and Rollbacks are required", r.Target)
		}
		if !seen[r.Target] {
			seen[r.Target] = true
			s.targets = append(s.targets, r.Target)
		}
	}
	s.tmpl = sync.OnceValues(func() (*template.Template, error) {
		return template.New("").Funcs(s.funcs()).ParseFS(templateFS, "templates/*.html")
	})
	s.intake = newIntake(opts)
	s.logs.New = func() any { return new(logContext) }
	s.echo = s.routes()
	return s, nil
}

// routes builds the echo instance with every route and middleware.
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	e.Use(s.logRequests, s.recoverPanics)

	// Public: GitHub, health checks, the sign-in flow, what the pages load.
	e.POST("/webhook", s.handleWebhook)
	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	e.Any(AuthPath+"*", echo.WrapHandler(s.deps.Auth.Handler()))
	e.GET("/static/:file", s.handleStatic)
	if s.opts.Badges {
		if s.opts.PrivateBadges {
			e.GET("/badge/:file", s.handleBadge, s.signedIn)
		} else {
			e.GET("/badge/:file", s.handleBadge)
		}
	}

	// Everything else needs a session. (Not an echo Group: a group's
	// middleware also answers every unknown path, which would hide 405s.)
	for _, r := range []struct {
		method, path string
		h            echo.HandlerFunc
	}{
		{http.MethodGet, "/", s.handleIndex},
		{http.MethodGet, executor.JobsPath, s.handleJobs},
		{http.MethodGet, executor.JobPath(":id"), s.handleJob}, // the page every report links to (executor.JobURL)
		{http.MethodGet, executor.JobPath(":id") + "/events", s.handleEvents},
		{http.MethodGet, executor.JobPath(":id") + "/cancel", s.handleCancelConfirm},
		{http.MethodPost, executor.JobPath(":id") + "/cancel", s.handleCancel},
		{http.MethodGet, "/targets/:name", s.handleTarget},
		{http.MethodGet, "/targets/:name/deploy", s.handleDeployConfirm},
		{http.MethodPost, "/targets/:name/deploy", s.handleDeploy},
	} {
		e.Add(r.method, r.path, r.h, s.signedIn)
	}
	s.metricsRoute(e)
	return e
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler { return s.echo }

// Limits of the HTTP server that Serve runs. GitHub's requests have a few
// headers of a few hundred bytes and are sent at once.
const (
	readHeaderTimeout = 10 * time.Second
	maxHeaderBytes    = 64 << 10
	idleTimeout       = time.Minute
	writeTimeout      = time.Minute
)

// Serve accepts connections on ln until Shutdown, at most Options.MaxConns open
// at once (one past the cap is answered a minimal 503 and closed, without
// stalling the accept of others). Headers must arrive within 10 seconds and hold
// at most 64 KiB; an idle connection is closed after a minute. It returns nil
// after Shutdown, and any other error from the listener.
func (s *Server) Serve(ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: readHeaderTimeout,
		// A backstop: the webhook handler bounds its own body read (BodyTimeout);
		// this bounds any other request's, headers included.
		ReadTimeout:    readHeaderTimeout + s.opts.BodyTimeout,
		WriteTimeout:   writeTimeout,
		IdleTimeout:    idleTimeout,
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.lg.Handler(), slog.LevelWarn),
	}
	conns := limitConns(s.lg, ln, s.opts.MaxConns)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return errors.New("serve: server is shut down")
	}
	s.srv, s.conns = srv, conns
	s.mu.Unlock()
	if err := srv.Serve(conns); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Drain stops intake and keeps serving: from its return on, every webhook
// delivery is answered 503 with the reason (shutting down; redeliver later)
// and nothing is queued, and /readyz is 503; job pages, badges and /healthz
// still answer. deployhook drains while the running deploy finishes, so a
// delivery gets an honest answer instead of a refused connection, then calls
// Shutdown. A delivery whose handler had passed the check before Drain may
// still be queued (and answered 202). Drain is safe to call at any time, more
// than once, and concurrently with requests.
func (s *Server) Drain() {
	s.draining.Store(true)
}

// Shutdown stops intake as Drain does, ends the live log streams (a
// browser reconnects to another instance, or after the restart), closes the
// listener, and lets requests in flight finish until ctx ends. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.closing.Store(true)
	s.endStreams()
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down http server: %w", err)
	}
	return nil
}

// known reports whether target is a route's target.
func (s *Server) known(target string) bool {
	for _, t := range s.targets {
		if t == target {
			return true
		}
	}
	return false
}
