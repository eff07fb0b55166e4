// Command release builds deployhook's release: a static binary per platform,
// a CycloneDX SBOM of each, and SHA256SUMS over them all, in one directory.
//
//	go run ./tools/release [-out dist] [-version V] [-commit SHA] [-date RFC3339] [-platforms linux/amd64,...]
//
// The release is reproducible: the same commit gives the same bytes, whoever
// builds it, wherever, whenever. Binaries are built with CGO_ENABLED=0,
// -trimpath (no paths of the build machine), -buildvcs=false (the commit is
// stamped instead), stripped, with the architecture levels pinned rather than
// taken from the environment; the date stamped into them and into the SBOMs is
// the commit's (SOURCE_DATE_EPOCH when set), never the clock's.
//
// Unset flags come from git: the version from git describe, the commit from
// HEAD. Run it from the module's root (make release does).
//
// Outputs, for each GOOS/GOARCH:
//
//	deployhook_VERSION_GOOS_GOARCH           the binary
//	deployhook_VERSION_GOOS_GOARCH.cdx.json  its SBOM (CycloneDX 1.5 JSON), read from the binary's build information
//	SHA256SUMS                               sha256sum's format, over all of the above
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Platforms is what a release is built for by default.
var Platforms = []string{"linux/amd64", "linux/arm64", "darwin/arm64"}

// pkg is the main package built.
const pkg = "github.com/deployhook/deployhook"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

// options is one release to build.
type options struct {
	out       string
	version   string
	commit    string
	date      time.Time
	platforms []string
	dir       string   // the module's root, where go build runs
	env       []string // the environment go runs in, before the release's own settings
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	out := fs.String("out", "dist", "output directory (emptied first)")
	version := fs.String("version", "", "version to stamp (default: git describe --tags --always --dirty)")
	commit := fs.String("commit", "", "commit to stamp (default: git rev-parse HEAD)")
	date := fs.String("date", "", "date to stamp, RFC 3339 (default: $SOURCE_DATE_EPOCH, else the commit's date)")
	platforms := fs.String("platforms", strings.Join(Platforms, ","), "GOOS/GOARCH list, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o := options{out: *out, version: *version, commit: *commit, platforms: strings.Split(*platforms, ","), dir: "."}
	o.env = os.Environ()
	var err error
	if o.version == "" {
		if o.version, err = git(ctx, o.dir, "describe", "--tags", "--always", "--dirty"); err != nil {
			return err
		}
	}
	if o.commit == "" {
		if o.commit, err = git(ctx, o.dir, "rev-parse", "HEAD"); err != nil {
			return err
		}
	}
	if o.date, err = releaseDate(ctx, *date, getenv("SOURCE_DATE_EPOCH"), o.dir); err != nil {
		return err
	}
	files, err := build(ctx, o)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintln(stdout, filepath.Join(o.out, f))
	}
	return nil
}

// releaseDate decides the date stamped: the -date flag, else
// SOURCE_DATE_EPOCH (reproducible-builds.org's convention), else the
// commit's committer date. Always in UTC.
func releaseDate(ctx context.Context, flagDate, epoch, dir string) (time.Time, error) {
	switch {
	case flagDate != "":
		d, err := time.Parse(time.RFC3339, flagDate)
		if err != nil {
			return time.Time{}, fmt.Errorf("-date: %w", err)
		}
		return d.UTC(), nil
	case epoch != "":
		n, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a number of seconds", epoch)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	s, err := git(ctx, dir, "log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return time.Time{}, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("commit date %q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ldflags returns the linker flags of a release: stripped, stamped.
func ldflags(o options) string {
	return fmt.Sprintf("-s -w -X main.version=%s -X main.commit=%s -X main.date=%s",
		o.version, o.commit, o.date.Format(time.RFC3339))
}

// buildEnv returns env with the release's settings in place of any the caller
// had: no cgo, the target platform, the baseline architecture levels, and no
// GOFLAGS (which could add -race, -cover or another -ldflags).
func buildEnv(env []string, goos, goarch string) []string {
	set := map[string]string{
		"CGO_ENABLED": "0", "GOOS": goos, "GOARCH": goarch, "GOFLAGS": "",
		"GOAMD64": "v1", "GOARM64": "v8.0", "GOEXPERIMENT": "",
	}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			out = append(out, kv)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		out = append(out, k+"="+set[k])
	}
	return out
}

// build builds the release into o.out, which it empties first, and returns
// the names of the files written, SHA256SUMS last.
func build(ctx context.Context, o options) ([]string, error) {
	if strings.ContainsAny(o.version+o.commit, " \t\n'\"") || o.version == "" {
		return nil, fmt.Errorf("version %q and commit %q must be non-empty words", o.version, o.commit)
	}
	if err := os.RemoveAll(o.out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, p := range o.platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok || goos == "" || goarch == "" {
			return nil, fmt.Errorf("platform %q: want GOOS/GOARCH", p)
		}
		name := fmt.Sprintf("deployhook_%s_%s_%s", o.version, goos, goarch)
		bin, err := filepath.Abs(filepath.Join(o.out, name))
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
			"-ldflags", ldflags(o), "-o", bin, pkg)
		cmd.Dir = o.dir
		cmd.Env = buildEnv(o.env, goos, goarch)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w\n%s", p, err, out)
		}
		sbom, err := sbomOf(bin, o)
		if err != nil {
			return nil, fmt.Errorf("SBOM of %s: %w", p, err)
		}
		if err := os.WriteFile(bin+".cdx.json", sbom, 0o644); err != nil {
			return nil, err
		}
		files = append(files, name, name+".cdx.json")
	}
	sums, err := checksums(o.out, files)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.out, "SHA256SUMS"), sums, 0o644); err != nil {
		return nil, err
	}
	return append(files, "SHA256SUMS"), nil
}

// checksums returns sha256sum's output for files in dir, sorted by name.
func checksums(dir string, files []string) ([]byte, error) {
	var b strings.Builder
	for _, f := range slices.Sorted(slices.Values(files)) {
		sum, err := fileSHA256(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, f)
	}
	return []byte(b.String()), nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
