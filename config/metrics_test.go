package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoad_MetricsListen: metrics_listen is read, checked against listen and
// refused when it is not HOST:PORT; a misspelt key is an unknown key.
func TestLoad_MetricsListen(t *testing.T) {
	envOK := env("DEPLOYHOOK_WEBHOOK_SECRET", secret16)
	tests := []struct {
		name   string
		yaml   string
		want   string // the exact fragment of the only error; "" for valid
		listen string // metrics_listen as loaded, for a valid row
	}{
		{"unset", ssh8, "", ""},
		{"loopback", "metrics_listen: 127.0.0.1:9090\n" + ssh8, "", "127.0.0.1:9090"},
		{"every interface", "metrics_listen: \":9090\"\n" + ssh8, "", ":9090"},
		{"ipv6 port 0", "metrics_listen: \"[::1]:0\"\n" + ssh8, "", "[::1]:0"},
		{"no port", "metrics_listen: 127.0.0.1\n" + ssh8,
			`metrics_listen "127.0.0.1": want HOST:PORT, like 127.0.0.1:9090`, ""},
		{"port not a number", "metrics_listen: localhost:http\n" + ssh8,
			`metrics_listen "localhost:http": want HOST:PORT`, ""},
		{"port too large", "metrics_listen: 127.0.0.1:65536\n" + ssh8,
			`metrics_listen "127.0.0.1:65536": want HOST:PORT`, ""},
		{"same as listen", "listen: 127.0.0.1:8080\nmetrics_listen: 127.0.0.1:8080\n" + ssh8,
			"metrics_listen 127.0.0.1:8080 is also listen: give /metrics another port", ""},
		{"same as the default listen", "metrics_listen: 127.0.0.1:8080\n" + ssh8,
			"metrics_listen 127.0.0.1:8080 is also listen", ""},
		{"misspelt", "metric_listen: 127.0.0.1:9090\n" + ssh8, `unknown key "metric_listen"`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p, envOK)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if c.MetricsListen != tc.listen {
					t.Errorf("MetricsListen = %q, want %q", c.MetricsListen, tc.listen)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("%d problems, want only this one: %v", n, err)
			}
		})
	}
}

// TestConfig_MetricsPlace: /metrics is on its own listener whenever
// metrics_listen is set, on the main one only when the console is open to
// everyone, and nowhere otherwise: never public beside signed-in pages.
func TestConfig_MetricsPlace(t *testing.T) {
	tests := []struct {
		name          string
		metricsListen string
		consoleOpen   bool
		want          MetricsPlace
	}{
		{"own listener, console signed in", "127.0.0.1:9090", false, MetricsOwn},
		{"own listener, console open", "127.0.0.1:9090", true, MetricsOwn},
		{"no listener, console open (demo)", "", true, MetricsMain},
		{"no listener, console signed in", "", false, MetricsOff},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{MetricsListen: tc.metricsListen}
			if got := c.MetricsPlace(tc.consoleOpen); got != tc.want {
				t.Errorf("MetricsPlace(%v) = %d, want %d", tc.consoleOpen, got, tc.want)
			}
		})
	}
}
