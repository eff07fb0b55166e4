package metrics_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/ghstatus"
	"github.com/deployhook/deployhook/executor/remote"
	"github.com/deployhook/deployhook/executor/store"
	"github.com/deployhook/deployhook/internal/metrics"
)

// sha returns a full commit SHA numbered n.
func sha(n int) string { return fmt.Sprintf("%040x", 0xabc0000+n) }

// web is a target whose restart step (a checkpoint) fails for sha(3), except
// during the rollback.
var web = executor.Target{
	Name: "web", Repo: "acme/app", Branch: "main", Rollback: true,
	Steps: []executor.Step{
		{Name: "build", Run: "true", Timeout: time.Minute},
		{Name: "restart", Run: `[ "$DEPLOYHOOK_ROLLBACK" = true ] || [ "$DEPLOYHOOK_SHA" != ` + sha(3) + ` ] || exit 3`,
			Timeout: time.Minute, Checkpoint: true},
	},
}

// lazyQueue is the queue of an executor made after the Metrics that observe it.
type lazyQueue struct{ e *executor.Executor }

func (q *lazyQueue) Depth(target string) int { return q.e.Depth(target) }

// TestMetrics_Executor drives a real executor (SQLite journal, local shell)
// through a superseded job, a successful deploy and a failed one that rolled
// back, and scrapes exact counts: jobs by outcome, steps by phase and result,
// the rollback, the journal's writes, the queue and the outbox as they were
// and as they are, and the last success as the journal has it.
func TestMetrics_Executor(t *testing.T) {
	ctx := t.Context()
	lg := testLogger(t)
	st, err := store.Open(ctx, lg, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	q := &lazyQueue{}
	var now time.Time
	m := mustNew(t, metrics.Options{Version: "v1.2.3", Targets: []executor.Target{web}, Queue: q, Journal: st,
		Now: func() time.Time { return now }})
	ex, err := executor.New(lg, executor.Options{Targets: []executor.Target{web}, Observer: m, RetryMin: time.Millisecond},
		st, remote.NewLocal(lg, remote.LocalOptions{}), ghstatus.LogOnly(lg))
	if err != nil {
		t.Fatal(err)
	}
	q.e = ex

	manual := func(n int) executor.Trigger {
		return executor.Trigger{Kind: executor.KindManual, Repo: "acme/app", Branch: "main", SHA: sha(n), Actor: "octocat", Reason: "test", Force: true}
	}
	// Before Run: sha(1) waits, then sha(2) supersedes it.
	if _, err := ex.Enqueue(ctx, "web", manual(1)); err != nil {
		t.Fatal(err)
	}
	owed, err := st.Owed(ctx, 0)
	if err != nil || len(owed) != 1 {
		t.Fatalf("owed = %v, %v: want sha(1)'s queued report", owed, err)
	}
	now = owed[0].Created.Add(90 * time.Second)
	want(t, samples(t, scrape(t, m)), map[string]float64{
		`deployhook_queue_jobs{target="web"}`:                                     1,
		`deployhook_outbox_reports`:                                               1,
		`deployhook_outbox_oldest_age_seconds`:                                    90,
		`deployhook_build_info{goversion="` + goVersion() + `",version="v1.2.3"}`: 1,
	})
	if got := samples(t, scrape(t, m)); hasSeries(got, `deployhook_last_success_timestamp_seconds{target="web"}`) {
		t.Error("last success exported before any deploy succeeded")
	}
	second, err := ex.Enqueue(ctx, "web", manual(2))
	if err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ex.Run(runCtx) }()
	if j, err := ex.Wait(ctx, second.Job.ID); err != nil || j.State != executor.StateSuccess {
		t.Fatalf("sha(2): %+v, %v: want success", j, err)
	}
	third, err := ex.Enqueue(ctx, "web", manual(3))
	if err != nil {
		t.Fatal(err)
	}
	if j, err := ex.Wait(ctx, third.Job.ID); err != nil || j.State != executor.StateFailure {
		t.Fatalf("sha(3): %+v, %v: want failure", j, err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	last, err := st.LastSuccess(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}

	text := scrape(t, m)
	got := samples(t, text)
	want(t, got, map[string]float64{
		`deployhook_deploys_total{outcome="success",target="web"}`:    1,
		`deployhook_deploys_total{outcome="failure",target="web"}`:    1,
		`deployhook_deploys_total{outcome="superseded",target="web"}`: 1,
		`deployhook_deploys_total{outcome="error",target="web"}`:      0,
		`deployhook_deploys_total{outcome="skipped",target="web"}`:    0,
		`deployhook_rollbacks_total{result="ok",target="web"}`:        1,
		`deployhook_rollbacks_total{result="failed",target="web"}`:    0,
		// Only jobs that ran have a duration.
		`deployhook_deploy_duration_seconds_count{outcome="success",target="web"}`:                           1,
		`deployhook_deploy_duration_seconds_count{outcome="failure",target="web"}`:                           1,
		`deployhook_step_duration_seconds_count{phase="deploy",result="ok",step="build",target="web"}`:       2,
		`deployhook_step_duration_seconds_count{phase="deploy",result="ok",step="restart",target="web"}`:     1,
		`deployhook_step_duration_seconds_count{phase="deploy",result="failed",step="restart",target="web"}`: 1,
		`deployhook_step_duration_seconds_count{phase="rollback",result="ok",step="build",target="web"}`:     1,
		`deployhook_step_duration_seconds_count{phase="rollback",result="ok",step="restart",target="web"}`:   1,
		`deployhook_journal_write_duration_seconds_count{op="create_job"}`:                                   3,
		`deployhook_journal_write_errors_total{op="create_job"}`:                                             0,
		`deployhook_journal_write_errors_total{op="update_job"}`:                                             0,
		`deployhook_journal_write_errors_total{op="add_step"}`:                                               0,
		`deployhook_queue_jobs{target="web"}`:                                                                0,
		`deployhook_outbox_reports`:                                                                          0, // the shutdown flushed it
		`deployhook_outbox_oldest_age_seconds`:                                                               0,
		`deployhook_last_success_timestamp_seconds{target="web"}`:                                            float64(last.Finished.UnixNano()) / 1e9,
		`deployhook_scrape_errors_total{source="outbox"}`:                                                    0,
		`deployhook_scrape_errors_total{source="last_success"}`:                                              0,
	})
	for _, op := range []string{"update_job", "add_step", "settle", "beat"} {
		if s := `deployhook_journal_write_duration_seconds_count{op="` + op + `"}`; got[s] == 0 {
			t.Errorf("%s = 0: the executor's %s writes were not timed", s, op)
		}
	}
	if last.Trigger.SHA != sha(2) {
		t.Errorf("last success %s, want sha(2)", last.Trigger.SHA)
	}
	// The scrape is valid exposition that follows Prometheus' naming rules.
	promtool(t, text, "check", "metrics")
}

func hasSeries(got map[string]float64, s string) bool {
	_, ok := got[s]
	return ok
}
