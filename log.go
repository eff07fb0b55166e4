package main

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// logAttr is the ReplaceAttr of both log formats. It writes a duration as
// seconds (see seconds), so "duration", "grace" and "retain" read the same in
// text and JSON, and it leaves out an attribute whose value is nil: a step that
// succeeded logs no "err" at all rather than "err": null.
func logAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(seconds(a.Value.Duration()))
	case slog.KindAny:
		if a.Value.Any() == nil {
			return slog.Attr{}
		}
	}
	return a
}

// cloudAttr is the JSON format's ReplaceAttr: logAttr, and the top-level field
// names Cloud Logging reads (message, and severity with WARNING for warn).
func cloudAttr(groups []string, a slog.Attr) slog.Attr {
	a = logAttr(groups, a)
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "message"
	case slog.LevelKey:
		a.Key = "severity"
		if lv, ok := a.Value.Any().(slog.Level); ok && lv == slog.LevelWarn {
			a.Value = slog.StringValue("WARNING")
		}
	}
	return a
}

// seconds formats d as a decimal number of seconds followed by "s", with no
// trailing zeros: "1.5s", "0.000684987s", "7776000s". It is the form of
// protobuf's JSON Duration, which Cloud Logging uses for request latencies; a
// person reads it at a glance, a program sorts and sums it after dropping the
// "s", and time.ParseDuration reads it back exactly (slog's JSON default is a
// bare number of nanoseconds, its text default a mix of units: "684.987µs").
func seconds(d time.Duration) string {
	sign, u := "", uint64(d)
	if d < 0 {
		sign, u = "-", -u
	}
	s, ns := u/uint64(time.Second), u%uint64(time.Second)
	if ns == 0 {
		return sign + strconv.FormatUint(s, 10) + "s"
	}
	return fmt.Sprintf("%s%d.%ss", sign, s, strings.TrimRight(fmt.Sprintf("%09d", ns), "0"))
}
