// Package webhook verifies and parses GitHub webhook deliveries. It is pure: no I/O,
// no knowledge of deploys or targets. Verify checks the HMAC-SHA256 signature over the
// raw body; Parse turns a verified delivery into an Event, or says why it is ignored.
package webhook

import "errors"

// Event is what deployhook needs to know of a delivery that may deploy.
type Event struct {
	Name       string            // X-GitHub-Event: push, workflow_run, workflow_dispatch, ping
	Delivery   string            // X-GitHub-Delivery GUID
	Repo       string            // repository.full_name
	Branch     string            // branch name, without refs/heads/
	SHA        string            // push: after; workflow_run: head_sha; workflow_dispatch: empty
	Actor      string            // who caused it: pusher / triggering_actor / sender login
	Workflow   string            // workflow file path (.github/workflows/ci.yml) for workflow_run and workflow_dispatch
	RunID      int64             // workflow_run: the run's id
	RunNumber  int               // workflow_run: the run's number
	RunAttempt int               // workflow_run: 1 for the first attempt
	Inputs     map[string]string // workflow_dispatch: the inputs, as strings
}

// Ignored is the error Parse returns for a delivery that must not deploy. Reason is
// public text for GitHub's delivery log ("tag push", "branch deleted", ...).
type Ignored struct {
	Reason string
}

func (e *Ignored) Error() string { return "ignored: " + e.Reason }

// Signature errors. None carries the expected MAC.
var (
	ErrNoSignature        = errors.New("missing X-Hub-Signature-256 header")
	ErrMalformedSignature = errors.New("malformed X-Hub-Signature-256 header")
	ErrBadSignature       = errors.New("signature does not match")
)
