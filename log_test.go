package main

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"regexp"
	"testing"
	"time"

	"github.com/deployhook/deployhook/config"
)

func TestSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{time.Nanosecond, "0.000000001s"},
		{684987 * time.Nanosecond, "0.000684987s"},
		{9 * time.Millisecond, "0.009s"},
		{1007 * time.Millisecond, "1.007s"},
		{1500 * time.Millisecond, "1.5s"},
		{2 * time.Minute, "120s"},
		{90 * 24 * time.Hour, "7776000s"},
		{-1500 * time.Millisecond, "-1.5s"},
		{math.MaxInt64, "9223372036.854775807s"},
		{math.MinInt64, "-9223372036.854775808s"},
	}
	for _, tc := range tests {
		got := seconds(tc.d)
		if got != tc.want {
			t.Errorf("seconds(%d) = %q, want %q", int64(tc.d), got, tc.want)
		}
		// A program reads it back exactly.
		if back, err := time.ParseDuration(got); err != nil || back != tc.d {
			t.Errorf("time.ParseDuration(%q) = %d, %v; want %d", got, int64(back), err, int64(tc.d))
		}
	}
}

// TestEnv_Logger: both formats write durations as seconds and leave out nil
// values; JSON has the field names Cloud Logging reads. Before issue 9 the JSON
// lines said "duration":1007000000 and "err":null, the text ones
// duration=1.007s and err=<nil>.
func TestEnv_Logger(t *testing.T) {
	timeField := regexp.MustCompile(`("time":"[^"]*",|time=\S+ )`)
	tests := []struct {
		format string
		want   string
	}{
		{"json", `{"severity":"WARNING","message":"step finished","step":"restart","exit":0,"duration":"1.007s",` +
			`"grace":"120s","job":{"wait":"0.000684987s","err":"boom"}}` + "\n"},
		{"text", `level=WARN msg="step finished" step=restart exit=0 duration=1.007s grace=120s job.wait=0.000684987s job.err=boom` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			e := &env{stderr: &buf}
			lg := e.logger(config.Log{Format: tc.format, Level: "info"})
			var noErr error
			lg.Warn("step finished", "step", "restart", "exit", 0, "err", noErr,
				"duration", 1007*time.Millisecond, slog.Duration("grace", 2*time.Minute),
				slog.Group("job", "wait", 684987*time.Nanosecond, "err", errors.New("boom"), "nothing", nil))
			lg.Debug("below the level")
			if got := timeField.ReplaceAllString(buf.String(), ""); got != tc.want {
				t.Errorf("log\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
