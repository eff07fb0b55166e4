package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
)

// A replica whose PostgreSQL journal goes away says it is not ready, with a
// public reason (no host, port, database or driver error in it), and answers
// deliveries 503 so that GitHub (or the load balancer) sends them elsewhere;
// once the database is back it is ready again, without a restart. The
// database "goes away" behind a TCP proxy that cuts every connection and
// refuses new ones, as a stopped server or a failed-over Cloud SQL instance
// does. Invariant 1 (nothing recorded while the journal cannot take it) and 5
// (nothing public carries hostnames) are what it guards.
func TestReplicas_ReadyzDatabaseDown(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newSwitchProxy(t, u.Host)
	_, proxyPort, _ := strings.Cut(proxy.addr(), ":")
	u.Host = proxy.addr()
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	env := map[string]string{
		"DEPLOYHOOK_WEBHOOK_SECRET": testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN":   testToken,
		"DEPLOYHOOK_GITHUB_API_URL": gh.srv.URL + "/",
		"DEPLOYHOOK_DATABASE_URL":   u.String(),
	}
	p := startProgram(t, writeReplicaConfig(t, dir), filepath.Join(dir, "data"), func(k string) string { return env[k] })
	// Ready, and past its start-up recovery: it holds the lane.
	poll(t, "the replica to be ready and hold the lane", func() bool {
		code, body, err := readyz(p.url)
		pid, _ := laneHolder(t, db)
		return err == nil && code == http.StatusOK && body == "ready" && pid == os.Getpid()
	})

	proxy.setDown(true)
	var code int
	var body string
	poll(t, "the replica to say it is not ready", func() bool {
		code, body, err = readyz(p.url)
		return err == nil && code != http.StatusOK
	})
	var got struct{ Error string }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/readyz with the database down: %d %q: %v", code, body, err)
	}
	const want = "not ready: " + pgNotReady
	if code != http.StatusServiceUnavailable || got.Error != want {
		t.Errorf("/readyz with the database down = %d %q, want 503 %q", code, got.Error, want)
	}
	for _, secret := range []string{"127.0.0.1", proxyPort, u.Port(), strings.TrimPrefix(u.Path, "/"), "postgres", "dial", "connect"} {
		if strings.Contains(body, secret) {
			t.Errorf("/readyz body %q carries %q", body, secret)
		}
	}
	// A delivery is refused for now: GitHub redelivers it later.
	if code, out := deliver(t, p.url, "push", "down-1", pushBody(t, sha(1))); code != http.StatusServiceUnavailable {
		t.Errorf("push with the database down: %d %v, want 503", code, out)
	}

	proxy.setDown(false)
	poll(t, "the replica to be ready again", func() bool {
		code, body, err := readyz(p.url)
		return err == nil && code == http.StatusOK && body == "ready"
	})
	if code, out := deliver(t, p.url, "push", "up-1", pushBody(t, sha(1))); code != http.StatusAccepted {
		t.Errorf("push once the database is back: %d %v, want 202", code, out)
	}
	gh.waitFinal(t, sha(1), 2*time.Minute)
}

// A replica that starts while its PostgreSQL journal is down (a Cloud SQL
// maintenance, a failover, a database that starts after deployhook) stays
// up: it listens, answers /readyz 503 with the public reason and deliveries
// 503, records nothing, and keeps trying (the proxy sees its connections
// come again after the first refusals); once the database is back, it
// migrates the journal, becomes ready without a restart, and deploys. Before
// issue 11's follow-up deployhook serve exited. Invariants 1 (nothing
// recorded while the journal cannot take it) and 5 (no hostnames in public
// text) are what it guards.
func TestReplicas_DatabaseDownAtStart(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newSwitchProxy(t, u.Host)
	proxy.setDown(true)
	u.Host = proxy.addr()
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	env := map[string]string{
		"DEPLOYHOOK_WEBHOOK_SECRET": testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN":   testToken,
		"DEPLOYHOOK_GITHUB_API_URL": gh.srv.URL + "/",
		"DEPLOYHOOK_DATABASE_URL":   u.String(),
	}
	p := startProgram(t, writeReplicaConfig(t, dir), filepath.Join(dir, "data"), func(k string) string { return env[k] })

	// The open's connection, the executor's first start-up attempt and at
	// least two retries after it were refused, and it still serves.
	poll(t, "the replica to retry its start-up recovery", func() bool { return proxy.refusals() >= 4 })
	select {
	case err := <-p.done:
		p.cancel = nil
		t.Fatalf("deployhook serve exited while the database was down at start: %v", err)
	default:
	}
	code, body, err := readyz(p.url)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Error string }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/readyz with the database down at start: %d %q: %v", code, body, err)
	}
	if want := "not ready: " + pgNotReady; code != http.StatusServiceUnavailable || got.Error != want {
		t.Errorf("/readyz with the database down at start = %d %q, want 503 %q", code, got.Error, want)
	}
	if code, out := deliver(t, p.url, "push", "down-1", pushBody(t, sha(1))); code != http.StatusServiceUnavailable {
		t.Errorf("push with the database down at start: %d %v, want 503", code, out)
	}
	if s := gh.of(sha(1)); len(s) != 0 {
		t.Errorf("statuses of %s reported while the database was down: %+v", sha(1)[:7], s)
	}

	proxy.setDown(false)
	poll(t, "the replica to be ready once the database is back", func() bool {
		code, body, err := readyz(p.url)
		return err == nil && code == http.StatusOK && body == "ready"
	})
	poll(t, "the replica to take the lane", func() bool {
		pid, _ := laneHolder(t, db)
		return pid == os.Getpid()
	})
	if code, out := deliver(t, p.url, "push", "up-1", pushBody(t, sha(1))); code != http.StatusAccepted {
		t.Errorf("push once the database is back: %d %v, want 202", code, out)
	}
	ss := gh.waitFinal(t, sha(1), 2*time.Minute)
	if last := ss[len(ss)-1]; last.State != "success" {
		t.Errorf("last status of %s = %s %q, want success", sha(1)[:7], last.State, last.Description)
	}
}

// replayOf finds the job in the answer to a replayed body.
var replayOf = regexp.MustCompile(`^this delivery's body was seen before as job (\S+) `)

// TestReplicas_ThreeServe runs three deployhook serve processes (the test
// binary run as the program, as TestChaos_Invariants does) as replicas of one
// real PostgreSQL journal, deploying to one local target whose steps take the
// real deploy lock and mark their start and end. It sends signed pushes of
// many SHAs, ten deliveries of each at once spread round-robin across the live
// replicas (replays with the same body and the same push re-signed with
// another body), and kills -9 the replica holding the target's lane in the
// middle of a deploy. Then:
//
//   - every delivery of a SHA was answered with the same one job;
//   - each SHA's job deployed exactly once (success), or was superseded
//     without running, or is the killed deploy, ended as interrupted by the
//     replica that took the lane over; the last SHA is deployed;
//   - no two jobs' steps overlapped on the target, the killed deploy's included;
//   - every SHA is final on GitHub, with its job's state;
//   - the lane moved to another replica, which deployed again.
//
// It logs how long the lane took to move (from the kill to the new holder's
// first step; the lane lease is 15 s). DEPLOYHOOK_REPLICAS_SHAS sets how many
// SHAs (default 30; make replicas sends 300). Invariants 3 and 4 of DESIGN.md
// are what it guards, across processes.
func TestReplicas_ThreeServe(t *testing.T) {
	n := 30
	if s := os.Getenv("DEPLOYHOOK_REPLICAS_SHAS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 6 {
			t.Fatalf("DEPLOYHOOK_REPLICAS_SHAS=%q: want a number of at least 6", s)
		}
		n = v
	}
	const perSHA = 10
	killAt := n / 3

	db := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	cfg := writeReplicaConfig(t, dir)
	markers := filepath.Join(dir, "markers")
	gh := newFakeGitHub(t)
	env := []string{
		"DEPLOYHOOK_WEBHOOK_SECRET=" + testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN=" + testToken,
		"DEPLOYHOOK_GITHUB_API_URL=" + gh.srv.URL + "/",
		"DEPLOYHOOK_DATABASE_URL=" + db,
	}
	reps := make([]*chaosProgram, 3)
	logs := make([]string, 3)
	for i := range reps {
		logs[i] = filepath.Join(dir, fmt.Sprintf("replica-%d.log", i))
		p, err := startChaosProgram(t, cfg, filepath.Join(dir, fmt.Sprintf("data-%d", i)), logs[i], env)
		if err != nil {
			t.Fatal(err)
		}
		reps[i] = p
	}
	t.Cleanup(func() {
		for _, p := range reps {
			if !p.exited() {
				p.stop()
			}
		}
		if t.Failed() {
			for i, l := range logs {
				t.Logf("replica %d's log, its end:\n%s", i, tailFile(l, 40))
			}
		}
	})
	pids := map[int]int{} // process id → replica
	for i, p := range reps {
		pids[p.cmd.Process.Pid] = i
		poll(t, fmt.Sprintf("replica %d to be ready", i), func() bool {
			code, _, err := readyz(p.url)
			return err == nil && code == http.StatusOK
		})
	}
	poll(t, "a replica to hold the lane", func() bool {
		pid, _ := laneHolder(t, db)
		_, ok := pids[pid]
		return ok
	})

	killed := -1
	var killedAt, laneMoved time.Time
	var orphan sync.WaitGroup // releases the killed replica's step
	var killToken int64
	live := func() []*chaosProgram {
		var out []*chaosProgram
		for i, p := range reps {
			if i != killed {
				out = append(out, p)
			}
		}
		return out
	}
	started := func(job string) bool {
		return slices.ContainsFunc(stepRuns(t, markers), func(inv *invocation) bool { return inv.job == job })
	}
	jobOf := map[string]string{} // SHA → its one job
	next := 0                    // the round-robin's next replica
	deliveries := 0
	for i := 1; i <= n; i++ {
		s := sha(100 + i)
		hold := filepath.Join(dir, "hold-"+s)
		if i == killAt {
			writeFile(t, hold, "", 0o644)
		}
		// Even deliveries replay one body under new GUIDs; odd ones are the
		// same push with another body (its pushed_at differs).
		bodies := make([][]byte, perSHA)
		for k := range bodies {
			stamp := i * 100
			if k%2 == 1 {
				stamp += k
			}
			bodies[k] = chaosPushBody(t, s, sha(99+i), stamp)
		}
		to := live()
		answers := make([]answer, perSHA)
		errs := make([]error, perSHA)
		var wg sync.WaitGroup
		for k := range perSHA {
			p := to[(next+k)%len(to)]
			wg.Go(func() {
				answers[k], errs[k] = post(p.url, "push", fmt.Sprintf("replica-%d-%d", i, k), bodies[k], sign(bodies[k]))
			})
		}
		wg.Wait()
		next += perSHA
		deliveries += perSHA
		ids := map[string]bool{}
		for k, a := range answers {
			switch {
			case errs[k] != nil:
				t.Fatalf("delivery %d of %s: %v", k, s[:7], errs[k])
			case a.code == http.StatusAccepted && a.job != "":
				ids[a.job] = true
			case a.code == http.StatusOK && a.duplicate != "":
				ids[a.duplicate] = true
			case a.code == http.StatusOK && k%2 == 0 && replayOf.MatchString(a.ignored):
				// A replay: its body was recorded, by this or another replica.
				ids[replayOf.FindStringSubmatch(a.ignored)[1]] = true
			default:
				t.Fatalf("delivery %d of %s: %d %s, want 202 with a job, 200 with a duplicate or (a replay) ignored", k, s[:7], a.code, a.text)
			}
		}
		if len(ids) != 1 {
			t.Fatalf("the %d deliveries of %s were answered with jobs %v, want one", perSHA, s[:7], slices.Sorted(maps.Keys(ids)))
		}
		for id := range ids {
			jobOf[s] = id
		}

		switch {
		case i == killAt:
			// Kill the lane's holder in the middle of this deploy's first step.
			poll(t, "the deploy of "+s[:7]+" to start", func() bool { return started(jobOf[s]) })
			pid, tok := laneHolder(t, db)
			k, ok := pids[pid]
			if !ok {
				t.Fatalf("the lane is held by process %d, none of the replicas %v", pid, pids)
			}
			killed, killToken = k, tok
			reps[k].kill()
			killedAt = time.Now()
			t.Logf("killed replica %d (kill -9), the lane's holder, in the middle of the deploy of %s", k, s[:7])
			// Its step, if it outlives it, is held until another replica
			// has taken the lane: that one's steps must then wait for it
			// (the deploy lock). The deliveries go on meanwhile.
			orphan.Go(func() {
				for {
					if _, tok, err := readLaneHolder(context.Background(), db); err == nil && tok > killToken {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				laneMoved = time.Now()
				if err := os.Remove(hold); err != nil {
					t.Error(err)
				}
			})
		case i%3 == 0:
			// Let the lane take this one before the next SHA arrives (the
			// others may be superseded while a deploy runs).
			p := live()[0]
			poll(t, "the job of "+s[:7]+" to start or end", func() bool {
				if started(jobOf[s]) {
					return true
				}
				j, err := fetchJob(p.url, jobOf[s])
				return err == nil && finalState(j.State)
			})
		}
	}

	orphan.Wait()

	// Every SHA ends final on GitHub.
	last := map[string]status{}
	for i := 1; i <= n; i++ {
		ss := gh.waitFinal(t, sha(100+i), 2*time.Minute)
		last[sha(100+i)] = ss[len(ss)-1]
	}
	runs := stepRuns(t, markers)
	if a, b := overlap(runs); a != nil {
		t.Errorf("steps of two jobs overlapped on the target: %s of %s [%d, %d] and %s of %s [%d, %d]",
			a.tool, a.job, a.start, a.last, b.tool, b.job, b.start, b.last)
	}
	runsOf := map[string][]*invocation{}
	for _, inv := range runs {
		runsOf[inv.job] = append(runsOf[inv.job], inv)
	}
	check := live()[0]
	deployed, superseded := 0, 0
	for i := 1; i <= n; i++ {
		s := sha(100 + i)
		id := jobOf[s]
		j, err := fetchJob(check.url, id)
		if err != nil {
			t.Fatalf("job %s of %s: %v", id, s[:7], err)
		}
		var steps []string
		for _, inv := range runsOf[id] {
			steps = append(steps, inv.tool)
			if !inv.ended && i != killAt {
				t.Errorf("step %s of job %s (%s) did not end", inv.tool, id, s[:7])
			}
		}
		switch {
		case i == killAt:
			// The step's wrapper kills it when its deployhook goes away
			// (its stdin closes); had it run on, the deploy lock would have
			// kept the next holder's steps waiting. Either way the overlap
			// check above holds.
			t.Logf("the killed deploy's step on the target: %s; killed at %d, the lane moved at %d",
				invocations(runsOf[id]), killedAt.UnixNano(), laneMoved.UnixNano())
			if j.State != "error" || j.Description != "interrupted: the deployhook that ran it stopped; target state unknown" ||
				!slices.Equal(steps, []string{"checkout"}) {
				t.Errorf("the killed deploy of %s: %s %q, steps %v; want error, interrupted, after its checkout step", s[:7], j.State, j.Description, steps)
			}
		case j.State == "success":
			deployed++
			if !slices.Equal(steps, []string{"checkout", "restart"}) {
				t.Errorf("job %s of %s succeeded with the steps %v on the target, want checkout, restart once", id, s[:7], steps)
			}
		case j.State == "superseded" && strings.HasPrefix(j.Description, "superseded by "):
			superseded++
			if len(steps) != 0 {
				t.Errorf("job %s of %s was superseded after it ran %v", id, s[:7], steps)
			}
		default:
			t.Errorf("job %s of %s ended %s %q, want success or superseded", id, s[:7], j.State, j.Description)
		}
		want := j.State
		if want == "superseded" {
			want = "error" // a commit status has no such state
		}
		if st := last[s]; st.State != want || st.Description != j.Description {
			t.Errorf("GitHub's last status of %s = %s %q, want %s %q (job %s)", s[:7], st.State, st.Description, want, j.Description, j.State)
		}
		delete(runsOf, id)
	}
	if len(runsOf) != 0 {
		t.Errorf("steps of jobs the test did not cause: %v", slices.Sorted(maps.Keys(runsOf)))
	}
	if j, _ := fetchJob(check.url, jobOf[sha(100+n)]); j.State != "success" {
		t.Errorf("the last SHA's job ended %s %q, want success", j.State, j.Description)
	}

	// The lane moved: another replica holds it, with a newer token, and ran
	// the next deploy.
	pid, tok := laneHolder(t, db)
	if k, ok := pids[pid]; !ok || k == killed || tok <= killToken {
		t.Errorf("the lane is held by process %d (replica %d) with token %d; want another replica than %d, token above %d", pid, k, tok, killed, killToken)
	}
	var first *invocation
	for _, inv := range runs {
		if inv.start > killedAt.UnixNano() && inv.job != jobOf[sha(100+killAt)] && (first == nil || inv.start < first.start) {
			first = inv
		}
	}
	if first == nil {
		t.Fatal("no deploy ran after the kill")
	}
	t.Logf("%d SHAs, %d deliveries across 3 replicas: %d deployed, %d superseded, 1 killed. After the kill -9, the lane moved in %v (lane lease %v), and the next holder's first step started %v after the kill",
		n, deliveries, deployed, superseded, laneMoved.Sub(killedAt).Round(time.Millisecond), executor.DefaultLaneLease,
		time.Duration(first.start-killedAt.UnixNano()).Round(time.Millisecond))
}
