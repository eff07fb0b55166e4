// Package oslogin gives a deploy a short-lived SSH key through the Cloud OS
// Login API (oslogin.googleapis.com, REST, v1), so that no long-lived SSH key
// has to be stored anywhere (IAP-PROTOCOL.md §13.2).
//
// # What it does
//
// Client.Key generates an ed25519 key in memory (it is never written to
// disk) and imports its public half into the OS Login profile of the deployer's
// account with an expiry:
//
//	POST /v1/users/ACCOUNT:importSshPublicKey?projectId=PROJECT[&regions=REGION]
//	{"key": "ssh-ed25519 AAAA...", "expirationTimeUsec": "..."}
//
// The answer is the account's login profile: the POSIX username to log in as
// (for a service account sa_<numeric id>, read from the answer, never computed)
// and the fingerprint OS Login gave the key. A VM with OS Login enabled
// (metadata enable-oslogin=TRUE) then accepts that key for that user until it
// expires. Client.Delete removes the key early:
//
//	DELETE /v1/users/ACCOUNT/sshPublicKeys/FINGERPRINT
//
// # Permissions
//
// The account needs roles/compute.osAdminLogin (deploys use sudo) or
// roles/compute.osLogin on the VM or project, and roles/iam.serviceAccountUser
// on the VM's attached service account if it has one. Errors for 403 and 404
// answers say which of these to check.
package oslogin

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	osl "cloud.google.com/go/oslogin/apiv1"
	"cloud.google.com/go/oslogin/apiv1/osloginpb"
	"cloud.google.com/go/oslogin/common/commonpb"
	"golang.org/x/crypto/ssh"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/internal/endpoint"
)

// MaxBody caps every answer read from the OS Login API: a longer one fails
// the call with an error wrapping safehttp.ErrBodyTooLarge instead of growing
// the heap without bound. The largest answer read is the account's login
// profile, a few hundred bytes per SSH key and POSIX account (deployhook's
// keys expire within minutes and are deleted after each deploy); 4 MiB leaves
// room for thousands.
const MaxBody = 4 << 20

// Options configures a Client.
type Options struct {
	// Endpoint overrides the OS Login API base URL
	// (https://oslogin.googleapis.com): an httptest server in tests. main reads
	// it from DEPLOYHOOK_OSLOGIN_URL. It must be https (http only for a
	// loopback host). Empty: the default endpoint.
	Endpoint string
	// ClientOptions are passed to the Google API client (the credentials).
	// Endpoint, when set, wins over an option.WithEndpoint here. They must not
	// hold option.WithHTTPClient: New builds the HTTP client, with a cap on
	// answers (MaxBody) and redirects kept on the API's origin.
	ClientOptions []option.ClientOption
}

// Client imports and deletes SSH keys in OS Login profiles. Its methods are
// safe for concurrent use, except Close. Give every call a deadline: the Google
// client retries 503 answers until ctx ends.
type Client struct {
	lg *slog.Logger
	c  *osl.Client
}

// New returns a Client using the REST transport of the OS Login API. It makes
// no request.
func New(ctx context.Context, lg *slog.Logger, opts Options) (*Client, error) {
	if lg == nil {
		return nil, errors.New("new os login client: nil logger")
	}
	copts, err := endpoint.Option(opts.ClientOptions, "DEPLOYHOOK_OSLOGIN_URL", opts.Endpoint, "https://oslogin.googleapis.com")
	if err != nil {
		return nil, fmt.Errorf("new os login client: %w", err)
	}
	if copts, err = endpoint.WithLimits(ctx, copts, MaxBody); err != nil {
		return nil, fmt.Errorf("new os login client: %w", err)
	}
	c, err := osl.NewRESTClient(ctx, copts...)
	if err != nil {
		return nil, fmt.Errorf("new os login client: %w", err)
	}
	return &Client{lg: lg, c: c}, nil
}

// Close releases the client's connections.
func (c *Client) Close() error {
	if err := c.c.Close(); err != nil {
		return fmt.Errorf("close os login client: %w", err)
	}
	return nil
}

// Key is an SSH key imported into an OS Login profile.
type Key struct {
	// Signer holds the private key; it exists only in memory.
	Signer ssh.Signer
	// User is the POSIX username OS Login gives the account: the one to log in as.
	User string
	// Fingerprint is OS Login's name for the key, for Delete. It is empty if
	// the answer did not list the key (Delete is then impossible; the key
	// still expires).
	Fingerprint string
	// Expires is when OS Login stops accepting the key.
	Expires time.Time
}

// Key generates a new ed25519 key and imports it into the OS Login profile of
// account (the deployer's email) for project, valid for ttl. regions, when
// given (the VM's region, like us-central1), make OS Login answer only once
// the key has reached them, so the first SSH login does not race the
// replication. The login user is taken from the profile's POSIX accounts: the
// primary one, else the first; a profile without one is an error.
func (c *Client) Key(ctx context.Context, account, project string, ttl time.Duration, regions ...string) (Key, error) {
	if err := checkAccount(account); err != nil {
		return Key{}, err
	}
	if project == "" {
		return Key{}, errors.New("import ssh key: empty project")
	}
	if ttl <= 0 {
		return Key{}, fmt.Errorf("import ssh key: ttl %v must be positive", ttl)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate ssh key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("generate ssh key: %w", err)
	}
	expires := time.UnixMicro(time.Now().Add(ttl).UnixMicro()) // the API's precision
	resp, err := c.c.ImportSshPublicKey(ctx, &osloginpb.ImportSshPublicKeyRequest{
		Parent:    "users/" + account,
		ProjectId: project,
		SshPublicKey: &commonpb.SshPublicKey{
			Key:                strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
			ExpirationTimeUsec: expires.UnixMicro(),
		},
		Regions: regions,
	})
	if err != nil {
		return Key{}, fmt.Errorf("import ssh key into the os login profile of %s: %w", account, explain(err, account, project))
	}
	k := Key{Signer: signer, Expires: expires}
	prof := resp.GetLoginProfile()
	for _, a := range prof.GetPosixAccounts() {
		if a.GetUsername() != "" && (k.User == "" || a.GetPrimary()) {
			k.User = a.GetUsername()
			if a.GetPrimary() {
				break
			}
		}
	}
	for fp, pk := range prof.GetSshPublicKeys() {
		if sameKey(pk.GetKey(), signer.PublicKey()) {
			k.Fingerprint = fp
			if f := pk.GetFingerprint(); f != "" {
				k.Fingerprint = f
			}
		}
	}
	if k.Fingerprint == "" {
		c.lg.Warn("os login did not list the imported key: it cannot be deleted early and lives until it expires",
			"account", account, "expires", expires)
	}
	if k.User == "" {
		if k.Fingerprint != "" {
			_ = c.Delete(ctx, account, k.Fingerprint)
		}
		return Key{}, fmt.Errorf("import ssh key into the os login profile of %s: the profile has no POSIX account for project %s, so there is no user to log in as: enable OS Login on the VM or project (metadata enable-oslogin=TRUE) and grant %s roles/compute.osAdminLogin",
			account, project, account)
	}
	return k, nil
}

// Delete removes the key with fingerprint from account's OS Login profile. It
// is best effort after a deploy: the key expires anyway.
func (c *Client) Delete(ctx context.Context, account, fingerprint string) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	if fingerprint == "" || strings.ContainsAny(fingerprint, "/?#%") {
		return fmt.Errorf("delete ssh key: invalid fingerprint %q", fingerprint)
	}
	err := c.c.DeleteSshPublicKey(ctx, &osloginpb.DeleteSshPublicKeyRequest{
		Name: "users/" + account + "/sshPublicKeys/" + fingerprint,
	})
	if err != nil {
		return fmt.Errorf("delete ssh key %s from the os login profile of %s: %w", fingerprint, account, err)
	}
	return nil
}

// checkAccount refuses what is not an email or could change the request path.
func checkAccount(account string) error {
	if !strings.Contains(account, "@") || strings.ContainsAny(account, "/?#% \t\r\n") {
		return fmt.Errorf("os login: account %q is not an email address (the deployer's service account)", account)
	}
	return nil
}

// sameKey reports whether text (authorized_keys format) is pub.
func sameKey(text string, pub ssh.PublicKey) bool {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	return err == nil && string(k.Marshal()) == string(pub.Marshal())
}

// explain turns 401, 403 and 404 answers into errors that say what to fix.
func explain(err error, account, project string) error {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return err
	}
	switch ge.Code {
	case http.StatusUnauthorized:
		return fmt.Errorf("the OS Login API refused the credentials (expired or invalid): check GOOGLE_APPLICATION_CREDENTIALS: %w", err)
	case http.StatusForbidden:
		if strings.Contains(ge.Message, "has not been used in project") || strings.Contains(ge.Message, "is disabled") {
			return fmt.Errorf("the OS Login API is not enabled: enable oslogin.googleapis.com in the project of %s: %w", account, err)
		}
		return fmt.Errorf("permission denied: grant %s roles/compute.osAdminLogin (or roles/compute.osLogin, without sudo) in project %s, and roles/iam.serviceAccountUser on the VM's service account: %w",
			account, project, err)
	case http.StatusNotFound:
		return fmt.Errorf("no OS Login profile for %s in project %s: check the account, and that OS Login is enabled (metadata enable-oslogin=TRUE on the VM or project): %w",
			account, project, err)
	}
	return err
}
