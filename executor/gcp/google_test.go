package gcp

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/oauth2/google"

	"github.com/deployhook/deployhook/executor/gce/gcetest"
)

// The OS Login account is the service account the credentials file names.
func TestServiceAccountEmail(t *testing.T) {
	for _, tt := range []struct {
		name, json, want, wantErr string
	}{
		{name: "service account key", json: `{"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com"}`,
			want: "a@p.iam.gserviceaccount.com"},
		{name: "impersonation", json: `{"type": "impersonated_service_account",
			"service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/b@p.iam.gserviceaccount.com:generateAccessToken",
			"source_credentials": {"type": "authorized_user", "client_email": "not-this@example.com"}}`,
			want: "b@p.iam.gserviceaccount.com"},
		{name: "user credentials", json: `{"type": "authorized_user", "client_id": "x"}`,
			wantErr: "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serviceAccountEmail(t.Context(), &google.Credentials{JSON: []byte(tt.json)})
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %q, %v; want %q, error containing %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// NewGoogle reads nothing and asks nothing: a configuration with iap targets
// starts without credentials. The first use makes the clients; Close
// releases them and later uses fail.
func TestGoogle_lazy(t *testing.T) {
	compute := gcetest.NewServer(t, gcetest.Options{})
	compute.SetInstance(gcetest.Instance{Project: project, Zone: zone, Name: instance, ID: 42})
	dir := t.TempDir()
	g := NewGoogle(testLogger(t), GoogleOptions{CredentialsFile: dir + "/missing.json", ComputeEndpoint: compute.URL()})
	if _, _, err := g.Compute(t.Context()); err == nil || !strings.Contains(err.Error(), "read GOOGLE_APPLICATION_CREDENTIALS") {
		t.Fatalf("Compute without the credentials file = %v", err)
	}
	// A failure is not remembered: the file appears, the next call works.
	g.opts.CredentialsFile = compute.ServiceAccountKey(t, dir, account)
	c, tokens, err := g.Compute(t.Context())
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	if _, err := c.Instance(t.Context(), project, zone, instance); err != nil {
		t.Fatalf("Instance: %v", err)
	}
	if tok, err := tokens.Token(); err != nil || tok.AccessToken != compute.Token() {
		t.Errorf("Token = %v, %v", tok, err)
	}
	c2, _, _ := g.Compute(t.Context())
	if c2 != c {
		t.Error("a second Compute made a second client")
	}
	g.Close()
	if _, _, err := g.Compute(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Compute after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Instance(t.Context(), project, zone, instance); err == nil {
		t.Error("the compute client still works after Close")
	}
}

// While one caller makes the value, no lock is held: another caller waits
// only as long as its own context lasts, and a third sees the value once made.
func TestLazy_noLockAcrossBuild(t *testing.T) {
	var l lazy[int]
	building, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := l.get(context.Background(), func(context.Context) (int, error) {
			close(building)
			<-release // slow credentials, a slow metadata server
			return 7, nil
		}, func(int) {})
		first <- err
	}()
	<-building
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.get(ctx, func(context.Context) (int, error) {
		t.Error("a second attempt started while the first was running")
		return 0, nil
	}, func(int) {}); !errors.Is(err, context.Canceled) {
		t.Errorf("waiting caller with an ended context = %v, want context.Canceled", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	v, err := l.get(t.Context(), func(context.Context) (int, error) { return 0, errors.New("made twice") }, func(int) {})
	if v != 7 || err != nil {
		t.Errorf("get = %d, %v; want the value made", v, err)
	}
	var released []int
	l.close(func(v int) { released = append(released, v) })
	if len(released) != 1 || released[0] != 7 {
		t.Errorf("close released %v, want [7]", released)
	}
}

// A value made while close ran is released, not kept.
func TestLazy_closeDuringBuild(t *testing.T) {
	var l lazy[int]
	var released []int
	_, err := l.get(t.Context(), func(context.Context) (int, error) {
		l.close(func(int) { t.Error("close released a value not made yet") })
		return 9, nil
	}, func(v int) { released = append(released, v) })
	if !errors.Is(err, ErrClosed) || len(released) != 1 || released[0] != 9 {
		t.Errorf("get = %v, released %v; want ErrClosed and [9]", err, released)
	}
}
