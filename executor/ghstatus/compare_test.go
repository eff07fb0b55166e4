package ghstatus

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/safehttp"
)

const branchSHA = "89abcdef0123456789abcdef0123456789abcdef"

// compareAnswer is a compare answer in the order GitHub sends its fields
// (REST "Compare two commits"), shortened: status comes before the commits
// and files.
func compareAnswer(status string, files string) string {
	commit := func(sha string) string {
		return fmt.Sprintf(`{"sha":%q,"node_id":"C_x","commit":{"author":{"name":"Octo Cat","email":"octo@example.com","date":"2026-11-26T10:00:00Z"},"message":"work"},"url":"https://api.github.com/repos/acme/data-platform/commits/%s","parents":[]}`, sha, sha)
	}
	return `{"url":"https://api.github.com/repos/acme/data-platform/compare/x...y",` +
		`"html_url":"https://github.com/acme/data-platform/compare/x...y",` +
		`"permalink_url":"https://github.com/acme/data-platform/compare/acme:0123456...acme:89abcde",` +
		`"diff_url":"https://github.com/acme/data-platform/compare/x...y.diff",` +
		`"patch_url":"https://github.com/acme/data-platform/compare/x...y.patch",` +
		`"base_commit":` + commit(testSHA) + `,"merge_base_commit":` + commit(testSHA) + `,` +
		`"status":"` + status + `","ahead_by":1,"behind_by":0,"total_commits":1,` +
		`"commits":[` + commit(branchSHA) + `],"files":` + files + `}`
}

func compareCall(escapedRef string, status int, resp any) call {
	ref, err := url.PathUnescape(escapedRef)
	if err != nil {
		panic(err)
	}
	want := repoPath + "/compare/" + testSHA + "..." + escapedRef
	return call{
		method: "GET", path: repoPath + "/compare/" + testSHA + "..." + ref,
		query: url.Values{"per_page": {"1"}},
		check: func(t *testing.T, r *http.Request) {
			if got := r.URL.EscapedPath(); got != want {
				t.Errorf("escaped path %q, want %q", got, want)
			}
		},
		status: status, resp: resp,
	}
}

func TestClient_Contains(t *testing.T) {
	tests := []struct {
		name       string
		ref        string
		escapedRef string
		status     int
		resp       any
		want       bool
		wantErr    []error
	}{
		{name: "identical", ref: "main", escapedRef: "main", status: 200, resp: compareAnswer("identical", "[]"), want: true},
		{name: "ahead", ref: "main", escapedRef: "main", status: 200, resp: compareAnswer("ahead", "[]"), want: true},
		{name: "behind", ref: "main", escapedRef: "main", status: 200, resp: compareAnswer("behind", "[]"), want: false},
		{name: "diverged", ref: "main", escapedRef: "main", status: 200, resp: compareAnswer("diverged", "[]"), want: false},
		{name: "ref is a sha", ref: branchSHA, escapedRef: branchSHA, status: 200, resp: compareAnswer("ahead", "[]"), want: true},
		{name: "slash in branch", ref: "release/v1", escapedRef: "release%2Fv1", status: 200, resp: compareAnswer("ahead", "[]"), want: true},
		{name: "plus in branch", ref: "feat+x", escapedRef: "feat%2Bx", status: 200, resp: compareAnswer("behind", "[]"), want: false},
		{name: "fields in any order", ref: "main", escapedRef: "main", status: 200,
			resp: map[string]any{"files": []any{map[string]any{"filename": "a.py", "patch": "@@ -1 +1 @@"}}, "status": "ahead", "ahead_by": 1}, want: true},
		{name: "unknown commit", ref: "main", escapedRef: "main", status: 404, resp: map[string]any{"message": "Not Found"},
			wantErr: []error{executor.ErrNotFound, executor.ErrPermanent}},
		{name: "no commit found", ref: "gone", escapedRef: "gone", status: 422, resp: map[string]any{"message": "No commit found for the ref gone"},
			wantErr: []error{executor.ErrNotFound, executor.ErrPermanent}},
		{name: "no permission", ref: "main", escapedRef: "main", status: 403, resp: map[string]any{"message": "Resource not accessible by integration"},
			wantErr: []error{executor.ErrPermanent}},
		{name: "unknown status", ref: "main", escapedRef: "main", status: 200, resp: compareAnswer("sideways", "[]"), wantErr: []error{errAny}},
		{name: "no status", ref: "main", escapedRef: "main", status: 200, resp: map[string]any{"ahead_by": 1}, wantErr: []error{errAny}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer, compareCall(tt.escapedRef, tt.status, tt.resp))
			c, lb := newTestClient(t, serve(t, f), nil, false)
			c.opts.MaxTries = 1
			got, err := c.Contains(t.Context(), testRepo, tt.ref, testSHA)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("Contains = %v, %v; want %v, nil", got, err, tt.want)
				}
				return
			}
			if err == nil || got {
				t.Fatalf("Contains = %v, %v; want false and an error", got, err)
			}
			for _, want := range tt.wantErr {
				if want != errAny && !errors.Is(err, want) {
					t.Errorf("Contains error %q does not wrap %v", err, want)
				}
			}
			if tt.wantErr[0] == executor.ErrPermanent && errors.Is(err, executor.ErrNotFound) {
				t.Errorf("Contains error %q wraps ErrNotFound for a %d", err, tt.status)
			}
			assertNoSecrets(t, lb, []error{err}, testToken)
		})
	}
}

func TestClient_Contains_retries5xx(t *testing.T) {
	f := newFake(t, bearer,
		compareCall("main", 502, "<html>bad gateway</html>"),
		compareCall("main", 200, compareAnswer("ahead", "[]")))
	c, _ := newTestClient(t, serve(t, f), nil, false)
	if got, err := c.Contains(t.Context(), testRepo, "main", testSHA); err != nil || !got {
		t.Fatalf("Contains after a 502 = %v, %v; want true, nil", got, err)
	}
}

func TestClient_Contains_badInput(t *testing.T) {
	tests := []struct{ name, repo, ref, sha string }{
		{"short sha", testRepo, "main", "0123456"},
		{"upper-case sha", testRepo, "main", strings.ToUpper(testSHA)},
		{"empty ref", testRepo, "", testSHA},
		{"range in ref", testRepo, "main...evil", testSHA},
		{"query in ref", testRepo, "main?x=1", testSHA},
		{"space in ref", testRepo, "ma in", testSHA},
		{"dot-dot repo", "acme/..", "main", testSHA},
		{"repo with query", "acme/x?y", "main", testSHA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer) // no request may arrive
			c, _ := newTestClient(t, serve(t, f), nil, false)
			if _, err := c.Contains(t.Context(), tt.repo, tt.ref, tt.sha); !errors.Is(err, executor.ErrPermanent) {
				t.Fatalf("Contains = %v, want ErrPermanent", err)
			}
		})
	}
}

// TestClient_Contains_hugeDiff: a compare whose files run to 64 MiB (far
// past MaxBody) still answers, since Contains stops reading at "status".
func TestClient_Contains_hugeDiff(t *testing.T) {
	chunk := []byte(strings.Repeat("+x", 32<<10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != bearer {
			t.Errorf("Authorization %q", r.Header.Get("Authorization"))
		}
		head, _, _ := strings.Cut(compareAnswer("ahead", "FILES"), "FILES")
		io.WriteString(w, head+`[{"filename":"vendor.js","patch":"`)
		for range (64 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		io.WriteString(w, `"}]}`)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv.URL+"/", nil, false)
	var got bool
	var err error
	grew := allocated(func() { got, err = c.Contains(t.Context(), testRepo, "main", testSHA) })
	if err != nil || !got {
		t.Fatalf("Contains = %v, %v; want true, nil", got, err)
	}
	if grew > 16<<20 {
		t.Errorf("Contains allocated %d MiB reading a status", grew>>20)
	}
}

// TestClient_Contains_bodyCap: an answer that streams 256 MiB before any
// status fails at the cap.
func TestClient_Contains_bodyCap(t *testing.T) {
	srv := streamer(t, `{"url":"`, 256<<20)
	lg, _ := testLogger(t)
	c, err := New(lg, Options{BaseURL: srv.URL + "/", TokenSource: StaticToken(testToken), MaxTries: 1, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var callErr error
	grew := allocated(func() { _, callErr = c.Contains(t.Context(), testRepo, "main", testSHA) })
	if !errors.Is(callErr, safehttp.ErrBodyTooLarge) {
		t.Fatalf("Contains = %v, want ErrBodyTooLarge", callErr)
	}
	if grew > 96<<20 {
		t.Errorf("Contains allocated %d MiB, want at most 96 MiB for an 8 MiB cap", grew>>20)
	}
}
