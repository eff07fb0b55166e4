package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChaos_Invariants drives the real program (deployhook serve in a child
// process) against a real sshd and a real git origin with a few hundred random
// events, and checks DESIGN's safety invariants after every one of them:
//
//  1. at most one deploy's step processes are alive on the VM at any moment:
//     the markers the stand-ins write (with timestamps and pids) never overlap
//     across jobs, and no two jobs' processes are alive at once;
//  2. the VM's commit moves backwards only through an explicit rollback or
//     dispatch by a person (checked with git merge-base --is-ancestor on the
//     origin), and no automatic trigger deploys a commit deployed before;
//  3. the VM never runs a commit that is not on the branch;
//  4. every commit that got pending on GitHub ends final, and every job ends,
//     once the queue drains and GitHub answers again;
//  5. the journal's last successful deploy (deployhook status) is what the VM
//     runs.
//
// The events: pushes of new commits delivered in random order; CI runs
// (workflow_run) of those commits in any order, re-runs of old ones included;
// replays of earlier deliveries (same body and signature, new GUID) and
// redeliveries (same GUID); workflow_dispatch deploys and rollbacks by a
// person; a commit that is not on the branch (a tag named like the branch)
// offered by a CI run and by a dispatch rollback; connection cuts (a TCP proxy
// between deployhook and sshd, cut at random moments, often mid-step); kill -9
// of deployhook and a restart on the same data_dir; GitHub answering 500 for a
// few seconds. Restarts switch the target between deploy_on push and
// workflow_run at random, so both triggers deploy during a run.
//
// The run is reproducible in its events, not in their timing: the seed comes
// from DEPLOYHOOK_CHAOS_SEED, else a fixed default under CI (a random one
// elsewhere), and every failure prints it with the events before it.
// DEPLOYHOOK_CHAOS_EVENTS and DEPLOYHOOK_CHAOS_DURATION make a longer run
// (defaults: 300 events, at most 90 s of events, which keeps the test at about
// two minutes); DEPLOYHOOK_CHAOS_KINDS (comma-separated names of
// chaosEvents) runs only some kinds of event.
//
// On main before issue 8, it fails: replays and late CI runs move the VM
// backwards (2), a dispatch rollback deploys the commit off the branch (3), and
// a cut or a kill leaves a step running while the next deploy starts (1).
func TestChaos_Invariants(t *testing.T) {
	seed, events, budget, kinds := chaosSettings(t)
	t.Logf("chaos seed %d, at most %d events in %v (DEPLOYHOOK_CHAOS_SEED, DEPLOYHOOK_CHAOS_EVENTS, DEPLOYHOOK_CHAOS_DURATION, DEPLOYHOOK_CHAOS_KINDS)", seed, events, budget)
	v := newVM(t, vmOptions{})
	gh := newFakeGitHub(t)
	c := newChaosRun(t, seed, v, gh)
	c.kinds = kinds
	c.restart(false, "start")
	for i := 1; i <= events && time.Since(c.begin) < budget; i++ {
		c.ev = i
		c.event()
		c.check()
		c.sleep(c.rng.IntN(250))
	}
	c.ev++
	c.finish()
	backwards, restores := 0, 0
	for _, co := range c.checkouts {
		if co.rollback {
			restores++
		} else if co.back {
			backwards++
		}
	}
	t.Logf("chaos seed %d: %d events, %d deliveries, %d jobs, %d checkouts (%d backwards, %d automatic rollbacks), %d restarts of deployhook in %v",
		seed, c.ev-1, c.nDelivery, len(c.jobs), len(c.checkouts), backwards, restores, c.starts-1, time.Since(c.begin).Round(time.Second))
}

// chaosDefaultSeed is the seed under CI when DEPLOYHOOK_CHAOS_SEED is not set.
const chaosDefaultSeed = 8

func chaosSettings(t *testing.T) (seed uint64, events int, budget time.Duration, kinds []chaosEvent) {
	t.Helper()
	kinds = chaosEvents
	if s := os.Getenv("DEPLOYHOOK_CHAOS_KINDS"); s != "" {
		kinds = nil
		for _, name := range strings.Split(s, ",") {
			i := slices.IndexFunc(chaosEvents, func(e chaosEvent) bool { return e.name == strings.TrimSpace(name) })
			if i < 0 {
				var names []string
				for _, e := range chaosEvents {
					names = append(names, e.name)
				}
				t.Fatalf("DEPLOYHOOK_CHAOS_KINDS: no event kind %q (kinds: %s)", name, strings.Join(names, ","))
			}
			kinds = append(kinds, chaosEvents[i])
		}
	}
	events, budget = 300, 90*time.Second
	if testing.Short() {
		events, budget = 60, 20*time.Second
	}
	switch s := os.Getenv("DEPLOYHOOK_CHAOS_SEED"); {
	case s != "":
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DEPLOYHOOK_CHAOS_SEED=%q: want a number", s)
		}
		seed = n
	case os.Getenv("CI") != "":
		seed = chaosDefaultSeed
	default:
		seed = uint64(time.Now().UnixNano() % 1_000_000)
	}
	if s := os.Getenv("DEPLOYHOOK_CHAOS_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("DEPLOYHOOK_CHAOS_EVENTS=%q: want a positive number", s)
		}
		events = n
		budget = max(budget, time.Duration(n)*time.Second)
	}
	if s := os.Getenv("DEPLOYHOOK_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("DEPLOYHOOK_CHAOS_DURATION=%q: want a Go duration such as 10m", s)
		}
		budget = d
	}
	return seed, events, budget, kinds
}

// chaosRun is one run of TestChaos_Invariants: the VM, the fake GitHub, the
// proxy, the program, what the test sent, and the model of the VM the
// invariants are checked against.
type chaosRun struct {
	t     *testing.T
	seed  uint64
	rng   *mrand.Rand
	begin time.Time
	ev    int // the current event's number

	v          *vm
	gh         *fakeGitHub
	proxy      *cutProxy
	dir        string // configurations and deployhook's log
	data       string // data_dir
	logFile    string
	markers    string
	token      string // CHAOS_VM in the target's env: marks every step process
	knownHosts string
	lock       string
	env        []string

	kinds []chaosEvent // the kinds of event enabled

	prog   *chaosProgram
	cfg    string // the running program's configuration
	mode   string // its deploy_on
	starts int

	commits     []string          // the branch, oldest first
	labels      map[string]string // sha → c12, OFF
	onBranch    map[string]bool
	undelivered []string // pushed to origin, push not delivered yet
	off         string   // the commit that is not on the branch
	runs        map[string]int64
	attempts    map[string]int
	sent        []*delivery
	jobs        map[string]*jobRecord
	nDelivery   int

	log      []logEntry
	violated map[string]bool // the invariants (and parts) reported

	// The model, from the markers.
	markerOff int64
	partial   string
	live      map[int]*invocation // pid → its latest invocation
	invs      []*invocation
	checkouts []checkout
	cur       string            // the VM's commit, as the markers tell
	before    map[string]string // job → the VM's commit when it started
	ancestors map[[2]string]bool
}

// delivery is a signed delivery the test sent, kept for replays.
type delivery struct {
	event, guid string
	body        []byte
	sig         string
	what        string // push, ci-run, dispatch-deploy, ...
	sha         string
	explicit    bool // a person's dispatch
	jobs        int  // jobs made by this body, under any GUID
}

// jobRecord is what the test knows of a job it caused.
type jobRecord struct {
	id       string
	what     string
	sha      string // the SHA deployhook said it queued
	explicit bool   // a person asked for it (a dispatch, never a replay)
	event    int
}

type logEntry struct {
	n    int
	at   time.Duration
	text string
}

func newChaosRun(t *testing.T, seed uint64, v *vm, gh *fakeGitHub) *chaosRun {
	t.Helper()
	c := &chaosRun{
		t: t, seed: seed, rng: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), begin: time.Now(),
		v: v, gh: gh, dir: t.TempDir(),
		labels: map[string]string{}, onBranch: map[string]bool{},
		runs: map[string]int64{}, attempts: map[string]int{}, jobs: map[string]*jobRecord{},
		violated: map[string]bool{}, live: map[int]*invocation{}, before: map[string]string{},
		ancestors: map[[2]string]bool{},
	}
	var tok [6]byte
	_, _ = rand.Read(tok[:])
	c.token = hex.EncodeToString(tok[:])
	c.data = filepath.Join(c.dir, "data")
	c.logFile = filepath.Join(c.dir, "deployhook.log")
	c.markers = filepath.Join(v.dir, "markers")
	installChaosStandIns(t, v, c.markers)

	// deployhook reaches sshd through the proxy: pin sshd's host key for it.
	c.proxy = newCutProxy(t, v.srv.Addr)
	kh, err := os.ReadFile(v.srv.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(c.proxy.addr(), ":")
	c.knownHosts = filepath.Join(c.dir, "known_hosts")
	writeFile(t, c.knownHosts, regexp.MustCompile(`^\[127\.0\.0\.1\]:\d+`).ReplaceAllString(string(kh), "[127.0.0.1]:"+port), 0o600)
	// The lock lives in a directory only the login user can write.
	mkdir(t, filepath.Join(c.dir, "lock"), 0o700)
	c.lock = filepath.Join(c.dir, "lock", "deploy.lock")
	c.env = []string{
		"DEPLOYHOOK_WEBHOOK_SECRET=" + testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN=" + testToken,
		"DEPLOYHOOK_GITHUB_API_URL=" + gh.srv.URL + "/",
	}

	c.commits = []string{v.first}
	c.labels[v.first], c.onBranch[v.first] = "c0", true
	c.cur = v.first
	c.setHead(v.first)
	// The commit that is not on the branch: on top of the first, pushed to a
	// tag named like the branch, and present in the VM's clone (as after a
	// "git fetch --tags" on the VM), so only deployhook's checks keep it out.
	tree := v.run(t, v.work, "rev-parse", v.first+"^{tree}")
	c.off = v.run(t, v.work, "commit-tree", tree, "-p", v.first, "-m", "not on main")
	v.run(t, v.work, "push", "--quiet", v.origin, c.off+":refs/tags/main")
	v.run(t, v.app, "fetch", "--quiet", "origin", "refs/tags/main:refs/tags/main")
	c.labels[c.off] = "OFF"
	c.mode = []string{"push", "workflow_run"}[c.rng.IntN(2)]

	t.Cleanup(func() {
		if c.prog != nil && !c.prog.exited() {
			c.prog.kill()
		}
		for _, p := range stepProcesses(c.token) {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	})
	return c
}

// chaosEvent is one kind of event of the run.
type chaosEvent struct {
	name   string
	weight int
	do     func(c *chaosRun) bool // false: not possible now, pick another
}

// chaosEvents are the kinds of event and how often each happens.
var chaosEvents = []chaosEvent{
	{"push", 14, func(c *chaosRun) bool { c.deliverPush(c.newCommit()); return true }},
	{"commit", 5, func(c *chaosRun) bool { c.undelivered = append(c.undelivered, c.newCommit()); return true }},
	{"late-push", 8, (*chaosRun).deliverLatePush},
	{"ci-run", 10, func(c *chaosRun) bool { return c.ciRun(false) }},
	{"ci-rerun", 6, func(c *chaosRun) bool { return c.ciRun(true) }},
	{"off-branch-run", 3, func(c *chaosRun) bool { return c.runOf(c.off, "main") }},
	{"replay", 10, func(c *chaosRun) bool { return c.resend(true) }},
	{"redelivery", 3, func(c *chaosRun) bool { return c.resend(false) }},
	{"dispatch-deploy", 4, func(c *chaosRun) bool { return c.dispatch("deploy", c.anyCommit()) }},
	{"dispatch-head", 2, func(c *chaosRun) bool { return c.dispatch("deploy", "") }},
	{"dispatch-rollback", 4, func(c *chaosRun) bool { return c.dispatch("rollback", c.anyCommit()) }},
	{"dispatch-rollback-previous", 2, func(c *chaosRun) bool { return c.dispatch("rollback", "") }},
	{"dispatch-rollback-off-branch", 3, func(c *chaosRun) bool { return c.dispatch("rollback", c.off) }},
	{"dispatch-deploy-off-branch", 1, func(c *chaosRun) bool { return c.dispatch("deploy", c.off) }},
	{"cut", 8, (*chaosRun).cut},
	{"kill", 5, func(c *chaosRun) bool { c.restart(true, "kill -9"); return true }},
	{"restart", 1, func(c *chaosRun) bool { c.restart(false, "restart"); return true }},
	{"outage", 4, (*chaosRun).outage},
	{"pause", 7, func(c *chaosRun) bool {
		d := 200 + c.rng.IntN(800)
		c.logf("pause %dms", d)
		c.sleep(d)
		return true
	}},
}

// event picks the next event at random among the enabled kinds and does it.
func (c *chaosRun) event() {
	total := 0
	for _, e := range c.kinds {
		total += e.weight
	}
	for {
		n := c.rng.IntN(total)
		for _, e := range c.kinds {
			if n -= e.weight; n < 0 {
				if e.do(c) {
					return
				}
				break
			}
		}
	}
}

// newCommit commits to the branch and pushes it to the origin. Some commits
// crash the app (the deploy fails verification and rolls back), some change
// uv.lock (sync runs); each restart of the app takes a random time.
func (c *chaosRun) newCommit() string { return c.commit(true) }

// commit commits to the branch; crash allows a commit that crashes the app.
func (c *chaosRun) commit(crash bool) string {
	n := len(c.commits)
	files := map[string]string{"app.py": fmt.Sprintf("print(%d)\n", n)}
	if c.rng.IntN(8) == 0 && crash {
		files["app.py"] = fmt.Sprintf("raise SystemExit('CRASH %d')\n", n)
	}
	if c.rng.IntN(6) == 0 {
		files["uv.lock"] = fmt.Sprintf("version = %d\n", n)
	}
	sha := c.v.commit(c.t, fmt.Sprintf("change %d", n), files)
	ticks := 2 + c.rng.IntN(15)
	if c.rng.IntN(10) == 0 {
		ticks = 40
	}
	writeFile(c.t, filepath.Join(c.v.ctl, "dur-"+sha), strconv.Itoa(ticks), 0o644)
	c.commits = append(c.commits, sha)
	c.labels[sha], c.onBranch[sha] = fmt.Sprintf("c%d", n), true
	c.setHead(sha)
	what := ""
	if strings.Contains(files["app.py"], "CRASH") {
		what += ", crashes"
	}
	if files["uv.lock"] != "" {
		what += ", uv.lock"
	}
	c.logf("commit %s (restart %dms%s)", c.label(sha), ticks*50, what)
	return sha
}

func (c *chaosRun) setHead(sha string) {
	c.gh.mu.Lock()
	c.gh.head = sha
	c.gh.mu.Unlock()
}

func (c *chaosRun) deliverPush(sha string) {
	i := slices.Index(c.commits, sha)
	c.send("push", "push", chaosPushBody(c.t, sha, c.commits[i-1], c.nDelivery), false, sha)
}

func (c *chaosRun) deliverLatePush() bool {
	if len(c.undelivered) == 0 {
		return false
	}
	i := c.rng.IntN(len(c.undelivered))
	sha := c.undelivered[i]
	c.undelivered = slices.Delete(c.undelivered, i, i+1)
	c.deliverPush(sha)
	return true
}

// ciRun delivers a successful CI run of a recent commit, or (rerun) a further
// attempt of a commit's run.
func (c *chaosRun) ciRun(rerun bool) bool {
	var sha string
	if rerun {
		var ran []string
		for _, s := range c.commits {
			if c.attempts[s] > 0 {
				ran = append(ran, s)
			}
		}
		if len(ran) == 0 {
			return false
		}
		sha = ran[c.rng.IntN(len(ran))]
	} else {
		if len(c.commits) < 2 {
			return false
		}
		recent := c.commits[max(1, len(c.commits)-6):]
		sha = recent[c.rng.IntN(len(recent))]
	}
	return c.runOf(sha, "main")
}

func (c *chaosRun) runOf(sha, branch string) bool {
	if c.runs[sha] == 0 {
		c.runs[sha] = 9000 + int64(len(c.runs))
	}
	c.attempts[sha]++
	what := "ci-run"
	if c.attempts[sha] > 1 {
		what = fmt.Sprintf("ci-rerun(attempt %d)", c.attempts[sha])
	}
	c.send("workflow_run", what, chaosRunBody(c.t, sha, branch, c.runs[sha], c.attempts[sha], c.nDelivery), false, sha)
	return true
}

// resend sends an earlier delivery again: a replay under a new GUID (anyone
// holding an old signed delivery can), or a redelivery with the same GUID (as
// GitHub's "Redeliver" does).
func (c *chaosRun) resend(replay bool) bool {
	if len(c.sent) == 0 {
		return false
	}
	d := c.sent[c.rng.IntN(len(c.sent))]
	guid, what := d.guid, "redelivery of "+d.guid[:8]
	if replay {
		guid, what = c.guid(), "replay of "+d.guid[:8]
	}
	what += " (" + d.what + ")"
	// A person's dispatch that made no job yet (answered 503, say) is still
	// that person's request when it arrives again; once it made a job, any
	// copy is a replay, which no person asked for.
	c.post(d, guid, what, d.explicit && d.jobs == 0)
	return true
}

// anyCommit returns a commit of the branch, the newer ones more often.
func (c *chaosRun) anyCommit() string {
	n := len(c.commits)
	if c.rng.IntN(2) == 0 {
		return c.commits[max(0, n-1-c.rng.IntN(3))]
	}
	return c.commits[c.rng.IntN(n)]
}

// dispatch delivers a workflow_dispatch by a person: action deploy or
// rollback, with a sha input or without one.
func (c *chaosRun) dispatch(action, sha string) bool {
	in := map[string]any{"action": action}
	if sha != "" {
		in["sha"] = sha
	}
	c.send("workflow_dispatch", "dispatch-"+action, chaosDispatchBody(c.t, in, c.nDelivery), true, sha)
	return true
}

// cut cuts every connection between deployhook and sshd: often while the
// app restarts (the longest step), and then often with a new commit to deploy
// right away, so the next deploy starts while the cut one may still run.
//
// Every random choice is drawn whatever the timing, so the events that follow
// depend on the seed alone.
func (c *chaosRun) cut() bool {
	wantMid, delay, follow := c.rng.IntN(3) > 0, c.rng.IntN(150), c.rng.IntN(2) == 0
	mid := wantMid && c.waitStep(true)
	if mid {
		c.sleep(delay)
	}
	hit := jobsOf(stepProcesses(c.token))
	n := c.proxy.cut()
	c.logf("cut %d connections (mid-restart: %v; steps of jobs %v running)", n/2, mid, hit)
	if wantMid && follow {
		c.deployNew()
	}
	return true
}

// deployNew commits and delivers what deploys it under the current deploy_on.
func (c *chaosRun) deployNew() string { return c.deploy(c.newCommit()) }

func (c *chaosRun) deploy(sha string) string {
	if c.mode == "push" {
		c.deliverPush(sha)
	} else {
		c.runOf(sha, "main")
	}
	return sha
}

// outage makes GitHub answer 500 for a few seconds.
func (c *chaosRun) outage() bool {
	d := time.Duration(1000+c.rng.IntN(4000)) * time.Millisecond
	c.gh.mu.Lock()
	c.gh.failFor = time.Now().Add(d)
	c.gh.mu.Unlock()
	c.logf("GitHub answers 500 for %v", d)
	return true
}

// waitStep waits (a little) until a step runs on the VM; with restart, until
// the app restarts.
func (c *chaosRun) waitStep(restart bool) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, p := range stepProcesses(c.token) {
			if !restart || strings.Contains(p.args, "systemctl --no-ask-password restart") {
				return true
			}
		}
	}
	return false
}

// restart (re)starts deployhook on the same data_dir: after a kill -9 (often
// mid-step) or a SIGTERM; half the restarts switch deploy_on.
func (c *chaosRun) restart(kill bool, what string) {
	mid := false
	var hit []string
	wantMid, restartOnly, delay, follow := c.rng.IntN(3) > 0, c.rng.IntN(2) == 0, c.rng.IntN(150), c.rng.IntN(2) == 0
	if c.prog != nil {
		if kill {
			mid = wantMid && c.waitStep(restartOnly)
			if mid {
				c.sleep(delay)
			}
			hit = jobsOf(stepProcesses(c.token))
			c.prog.kill()
		} else {
			c.prog.stop()
		}
		if c.rng.IntN(2) == 0 {
			c.mode = map[string]string{"push": "workflow_run", "workflow_run": "push"}[c.mode]
		}
	}
	c.cfg = c.writeConfig()
	c.starts++
	f, err := os.OpenFile(c.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err == nil {
		fmt.Fprintf(f, "=== chaos: start %d (event #%d, deploy_on %s)\n", c.starts, c.ev, c.mode)
		f.Close()
	}
	p, err := startChaosProgram(c.t, c.cfg, c.data, c.logFile, c.env)
	if err != nil {
		c.fatal("deployhook does not start again: %v\n%s", err, tailFile(c.logFile, 40))
	}
	c.prog = p
	c.logf("%s (mid-step: %v; steps of jobs %v running), deploy_on %s", what, mid, hit, c.mode)
	if kill && wantMid && follow {
		c.deployNew()
	}
}

// writeConfig writes the target's configuration for the current mode.
func (c *chaosRun) writeConfig() string {
	v := c.v
	cfg := fmt.Sprintf(`public_url: https://deploy.example.com
log: {format: text, level: info}
shutdown_grace: 5s
github:
  deployments: false
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    branch: main
    deploy_on: %s
    workflows: [.github/workflows/ci.yml]
    dispatch_workflow: .github/workflows/deploy.yml
    transport: ssh
    ssh:
      address: %s
      user: %s
      private_key_file: %s
      known_hosts_file: %s
      timeout: 10s
    lock: %s
    lock_wait: 30s
    app_dir: %s
    app_user: %s
    units: [app]
    settle: 1ms
    env: {PATH: "%s:/usr/local/bin:/usr/bin:/bin", CHAOS_VM: %s}
`, c.mode, c.proxy.addr(), v.srv.User, v.keyFile, c.knownHosts, c.lock, v.app, v.user, v.bin, c.token)
	p := filepath.Join(c.dir, fmt.Sprintf("deployhook-%d.yaml", c.starts+1))
	writeFile(c.t, p, cfg, 0o600)
	return p
}

func (c *chaosRun) guid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(c.rng.UintN(256))
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// send signs and delivers a new delivery.
func (c *chaosRun) send(event, what string, body []byte, explicit bool, sha string) {
	c.nDelivery++
	d := &delivery{event: event, guid: c.guid(), body: body, sig: sign(body), what: what, sha: sha, explicit: explicit}
	c.sent = append(c.sent, d)
	desc := what
	if sha != "" {
		desc += " " + c.label(sha)
	}
	c.post(d, d.guid, desc, explicit)
}

// post delivers d under guid, records the job it made and logs the answer. A
// signed, well-formed delivery must be answered 200 or 202, or 409, 422 or 503
// with a reason.
func (c *chaosRun) post(d *delivery, guid, desc string, explicit bool) {
	a, err := post(c.prog.url, d.event, guid, d.body, d.sig)
	if err != nil {
		if c.prog.exited() {
			c.fatal("deployhook exited on its own (%v) while the test delivered %s\n%s", c.prog.err, desc, tailFile(c.logFile, 40))
		}
		c.logf("%s (delivery %s): %v", desc, guid[:8], err)
		c.violate(0, fmt.Sprintf("delivery %s (%s) got no answer: %v", guid[:8], desc, err))
		return
	}
	out := strconv.Itoa(a.code)
	switch {
	case a.job != "":
		out += " job " + a.job
		d.jobs++
		c.jobs[a.job] = &jobRecord{id: a.job, what: desc, sha: a.sha, explicit: explicit, event: c.ev}
	case a.duplicate != "":
		out += " duplicate of " + a.duplicate
	case a.ignored != "":
		out += " ignored: " + a.ignored
	default:
		out += " " + a.text
	}
	if a.sha != "" && a.job != "" && a.sha != d.sha {
		out += " for " + c.label(a.sha)
	}
	c.logf("%s (delivery %s) → %s", desc, guid[:8], out)
	switch a.code {
	case 200, 202, 409, 422, 503:
	default:
		c.violate(0, fmt.Sprintf("delivery %s (%s) answered %d %s", guid[:8], desc, a.code, a.text))
	}
}

// check reads the markers and checks invariants 1 to 3 now.
func (c *chaosRun) check() {
	c.readMarkers()
	if a, b := overlap(c.invs); a != nil {
		c.violate(1, fmt.Sprintf("job %s's %s (pid %d) ran until %s while job %s's %s (pid %d) had started at %s",
			a.job, a.tool, a.pid, c.at(a.last), b.job, b.tool, b.pid, c.at(b.start)), a.job, b.job)
	}
	ps := stepProcesses(c.token)
	if js := jobsOf(ps); len(js) > 1 {
		var b strings.Builder
		for _, p := range ps {
			fmt.Fprintf(&b, "\n    pid %d job %s: %s", p.pid, p.job, p.args)
		}
		c.violate(1, fmt.Sprintf("processes of %d jobs alive at once on the VM:%s", len(js), b.String()), js...)
	}
	head, err := c.head()
	if err != nil {
		c.logf("read the VM's HEAD: %v", err)
		return
	}
	if !c.onBranch[head] {
		c.violate(3, fmt.Sprintf("the VM's checkout is at %s, not on main", c.label(head)))
	}
	if head != c.cur && len(ps) == 0 {
		c.readMarkers()
		if head != c.cur {
			c.logf("model: the VM is at %s, its markers said %s (a marker lost to a kill)", c.label(head), c.label(c.cur))
			c.cur = head
		}
	}
}

// readMarkers reads the markers written since the last call.
func (c *chaosRun) readMarkers() {
	f, err := os.Open(c.markers)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(c.markerOff, 0); err != nil {
		c.t.Fatal(err)
	}
	var buf bytes.Buffer
	n, _ := buf.ReadFrom(f)
	c.markerOff += n
	text := c.partial + buf.String()
	end := strings.LastIndexByte(text, '\n')
	c.partial = text[end+1:]
	if end < 0 {
		return
	}
	for l := range strings.SplitSeq(text[:end], "\n") {
		m, ok := parseMarker(l)
		if !ok {
			c.t.Fatalf("chaos seed %d: marker line %q", c.seed, l)
		}
		inv := c.live[m.pid]
		if m.what == "start" || inv == nil || inv.job != m.job {
			tool := "?"
			if len(m.rest) > 0 && m.what == "start" {
				tool = m.rest[0]
			}
			inv = &invocation{job: m.job, pid: m.pid, tool: tool, start: m.ns, last: m.ns, firstEvent: c.ev}
			c.live[m.pid] = inv
			c.invs = append(c.invs, inv)
		}
		inv.last = max(inv.last, m.ns)
		switch m.what {
		case "end":
			inv.ended = true
		case "co":
			if len(m.rest) != 3 {
				c.t.Fatalf("chaos seed %d: marker line %q", c.seed, l)
			}
			c.moved(checkout{job: m.job, at: m.ns, head: m.rest[0], kind: m.rest[1], rollback: m.rest[2] != "no", event: c.ev})
		case "cur":
			if len(m.rest) == 1 {
				c.observed(m.job, m.rest[0])
			}
		}
	}
}

// moved applies a checkout to the model and checks invariants 2 and 3.
func (c *chaosRun) moved(co checkout) {
	from := c.cur
	if _, ok := c.before[co.job]; !ok {
		c.before[co.job] = from
	}
	co.back = co.head != from && c.onBranch[from] && c.onBranch[co.head] && !c.isAncestor(from, co.head)
	c.checkouts = append(c.checkouts, co)
	c.cur = co.head
	how := fmt.Sprintf("job %s (%s) checked out %s", co.job, c.jobText(co.job), c.label(co.head))
	if co.rollback {
		how += " in its automatic rollback"
	}
	switch {
	case !c.onBranch[co.head]:
		c.violate(3, how+": a commit that is not on main", co.job)
	case !co.back:
		// Forward, the same commit, or away from a commit off the branch (reported).
	case co.rollback && co.head == c.before[co.job]:
		// The automatic rollback of a failed deploy restores what ran before it.
	case c.jobs[co.job] != nil && c.jobs[co.job].explicit && c.jobs[co.job].sha == co.head:
		// A person asked for exactly this commit.
	default:
		c.violate(2, fmt.Sprintf("%s, moving the VM backwards from %s without a person asking for it", how, c.label(from)), co.job)
	}
}

// observed records that a job saw the VM at head (git rev-parse HEAD).
func (c *chaosRun) observed(job, head string) {
	if _, ok := c.before[job]; !ok {
		c.before[job] = head
	}
	if !c.onBranch[head] {
		c.violate(3, fmt.Sprintf("job %s (%s) found the VM at %s, not on main", job, c.jobText(job), c.label(head)), job)
	}
	if head != c.cur {
		c.logf("model: job %s found the VM at %s, the markers said %s (a marker lost to a kill)", job, c.label(head), c.label(c.cur))
		c.cur = head
	}
}

func (c *chaosRun) isAncestor(a, b string) bool {
	k := [2]string{a, b}
	if v, ok := c.ancestors[k]; ok {
		return v
	}
	err := c.v.gitCmd(c.v.origin, "merge-base", "--is-ancestor", a, b).Run()
	if ee, ok := err.(interface{ ExitCode() int }); err != nil && (!ok || ee.ExitCode() != 1) {
		c.t.Fatalf("git merge-base --is-ancestor %s %s: %v", a, b, err)
	}
	c.ancestors[k] = err == nil
	return err == nil
}

func (c *chaosRun) head() (string, error) {
	out, err := c.v.gitCmd(c.v.app, "rev-parse", "HEAD").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// finish lets the queue drain with GitHub answering, restarts deployhook once
// more, and checks every invariant at rest; then one more push must deploy.
func (c *chaosRun) finish() {
	c.gh.mu.Lock()
	c.gh.failFor = time.Time{}
	c.gh.mu.Unlock()
	c.logf("the end: GitHub answers, no more faults; the queue drains")
	c.drain()
	c.restart(false, "restart at the end")
	c.drain()
	c.check()
	if ps := stepProcesses(c.token); len(ps) > 0 {
		c.violate(1, fmt.Sprintf("%d step processes still alive once every job ended, first: pid %d job %s: %s",
			len(ps), ps[0].pid, ps[0].job, ps[0].args), jobsOf(ps)...)
	}
	c.waitStatuses()

	states := c.jobStates()
	// Invariant 2, second half: no job that no person asked for deploys a
	// commit that an earlier job deployed successfully (moving forward to it,
	// or staying: a move backwards was reported above).
	deployed := map[string]string{} // sha → the job that deployed it
	for _, co := range c.checkouts {
		r := c.jobs[co.job]
		if !co.rollback && !co.back && (r == nil || !r.explicit) {
			if k, ok := deployed[co.head]; ok && k != co.job {
				c.violatePart(2, "redeploy", fmt.Sprintf("job %s (%s), which no person asked for, deployed %s again, which job %s had deployed (%s)",
					co.job, c.jobText(co.job), c.label(co.head), k, states[k]), co.job, k)
			}
		}
		if states[co.job] == "success" && !co.rollback {
			if _, ok := deployed[co.head]; !ok {
				deployed[co.head] = co.job
			}
		}
	}
	// Invariant 5: when the last job that moved the VM succeeded, the journal
	// says the VM runs its commit.
	head, err := c.head()
	if err != nil {
		c.t.Fatal(err)
	}
	if n := len(c.checkouts); n > 0 {
		last := c.checkouts[n-1]
		if states[last.job] == "success" && !last.rollback {
			if got := c.journalRuns(); got != head[:7] {
				c.violate(5, fmt.Sprintf("the VM runs %s (job %s succeeded), deployhook status says it runs %q", c.label(head), last.job, got), last.job)
			}
		}
	}

	// A fresh commit deploys, and the VM, GitHub and the journal agree on it.
	sha := c.deploy(c.commit(false))
	ss := c.waitFinal(sha, time.Minute)
	head, err = c.head()
	if err != nil {
		c.t.Fatal(err)
	}
	c.readMarkers()
	// The checks above are only as good as the markers: the last deploy must
	// have left its checkout and its restart there.
	if !slices.ContainsFunc(c.checkouts, func(co checkout) bool { return co.head == sha && !co.rollback }) ||
		!slices.ContainsFunc(c.invs, func(i *invocation) bool { return strings.HasPrefix(i.tool, "restart-") && i.ended }) {
		c.fatal("the VM's stand-ins left no checkout or restart marker for the last deploy of %s: the checks saw nothing (does the deploy still run git and systemctl through PATH?); its statuses: %+v", c.label(sha), ss)
	}
	switch {
	case len(ss) == 0 || ss[len(ss)-1].State != "success":
		c.violate(6, fmt.Sprintf("after the chaos, a fresh %s of %s did not deploy: statuses %v", c.mode, c.label(sha), ss))
	case head != sha:
		c.violate(5, fmt.Sprintf("GitHub says %s deployed, the VM runs %s", c.label(sha), c.label(head)))
	case c.journalRuns() != sha[:7]:
		c.violate(5, fmt.Sprintf("the VM runs %s, deployhook status says %q", c.label(sha), c.journalRuns()))
	}
	if len(c.violated) > 0 {
		c.t.Logf("chaos seed %d: the tail of deployhook's log:\n%s", c.seed, tailFile(c.logFile, 30))
	}
}

// drain waits until every job the test caused is final (bounded).
func (c *chaosRun) drain() {
	deadline := time.Now().Add(90 * time.Second)
	open := slices.Collect(maps.Keys(c.jobs))
	for {
		var still []string
		for _, id := range open {
			if j, err := fetchJob(c.prog.url, id); err != nil || !finalState(j.State) {
				still = append(still, id)
			}
		}
		open = still
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, id := range open {
				j, err := fetchJob(c.prog.url, id)
				fmt.Fprintf(&b, "\n    %s (%s): %s %q %v", id, c.jobText(id), j.State, j.Description, err)
			}
			c.violate(4, fmt.Sprintf("%d jobs not final 90s after the faults stopped:%s", len(open), b.String()), open...)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitStatuses waits until the last status of every commit told pending is
// final (bounded: the outbox backs off while GitHub fails).
func (c *chaosRun) waitStatuses() {
	deadline := time.Now().Add(90 * time.Second)
	for {
		last := map[string]string{}
		c.gh.mu.Lock()
		for _, s := range c.gh.statuses {
			last[s.SHA] = s.State
		}
		c.gh.mu.Unlock()
		var pending []string
		for sha, st := range last {
			if st == "pending" {
				pending = append(pending, c.label(sha))
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			slices.Sort(pending)
			c.violate(4, fmt.Sprintf("commits still pending on GitHub 90s after the queue drained: %v", pending))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *chaosRun) waitFinal(sha string, within time.Duration) []status {
	deadline := time.Now().Add(within)
	for {
		ss := c.gh.of(sha)
		if n := len(ss); (n > 0 && ss[n-1].State != "pending") || time.Now().After(deadline) {
			return ss
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jobStates reads the state of every job the test knows of or saw on the VM.
func (c *chaosRun) jobStates() map[string]string {
	ids := slices.Collect(maps.Keys(c.jobs))
	for _, co := range c.checkouts {
		ids = append(ids, co.job)
	}
	out := map[string]string{}
	for _, id := range ids {
		if _, ok := out[id]; ok {
			continue
		}
		j, err := fetchJob(c.prog.url, id)
		if err != nil {
			out[id] = "unknown (" + err.Error() + ")"
			continue
		}
		out[id] = j.State
	}
	return out
}

var runsRE = regexp.MustCompile(`\bruns ([0-9a-f]{7}|unknown)\b`)

// journalRuns is what deployhook status says the target runs: the journal's
// last successful deploy, 7 hex digits.
func (c *chaosRun) journalRuns() string {
	var out bytes.Buffer
	getenv := func(k string) string {
		for _, kv := range c.env {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	err := run(context.Background(), []string{"status", "--config", c.cfg, "--data-dir", c.data, "--target", "production", "--limit", "1"},
		getenv, nil, &out, &bytes.Buffer{})
	if err != nil {
		return fmt.Sprintf("deployhook status failed: %v", err)
	}
	if m := runsRE.FindStringSubmatch(out.String()); m != nil {
		return m[1]
	}
	return "status said: " + out.String()
}

// label names a commit for people: c12 (its place on the branch) and its short SHA.
func (c *chaosRun) label(sha string) string {
	if sha == "" {
		return "(none)"
	}
	short := sha
	if len(short) > 7 {
		short = short[:7]
	}
	if l, ok := c.labels[sha]; ok {
		return l + "·" + short
	}
	return short
}

func (c *chaosRun) jobText(id string) string {
	if r := c.jobs[id]; r != nil {
		return fmt.Sprintf("%s, event #%d", r.what, r.event)
	}
	return "not created by an answer the test saw"
}

func (c *chaosRun) at(ns int64) string {
	return fmt.Sprintf("+%.3fs", time.Unix(0, ns).Sub(c.begin).Seconds())
}

func (c *chaosRun) sleep(ms int) { time.Sleep(time.Duration(ms) * time.Millisecond) }

func (c *chaosRun) logf(format string, args ...any) {
	c.log = append(c.log, logEntry{n: c.ev, at: time.Since(c.begin), text: fmt.Sprintf(format, args...)})
}

// invariants names what each check holds (0: intake, 6: liveness).
var invariants = map[int]string{
	0: "a signed, well-formed delivery is answered 200 or 202 (409, 422 or 503 with a reason)",
	1: "at most one deploy's processes are alive on the VM at any moment",
	2: "the VM's commit moves backwards only through an explicit rollback or dispatch; automatic triggers never redeploy a commit deployed before",
	3: "the VM never runs a commit that is not on the branch",
	4: "every commit told pending ends final; every job ends",
	5: "the journal's last successful deploy is what the VM runs",
	6: "after the chaos, a fresh commit deploys",
}

// violate reports the first violation of invariant n: the seed, what broke,
// the events about the jobs involved, the last 30 events and what
// deployhook's log says about the jobs. The test goes on, so one run shows
// every invariant it breaks.
func (c *chaosRun) violate(n int, what string, jobs ...string) {
	c.t.Helper()
	c.violatePart(n, "", what, jobs...)
}

// violatePart is violate for one part of an invariant, reported apart.
func (c *chaosRun) violatePart(n int, part, what string, jobs ...string) {
	c.t.Helper()
	if key := fmt.Sprint(n, part); c.violated[key] {
		return
	} else {
		c.violated[key] = true
	}
	c.logf("VIOLATION of invariant %d: %s", n, what)
	var b strings.Builder
	fmt.Fprintf(&b, "chaos seed %d, event #%d (+%.1fs): invariant %d violated: %s\n  %s\n",
		c.seed, c.ev, time.Since(c.begin).Seconds(), n, invariants[n], what)
	fmt.Fprintf(&b, "  rerun: DEPLOYHOOK_CHAOS_SEED=%d go test -race -run 'TestChaos_Invariants$' .\n", c.seed)
	if len(jobs) > 0 {
		b.WriteString("events about the jobs involved:\n")
		k := 0
		for _, e := range c.log {
			if slices.ContainsFunc(jobs, func(j string) bool { return j != "" && strings.Contains(e.text, j) }) && k < 20 {
				fmt.Fprintf(&b, "  #%-4d %7.2fs  %s\n", e.n, e.at.Seconds(), e.text)
				k++
			}
		}
	}
	b.WriteString("last 30 events:\n")
	for _, e := range c.log[max(0, len(c.log)-30):] {
		fmt.Fprintf(&b, "  #%-4d %7.2fs  %s\n", e.n, e.at.Seconds(), e.text)
	}
	if len(jobs) > 0 {
		if lb, err := os.ReadFile(c.logFile); err == nil {
			var lines []string
			for l := range strings.Lines(string(lb)) {
				if slices.ContainsFunc(jobs, func(j string) bool { return j != "" && strings.Contains(l, j) }) {
					lines = append(lines, strings.TrimRight(l, "\n"))
				}
			}
			b.WriteString("deployhook's log about the jobs:\n")
			for _, l := range lines[max(0, len(lines)-15):] {
				b.WriteString("  " + l + "\n")
			}
		}
	}
	c.t.Error(b.String())
}

// fatal ends the test at once, with the seed and the last events.
func (c *chaosRun) fatal(format string, args ...any) {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "chaos seed %d, event #%d: ", c.seed, c.ev)
	fmt.Fprintf(&b, format, args...)
	b.WriteString("\nlast 30 events:\n")
	for _, e := range c.log[max(0, len(c.log)-30):] {
		fmt.Fprintf(&b, "  #%-4d %7.2fs  %s\n", e.n, e.at.Seconds(), e.text)
	}
	if lb, err := os.ReadFile(c.logFile); err == nil {
		lines := strings.Split(strings.TrimRight(string(lb), "\n"), "\n")
		b.WriteString("deployhook's last log lines:\n")
		for _, l := range lines[max(0, len(lines)-40):] {
			b.WriteString("  " + l + "\n")
		}
	}
	c.t.Fatal(b.String())
}
