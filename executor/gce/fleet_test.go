package gce

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"google.golang.org/api/option"

	"github.com/deployhook/deployhook/executor/gce/gcetest"
)

func newFleetClient(t *testing.T, f *gcetest.Server) *FleetClient {
	t.Helper()
	c, err := NewFleetClient(t.Context(), testLogger(t), Options{Endpoint: f.URL(), ClientOptions: []option.ClientOption{tokenOption(f.Token())}})
	if err != nil {
		t.Fatalf("NewFleetClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func memberNames(ms []FleetMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Zone+"/"+m.Name)
	}
	return out
}

// A zonal group's members, read page by page with POST, are its RUNNING
// instances that nothing replaces or stops, sorted by name.
func TestFleetClient_Group_zonal(t *testing.T) {
	f := gcetest.NewServer(t, gcetest.Options{PageSize: 2})
	f.SetGroup(project, zone, "dagster-mig",
		gcetest.GroupMember{Zone: zone, Name: "dagster-mig-c", ID: 3},
		gcetest.GroupMember{Zone: zone, Name: "dagster-mig-a", ID: 1, Action: "VERIFYING"},
		gcetest.GroupMember{Zone: zone, Name: "dagster-mig-d", ID: 4, Action: "DELETING"},
		gcetest.GroupMember{Zone: zone, Name: "dagster-mig-e", ID: 5, Status: "STAGING", Action: "CREATING"},
		gcetest.GroupMember{Zone: zone, Name: "dagster-mig-b", ID: 2},
	)
	ms, err := newFleetClient(t, f).Group(t.Context(), project, zone, "", "dagster-mig")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{zone + "/dagster-mig-a", zone + "/dagster-mig-b", zone + "/dagster-mig-c"}
	if got := memberNames(ms); !slices.Equal(got, want) {
		t.Errorf("members %q, want %q", got, want)
	}
	reqs := f.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 pages: %+v", len(reqs), reqs)
	}
	for i, r := range reqs {
		path, _, _ := strings.Cut(r.URI, "?")
		if r.Method != http.MethodPost || path != "/compute/v1/projects/acme-prod/zones/us-central1-a/instanceGroupManagers/dagster-mig/listManagedInstances" ||
			r.Auth != "Bearer "+f.Token() {
			t.Errorf("request %d: %s %s (%s)", i, r.Method, r.URI, r.Auth)
		}
		if tok := query(t, r.URI).Get("pageToken"); (i == 0) != (tok == "") {
			t.Errorf("request %d: pageToken %q", i, tok)
		}
	}
}

func query(t *testing.T, uri string) url.Values {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// A regional group spans zones: each member keeps its own zone.
func TestFleetClient_Group_regional(t *testing.T) {
	f := gcetest.NewServer(t, gcetest.Options{})
	f.SetGroup(project, "us-central1", "dagster-mig",
		gcetest.GroupMember{Zone: "us-central1-b", Name: "mig-x"},
		gcetest.GroupMember{Zone: "us-central1-a", Name: "mig-y"},
	)
	ms, err := newFleetClient(t, f).Group(t.Context(), project, "", "us-central1", "dagster-mig")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := memberNames(ms), []string{"us-central1-b/mig-x", "us-central1-a/mig-y"}; !slices.Equal(got, want) {
		t.Errorf("members %q, want %q", got, want)
	}
	if r := f.Requests(); len(r) != 1 || r[0].URI != "/compute/v1/projects/acme-prod/regions/us-central1/instanceGroupManagers/dagster-mig/listManagedInstances" {
		t.Errorf("requests %+v", r)
	}
}

// An unknown group and a denied permission are errors that say what to check.
func TestFleetClient_Group_errors(t *testing.T) {
	f := gcetest.NewServer(t, gcetest.Options{})
	c := newFleetClient(t, f)
	_, err := c.Group(t.Context(), project, zone, "", "nope")
	if err == nil || !strings.Contains(err.Error(), `managed instance group "nope" not found in project "acme-prod" us-central1-a: check group.name`) {
		t.Errorf("unknown group: %v", err)
	}
	f.SetGroup(project, zone, "mig", gcetest.GroupMember{Zone: zone, Name: "a"})
	f.DenyCall("projects/acme-prod/zones/us-central1-a/instanceGroupManagers/mig", gcetest.PermissionGroupGet)
	_, err = c.Group(t.Context(), project, zone, "", "mig")
	if err == nil || !strings.Contains(err.Error(), "permission compute.instanceGroupManagers.get denied") {
		t.Errorf("denied: %v", err)
	}
	if _, err := c.Group(t.Context(), project, zone, "us-central1", "mig"); err == nil {
		t.Error("a zone and a region: no error")
	}
	if _, err := c.Group(t.Context(), project, zone, "", "mig/../x"); err == nil || !strings.Contains(err.Error(), "invalid instance name") {
		t.Errorf("a name that changes the path: %v", err)
	}
}

// A label selection lists the RUNNING instances of every zone carrying every
// label, through the filter the API understands, page by page.
func TestFleetClient_Labeled(t *testing.T) {
	f := gcetest.NewServer(t, gcetest.Options{PageSize: 1})
	for i, in := range []struct {
		zone, name, status string
		labels             map[string]string
	}{
		{"us-central1-a", "dagster-2", "", map[string]string{"app": "dagster", "env": "prod"}},
		{"us-central1-b", "dagster-1", "", map[string]string{"app": "dagster", "env": "prod", "x": "y"}},
		{"us-central1-a", "dagster-3", "TERMINATED", map[string]string{"app": "dagster", "env": "prod"}},
		{"us-central1-a", "web-1", "", map[string]string{"app": "web", "env": "prod"}},
		{"us-central1-a", "dagster-dev", "", map[string]string{"app": "dagster", "env": "dev"}},
	} {
		f.SetInstance(gcetest.Instance{Project: project, Zone: in.zone, Name: in.name, ID: uint64(i + 1), Status: in.status, Labels: in.labels})
	}
	f.SetInstance(gcetest.Instance{Project: "other", Zone: zone, Name: "dagster-9", ID: 9, Labels: map[string]string{"app": "dagster", "env": "prod"}})
	ms, err := newFleetClient(t, f).Labeled(t.Context(), project, map[string]string{"env": "prod", "app": "dagster"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := memberNames(ms), []string{"us-central1-b/dagster-1", "us-central1-a/dagster-2"}; !slices.Equal(got, want) {
		t.Errorf("members %q, want %q", got, want)
	}
	reqs := f.Requests()
	if len(reqs) != 2 {
		t.Errorf("%d requests, want one page per matching instance: %+v", len(reqs), reqs)
	}
	wantFilter := `(labels.app = "dagster") (labels.env = "prod") (status = "RUNNING")`
	for _, r := range reqs {
		if q := query(t, r.URI); r.Method != http.MethodGet || !strings.HasPrefix(r.URI, "/compute/v1/projects/acme-prod/aggregated/instances?") ||
			q.Get("filter") != wantFilter || q.Has("returnPartialSuccess") {
			t.Errorf("request %s %s, want GET aggregated/instances with filter %s and no partial success", r.Method, r.URI, wantFilter)
		}
	}
	f.DenyCall("projects/acme-prod", gcetest.PermissionList)
	if _, err := newFleetClient(t, f).Labeled(t.Context(), project, map[string]string{"app": "dagster"}); err == nil ||
		!strings.Contains(err.Error(), "permission compute.instances.list denied") {
		t.Errorf("denied: %v", err)
	}
}

func TestLabelFilter(t *testing.T) {
	got := LabelFilter(map[string]string{"b": "2", "a": ""})
	if want := fmt.Sprintf("(labels.a = %q) (labels.b = %q) (status = %q)", "", "2", "RUNNING"); got != want {
		t.Errorf("LabelFilter = %s, want %s", got, want)
	}
}
