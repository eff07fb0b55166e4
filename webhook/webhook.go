// Package webhook verifies and parses GitHub webhook deliveries. It is pure: no I/O,
// no state, no knowledge of deploys or targets, and every function is safe for
// concurrent use.
//
// A caller handling one delivery (an HTTP POST from GitHub) reads the body raw,
// calls Verify, and only if Verify returns nil calls Parse. Neither function
// matches the delivery against configured targets (repository, branch, workflow
// path, trigger kind) nor rejects a delivery GUID seen before: both are the
// caller's job. GitHub's signature carries no timestamp, and a redelivery reuses
// the GUID, so deduplication on X-GitHub-Delivery is the defence against replay.
//
// # Verify
//
// Verify(body, header, secrets...) checks the HMAC-SHA256 signature. It expects:
//
//   - at least one secret, none of them empty; several may be given while a secret
//     is being rotated, and any one may match. Otherwise ErrNoSecret: a
//     configuration error, never a reason to skip verification;
//   - header, the value of the X-Hub-Signature-256 header, non-empty; otherwise
//     ErrNoSignature. The legacy SHA-1 X-Hub-Signature header is never consulted;
//   - header of the form "sha256=" followed by exactly 64 lower-case hex digits,
//     as GitHub sends it; otherwise ErrMalformedSignature;
//   - those digits equal to the HMAC-SHA256 of body under one of the secrets,
//     compared in constant time; otherwise ErrBadSignature;
//   - body, the exact bytes received, before any decoding or re-encoding.
//
// No error carries the expected MAC.
//
// # Parse
//
// Parse(name, delivery, body) turns a verified delivery into an Event. It expects:
//
//   - name, the X-GitHub-Event header, non-empty; otherwise a plain error naming
//     the header;
//   - delivery, the X-GitHub-Delivery header, non-empty; otherwise a plain error
//     naming the header;
//   - for push, workflow_run, workflow_dispatch and ping, a body that is exactly
//     one JSON object, valid throughout (not only in the parts Parse reads);
//     otherwise a plain error, and the caller answers 400. The body of any other
//     event is not read: that event is ignored whatever it holds;
//   - the members the event needs, of the right JSON types, as listed on Parse;
//     a missing, mistyped or malformed one is a plain error, never a guessed Event.
//
// A delivery that is well formed but must not deploy (a tag push, a branch
// deletion, a failed, foreign or not push-triggered workflow run, an event that is
// not a trigger) gives an *Ignored error whose Reason is short public text for
// GitHub's delivery log; the caller answers 2xx with it.
//
// Parse reads only the members it needs. It checks the whole body against the JSON
// grammar in one pass and skips every other value without decoding it, so a push
// with 2,000 commits costs about one pass over its bytes. Member names match
// exactly, unlike encoding/json's case-insensitive struct matching; when a name
// occurs twice the last one wins, as with encoding/json; invalid UTF-8 in a string
// becomes U+FFFD, as with encoding/json.
//
// Besides the standard library, the package imports only internal/gitsha, a
// leaf package of the standard library that holds the one rule for a commit
// SHA deployhook checks everywhere, so that a SHA this package accepts is one
// the rest of deployhook accepts too.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/deployhook/deployhook/internal/gitsha"
)

// Event is what deployhook needs to know of a delivery that may deploy.
type Event struct {
	Name       string            // X-GitHub-Event: push, workflow_run, workflow_dispatch, ping
	Delivery   string            // X-GitHub-Delivery GUID
	Repo       string            // repository.full_name
	RepoID     int64             // repository.id: GitHub's numeric id, stable across renames; 0 when absent
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
// public text for GitHub's delivery log ("tag push: refs/tags/v1", "branch
// deleted", ...): short, free of secrets, and with any part taken from the request
// cut to 100 bytes. Test for it with errors.As.
type Ignored struct {
	Reason string
}

// Error returns "ignored: " and the reason.
func (e *Ignored) Error() string { return "ignored: " + e.Reason }

// Signature errors, returned by Verify as they are (compare with == or errors.Is).
// None carries the expected MAC. The caller answers all three with 401 and no
// detail.
var (
	ErrNoSignature        = errors.New("missing X-Hub-Signature-256 header")   // header empty
	ErrMalformedSignature = errors.New("malformed X-Hub-Signature-256 header") // not "sha256=" and 64 lower-case hex digits
	ErrBadSignature       = errors.New("signature does not match")             // no secret gives this MAC
)

// ErrNoSecret is Verify's error when it is given no secret, or an empty one. It is a
// configuration error (answer 500 and fix the configuration), never a reason to skip
// verification.
var ErrNoSecret = errors.New("no webhook secret configured")

// SignaturePrefix starts every X-Hub-Signature-256 value.
const SignaturePrefix = "sha256="

// Sign returns the X-Hub-Signature-256 value GitHub sends for body under secret:
// "sha256=" and the lower-case hex HMAC-SHA256 of body. It is for senders of test
// deliveries; Verify is the only check a receiver needs.
func Sign(body, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return SignaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify checks that header, the value of the X-Hub-Signature-256 header, is the
// HMAC-SHA256 of body under one of secrets. It returns nil on a match, ErrNoSecret
// when secrets is empty or holds an empty secret, ErrNoSignature when header is
// empty, ErrMalformedSignature when header is not "sha256=" and 64 lower-case hex
// digits (a SHA-1 "sha1=..." value included), and ErrBadSignature when no secret
// matches. Each comparison takes constant time; the work grows with the number of
// secrets tried. The errors never hold the expected MAC.
func Verify(body []byte, header string, secrets ...[]byte) error {
	if len(secrets) == 0 {
		return ErrNoSecret
	}
	for _, s := range secrets {
		if len(s) == 0 {
			return ErrNoSecret
		}
	}
	if header == "" {
		return ErrNoSignature
	}
	var want, got [sha256.Size]byte
	if !decodeSignature(&want, header) {
		return ErrMalformedSignature
	}
	for _, s := range secrets {
		m := hmac.New(sha256.New, s)
		m.Write(body)
		if hmac.Equal(m.Sum(got[:0]), want[:]) {
			return nil
		}
	}
	return ErrBadSignature
}

// decodeSignature decodes header, "sha256=" and 64 lower-case hex digits, into mac.
func decodeSignature(mac *[sha256.Size]byte, header string) bool {
	h, ok := strings.CutPrefix(header, SignaturePrefix)
	if !ok || len(h) != 2*sha256.Size {
		return false
	}
	for i := range mac {
		hi, ok1 := unhex(h[2*i])
		lo, ok2 := unhex(h[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		mac[i] = hi<<4 | lo
	}
	return true
}

// unhex decodes one lower-case hex digit.
func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Parse turns a delivery whose signature the caller has verified into an Event.
// name is the X-GitHub-Event header, delivery the X-GitHub-Delivery header, body
// the raw request body. The result is one of:
//
//   - an Event and a nil error: a ping (Event.Name "ping": answer "pong"), or a
//     push, workflow_run or workflow_dispatch that may deploy if a target matches;
//   - a nil-valued Event and an *Ignored error: a well-formed delivery that must
//     not deploy; Reason says why, in public words;
//   - a plain error: a missing header, a body that is not a JSON object, or a
//     required field that is missing, mistyped or malformed (answer 400).
//
// The events, the fields read and the rules:
//
//   - push: ref must be refs/heads/BRANCH (a tag or other ref is ignored); deleted
//     true or after all zeros is ignored ("branch deleted"); after must be a
//     40-digit lower-case hex SHA; repository.full_name must be set. Actor is
//     pusher.name, else sender.login.
//   - workflow_run: action must be "completed", workflow_run.conclusion "success"
//     (null and unknown conclusions are not), workflow_run.event "push", and
//     workflow_run.head_repository.full_name equal to repository.full_name (a run
//     from a fork is ignored); each failed rule is ignored, checked in that order.
//     Then head_branch must be set, head_sha be a 40-digit lower-case hex SHA and
//     the workflow path (workflow.path, else workflow_run.path) be set. RunID,
//     RunNumber and RunAttempt come from workflow_run's id, run_number and
//     run_attempt; Actor is triggering_actor.login, else actor.login, else
//     sender.login.
//   - workflow_dispatch: ref must be refs/heads/BRANCH (else ignored), workflow
//     (the workflow file path) and repository.full_name must be set. Inputs holds
//     inputs' members as strings: a JSON string as its text, null as "", any other
//     value as its JSON text; null or absent inputs give an empty map. SHA is
//     empty: the caller resolves the branch. Actor is sender.login.
//   - for push, workflow_run and workflow_dispatch, RepoID is repository.id, the
//     repository's numeric id (it survives a rename or a transfer, a name does not):
//     0 when absent or null, a plain error when it is not a 64-bit integer.
//   - ping: only the body's syntax is checked.
//   - any other event: ignored, "event NAME is not a deploy trigger"; the body is
//     not read.
//
// Every Event has Name and Delivery set from the headers.
func Parse(name, delivery string, body []byte) (Event, error) {
	return parse(name, delivery, body, members)
}

// membersFunc is the signature of members. Parse takes it as a parameter so that
// the tests can run the same rules over encoding/json's decoding and compare.
type membersFunc func(data []byte, keys string) ([maxKeys][]byte, error)

func parse(name, delivery string, body []byte, obj membersFunc) (Event, error) {
	if name == "" {
		return Event{}, errors.New("parse delivery: missing X-GitHub-Event header")
	}
	if delivery == "" {
		return Event{}, errors.New("parse delivery: missing X-GitHub-Delivery header")
	}
	d := decoder{members: obj}
	var ev Event
	var err error
	switch name {
	case "ping":
		_, err = d.members(body, "")
		ev = Event{Name: name}
	case "push":
		ev, err = d.push(body)
	case "workflow_run":
		ev, err = d.workflowRun(body)
	case "workflow_dispatch":
		ev, err = d.workflowDispatch(body)
	default:
		return Event{}, &Ignored{Reason: "event " + clip(name) + " is not a deploy trigger"}
	}
	var ign *Ignored
	switch {
	case errors.As(err, &ign):
		return Event{}, err
	case err != nil:
		return Event{}, fmt.Errorf("parse %s delivery %s: %w", clip(name), clip(delivery), err)
	}
	ev.Name, ev.Delivery = name, delivery
	return ev, nil
}

// decoder extracts typed fields from raw JSON values. The first error sticks: later
// calls do nothing and return zero values, so extraction code reads straight
// through and checks d.err once.
type decoder struct {
	members membersFunc
	err     error
}

// object returns the raw members of the object raw named by keys. A nil or null raw
// is an object without members, as encoding/json treats it.
func (d *decoder) object(raw []byte, field, keys string) [maxKeys][]byte {
	if d.err != nil || raw == nil || string(raw) == "null" {
		return [maxKeys][]byte{}
	}
	v, err := d.members(raw, keys)
	if err != nil {
		d.err = fmt.Errorf("%s: %w", field, err)
	}
	return v
}

// top returns the members of the body, which must be an object (null is not).
func (d *decoder) top(body []byte, keys string) [maxKeys][]byte {
	v, err := d.members(body, keys)
	if err != nil {
		d.err = err
	}
	return v
}

func (d *decoder) str(raw []byte, field string) string {
	if d.err != nil {
		return ""
	}
	s, err := decodeString(raw)
	if err != nil {
		d.err = fmt.Errorf("%s: %w", field, err)
	}
	return s
}

func (d *decoder) boolean(raw []byte, field string) bool {
	if d.err != nil {
		return false
	}
	b, err := decodeBool(raw)
	if err != nil {
		d.err = fmt.Errorf("%s: %w", field, err)
	}
	return b
}

func (d *decoder) integer(raw []byte, field string, bits int) int64 {
	if d.err != nil {
		return 0
	}
	n, err := decodeInt(raw, bits)
	if err != nil {
		d.err = fmt.Errorf("%s: %w", field, err)
	}
	return n
}

// inputs decodes workflow_dispatch's inputs object into strings.
func (d *decoder) inputs(raw []byte) map[string]string {
	in := map[string]string{}
	if d.err != nil || raw == nil || string(raw) == "null" {
		return in
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		d.err = fmt.Errorf("inputs: %w", err)
		return in
	}
	for k, v := range m {
		if len(v) > 0 && v[0] == '"' {
			in[k] = d.str(v, "inputs."+k)
		} else if string(v) != "null" {
			in[k] = string(v)
		} else {
			in[k] = ""
		}
	}
	return in
}

// repository returns the full_name and id members of the repository object raw.
// An absent or null id is 0; one that is not a 64-bit integer is an error.
func (d *decoder) repository(raw []byte) (string, int64) {
	r := d.object(raw, "repository", "full_name id")
	return d.str(r[0], "repository.full_name"), d.integer(r[1], "repository.id", 64)
}

// login returns the login member of the user object raw.
func (d *decoder) login(raw []byte, field string) string {
	return d.str(d.object(raw, field, "login")[0], field+".login")
}

// pushFields are the members of a push body that Parse reads.
const pushFields = "ref after deleted repository pusher sender"

func (d *decoder) push(body []byte) (Event, error) {
	v := d.top(body, pushFields)
	ref := d.str(v[0], "ref")
	after := d.str(v[1], "after")
	deleted := d.boolean(v[2], "deleted")
	repo, repoID := d.repository(v[3])
	pusher := d.str(d.object(v[4], "pusher", "name")[0], "pusher.name")
	sender := d.login(v[5], "sender")
	if d.err != nil {
		return Event{}, d.err
	}
	if ref == "" {
		return Event{}, errors.New("missing ref")
	}
	if repo == "" {
		return Event{}, errors.New("missing repository.full_name")
	}
	branch, ok := strings.CutPrefix(ref, "refs/heads/")
	if !ok {
		if strings.HasPrefix(ref, "refs/tags/") {
			if deleted {
				return Event{}, &Ignored{Reason: "tag deleted: " + clip(ref)}
			}
			return Event{}, &Ignored{Reason: "tag push: " + clip(ref)}
		}
		return Event{}, &Ignored{Reason: "not a branch: " + clip(ref)}
	}
	if branch == "" {
		return Event{}, fmt.Errorf("ref %q names no branch", clip(ref))
	}
	if deleted || after == zeroSHA {
		return Event{}, &Ignored{Reason: "branch deleted"}
	}
	if !gitsha.Valid(after) {
		return Event{}, fmt.Errorf("after %q is not a 40-digit hex commit SHA", clip(after))
	}
	actor := pusher
	if actor == "" {
		actor = sender
	}
	return Event{Repo: repo, RepoID: repoID, Branch: branch, SHA: after, Actor: actor}, nil
}

// Members read from a workflow_run body, its workflow_run object and its workflow.
const (
	runFields    = "action repository workflow_run workflow sender"
	runRunFields = "conclusion event head_repository head_branch head_sha path " +
		"id run_number run_attempt triggering_actor actor"
)

func (d *decoder) workflowRun(body []byte) (Event, error) {
	v := d.top(body, runFields)
	action := d.str(v[0], "action")
	repo, repoID := d.repository(v[1])
	r := d.object(v[2], "workflow_run", runRunFields)
	conclusion := d.str(r[0], "workflow_run.conclusion")
	trigger := d.str(r[1], "workflow_run.event")
	headRepo := d.str(d.object(r[2], "workflow_run.head_repository", "full_name")[0], "workflow_run.head_repository.full_name")
	branch := d.str(r[3], "workflow_run.head_branch")
	sha := d.str(r[4], "workflow_run.head_sha")
	runPath := d.str(r[5], "workflow_run.path")
	id := d.integer(r[6], "workflow_run.id", 64)
	number := d.integer(r[7], "workflow_run.run_number", strconv.IntSize)
	attempt := d.integer(r[8], "workflow_run.run_attempt", strconv.IntSize)
	actor := d.login(r[9], "workflow_run.triggering_actor")
	if actor == "" {
		actor = d.login(r[10], "workflow_run.actor")
	}
	if actor == "" {
		actor = d.login(v[4], "sender")
	}
	path := d.str(d.object(v[3], "workflow", "path")[0], "workflow.path")
	if d.err != nil {
		return Event{}, d.err
	}
	switch {
	case repo == "":
		return Event{}, errors.New("missing repository.full_name")
	case action == "":
		return Event{}, errors.New("missing action")
	case action != "completed":
		return Event{}, &Ignored{Reason: "workflow run " + clip(action)}
	case v[2] == nil || string(v[2]) == "null":
		return Event{}, errors.New("missing workflow_run")
	case conclusion == "":
		return Event{}, &Ignored{Reason: "workflow run completed without a conclusion"}
	case conclusion != "success":
		return Event{}, &Ignored{Reason: "workflow run concluded " + clip(conclusion) + ", not success"}
	case trigger == "":
		return Event{}, errors.New("missing workflow_run.event")
	case trigger != "push":
		return Event{}, &Ignored{Reason: "workflow run triggered by " + clip(trigger) + ", not push"}
	case headRepo != repo:
		return Event{}, &Ignored{Reason: "workflow run from a fork"}
	case branch == "":
		return Event{}, errors.New("missing workflow_run.head_branch")
	case !gitsha.Valid(sha):
		return Event{}, fmt.Errorf("workflow_run.head_sha %q is not a 40-digit hex commit SHA", clip(sha))
	}
	if path == "" {
		path = runPath
	}
	if path == "" {
		return Event{}, errors.New("missing workflow.path and workflow_run.path")
	}
	return Event{
		Repo: repo, RepoID: repoID, Branch: branch, SHA: sha, Actor: actor, Workflow: path,
		RunID: id, RunNumber: int(number), RunAttempt: int(attempt),
	}, nil
}

// dispatchFields are the members of a workflow_dispatch body that Parse reads.
const dispatchFields = "ref workflow inputs repository sender"

func (d *decoder) workflowDispatch(body []byte) (Event, error) {
	v := d.top(body, dispatchFields)
	ref := d.str(v[0], "ref")
	workflow := d.str(v[1], "workflow")
	inputs := d.inputs(v[2])
	repo, repoID := d.repository(v[3])
	sender := d.login(v[4], "sender")
	if d.err != nil {
		return Event{}, d.err
	}
	switch {
	case repo == "":
		return Event{}, errors.New("missing repository.full_name")
	case ref == "":
		return Event{}, errors.New("missing ref")
	}
	branch, ok := strings.CutPrefix(ref, "refs/heads/")
	switch {
	case !ok:
		return Event{}, &Ignored{Reason: "workflow dispatch on " + clip(ref) + ", not a branch"}
	case branch == "":
		return Event{}, fmt.Errorf("ref %q names no branch", clip(ref))
	case workflow == "":
		return Event{}, errors.New("missing workflow")
	}
	return Event{Repo: repo, RepoID: repoID, Branch: branch, Workflow: workflow, Inputs: inputs, Actor: sender}, nil
}

// zeroSHA is the after of a push that deletes a branch.
const zeroSHA = "0000000000000000000000000000000000000000"

// clip shortens s to at most 100 bytes for an error or a reason: the text is
// public and comes from the request.
func clip(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}
