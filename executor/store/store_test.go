package store

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/internal/jobrow"
	"github.com/deployhook/deployhook/executor/store/storetest"
)

// newLogger routes the store's logs to the test's output.
func newLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustOpen opens a journal at path and closes it when the test ends.
func mustOpen(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Open(tb.Context(), newLogger(tb), path)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// newStore opens a journal in a fresh temporary directory.
func newStore(tb testing.TB) *Store {
	return mustOpen(tb, filepath.Join(tb.TempDir(), "journal.db"))
}

// paris is a non-UTC location, to check that times round-trip as instants.
var paris = time.FixedZone("CET", 3600)

// t0 is an arbitrary instant with a nanosecond part.
var t0 = time.Date(2026, 11, 26, 15, 4, 5, 123456789, paris)

const sha1 = "0123456789abcdef0123456789abcdef01234567"
const sha2 = "89abcdef0123456789abcdef0123456789abcdef"

// Hex SHA-256 digests, as the server computes them from webhook bodies.
const (
	bodyHash1 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
	bodyHash2 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
)

// queuedJob is a minimal job of target created at created.
func queuedJob(id, target string, state executor.State, created time.Time) executor.Job {
	return executor.Job{
		ID:      id,
		Target:  target,
		Trigger: executor.Trigger{Kind: executor.KindPush, Repo: "acme/app", Branch: "main", SHA: sha1, Delivery: "d-" + id},
		State:   state,
		Created: created,
	}
}

// normalize returns j as the journal gives it back: times as UTC instants
// (zero stays zero), no steps if j has none.
func normalize(j executor.Job) executor.Job {
	utc := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Time{}
		}
		return time.Unix(0, t.UnixNano()).UTC()
	}
	j.Created, j.Started, j.Finished = utc(j.Created), utc(j.Started), utc(j.Finished)
	if len(j.Steps) == 0 {
		j.Steps = nil
	}
	steps := make([]executor.StepRun, len(j.Steps))
	for i, st := range j.Steps {
		st.Started = utc(st.Started)
		steps[i] = st
	}
	if j.Steps != nil {
		j.Steps = steps
	}
	return j
}

func mustCreate(tb testing.TB, s *Store, j executor.Job) {
	tb.Helper()
	if _, err := s.CreateJob(tb.Context(), j); err != nil {
		tb.Fatalf("CreateJob(%s): %v", j.ID, err)
	}
}

func mustJob(tb testing.TB, s *Store, id string) executor.Job {
	tb.Helper()
	j, err := s.Job(tb.Context(), id)
	if err != nil {
		tb.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

func ids(jobs []executor.Job) []string {
	out := []string{}
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func diffJob(t *testing.T, got, want executor.Job) {
	t.Helper()
	want = normalize(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("job differs:\n got %+v\nwant %+v", got, want)
	}
}

// TestStore runs the conformance suite of executor.Store on the SQLite
// journal, each subtest on a journal file of its own.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) executor.Store {
		s, err := Open(t.Context(), newLogger(t), filepath.Join(t.TempDir(), "journal.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestLanes runs the conformance suite of executor.Lanes on the SQLite
// journal: its single writer serializes what PostgreSQL decides with row
// locks.
func TestLanes(t *testing.T) {
	storetest.RunLanes(t, func(t *testing.T) storetest.LaneStore {
		s, err := Open(t.Context(), newLogger(t), filepath.Join(t.TempDir(), "journal.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestText checks that the SQLite journal keeps text as the PostgreSQL one
// must: cleaned and cut the same way.
func TestText(t *testing.T) {
	storetest.RunText(t, func(t *testing.T) executor.Store {
		return newStore(t)
	})
}

// TestStore_sqlite checks what the SQLite journal promises beyond
// executor.Store's contract, one subtest per promise, each on a fresh file.
func TestStore_sqlite(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *Store)
	}{
		{"CreateJob/zero created is now", func(t *testing.T, s *Store) {
			before := time.Now()
			mustCreate(t, s, queuedJob("j1", "production", executor.StateQueued, time.Time{}))
			got := mustJob(t, s, "j1").Created
			if got.Before(before.Truncate(time.Nanosecond)) || got.After(time.Now()) {
				t.Errorf("Created = %v, want between %v and now", got, before)
			}
		}},
		{"CreateJob/refuses incomplete jobs", func(t *testing.T, s *Store) {
			for _, j := range []executor.Job{
				queuedJob("", "production", executor.StateQueued, t0),
				queuedJob("j1", "", executor.StateQueued, t0),
				queuedJob("j1", "production", "", t0),
			} {
				if _, err := s.CreateJob(t.Context(), j); err == nil {
					t.Errorf("CreateJob(%+v) = nil error, want one", j)
				}
			}
			if n := count(t, s, "SELECT count(*) FROM jobs"); n != 0 {
				t.Errorf("%d jobs recorded, want none", n)
			}
		}},
		{"UpdateJob/refuses an empty state", func(t *testing.T, s *Store) {
			mustCreate(t, s, queuedJob("j1", "production", executor.StateQueued, t0))
			if err := s.UpdateJob(t.Context(), queuedJob("j1", "production", "", t0)); err == nil {
				t.Error("UpdateJob(empty state) = nil error, want one")
			}
			if got := mustJob(t, s, "j1").State; got != executor.StateQueued {
				t.Errorf("State = %q, want queued", got)
			}
		}},
		{"AddStep/output keeps its last MaxOutput bytes", func(t *testing.T, s *Store) {
			mustCreate(t, s, queuedJob("j1", "production", executor.StateRunning, t0))
			out := strings.Repeat("x", 3*MaxOutput) + strings.Repeat("the end\n", 100)
			if err := s.AddStep(t.Context(), executor.StepRun{Job: "j1", Seq: 1, Name: "n", Output: out}); err != nil {
				t.Fatal(err)
			}
			got := mustJob(t, s, "j1").Steps[0].Output
			if len(got) != MaxOutput || got != out[len(out)-MaxOutput:] {
				t.Errorf("stored output: %d bytes, tail match %v; want the last %d bytes",
					len(got), strings.HasSuffix(out, got), MaxOutput)
			}
		}},
		{"Beat/records every field of the owner", func(t *testing.T, s *Store) {
			o := executor.Owner{ID: "serve-1", Kind: "serve", Host: "vm-1", PID: 4242, Until: t0}
			renewed := executor.Owner{ID: "serve-1", Kind: "cli", Host: "vm-2", PID: 77, Until: t0.Add(time.Hour)}
			for _, o := range []executor.Owner{o, renewed} {
				if err := s.Beat(t.Context(), o); err != nil {
					t.Fatalf("Beat(%+v): %v", o, err)
				}
				want := o
				want.Until = time.Unix(0, o.Until.UnixNano()).UTC()
				if got, ok := ownerRow(t, s, o.ID); !ok || got != want {
					t.Errorf("owner row = %+v, %v; want %+v", got, ok, want)
				}
			}
			if n := count(t, s, "SELECT count(*) FROM owners"); n != 1 {
				t.Errorf("%d owner rows, want 1: Beat replaces by id", n)
			}
		}},
		{"Beat/refuses an owner without id or lease", func(t *testing.T, s *Store) {
			for _, o := range []executor.Owner{{ID: "", Until: t0}, {ID: "x"}} {
				if err := s.Beat(t.Context(), o); err == nil {
					t.Errorf("Beat(%+v) = nil, want an error", o)
				}
			}
		}},
		{"Adopt/refuses an empty new owner", func(t *testing.T, s *Store) {
			j := queuedJob("j1", "production", executor.StateQueued, t0)
			j.Owner = "dead"
			mustCreate(t, s, j)
			if err := s.Adopt(t.Context(), "j1", "dead", ""); err == nil || errors.Is(err, executor.ErrNotFound) {
				t.Errorf("Adopt(to \"\") = %v, want a refusal that is not ErrNotFound", err)
			}
			if got := mustJob(t, s, "j1").Owner; got != "dead" {
				t.Errorf("Owner = %q, want dead", got)
			}
		}},
		{"Check/commits a write each time", func(t *testing.T, s *Store) {
			for i := range 3 {
				if err := s.Check(t.Context()); err != nil {
					t.Fatalf("Check %d: %v", i, err)
				}
			}
			if n := count(t, s, "SELECT checks FROM health"); n != 3 {
				t.Errorf("health checks = %d; want 3: every Check must commit a write", n)
			}
		}},
		{"Ping and Close", func(t *testing.T, s *Store) {
			if err := s.Ping(t.Context()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := s.Ping(t.Context()); err == nil {
				t.Error("Ping after Close = nil, want an error")
			}
			if _, err := s.Jobs(t.Context(), "", 0); err == nil {
				t.Error("Jobs after Close = nil error, want one")
			}
			// The cleanup closes it a second time, which must succeed too.
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newStore(t))
		})
	}
}

// TestStore_CreateJob_concurrentDelivery races CreateJob calls for one delivery
// from two Store handles on one file (as two processes would): exactly one
// records a job, every other call returns its id and ErrDuplicate.
func TestStore_CreateJob_concurrentDelivery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	stores := []*Store{mustOpen(t, path), mustOpen(t, path)}
	raceCreate(t, stores, func(i int) (executor.Job, []executor.Report) {
		j := queuedJob(fmt.Sprintf("j%02d", i), "production", executor.StateQueued, t0)
		j.Trigger.Delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
		return j, nil
	})
}

// raceCreate races 16 CreateJob calls, made by job(i), across stores: exactly
// one records its job, every other returns that job's id and ErrDuplicate, and
// the journal lists the winner alone. It returns the winner's id.
func raceCreate(t *testing.T, stores []*Store, job func(i int) (executor.Job, []executor.Report)) string {
	t.Helper()
	const n = 16
	type result struct {
		existing string
		err      error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		j, owe := job(i)
		wg.Go(func() {
			<-start
			existing, err := stores[i%len(stores)].CreateJob(t.Context(), j, owe...)
			results[i] = result{existing, err}
		})
	}
	close(start)
	wg.Wait()

	var winners []string
	for i, r := range results {
		if r.err == nil {
			winners = append(winners, fmt.Sprintf("j%02d", i))
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d calls recorded a job (%v), want exactly 1; results %+v", len(winners), winners, results)
	}
	for i, r := range results {
		if r.err != nil && (!errors.Is(r.err, executor.ErrDuplicate) || r.existing != winners[0]) {
			t.Errorf("call %d = %q, %v; want %s, ErrDuplicate", i, r.existing, r.err, winners[0])
		}
	}
	jobs, err := stores[0].Jobs(t.Context(), "", 0)
	if err != nil || !slices.Equal(ids(jobs), winners) {
		t.Errorf("Jobs = %v, %v; want %v", ids(jobs), err, winners)
	}
	return winners[0]
}

// TestOpen_reopen writes, closes, opens again (migrations run again) and finds
// everything as it was.
func TestOpen_reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	s, err := Open(t.Context(), newLogger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	want := storetest.FullJob("j1")
	mustCreate(t, s, want)
	report := executor.Report{Job: "j1", Target: "production", SHA: sha1, State: executor.StateSuccess, Description: "deployed"}
	if err := s.Owe(t.Context(), report); err != nil {
		t.Fatal(err)
	}
	schemaBefore := schemaSQL(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		s := mustOpen(t, path)
		diffJob(t, mustJob(t, s, "j1"), want)
		owed, err := s.Owed(t.Context(), 0)
		if err != nil || len(owed) != 1 || owed[0].Report != report {
			t.Errorf("reopen %d: Owed = %+v, %v; want the one report", i, owed, err)
		}
		if got := userVersion(t, s.r); got != latestVersion(t) {
			t.Errorf("reopen %d: user_version = %d, want %d", i, got, latestVersion(t))
		}
		if got := schemaSQL(t, s); got != schemaBefore {
			t.Errorf("reopen %d: schema changed:\n%s\nwas\n%s", i, got, schemaBefore)
		}
		// A duplicate is still a duplicate after a restart.
		dup := queuedJob("j2", "production", executor.StateQueued, t0)
		dup.Trigger.Delivery = want.Trigger.Delivery
		if existing, err := s.CreateJob(t.Context(), dup); !errors.Is(err, executor.ErrDuplicate) || existing != "j1" {
			t.Errorf("reopen %d: CreateJob(duplicate) = %q, %v; want j1, ErrDuplicate", i, existing, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpen_files checks what Open creates on disk, and what it refuses.
func TestOpen_files(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "deployhook")
	path := filepath.Join(dir, "journal.db")
	s := mustOpen(t, path)
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	for name, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", filepath.Base(name), fi.Mode(), want)
		}
	}
	pragmas := []struct {
		name string
		want string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"busy_timeout", fmt.Sprint(BusyTimeout.Milliseconds())},
	}
	for _, db := range []*sql.DB{s.w, s.r} {
		for _, p := range pragmas {
			var got string
			if err := db.QueryRowContext(t.Context(), "PRAGMA "+p.name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != p.want {
				t.Errorf("PRAGMA %s = %s, want %s", p.name, got, p.want)
			}
		}
	}
	if _, err := s.r.ExecContext(t.Context(), "DELETE FROM jobs"); err == nil {
		t.Error("a write through the read pool succeeded, want query_only to refuse it")
	}

	t.Run("not a database", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "journal.db")
		if err := os.WriteFile(bad, []byte(strings.Repeat("not sqlite\n", 100)), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(t.Context(), newLogger(t), bad); err == nil {
			s.Close()
			t.Fatal("Open(garbage) = nil error, want one")
		}
	})
	t.Run("question mark in path", func(t *testing.T) {
		if s, err := Open(t.Context(), newLogger(t), filepath.Join(t.TempDir(), "a?b.db")); err == nil {
			s.Close()
			t.Fatal("Open(a?b.db) = nil error, want one")
		}
	})
}

// TestOpen_newerSchema: a journal written by a newer deployhook is refused and
// left as it is.
func TestOpen_newerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	s, err := Open(t.Context(), newLogger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(t.Context(), "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(t.Context(), newLogger(t), path)
	if err == nil {
		s.Close()
		t.Fatal("Open(newer journal) = nil error, want one")
	}
	want := fmt.Sprintf("journal schema version 99 is newer than this deployhook knows (%d)", latestVersion(t))
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Open error = %q, want it to contain %q", err, want)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := userVersion(t, db); got != 99 {
		t.Errorf("user_version after refusal = %d, want 99 (untouched)", got)
	}
}

func userVersion(tb testing.TB, db *sql.DB) int {
	tb.Helper()
	var v int
	if err := db.QueryRowContext(tb.Context(), "PRAGMA user_version").Scan(&v); err != nil {
		tb.Fatal(err)
	}
	return v
}

func latestVersion(tb testing.TB) int {
	tb.Helper()
	ms, err := loadMigrations(schema())
	if err != nil {
		tb.Fatal(err)
	}
	return len(ms)
}

// schemaSQL is every table and index definition of the journal.
func schemaSQL(tb testing.TB, s *Store) string {
	tb.Helper()
	rows, err := s.r.QueryContext(tb.Context(), "SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var typ, name, text string
		if err := rows.Scan(&typ, &name, &text); err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s: %s\n", typ, name, text)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

// ownerRow reads an owners row back.
func ownerRow(tb testing.TB, s *Store, id string) (executor.Owner, bool) {
	tb.Helper()
	o := executor.Owner{ID: id}
	var until int64
	err := s.r.QueryRowContext(tb.Context(), "SELECT kind, host, pid, until FROM owners WHERE id = ?", id).
		Scan(&o.Kind, &o.Host, &o.PID, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return executor.Owner{}, false
	}
	if err != nil {
		tb.Fatal(err)
	}
	o.Until = time.Unix(0, until).UTC()
	return o, true
}

// TestStore_CreateJob_concurrentBodyHash races CreateJob calls for one body
// under distinct delivery GUIDs (replays) from two Store handles on one file:
// the unique index lets exactly one record a job.
func TestStore_CreateJob_concurrentBodyHash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	stores := []*Store{mustOpen(t, path), mustOpen(t, path)}
	raceCreate(t, stores, func(i int) (executor.Job, []executor.Report) {
		j := queuedJob(fmt.Sprintf("j%02d", i), "production", executor.StateQueued, t0)
		j.Trigger.Delivery = fmt.Sprintf("guid-%02d", i)
		j.Trigger.BodyHash = bodyHash1
		return j, []executor.Report{{Job: j.ID, State: executor.StateQueued}}
	})
	var deliveries, owed int
	if err := stores[0].r.QueryRowContext(t.Context(), "SELECT count(*) FROM deliveries").Scan(&deliveries); err != nil || deliveries != 1 {
		t.Errorf("delivery rows = %d, %v; want 1 (the losers' GUIDs must not be recorded)", deliveries, err)
	}
	if err := stores[0].r.QueryRowContext(t.Context(), "SELECT count(*) FROM outbox").Scan(&owed); err != nil || owed != 1 {
		t.Errorf("owed reports = %d, %v; want 1", owed, err)
	}
}

// TestStore_Adopt_concurrent races Adopt calls for one orphan from two Store
// handles on one file (two processes recovering at once): exactly one wins,
// and the job ends up with the winner.
func TestStore_Adopt_concurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	stores := []*Store{mustOpen(t, path), mustOpen(t, path)}
	j := queuedJob("orphan", "production", executor.StateRunning, t0)
	j.Owner = "dead"
	mustCreate(t, stores[0], j)
	const n = 16
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = stores[i%2].Adopt(t.Context(), "orphan", "dead", fmt.Sprintf("p%02d", i))
		})
	}
	close(start)
	wg.Wait()
	var winners []string
	for i, err := range errs {
		switch {
		case err == nil:
			winners = append(winners, fmt.Sprintf("p%02d", i))
		case !errors.Is(err, executor.ErrNotFound):
			t.Errorf("Adopt %d: %v, want nil or ErrNotFound", i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d Adopt calls won (%v), want exactly 1", len(winners), winners)
	}
	if got := mustJob(t, stores[1], "orphan").Owner; got != winners[0] {
		t.Errorf("owner = %q, want the winner %q", got, winners[0])
	}
}

// pruneFixture records, on s, the jobs TestStore_Prune_rows prunes: production's
// p1..p9 created a minute apart (p3 its newest success, p5 and p9 not final),
// staging's s1 (its only success) and s2, each with a step and a delivery
// row, p1 with a body hash and an owed report.
func pruneFixture(t *testing.T, s *Store) {
	ctx := t.Context()
	jobs := []struct {
		id     string
		target string
		state  executor.State
		minute int
	}{
		{"p1", "production", executor.StateSuccess, 1},
		{"p2", "production", executor.StateFailure, 2},
		{"p3", "production", executor.StateSuccess, 3},
		{"p4", "production", executor.StateFailure, 4},
		{"p5", "production", executor.StateRunning, 5},
		{"p6", "production", "skipped", 6},
		{"p7", "production", executor.StateSuperseded, 7},
		{"p8", "production", executor.StateError, 8},
		{"p9", "production", executor.StateQueued, 9},
		{"s1", "staging", executor.StateSuccess, 1},
		{"s2", "staging", executor.StateFailure, 2},
	}
	for _, jj := range jobs {
		j := queuedJob(jj.id, jj.target, jj.state, t0.Add(time.Duration(jj.minute)*time.Minute))
		if jj.id == "p1" {
			j.Trigger.BodyHash = bodyHash1
		}
		var owe []executor.Report
		if jj.id == "p1" {
			owe = append(owe, executor.Report{Job: "p1", Target: "production", SHA: sha1, State: executor.StateSuccess})
		}
		if _, err := s.CreateJob(ctx, j, owe...); err != nil {
			t.Fatal(err)
		}
		if err := s.AddStep(ctx, executor.StepRun{Job: jj.id, Seq: 1, Name: "fetch", Output: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
}

// count returns the result of a count(*) query on the journal.
func count(tb testing.TB, s *Store, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := s.r.QueryRowContext(tb.Context(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestStore_Prune_rows: Prune deletes a job's steps and delivery rows with
// it and leaves no row dangling. (What it deletes and keeps is in the
// conformance suite.)
func TestStore_Prune_rows(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	pruneFixture(t, s)
	deleted := []string{"p8", "p7", "p6", "p4", "p2", "s2", "p1"}
	if n, err := s.Prune(ctx, t0.Add(time.Hour), 0); err != nil || n != len(deleted) {
		t.Fatalf("Prune = %d, %v; want %d, nil", n, err, len(deleted))
	}
	for _, id := range deleted {
		if n := count(t, s, "SELECT count(*) FROM steps WHERE job = ?", id); n != 0 {
			t.Errorf("%d steps of deleted job %s left", n, id)
		}
		if n := count(t, s, "SELECT count(*) FROM deliveries WHERE job = ?", id); n != 0 {
			t.Errorf("delivery row of deleted job %s left", id)
		}
	}
	left := count(t, s, "SELECT count(*) FROM jobs")
	if left != 11-len(deleted) {
		t.Errorf("%d jobs left, want %d", left, 11-len(deleted))
	}
	if got := count(t, s, "SELECT count(*) FROM steps"); got != left {
		t.Errorf("steps left = %d, want %d (one per job left)", got, left)
	}
	if got := count(t, s, "SELECT count(*) FROM deliveries"); got != left {
		t.Errorf("delivery rows left = %d, want %d", got, left)
	}
	if got := count(t, s, "SELECT count(*) FROM outbox"); got != 1 {
		t.Errorf("owed reports = %d, want 1 (p1's)", got)
	}
	if got := count(t, s, "SELECT count(*) FROM pragma_foreign_key_check"); got != 0 {
		t.Errorf("foreign_key_check after Prune found %d dangling rows", got)
	}
}

// TestStore_Prune_batches: one call deletes more than one batch.
func TestStore_Prune_batches(t *testing.T) {
	s := newStore(t)
	const n = 2*pruneBatch + 7
	insertJobs(t, s, "production", n, executor.StateFailure)
	got, err := s.Prune(t.Context(), t0.Add(time.Hour), 0)
	if err != nil || got != n {
		t.Errorf("Prune = %d, %v; want %d", got, err, n)
	}
	if left := count(t, s, "SELECT count(*) FROM jobs"); left != 0 {
		t.Errorf("%d jobs left, want 0", left)
	}
}

// insertJobs records n jobs of target in state, created a millisecond apart
// from t0, each with a step and a delivery, in one transaction (fast setup).
func insertJobs(tb testing.TB, s *Store, target string, n int, state executor.State) {
	tb.Helper()
	ctx := tb.Context()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	for i := range n {
		id := fmt.Sprintf("%s-%07d", target, i)
		created := t0.Add(time.Duration(i) * time.Millisecond).UnixNano()
		if _, err := tx.ExecContext(ctx, `INSERT INTO jobs (`+jobrow.JobColumns+`) VALUES (`+jobValues+`)`,
			id, target, "push", "acme/app", "main", sha1, "d-"+id, "octocat", "push", false,
			"", false, string(state), "", "", 0, "", created, nil, nil); err != nil {
			tb.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (guid, target, job) VALUES (?, ?, ?)`, "d-"+id, target, id); err != nil {
			tb.Fatal(err)
		}
		if err := putStep(ctx, tx, executor.StepRun{Job: id, Seq: 1, Name: "fetch", Output: "ok"}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// TestOpen_symlink: a journal file, or its -wal or -shm, that is a symbolic
// link is refused, and nothing it points to is created or changed (issue 8,
// item 10: Open followed the link and wrote where it pointed).
func TestOpen_symlink(t *testing.T) {
	tests := []struct {
		name string
		link string // which file is the link: "", "-wal", "-shm"
		real bool   // whether the link's target exists (a journal)
	}{
		{name: "journal links to a journal", link: "", real: true},
		{name: "dangling journal link", link: "", real: false},
		{name: "wal links elsewhere", link: "-wal", real: true},
		{name: "shm links elsewhere", link: "-shm", real: true},
		{name: "dangling wal link", link: "-wal", real: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "journal.db")
			elsewhere := filepath.Join(t.TempDir(), "elsewhere")
			var before []byte
			if tt.real {
				if err := os.WriteFile(elsewhere, []byte("someone else's file"), 0o600); err != nil {
					t.Fatal(err)
				}
				before = []byte("someone else's file")
			}
			if tt.link != "" {
				// A real journal next to the linked -wal or -shm.
				s := mustOpen(t, path)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				os.Remove(path + tt.link)
			}
			if err := os.Symlink(elsewhere, path+tt.link); err != nil {
				t.Fatal(err)
			}
			s, err := Open(t.Context(), newLogger(t), path)
			if err == nil {
				s.Close()
				t.Fatal("Open(symlinked journal) = nil error, want a refusal")
			}
			for _, want := range []string{path + tt.link + " is a symbolic link", "replace the link"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open error = %q, want it to contain %q", err, want)
				}
			}
			got, err := os.ReadFile(elsewhere)
			switch {
			case !tt.real && !errors.Is(err, os.ErrNotExist):
				t.Errorf("the link's target was created (%v)", err)
			case tt.real && string(got) != string(before):
				t.Errorf("the link's target changed: %q, %v", got, err)
			}
		})
	}
	t.Run("directory in the journal's place", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "journal.db")
		if err := os.Mkdir(path+"-wal", 0o700); err != nil {
			t.Fatal(err)
		}
		s, err := Open(t.Context(), newLogger(t), path)
		if err == nil {
			s.Close()
			t.Fatal("Open with a directory as -wal = nil error, want a refusal")
		}
		if !strings.Contains(err.Error(), "is not a regular file") {
			t.Errorf("Open error = %q, want it to say the file is not a regular file", err)
		}
	})
}
