package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
)

// The SBOM follows CycloneDX 1.5 (https://cyclonedx.org/docs/1.5/json/) and
// names Go modules with package URLs of type golang
// (https://github.com/package-url/purl-spec, PURL-TYPES: golang), as
// vulnerability scanners read them.

type bom struct {
	BOMFormat    string       `json:"bomFormat"`
	SpecVersion  string       `json:"specVersion"`
	SerialNumber string       `json:"serialNumber"`
	Version      int          `json:"version"`
	Metadata     metadata     `json:"metadata"`
	Components   []component  `json:"components"`
	Dependencies []dependency `json:"dependencies"`
}

type metadata struct {
	Timestamp string    `json:"timestamp"`
	Tools     tools     `json:"tools"`
	Component component `json:"component"`
}

type tools struct {
	Components []component `json:"components"`
}

type component struct {
	Type       string     `json:"type"`
	BOMRef     string     `json:"bom-ref,omitempty"`
	Name       string     `json:"name"`
	Version    string     `json:"version,omitempty"`
	PURL       string     `json:"purl,omitempty"`
	Hashes     []hash     `json:"hashes,omitempty"`
	Properties []property `json:"properties,omitempty"`
}

type hash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type dependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

// purl returns the package URL of Go module path at version.
func purl(path, version string) string {
	return "pkg:golang/" + path + "@" + version + "?type=module"
}

// sbomOf reads the build information of the binary at bin and returns its
// CycloneDX SBOM: the binary (with its SHA-256 and build settings), the
// modules linked into it (replacements applied) and the Go standard library
// of the toolchain that built it. Its bytes depend only on the binary and o,
// so a reproducible binary has a reproducible SBOM.
func sbomOf(bin string, o options) ([]byte, error) {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	sum, err := fileSHA256(bin)
	if err != nil {
		return nil, err
	}
	return sbom(info, sum, o)
}

// sbom builds the SBOM of a binary with build information info and SHA-256 sum.
func sbom(info *debug.BuildInfo, sum string, o options) ([]byte, error) {
	root := component{
		Type: "application", Name: info.Main.Path, Version: o.version,
		PURL:   purl(info.Main.Path, o.version),
		Hashes: []hash{{Alg: "SHA-256", Content: sum}},
		Properties: []property{
			{Name: "deployhook:commit", Value: o.commit},
			{Name: "deployhook:go", Value: info.GoVersion},
		},
	}
	root.BOMRef = root.PURL
	for _, s := range info.Settings {
		root.Properties = append(root.Properties, property{Name: "deployhook:build:" + s.Key, Value: s.Value})
	}
	std := component{Type: "library", Name: "std", Version: info.GoVersion, PURL: purl("std", info.GoVersion)}
	std.BOMRef = std.PURL
	comps := []component{std}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		if d.Version == "" || strings.HasPrefix(d.Path, ".") || strings.HasPrefix(d.Path, "/") {
			return nil, fmt.Errorf("module %s has no version (a local replacement?): a release links only published modules", d.Path)
		}
		c := component{Type: "library", Name: d.Path, Version: d.Version, PURL: purl(d.Path, d.Version)}
		c.BOMRef = c.PURL
		comps = append(comps, c)
	}
	deps := []dependency{{Ref: root.BOMRef}}
	for _, c := range comps {
		deps[0].DependsOn = append(deps[0].DependsOn, c.BOMRef)
		deps = append(deps, dependency{Ref: c.BOMRef, DependsOn: []string{}})
	}
	b := bom{
		BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		SerialNumber: serial(sum),
		Metadata: metadata{
			Timestamp: o.date.UTC().Format(time.RFC3339),
			Tools: tools{Components: []component{{
				Type: "application", Name: "deployhook-release", Version: o.version,
			}}},
			Component: root,
		},
		Components:   comps,
		Dependencies: deps,
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// serial returns the SBOM's serial number, a UUID derived from the binary's
// SHA-256 (version 8, RFC 9562's custom layout) rather than a random one: the
// same binary gets the same SBOM.
func serial(sum string) string {
	h := sha256.Sum256([]byte("deployhook-sbom:" + sum))
	u := h[:16]
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
