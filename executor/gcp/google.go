package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/metadata"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/executor/gce"
	"github.com/deployhook/deployhook/executor/oslogin"
)

// cloudPlatformScope is the OAuth scope the IAP relay and the Compute API need
// (IAP-PROTOCOL.md §8).
const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// GoogleOptions configures Google.
type GoogleOptions struct {
	// CredentialsFile is GOOGLE_APPLICATION_CREDENTIALS: a credentials JSON
	// file (a service account key, external account, impersonated service
	// account or user credentials) whose own token_uri is honoured. Empty: the
	// other sources of Application Default Credentials (gcloud's file, the
	// metadata server).
	CredentialsFile string
	// ComputeEndpoint and OSLoginEndpoint override the APIs' base URLs
	// (DEPLOYHOOK_COMPUTE_URL, DEPLOYHOOK_OSLOGIN_URL); see gce.Options and
	// oslogin.Options.
	ComputeEndpoint, OSLoginEndpoint string
}

// Google holds the Google API clients the iap targets share, made on first use
// from Application Default Credentials: New makes nothing, so deployhook starts
// without Google credentials. It implements Clients; its methods are safe for
// concurrent use, and none holds a lock while credentials are found, a client
// is made or the metadata server is asked (a caller waiting for another's
// attempt gives up when its own ctx ends). An attempt that fails is not
// remembered: the next call tries again.
type Google struct {
	lg   *slog.Logger
	opts GoogleOptions

	creds   lazy[*google.Credentials]
	compute lazy[*gce.Client]
	osLogin lazy[accountOSLogin]
}

// NewGoogle returns the clients, to be made on first use.
func NewGoogle(lg *slog.Logger, opts GoogleOptions) *Google {
	return &Google{lg: lg, opts: opts}
}

// Compute implements Clients.
func (g *Google) Compute(ctx context.Context) (Compute, oauth2.TokenSource, error) {
	creds, err := g.credentials(ctx)
	if err != nil {
		return nil, nil, err
	}
	c, err := g.compute.get(ctx, func(ctx context.Context) (*gce.Client, error) {
		// The client keeps ctx to refresh tokens: it must outlive this call.
		return gce.New(context.WithoutCancel(ctx), g.lg, gce.Options{
			Endpoint:      g.opts.ComputeEndpoint,
			ClientOptions: []option.ClientOption{option.WithTokenSource(creds.TokenSource)},
		})
	}, closeCompute)
	if err != nil {
		return nil, nil, err
	}
	return c, creds.TokenSource, nil
}

// OSLogin implements Clients: the OS Login API for the service account the
// credentials act as.
func (g *Google) OSLogin(ctx context.Context) (OSLogin, error) {
	creds, err := g.credentials(ctx)
	if err != nil {
		return nil, err
	}
	return g.osLogin.get(ctx, func(ctx context.Context) (accountOSLogin, error) {
		account, err := serviceAccountEmail(ctx, creds)
		if err != nil {
			return accountOSLogin{}, err
		}
		c, err := oslogin.New(context.WithoutCancel(ctx), g.lg, oslogin.Options{
			Endpoint:      g.opts.OSLoginEndpoint,
			ClientOptions: []option.ClientOption{option.WithTokenSource(creds.TokenSource)},
		})
		if err != nil {
			return accountOSLogin{}, err
		}
		return accountOSLogin{c: c, account: account}, nil
	}, closeOSLogin)
}

// Close releases the clients made so far; calls after it fail with ErrClosed.
// Close the transports first: their key deletions use the OS Login client.
func (g *Google) Close() error {
	g.creds.close(func(*google.Credentials) {})
	g.compute.close(closeCompute)
	g.osLogin.close(closeOSLogin)
	return nil
}

func closeCompute(c *gce.Client)    { _ = c.Close() }
func closeOSLogin(o accountOSLogin) { _ = o.c.Close() }

func (g *Google) credentials(ctx context.Context) (*google.Credentials, error) {
	return g.creds.get(ctx, func(ctx context.Context) (*google.Credentials, error) {
		// The token source keeps ctx to fetch tokens: it must outlive this call.
		return googleCredentials(context.WithoutCancel(ctx), g.opts.CredentialsFile)
	}, func(*google.Credentials) {})
}

// accountOSLogin is the OS Login client bound to the deployer's account.
type accountOSLogin struct {
	c       *oslogin.Client
	account string
}

func (o accountOSLogin) Key(ctx context.Context, project string, ttl time.Duration, regions ...string) (oslogin.Key, error) {
	return o.c.Key(ctx, o.account, project, ttl, regions...)
}

func (o accountOSLogin) Delete(ctx context.Context, fingerprint string) error {
	return o.c.Delete(ctx, o.account, fingerprint)
}

// lazy is a value made on first successful use. Concurrent callers wait for
// the attempt in progress, each only as long as its own ctx lasts; no lock is
// held while the value is made.
type lazy[T any] struct {
	mu     sync.Mutex
	v      T
	ok     bool
	closed bool
	making chan struct{} // closed when the attempt in progress ends
}

// get returns the value, made with build if there is none yet. A value made
// after close is released with release and ErrClosed returned.
func (l *lazy[T]) get(ctx context.Context, build func(context.Context) (T, error), release func(T)) (T, error) {
	var zero T
	for {
		l.mu.Lock()
		switch {
		case l.closed:
			l.mu.Unlock()
			return zero, ErrClosed
		case l.ok:
			v := l.v
			l.mu.Unlock()
			return v, nil
		case l.making != nil:
			wait := l.making
			l.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return zero, ctx.Err()
			}
		}
		done := make(chan struct{})
		l.making = done
		l.mu.Unlock()

		v, err := build(ctx)

		l.mu.Lock()
		l.making = nil
		closed := l.closed
		if err == nil && !closed {
			l.v, l.ok = v, true
		}
		l.mu.Unlock()
		close(done)
		if err == nil && closed {
			release(v)
			return zero, ErrClosed
		}
		return v, err
	}
}

// close releases the value if there is one; get fails afterwards.
func (l *lazy[T]) close(release func(T)) {
	l.mu.Lock()
	v, ok := l.v, l.ok
	l.closed, l.ok = true, false
	l.v = *new(T)
	l.mu.Unlock()
	if ok {
		release(v)
	}
}

// serviceAccountEmail returns the email of the service account creds act as:
// the client_email of a key file, the account an impersonating credentials file
// names, or, without a file, the VM's default service account from the
// metadata server.
func serviceAccountEmail(ctx context.Context, creds *google.Credentials) (string, error) {
	if len(creds.JSON) > 0 {
		var f struct {
			ClientEmail      string `json:"client_email"`
			ImpersonationURL string `json:"service_account_impersonation_url"`
		}
		_ = json.Unmarshal(creds.JSON, &f) // the credentials were parsed already
		if f.ClientEmail != "" {
			return f.ClientEmail, nil
		}
		if _, rest, ok := strings.Cut(f.ImpersonationURL, "/serviceAccounts/"); ok {
			if email, _, ok := strings.Cut(rest, ":generateAccessToken"); ok && email != "" {
				return email, nil
			}
		}
		return "", errors.New("ssh.oslogin: the Google credentials name no service account (no client_email): set GOOGLE_APPLICATION_CREDENTIALS to a service account key file")
	}
	if metadata.OnGCEWithContext(ctx) {
		email, err := metadata.EmailWithContext(ctx, "default")
		if err != nil {
			return "", fmt.Errorf("ssh.oslogin: read the VM's service account from the metadata server: %w", err)
		}
		return email, nil
	}
	return "", errors.New("ssh.oslogin: no service account to import keys for: set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run on Google Cloud with a service account")
}

// googleCredentials returns Application Default Credentials with the
// cloud-platform scope: the JSON file GOOGLE_APPLICATION_CREDENTIALS names
// (whose own token_uri is honoured), else the other ADC sources.
func googleCredentials(ctx context.Context, file string) (*google.Credentials, error) {
	if file == "" {
		creds, err := google.FindDefaultCredentials(ctx, cloudPlatformScope)
		if err != nil {
			return nil, fmt.Errorf("google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run on Google Cloud: %w", err)
		}
		return creds, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read GOOGLE_APPLICATION_CREDENTIALS: %w", err)
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("GOOGLE_APPLICATION_CREDENTIALS is not a credentials JSON file: %w", err)
	}
	// The type is checked against the known kinds, so a file of an unexpected
	// kind cannot make deployhook fetch or run what it names.
	switch t := google.CredentialsType(head.Type); t {
	case google.ServiceAccount, google.ExternalAccount, google.AuthorizedUser, google.ImpersonatedServiceAccount:
		creds, err := google.CredentialsFromJSONWithType(ctx, b, t, cloudPlatformScope)
		if err != nil {
			return nil, fmt.Errorf("GOOGLE_APPLICATION_CREDENTIALS: %w", err)
		}
		return creds, nil
	default:
		return nil, fmt.Errorf("GOOGLE_APPLICATION_CREDENTIALS: credentials of type %q are not supported (use a service account key)", head.Type)
	}
}
