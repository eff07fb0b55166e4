package server

import (
	"context"
	"sync"
	"time"
)

// Limits of the commit cache.
const (
	// commitCacheSize bounds the commits kept: a commit never changes, so
	// an entry is only dropped to make room.
	commitCacheSize = 4096
	// commitRetry is how long a failed lookup is not retried, so that a
	// GitHub outage does not slow every history page.
	commitRetry = time.Minute
	// commitBudget bounds the lookups of one page: past it, rows show the
	// SHA alone (the lookups that finished are cached for the next view).
	commitBudget = 2 * time.Second
	// commitWorkers is how many lookups one page makes at once.
	commitWorkers = 4
)

// commitCache remembers what Commits answered. It is safe for concurrent
// use; the nil *commitCache looks nothing up.
type commitCache struct {
	src Commits

	mu sync.Mutex
	m  map[string]commitEntry // repo + "@" + sha
}

type commitEntry struct {
	info   CommitInfo
	failed time.Time // zero: info is GitHub's answer
}

func newCommitCache(src Commits) *commitCache {
	return &commitCache{src: src, m: map[string]commitEntry{}}
}

// lookup returns what is known of shas in repo, asking Commits for those
// not cached (at most commitWorkers at once, all within commitBudget, each
// SHA once). A SHA missing from the answer is unknown for now.
func (cc *commitCache) lookup(ctx context.Context, repo string, shas []string) map[string]CommitInfo {
	out := map[string]CommitInfo{}
	if cc == nil {
		return out
	}
	now := time.Now()
	var ask []string
	cc.mu.Lock()
	for _, sha := range shas {
		if _, done := out[sha]; done || containsString(ask, sha) {
			continue
		}
		e, ok := cc.m[repo+"@"+sha]
		switch {
		case ok && e.failed.IsZero():
			out[sha] = e.info
		case ok && now.Sub(e.failed) < commitRetry:
		default:
			ask = append(ask, sha)
		}
	}
	cc.mu.Unlock()
	if len(ask) == 0 {
		return out
	}

	ctx, cancel := context.WithTimeout(ctx, commitBudget)
	defer cancel()
	next := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex // out
	for range min(commitWorkers, len(ask)) {
		wg.Go(func() {
			for sha := range next {
				info, err := cc.src.Commit(ctx, repo, sha)
				cc.store(repo, sha, info, err)
				if err == nil {
					mu.Lock()
					out[sha] = info
					mu.Unlock()
				}
			}
		})
	}
feed:
	for _, sha := range ask {
		select {
		case next <- sha:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return out
}

// store remembers an answer, making room when the cache is full.
func (cc *commitCache) store(repo, sha string, info CommitInfo, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.m) >= commitCacheSize {
		for k := range cc.m { // any entry: the map's order is random
			delete(cc.m, k)
			break
		}
	}
	e := commitEntry{info: info}
	if err != nil {
		e = commitEntry{failed: time.Now()}
	}
	cc.m[repo+"@"+sha] = e
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
