package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/ghstatus"
	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/internal/metrics"
	"github.com/deployhook/deployhook/server"
)

// consoleOpen reports whether the console asks nobody to sign in (ui.auth:
// none, the local demo), so that /metrics may be served beside its pages
// (config.MetricsPlace). With a sign-in, /metrics is only on metrics_listen.
func consoleOpen(cfg *config.Config) bool { return cfg.UI.Auth == config.AuthNone }

// monitor is serve's metrics: the registry and observers, and where
// /metrics is served.
type monitor struct {
	lg    *slog.Logger
	cfg   *config.Config
	m     *metrics.Metrics
	src   *appSource
	place config.MetricsPlace
}

// newMonitor makes serve's metrics. They read the queue and the journal
// through the app that assemble builds after them (watch).
func newMonitor(cfg *config.Config, lg *slog.Logger) (*monitor, error) {
	src := &appSource{}
	m, err := metrics.New(lg, metrics.Options{
		Version: version, Targets: executorTargets(cfg), Queue: src, Journal: src,
	})
	if err != nil {
		return nil, err
	}
	mon := &monitor{lg: lg, cfg: cfg, m: m, src: src, place: cfg.MetricsPlace(consoleOpen(cfg))}
	if mon.place == config.MetricsOff {
		lg.Warn(config.MetricsOffWarning)
	}
	return mon, nil
}

// watch makes the metrics read a's queue and journal. It must be called
// before anything is served.
func (mon *monitor) watch(a *app) { mon.src.a = a }

// appSource is the queue and journal of an app assembled after the metrics.
type appSource struct{ a *app }

func (s *appSource) Depth(target string) int {
	if s.a == nil || s.a.ex == nil {
		return 0
	}
	return s.a.ex.Depth(target)
}

func (s *appSource) Owed(ctx context.Context, limit int) ([]executor.OwedReport, error) {
	if s.a == nil {
		return nil, errors.New("journal not open")
	}
	return s.a.store.Owed(ctx, limit)
}

func (s *appSource) LastSuccess(ctx context.Context, target string) (executor.Job, error) {
	if s.a == nil {
		return executor.Job{}, errors.New("journal not open")
	}
	return s.a.store.LastSuccess(ctx, target)
}

// main returns what the main listener serves at /metrics: the metrics when
// config.MetricsMain, else nil (not served there).
func (mon *monitor) main() http.Handler {
	if mon.place != config.MetricsMain {
		return nil
	}
	return mon.m.Handler()
}

// listen serves /metrics on metrics_listen when config.MetricsOwn, and says
// where on stdout; the returned stop shuts that listener down. Nothing else is
// served there.
func (mon *monitor) listen(stdout io.Writer) (stop func(), err error) {
	if mon.place != config.MetricsOwn {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", mon.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics (metrics_listen): %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+server.MetricsPath, mon.m.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(mon.lg.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			mon.lg.Error("metrics listener", "err", err)
		}
	}()
	mon.lg.Info("metrics served", "addr", ln.Addr().String(), "path", server.MetricsPath)
	fmt.Fprintf(stdout, "deployhook metrics on http://%s%s\n", ln.Addr(), server.MetricsPath)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			mon.lg.Warn("metrics shutdown", "err", err)
		}
		<-done
	}, nil
}

// githubObserver is m as ghstatus' Observer; nil when m is.
func githubObserver(m *metrics.Metrics) ghstatus.Observer {
	if m == nil {
		return nil
	}
	return m
}

// iapObserver is m's observer of target's tunnels; nil when m is.
func iapObserver(m *metrics.Metrics, target string) iap.Observer {
	if m == nil {
		return nil
	}
	return m.IAP(target)
}
