package ghstatus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deployhook/deployhook/executor"
	"github.com/deployhook/deployhook/internal/gitsha"
)

// CommitInfo is what GitHub says about a commit, as the console's history
// shows it.
type CommitInfo struct {
	Message string    // the first line of the commit message, at most MaxCommitLine characters
	Login   string    // the author's GitHub login; empty when git's author email is no GitHub account's
	Name    string    // the author's name as git recorded it
	Date    time.Time // the author date
}

// MaxCommitLine caps CommitInfo.Message, in characters (runes): a subject
// line longer than a table row is cut, ending in "…".
const MaxCommitLine = 200

// maxCommitBody caps a commit answer. With per_page=1 it lists at most one
// changed file, so what remains is the message (git does not bound it, but
// a megabyte is far past any real one), the author, the committer and the
// parents.
const maxCommitBody = 1 << 20

// Commit returns the first line of commit sha's message, its author's
// login and name, and its author date in repo (owner/name):
//
//	GET /repos/{owner}/{repo}/commits/{sha}?per_page=1
//
// per_page=1 keeps the answer's list of changed files (paginated by
// GitHub since 2023) to one file, and the answer is read up to
// maxCommitBody only. sha must be 40 lower-case hex digits. An error wraps
// executor.ErrNotFound (and executor.ErrPermanent) when GitHub knows no
// such commit (404, or 422 "No commit found"), executor.ErrPermanent for
// any other refusal a retry will not change. Retries and waits are those of
// Report; ctx bounds them all.
func (c *Client) Commit(ctx context.Context, repo, sha string) (CommitInfo, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return CommitInfo{}, fmt.Errorf("get commit: %w", err)
	}
	if !gitsha.Valid(sha) {
		return CommitInfo{}, fmt.Errorf("get commit in %s: SHA %q is not 40 lower-case hex digits: %w", repo, sha, executor.ErrPermanent)
	}
	u := fmt.Sprintf("repos/%s/%s/commits/%s?per_page=1", url.PathEscape(owner), url.PathEscape(name), sha)
	var info CommitInfo
	err = c.get(ctx, c.lg.With("repo", repo, "sha", sha), "get commit", u, func(body io.Reader) error {
		var err error
		info, err = decodeCommit(body)
		return err
	})
	if err != nil {
		return CommitInfo{}, fmt.Errorf("commit %.7s of %s: %w", sha, repo, err)
	}
	return info, nil
}

// decodeCommit reads a commit answer of at most maxCommitBody bytes.
func decodeCommit(r io.Reader) (CommitInfo, error) {
	var a struct {
		Commit struct {
			Message string `json:"message"`
			Author  struct {
				Name string    `json:"name"`
				Date time.Time `json:"date"`
			} `json:"author"`
		} `json:"commit"`
		Author *struct {
			Login string `json:"login"`
		} `json:"author"` // null when the email is no GitHub account's
	}
	lr := &io.LimitedReader{R: r, N: maxCommitBody + 1}
	if err := json.NewDecoder(lr).Decode(&a); err != nil {
		if lr.N <= 0 {
			return CommitInfo{}, fmt.Errorf("read commit answer: longer than %d bytes", maxCommitBody)
		}
		return CommitInfo{}, fmt.Errorf("read commit answer: %w", err)
	}
	info := CommitInfo{Message: firstLine(a.Commit.Message), Name: a.Commit.Author.Name, Date: a.Commit.Author.Date}
	if a.Author != nil {
		info.Login = a.Author.Login
	}
	return info, nil
}

// firstLine is the first line of a commit message, trimmed, cut to
// MaxCommitLine characters.
func firstLine(msg string) string {
	line, _, _ := strings.Cut(msg, "\n")
	line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	if utf8.RuneCountInString(line) <= MaxCommitLine {
		return line
	}
	r := []rune(line)[:MaxCommitLine-1]
	return strings.TrimRight(string(r), " ") + "…"
}
