package metrics_test

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/internal/metrics"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// testLogger routes logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustNew returns a Metrics for opts or fails the test.
func mustNew(t testing.TB, opts metrics.Options) *metrics.Metrics {
	t.Helper()
	m, err := metrics.New(testLogger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scrape GETs m's handler as Prometheus does and returns the text format.
func scrape(t testing.TB, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	return string(b)
}

// samples parses a text-format scrape into series (name{labels} as written,
// labels in the order the client library sorts them) and values.
func samples(t testing.TB, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// want checks that every series in want has exactly its value in got.
func want(t testing.TB, got map[string]float64, want map[string]float64) {
	t.Helper()
	for s, w := range want {
		g, ok := got[s]
		switch {
		case !ok:
			t.Errorf("%s missing from the scrape", s)
		case g != w:
			t.Errorf("%s = %v, want %v", s, g, w)
		}
	}
}

// promtool runs promtool with args and stdin, and fails the test with its
// output when it exits non-zero. Without promtool it fails under CI and skips
// elsewhere.
func promtool(t testing.TB, stdin string, args ...string) {
	t.Helper()
	promtoolIn(t, "", stdin, args...)
}

// promtoolIn is promtool run in directory dir.
func promtoolIn(t testing.TB, dir, stdin string, args ...string) {
	t.Helper()
	bin := sshdtest.Require(t, "promtool", "/usr/bin/promtool")
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out.String())
}

// goVersion is runtime.Version, as deployhook_build_info's goversion.
func goVersion() string { return runtime.Version() }
