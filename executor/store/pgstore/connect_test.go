package pgstore_test

import (
	"net"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor/store/pgstore"
	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
)

// Connect makes no connection: it returns a journal for a database that does
// not answer, whose Migrate fails until it does; Migrate then migrates it
// once, and again is a no-op.
func TestConnect_migratesLater(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	// A port nothing listens on: the listener is closed at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "postgres://postgres@" + ln.Addr().String() + "/x?sslmode=disable"
	ln.Close()
	s, err := pgstore.Connect(testLogger(t), dead)
	if err != nil {
		t.Fatalf("Connect to a database that does not answer = %v, want nil (no connection is made)", err)
	}
	if err := s.Migrate(t.Context()); err == nil || !pgstore.Unavailable(err) {
		t.Errorf("Migrate with no database = %v, want an error that Unavailable reports", err)
	}
	s.Close()

	s, err = pgstore.Connect(testLogger(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 2 {
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate %d: %v", i+1, err)
		}
	}
	if got := versions(t, url); got != "1,2" {
		t.Errorf("versions after Migrate = %q, want \"1,2\"", got)
	}
}

// Unavailable tells an outage, which a later attempt may outlive, from a
// database that answered and refused, which waiting does not fix.
func TestUnavailable(t *testing.T) {
	srv := pgtest.Shared(t)
	good := srv.NewDatabase(t)
	newer := srv.NewDatabase(t)
	if s, err := pgstore.Open(t.Context(), testLogger(t), newer); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
	exec(t, newer, `INSERT INTO schema_migrations (version, applied) VALUES (99, 0)`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "postgres://postgres@" + ln.Addr().String() + "/x?sslmode=disable"
	ln.Close()
	tests := []struct {
		name string
		url  string
		want bool
	}{
		{"refused connection", refused, true},
		{"unknown database", strings.Replace(good, "/test_", "/missing_", 1), false},
		{"unknown user", strings.Replace(good, "postgres@", "nobody@", 1), false},
		{"newer schema", newer, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := pgstore.Open(t.Context(), testLogger(t), tt.url)
			if err == nil {
				s.Close()
				t.Fatal("Open = nil error, want one")
			}
			if got := pgstore.Unavailable(err); got != tt.want {
				t.Errorf("Unavailable(%v) = %v, want %v", err, got, tt.want)
			}
		})
	}
	if pgstore.Unavailable(nil) {
		t.Error("Unavailable(nil) = true")
	}
}
