package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// childEnv, set in the environment of this test binary, makes it a webhook server
// (childServe) instead of running tests: BenchmarkIntake_underAttack measures its
// memory from the outside, as the attacks in issue 8 measured the service's.
const childEnv = "DEPLOYHOOK_SERVER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "serve" {
		os.Exit(childServe(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// childServe serves the test routes on 127.0.0.1 with the default Options and a
// queue that accepts everything. It writes its address as the first line of out,
// then for each line "stats" read from in, a line with the readers, body budget
// bytes and connections held; it stops when in ends.
func childServe(in io.Reader, out, errOut io.Writer) int {
	srv, err := New(slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Options{Secrets: [][]byte{testSecret}, Routes: testRoutes()},
		Deps{Queue: benchQueue{}, Journal: &fakeJournal{}, Resolver: &fakeResolver{}, Rollbacks: &fakeRollbacks{}, Auth: AllowAll("bench")})
	if err != nil {
		fmt.Fprintln(errOut, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(errOut, err)
		return 1
	}
	go srv.Serve(ln) // ends with the process
	fmt.Fprintln(out, ln.Addr())
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var open int64
		srv.mu.Lock()
		if srv.conns != nil {
			open = srv.conns.open.Load()
		}
		srv.mu.Unlock()
		fmt.Fprintln(out, srv.intake.readers.InUse(), srv.intake.bytes.InUse(), open)
	}
	return 0 // the attack's connections end with the process
}

// child is a running childServe process.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	addr  string
	statN sync.Mutex
}

func startChild(b *testing.B) *child {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=serve")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	b.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := c.out.ReadString('\n')
	if err != nil {
		b.Fatalf("child server: %v", err)
	}
	c.addr = strings.TrimSpace(line)
	return c
}

// stats returns the child's readers, body budget bytes and open connections.
func (c *child) stats(b *testing.B) (readers, held, conns int64) {
	c.statN.Lock()
	defer c.statN.Unlock()
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		b.Fatal(err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fmt.Sscan(line, &readers, &held, &conns); err != nil {
		b.Fatalf("stats %q: %v", line, err)
	}
	return readers, held, conns
}

// rss returns the child's resident set size in bytes (VmRSS of /proc/PID/status).
func (c *child) rss() (int64, error) {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(st)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// BenchmarkIntake_underAttack runs the webhook server in its own process with the
// default Options, opens 200 connections that attack it, and measures how long a
// signed push takes to be answered meanwhile (ns/op) and how far the server's RSS
// grew over its warmed-up baseline (rss-growth-MB, the largest of samples taken
// through the attack). The attacks are issue 8's:
//
//   - header-only: each connection announces a 25 MB body and sends nothing;
//   - slow-1Bps: each announces 25 MB and sends one byte a second.
//
// Linux only (it reads /proc). Run:
//
//	go test -run '^$' -bench Intake_underAttack -benchtime 5s ./server/
//
// The slow senders are cut by the body deadline 10 s after they started; the
// benchmark fails if that happens before it ends, so keep -benchtime under 8 s.
func BenchmarkIntake_underAttack(b *testing.B) {
	for _, attack := range []string{"header-only", "slow-1Bps"} {
		b.Run(attack, func(b *testing.B) { underAttack(b, attack) })
	}
}

func underAttack(b *testing.B, attack string) {
	const conns = 200
	c := startChild(b)
	body := pushTo(b, "Codertocat/Hello-World", "main", shaA)
	header := delivery{event: "push", body: body}.request().Header
	client := &http.Client{Timeout: 30 * time.Second}
	push := func() {
		req, err := http.NewRequest(http.MethodPost, "http://"+c.addr+"/webhook", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header = header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("push answered %d, want 202", resp.StatusCode)
		}
	}
	// Warm up: the baseline is a server that has answered pushes.
	for range 200 {
		push()
	}
	base, err := c.rss()
	if err != nil {
		b.Skipf("cannot read the server's RSS (Linux only): %v", err)
	}

	attackers := make([]net.Conn, 0, conns)
	b.Cleanup(func() {
		for _, a := range attackers {
			a.Close()
		}
	})
	for range conns {
		a, err := net.Dial("tcp", c.addr)
		if err != nil {
			b.Fatal(err)
		}
		attackers = append(attackers, a)
		if _, err := io.WriteString(a, claimHead(MaxPayload)); err != nil {
			b.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if attack == "slow-1Bps" {
		wg.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				for _, a := range attackers {
					a.SetWriteDeadline(time.Now().Add(time.Second))
					a.Write([]byte("x"))
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	// Established: every attacker is being read and, trickling, holds a buffer
	// (one from the pool, some 8 KB after the warm-up, or a new 16 KB one).
	deadline := time.Now().Add(30 * time.Second)
	for {
		readers, held, open := c.stats(b)
		if readers == conns && open >= conns && (attack == "header-only" || held >= conns*1024) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("attack not established: %d readers, %d bytes held, %d connections", readers, held, open)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Sample the RSS every 50 ms while the pushes run; keep the largest.
	var peak int64
	var rssErr error
	sampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			r, err := c.rss()
			if err != nil {
				rssErr = err
				return
			}
			peak = max(peak, r)
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
		}
	})
	for b.Loop() {
		push()
	}
	b.StopTimer()
	close(sampling)
	sampler.Wait()
	if rssErr != nil {
		b.Fatal(rssErr)
	}
	readers, held, _ := c.stats(b)
	if readers != conns {
		b.Fatalf("%d attackers still being read after the pushes, want %d: the attack ended early", readers, conns)
	}
	b.ReportMetric(float64(peak-base)/(1<<20), "rss-growth-MB")
	b.ReportMetric(float64(base)/(1<<20), "base-rss-MB")
	b.ReportMetric(float64(held)/(1<<20), "budget-held-MB")
}
