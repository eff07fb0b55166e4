// Package metrics exports deployhook's Prometheus metrics (issue 10, item 4).
//
// A Metrics holds a private registry (never the global one): the Go runtime
// and process collectors, and deployhook's own metrics, all named
// deployhook_… with their unit in the name, as Prometheus' naming guide asks.
// It implements the observers the other packages declare — executor.Observer,
// server.Observer, ghstatus.Observer, and iap.Observer through IAP — so that
// none of them imports Prometheus, and it reads the queue depth, the outbox
// and each target's last successful deploy at scrape time.
//
// Every label value is bounded: targets and step names are those of the
// configuration (anything else is counted as "other"), and results, outcomes
// and kinds are the fixed sets the observers define. Counters of every known
// label combination start at zero, so that rate() and increase() see the
// first event.
//
// The metrics, by name:
//
//	deployhook_build_info{version,goversion}                  1
//	deployhook_webhook_deliveries_total{result}              counter (server.Delivery)
//	deployhook_deploys_total{target,outcome}                 counter (final job states)
//	deployhook_deploy_duration_seconds{target,outcome}       histogram, start to end of jobs that ran
//	deployhook_step_duration_seconds{target,step,phase,result} histogram (phase deploy|rollback, result ok|failed)
//	deployhook_rollbacks_total{target,result}                counter (result ok|failed)
//	deployhook_queue_jobs{target}                            gauge at scrape: running + pending
//	deployhook_last_success_timestamp_seconds{target}        gauge at scrape, from the journal
//	deployhook_journal_write_duration_seconds{op}            histogram (op: executor.JournalOps)
//	deployhook_journal_write_errors_total{op}                counter
//	deployhook_outbox_reports                                gauge at scrape: reports owed
//	deployhook_outbox_oldest_age_seconds                     gauge at scrape: age of the oldest (0 when none)
//	deployhook_github_api_errors_total{kind}                 counter (ghstatus.ErrorKind)
//	deployhook_github_rate_limit_remaining_requests          gauge, once GitHub said it
//	deployhook_github_rate_limit_requests                    gauge, once GitHub said it
//	deployhook_iap_tunnel_events_total{target,event}         counter (iap.Event)
//	deployhook_scrape_errors_total{source}                   counter: journal reads that failed at scrape
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/ghstatus"
	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/server"
)

// Other is the label value of a target or step the configuration does not
// name: a job of a target removed from the configuration, say.
const Other = "other"

// Queue reads the executor's queue. Implementation: *executor.Executor.
type Queue interface {
	// Depth returns how many jobs of target are running or pending.
	Depth(target string) int
}

// Journal reads what the metrics read from the journal at scrape time.
// Implementation: executor.Store.
type Journal interface {
	// Owed lists unsent reports, oldest first, at most limit.
	Owed(ctx context.Context, limit int) ([]executor.OwedReport, error)
	// LastSuccess returns target's last successful job, or an error wrapping
	// executor.ErrNotFound.
	LastSuccess(ctx context.Context, target string) (executor.Job, error)
}

// Options configure a Metrics.
type Options struct {
	// Version is deployhook's version, for deployhook_build_info.
	Version string
	// Targets are the configured targets: their names and their steps' names
	// are the label values of target and step.
	Targets []executor.Target
	// Queue, when set, is read at scrape for deployhook_queue_jobs.
	Queue Queue
	// Journal, when set, is read at scrape for the outbox gauges and
	// deployhook_last_success_timestamp_seconds.
	Journal Journal
	// ScrapeTimeout bounds the journal reads of one scrape; default 5 s.
	ScrapeTimeout time.Duration
	// Now is the clock for the outbox's oldest age; nil means time.Now.
	Now func() time.Time
}

// MaxOutboxScan is how many owed reports a scrape reads at most: the backlog
// gauge says at most this many, and a scrape of a journal whose outbox grew
// past it (GitHub down for days) stays cheap. The oldest age is exact.
const MaxOutboxScan = 10000

// Bucket bounds, in seconds.
var (
	// deployBuckets span a quick restart to an hour-long deploy.
	deployBuckets = []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600}
	// stepBuckets span a git fetch to a long migration.
	stepBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}
	// journalBuckets span a SQLite write in the page cache to a stalled disk.
	journalBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// outcomes are the final job states, as deployhook_deploys_total's outcome.
var outcomes = []executor.State{
	executor.StateSuccess, executor.StateFailure, executor.StateError,
	executor.StateSuperseded, executor.StateSkipped,
}

// Metrics is deployhook's registry and the observers that feed it. Its
// methods are safe for concurrent use.
type Metrics struct {
	lg   *slog.Logger
	opts Options
	reg  *prometheus.Registry

	steps map[string]map[string]bool // target → its step names

	deliveries map[server.Delivery]prometheus.Counter
	deploys    *prometheus.CounterVec
	deployDur  *prometheus.HistogramVec
	stepDur    *prometheus.HistogramVec
	rollbacks  *prometheus.CounterVec
	journalDur map[string]prometheus.Observer
	journalErr map[string]prometheus.Counter
	apiErrors  map[ghstatus.ErrorKind]prometheus.Counter
	rate       *rateGauge
	tunnels    *prometheus.CounterVec
	scrapeErrs *prometheus.CounterVec
}

var (
	_ executor.Observer = (*Metrics)(nil)
	_ server.Observer   = (*Metrics)(nil)
	_ ghstatus.Observer = (*Metrics)(nil)
)

// New returns a Metrics whose registry holds the Go and process collectors
// and every deployhook_… metric. It fails only when two targets share a name.
func New(lg *slog.Logger, opts Options) (*Metrics, error) {
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Metrics{lg: lg, opts: opts, reg: prometheus.NewRegistry(), steps: map[string]map[string]bool{}}
	for _, t := range opts.Targets {
		if _, dup := m.steps[t.Name]; dup || t.Name == Other {
			return nil, fmt.Errorf("metrics: target %q is defined twice or named %q", t.Name, Other)
		}
		names := map[string]bool{}
		for _, s := range t.Steps {
			names[s.Name] = true
		}
		m.steps[t.Name] = names
	}

	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "deployhook_build_info",
		Help:        "The running deployhook's version and Go version; always 1.",
		ConstLabels: prometheus.Labels{"version": opts.Version, "goversion": runtime.Version()},
	})
	build.Set(1)

	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployhook_webhook_deliveries_total",
		Help: "Webhook deliveries (POST /webhook), by how they were answered.",
	}, []string{"result"})
	m.deliveries = map[server.Delivery]prometheus.Counter{}
	for _, d := range server.Deliveries() {
		m.deliveries[d] = deliveries.WithLabelValues(string(d))
	}

	m.deploys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployhook_deploys_total",
		Help: "Jobs that ended, by target and final state (success, failure, error, superseded, skipped).",
	}, []string{"target", "outcome"})
	m.deployDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "deployhook_deploy_duration_seconds",
		Help:    "How long jobs that ran took, from start to final state, by target and final state.",
		Buckets: deployBuckets,
	}, []string{"target", "outcome"})
	m.stepDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "deployhook_step_duration_seconds",
		Help:    "How long steps ran, by target, configured step name, phase (deploy or rollback) and result (ok or failed).",
		Buckets: stepBuckets,
	}, []string{"target", "step", "phase", "result"})
	m.rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployhook_rollbacks_total",
		Help: "Automatic rollbacks after a failed deploy, by target and result (ok or failed).",
	}, []string{"target", "result"})
	for _, t := range opts.Targets {
		for _, o := range outcomes {
			m.deploys.WithLabelValues(t.Name, string(o))
		}
		m.rollbacks.WithLabelValues(t.Name, "ok")
		m.rollbacks.WithLabelValues(t.Name, "failed")
	}

	journalDur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "deployhook_journal_write_duration_seconds",
		Help:    "How long the executor's writes to the journal took, by operation.",
		Buckets: journalBuckets,
	}, []string{"op"})
	journalErr := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployhook_journal_write_errors_total",
		Help: "The executor's writes the journal refused (disk full, read-only, database down), by operation.",
	}, []string{"op"})
	m.journalDur, m.journalErr = map[string]prometheus.Observer{}, map[string]prometheus.Counter{}
	for _, op := range append(executor.JournalOps(), Other) {
		m.journalDur[op] = journalDur.WithLabelValues(op)
		m.journalErr[op] = journalErr.WithLabelValues(op)
	}

	apiErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployhook_github_api_errors_total",
		Help: "Requests to the GitHub API that failed, each try on its own, by kind (rate_limited, client, server, network).",
	}, []string{"kind"})
	m.apiErrors = map[ghstatus.ErrorKind]prometheus.Counter{}
	for _, k := range ghstatus.ErrorKinds() {
		m.apiErrors[k] = apiErrors.WithLabelValues(string(k))
	}
	m.rate = &rateGauge{
		remaining: prometheus.NewDesc("deployhook_github_rate_limit_remaining_requests",
			"X-RateLimit-Remaining of GitHub's last answer: requests left in the current window.", nil, nil),
		limit: prometheus.NewDesc("deployhook_github_rate_limit_requests",
			"X-RateLimit-Limit of GitHub's last answer: requests allowed per window.", nil, nil),
	}

	m.tunnels = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployhook_iap_tunnel_events_total",
		Help: "IAP tunnel events by target: connect, connect_failed, reconnect, reconnect_failed.",
	}, []string{"target", "event"})
	m.scrapeErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployhook_scrape_errors_total",
		Help: "Reads of the journal that failed while metrics were collected, by source (outbox, last_success).",
	}, []string{"source"})
	m.scrapeErrs.WithLabelValues("outbox")
	m.scrapeErrs.WithLabelValues("last_success")

	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build, deliveries, m.deploys, m.deployDur, m.stepDur, m.rollbacks,
		journalDur, journalErr, apiErrors, m.rate, m.tunnels, m.scrapeErrs,
		&scraped{m: m},
	} {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return m, nil
}

// Handler serves the registry in Prometheus' text format (or OpenMetrics,
// when the scraper asks), at whatever path it is mounted.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.lg.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
	})
}

// Gatherer returns the registry, for tests and for pushing elsewhere.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// target returns name as a target label: itself when configured, else Other.
func (m *Metrics) target(name string) string {
	if _, ok := m.steps[name]; ok {
		return name
	}
	return Other
}

// Delivery implements server.Observer.
func (m *Metrics) Delivery(d server.Delivery) {
	c, ok := m.deliveries[d]
	if !ok {
		c = m.deliveries[server.DeliveryError]
	}
	c.Inc()
}

// JobEnded implements executor.Observer: it counts j by target and final
// state, and observes the duration of a job that ran.
func (m *Metrics) JobEnded(j executor.Job) {
	if !j.State.Final() {
		return
	}
	target, outcome := m.target(j.Target), string(j.State)
	m.deploys.WithLabelValues(target, outcome).Inc()
	if !j.Started.IsZero() && !j.Finished.Before(j.Started) {
		m.deployDur.WithLabelValues(target, outcome).Observe(j.Finished.Sub(j.Started).Seconds())
	}
}

// rollbackPrefix is how the executor names the steps of its automatic
// rollback (executor.StepRun.Name).
const rollbackPrefix = "rollback: "

// StepEnded implements executor.Observer.
func (m *Metrics) StepEnded(target, step string, d time.Duration, ok bool) {
	phase := "deploy"
	if s, cut := strings.CutPrefix(step, rollbackPrefix); cut {
		phase, step = "rollback", s
	}
	names, known := m.steps[target]
	if !known {
		target = Other
	}
	if !names[step] {
		step = Other
	}
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.stepDur.WithLabelValues(target, step, phase, result).Observe(d.Seconds())
}

// RolledBack implements executor.Observer.
func (m *Metrics) RolledBack(target string, ok bool) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.rollbacks.WithLabelValues(m.target(target), result).Inc()
}

// JournalWrite implements executor.Observer. ErrNotFound and ErrDuplicate are
// answers, not refused writes.
func (m *Metrics) JournalWrite(op string, d time.Duration, err error) {
	h, ok := m.journalDur[op]
	if !ok {
		op = Other
		h = m.journalDur[op]
	}
	h.Observe(d.Seconds())
	if err != nil && !errors.Is(err, executor.ErrNotFound) && !errors.Is(err, executor.ErrDuplicate) {
		m.journalErr[op].Inc()
	}
}

// APIError implements ghstatus.Observer.
func (m *Metrics) APIError(kind ghstatus.ErrorKind) {
	if c, ok := m.apiErrors[kind]; ok {
		c.Inc()
	}
}

// RateLimit implements ghstatus.Observer.
func (m *Metrics) RateLimit(remaining, limit int) { m.rate.set(remaining, limit) }

// IAP returns the iap.Observer of target's tunnels.
func (m *Metrics) IAP(target string) iap.Observer {
	t := m.target(target)
	o := tunnelObserver{}
	for _, ev := range []iap.Event{iap.EventConnect, iap.EventConnectFailed, iap.EventReconnect, iap.EventReconnectFailed} {
		o[ev] = m.tunnels.WithLabelValues(t, string(ev))
	}
	return o
}

// tunnelObserver counts one target's tunnel events.
type tunnelObserver map[iap.Event]prometheus.Counter

// Tunnel implements iap.Observer.
func (o tunnelObserver) Tunnel(ev iap.Event) {
	if c, ok := o[ev]; ok {
		c.Inc()
	}
}

// rateGauge holds GitHub's last rate limit headers; it exports nothing until
// GitHub said them, so an alert on a low remaining count never fires on a
// deployhook that has not asked GitHub anything yet.
type rateGauge struct {
	remaining, limit *prometheus.Desc

	mu       sync.Mutex
	seen     bool
	rem, lim int
}

func (g *rateGauge) set(remaining, limit int) {
	g.mu.Lock()
	g.seen, g.rem, g.lim = true, remaining, limit
	g.mu.Unlock()
}

func (g *rateGauge) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.remaining
	ch <- g.limit
}

func (g *rateGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	seen, rem, lim := g.seen, g.rem, g.lim
	g.mu.Unlock()
	if !seen {
		return
	}
	ch <- prometheus.MustNewConstMetric(g.remaining, prometheus.GaugeValue, float64(rem))
	ch <- prometheus.MustNewConstMetric(g.limit, prometheus.GaugeValue, float64(lim))
}

// scraped collects what is read at scrape time: the queue, the outbox and
// each target's last success.
type scraped struct{ m *Metrics }

var (
	queueDesc = prometheus.NewDesc("deployhook_queue_jobs",
		"Jobs of the target this deployhook holds: the running one and the pending one.", []string{"target"}, nil)
	outboxDesc = prometheus.NewDesc("deployhook_outbox_reports",
		"Reports owed to GitHub (and notifications) that wait in the journal's outbox.", nil, nil)
	oldestDesc = prometheus.NewDesc("deployhook_outbox_oldest_age_seconds",
		"Age of the oldest report in the outbox; 0 when it is empty.", nil, nil)
	lastSuccessDesc = prometheus.NewDesc("deployhook_last_success_timestamp_seconds",
		"When the target's last successful deploy finished (Unix time), as the journal says.", []string{"target"}, nil)
)

func (s *scraped) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDesc
	ch <- outboxDesc
	ch <- oldestDesc
	ch <- lastSuccessDesc
}

func (s *scraped) Collect(ch chan<- prometheus.Metric) {
	m := s.m
	if q := m.opts.Queue; q != nil {
		for _, t := range m.opts.Targets {
			ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(q.Depth(t.Name)), t.Name)
		}
	}
	jr := m.opts.Journal
	if jr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.ScrapeTimeout)
	defer cancel()
	owed, err := jr.Owed(ctx, MaxOutboxScan)
	if err != nil {
		m.lg.Warn("metrics: read the outbox", "err", err)
		m.scrapeErrs.WithLabelValues("outbox").Inc()
	} else {
		age := 0.0
		if len(owed) > 0 {
			age = max(m.opts.Now().Sub(owed[0].Created).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(outboxDesc, prometheus.GaugeValue, float64(len(owed)))
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
	}
	for _, t := range m.opts.Targets {
		j, err := jr.LastSuccess(ctx, t.Name)
		switch {
		case errors.Is(err, executor.ErrNotFound):
		case err != nil:
			m.lg.Warn("metrics: read the last successful deploy", "target", t.Name, "err", err)
			m.scrapeErrs.WithLabelValues("last_success").Inc()
		case !j.Finished.IsZero():
			ch <- prometheus.MustNewConstMetric(lastSuccessDesc, prometheus.GaugeValue,
				float64(j.Finished.UnixNano())/1e9, t.Name)
		}
	}
}
