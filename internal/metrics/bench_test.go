package metrics_test

import (
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/internal/metrics"
	"github.com/deployhook/deployhook/server"
)

// The cost of the observers on the paths they sit on: one delivery, one
// step, one job's end, one journal write, one GitHub answer, one tunnel
// event. go test -bench Observe -benchmem ./internal/metrics/

func BenchmarkObserve_Delivery(b *testing.B) {
	m := mustNew(b, metrics.Options{Targets: []executor.Target{web}})
	b.ReportAllocs()
	for b.Loop() {
		m.Delivery(server.DeliveryDeployed)
	}
}

func BenchmarkObserve_Step(b *testing.B) {
	m := mustNew(b, metrics.Options{Targets: []executor.Target{web}})
	b.ReportAllocs()
	for b.Loop() {
		m.StepEnded("web", "rollback: restart", 1500*time.Millisecond, true)
	}
}

func BenchmarkObserve_JobEnded(b *testing.B) {
	m := mustNew(b, metrics.Options{Targets: []executor.Target{web}})
	j := executor.Job{Target: "web", State: executor.StateSuccess, Started: time.Unix(10, 0), Finished: time.Unix(70, 0)}
	b.ReportAllocs()
	for b.Loop() {
		m.JobEnded(j)
	}
}

func BenchmarkObserve_JournalWrite(b *testing.B) {
	m := mustNew(b, metrics.Options{Targets: []executor.Target{web}})
	b.ReportAllocs()
	for b.Loop() {
		m.JournalWrite("add_step", 300*time.Microsecond, nil)
	}
}

func BenchmarkObserve_GitHubAnswer(b *testing.B) {
	m := mustNew(b, metrics.Options{Targets: []executor.Target{web}})
	b.ReportAllocs()
	for b.Loop() {
		m.RateLimit(4321, 5000)
	}
}

func BenchmarkObserve_Tunnel(b *testing.B) {
	o := mustNew(b, metrics.Options{Targets: []executor.Target{web}}).IAP("web")
	b.ReportAllocs()
	for b.Loop() {
		o.Tunnel(iap.EventReconnect)
	}
}
