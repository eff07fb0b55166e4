package store

import (
	"database/sql"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/deployhook/deployhook/executor"
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
				got = append(got, m.Name)
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
	for _, tbl := range []string{"jobs", "steps", "deliveries", "outbox", "owners", "health"} {
		if !tableExists(t, s.r, tbl) {
			t.Errorf("table %s missing", tbl)
		}
	}
}

// TestOpen_migrateFrom0001 opens a journal written by a deployhook that knew
// only migration 0001, with jobs, steps, deliveries and owed reports in it,
// and checks that everything is still there, that the old jobs read with no
// owner and no body hash (so recovery may end them), and that the migrated
// schema is exactly a new journal's.
func TestOpen_migrateFrom0001(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "journal.db")
	initSQL, err := fs.ReadFile(schema(), "0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	old, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	old.SetMaxOpenConns(1)
	if err := migrate(ctx, newLogger(t), old, fstest.MapFS{"0001_init.sql": {Data: initSQL}}); err != nil {
		t.Fatal(err)
	}
	created := t0.UnixNano()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		// Two jobs of one target with no body (the unique index must take them),
		// one of them still running when the old deployhook stopped.
		{`INSERT INTO jobs (id, target, kind, repo, branch, sha, delivery, actor, reason, force,
			state, description, previous_sha, deployment, created, started, finished)
			VALUES ('done', 'production', 'push', 'acme/app', 'main', ?, 'guid-1', 'octocat', 'push by octocat', 0,
			'success', 'deployed 0123456', ?, 7, ?, ?, ?)`,
			[]any{sha1, sha2, created, created + 1e9, created + 2e9}},
		{`INSERT INTO jobs (id, target, kind, repo, branch, sha, delivery, actor, reason, force,
			state, description, previous_sha, deployment, created, started, finished)
			VALUES ('interrupted', 'production', 'push', 'acme/app', 'main', ?, 'guid-2', 'octocat', 'push by octocat', 0,
			'running', 'deploying 89abcde', ?, 0, ?, ?, NULL)`,
			[]any{sha2, sha1, created + 3e9, created + 4e9}},
		{`INSERT INTO deliveries (guid, target, job) VALUES ('guid-1', 'production', 'done'), ('guid-2', 'production', 'interrupted')`, nil},
		{`INSERT INTO steps (job, seq, name, exit_code, output, started, duration) VALUES ('done', 1, 'fetch', 0, 'ok', ?, 5)`,
			[]any{created + 1e9}},
		{`INSERT INTO outbox (job, report, created) VALUES ('interrupted', '{"job":"interrupted","state":"running"}', ?)`,
			[]any{created}},
	} {
		if _, err := old.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s := mustOpen(t, path)
	if got, want := userVersion(t, s.r), latestVersion(t); got != want || want < 2 {
		t.Errorf("user_version = %d, want %d", got, want)
	}
	fresh := newStore(t)
	if got, want := schemaSQL(t, s), schemaSQL(t, fresh); got != want {
		t.Errorf("migrated schema differs from a new journal's:\n%s\nnew:\n%s", got, want)
	}
	want := executor.Job{
		ID: "done", Target: "production",
		Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: sha1,
			Delivery: "guid-1", Actor: "octocat", Reason: "push by octocat"},
		State: executor.StateSuccess, Description: "deployed 0123456", PreviousSHA: sha2, Deployment: 7,
		Created: t0, Started: t0.Add(time.Second), Finished: t0.Add(2 * time.Second),
		Steps: []executor.StepRun{{Job: "done", Seq: 1, Name: "fetch", Output: "ok", Started: t0.Add(time.Second), Duration: 5}},
	}
	diffJob(t, mustJob(t, s, "done"), want)
	if got, err := s.Deployed(ctx, "production", sha1); err != nil || got.ID != "done" {
		t.Errorf("Deployed(production, sha1) = %q, %v; want done", got.ID, err)
	}
	orphans, err := s.Orphans(ctx, time.Now())
	if err != nil || !slices.Equal(ids(orphans), []string{"interrupted"}) {
		t.Errorf("Orphans = %v, %v; want [interrupted] (a job from before owners has none)", ids(orphans), err)
	}
	if err := s.Adopt(ctx, "interrupted", "", "new-owner"); err != nil {
		t.Errorf("Adopt(interrupted from no owner): %v", err)
	}
	if owed, err := s.Owed(ctx, 0); err != nil || len(owed) != 1 || owed[0].Report.Job != "interrupted" {
		t.Errorf("Owed = %+v, %v; want the old report", owed, err)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
	// The old delivery still deduplicates; bodies do from now on.
	dup := queuedJob("dup", "production", executor.StateQueued, time.Now())
	dup.Trigger.Delivery = "guid-1"
	if existing, err := s.CreateJob(ctx, dup); !errors.Is(err, executor.ErrDuplicate) || existing != "done" {
		t.Errorf("CreateJob(old delivery) = %q, %v; want done, ErrDuplicate", existing, err)
	}
	for i, id := range []string{"new", "replay"} {
		j := queuedJob(id, "production", executor.StateQueued, time.Now())
		j.Trigger.BodyHash = bodyHash1
		existing, err := s.CreateJob(ctx, j)
		if i == 0 && err != nil || i == 1 && (!errors.Is(err, executor.ErrDuplicate) || existing != "new") {
			t.Errorf("CreateJob(%s) = %q, %v", id, existing, err)
		}
	}
	var check string
	if err := s.r.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v; want ok", check, err)
	}
	rows, err := s.r.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if rows.Next() {
		t.Error("foreign_key_check found dangling rows")
	}
}
