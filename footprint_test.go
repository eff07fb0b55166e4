package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deployhook/deployhook/webhook"
)

// The environment of BenchmarkFootprint.
const (
	// benchBinaryEnv names a deployhook binary to measure instead of building one.
	benchBinaryEnv = "DEPLOYHOOK_BENCH_BINARY"
	// benchWebhookEnv names an adnanh/webhook binary to measure side by side,
	// serving one equivalent hook (see webhookHooks).
	benchWebhookEnv = "DEPLOYHOOK_BENCH_WEBHOOK"
)

// footprintSecret is the webhook secret of both servers.
const footprintSecret = "footprint-bench-secret-0123456789"

// BenchmarkFootprint measures deployhook serve as a user runs it: the binary
// make build makes (CGO_ENABLED=0, -trimpath, -ldflags '-s -w'), in its own
// process, with the embedded demo configuration (config/local.yaml) in a fresh
// directory. Beside it, in the same run and the same way, it measures two
// floors built from floorProgram with this module's versions: "floor", net/http
// alone, and "floor+compute", the same with cloud.google.com/go/compute/apiv1
// linked (deployhook's GCP transport needs it). With DEPLOYHOOK_BENCH_WEBHOOK
// set to an adnanh/webhook binary it measures that too, serving the equivalent
// hook (webhookHooks); without, webhook is left out.
//
//   - start: the time from starting the process to the first 200 of its
//     readiness URL (/readyz; webhook has only /), polled every 100 µs: the
//     median and the least of startRuns starts (ms-median, ms-min), whatever
//     -benchtime says.
//   - idle: the process's VmRSS (rss-MB), with its anonymous (anon-MB) and
//     file-backed (file-MB) parts, 2 s after it became ready, with nothing sent
//     (once, whatever -benchtime says).
//   - ignored-push: signed copies of GitHub's 7.7 KB push to a branch that does
//     not deploy, one after another over one connection (conns=1), or from 8
//     clients at once over their own connections (conns=8): ns/op is the time
//     per request and cpu-µs/req the server process's CPU time (user and
//     system, all threads, from /proc/PID/stat) per request. The CPU clock
//     ticks are 10 ms: run at least 20,000 requests (-benchtime 20000x) for a
//     figure within 1 %.
//
// Run it with
//
//	go test -run '^$' -bench Footprint -benchtime 20000x .
//
// DEPLOYHOOK_BENCH_BINARY names a deployhook binary to measure instead of
// building one (to compare two builds).
func BenchmarkFootprint(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc/PID/status and /proc/PID/stat: Linux only")
	}
	dir := b.TempDir()
	bin := os.Getenv(benchBinaryEnv)
	if bin == "" {
		bin = goBuild(b, ".", filepath.Join(dir, "deployhook-bin"))
	}
	servers := []*benchServer{{
		name: "deployhook", bin: bin, ready: "/readyz", hook: "/webhook", ignored: `{"ignored":`,
		args: func(addr string) []string { return []string{"serve", "--listen", addr} },
		env:  []string{"DEPLOYHOOK_WEBHOOK_SECRET=" + footprintSecret},
	}}
	for _, f := range []struct{ name, imports string }{
		{"floor", ""},
		{"floor+compute", `_ "cloud.google.com/go/compute/apiv1"`},
	} {
		servers = append(servers, &benchServer{
			name: f.name, bin: buildFloor(b, filepath.Join(dir, f.name+"-src"), f.imports),
			ready: "/readyz", hook: "/webhook", ignored: `{"ignored":`,
			args: func(addr string) []string { return []string{addr} },
		})
	}
	if wh := os.Getenv(benchWebhookEnv); wh != "" {
		hooks := filepath.Join(dir, "hooks.json")
		if err := os.WriteFile(hooks, []byte(webhookHooks), 0o600); err != nil {
			b.Fatal(err)
		}
		servers = append(servers, &benchServer{
			name: "webhook", bin: wh, ready: "/", hook: "/hooks/demo", ignored: "Hook rules were not satisfied.",
			args: func(addr string) []string {
				host, port, _ := net.SplitHostPort(addr)
				return []string{"-hooks", hooks, "-ip", host, "-port", port}
			},
		})
	}
	body, err := sampleDelivery("push", "deployhook/demo", "not-deployed", strings.Repeat("ab", 20))
	if err != nil {
		b.Fatal(err)
	}
	sig := webhook.Sign(body, []byte(footprintSecret))
	for _, s := range servers {
		s.workDir = filepath.Join(dir, s.name)
		if err := os.Mkdir(s.workDir, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	// The start and idle figures are measured once: the benchmark framework
	// calls each function again with a larger b.N, which they do not use.
	times := map[string][]time.Duration{}
	idle := map[string]map[string]int64{}
	for _, s := range servers {
		b.Run(s.name+"/start", func(b *testing.B) {
			if times[s.name] == nil {
				for range startRuns {
					start := time.Now()
					p := s.start(b)
					times[s.name] = append(times[s.name], time.Since(start))
					p.stop()
				}
				slices.Sort(times[s.name])
			}
			times := times[s.name]
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(times[len(times)/2])/1e6, "ms-median")
			b.ReportMetric(float64(times[0])/1e6, "ms-min")
		})
	}
	for _, s := range servers {
		b.Run(s.name+"/idle", func(b *testing.B) {
			if idle[s.name] == nil {
				p := s.start(b)
				time.Sleep(2 * time.Second) // idle is the point: this is no synchronisation
				idle[s.name] = p.status(b)
				p.stop()
			}
			st := idle[s.name]
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(st["VmRSS"])/1000, "rss-MB")
			b.ReportMetric(float64(st["RssAnon"])/1000, "anon-MB")
			b.ReportMetric(float64(st["RssFile"])/1000, "file-MB")
		})
	}
	for _, conns := range []int{1, 8} {
		for _, s := range servers {
			b.Run(fmt.Sprintf("%s/ignored-push/conns=%d", s.name, conns), func(b *testing.B) {
				p := s.start(b)
				defer p.stop()
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
				defer client.CloseIdleConnections()
				for range 200 { // warm up: the first requests fault in code and grow buffers
					if err := s.push(client, p.url, body, sig); err != nil {
						b.Fatal(err)
					}
				}
				before := p.cpuTicks(b)
				b.SetBytes(int64(len(body)))
				b.SetParallelism((conns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.push(client, p.url, body, sig); err != nil {
							b.Error(err)
							return
						}
					}
				})
				ticks := p.cpuTicks(b) - before
				b.ReportMetric(float64(ticks)*1e6/clockTicks/float64(b.N), "cpu-µs/req")
			})
		}
	}
}

// goBuild builds the main package pkg as make build does, into out.
func goBuild(b *testing.B, pkg, out string) string {
	b.Helper()
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	build := exec.Command(goCmd, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return out
}

// floorProgram is the least a Go webhook server does: net/http reads the body
// and answers as deployhook answers a push that deploys nothing, without
// verifying or parsing anything. %s is its extra imports.
const floorProgram = `package main

import (
	"io"
	"net/http"
	"os"
	%s
)

func main() {
	http.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	http.HandleFunc("POST /webhook", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, ` + "`" + `{"ignored":"push to refs/heads/not-deployed: no target deploys deployhook/demo branch not-deployed"}` + "`" + `)
	})
	http.ListenAndServe(os.Args[1], nil)
}
`

// buildFloor builds floorProgram with imports in dir, a module with this
// module's go.mod requirements and go.sum, so that the same versions are
// linked and nothing is downloaded. It returns the binary.
func buildFloor(b *testing.B, dir, imports string) string {
	b.Helper()
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		b.Fatal(err)
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		b.Fatal(err)
	}
	_, rest, _ := bytes.Cut(mod, []byte("\n"))
	mod = append([]byte("module floor\n"), rest...)
	if err := os.Mkdir(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"go.mod": mod, "go.sum": sum, "main.go": fmt.Appendf(nil, floorProgram, imports),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	out := filepath.Join(dir, "floor")
	build := exec.Command(goCmd, "build", "-mod=mod", "-trimpath", "-ldflags", "-s -w", "-o", out, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOPROXY=off")
	if o, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build the floor (%s): %v\n%s", imports, err, o)
	}
	return out
}

// webhookHooks is adnanh/webhook's hook equivalent to the demo target for a
// push: the X-Hub-Signature-256 must be the body's HMAC-SHA256 under the secret
// and the ref refs/heads/main.
const webhookHooks = `[{
  "id": "demo",
  "execute-command": "/bin/true",
  "trigger-rule": {"and": [
    {"match": {"type": "payload-hmac-sha256", "secret": "` + footprintSecret + `",
               "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
    {"match": {"type": "value", "value": "refs/heads/main",
               "parameter": {"source": "payload", "name": "ref"}}}
  ]}
}]`

// startRuns is how many times BenchmarkFootprint starts each server.
const startRuns = 21

// clockTicks is the unit of the CPU times in /proc/PID/stat (USER_HZ, sysconf
// _SC_CLK_TCK), 100 on every Linux architecture Go supports.
const clockTicks = 100

// benchServer is a webhook server under BenchmarkFootprint.
type benchServer struct {
	name, bin string
	args      func(addr string) []string
	env       []string
	workDir   string
	ready     string       // the path that answers 200 once it serves
	hook      string       // the path deliveries go to
	ignored   string       // the start of its answer to a push that deploys nothing
	sent      atomic.Int64 // deliveries sent, for their ids
}

// benchProcess is a running benchServer.
type benchProcess struct {
	cmd    *exec.Cmd
	url    string
	exited chan struct{} // closed when cmd.Wait returned
}

// start starts s on a free loopback port and returns once its ready path
// answers 200. It tries another port when the process exits first: the port
// found free may have been taken since.
func (s *benchServer) start(b *testing.B) *benchProcess {
	b.Helper()
	for try := 1; ; try++ {
		p, err := s.tryStart()
		if err == nil {
			return p
		}
		if try == 3 || !errors.Is(err, errExited) {
			b.Fatal(err)
		}
	}
}

var errExited = errors.New("exited")

func (s *benchServer) tryStart() (*benchProcess, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(s.bin, s.args(addr)...)
	cmd.Dir, cmd.Env = s.workDir, append(os.Environ(), s.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 64 << 10}
	p := &benchProcess{cmd: cmd, url: "http://" + addr, exited: make(chan struct{})}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(p.url + s.ready)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s %w before it was ready: %s\n%s", s.name, errExited, cmd.ProcessState, stderr.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not become ready at %s within 30 s: %v\n%s", s.name, p.url+s.ready, err, stderr.Bytes())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// stop ends p with SIGTERM, or SIGKILL after 30 s, and waits for it.
func (p *benchProcess) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// status returns the kB figures of /proc/PID/status.
func (p *benchProcess) status(b *testing.B) map[string]int64 {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]int64{}
	for l := range strings.Lines(string(st)) {
		k, v, ok := strings.Cut(l, ":")
		if v, isKB := strings.CutSuffix(strings.TrimSpace(v), " kB"); ok && isKB {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("/proc/PID/status: %q: %v", l, err)
			}
			out[k] = n
		}
	}
	return out
}

// cpuTicks returns the user and system CPU time p has used, all its threads,
// in clock ticks (fields 14 and 15 of /proc/PID/stat).
func (p *benchProcess) cpuTicks(b *testing.B) int64 {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(st, ')')
	f := strings.Fields(string(st[i+1:])) // f[0] is field 3
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/PID/stat: %q", st)
	}
	return utime + stime
}

// push sends body as a signed push delivery (sig is its X-Hub-Signature-256)
// and checks that s answered 200 with its answer to a push that deploys
// nothing. It is safe for concurrent use.
func (s *benchServer) push(client *http.Client, url string, body []byte, sig string) error {
	req, err := http.NewRequest(http.MethodPost, url+s.hook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/footprint")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("72d3162e-cc78-11e3-81ab-%012x", s.sent.Add(1)))
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.HasPrefix(answer, []byte(s.ignored)) {
		return fmt.Errorf("%s answered %d %q (%v), want 200 %q…", s.name, resp.StatusCode, answer, err, s.ignored)
	}
	return nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (w *limitedBuffer) Write(p []byte) (int, error) {
	if n := w.max - w.buf.Len(); n > 0 {
		w.buf.Write(p[:min(n, len(p))])
	}
	return len(p), nil
}
