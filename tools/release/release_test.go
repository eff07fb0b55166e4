package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// moduleRoot is the module's root, from this package's directory.
const moduleRoot = "../.."

// copyTree copies the module's source (not .git or build output) to dst.
func copyTree(t *testing.T, dst string) {
	t.Helper()
	err := filepath.WalkDir(moduleRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(moduleRoot, p)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "dist", ".deployhook":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRelease_Reproducible builds linux/amd64 twice, the second time from a
// copy of the source at another path, in another time zone, with GOFLAGS and
// GOAMD64 set in the environment, and demands the same bytes: binary, SBOM,
// SHA256SUMS.
func TestRelease_Reproducible(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go not found: %v", err)
	}
	o := options{
		version:   "v1.2.3-test",
		commit:    "0123456789abcdef0123456789abcdef01234567",
		date:      time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		platforms: []string{"linux/amd64"},
		dir:       moduleRoot,
		env:       os.Environ(),
		out:       filepath.Join(t.TempDir(), "a"),
	}
	first, err := build(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"deployhook_v1.2.3-test_linux_amd64", "deployhook_v1.2.3-test_linux_amd64.cdx.json", "SHA256SUMS"}
	if strings.Join(first, " ") != strings.Join(want, " ") {
		t.Fatalf("files = %q, want %q", first, want)
	}

	src := filepath.Join(t.TempDir(), "elsewhere", "src")
	copyTree(t, src)
	o2 := o
	o2.dir = src
	o2.out = filepath.Join(t.TempDir(), "b")
	o2.env = append(os.Environ(), "TZ=Pacific/Chatham", "GOFLAGS=-tags=netgo -ldflags=-X=main.version=wrong", "GOAMD64=v3")
	second, err := build(t.Context(), o2)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range first {
		a, err := os.ReadFile(filepath.Join(o.out, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(o2.out, second[i]))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the two builds (%d and %d bytes)", f, len(a), len(b))
		}
	}

	bin := filepath.Join(o2.out, want[0])
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(src)) {
		t.Errorf("the binary names the build directory %s (-trimpath?)", src)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, v := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": "amd64", "GOAMD64": "v1", "vcs.revision": ""} {
		if settings[k] != v {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], v)
		}
	}
	if v, ok := settings["-tags"]; ok {
		t.Errorf("build setting -tags = %q: GOFLAGS leaked into the release", v)
	}

	// The stamp: the version, commit and the commit's date, not the clock's.
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(out), "deployhook v1.2.3-test (commit 0123456789abcdef0123456789abcdef01234567, 2026-03-04T05:06:07Z)\n"; got != want {
			t.Errorf("version = %q, want %q", got, want)
		}
	}

	sum, err := fileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(o.out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sums), sum+"  "+want[0]+"\n") || strings.Count(string(sums), "\n") != 2 {
		t.Errorf("SHA256SUMS =\n%s\nwant the binary's %s and the SBOM's lines", sums, sum)
	}
	checkSBOM(t, filepath.Join(o.out, want[1]), sum)
}

// checkSBOM checks the SBOM against the binary's SHA-256 and the modules go
// list says the build uses.
func checkSBOM(t *testing.T, p, sum string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var got bom
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.BOMFormat != "CycloneDX" || got.SpecVersion != "1.5" || got.Version != 1 ||
		!strings.HasPrefix(got.SerialNumber, "urn:uuid:") || got.Metadata.Timestamp != "2026-03-04T05:06:07Z" {
		t.Errorf("SBOM header = %s %s %d %s %s", got.BOMFormat, got.SpecVersion, got.Version, got.SerialNumber, got.Metadata.Timestamp)
	}
	root := got.Metadata.Component
	if root.PURL != "pkg:golang/github.com/deployhook/deployhook@v1.2.3-test?type=module" ||
		len(root.Hashes) != 1 || root.Hashes[0] != (hash{"SHA-256", sum}) {
		t.Errorf("SBOM component = %+v, want the binary's purl and SHA-256 %s", root, sum)
	}
	purls := map[string]bool{}
	for _, c := range got.Components {
		purls[c.PURL] = true
	}
	goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"modernc.org/sqlite", "golang.org/x/crypto", "github.com/spf13/cobra"} {
		cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", m)
		cmd.Dir = moduleRoot
		v, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := purl(m, strings.TrimSpace(string(v))); !purls[want] {
			t.Errorf("SBOM has no %s", want)
		}
	}
	if want := purl("std", strings.TrimSpace(string(goVersion))); !purls[want] {
		t.Errorf("SBOM has no %s", want)
	}
	if len(got.Dependencies) != len(got.Components)+1 || len(got.Dependencies[0].DependsOn) != len(got.Components) {
		t.Errorf("SBOM dependencies: %d for %d components", len(got.Dependencies), len(got.Components))
	}
}

func TestReleaseDate(t *testing.T) {
	tests := []struct {
		name, flag, epoch string
		want              string
		wantErr           string
	}{
		{name: "flag", flag: "2026-01-02T03:04:05+02:00", epoch: "1", want: "2026-01-02T01:04:05Z"},
		{name: "SOURCE_DATE_EPOCH", epoch: "1767225600", want: "2026-01-01T00:00:00Z"},
		{name: "bad flag", flag: "yesterday", wantErr: `-date: parsing time "yesterday"`},
		{name: "bad epoch", epoch: "soon", wantErr: `SOURCE_DATE_EPOCH="soon": not a number of seconds`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := releaseDate(context.Background(), tt.flag, tt.epoch, moduleRoot)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("releaseDate = %v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Format(time.RFC3339) != tt.want {
				t.Fatalf("releaseDate = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestBuild_RefusesBadStamps(t *testing.T) {
	for _, v := range []string{"", "v1 -X main.commit=evil", "v1'"} {
		o := options{version: v, commit: "c", out: filepath.Join(t.TempDir(), "out"), dir: moduleRoot}
		if _, err := build(t.Context(), o); err == nil || !strings.Contains(err.Error(), "must be non-empty words") {
			t.Errorf("build with version %q: %v, want a refusal", v, err)
		}
	}
}
