// Package dagstertest is a fake of the Dagster webserver's GraphQL endpoint
// for tests, on 127.0.0.1: the part of it that deployhook's watch reads,
// counting runs with runsOrError.
//
// It answers POST /graphql with a JSON body {"query", "variables"} as
// dagster-webserver does, and refuses anything else: another method or path
// (405, 404), another content type (415), a body that is not such JSON
// (400). In the query it evaluates every top-level field of the form
//
//	ALIAS: runsOrError(filter: {KEY: VALUE, ...}) { ... }
//
// with the RunsFilter keys updatedAfter, updatedBefore, createdAfter,
// createdBefore (Unix seconds, a number or a $variable) and statuses (a list
// of run statuses), as Dagster does: a run matches when its update (creation)
// time is strictly after (before) the bound and its status is listed. Each
// answer is {"__typename": "Runs", "count": N}, and also "results" with the
// runs' runId and status when the selection names results. A filter key it
// does not know is a GraphQL validation error (HTTP 400, {"errors": [...]}),
// as Dagster answers an unknown input field.
package dagstertest

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Run is one Dagster run as the fake knows it.
type Run struct {
	ID      string
	Status  string // SUCCESS, FAILURE, STARTED, QUEUED, CANCELED, …
	Created time.Time
	Updated time.Time
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	URL string // the GraphQL endpoint: http://127.0.0.1:PORT/graphql

	srv      *httptest.Server
	mu       sync.Mutex
	runs     []Run
	requests int
	down     bool
}

// Start starts a fake on 127.0.0.1 and stops it when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.srv.Close)
	s.URL = s.srv.URL + "/graphql"
	return s
}

// Add records runs.
func (s *Server) Add(runs ...Run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs = append(s.runs, runs...)
}

// Down makes the endpoint answer 503 to every request (true) or work again.
func (s *Server) Down(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Requests returns how many GraphQL requests were answered with data.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

var (
	// fieldRE finds the top-level runsOrError fields and their filters.
	fieldRE = regexp.MustCompile(`(\w+)\s*:\s*runsOrError\s*\(\s*filter\s*:\s*\{([^}]*)\}\s*\)`)
	// argRE splits a filter into its key: value pairs.
	argRE = regexp.MustCompile(`(\w+)\s*:\s*(\[[^\]]*\]|\$\w+|-?[0-9][0-9.eE+-]*)`)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path != "/graphql":
		http.Error(w, "not found", http.StatusNotFound)
		return
	case r.Method != http.MethodPost:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "unsupported media type", http.StatusUnsupportedMediaType)
		return
	}
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || strings.TrimSpace(req.Query) == "" {
		graphQLError(w, "body must be JSON with a query")
		return
	}
	fields := fieldRE.FindAllStringSubmatch(req.Query, -1)
	if len(fields) == 0 {
		graphQLError(w, "no runsOrError field in the query")
		return
	}
	withResults := strings.Contains(req.Query, "results")
	data := map[string]any{}
	for _, f := range fields {
		match, err := s.filter(f[2], req.Variables)
		if err != nil {
			graphQLError(w, err.Error())
			return
		}
		data[f[1]] = s.answer(match, withResults)
	}
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": data})
}

// runs is the answer to one runsOrError field, fields in Dagster's order.
type runs struct {
	Typename string      `json:"__typename"`
	Count    int         `json:"count"`
	Results  []runResult `json:"results,omitempty"`
}

type runResult struct {
	RunID  string `json:"runId"`
	Status string `json:"status"`
}

func (s *Server) answer(match func(Run) bool, withResults bool) runs {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := runs{Typename: "Runs"}
	for _, r := range s.runs {
		if match(r) {
			out.Count++
			if withResults {
				out.Results = append(out.Results, runResult{r.ID, r.Status})
			}
		}
	}
	return out
}

// filter parses a RunsFilter's fields into a predicate.
func (s *Server) filter(text string, vars map[string]any) (func(Run) bool, error) {
	var preds []func(Run) bool
	rest := text
	for _, a := range argRE.FindAllStringSubmatch(text, -1) {
		rest = strings.Replace(rest, a[0], "", 1)
		key, val := a[1], a[2]
		if key == "statuses" {
			if !strings.HasPrefix(val, "[") {
				return nil, fmt.Errorf("statuses: want a list, got %s", val)
			}
			var statuses []string
			for _, st := range strings.Split(strings.Trim(val, "[]"), ",") {
				if st = strings.TrimSpace(st); st != "" {
					statuses = append(statuses, st)
				}
			}
			preds = append(preds, func(r Run) bool { return slices.Contains(statuses, r.Status) })
			continue
		}
		t, err := number(val, vars)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", key, err)
		}
		switch key {
		case "updatedAfter":
			preds = append(preds, func(r Run) bool { return seconds(r.Updated) > t })
		case "updatedBefore":
			preds = append(preds, func(r Run) bool { return seconds(r.Updated) < t })
		case "createdAfter":
			preds = append(preds, func(r Run) bool { return seconds(r.Created) > t })
		case "createdBefore":
			preds = append(preds, func(r Run) bool { return seconds(r.Created) < t })
		default:
			return nil, fmt.Errorf("field %q is not defined by type \"RunsFilter\"", key)
		}
	}
	if strings.Trim(rest, " ,\n\t") != "" {
		return nil, fmt.Errorf("cannot parse the filter %q", text)
	}
	return func(r Run) bool {
		for _, p := range preds {
			if !p(r) {
				return false
			}
		}
		return true
	}, nil
}

// number is a float literal, or the number a $variable holds.
func number(val string, vars map[string]any) (float64, error) {
	if name, ok := strings.CutPrefix(val, "$"); ok {
		v, ok := vars[name].(float64) // JSON numbers decode as float64
		if !ok {
			return 0, fmt.Errorf("variable $%s is not a number: %v", name, vars[name])
		}
		return v, nil
	}
	return strconv.ParseFloat(val, 64)
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// graphQLError answers a request Dagster would refuse.
func graphQLError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"message": msg}}})
}
