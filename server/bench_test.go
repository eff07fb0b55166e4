package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor"
)

// maxPushCommits is GitHub's cap on a push payload's commits array (push webhook
// schema: "an array of commit objects ... maximum of 2048 commits").
const maxPushCommits = 2048

// grownPush returns the real new-branch push payload, compact as GitHub sends it,
// with its commits array grown (copies of its commit, each with its own id) to the
// length closest to size bytes, pushed to branch. It keeps GitHub's key order. With
// its one commit the payload is 7,678 bytes: the "7.7 KB" push.
func grownPush(tb testing.TB, branch string, size int) []byte {
	tb.Helper()
	var compact bytes.Buffer
	if err := json.Compact(&compact, payload(tb, "push/with-new-branch.payload.json")); err != nil {
		tb.Fatal(err)
	}
	body := compact.Bytes()
	var top struct{ Commits []json.RawMessage }
	if err := json.Unmarshal(body, &top); err != nil || len(top.Commits) != 1 {
		tb.Fatalf("base payload: %v, %d commits", err, len(top.Commits))
	}
	commit := string(top.Commits[0])
	const id = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
	oldArray := "[" + commit + "]"
	if !bytes.Contains(body, []byte(`"commits":`+oldArray)) {
		tb.Fatal("commits array not found in the compact payload")
	}
	body = bytes.Replace(body, []byte(`"ref":"refs/heads/master"`), []byte(`"ref":"refs/heads/`+branch+`"`), 1)
	// Every copy has an id of the same length, so each adds len(commit)+1 bytes.
	n := 1 + int(math.Round(float64(size-len(body))/float64(len(commit)+1)))
	if n < 1 || n > maxPushCommits {
		tb.Fatalf("%d bytes need %d commits; GitHub sends 1 to %d", size, n, maxPushCommits)
	}
	var arr strings.Builder
	arr.WriteString(`"commits":[`)
	for i := range n {
		if i > 0 {
			arr.WriteByte(',')
			arr.WriteString(strings.ReplaceAll(commit, id, fmt.Sprintf("%040x", i)))
		} else {
			arr.WriteString(commit)
		}
	}
	arr.WriteByte(']')
	return bytes.Replace(body, []byte(`"commits":`+oldArray), []byte(arr.String()), 1)
}

// benchQueue accepts everything, allocation-free.
type benchQueue struct{}

func (benchQueue) Enqueue(ctx context.Context, target string, t executor.Trigger) (executor.Enqueued, error) {
	return executor.Enqueued{Job: executor.Job{ID: "job-1", Target: target}}, nil
}

// benchWriter is a reusable ResponseWriter that discards the body.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkWebhook measures a whole POST /webhook through Handler().ServeHTTP:
// read, verify, parse, decide and, for "enqueue", queue. Payloads are GitHub's push
// grown to 7.7 KB and 292 KB.
func BenchmarkWebhook(b *testing.B) {
	sizes := []struct {
		name string
		size int
	}{{"7.7KB", 7700}, {"292KB", 292_000}}
	for _, sz := range sizes {
		for _, c := range []struct {
			name     string
			branch   string
			secret   []byte
			wantCode int
		}{
			{"other-branch", "dev", testSecret, http.StatusOK},
			{"bad-signature", "main", []byte("not the secret"), http.StatusUnauthorized},
			{"enqueue", "main", testSecret, http.StatusAccepted},
		} {
			b.Run(sz.name+"/"+c.name, func(b *testing.B) {
				body := grownPush(b, c.branch, sz.size)
				srv, err := New(testLogger(b), Options{Secrets: [][]byte{testSecret}, Routes: testRoutes()},
					Deps{Queue: benchQueue{}, Journal: &fakeJournal{}, Resolver: &fakeResolver{}, Rollbacks: &fakeRollbacks{}, Auth: AllowAll("bench")})
				if err != nil {
					b.Fatal(err)
				}
				// Quiet: a log line per request would measure the test log, not the server.
				srv.lg = slog.New(slog.DiscardHandler)
				h := srv.Handler()

				req := delivery{event: "push", body: body,
					headers: map[string]string{hdrSignature256: sign(c.secret, body)}}.request()
				rd := bytes.NewReader(body)
				w := &benchWriter{h: http.Header{}}
				serve := func() {
					rd.Reset(body)
					req.Body = io.NopCloser(rd)
					clear(w.h)
					w.code = 0
					h.ServeHTTP(w, req)
				}
				serve()
				if w.code != c.wantCode {
					b.Fatalf("status %d, want %d", w.code, c.wantCode)
				}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					serve()
				}
			})
		}
	}
}

// TestGrownPush checks the benchmark payloads: sizes, commit counts within GitHub's
// cap, and that Parse reads them as the pushes they claim to be.
func TestGrownPush(t *testing.T) {
	for _, size := range []int{7700, 292_000} {
		body := grownPush(t, "dev", size)
		var p struct {
			Ref     string
			Commits []struct{ ID string }
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d bytes wanted: %d bytes, %d commits", size, len(body), len(p.Commits))
		if len(body) < size-600 || len(body) > size+600 {
			t.Errorf("payload is %d bytes, want about %d", len(body), size)
		}
		if len(p.Commits) > maxPushCommits || p.Ref != "refs/heads/dev" ||
			len(p.Commits) > 1 && p.Commits[len(p.Commits)-1].ID == p.Commits[0].ID {
			t.Errorf("payload: ref %s, %d commits", p.Ref, len(p.Commits))
		}
	}
}
