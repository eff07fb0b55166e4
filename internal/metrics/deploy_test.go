package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/executor/iap"
	"github.com/deployhook/deployhook/internal/metrics"
	"github.com/deployhook/deployhook/server"
)

// The ready-made files, from the repository's root.
var (
	alertsDir = filepath.Join("..", "..", "deploy", "prometheus")
	dashboard = filepath.Join("..", "..", "deploy", "grafana", "deployhook.json")
)

// metricName finds the names of our metrics (and the Go and process
// collectors') in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:deployhook|go|process)_[a-z0-9_]+\b`)

// fakeJournal has one owed report and one success, so that every gauge read
// at scrape is exported.
type fakeJournal struct{}

func (fakeJournal) Owed(context.Context, int) ([]executor.OwedReport, error) {
	return []executor.OwedReport{{ID: 1, Created: time.Unix(1000, 0)}}, nil
}

func (fakeJournal) LastSuccess(_ context.Context, target string) (executor.Job, error) {
	if target != "web" {
		return executor.Job{}, executor.ErrNotFound
	}
	return executor.Job{Finished: time.Unix(2000, 0)}, nil
}

type oneQueue struct{}

func (oneQueue) Depth(string) int { return 1 }

// exported returns the name of every series a fully fed Metrics exports:
// each observer called once, every gauge read at scrape available; a
// histogram's _bucket, _sum and _count.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := mustNew(t, metrics.Options{Targets: []executor.Target{web}, Queue: oneQueue{}, Journal: fakeJournal{}})
	m.Delivery(server.DeliveryDeployed)
	m.JobEnded(executor.Job{Target: "web", State: executor.StateSuccess, Started: time.Unix(10, 0), Finished: time.Unix(20, 0)})
	m.StepEnded("web", "build", time.Second, true)
	m.RolledBack("web", true)
	m.JournalWrite("update_job", time.Millisecond, errors.New("disk full"))
	m.APIError("server")
	m.RateLimit(4000, 5000)
	m.IAP("web").Tunnel(iap.EventConnect)
	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		n := f.GetName()
		switch f.GetType().String() {
		case "HISTOGRAM":
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		case "SUMMARY":
			names[n], names[n+"_sum"], names[n+"_count"] = true, true, true
		default:
			names[n] = true
		}
	}
	return names
}

// TestAlerts_Promtool: the alert rules are valid (promtool check rules) and
// fire when, and only when, their unit tests say (promtool test rules).
func TestAlerts_Promtool(t *testing.T) {
	promtoolIn(t, alertsDir, "", "check", "rules", "alerts.yml")
	promtoolIn(t, alertsDir, "", "test", "rules", "alerts_test.yml")
}

// TestAlerts_NameExportedMetrics: every deployhook_… metric an alert reads is
// one deployhook exports; a renamed metric would leave its alert silent.
func TestAlerts_NameExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(alertsDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	names := exported(t)
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			for _, n := range metricName.FindAllString(r.Expr, -1) {
				if !names[n] {
					t.Errorf("alert %s reads %s, which deployhook does not export", r.Alert, n)
				}
			}
		}
	}
	// The alerts the issue asks for.
	for _, a := range []string{"DeployhookDown", "DeployhookDeployFailed", "DeployhookRolledBack", "DeployhookRollbackFailed",
		"DeployhookOutboxBacklogOld", "DeployhookGitHubRateLimitLow", "DeployhookNoSuccessfulDeploy"} {
		if !slices.Contains(alerts, a) {
			t.Errorf("alerts.yml has no %s", a)
		}
	}
}

// TestGrafana_Dashboard: the dashboard is valid JSON with a Prometheus data
// source variable that every panel and query uses, unique panel ids, and
// queries that read only metrics deployhook exports.
func TestGrafana_Dashboard(t *testing.T) {
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	type ds struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	var d struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *ds    `json:"datasource"`
			Targets    []struct {
				Expr       string `json:"expr"`
				Datasource *ds    `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("deployhook.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q, uid %q: want both", d.Title, d.UID)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error("no datasource variable of type datasource querying prometheus")
	}
	var want = ds{Type: "prometheus", UID: "${datasource}"}
	names := exported(t)
	ids := map[int]bool{}
	exprs := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || *p.Datasource != want || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %v, %d queries: want the ${datasource} variable and a query", p.Title, p.Datasource, len(p.Targets))
		}
		for _, q := range p.Targets {
			exprs++
			if q.Datasource == nil || *q.Datasource != want {
				t.Errorf("panel %q: query datasource %v, want the ${datasource} variable", p.Title, q.Datasource)
			}
			found := metricName.FindAllString(q.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: query %q reads none of deployhook's metrics", p.Title, q.Expr)
			}
			for _, n := range found {
				if !names[n] {
					t.Errorf("panel %q reads %s, which deployhook does not export", p.Title, n)
				}
			}
		}
	}
	if exprs < 10 {
		t.Errorf("%d queries: the dashboard lost its panels", exprs)
	}
}
