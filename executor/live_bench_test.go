package executor

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// benchSecrets are as many secrets as main redacts in a typical setup
// (webhook secret, GitHub token, OAuth client secret, database password).
var benchSecrets = []string{"e2e-webhook-secret-0123456789", "ghs_e2eTestToken0123456789abcdef", "oauth-client-secret-abcdef", "db-password-42"}

// benchLine is an 80-byte line of build output.
var benchLine = []byte(strings.Repeat("Collecting dagster==1.9.3 (from -r requirements.txt (line 4)) ", 2)[:79] + "\n")

// BenchmarkStream is the cost per line of streaming a step's output: cut
// into lines, redacted against four secrets, kept within the default 16 KiB
// and published, with and without a follower reading, and with output that
// arrives a line per write (a line-buffered program) or in 4 KiB chunks.
func BenchmarkStream(b *testing.B) {
	run := func(b *testing.B, chunk int, follow bool) {
		lv := newLive(Options{OutputLimit: 16 << 10, Redact: benchSecrets})
		f := lv.open("job")
		if follow {
			_, ch := f.follow(0)
			done := make(chan struct{})
			go func() {
				for range ch {
				}
				close(done)
			}()
			defer func() { f.finish(StateSuccess, ""); <-done }()
		}
		o := lv.output(f, f.startStep(1, "build"), "build")
		buf := slices.Repeat(benchLine, max(chunk/len(benchLine), 1))
		perWrite := len(buf) / len(benchLine)
		b.SetBytes(int64(len(benchLine)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += perWrite {
			o.Write(buf)
		}
		b.StopTimer()
		o.close()
	}
	b.Run("line-per-write", func(b *testing.B) { run(b, len(benchLine), false) })
	b.Run("4KiB-writes", func(b *testing.B) { run(b, 4<<10, false) })
	b.Run("line-per-write/follower", func(b *testing.B) { run(b, len(benchLine), true) })
}

// BenchmarkStream_Latency is the time from a write of a line on a step's
// writer to a follower, blocked on its channel in another goroutine,
// receiving it (reported as ns-to-follower, mean, and p99-ns).
func BenchmarkStream_Latency(b *testing.B) {
	lv := newLive(Options{OutputLimit: 16 << 10, Redact: benchSecrets})
	f := lv.open("job")
	_, ch := f.follow(0)
	o := lv.output(f, f.startStep(1, "build"), "build")
	<-ch // the step's start
	lat := make([]time.Duration, b.N)
	start := make([]time.Time, b.N)
	ack := make(chan struct{})
	go func() {
		for i := range b.N {
			<-ch
			lat[i] = time.Since(start[i])
			ack <- struct{}{}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		start[i] = time.Now()
		o.Write(benchLine)
		<-ack
	}
	b.StopTimer()
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	slices.Sort(lat)
	b.ReportMetric(float64(sum.Nanoseconds())/float64(b.N), "ns-to-follower")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}
