package executor

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
)

// Kind says what asked for a job.
type Kind string

// The kinds of trigger.
const (
	KindPush             Kind = "push"              // a push webhook to the target's branch
	KindWorkflowRun      Kind = "workflow_run"      // a CI workflow run that passed
	KindWorkflowDispatch Kind = "workflow_dispatch" // the "Run workflow" button
	KindManual           Kind = "manual"            // deployhook deploy on the command line
	KindRollback         Kind = "rollback"          // a rollback asked for by a person
	KindReconcile        Kind = "reconcile"         // the reconciler found a missed push
)

// Trigger is a request to deploy one SHA of one repository's branch.
type Trigger struct {
	Kind     Kind   `json:"kind"`
	Repo     string `json:"repo"`     // owner/name, as GitHub spells it
	Branch   string `json:"branch"`   // branch name without refs/heads/
	SHA      string `json:"sha"`      // full commit SHA, 40 lower-case hex digits (gitsha.Valid)
	Delivery string `json:"delivery"` // X-GitHub-Delivery GUID; empty for local triggers
	Actor    string `json:"actor"`    // the GitHub login (or local user) who caused it
	Reason   string `json:"reason"`   // a short public line: "push by octocat", "CI run 42 passed"
	// Force deploys even when SHA is the target's last successful deploy
	// (manual redeploys and rollbacks). Pushes and CI runs never force.
	Force bool `json:"force,omitempty"`
	// BodyHash identifies the webhook delivery's signed body (the server uses a
	// hash of its verified HMAC-SHA256 signature: identical bodies signed with
	// one secret share it); empty for local triggers. The signature does not
	// cover X-GitHub-Delivery, so an old signed body replayed under a new GUID is
	// recognised by it.
	BodyHash string `json:"body_hash,omitempty"`
	// AnyCommit lets a person deploy or roll back to a SHA that is neither on the
	// target's branch nor deployed successfully before (deployhook deploy
	// --force). Never set from a webhook.
	AnyCommit bool `json:"any_commit,omitempty"`
}

// Automatic reports whether k is a trigger no person asked for (a push, a CI
// run, the reconciler). Automatic triggers only ever move a target forward.
func (k Kind) Automatic() bool {
	return k == KindPush || k == KindWorkflowRun || k == KindReconcile
}

// State is a job's state in the journal.
type State string

// The job states. Queued and Running are not final; the others are.
const (
	StateQueued     State = "queued"
	StateRunning    State = "running"
	StateSuccess    State = "success"
	StateFailure    State = "failure"    // a step failed; rolled back, or nothing had changed
	StateError      State = "error"      // the deployer could not finish: transport, rollback, restart
	StateSuperseded State = "superseded" // replaced in the queue by a newer SHA before it ran
	// StateSkipped ends an automatic job whose SHA the target's deployed commit
	// already contains (the same commit or an ancestor): no step ran, and the
	// code of that SHA is live. On GitHub: commit status "success" (its code is
	// live), Deployment "inactive". It is not a successful deploy: it changes
	// neither LastSuccess nor Deployed nor what the target runs.
	StateSkipped State = "skipped"
)

// Final reports whether s is an end state.
func (s State) Final() bool {
	return s != StateQueued && s != StateRunning
}

// Job is one deploy of one SHA to one target.
type Job struct {
	ID          string    `json:"id"`
	Target      string    `json:"target"`
	Trigger     Trigger   `json:"trigger"`
	State       State     `json:"state"`
	Description string    `json:"description"`            // public, one line, what GitHub was told
	PreviousSHA string    `json:"previous_sha,omitempty"` // what the target ran before this job
	Deployment  int64     `json:"deployment,omitempty"`   // GitHub Deployment id, 0 if none
	Owner       string    `json:"owner,omitempty"`        // the Owner.ID of the process that runs or will run it
	Created     time.Time `json:"created"`
	Started     time.Time `json:"started,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`
	Steps       []StepRun `json:"steps,omitempty"`
}

// StepRun is the record of one step of a job.
type StepRun struct {
	Job      string        `json:"-"`
	Seq      int           `json:"seq"`               // order within the job, from 1
	Name     string        `json:"name"`              // the step's name; "rollback: NAME" during rollback
	Skipped  string        `json:"skipped,omitempty"` // why the step did not run, if it did not
	ExitCode int           `json:"exit_code"`         // -1 when killed or never finished
	Error    string        `json:"error,omitempty"`   // internal detail: timeout, transport error
	Output   string        `json:"output,omitempty"`  // the tail of stdout+stderr, bounded
	Started  time.Time     `json:"started,omitzero"`
	Duration time.Duration `json:"duration"`
}

// Step is one command of a target's deploy sequence, from configuration.
type Step struct {
	Name    string            `json:"name"`
	Run     string            `json:"run"`  // a POSIX shell script
	User    string            `json:"user"` // run as this user (sudo -n -u USER); empty: the login user
	Sudo    bool              `json:"sudo"` // run as root (sudo -n)
	Dir     string            `json:"dir"`  // working directory; empty: the target's app_dir or home
	Env     map[string]string `json:"env"`
	Timeout time.Duration     `json:"timeout"` // must be > 0; the step and its process tree are killed after it
	// WhenChanged lists path globs; when set, the step runs only if a file changed
	// between the previous and the new SHA matches one (or the change is unknown).
	WhenChanged []string `json:"when_changed,omitempty"`
	// Checkpoint marks the step after whose start the target has changed: a failure
	// at or after a checkpoint step rolls back; a failure before it does not.
	Checkpoint bool `json:"checkpoint,omitempty"`
	// NoRollback leaves the step out of the rollback run (a notification, say).
	NoRollback bool `json:"no_rollback,omitempty"`
}

// DeployOn says which deliveries deploy a target's branch on their own (a
// workflow_dispatch deploys whatever it says). The zero value is not valid:
// configuration chooses one (config defaults it to DeployOnPush and refuses
// any other value with a message that says what to write).
type DeployOn string

// The values of DeployOn, as written in the configuration (deploy_on).
const (
	// DeployOnPush deploys every push to the branch.
	DeployOnPush DeployOn = "push"
	// DeployOnWorkflowRun deploys a push to the branch once one of the
	// target's workflows ran on it and succeeded: only code that passed CI.
	DeployOnWorkflowRun DeployOn = "workflow_run"
)

// Valid reports whether d is one of the DeployOn constants.
func (d DeployOn) Valid() bool {
	return d == DeployOnPush || d == DeployOnWorkflowRun
}

// TransportKind names how deployhook reaches a target: it chooses the
// Transport that main builds for it. The zero value is not valid: the
// configuration names one (transport), and config refuses any other value
// with a message that says what to write.
type TransportKind string

// The values of TransportKind, as written in the configuration (transport).
const (
	// TransportIAP is SSH through an Identity-Aware Proxy TCP tunnel to a
	// Compute Engine VM that has no external address.
	TransportIAP TransportKind = "iap"
	// TransportSSH is SSH to an address deployhook reaches directly.
	TransportSSH TransportKind = "ssh"
	// TransportLocal runs the steps on deployhook's own machine (the demo,
	// tests, a deployer that lives on the target).
	TransportLocal TransportKind = "local"
)

// Valid reports whether k is one of the TransportKind constants.
func (k TransportKind) Valid() bool {
	return k == TransportIAP || k == TransportSSH || k == TransportLocal
}

// Target is where and how a repository's branch is deployed.
type Target struct {
	Name        string
	Repo        string // owner/name
	Branch      string
	Environment string // GitHub Deployment environment; defaults to Name
	Steps       []Step
	// Lock is the lock file on the target that serializes deploys, ours and manual
	// ones (flock). Empty: no remote lock.
	Lock     string
	LockWait time.Duration
	// Current, when set, prints the SHA the target runs now (git rev-parse HEAD as
	// the app user). Nil: the last successful deploy in the journal.
	Current *Step
	// Contains, when set, is a probe that tells whether $DEPLOYHOOK_SHA is
	// contained in $DEPLOYHOOK_PREVIOUS_SHA (the same commit or an ancestor of
	// it): exit 0 contained, exit 1 not contained, anything else unknown. The
	// default sequence sets it and checks the branch in its fetch step. Nil (custom
	// steps): the executor asks Options.Commits instead, and also checks there
	// that the SHA is on Branch before any step runs.
	Contains *Step
	// Changed, when set, prints the files changed between $DEPLOYHOOK_PREVIOUS_SHA
	// and $DEPLOYHOOK_SHA, one per line. Nil: the change is unknown and every
	// when_changed step runs.
	Changed *Step
	// NotApplied lists path globs the deploy does not apply (infra/**, dagster.yaml):
	// when the change touches one, the job's description says so.
	NotApplied []string
	// Rollback enables the automatic rollback after a failed checkpointed step.
	Rollback bool
	// Dir is the default working directory of steps (app_dir).
	Dir string
	// Env is added to every step's environment; a step's own Env wins.
	Env map[string]string
	// Reconcile, when > 0 and Options.Heads is set, is how often the branch head
	// on GitHub is compared with what was deployed, so a push whose webhook was
	// lost is deployed anyway. DeployOn and Workflows apply the trigger rules:
	// for DeployOnWorkflowRun, only a head on which one of Workflows succeeded.
	// New refuses a target that reconciles without a valid DeployOn.
	Reconcile time.Duration
	DeployOn  DeployOn
	Workflows []string
	// Notify says which final states of the target's jobs are announced, and
	// on which channels (see NoticeRule). The zero value announces nothing.
	Notify NoticeRule
	// Watch, when set, keeps checking the target after a successful deploy
	// and rolls it back when the application degrades (see Watch). New
	// refuses a Watch without Rollback.
	Watch *Watch
	// Rollout, when set, makes the target a fleet of VMs: the Transport given
	// to New must implement Fleet, which resolves the VMs at the start of
	// each job, and the job deploys them as Rollout says (see fleet.go).
	// Nil: one VM, opened with Transport.Open.
	Rollout *Rollout
}

// Rollout says how a fleet target's job moves its VMs: the first Canary VMs
// together, then the others Batch at a time, the VMs of a stage in parallel,
// each with its own session (and remote lock). When a VM fails, no further VM
// starts (unless KeepGoing), the VMs of the running stage finish, and every
// VM the job moved is rolled back with the target's rollback steps, as for
// one VM. The zero value deploys every VM at once and halts on a failure.
type Rollout struct {
	// Canary is how many VMs deploy first, before any other starts; 0: none.
	Canary int
	// Batch is how many VMs deploy at once after the canaries; BatchPercent,
	// when > 0, is that percentage of the fleet instead (rounded up, at
	// least one). Both 0: all the others at once.
	Batch        int
	BatchPercent int
	// KeepGoing (halt_on_failure: false) goes on with the rollout after a VM
	// failed: only the VMs that failed past the checkpoint are rolled back,
	// the others keep the new commit.
	KeepGoing bool
}

// Member is one VM of a fleet target, as Fleet resolves it.
type Member struct {
	// Name is the VM's public name: its configured name or its instance
	// name, never an address. It leads its step records ("vm-2: checkout")
	// and appears in status descriptions on GitHub.
	Name string
	// Transport opens sessions on this VM alone; Open's target argument is
	// the fleet target's name.
	Transport Transport
}

// Fleet resolves the VMs of fleet targets (Target.Rollout set). The
// Transport given to New implements it when any target is a fleet.
type Fleet interface {
	// Members returns target's VMs as they are now, in the order the rollout
	// takes them: the first one also answers the target's probes (Current,
	// Contains). Names are unique. An empty fleet is an error wrapping
	// ErrNoMembers, whose text says what was looked up.
	Members(ctx context.Context, target string) ([]Member, error)
}

// ErrNoMembers says a fleet target resolved to no VM (an empty group, a
// label that no running instance carries).
var ErrNoMembers = errors.New("the fleet has no VMs")

// Command is what a Transport runs: a step with its environment resolved.
type Command struct {
	Name    string
	Run     string
	User    string
	Sudo    bool
	Dir     string
	Env     map[string]string
	Timeout time.Duration
}

// Transport opens sessions on targets. Implementations: executor/remote (local
// shell, SSH over TCP or an IAP tunnel).
type Transport interface {
	// Open connects to the target and, when lock is not empty, takes the deploy lock
	// (flock on the target), waiting at most lockWait, and then waits until no
	// process of an earlier session's steps is left. The lock is released by
	// Session.Close, and also when the connection dies, so a crashed deployer never
	// leaves it held, but only once no process of the session's steps is left:
	// at most one deploy's processes live on a target at any moment (invariant 3).
	// ErrLocked says the wait ran out.
	Open(ctx context.Context, target string, lock string, lockWait time.Duration) (Session, error)
}

// Session runs commands on one target over one connection.
type Session interface {
	// Run runs cmd, streaming its combined output to out, and returns its exit code.
	// A command still running after cmd.Timeout, or when ctx ends, is killed with its
	// whole process tree on the target, and Run returns ErrTimeout (or ctx.Err()) with
	// exit code -1. A nil error with a non-zero code is a command that failed; an
	// error other than those is a transport failure (the session is then unusable).
	Run(ctx context.Context, cmd Command, out io.Writer) (exitCode int, err error)
	// Close releases the lock and the connection. It is safe to call twice.
	Close() error
}

// Errors that Transports return and the executor branches on.
var (
	ErrTimeout = errors.New("timed out")
	ErrLocked  = errors.New("deploy lock held by another deploy")
)

// Report is one state change of a job as GitHub should see it. It is stored in
// the outbox as JSON: the tags are part of the journal's format.
type Report struct {
	Job         string `json:"job"`
	Target      string `json:"target"`
	Environment string `json:"environment"` // Deployment environment
	Repo        string `json:"repo"`        // owner/name
	SHA         string `json:"sha"`
	State       State  `json:"state"`       // queued/running map to pending; superseded to error (status) and inactive (Deployment); skipped to success and inactive
	Description string `json:"description"` // public text, at most 140 characters
	URL         string `json:"url"`         // the job's page, JobURL (target_url, log_url); empty without a public URL
	Deployment  int64  `json:"deployment"`  // the job's GitHub Deployment id, 0 if none was created yet
	// Notify names the channel the report is owed to: "" is GitHub (a
	// Reporter), any other value a notice for that Notifier (Options.Notifiers).
	// Outbox rows written before notices existed have no such field: they
	// decode as "", and go to GitHub as before.
	Notify string `json:"notify,omitempty"`
	// Event and Actor are set on notices only: which event the notice announces,
	// and who or what asked for the job (Trigger.Actor).
	Event Event  `json:"event,omitempty"`
	Actor string `json:"actor,omitempty"`
}

// JobsPath is where the job pages live under deployhook's public URL: a job's
// page is JobsPath/ID (JobPath). It is the one owner of that layout: the
// server serves the pages at JobPath and links to them with it, and every
// Report carries JobURL, so the link GitHub shows is a page the server serves.
const JobsPath = "/jobs"

// JobPath returns the path of job id's page, JobsPath/ID. Job ids are
// URL-safe (base-36 time, a dash and hex), so the path needs no escaping.
func JobPath(id string) string { return JobsPath + "/" + id }

// JobURL returns the absolute address of job id's page under base,
// deployhook's public URL (trailing slashes ignored): base + JobPath(id). It
// returns "" when base is empty (no public URL is configured): a commit
// status's target_url must be absolute, so the report then carries no link.
func JobURL(base, id string) string {
	base = strings.TrimRight(base, "/")
	if base == "" {
		return ""
	}
	return base + JobPath(id)
}

// Reporter publishes reports to GitHub. Implementation: executor/ghstatus.
type Reporter interface {
	// Report publishes r (commit status and, if enabled, Deployment status) and
	// returns the job's Deployment id (r.Deployment, or the one it created; 0 when
	// Deployments are off), also together with an error when the Deployment was
	// created before a later request failed: the executor stores it and passes it
	// back in r.Deployment. An error wrapping ErrPermanent will never succeed on a
	// retry (validation error, no permission); any other error is retried later.
	Report(ctx context.Context, r Report) (deployment int64, err error)
}

// ErrPermanent marks a report that GitHub refused for good.
var ErrPermanent = errors.New("permanent report failure")

// OwedReport is an outbox entry: a report owed to GitHub, kept in the journal
// until sent.
type OwedReport struct {
	ID      int64
	Report  Report
	Created time.Time
	Tries   int
}

// Store is the journal. Implementation: executor/store (SQLite). All methods are
// safe for concurrent use. executor/store/storetest is the conformance suite
// that every implementation, and every fake of one, must pass.
type Store interface {
	// CreateJob records a new job, with its steps if it has any, its owner
	// (j.Owner) and body hash (j.Trigger.BodyHash), and owes the reports in owe,
	// in one transaction, and returns the job's id. It records nothing and returns an existing job's id
	// and ErrDuplicate if j.Trigger.Delivery is not empty and a job was already
	// recorded for that delivery and target (one push may deploy several
	// targets), or if j.Trigger.BodyHash is not empty and a job of the same
	// target was recorded with the same body hash (a signed body replayed under
	// a new delivery GUID).
	CreateJob(ctx context.Context, j Job, owe ...Report) (existing string, err error)
	// UpdateJob stores j's state, description, previous SHA, owner and times
	// (not its steps, not its deployment) and owes the reports in owe, in one
	// transaction: a job never reaches a state whose report is not owed.
	// A final job may change state too: the post-deploy watch (Watch) turns
	// a success into a failure or an error once, its steps and Deployment
	// kept; LastSuccess and Deployed then no longer return it.
	// ErrNotFound if there is no such job.
	UpdateJob(ctx context.Context, j Job, owe ...Report) error
	// SetDeployment records the GitHub Deployment id of a job. ErrNotFound if
	// there is no such job.
	SetDeployment(ctx context.Context, job string, deployment int64) error
	// Job returns the job with its steps, or ErrNotFound.
	Job(ctx context.Context, id string) (Job, error)
	// Jobs lists jobs, newest first (of two created at the same time, the one
	// recorded last first), of one target (all if target is empty), in the
	// given states (all if none), at most limit (all if limit <= 0); without
	// steps.
	Jobs(ctx context.Context, target string, limit int, states ...State) ([]Job, error)
	// LastSuccess returns the successful job of target that finished last, or
	// ErrNotFound: what the target runs, as far as the journal knows. Jobs of
	// one target may finish in another order than they were created (a
	// command-line deploy beside the service); of jobs that finished at the same
	// time, the newest created (then recorded) wins. Only StateSuccess counts
	// (not StateSkipped).
	LastSuccess(ctx context.Context, target string) (Job, error)
	// Deployed returns the newest successful job of target whose SHA is sha, or
	// ErrNotFound. Only StateSuccess counts.
	Deployed(ctx context.Context, target, sha string) (Job, error)
	// AddStep records a step run (insert or replace by job+seq). ErrNotFound if
	// there is no such job.
	AddStep(ctx context.Context, s StepRun) error

	// Beat records owner o and its lease (insert or replace by o.ID).
	Beat(ctx context.Context, o Owner) error
	// Orphans returns the queued and running jobs whose owner's lease ended
	// before now: owner empty, no row for it, or its Until before now. Newest
	// first, without steps.
	Orphans(ctx context.Context, now time.Time) ([]Job, error)
	// Adopt makes to the owner of job id if its owner is still from and the job
	// is not final (compare-and-set); ErrNotFound otherwise, so two processes
	// never both end or requeue one orphan. When to is a lane (LaneOwner)
	// that has an unfinished job of the orphan's SHA, it changes nothing and
	// returns ErrDuplicate: a lane's SHA is one job.
	Adopt(ctx context.Context, id, from, to string) error
	// AdoptSuccess makes to the owner of job id if its owner is still from
	// and it is a success (compare-and-set); ErrNotFound otherwise. Of
	// processes that resume the watch a stopped deployhook left on the job,
	// exactly one takes it.
	AdoptSuccess(ctx context.Context, id, from, to string) error
	// Owner returns owner id as Beat last recorded it (its lease lasts
	// until Until; one that ends before now has expired, as for Orphans),
	// or ErrNotFound when it has no row: it never beat, or Prune removed
	// it. The post-deploy watch's record is ended by another process only
	// once its owner's lease has expired.
	Owner(ctx context.Context, id string) (Owner, error)
	// Prune deletes final jobs created before before, and final jobs beyond the
	// newest keep of each target (keep <= 0: no count limit), with their steps
	// and delivery rows, but never a target's newest successful job; and owner
	// rows whose lease ended before before. It returns how many jobs it deleted.
	// Owed reports are never deleted.
	Prune(ctx context.Context, before time.Time, keep int) (int, error)
	// Check reports whether the journal accepts writes (a small write
	// transaction).
	Check(ctx context.Context) error

	// Owe adds a report to the outbox.
	Owe(ctx context.Context, r Report) error
	// Owed lists unsent reports, oldest first, at most limit (all if limit <= 0).
	Owed(ctx context.Context, limit int) ([]OwedReport, error)
	// Settle removes a sent (or permanently refused) report from the outbox;
	// ErrNotFound if it is not there (another process settled it).
	Settle(ctx context.Context, id int64) error
	// Retry counts a failed attempt of a report; ErrNotFound if it is not there.
	Retry(ctx context.Context, id int64) error

	// Close closes the journal.
	Close() error
}

// Store errors.
var (
	ErrNotFound  = errors.New("not found")
	ErrDuplicate = errors.New("duplicate delivery")
)

// Enqueued is the answer to Queue.Enqueue.
type Enqueued struct {
	Job       Job    // the new job, or the existing one for a duplicate
	Duplicate bool   // nothing was added: the delivery or the SHA was already known
	Reason    string // for a duplicate: why ("delivery seen before", "already running", "already deployed")
	// Ignored, when not empty, says why an automatic trigger is not deployed and
	// nothing was recorded: its body was seen before under another delivery GUID,
	// or the target deployed that SHA before. The server answers 200 with it.
	Ignored string
}

// Owner is a deployhook process that owns jobs: the service, or a command-line
// deploy. Its lease says until when it is alive; it renews the lease while it
// runs, and any other process may end the jobs of an owner whose lease expired.
type Owner struct {
	ID    string    `json:"id"`    // random, new for every process
	Kind  string    `json:"kind"`  // "serve" or "cli"
	Host  string    `json:"host"`  // os.Hostname, for people reading the journal
	PID   int       `json:"pid"`   // for people reading the journal
	Until time.Time `json:"until"` // the end of the lease
}

// Commits answers questions about a repository's commit graph on GitHub
// (implementation: executor/ghstatus, through the compare API). The executor
// uses it for targets whose steps cannot answer them on the target itself.
type Commits interface {
	// Contains reports whether commit sha is reachable from ref (a branch name
	// or a full SHA): the same commit, or one of its ancestors. An error wrapping
	// ErrNotFound says GitHub knows no such commit or ref.
	Contains(ctx context.Context, repo, ref, sha string) (bool, error)
}

// Queue errors.
var (
	ErrUnknownTarget = errors.New("unknown target")
	ErrClosed        = errors.New("deployhook is shutting down")
	// ErrJournal says the journal could not record a new job (disk full,
	// read-only file system): nothing was queued; the delivery should be answered
	// 503 so that it can be redelivered later.
	ErrJournal = errors.New("journal not writable")
)

// Migrator is implemented by a journal whose schema is brought up to date
// after it is opened (pgstore.Connect, for a database that may not answer
// yet when deployhook starts). Run migrates it first in its start-up
// recovery, which it retries until the journal answers; the other methods of
// the Store must not be relied on before Migrate succeeded once. Migrate is
// safe for concurrent use, and returns nil at once after it succeeded.
type Migrator interface {
	Migrate(ctx context.Context) error
}

// QueueWatcher is implemented by a journal that tells the processes sharing
// it when a job is queued (pgstore, with PostgreSQL's LISTEN and NOTIFY). A
// replica uses it to start a job that another replica recorded as soon as it
// is recorded, rather than at its next look at the journal
// (Options.LanePoll), which stays as the fallback.
type QueueWatcher interface {
	// WatchQueue calls queued with the target of every job that any process
	// records queued in the journal (after its transaction commits), until
	// ctx ends; then it returns. queued("") says news may have been missed
	// (it started listening, or listens again after losing its connection):
	// look at every target. Notifications are a hint: some may be lost, and
	// none is sent for a job recorded by a process that does not notify.
	// queued must not block.
	WatchQueue(ctx context.Context, queued func(target string))
}

// Lanes is what deployhook processes that share one journal as replicas
// (Options.Replicas) need of it besides Store: leases on lanes with fencing
// tokens, job writes fenced by them, and an outbox that several processes
// drain at once. Implementations: executor/store (SQLite) and
// executor/store/pgstore (PostgreSQL); executor/store/storetest.RunLanes is
// its conformance suite. All methods are safe for concurrent use, from any
// number of processes sharing the journal.
//
// A lane is named: a target's lane has the target's name; other leases (the
// reconciler's, ReconcilerLane) have names no target can have. Its lease has
// one owner at a time, and a fencing token that grows by at least one every
// time the lane changes hands, never on renewal. A job write fenced by a
// token succeeds only while the lane of the job's target still has that
// token, checked in the same transaction as the write: a process that lost
// its lease can never write a job's final state afterwards, even when its
// own clock or its connection lags.
//
// A store that implements Lanes also refuses, in CreateJob, a second
// unfinished (queued or running) job of one target and SHA whose owner is
// the target's lane (LaneOwner): it returns the unfinished job's id and
// ErrDuplicate. A unique constraint decides, so of replicas recording one
// SHA at once exactly one job is recorded.
type Lanes interface {
	// ClaimLane takes lane for owner until until, if the lane is free, was
	// released, or its lease ended before now; or renews it when owner holds
	// it (its lease live or not, as long as no one else took it). It returns
	// the lane's fencing token: the same as before on a renewal, a greater
	// one when the lane changes hands. ErrLaneHeld when another owner's lease
	// is live (ends at or after now). owner must not be empty.
	ClaimLane(ctx context.Context, lane, owner string, now, until time.Time) (token int64, err error)
	// ReleaseLane gives up owner's lease on lane, so that any process may take
	// it at once (with a greater token). ErrNotFound if owner does not hold
	// the lane.
	ReleaseLane(ctx context.Context, lane, owner string) error
	// UpdateJobFenced is UpdateJob, done only if the lane of j's target has
	// token token when it commits; otherwise it changes and owes nothing and
	// returns ErrFenced. ErrNotFound if there is no such job.
	UpdateJobFenced(ctx context.Context, token int64, j Job, owe ...Report) error
	// AddStepFenced is AddStep, done only if the lane of the job's target has
	// token token when it commits; otherwise it records nothing and returns
	// ErrFenced. ErrNotFound if there is no such job.
	AddStepFenced(ctx context.Context, token int64, s StepRun) error
	// ClaimOwed claims for owner, until until, at most limit (> 0) owed
	// reports, oldest first, and returns them: reports no other owner holds a
	// live claim on (until at or after the time of the call), owner's own
	// claims included. A report is claimed only with every older report of
	// the same job (a job's reports are sent in order): so of processes
	// draining at once, each report goes to one of them while its claim
	// lasts, and a job's reports are never in two processes' hands. Settle
	// and Retry work on claimed reports as on others.
	ClaimOwed(ctx context.Context, owner string, limit int, until time.Time) ([]OwedReport, error)
}

// Lane errors.
var (
	// ErrLaneHeld says another owner holds a live lease on the lane.
	ErrLaneHeld = errors.New("lane held by another deployhook")
	// ErrFenced says a fenced write was refused: the lane changed hands
	// since its token was issued.
	ErrFenced = errors.New("lane lost: write fenced off")
)

// LaneOwner is the owner of the jobs of target's lane when deployhook runs
// as replicas: the jobs belong to whichever process holds the lane's lease,
// not to the process that recorded them. The holder renews an Owner of this
// ID with the lease, so Orphans sees them alive while a holder lives.
func LaneOwner(target string) string { return "lane:" + target }

// ReconcilerLane is the lease whose holder runs the reconciler when
// deployhook runs as replicas. No target can have this name (target names
// are lower-case letters, digits, - and _).
const ReconcilerLane = ":reconciler"
