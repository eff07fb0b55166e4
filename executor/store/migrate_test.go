package store

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// openRaw opens a database file with the writer's settings, without migrating.
func openRaw(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "m.db"), false))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

var (
	v1 = &fstest.MapFile{Data: []byte("CREATE TABLE a (x INTEGER) STRICT;\nINSERT INTO a VALUES (1);")}
	v2 = &fstest.MapFile{Data: []byte("CREATE TABLE b (y TEXT) STRICT;\nCREATE INDEX b_y ON b (y);")}
	// v2Broken fails at its second statement, after creating a table.
	v2Broken = &fstest.MapFile{Data: []byte("CREATE TABLE b (y TEXT) STRICT;\nINSERT INTO nowhere VALUES (1);")}
)

// TestMigrate upgrades step by step, re-runs, and checks that a failing
// migration leaves nothing behind.
func TestMigrate(t *testing.T) {
	db := openRaw(t)
	lg := newLogger(t)
	steps := []struct {
		name       string
		fsys       fstest.MapFS
		wantErr    string
		wantVer    int
		wantTables []string
		wantNot    []string
	}{
		{name: "first version", fsys: fstest.MapFS{"0001_a.sql": v1}, wantVer: 1, wantTables: []string{"a"}},
		{name: "same again changes nothing", fsys: fstest.MapFS{"0001_a.sql": v1}, wantVer: 1, wantTables: []string{"a"}},
		{name: "failing migration rolls back", fsys: fstest.MapFS{"0001_a.sql": v1, "0002_b.sql": v2Broken},
			wantErr: "migrate to version 2 (0002_b.sql)", wantVer: 1, wantTables: []string{"a"}, wantNot: []string{"b"}},
		{name: "upgrade", fsys: fstest.MapFS{"0001_a.sql": v1, "0002_b.sql": v2}, wantVer: 2, wantTables: []string{"a", "b"}},
		{name: "upgrade again changes nothing", fsys: fstest.MapFS{"0001_a.sql": v1, "0002_b.sql": v2}, wantVer: 2, wantTables: []string{"a", "b"}},
		{name: "older binary refuses", fsys: fstest.MapFS{"0001_a.sql": v1},
			wantErr: "journal schema version 2 is newer than this deployhook knows (1)", wantVer: 2, wantTables: []string{"a", "b"}},
	}
	for _, st := range steps {
		err := migrate(t.Context(), lg, db, st.fsys)
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: migrate: %v", st.name, err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Fatalf("%s: migrate error = %v, want one containing %q", st.name, err, st.wantErr)
		}
		if got := userVersion(t, db); got != st.wantVer {
			t.Errorf("%s: user_version = %d, want %d", st.name, got, st.wantVer)
		}
		for _, tbl := range st.wantTables {
			if !tableExists(t, db, tbl) {
				t.Errorf("%s: table %s missing", st.name, tbl)
			}
		}
		for _, tbl := range st.wantNot {
			if tableExists(t, db, tbl) {
				t.Errorf("%s: table %s exists, want it rolled back", st.name, tbl)
			}
		}
	}
	// Migration 1's INSERT ran once, however many times migrate ran.
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM a").Scan(&n); err != nil || n != 1 {
		t.Errorf("rows in a = %d, %v; want 1", n, err)
	}
}

func TestLoadMigrations(t *testing.T) {
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		want    []string
		wantErr string
	}{
		{name: "ordered by number", fsys: fstest.MapFS{"0002_b.sql": v2, "0001_a.sql": v1, "README": v1},
			want: []string{"0001_a.sql", "0002_b.sql"}},
		{name: "gap", fsys: fstest.MapFS{"0001_a.sql": v1, "0003_c.sql": v2}, wantErr: "version 3, want 2"},
		{name: "repeat", fsys: fstest.MapFS{"0001_a.sql": v1, "0001_b.sql": v2}, wantErr: "version 1, want 2"},
		{name: "not starting at 1", fsys: fstest.MapFS{"0002_b.sql": v2}, wantErr: "version 2, want 1"},
		{name: "unnumbered", fsys: fstest.MapFS{"init.sql": v1}, wantErr: "NNNN_description.sql"},
		{name: "zero", fsys: fstest.MapFS{"0000_a.sql": v1}, wantErr: "NNNN_description.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := loadMigrations(tt.fsys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadMigrations error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.name)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("migrations = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSchema checks the embedded migrations themselves: they load, and the
// journal they build passes SQLite's own checks.
func TestSchema(t *testing.T) {
	if _, err := loadMigrations(schema()); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	var got string
	if err := s.r.QueryRowContext(t.Context(), "PRAGMA integrity_check").Scan(&got); err != nil || got != "ok" {
		t.Errorf("integrity_check = %q, %v; want ok", got, err)
	}
	for _, tbl := range []string{"jobs", "steps", "deliveries", "outbox"} {
		if !tableExists(t, s.r, tbl) {
			t.Errorf("table %s missing", tbl)
		}
	}
}
