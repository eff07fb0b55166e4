package ghstatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/gitsha"
)

var _ executor.Commits = (*Client)(nil)

// Contains implements executor.Commits: it reports whether commit sha is
// reachable from ref (a branch name or a full SHA) in repo, i.e. ref's history
// contains it, through GitHub's compare API:
//
//	GET /repos/{owner}/{repo}/compare/{sha}...{ref}?per_page=1
//
// GitHub compares ref (the head) with sha (the base): "identical" and "ahead"
// (sha is an ancestor of ref) give true, "behind" and "diverged" false. sha
// and ref are query-escaped in the path (a branch release/v1 is sent as
// release%2Fv1), as go-github does. Only the answer's "status" is read, which
// GitHub sends before the commits and files, so the size of the diff does not
// matter; per_page=1 keeps the commit list short anyway.
//
// An error wraps executor.ErrNotFound when GitHub knows no such commit or ref
// (404, or 422 "No commit found"), and executor.ErrPermanent for that and any
// other refusal that a retry will not change (see Report). sha must be 40
// lower-case hex digits and ref a plausible git ref name. Retries and waits
// are those of Report.
func (c *Client) Contains(ctx context.Context, repo, ref, sha string) (bool, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return false, fmt.Errorf("compare: %w", err)
	}
	if !gitsha.Valid(sha) {
		return false, fmt.Errorf("compare in %s: SHA %q is not 40 lower-case hex digits: %w", repo, sha, executor.ErrPermanent)
	}
	if err := checkRef(ref); err != nil {
		return false, fmt.Errorf("compare in %s: %w", repo, err)
	}
	u := fmt.Sprintf("repos/%s/%s/compare/%s...%s?per_page=1",
		url.PathEscape(owner), url.PathEscape(name), url.QueryEscape(sha), url.QueryEscape(ref))
	var status string
	lg := c.lg.With("repo", repo, "sha", sha, "ref", ref)
	err = c.get(ctx, lg, "compare commits", u, func(body io.Reader) error {
		var err error
		status, err = compareStatus(body)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("is %.7s in %s of %s: %w", sha, ref, repo, err)
	}
	switch status {
	case "identical", "ahead":
		return true, nil
	case "behind", "diverged":
		return false, nil
	}
	return false, fmt.Errorf("is %.7s in %s of %s: GitHub answered the unknown compare status %q", sha, ref, repo, truncateForError(status))
}

// compareStatus reads a compare answer up to its top-level "status" and
// returns it, leaving the rest (commits, files) unread.
func compareStatus(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("read compare answer: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return "", errors.New("read compare answer: not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", fmt.Errorf("read compare answer: %w", err)
		}
		if key, _ := tok.(string); key == "status" {
			var s string
			if err := dec.Decode(&s); err != nil {
				return "", fmt.Errorf("read compare answer: status: %w", err)
			}
			return s, nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", fmt.Errorf("read compare answer: %w", err)
		}
	}
	return "", errors.New("read compare answer: no status")
}

// checkRef refuses ref names git would refuse that could also change the
// request (empty, "..", control characters, space, ~^:?*[\), so that a bad
// ref fails here with its name instead of as a confusing 404.
func checkRef(ref string) error {
	bad := ref == "" || len(ref) > 255 || strings.Contains(ref, "..") ||
		strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") || strings.HasSuffix(ref, ".") ||
		strings.ContainsFunc(ref, func(r rune) bool {
			return r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r)
		})
	if bad {
		return fmt.Errorf("%q is not a branch or commit name: %w", ref, executor.ErrPermanent)
	}
	return nil
}
