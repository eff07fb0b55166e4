package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deployhook/deployhook/executor/store/pgstore/pgtest"
)

// BenchmarkIntake is a signed push of a new SHA to the deployed branch
// through the whole program (deployhook serve in this process, over loopback
// HTTP, the HTTP client included) until its 202 with the job recorded, on
// each journal: SQLite in data_dir, PostgreSQL, and PostgreSQL with
// replicas: true (the job is a lane's, which the lane's unique (target, SHA)
// index also checks). A deploy runs meanwhile and never ends, so every push
// is one more job that waits, as in BenchmarkServe_Push.
//
// PostgreSQL is the tests' server (pgtest: fsync off, so not a durability-fair
// comparison with SQLite's synchronous=FULL), or the server of
// DEPLOYHOOK_BENCH_POSTGRES, a URL of a database whose user may create
// databases (each run creates one of its own and drops it after).
func BenchmarkIntake(b *testing.B) {
	for _, c := range []struct {
		name     string
		postgres bool
		replicas bool
	}{
		{name: "journal=sqlite"},
		{name: "journal=postgres", postgres: true},
		{name: "journal=postgres/replicas", postgres: true, replicas: true},
	} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			env := map[string]string{"DEPLOYHOOK_WEBHOOK_SECRET": testSecret}
			if c.postgres {
				env["DEPLOYHOOK_DATABASE_URL"] = benchDatabase(b)
			}
			cfg := fmt.Sprintf(`
log: {format: text, level: error}
shutdown_grace: 1ms
replicas: %v
github: {report: false}
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    branch: main
    transport: local
    steps:
      - {name: hold, run: sleep 3600, timeout: 2h}
`, c.replicas)
			p := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"serve", "--config", p, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")},
					func(k string) string { return env[k] }, nil, pw, io.Discard)
				pw.Close()
			}()
			b.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					b.Errorf("serve: %v", err)
				}
			})
			base := readURL(b, pr)
			go io.Copy(io.Discard, pr)
			// The hold deploy runs before the first measured push.
			first, _ := sampleDelivery("push", "acme/app", "main", fmt.Sprintf("%040x", 1))
			a, err := post(base, "push", "bench-first", first, sign(first))
			if err != nil || a.code != http.StatusAccepted {
				b.Fatalf("first push: %+v %v", a, err)
			}
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				if j, err := fetchJob(base, a.job); err == nil && j.State == "running" {
					break
				}
				if time.Now().After(deadline) {
					b.Fatal("the first push's deploy never started")
				}
			}
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i], _ = sampleDelivery("push", "acme/app", "main", fmt.Sprintf("%040x", i+2))
			}
			b.SetBytes(int64(len(first)))
			b.ResetTimer()
			for i := range b.N {
				a, err := post(base, "push", fmt.Sprint("bench-", i), bodies[i], sign(bodies[i]))
				if err != nil {
					b.Fatal(err)
				}
				if a.code != http.StatusAccepted || a.job == "" {
					b.Fatalf("push %d: %d %s, want 202 with a job", i, a.code, a.text)
				}
			}
			b.StopTimer()
		})
	}
}

// benchDatabase returns the URL of a new, empty PostgreSQL database: on the
// server of DEPLOYHOOK_BENCH_POSTGRES (dropped after the benchmark), else on
// the tests' server.
func benchDatabase(b *testing.B) string {
	admin := os.Getenv("DEPLOYHOOK_BENCH_POSTGRES")
	if admin == "" {
		return pgtest.Shared(b).NewDatabase(b)
	}
	u, err := url.Parse(admin)
	if err != nil {
		b.Fatalf("DEPLOYHOOK_BENCH_POSTGRES: %v", err)
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	name := "bench_" + hex.EncodeToString(r[:])
	conn, err := pgx.Connect(b.Context(), admin)
	if err != nil {
		b.Fatalf("DEPLOYHOOK_BENCH_POSTGRES: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(b.Context(), "CREATE DATABASE "+name); err != nil {
		b.Fatalf("DEPLOYHOOK_BENCH_POSTGRES: %v", err)
	}
	b.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			b.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			b.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
