package executor

import (
	"testing"
	"time"
)

func TestJobURL(t *testing.T) {
	tests := []struct {
		name string
		base string
		id   string
		want string
	}{
		{name: "base", base: "https://deploy.example.com", id: "j1", want: "https://deploy.example.com/jobs/j1"},
		{name: "trailing slash", base: "https://deploy.example.com/", id: "j1", want: "https://deploy.example.com/jobs/j1"},
		{name: "trailing slashes", base: "https://deploy.example.com//", id: "j1", want: "https://deploy.example.com/jobs/j1"},
		{name: "under a path", base: "https://example.com/deployhook/", id: "mb1x2k9q-0a1b2c3d", want: "https://example.com/deployhook/jobs/mb1x2k9q-0a1b2c3d"},
		{name: "no public URL", base: "", id: "j1", want: ""},
		{name: "only a slash", base: "/", id: "j1", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := JobURL(tc.base, tc.id); got != tc.want {
				t.Errorf("JobURL(%q, %q) = %q, want %q", tc.base, tc.id, got, tc.want)
			}
		})
	}
	if got, want := JobPath("j1"), "/jobs/j1"; got != want {
		t.Errorf("JobPath(j1) = %q, want %q", got, want)
	}
}

func TestDeployOn_Valid(t *testing.T) {
	tests := []struct {
		in   DeployOn
		want bool
	}{
		{DeployOnPush, true},
		{DeployOnWorkflowRun, true},
		{"", false},
		{"Push", false},
		{"workflow_dispatch", false},
		{"tag", false},
		{"push ", false},
	}
	for _, tc := range tests {
		if got := tc.in.Valid(); got != tc.want {
			t.Errorf("DeployOn(%q).Valid() = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestTransportKind_Valid(t *testing.T) {
	tests := []struct {
		in   TransportKind
		want bool
	}{
		{TransportIAP, true},
		{TransportSSH, true},
		{TransportLocal, true},
		{"", false},
		{"IAP", false},
		{"gcloud", false},
		{"ssh ", false},
	}
	for _, tc := range tests {
		if got := tc.in.Valid(); got != tc.want {
			t.Errorf("TransportKind(%q).Valid() = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestNew_Preconditions: New refuses targets that break its documented
// preconditions (config.Validate explains them to a person), and takes the
// rest. A target that reconciles with no valid DeployOn used to be taken and
// reconciled as if it deployed on push, deploying heads that had not passed CI.
func TestNew_Preconditions(t *testing.T) {
	step := Step{Name: "deploy", Run: "true", Timeout: time.Minute}
	tests := []struct {
		name    string
		edit    func(*Target)
		wantErr string
	}{
		{name: "valid", edit: func(*Target) {}},
		{name: "no DeployOn without reconciling", edit: func(t *Target) { t.DeployOn = "" }},
		{name: "reconciles on push", edit: func(t *Target) { t.Reconcile, t.DeployOn = time.Minute, DeployOnPush }},
		{name: "step without timeout", edit: func(t *Target) { t.Steps[0].Timeout = 0 },
			wantErr: `executor: target "production": step "deploy" without Run or Timeout`},
		{name: "step with negative timeout", edit: func(t *Target) { t.Steps[0].Timeout = -time.Second },
			wantErr: `executor: target "production": step "deploy" without Run or Timeout`},
		{name: "step without command", edit: func(t *Target) { t.Steps[0].Run = "" },
			wantErr: `executor: target "production": step "deploy" without Run or Timeout`},
		{name: "reconciles without DeployOn", edit: func(t *Target) { t.Reconcile, t.DeployOn = time.Minute, "" },
			wantErr: `executor: target "production" reconciles with DeployOn ""`},
		{name: "reconciles with unknown DeployOn", edit: func(t *Target) { t.Reconcile, t.DeployOn = time.Minute, "tag" },
			wantErr: `executor: target "production" reconciles with DeployOn "tag"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := Target{Name: "production", Repo: "acme/app", Branch: "main", Steps: []Step{step}}
			tc.edit(&tg)
			_, err := New(testLogger(t), Options{Targets: []Target{tg}}, newMemStore(), &fakeTransport{}, &fakeReporter{})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("New: %v, want no error", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("New: %v, want %q", err, tc.wantErr)
			}
		})
	}
}
