package gce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/internal/endpoint"
)

// MaxBody caps every answer read from the Compute Engine API: a longer one
// fails the call with an error wrapping safehttp.ErrBodyTooLarge instead of
// growing the heap without bound. The largest answer read is an instance
// resource, whose biggest part, its metadata, is limited to 512 KB in all;
// the hostkeys/ guest attributes are three short keys. 4 MiB leaves ample room.
const MaxBody = 4 << 20

// Options configures a Client.
type Options struct {
	// Endpoint overrides the Compute Engine API base URL
	// (https://compute.googleapis.com): an httptest server in tests, a private
	// endpoint otherwise. main reads it from DEPLOYHOOK_COMPUTE_URL. It must be an
	// absolute https URL (http only for a loopback host); request paths
	// (/compute/v1/...) are appended to it. Empty: the default endpoint.
	Endpoint string
	// ClientOptions are passed to the Google API client: the credentials
	// (main passes Application Default Credentials; tests pass
	// option.WithoutAuthentication or option.WithTokenSource). Endpoint, when
	// set, is applied after them and wins over an option.WithEndpoint here.
	// They must not hold option.WithHTTPClient: New builds the HTTP client,
	// with a cap on answers (MaxBody) and redirects kept on the API's origin.
	ClientOptions []option.ClientOption
}

// Client reads instances and their guest attributes from the Compute Engine
// API. Its methods are safe for concurrent use, except Close, which must not
// run concurrently with them. The Google client retries 503 and 504 answers
// with backoff until the call's ctx ends, so give every call a deadline.
type Client struct {
	lg *slog.Logger
	ic *compute.InstancesClient
}

// New returns a Client using the REST transport of the Compute Engine API.
// ctx is used to find credentials and should outlive the Client, since the
// Google libraries may use it to refresh tokens. New makes no request; a wrong
// endpoint or missing permission shows on the first call.
func New(ctx context.Context, lg *slog.Logger, opts Options) (*Client, error) {
	if lg == nil {
		return nil, errors.New("new compute client: nil logger")
	}
	copts, err := endpoint.Option(opts.ClientOptions, "DEPLOYHOOK_COMPUTE_URL", opts.Endpoint, "https://compute.googleapis.com")
	if err != nil {
		return nil, fmt.Errorf("new compute client: %w", err)
	}
	if copts, err = endpoint.WithLimits(ctx, copts, MaxBody); err != nil {
		return nil, fmt.Errorf("new compute client: %w", err)
	}
	ic, err := compute.NewInstancesRESTClient(ctx, copts...)
	if err != nil {
		return nil, fmt.Errorf("new compute client: %w", err)
	}
	return &Client{lg: lg, ic: ic}, nil
}

// Close releases the client's connections. It is safe to call more than once;
// calls after Close return ErrClosed.
func (c *Client) Close() error {
	if c.ic == nil {
		return nil
	}
	err := c.ic.Close()
	c.ic = nil
	if err != nil {
		return fmt.Errorf("close compute client: %w", err)
	}
	return nil
}

// Instance statuses of the Compute Engine API (Instance.status). The others
// are PROVISIONING, STAGING, STOPPING, STOPPED, SUSPENDING, SUSPENDED,
// REPAIRING and TERMINATED.
const (
	StatusRunning = "RUNNING"
)

// Instance is what deployhook needs to know about a VM.
type Instance struct {
	// ID is the numeric instance ID. It changes when a VM is deleted and
	// recreated under the same name, and so keys the host-key pins (see
	// HostKeyAlias). Never 0 in an Instance returned by Client.Instance.
	ID uint64
	// Name is the instance name.
	Name string
	// Status is the instance status as the API spells it: RUNNING, TERMINATED...
	Status string
	// NIC is the name of the first network interface (normally nic0), which the
	// IAP tunnel connects to. Empty if the instance has no interface.
	NIC string
	// InternalIP is the first interface's primary internal IPv4 address.
	InternalIP string
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("compute client closed")

// ErrNotRunning is wrapped by Instance.Running when the VM is not RUNNING.
var ErrNotRunning = errors.New("instance is not running")

// Running returns nil when the instance is RUNNING, and otherwise an error
// wrapping ErrNotRunning that names the status, so a deploy to a stopped VM
// fails at once with the reason instead of timing out on SSH.
func (i Instance) Running() error {
	if i.Status == StatusRunning {
		return nil
	}
	var hint string
	switch i.Status {
	case "TERMINATED", "STOPPED":
		hint = ": the VM is stopped; start it and deploy again"
	case "STOPPING":
		hint = ": the VM is being stopped"
	case "SUSPENDED", "SUSPENDING":
		hint = ": the VM is suspended; resume it and deploy again"
	case "PROVISIONING", "STAGING":
		hint = ": the VM is starting; deploy again when it is RUNNING"
	case "REPAIRING":
		hint = ": Compute Engine is repairing the VM; deploy again when it is RUNNING"
	case "":
		hint = ": the API gave no status"
	}
	return fmt.Errorf("instance %q (id %d) is %s, not RUNNING%s: %w", i.Name, i.ID, orNone(i.Status), hint, ErrNotRunning)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// Instance reads the instance name in project and zone (instances.get, which
// needs compute.instances.get). A 404 answer gives an error saying the
// instance was not found in that project and zone; a 403 names the missing
// permission. An answer without an ID is an error, since host keys are pinned
// by ID.
func (c *Client) Instance(ctx context.Context, project, zone, name string) (Instance, error) {
	if c.ic == nil {
		return Instance{}, fmt.Errorf("get instance: %w", ErrClosed)
	}
	if err := checkNames(project, zone, name); err != nil {
		return Instance{}, fmt.Errorf("get instance: %w", err)
	}
	in, err := c.ic.Get(ctx, &computepb.GetInstanceRequest{Project: project, Zone: zone, Instance: name})
	if err != nil {
		return Instance{}, fmt.Errorf("get instance: %w", explain(err, "compute.instances.get", project, zone, name))
	}
	inst := Instance{
		ID:     in.GetId(),
		Name:   in.GetName(),
		Status: in.GetStatus(),
	}
	if nics := in.GetNetworkInterfaces(); len(nics) > 0 {
		inst.NIC = nics[0].GetName()
		inst.InternalIP = nics[0].GetNetworkIP()
	}
	if inst.ID == 0 {
		return Instance{}, fmt.Errorf("get instance %q in project %q zone %q: the API answer has no instance id", name, project, zone)
	}
	if inst.Name == "" {
		inst.Name = name
	}
	return inst, nil
}

// checkNames refuses names that are empty or could change the request path.
// Compute Engine names are lower-case letters, digits and hyphens; project IDs
// may also hold "." and ":" (domain-scoped projects such as example.com:p).
func checkNames(project, zone, name string) error {
	for _, f := range []struct{ field, v string }{{"project", project}, {"zone", zone}, {"instance", name}} {
		if f.v == "" {
			return fmt.Errorf("empty %s name", f.field)
		}
		if f.v == "." || f.v == ".." || strings.IndexFunc(f.v, badNameRune) >= 0 {
			return fmt.Errorf("invalid %s name %q", f.field, f.v)
		}
	}
	return nil
}

func badNameRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	case r == '-' || r == '_' || r == '.' || r == ':':
		return false
	}
	return true
}

// explain turns an API error into one a person can act on, keeping the
// original (wrapped, so errors.As finds the *googleapi.Error).
func explain(err error, permission, project, zone, name string) error {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return err
	}
	switch ge.Code {
	case http.StatusNotFound:
		return fmt.Errorf("instance %q not found in project %q zone %q: check the vm project, zone and instance names in the configuration: %w", name, project, zone, err)
	case http.StatusForbidden:
		if hasReason(ge, "accessNotConfigured") || strings.Contains(ge.Message, "has not been used in project") || strings.Contains(ge.Message, "is disabled") {
			return fmt.Errorf("the Compute Engine API is not enabled in project %q: enable compute.googleapis.com: %w", project, err)
		}
		return fmt.Errorf("permission %s denied on instance %q in project %q zone %q: grant the deployer's identity a role with it (e.g. roles/compute.viewer): %w", permission, name, project, zone, err)
	case http.StatusUnauthorized:
		return fmt.Errorf("the Compute Engine API refused the credentials (expired or invalid): check GOOGLE_APPLICATION_CREDENTIALS: %w", err)
	}
	return err
}

func hasReason(ge *googleapi.Error, reason string) bool {
	for _, it := range ge.Errors {
		if it.Reason == reason {
			return true
		}
	}
	return false
}
