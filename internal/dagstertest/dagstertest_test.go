package dagstertest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, contentType, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestServer_CountsByFilter(t *testing.T) {
	s := Start(t)
	t0 := time.Unix(1_700_000_000, 0)
	s.Add(
		Run{ID: "a", Status: "FAILURE", Created: t0.Add(-time.Hour), Updated: t0.Add(10 * time.Second)},
		Run{ID: "b", Status: "SUCCESS", Created: t0, Updated: t0.Add(20 * time.Second)},
		Run{ID: "c", Status: "FAILURE", Created: t0, Updated: t0.Add(-20 * time.Second)},
		Run{ID: "d", Status: "STARTED", Created: t0, Updated: t0}, // not strictly after t0
	)
	q := `query($a: Float!) { f: runsOrError(filter: {updatedAfter: $a, statuses: [FAILURE, CANCELED]}) { __typename ... on Runs { count } }
	  all: runsOrError(filter: {updatedAfter: $a}) { __typename ... on Runs { count results { runId } } }
	  old: runsOrError(filter: {updatedAfter: 1699999900, updatedBefore: $a, createdAfter: 1699990000}) { __typename ... on Runs { count } } }`
	body, _ := json.Marshal(map[string]any{"query": q, "variables": map[string]any{"a": 1_700_000_000}})
	code, out := post(t, s.URL, "application/json", string(body))
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, out)
	}
	data, _ := out["data"].(map[string]any)
	count := func(alias string) any { m, _ := data[alias].(map[string]any); return m["count"] }
	if count("f") != 1.0 || count("all") != 2.0 || count("old") != 1.0 {
		t.Errorf("counts f=%v all=%v old=%v, want 1, 2, 1: %v", count("f"), count("all"), count("old"), out)
	}
	if res := data["all"].(map[string]any)["results"].([]any); len(res) != 2 {
		t.Errorf("results %v, want runs a and b", res)
	}
	if s.Requests() != 1 {
		t.Errorf("Requests = %d", s.Requests())
	}
}

func TestServer_Refuses(t *testing.T) {
	s := Start(t)
	good := `{"query":"{ x: runsOrError(filter: {updatedAfter: 1}) { __typename } }"}`
	tests := []struct {
		name, url, contentType, body string
		want                         int
	}{
		{"unknown filter key", s.URL, "application/json", `{"query":"{ x: runsOrError(filter: {finishedAfter: 1}) { __typename } }"}`, 400},
		{"not JSON", s.URL, "application/json", `query=1`, 400},
		{"no query", s.URL, "application/json", `{"variables":{}}`, 400},
		{"variable missing", s.URL, "application/json", `{"query":"{ x: runsOrError(filter: {updatedAfter: $a}) { __typename } }"}`, 400},
		{"form", s.URL, "application/x-www-form-urlencoded", good, 415},
		{"other path", strings.TrimSuffix(s.URL, "graphql") + "graphiql", "application/json", good, 404},
	}
	for _, tt := range tests {
		if code, _ := post(t, tt.url, tt.contentType, tt.body); code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, code, tt.want)
		}
	}
	resp, err := http.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
	s.Down(true)
	if code, _ := post(t, s.URL, "application/json", good); code != http.StatusServiceUnavailable {
		t.Errorf("down: %d, want 503", code)
	}
	if s.Requests() != 0 {
		t.Errorf("Requests = %d, want 0 answered", s.Requests())
	}
}
