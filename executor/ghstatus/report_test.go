package ghstatus

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor"
)

// asJSON is v as GitHub receives it: its JSON object.
func asJSON(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCheckReport has one row per check every request of a report relies on.
func TestCheckReport(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*executor.Report)
		wantOwner string
		wantName  string
		wantErr   string // exact error text; "" for none
	}{
		{name: "valid", edit: func(*executor.Report) {}, wantOwner: "acme", wantName: "data-platform"},
		{name: "repo without owner", edit: func(r *executor.Report) { r.Repo = "data-platform" },
			wantErr: `repository "data-platform" is not owner/name: ` + executor.ErrPermanent.Error()},
		{name: "repo dot dot", edit: func(r *executor.Report) { r.Repo = "acme/.." },
			wantErr: `repository "acme/.." is not owner/name: ` + executor.ErrPermanent.Error()},
		{name: "repo with a path", edit: func(r *executor.Report) { r.Repo = "acme/app/../x" },
			wantErr: `repository "acme/app/../x" is not owner/name: ` + executor.ErrPermanent.Error()},
		{name: "short sha", edit: func(r *executor.Report) { r.SHA = "0123456" },
			wantErr: `SHA "0123456" is not 40 lower-case hex digits: ` + executor.ErrPermanent.Error()},
		{name: "upper-case sha", edit: func(r *executor.Report) { r.SHA = strings.ToUpper(testSHA) },
			wantErr: `SHA "` + strings.ToUpper(testSHA) + `" is not 40 lower-case hex digits: ` + executor.ErrPermanent.Error()},
		{name: "no target", edit: func(r *executor.Report) { r.Target = "" },
			wantErr: "no target: " + executor.ErrPermanent.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(executor.StateRunning)
			tt.edit(&r)
			owner, name, err := checkReport(r)
			if tt.wantErr == "" {
				if err != nil || owner != tt.wantOwner || name != tt.wantName {
					t.Errorf("checkReport = %q, %q, %v; want %q, %q, nil", owner, name, err, tt.wantOwner, tt.wantName)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, executor.ErrPermanent) {
				t.Errorf("checkReport error = %v, want %q wrapping ErrPermanent", err, tt.wantErr)
			}
		})
	}
}

// TestCommitStatus pins the commit status each report decides, field by field.
func TestCommitStatus(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	full := func(state string) map[string]any {
		return map[string]any{"state": state, "context": "deploy/production", "target_url": jobURL, "description": desc}
	}
	tests := []struct {
		name string
		edit func(*executor.Report)
		desc string
		want map[string]any
	}{
		{name: "queued is pending", edit: func(r *executor.Report) { r.State = executor.StateQueued }, desc: desc, want: full("pending")},
		{name: "running is pending", edit: func(r *executor.Report) { r.State = executor.StateRunning }, desc: desc, want: full("pending")},
		{name: "success", edit: func(r *executor.Report) { r.State = executor.StateSuccess }, desc: desc, want: full("success")},
		{name: "skipped is success", edit: func(r *executor.Report) { r.State = executor.StateSkipped }, desc: desc, want: full("success")},
		{name: "failure", edit: func(r *executor.Report) { r.State = executor.StateFailure }, desc: desc, want: full("failure")},
		{name: "error", edit: func(r *executor.Report) { r.State = executor.StateError }, desc: desc, want: full("error")},
		{name: "superseded is error", edit: func(r *executor.Report) { r.State = executor.StateSuperseded }, desc: desc, want: full("error")},
		{name: "the context names the target", edit: func(r *executor.Report) { r.Target, r.Environment = "staging", "qa" }, desc: desc,
			want: map[string]any{"state": "pending", "context": "deploy/staging", "target_url": jobURL, "description": desc}},
		{name: "no URL, no target_url", edit: func(r *executor.Report) { r.URL = "" }, desc: desc,
			want: map[string]any{"state": "pending", "context": "deploy/production", "description": desc}},
		{name: "no description, none sent", edit: func(*executor.Report) {}, desc: "",
			want: map[string]any{"state": "pending", "context": "deploy/production", "target_url": jobURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(executor.StateRunning)
			tt.edit(&r)
			got, err := commitStatus(r, tt.desc)
			if err != nil {
				t.Fatal(err)
			}
			if m := asJSON(t, got); !reflect.DeepEqual(m, tt.want) {
				t.Errorf("commitStatus = %v, want %v", m, tt.want)
			}
		})
	}
	if _, err := commitStatus(report("paused"), desc); err == nil || err.Error() != `unknown job state "paused": `+executor.ErrPermanent.Error() {
		t.Errorf("commitStatus(paused) error = %v", err)
	}
}

// TestDeploymentStatus pins the deployment status each report decides.
func TestDeploymentStatus(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	full := func(state string) map[string]any {
		return map[string]any{"state": state, "environment": "production", "log_url": jobURL, "description": desc}
	}
	tests := []struct {
		name  string
		state executor.State
		url   string
		desc  string
		want  map[string]any
	}{
		{name: "queued", state: executor.StateQueued, url: jobURL, desc: desc, want: full("queued")},
		{name: "running is in_progress", state: executor.StateRunning, url: jobURL, desc: desc, want: full("in_progress")},
		{name: "success", state: executor.StateSuccess, url: jobURL, desc: desc, want: full("success")},
		{name: "failure", state: executor.StateFailure, url: jobURL, desc: desc, want: full("failure")},
		{name: "error", state: executor.StateError, url: jobURL, desc: desc, want: full("error")},
		{name: "superseded is inactive", state: executor.StateSuperseded, url: jobURL, desc: desc, want: full("inactive")},
		{name: "skipped is inactive", state: executor.StateSkipped, url: jobURL, desc: desc, want: full("inactive")},
		{name: "no URL, no log_url", state: executor.StateSuccess, desc: desc,
			want: map[string]any{"state": "success", "environment": "production", "description": desc}},
		{name: "no description, none sent", state: executor.StateSuccess, url: jobURL,
			want: map[string]any{"state": "success", "environment": "production", "log_url": jobURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(tt.state)
			r.URL = tt.url
			got, err := deploymentStatus(r, "production", tt.desc)
			if err != nil {
				t.Fatal(err)
			}
			if m := asJSON(t, got); !reflect.DeepEqual(m, tt.want) {
				t.Errorf("deploymentStatus = %v, want %v", m, tt.want)
			}
		})
	}
	if _, err := deploymentStatus(report("paused"), "production", desc); err == nil || err.Error() != `unknown job state "paused": `+executor.ErrPermanent.Error() {
		t.Errorf("deploymentStatus(paused) error = %v", err)
	}
}

// TestEnvironment: a report's environment, or its target's name.
func TestEnvironment(t *testing.T) {
	r := report(executor.StateRunning)
	if got := environment(r); got != "production" {
		t.Errorf("environment without one = %q, want the target production", got)
	}
	r.Environment = "staging"
	if got := environment(r); got != "staging" {
		t.Errorf("environment = %q, want staging", got)
	}
}

// TestRetired: only a job that never ran is retired without a Deployment.
func TestRetired(t *testing.T) {
	for _, s := range []executor.State{executor.StateQueued, executor.StateRunning, executor.StateSuccess,
		executor.StateFailure, executor.StateError, executor.StateSuperseded, executor.StateSkipped} {
		want := s == executor.StateSuperseded || s == executor.StateSkipped
		if got := retired(s); got != want {
			t.Errorf("retired(%s) = %v, want %v", s, got, want)
		}
	}
}

// The commit status part sends exactly the commit status, also when
// Deployments are on: the Deployment part is reportDeployment's.
func TestClient_reportStatus(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	for _, deployments := range []bool{false, true} {
		f := newFake(t, bearer, statusCall("failure", desc))
		c, _ := newTestClient(t, serve(t, f), nil, deployments)
		r := report(executor.StateFailure)
		if err := c.reportStatus(t.Context(), c.lg, "acme", "data-platform", r, desc); err != nil {
			t.Fatalf("deployments %v: reportStatus: %v", deployments, err)
		}
		if n := f.requests(); n != 1 {
			t.Errorf("deployments %v: %d requests, want 1", deployments, n)
		}
	}
	f := newFake(t, bearer, errorCall(statusCall("pending", desc), 404, nil, map[string]any{"message": "Not Found"}))
	c, _ := newTestClient(t, serve(t, f), nil, true)
	err := c.reportStatus(t.Context(), c.lg, "acme", "data-platform", report(executor.StateRunning), desc)
	if !errors.Is(err, executor.ErrPermanent) || !strings.HasPrefix(err.Error(), "report job j1 to acme/data-platform@0123456: ") {
		t.Errorf("reportStatus on 404 = %v, want a permanent error for job j1 to acme/data-platform@0123456", err)
	}
}

// The Deployment part: find or create the job's Deployment, then post its
// status, with exactly the requests each case needs, and the id it knows.
func TestClient_reportDeployment(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	oops := map[string]any{"message": "Server Error"}
	tests := []struct {
		name    string
		state   executor.State
		known   int64 // r.Deployment
		calls   func(t *testing.T) []call
		wantID  int64
		wantErr string // prefix of the error; "" for none
	}{
		{name: "known: status only", state: executor.StateSuccess, known: 42,
			calls:  func(*testing.T) []call { return []call{dstatusCall(42, "success", desc, "production")} },
			wantID: 42},
		{name: "found by the job in the payload", state: executor.StateRunning,
			calls: func(t *testing.T) []call {
				return []call{
					listCall("production",
						with(deployment(t, 76, "production"), "payload", map[string]any{"job": "another"}),
						deployment(t, 77, "production")),
					dstatusCall(77, "in_progress", desc, "production")}
			},
			wantID: 77},
		{name: "created when none is found", state: executor.StateQueued,
			calls: func(t *testing.T) []call {
				return []call{listCall("production"), createCall(t, "production", desc, 5),
					dstatusCall(5, "queued", desc, "production")}
			},
			wantID: 5},
		{name: "superseded without one: none created", state: executor.StateSuperseded,
			calls:  func(*testing.T) []call { return []call{listCall("production")} },
			wantID: 0},
		{name: "skipped without one: none created", state: executor.StateSkipped,
			calls:  func(*testing.T) []call { return []call{listCall("production")} },
			wantID: 0},
		{name: "superseded with one: made inactive", state: executor.StateSuperseded, known: 9,
			calls:  func(*testing.T) []call { return []call{dstatusCall(9, "inactive", desc, "production")} },
			wantID: 9},
		{name: "list refused", state: executor.StateRunning,
			calls: func(*testing.T) []call {
				return []call{errorCall(listCall("production"), 403, nil, map[string]any{"message": "Resource not accessible by integration"})}
			},
			wantID: 0, wantErr: "report job j1 to acme/data-platform@0123456: "},
		{name: "status fails: the id is kept", state: executor.StateRunning, known: 42,
			calls: func(*testing.T) []call {
				var cs []call
				for range 4 {
					cs = append(cs, errorCall(dstatusCall(42, "in_progress", desc, "production"), 500, nil, oops))
				}
				return cs
			},
			wantID: 42, wantErr: "report job j1 to acme/data-platform@0123456 (deployment 42): "},
		{name: "unknown state: no request", state: "paused", known: 42,
			calls:  func(*testing.T) []call { return nil },
			wantID: 42, wantErr: `report job j1: unknown job state "paused"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer, tt.calls(t)...)
			c, _ := newTestClient(t, serve(t, f), nil, true)
			r := report(tt.state)
			r.Deployment = tt.known
			id, err := c.reportDeployment(t.Context(), c.lg, "acme", "data-platform", r, desc)
			if id != tt.wantID {
				t.Errorf("id = %d, want %d", id, tt.wantID)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want it to start with %q", err, tt.wantErr)
			}
		})
	}
}

// The Deployment is looked up in the report's environment, and a new one in
// "production" is marked as the production environment (createCall checks
// production_environment), one in another environment not.
func TestClient_deployment(t *testing.T) {
	const desc = "deploy of 0123456 by octocat"
	for _, env := range []string{"production", "staging"} {
		f := newFake(t, bearer, listCall(env), createCall(t, env, desc, 3))
		c, _ := newTestClient(t, serve(t, f), nil, true)
		id, err := c.deployment(t.Context(), c.lg, "acme", "data-platform", report(executor.StateQueued), env, desc)
		if err != nil || id != 3 {
			t.Errorf("%s: deployment = %d, %v; want 3, nil", env, id, err)
		}
	}
	f := newFake(t, bearer) // a known id asks GitHub nothing
	c, _ := newTestClient(t, serve(t, f), nil, true)
	r := report(executor.StateRunning)
	r.Deployment = 8
	if id, err := c.deployment(t.Context(), c.lg, "acme", "data-platform", r, "production", desc); err != nil || id != 8 {
		t.Errorf("known: deployment = %d, %v; want 8, nil", id, err)
	}
}
