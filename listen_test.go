package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestListenAddr(t *testing.T) {
	tests := []struct {
		name                   string
		flag, port, configured string
		want, wantErr          string
	}{
		{name: "configured", configured: "127.0.0.1:8080", want: "127.0.0.1:8080"},
		{name: "PORT on every interface", port: "8080", configured: "127.0.0.1:9000", want: ":8080"},
		{name: "PORT 0 picks a free port", port: "0", configured: "127.0.0.1:9000", want: ":0"},
		{name: "leading zero", port: "0443", want: ":443"},
		{name: "flag wins over PORT", flag: "127.0.0.1:7000", port: "8080", configured: "127.0.0.1:9000", want: "127.0.0.1:7000"},
		{name: "not a number", port: "http", configured: "127.0.0.1:9000",
			wantErr: `PORT="http" is not a port number (0 to 65535): set PORT to the port to listen on, or pass --listen`},
		{name: "too large", port: "65536", wantErr: `PORT="65536" is not a port number`},
		{name: "negative", port: "-1", wantErr: `PORT="-1" is not a port number`},
		{name: "host and port", port: "0.0.0.0:8080", wantErr: `PORT="0.0.0.0:8080" is not a port number`},
		{name: "bad PORT ignored when the flag is given", flag: "127.0.0.1:7000", port: "http", want: "127.0.0.1:7000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := listenAddr(tt.flag, tt.port, tt.configured)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("listenAddr = %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("listenAddr = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestServe_Port runs serve the way Cloud Run does: PORT set, no --listen.
// It listens on every interface at that port, not on the configuration's
// listen (before PORT was read, it listened on 127.0.0.1:8080 and Cloud Run
// found nothing on its port).
func TestServe_Port(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	gh := newFakeGitHub(t)
	base := testEnv(gh)
	getenv := func(k string) string {
		if k == "PORT" {
			return "0"
		}
		return base(k)
	}
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"serve", "--config", cfg, "--data-dir", dir + "/data"}, getenv, strings.NewReader(""), pw, t.Output())
		pw.Close()
		done <- err
	}()
	u := readURL(t, pr)
	go io.Copy(io.Discard, pr)
	defer func() { cancel(); <-done }()

	host, port, err := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		t.Fatalf("serve listens on %s, want every interface (:PORT)", u)
	}
	resp, err := http.Get("http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 ok", resp.StatusCode, body)
	}
}

func TestServe_BadPort(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	base := testEnv(newFakeGitHub(t))
	getenv := func(k string) string {
		if k == "PORT" {
			return "eighty"
		}
		return base(k)
	}
	// Should serve start anyway, it stops as soon as it says it listens, and
	// the test fails on the nil error.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "deployhook listening on ") {
				cancel()
			}
		}
	}()
	err := run(ctx, []string{"serve", "--config", cfg, "--data-dir", dir + "/data"}, getenv, strings.NewReader(""), pw, t.Output())
	pw.Close()
	want := `PORT="eighty" is not a port number (0 to 65535): set PORT to the port to listen on, or pass --listen`
	if err == nil || err.Error() != want {
		t.Fatalf("serve with PORT=eighty: %v; want %q", err, want)
	}
}
