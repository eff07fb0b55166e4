package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file holds the parts of the replica tests (replicas_e2e_test.go): the
// configuration of a replica with a local target whose steps mark their runs,
// the reading of those marks, the lane's holder in the journal, and a TCP
// proxy in front of PostgreSQL that the test can take down and bring back.

// replicaStep is a step of the replicas' target: it appends "start", "end"
// (or "stop", when it is terminated) to the markers file, in the chaos test's
// marker format (chaosMark: WHAT JOB PID NS STEP), and waits while the file
// hold-SHA exists, so that the test can keep a deploy in the middle of a step.
const replicaStep = `      - name: %[2]s
        timeout: 1m
        run: |
          m='%[1]s/markers'
          mark() { printf '%%s %%s %%s %%s %%s\n' "$1" "${DEPLOYHOOK_JOB:--}" "$$" "$(date +%%s%%N)" %[2]s >> "$m"; }
          mark start
          trap 'mark stop; exit 143' TERM
          while [ -e '%[1]s/hold-'"$DEPLOYHOOK_SHA" ]; do sleep 0.05; done
          sleep 0.1
          mark end
`

// writeReplicaConfig writes the configuration the replicas share: replicas
// on (the journal's URL comes from DEPLOYHOOK_DATABASE_URL), one local target
// with the deploy lock in dir/lock, and two marking steps.
func writeReplicaConfig(t *testing.T, dir string) string {
	t.Helper()
	mkdir(t, filepath.Join(dir, "lock"), 0o700)
	cfg := fmt.Sprintf(`public_url: https://deploy.example.com
replicas: true
log: {format: json, level: info}
github:
  deployments: false
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    branch: main
    transport: local
    lock: %[1]s/lock/deploy.lock
    lock_wait: 1m
    steps:
`, dir) + fmt.Sprintf(replicaStep, dir, "checkout") + fmt.Sprintf(replicaStep, dir, "restart")
	p := filepath.Join(dir, "deployhook.yaml")
	writeFile(t, p, cfg, 0o600)
	return p
}

// stepRuns reads the markers the replicas' steps wrote: one invocation per
// step run, its last mark its end (or stop, or its start while it runs).
func stepRuns(t *testing.T, markers string) []*invocation {
	t.Helper()
	b, err := os.ReadFile(markers)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	byPID := map[int]*invocation{}
	var out []*invocation
	for l := range strings.Lines(string(b)) {
		m, ok := parseMarker(l)
		if !ok || len(m.rest) != 1 {
			t.Fatalf("marker line %q", l)
		}
		switch m.what {
		case "start":
			inv := &invocation{job: m.job, pid: m.pid, tool: m.rest[0], start: m.ns, last: m.ns}
			byPID[m.pid] = inv
			out = append(out, inv)
		case "end", "stop":
			inv := byPID[m.pid]
			if inv == nil || inv.job != m.job {
				t.Fatalf("marker %q without its start", l)
			}
			inv.last, inv.ended = m.ns, m.what == "end"
		default:
			t.Fatalf("marker line %q", l)
		}
	}
	return out
}

// invocations formats step runs for a failure message.
func invocations(invs []*invocation) string {
	var b strings.Builder
	for _, inv := range invs {
		fmt.Fprintf(&b, "[%s of %s, pid %d, %d to %d, ended %v]", inv.tool, inv.job, inv.pid, inv.start, inv.last, inv.ended)
	}
	return b.String()
}

// laneHolder returns the process id and the fencing token of the replica
// that holds the production lane in the journal at url; 0, 0 when none ever
// did.
func laneHolder(t *testing.T, url string) (pid int, token int64) {
	t.Helper()
	pid, token, err := readLaneHolder(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	return pid, token
}

func readLaneHolder(ctx context.Context, url string) (pid int, token int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, `SELECT o.pid, l.token FROM lanes l JOIN owners o ON o.id = l.owner
		WHERE l.name = 'production'`).Scan(&pid, &token)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	return pid, token, err
}

// readyz returns a replica's answer to GET /readyz.
func readyz(url string) (int, string, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// poll calls cond until it holds, and fails t after a generous deadline. It
// is a wait for an outcome, not a timed assertion.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// switchProxy forwards TCP connections to an address while it is up; while it
// is down it closes every connection it forwarded and each new one at once,
// as a database server that went away does.
type switchProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	down    bool
	refused int // connections closed at once because the proxy was down
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		p.ln.Close()
		p.setDown(true)
		p.wg.Wait()
	})
	return p
}

func (p *switchProxy) addr() string { return p.ln.Addr().String() }

// refusals returns how many connections the proxy refused while down.
func (p *switchProxy) refusals() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// setDown takes the proxy down (and cuts what it forwards) or brings it back.
func (p *switchProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *switchProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.pipe(c) })
	}
}

func (p *switchProxy) pipe(c net.Conn) {
	p.mu.Lock()
	down := p.down
	if down {
		p.refused++
	}
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.refused++
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var done sync.WaitGroup
	done.Go(func() { io.Copy(s, c); s.Close(); c.Close() })
	done.Go(func() { io.Copy(c, s); s.Close(); c.Close() })
	done.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}
