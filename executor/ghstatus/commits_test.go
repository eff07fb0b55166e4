package ghstatus

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// commitAnswer is an answer of GET /repos/{owner}/{repo}/commits/{sha} in
// the shape of GitHub's REST reference ("Get a commit"), shortened; author
// is the top-level author (nil: null, an email that is no GitHub account's).
func commitAnswer(message string, author map[string]any) map[string]any {
	var a any
	if author != nil {
		a = author
	}
	return map[string]any{
		"sha":     testSHA,
		"node_id": "C_kwDOAAABc9oAKDAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc",
		"commit": map[string]any{
			"author":       map[string]any{"name": "Mona Lisa Octocat", "email": "mona@example.com", "date": "2026-05-30T09:15:00Z"},
			"committer":    map[string]any{"name": "GitHub", "email": "noreply@github.com", "date": "2026-05-30T09:16:00Z"},
			"message":      message,
			"tree":         map[string]any{"sha": branchSHA, "url": "https://api.github.com/repos/acme/data-platform/git/trees/" + branchSHA},
			"verification": map[string]any{"verified": false, "reason": "unsigned"},
		},
		"url":       "https://api.github.com/repos/acme/data-platform/commits/" + testSHA,
		"html_url":  "https://github.com/acme/data-platform/commit/" + testSHA,
		"author":    a,
		"committer": map[string]any{"login": "web-flow", "id": 19864447, "type": "User"},
		"parents":   []any{map[string]any{"sha": branchSHA}},
		"stats":     map[string]any{"total": 2, "additions": 1, "deletions": 1},
		"files":     []any{map[string]any{"filename": "defs.py", "status": "modified", "patch": "@@ -1 +1 @@\n-a\n+b"}},
	}
}

func commitCall(status int, resp any) call {
	return call{method: "GET", path: repoPath + "/commits/" + testSHA, query: url.Values{"per_page": {"1"}}, status: status, resp: resp}
}

func TestClient_Commit(t *testing.T) {
	date := time.Date(2026, 5, 30, 9, 15, 0, 0, time.UTC)
	long := strings.Repeat("é", MaxCommitLine+10)
	tests := []struct {
		name    string
		resp    any
		status  int
		want    CommitInfo
		wantErr []error
	}{
		{name: "author with a login", status: 200,
			resp: commitAnswer("Load the sales assets from S3\n\nThe old loader read them twice.", map[string]any{"login": "monalisa", "id": 1, "type": "User"}),
			want: CommitInfo{Message: "Load the sales assets from S3", Login: "monalisa", Name: "Mona Lisa Octocat", Date: date}},
		{name: "author is no GitHub account", status: 200, resp: commitAnswer("fix: typo\r\n", nil),
			want: CommitInfo{Message: "fix: typo", Name: "Mona Lisa Octocat", Date: date}},
		{name: "long subject is cut", status: 200, resp: commitAnswer(long, nil),
			want: CommitInfo{Message: strings.Repeat("é", MaxCommitLine-1) + "…", Name: "Mona Lisa Octocat", Date: date}},
		{name: "unknown commit", status: 404, resp: map[string]any{"message": "Not Found"},
			wantErr: []error{executor.ErrNotFound, executor.ErrPermanent}},
		{name: "no commit found", status: 422, resp: map[string]any{"message": "No commit found for SHA: " + testSHA},
			wantErr: []error{executor.ErrNotFound, executor.ErrPermanent}},
		{name: "no permission", status: 403, resp: map[string]any{"message": "Resource not accessible by integration"},
			wantErr: []error{executor.ErrPermanent}},
		{name: "not JSON", status: 200, resp: "<html>", wantErr: []error{errAny}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer, commitCall(tt.status, tt.resp))
			c, lb := newTestClient(t, serve(t, f), nil, false)
			c.opts.MaxTries = 1
			got, err := c.Commit(t.Context(), testRepo, testSHA)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("Commit = %+v, %v; want %+v, nil", got, err, tt.want)
				}
				return
			}
			if err == nil || got != (CommitInfo{}) {
				t.Fatalf("Commit = %+v, %v; want an error", got, err)
			}
			for _, want := range tt.wantErr {
				if want != errAny && !errors.Is(err, want) {
					t.Errorf("Commit error %q does not wrap %v", err, want)
				}
			}
			if tt.wantErr[0] == executor.ErrPermanent && errors.Is(err, executor.ErrNotFound) {
				t.Errorf("Commit error %q wraps ErrNotFound for a %d", err, tt.status)
			}
			assertNoSecrets(t, lb, []error{err}, testToken)
		})
	}
}

func TestClient_Commit_retries5xx(t *testing.T) {
	f := newFake(t, bearer,
		commitCall(502, "<html>bad gateway</html>"),
		commitCall(200, commitAnswer("second try", nil)))
	c, _ := newTestClient(t, serve(t, f), nil, false)
	got, err := c.Commit(t.Context(), testRepo, testSHA)
	if err != nil || got.Message != "second try" {
		t.Fatalf("Commit after a 502 = %+v, %v; want the message, nil", got, err)
	}
}

// TestClient_Commit_GHES: on GitHub Enterprise Server the request goes
// below /api/v3.
func TestClient_Commit_GHES(t *testing.T) {
	f := newFake(t, bearer, commitCall(200, commitAnswer("on GHES", nil)))
	f.prefix = "/api/v3"
	c, _ := newTestClient(t, serve(t, f), nil, false)
	if got, err := c.Commit(t.Context(), testRepo, testSHA); err != nil || got.Message != "on GHES" {
		t.Fatalf("Commit = %+v, %v", got, err)
	}
}

func TestClient_Commit_badInput(t *testing.T) {
	tests := []struct{ name, repo, sha string }{
		{"short sha", testRepo, "0123456"},
		{"upper-case sha", testRepo, strings.ToUpper(testSHA)},
		{"ref instead of sha", testRepo, "main"},
		{"dot-dot repo", "acme/..", testSHA},
		{"repo with query", "acme/x?y", testSHA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, bearer) // no request may arrive
			c, _ := newTestClient(t, serve(t, f), nil, false)
			if _, err := c.Commit(t.Context(), tt.repo, tt.sha); !errors.Is(err, executor.ErrPermanent) {
				t.Fatalf("Commit = %v, want ErrPermanent", err)
			}
		})
	}
}

// TestClient_Commit_bodyCap: an answer longer than maxCommitBody fails
// there, without reading the rest.
func TestClient_Commit_bodyCap(t *testing.T) {
	srv := streamer(t, `{"commit":{"message":"`, 64<<20)
	c, _ := newTestClient(t, srv.URL+"/", nil, false)
	c.opts.MaxTries = 1
	var err error
	grew := allocated(func() { _, err = c.Commit(t.Context(), testRepo, testSHA) })
	if err == nil || !strings.Contains(err.Error(), "longer than 1048576 bytes") {
		t.Fatalf("Commit = %v, want the body cap", err)
	}
	if grew > 16<<20 {
		t.Errorf("Commit allocated %d MiB for a 1 MiB cap", grew>>20)
	}
}
