// Package migrations reads a journal's schema migrations: numbered SQL files,
// one per version, that both journals (executor/store, SQLite, and
// executor/store/pgstore, PostgreSQL) embed and apply in their own dialect.
package migrations

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string // the file's name, for logs and errors
	SQL     string
}

// Load reads the *.sql files of fsys, named NNNN_description.sql, and returns
// them by version. Versions must start at 1 and have no gaps or repeats: a
// mistake there is a build mistake, reported loudly.
func Load(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []Migration
	for _, name := range names {
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: path.Base(name), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions start at 1, without gaps)", m.Name, m.Version, i+1)
		}
	}
	return ms, nil
}
