package config

import (
	"net"
	"strconv"
)

// MetricsPlace says where deployhook serves Prometheus' /metrics.
type MetricsPlace int

// The places of /metrics.
const (
	// MetricsOff: /metrics is not served. The console signs people in and
	// metrics_listen is unset: the metrics (target names, failure counts) are
	// not for whoever reaches the public listener.
	MetricsOff MetricsPlace = iota
	// MetricsMain: /metrics is served on the main listener, beside the pages,
	// because they too are open to anyone (ui.auth: none, the local demo).
	MetricsMain
	// MetricsOwn: /metrics is served on its own listener, metrics_listen,
	// without sign-in, and never on the main one.
	MetricsOwn
)

// MetricsPlace decides where /metrics is served: on metrics_listen alone
// when it is set; else on the main listener only when consoleOpen (the
// console asks nobody to sign in: ui.auth none); else nowhere (serve says to
// set metrics_listen).
func (c *Config) MetricsPlace(consoleOpen bool) MetricsPlace {
	switch {
	case c.MetricsListen != "":
		return MetricsOwn
	case consoleOpen:
		return MetricsMain
	}
	return MetricsOff
}

// MetricsOffWarning is what serve logs when MetricsPlace is MetricsOff.
const MetricsOffWarning = "/metrics is off: the console signs people in, so it is not served on the public listener; set metrics_listen (e.g. 127.0.0.1:9090) to serve it on a listener of its own"

// validateMetrics checks metrics_listen: empty, or HOST:PORT (HOST may be
// empty for every interface; PORT 0 picks a free one) that is not the main
// listener's address.
func validateMetrics(metricsListen, listen string) []error {
	var p problems
	if metricsListen == "" {
		return p
	}
	_, port, err := net.SplitHostPort(metricsListen)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		p.add("metrics_listen %q: want HOST:PORT, like 127.0.0.1:9090 (a listener of its own for /metrics, reachable without sign-in: keep it off the public network)", metricsListen)
		return p
	}
	if metricsListen == listen {
		p.add("metrics_listen %s is also listen: give /metrics another port (it is served there without sign-in)", metricsListen)
	}
	return p
}
