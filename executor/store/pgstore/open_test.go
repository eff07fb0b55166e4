package pgstore_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/pgstore"
	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
	"github.com/jackc/pgx/v5"
)

// Replicas that start together open one database at once: each migration is
// applied once, every Open succeeds, and they share the journal.
func TestOpen_concurrent(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	const n = 4
	stores := make([]*pgstore.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = pgstore.Open(t.Context(), testLogger(t), url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	if got := versions(t, url); got != "1,2" {
		t.Errorf("schema_migrations versions = %q, want \"1,2\" (each applied once)", got)
	}
	j := executor.Job{ID: "j1", Target: "production", State: executor.StateQueued,
		Trigger: executor.Trigger{Kind: executor.KindPush, Delivery: "d1"}}
	if _, err := stores[0].CreateJob(t.Context(), j); err != nil {
		t.Fatal(err)
	}
	j.ID = "j2"
	if existing, err := stores[1].CreateJob(t.Context(), j); existing != "j1" || err == nil {
		t.Errorf("CreateJob of the same delivery on another replica = %q, %v; want j1, ErrDuplicate", existing, err)
	}
}

// Opening a journal again changes nothing; one written by a newer deployhook
// is refused and left as it is.
func TestOpen_versions(t *testing.T) {
	s, url := mustOpen(t)
	s.Close()
	s, err := pgstore.Open(t.Context(), testLogger(t), url)
	if err != nil {
		t.Fatalf("Open again: %v", err)
	}
	s.Close()
	if got := versions(t, url); got != "1,2" {
		t.Fatalf("versions after two Opens = %q, want \"1,2\"", got)
	}

	exec(t, url, `INSERT INTO schema_migrations (version, applied) VALUES (3, 0)`)
	_, err = pgstore.Open(t.Context(), testLogger(t), url)
	if err == nil || !strings.Contains(err.Error(), "schema version 3 is newer") {
		t.Fatalf("Open(newer schema) error = %v, want one saying the schema is newer", err)
	}
	if got := versions(t, url); got != "1,2,3" {
		t.Errorf("versions after the refused Open = %q, want \"1,2,3\" (untouched)", got)
	}
}

// Errors of Open never carry the URL's password.
func TestOpen_errorsHideThePassword(t *testing.T) {
	const secret = "s3cr3t-pa55"
	srv := pgtest.Shared(t)
	good := srv.NewDatabase(t)
	tests := []struct {
		name string
		url  string
	}{
		{"malformed URL", "postgres://deployhook:" + secret + "@127.0.0.1:bad-port/x"},
		{"unknown database", strings.Replace(strings.Replace(good, "postgres@", "postgres:"+secret+"@", 1), "/test_", "/missing_", 1)},
		{"refused connection", "postgres://deployhook:" + secret + "@127.0.0.1:1/x?sslmode=disable&connect_timeout=5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := pgstore.Open(t.Context(), testLogger(t), tt.url)
			if err == nil {
				s.Close()
				t.Fatal("Open = nil error, want one")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Open error %q carries the password", err)
			}
		})
	}
}

// versions lists the applied schema versions of the database at url.
func versions(t *testing.T, url string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	var got string
	if err := conn.QueryRow(t.Context(), `SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

// exec runs one statement on the database at url.
func exec(t *testing.T, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatal(err)
	}
}
