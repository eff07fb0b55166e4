package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRun_JournalErrorSaidOnce: an error opening the journal says "open
// journal" once. Before issue 9 main wrapped store.Open's error, which already
// says it, and serve failed with "open journal: open journal: …".
func TestRun_JournalErrorSaidOnce(t *testing.T) {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	cfg := writeConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(data, "deployhook.db")
	if err := os.Symlink(filepath.Join(dir, "elsewhere.db"), db); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"serve", "--config", cfg, "--data-dir", data, "--listen", "127.0.0.1:0"},
		testEnv(gh), nil, &bytes.Buffer{}, t.Output())
	want := "open journal: " + db + " is a symbolic link, and deployhook does not follow one to its journal: " +
		"replace the link with the file it points to (or remove it to start a new journal), " +
		"or point data_dir at the directory that holds the file"
	if err == nil || err.Error() != want {
		t.Errorf("serve with a journal that is a link: %v\nwant %q", err, want)
	}
}
