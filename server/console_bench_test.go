package server

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// BenchmarkConsoleJobPage is one view of a finished job's page by a
// signed-in reader: the journal read (a fake), the access check (a fake),
// and the page with 8 steps of 16 KiB of output each (the journal's bound
// per step), as HTML and as JSON.
func BenchmarkConsoleJobPage(b *testing.B) {
	c := newConsole(b, nil)
	c.srv.lg = slog.New(slog.DiscardHandler)
	j := testJob()
	j.ID = "jbig"
	j.Steps = nil
	line := strings.Repeat("x", 79) + "\n"
	for i := range 8 {
		j.Steps = append(j.Steps, executor.StepRun{Seq: i + 1, Name: fmt.Sprintf("step %d", i+1), ExitCode: 0,
			Duration: time.Duration(i+1) * time.Second, Output: strings.Repeat(line, 16<<10/len(line))})
	}
	c.journal.jobs = []executor.Job{j}
	for _, tt := range []struct{ name, accept string }{{"html", "text/html"}, {"json", "application/json"}} {
		b.Run(tt.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/jobs/jbig", nil)
			r.Header.Set("Accept", tt.accept)
			r.AddCookie(&http.Cookie{Name: "session", Value: "rita"})
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				c.h.ServeHTTP(rec, r)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}

// fanout is a Live that sends every event it is given to every follower,
// as the executor's live log does.
type fanout struct {
	mu     sync.Mutex
	subs   []chan executor.LogEvent
	joined chan struct{}
}

func (f *fanout) Follow(ctx context.Context, job string, after int64) (<-chan executor.LogEvent, error) {
	ch := make(chan executor.LogEvent, 256)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	f.joined <- struct{}{}
	return ch, nil
}

func (f *fanout) Cancel(context.Context, string, string) (executor.Job, error) {
	return executor.Job{}, executor.ErrNotFound
}

func (f *fanout) send(ev executor.LogEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		ch <- ev
	}
}

// BenchmarkConsoleSSE is the live log's fan-out: one op is one line of
// output delivered to 8 browsers following the job over real loopback
// connections (the server's SSE encoding, flush and write, and the
// clients' reading, on the same CPUs).
func BenchmarkConsoleSSE(b *testing.B) {
	const followers = 8
	c := newConsole(b, nil)
	c.srv.lg = slog.New(slog.DiscardHandler)
	live := &fanout{joined: make(chan struct{}, followers)}
	c.srv.deps.Live = live
	ts := httptest.NewServer(c.h)
	b.Cleanup(ts.Close)

	got := make(chan int, followers)
	for range followers {
		go func() {
			n := 0
			defer func() { got <- n }()
			r, err := http.NewRequest(http.MethodGet, ts.URL+"/jobs/jrun/events", nil)
			if err != nil {
				return
			}
			r.AddCookie(&http.Cookie{Name: "session", Value: "rita"})
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				switch sc.Text() {
				case "event: line":
					n++
				case "event: end":
					return
				}
			}
		}()
	}
	for range followers {
		<-live.joined
	}
	ev := executor.LogEvent{Kind: "line", Step: 3, Line: "2026-06-01 12:00:00 INFO dagster - Loaded code location analytics (1.2s)", Time: testNow}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev.ID = int64(i + 1)
		live.send(ev)
	}
	live.send(executor.LogEvent{ID: int64(b.N + 1), Kind: "end", State: executor.StateSuccess, Time: testNow})
	for range followers {
		if n := <-got; n != b.N {
			b.Fatalf("a follower got %d lines of %d", n, b.N)
		}
	}
}
