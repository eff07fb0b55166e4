package gcetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The fleet calls the fake also serves, shaped as the real API's:
//
//   - instanceGroupManagers.listManagedInstances: POST
//     /compute/v1/projects/P/zones/Z/instanceGroupManagers/G/listManagedInstances
//     and regionInstanceGroupManagers.listManagedInstances: POST
//     /compute/v1/projects/P/regions/R/instanceGroupManagers/G/listManagedInstances
//     answer {"managedInstances": [{instance (URL), id, name, instanceStatus,
//     currentAction, version}], "nextPageToken"} for a group set with
//     SetGroup; 404 for another;
//   - instances.aggregatedList: GET /compute/v1/projects/P/aggregated/instances
//     answers {"kind", "items": {"zones/Z": {"instances": [...]} or a
//     NO_RESULTS_ON_PAGE warning}, "nextPageToken"} for the instances of P
//     that match the filter. The fake understands the filter deployhook
//     sends (parenthesised "labels.K = \"V\"" and "status = \"RUNNING\""
//     comparisons, all of which must hold) and fails the test on any other.
//
// Options.PageSize cuts both into pages.

// Permissions of the fleet calls, named in 403 answers.
const (
	PermissionGroupGet = "compute.instanceGroupManagers.get"
	PermissionList     = "compute.instances.list"
)

// The fleet calls, for Inject and Count.
const (
	OpListManagedInstances = Op("instanceGroupManagers.listManagedInstances")
	OpAggregatedList       = Op("instances.aggregatedList")
)

// GroupMember is one managed instance of a group.
type GroupMember struct {
	Zone, Name string
	ID         uint64
	// Status is its instanceStatus, "RUNNING" when empty; Action its
	// currentAction, "NONE" when empty.
	Status, Action string
}

// SetGroup sets the managed instances of group name in project and location
// (a zone for a zonal group, a region for a regional one).
func (s *Server) SetGroup(project, location, name string, members ...GroupMember) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[project+"/"+location+"/"+name] = slices.Clone(members)
}

var (
	groupPath = regexp.MustCompile(`^/compute/v1/projects/([^/]+)/(zones|regions)/([^/]+)/instanceGroupManagers/([^/]+)/listManagedInstances$`)
	aggPath   = regexp.MustCompile(`^/compute/v1/projects/([^/]+)/aggregated/instances$`)
	filterExp = regexp.MustCompile(`^\((labels\.[a-z][a-z0-9_-]*|status) = "([^"]*)"\)$`)
)

// serveFleet answers a fleet call and reports true, or reports false for
// any other request. s.mu is held.
func (s *Server) serveFleet(w http.ResponseWriter, r *http.Request, answer func(int, string)) bool {
	var op Op
	var perm, resource string
	g := groupPath.FindStringSubmatch(r.URL.Path)
	a := aggPath.FindStringSubmatch(r.URL.Path)
	switch {
	case g != nil && r.Method == http.MethodPost:
		op, perm = OpListManagedInstances, PermissionGroupGet
		resource = "projects/" + g[1] + "/" + g[2] + "/" + g[3] + "/instanceGroupManagers/" + g[4]
	case a != nil && r.Method == http.MethodGet:
		op, perm, resource = OpAggregatedList, PermissionList, "projects/"+a[1]
	default:
		return false
	}
	s.counts[op]++
	if !slices.Contains(s.tok, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
		answer(http.StatusUnauthorized, ErrorBody(401, "authError", "Request had invalid authentication credentials."))
		return true
	}
	for i, f := range s.faults {
		if f.Op == op {
			if f.Times--; f.Times == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			answer(f.Status, f.Body)
			return true
		}
	}
	if s.denied[resource+" "+perm] {
		answer(http.StatusForbidden, ErrorBody(403, "forbidden", fmt.Sprintf("Required '%s' permission for '%s'", perm, resource)))
		return true
	}
	q := r.URL.Query()
	for k := range q {
		if k != "pageToken" && k != "maxResults" && (op != OpAggregatedList || k != "filter") {
			s.tb.Errorf("gcetest: %s with query parameter %q", op, k)
		}
	}
	from, _ := strconv.Atoi(q.Get("pageToken"))
	if op == OpListManagedInstances {
		members, ok := s.groups[g[1]+"/"+g[3]+"/"+g[4]]
		if !ok {
			answer(http.StatusNotFound, ErrorBody(404, "notFound", fmt.Sprintf("The resource '%s' was not found", resource)))
			return true
		}
		page, next := s.page(len(members), from)
		var items []map[string]any
		for _, m := range members[from:page] {
			status, action := m.Status, m.Action
			if status == "" {
				status = "RUNNING"
			}
			if action == "" {
				action = "NONE"
			}
			items = append(items, map[string]any{
				"instance":       "https://www.googleapis.com/compute/v1/projects/" + g[1] + "/zones/" + m.Zone + "/instances/" + m.Name,
				"id":             strconv.FormatUint(m.ID, 10),
				"name":           m.Name,
				"instanceStatus": status,
				"currentAction":  action,
				"version":        map[string]string{"instanceTemplate": "global/instanceTemplates/dagster-v1"},
			})
		}
		body := map[string]any{"managedInstances": items}
		if next != "" {
			body["nextPageToken"] = next
		}
		b, _ := json.Marshal(body)
		answer(http.StatusOK, string(b))
		return true
	}
	match, ok := s.filter(q.Get("filter"))
	if !ok {
		answer(http.StatusBadRequest, ErrorBody(400, "invalid", "Invalid value for field 'filter'"))
		return true
	}
	var insts []*Instance
	for _, inst := range s.instances {
		if inst.Project == a[1] && match(inst) {
			insts = append(insts, inst)
		}
	}
	slices.SortFunc(insts, func(x, y *Instance) int { return strings.Compare(x.Zone+"/"+x.Name, y.Zone+"/"+y.Name) })
	page, next := s.page(len(insts), from)
	items := map[string]any{}
	for _, inst := range insts[from:page] {
		key := "zones/" + inst.Zone
		z, _ := items[key].(map[string][]json.RawMessage)
		if z == nil {
			z = map[string][]json.RawMessage{}
		}
		z["instances"] = append(z["instances"], json.RawMessage(instanceJSON(inst)))
		items[key] = z
	}
	// The real API lists the zones without instances too, with a warning.
	items["zones/us-east1-b"] = map[string]any{"warning": map[string]any{"code": "NO_RESULTS_ON_PAGE",
		"message": "There are no results for scope 'zones/us-east1-b' on this page."}}
	body := map[string]any{"kind": "compute#instanceAggregatedList", "id": "projects/" + a[1] + "/aggregated/instances", "items": items}
	if next != "" {
		body["nextPageToken"] = next
	}
	b, _ := json.Marshal(body)
	answer(http.StatusOK, string(b))
	return true
}

// page returns the end of the page that starts at from among n items, and
// the token of the next page ("" for the last).
func (s *Server) page(n, from int) (end int, next string) {
	from = min(from, n)
	if s.pageSize <= 0 || from+s.pageSize >= n {
		return n, ""
	}
	return from + s.pageSize, strconv.Itoa(from + s.pageSize)
}

// filter parses an aggregatedList filter of parenthesised comparisons that
// must all hold; anything else fails the test.
func (s *Server) filter(f string) (func(*Instance) bool, bool) {
	type cmp struct{ field, value string }
	var cmps []cmp
	for _, part := range strings.SplitAfter(strings.TrimSpace(f), ")") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		m := filterExp.FindStringSubmatch(part)
		if m == nil {
			s.tb.Errorf("gcetest: aggregatedList filter %q: cannot read %q", f, part)
			return nil, false
		}
		cmps = append(cmps, cmp{m[1], m[2]})
	}
	return func(inst *Instance) bool {
		for _, c := range cmps {
			if k, ok := strings.CutPrefix(c.field, "labels."); ok {
				if v, has := inst.Labels[k]; !has || v != c.value {
					return false
				}
			} else if inst.Status != c.value {
				return false
			}
		}
		return true
	}, true
}

// DenyCall makes the fleet call on resource ("projects/P" for
// aggregatedList, "projects/P/zones/Z/instanceGroupManagers/G" or
// ".../regions/R/..." for a group) that needs permission answer 403.
func (s *Server) DenyCall(resource, permission string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[resource+" "+permission] = true
}
