package ghstatus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-github/v60/github"
	"golang.org/x/oauth2"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/endpoint"
	"github.com/deployhook/deployhook/internal/gitsha"
	"github.com/deployhook/deployhook/internal/safehttp"
)

// DefaultBaseURL is the REST API of github.com.
const DefaultBaseURL = "https://api.github.com/"

// MaxDescription is the longest description GitHub accepts on a commit status or
// a deployment status, in characters. Longer is answered with 422 "description
// is too long (maximum is 140 characters)" and the status is lost (seen in
// brigadecore/brigade#38, zalando/zappr#378; Shipit and Argo CD truncate to 140).
const MaxDescription = 140

// Options configures a Client. Zero values take the defaults.
type Options struct {
	// BaseURL is the REST API root: https://api.github.com/ (the default), or
	// https://HOST/api/v3/ for GitHub Enterprise Server.
	BaseURL string
	// TokenSource authenticates every request (StaticToken or
	// NewAppTokenSource). Required.
	TokenSource oauth2.TokenSource
	// Deployments makes Report create a GitHub Deployment per job and post
	// deployment statuses beside the commit statuses.
	Deployments bool
	// HTTPClient is the client whose Transport carries the requests (default: a
	// new client on http.DefaultTransport). Its Timeout, if any, also applies;
	// its CheckRedirect is replaced by one that stays on BaseURL's origin.
	HTTPClient *http.Client
	// UserAgent is sent with every request (default "deployhook").
	UserAgent string
	// Timeout bounds each try of each request (default 30 s).
	Timeout time.Duration
	// MaxTries is how many times one request is tried before Report gives up
	// (default 4).
	MaxTries int
	// Backoff is the wait after the first failed try; it doubles with every try
	// (default 1 s).
	Backoff time.Duration
	// MaxWait is the longest single wait between tries (default 1 min). A rate
	// limit that asks for more is not waited for: the call returns at once with
	// a (non-permanent) error.
	MaxWait time.Duration
	// Observer, when set, is told about every request's failure and rate limit.
	Observer Observer
}

// Client talks to the GitHub REST API for deployhook. It is safe for concurrent
// use.
type Client struct {
	lg   *slog.Logger
	opts Options
	gh   *github.Client
}

var _ executor.Reporter = (*Client)(nil)

// New returns a Client. It fails when opts.TokenSource is nil or opts.BaseURL
// is not an https URL (http only for a loopback host). It does no I/O.
func New(lg *slog.Logger, opts Options) (*Client, error) {
	if opts.TokenSource == nil {
		return nil, errors.New("ghstatus: no GitHub credentials: set DEPLOYHOOK_GITHUB_TOKEN or configure a GitHub App")
	}
	opts.UserAgent = cmp.Or(opts.UserAgent, "deployhook")
	opts.Timeout = cmp.Or(opts.Timeout, 30*time.Second)
	opts.MaxTries = max(cmp.Or(opts.MaxTries, 4), 1)
	opts.Backoff = cmp.Or(opts.Backoff, time.Second)
	opts.MaxWait = cmp.Or(opts.MaxWait, time.Minute)

	gh, err := newGitHub(observeClient(opts.HTTPClient, opts.Observer), opts.TokenSource, opts.BaseURL)
	if err != nil {
		return nil, err
	}
	gh.UserAgent = opts.UserAgent
	return &Client{lg: lg, opts: opts, gh: gh}, nil
}

// MaxBody caps every answer read from GitHub (safehttp.LimitBody): a longer
// one fails with an error wrapping safehttp.ErrBodyTooLarge instead of growing
// the heap without bound. The largest legitimate answers are a page of 100
// workflow runs (each carries two repository objects and its head commit,
// about 15 KB: 1.5 MB a page), a page of 100 deployments (about 300 KB), and
// the first page of a compare, which lists up to 300 changed files with
// patches GitHub cuts off at about 20,000 lines in all (a few MB; Contains
// stops reading at "status", which comes before them). 8 MiB leaves room
// above each.
const MaxBody = 8 << 20

// newGitHub returns a go-github client for the API root baseURL: empty for
// github.com, HOST/api/v3/ for GitHub Enterprise Server (uploads then go to
// HOST/api/uploads/), anything else as it is. Its requests go through a copy
// of hc (a new client when nil) that adds src's token, talks only to
// baseURL's origin (scheme, host, port), follows redirects only within it, and
// reads at most MaxBody of an answer: neither the token nor a request body is
// ever sent to another host or over http after https. baseURL must be https
// unless its host is loopback.
func newGitHub(hc *http.Client, src oauth2.TokenSource, baseURL string) (*github.Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("ghstatus: GitHub API URL %q is not an http(s) URL (github.com: %s, GitHub Enterprise: https://HOST/api/v3/)", baseURL, DefaultBaseURL)
	}
	if err := endpoint.RequireSecure("github.api_url (DEPLOYHOOK_GITHUB_API_URL)", baseURL); err != nil {
		return nil, fmt.Errorf("ghstatus: %w", err)
	}
	var c http.Client
	if hc != nil {
		c = *hc
	}
	c.Transport = safehttp.LimitBody(safehttp.PinOrigin(&oauth2.Transport{Source: src, Base: c.Transport}, u), MaxBody)
	c.CheckRedirect = safehttp.CheckRedirect
	gh := github.NewClient(&c)
	gh.UserAgent = "deployhook"
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if strings.HasSuffix(u.Path, "/api/v3/") {
		upload := *u
		upload.Path = strings.TrimSuffix(u.Path, "api/v3/") + "api/uploads/"
		return gh.WithEnterpriseURLs(u.String(), upload.String())
	}
	gh.BaseURL = u
	return gh, nil
}

// statusState maps a job state to a commit status state.
func statusState(s executor.State) (string, error) {
	switch s {
	case executor.StateQueued, executor.StateRunning:
		return "pending", nil
	case executor.StateSuccess, executor.StateSkipped:
		// Skipped: the commit's code is live, contained in the deployed commit.
		return "success", nil
	case executor.StateFailure:
		return "failure", nil
	case executor.StateError, executor.StateSuperseded:
		return "error", nil
	}
	return "", fmt.Errorf("unknown job state %q: %w", s, executor.ErrPermanent)
}

// deploymentState maps a job state to a deployment status state.
func deploymentState(s executor.State) (string, error) {
	switch s {
	case executor.StateQueued:
		return "queued", nil
	case executor.StateRunning:
		return "in_progress", nil
	case executor.StateSuccess, executor.StateFailure, executor.StateError:
		return string(s), nil
	case executor.StateSuperseded, executor.StateSkipped:
		// This job's Deployment never ran: the environment runs another one.
		return "inactive", nil
	}
	return "", fmt.Errorf("unknown job state %q: %w", s, executor.ErrPermanent)
}

// Truncate returns s on one line, cut to at most MaxDescription characters
// (runes); a cut string ends in "…".
func Truncate(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) <= MaxDescription {
		return s
	}
	r := []rune(s)[:MaxDescription-1]
	return strings.TrimRight(string(r), " ") + "…"
}

// splitRepo splits "owner/name". Both parts must be GitHub names (letters,
// digits, '-', '_', '.'; not "." or ".."), which also keeps them from changing
// a request's path.
func splitRepo(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || !repoNameRE.MatchString(owner) || !repoNameRE.MatchString(name) || name == "." || name == ".." || owner == "." || owner == ".." {
		return "", "", fmt.Errorf("repository %q is not owner/name: %w", repo, executor.ErrPermanent)
	}
	return owner, name, nil
}

var repoNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Report publishes r: the commit status (reportStatus), and with
// Options.Deployments the job's Deployment, found or created when r.Deployment
// is 0, and a deployment status (reportDeployment). It returns the Deployment
// id it knows, also together with an error: the caller must store a non-zero
// id and pass it back in r.Deployment. An error wrapping executor.ErrPermanent
// (a bad report, a 4xx from GitHub other than a rate limit) will not succeed
// on a retry; any other error may. See the package doc for the requests, the
// state mapping and the retry policy.
func (c *Client) Report(ctx context.Context, r executor.Report) (int64, error) {
	lg := c.lg.With("job", r.Job, "target", r.Target, "repo", r.Repo, "sha", r.SHA, "state", string(r.State))
	owner, name, err := checkReport(r)
	if err != nil {
		return r.Deployment, fmt.Errorf("report job %s: %w", r.Job, err)
	}
	desc := Truncate(r.Description)
	if err := c.reportStatus(ctx, lg, owner, name, r, desc); err != nil {
		return r.Deployment, err
	}
	if !c.opts.Deployments {
		state, _ := statusState(r.State) // known: reportStatus checked it
		lg.Debug("reported to GitHub", "status", state)
		return r.Deployment, nil
	}
	return c.reportDeployment(ctx, lg, owner, name, r, desc)
}

// checkReport checks what every request of r relies on, and returns r's
// repository split into owner and name. Its errors wrap executor.ErrPermanent.
func checkReport(r executor.Report) (owner, name string, err error) {
	owner, name, err = splitRepo(r.Repo)
	switch {
	case err != nil:
		return "", "", err
	case !gitsha.Valid(r.SHA):
		return "", "", fmt.Errorf("SHA %q is not 40 lower-case hex digits: %w", r.SHA, executor.ErrPermanent)
	case r.Target == "":
		return "", "", fmt.Errorf("no target: %w", executor.ErrPermanent)
	}
	return owner, name, nil
}

// commitStatus decides the commit status that reports r, with the
// description desc (already cut to MaxDescription): its state, its context
// deploy/TARGET, and the job's page as target_url. Empty fields are left out.
// An unknown job state gives an error wrapping executor.ErrPermanent.
func commitStatus(r executor.Report, desc string) (*github.RepoStatus, error) {
	state, err := statusState(r.State)
	if err != nil {
		return nil, err
	}
	status := &github.RepoStatus{
		State:   github.String(state),
		Context: github.String("deploy/" + r.Target),
	}
	if r.URL != "" {
		status.TargetURL = github.String(r.URL)
	}
	if desc != "" {
		status.Description = github.String(desc)
	}
	return status, nil
}

// reportStatus posts the commit status of r to owner/name.
func (c *Client) reportStatus(ctx context.Context, lg *slog.Logger, owner, name string, r executor.Report, desc string) error {
	status, err := commitStatus(r, desc)
	if err != nil {
		return fmt.Errorf("report job %s: %w", r.Job, err)
	}
	err = c.do(ctx, lg, "create commit status", func(ctx context.Context) error {
		_, _, err := c.gh.Repositories.CreateStatus(ctx, owner, name, r.SHA, status)
		return err
	})
	if err != nil {
		return fmt.Errorf("report job %s to %s@%.7s: %w", r.Job, r.Repo, r.SHA, err)
	}
	return nil
}

// environment is the GitHub environment of r's Deployment: r.Environment, or
// the target's name.
func environment(r executor.Report) string { return cmp.Or(r.Environment, r.Target) }

// deploymentStatus decides the deployment status that reports r in the
// environment env, with the description desc (already cut): its state, the
// environment, and the job's page as log_url. Empty fields are left out. An
// unknown job state gives an error wrapping executor.ErrPermanent.
func deploymentStatus(r executor.Report, env, desc string) (*github.DeploymentStatusRequest, error) {
	state, err := deploymentState(r.State)
	if err != nil {
		return nil, err
	}
	ds := &github.DeploymentStatusRequest{
		State:       github.String(state),
		Environment: github.String(env),
	}
	if r.URL != "" {
		ds.LogURL = github.String(r.URL)
	}
	if desc != "" {
		ds.Description = github.String(desc)
	}
	return ds, nil
}

// retired reports whether a job in state s never ran: one that has no
// Deployment yet must not get one only to be marked inactive.
func retired(s executor.State) bool {
	return s == executor.StateSuperseded || s == executor.StateSkipped
}

// reportDeployment posts the deployment status of r to r's Deployment in
// owner/name, after finding or creating the Deployment (deployment) when
// r.Deployment is 0. It returns the Deployment's id (0 when r's job is retired
// without one), also together with an error once the id is known.
func (c *Client) reportDeployment(ctx context.Context, lg *slog.Logger, owner, name string, r executor.Report, desc string) (int64, error) {
	env := environment(r)
	ds, err := deploymentStatus(r, env, desc)
	if err != nil {
		return r.Deployment, fmt.Errorf("report job %s: %w", r.Job, err)
	}
	id, err := c.deployment(ctx, lg, owner, name, r, env, desc)
	if err != nil || id == 0 {
		return id, err
	}
	err = c.do(ctx, lg, "create deployment status", func(ctx context.Context) error {
		_, _, err := c.gh.Repositories.CreateDeploymentStatus(ctx, owner, name, id, ds)
		return err
	})
	if err != nil {
		return id, fmt.Errorf("report job %s to %s@%.7s (deployment %d): %w", r.Job, r.Repo, r.SHA, id, err)
	}
	state, _ := statusState(r.State) // known: deploymentStatus checked it
	lg.Debug("reported to GitHub", "status", state, "deployment", id, "deployment_state", ds.GetState())
	return id, nil
}

// deployment returns the id of r's Deployment in env: r.Deployment when known,
// else the one GitHub lists for r's job, else a new one (with the description
// desc), except for a retired job (retired), for which it returns 0.
func (c *Client) deployment(ctx context.Context, lg *slog.Logger, owner, name string, r executor.Report, env, desc string) (int64, error) {
	if r.Deployment != 0 {
		return r.Deployment, nil
	}
	id, err := c.findDeployment(ctx, lg, owner, name, r.SHA, env, r.Job)
	if err != nil {
		return 0, fmt.Errorf("report job %s to %s@%.7s: %w", r.Job, r.Repo, r.SHA, err)
	}
	if id != 0 || retired(r.State) {
		return id, nil
	}
	id, err = c.createDeployment(ctx, lg, owner, name, r.SHA, env, r.Job, desc)
	if err != nil {
		return 0, fmt.Errorf("report job %s to %s@%.7s: %w", r.Job, r.Repo, r.SHA, err)
	}
	lg.Info("created GitHub deployment", "deployment", id, "environment", env)
	return id, nil
}

// findDeployment returns the id of job's Deployment of sha in env, or 0.
func (c *Client) findDeployment(ctx context.Context, lg *slog.Logger, owner, name, sha, env, job string) (int64, error) {
	var id int64
	err := c.do(ctx, lg, "list deployments", func(ctx context.Context) error {
		var err error
		id, err = c.findDeploymentOnce(ctx, owner, name, sha, env, job)
		return err
	})
	return id, err
}

// createDeployment creates job's Deployment of sha in env and returns its id.
func (c *Client) createDeployment(ctx context.Context, lg *slog.Logger, owner, name, sha, env, job, desc string) (int64, error) {
	req := &github.DeploymentRequest{
		Ref:                  github.String(sha),
		Task:                 github.String("deploy"),
		AutoMerge:            github.Bool(false),
		RequiredContexts:     &[]string{},
		Payload:              map[string]string{"job": job},
		Environment:          github.String(env),
		TransientEnvironment: github.Bool(false),
	}
	if desc != "" {
		req.Description = github.String(desc)
	}
	if env == "production" {
		req.ProductionEnvironment = github.Bool(true)
	}
	var id int64
	tries := 0
	err := c.do(ctx, lg, "create deployment", func(ctx context.Context) error {
		tries++
		if tries > 1 {
			// The previous try may have created it and lost the answer.
			found, err := c.findDeploymentOnce(ctx, owner, name, sha, env, job)
			if err != nil {
				return err
			}
			if found != 0 {
				id = found
				return nil
			}
		}
		d, _, err := c.gh.Repositories.CreateDeployment(ctx, owner, name, req)
		if err != nil {
			return err
		}
		if d.GetID() == 0 {
			return errors.New("GitHub answered without a deployment id")
		}
		id = d.GetID()
		return nil
	})
	return id, err
}

// findDeploymentOnce is findDeployment in a single try, for use inside a retry.
func (c *Client) findDeploymentOnce(ctx context.Context, owner, name, sha, env, job string) (int64, error) {
	list, _, err := c.gh.Repositories.ListDeployments(ctx, owner, name, &github.DeploymentsListOptions{
		SHA: sha, Environment: env, Task: "deploy", ListOptions: github.ListOptions{PerPage: 100},
	})
	if err != nil {
		return 0, err
	}
	for _, d := range list {
		var p struct {
			Job string `json:"job"`
		}
		if len(d.Payload) > 0 && json.Unmarshal(d.Payload, &p) == nil && p.Job == job && d.GetID() != 0 {
			return d.GetID(), nil
		}
	}
	return 0, nil
}

// BranchHead returns the SHA of the head commit of branch in repo (owner/name),
// for a workflow_dispatch without a SHA and for the reconciler: GET
// /repos/{owner}/{repo}/commits/heads/{branch} with Accept
// application/vnd.github.v3.sha (the SHA alone; "heads/" keeps a tag of the
// same name out). A "refs/heads/" prefix on branch is dropped. Errors are
// retried as in Report; a missing repository or branch gives an error wrapping
// executor.ErrPermanent.
func (c *Client) BranchHead(ctx context.Context, repo, branch string) (string, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return "", fmt.Errorf("branch head: %w", err)
	}
	branch = strings.TrimPrefix(branch, "refs/heads/")
	if branch == "" {
		return "", fmt.Errorf("branch head of %s: empty branch name: %w", repo, executor.ErrPermanent)
	}
	var sha string
	err = c.do(ctx, c.lg.With("repo", repo, "branch", branch), "get branch head", func(ctx context.Context) error {
		var err error
		sha, _, err = c.gh.Repositories.GetCommitSHA1(ctx, owner, name, "heads/"+branch, "")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("branch head of %s %s: %w", repo, branch, err)
	}
	sha = strings.TrimSpace(sha)
	if !gitsha.Valid(sha) {
		return "", fmt.Errorf("branch head of %s %s: GitHub answered %q, not a commit SHA", repo, branch, truncateForError(sha))
	}
	return sha, nil
}

// WorkflowSucceeded reports whether the latest push-triggered run of the
// workflow file workflowPath (".github/workflows/ci.yml" or "ci.yml") for head
// SHA sha in repo has completed with conclusion success: GET
// /repos/{owner}/{repo}/actions/workflows/{file}/runs?head_sha=&event=push
// (push runs only, as the workflow_run trigger). No run, a run not yet
// completed, and any other conclusion give false. A re-run updates its run's
// conclusion, so the latest attempt counts.
func (c *Client) WorkflowSucceeded(ctx context.Context, repo, sha, workflowPath string) (bool, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return false, fmt.Errorf("workflow result: %w", err)
	}
	file := path.Base(workflowPath)
	if file == "." || file == "/" || file == "" {
		return false, fmt.Errorf("workflow result in %s: bad workflow path %q: %w", repo, workflowPath, executor.ErrPermanent)
	}
	var runs *github.WorkflowRuns
	err = c.do(ctx, c.lg.With("repo", repo, "sha", sha, "workflow", workflowPath), "list workflow runs", func(ctx context.Context) error {
		var err error
		runs, _, err = c.gh.Actions.ListWorkflowRunsByFileName(ctx, owner, name, file, &github.ListWorkflowRunsOptions{
			HeadSHA: sha, Event: "push", ListOptions: github.ListOptions{PerPage: 100},
		})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("workflow %s result for %s@%.7s: %w", workflowPath, repo, sha, err)
	}
	var latest *github.WorkflowRun
	for _, run := range runs.WorkflowRuns {
		if run.GetHeadSHA() != sha {
			continue
		}
		t, lt := run.GetCreatedAt().Time, latest.GetCreatedAt().Time
		if latest == nil || t.After(lt) || (t.Equal(lt) && run.GetID() > latest.GetID()) {
			latest = run
		}
	}
	if latest == nil {
		return false, nil
	}
	return latest.GetStatus() == "completed" && latest.GetConclusion() == "success", nil
}

// truncateForError keeps unexpected answers short in error texts.
func truncateForError(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
