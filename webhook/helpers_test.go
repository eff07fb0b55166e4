package webhook

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// payloadDir holds GitHub's example payloads, copied unchanged from octokit/webhooks.
const payloadDir = "testdata/github-payloads"

// readPayload returns the payload file name (relative to payloadDir) compacted, as
// GitHub sends its bodies: without indentation.
func readPayload(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(payloadDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		tb.Fatalf("compact %s: %v", name, err)
	}
	return buf.Bytes()
}

// allPayloads returns the names of every payload file, relative to payloadDir.
func allPayloads(tb testing.TB) []string {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join(payloadDir, "*", "*.json"))
	if err != nil || len(names) == 0 {
		tb.Fatalf("no payloads in %s: %v", payloadDir, err)
	}
	for i, n := range names {
		names[i], _ = filepath.Rel(payloadDir, n)
	}
	return names
}

// edit returns a copy of body with each dotted path in sets set to its value (nil
// is JSON null; a path ending in "-" deletes the member).
func edit(tb testing.TB, body []byte, sets ...any) []byte {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(sets); i += 2 {
		path := strings.Split(sets[i].(string), ".")
		obj := m
		for _, p := range path[:len(path)-1] {
			next, ok := obj[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				obj[p] = next
			}
			obj = next
		}
		last := path[len(path)-1]
		if k, ok := strings.CutSuffix(last, "-"); ok {
			delete(obj, k)
			continue
		}
		obj[last] = sets[i+1]
	}
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// bigPush returns GitHub's new-branch push payload grown, the way GitHub grows it,
// to at least size bytes: more commits in the commits array (distinct ids and
// trees, multi-line messages with escapes, files added and modified), the last one
// being head_commit and after. GitHub caps the array at 2048 commits.
func bigPush(tb testing.TB, size int) []byte {
	tb.Helper()
	base := readPayload(tb, "push/with-new-branch.payload.json")
	var doc struct {
		Commits    []json.RawMessage `json:"commits"`
		HeadCommit json.RawMessage   `json:"head_commit"`
		After      string            `json:"after"`
	}
	if err := json.Unmarshal(base, &doc); err != nil || len(doc.Commits) != 1 {
		tb.Fatalf("unexpected base push: %v", err)
	}
	var commit map[string]any
	if err := json.Unmarshal(doc.Commits[0], &commit); err != nil {
		tb.Fatal(err)
	}
	hexOf := func(s string) string { h := sha1.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	var commits []byte
	n := 0
	for ; n < 2048 && len(base)+len(commits) < size; n++ {
		c := map[string]any{}
		for k, v := range commit {
			c[k] = v
		}
		id := hexOf(fmt.Sprint("commit", n))
		c["id"] = id
		c["tree_id"] = hexOf(fmt.Sprint("tree", n))
		c["url"] = "https://github.com/Codertocat/Hello-World/commit/" + id
		c["message"] = fmt.Sprintf("pipeline: handle the \"late\" partition %d\n\nThe sensor fired before the upstream asset\tmaterialised; wait for it.\nRefs #%d — café ☕", n, n)
		c["added"] = []string{fmt.Sprintf("assets/part_%d.py", n)}
		c["modified"] = []string{"README.md", fmt.Sprintf("dagster/defs_%d.py", n%17)}
		b, err := json.Marshal(c)
		if err != nil {
			tb.Fatal(err)
		}
		if n > 0 {
			commits = append(commits, ',')
		}
		commits = append(commits, b...)
	}
	old := append(append([]byte(`"commits":[`), doc.Commits[0]...), ']')
	if bytes.Count(base, old) != 1 {
		tb.Fatal("commits array not found once in the base push")
	}
	out := bytes.Replace(base, old, append(append([]byte(`"commits":[`), commits...), ']'), 1)
	if !json.Valid(out) {
		tb.Fatal("grown push is not valid JSON")
	}
	return out
}

// refMembers is members done by encoding/json: decode the object into
// map[string]json.RawMessage and look the keys up. It is the reference the scanner
// must agree with.
func refMembers(data []byte, keys string) (vals [maxKeys][]byte, err error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return vals, err
	}
	if m == nil {
		return vals, errors.New("not an object")
	}
	for i, k := range strings.Fields(keys) {
		if v, ok := m[k]; ok {
			vals[i] = v
		}
	}
	return vals, nil
}

// isIgnored returns the reason of an *Ignored error, and whether err is one.
func isIgnored(err error) (string, bool) {
	var ign *Ignored
	if errors.As(err, &ign) {
		return ign.Reason, true
	}
	return "", false
}
