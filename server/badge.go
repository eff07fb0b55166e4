package server

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"html/template"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/deployhook/deployhook/executor"
)

// badge is what a badge says; the same for the SVG and the shields.io endpoint JSON
// (https://shields.io/badges/endpoint-badge: schemaVersion, label, message, color).
type badge struct {
	SchemaVersion int    `json:"schemaVersion"`
	Label         string `json:"label"`
	Message       string `json:"message"`
	Color         string `json:"color"`
	IsError       bool   `json:"isError,omitempty"`
}

// colorHex maps a shields.io colour name to its hex value.
func colorHex(name string) string {
	switch name {
	case "brightgreen":
		return "#4c1"
	case "red":
		return "#e05d44"
	case "orange":
		return "#fe7d37"
	case "yellow":
		return "#dfb317"
	case "blue":
		return "#007ec6"
	}
	return "#9f9f9f" // lightgrey
}

// stateColor is the badge colour of a job state.
func stateColor(st executor.State) string {
	switch st {
	case executor.StateSuccess:
		return "brightgreen"
	case executor.StateFailure:
		return "red"
	case executor.StateError:
		return "orange"
	case executor.StateRunning:
		return "blue"
	case executor.StateQueued:
		return "yellow"
	}
	return "lightgrey"
}

// handleBadge is GET /badge/:target.svg and GET /badge/:target.json: the target's
// last job that ran (or runs, or waits to) as a shields.io-style badge (state,
// short SHA, age; nothing else). With Options.PrivateBadges it runs after
// signedIn, and a target the person may not read is an unknown target.
func (s *Server) handleBadge(c echo.Context) error {
	file := c.Param("file")
	target, isSVG := strings.CutSuffix(file, ".svg")
	if !isSVG {
		var isJSON bool
		if target, isJSON = strings.CutSuffix(file, ".json"); !isJSON {
			return publicf(http.StatusNotFound, "badges are TARGET.svg or TARGET.json")
		}
	}
	b := badge{SchemaVersion: 1, Label: "deploy"}
	code := http.StatusOK
	if !s.known(target) || (s.opts.PrivateBadges && s.reader(c).access(s.repoOf(target, "")) < AccessRead) {
		code = http.StatusNotFound
		b.Message, b.Color, b.IsError = "unknown target", "lightgrey", true
	} else {
		// Superseded and skipped jobs ran nothing: the badge shows the newest
		// job that did, or does.
		jobs, err := s.deps.Journal.Jobs(c.Request().Context(), target, 1, executor.StateQueued,
			executor.StateRunning, executor.StateSuccess, executor.StateFailure, executor.StateError)
		if err != nil {
			return public(http.StatusInternalServerError, "cannot read the journal", err)
		}
		if len(jobs) == 0 {
			b.Message, b.Color = "no deploys", "lightgrey"
		} else {
			j := jobs[0]
			b.Message = string(j.State) + " · " + shortSHA(j.Trigger.SHA)
			if a := age(s.deps.Now(), lastChange(j)); a != "" {
				b.Message += " · " + a
			}
			b.Color = stateColor(j.State)
		}
	}

	var body []byte
	var ctype string
	if isSVG {
		body, ctype = badgeSVG(b), "image/svg+xml; charset=utf-8"
	} else {
		var err error
		if body, err = json.Marshal(b); err != nil {
			return fmt.Errorf("encode badge: %w", err)
		}
		ctype = echo.MIMEApplicationJSON
	}
	h := fnv.New64a()
	h.Write(body)
	etag := `"` + hex.EncodeToString(h.Sum(nil)) + `"`

	// GitHub shows README images through its camo proxy, which caches unless told
	// not to; a deploy badge must be fresh.
	hd := c.Response().Header()
	hd.Set("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0")
	hd.Set("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
	hd.Set("Pragma", "no-cache")
	hd.Set("ETag", etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	if code == http.StatusOK && c.Request().Header.Get("If-None-Match") == etag {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(code, ctype, body)
}

// badgeSVG draws b in the flat style of shields.io.
func badgeSVG(b badge) []byte {
	lw := textWidth(b.Label) + 10
	mw := textWidth(b.Message) + 10
	w := lw + mw
	fill := colorHex(b.Color)
	label := template.HTMLEscapeString(b.Label)
	msg := template.HTMLEscapeString(b.Message)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="20" role="img" aria-label="%s: %s">`, w, label, msg)
	fmt.Fprintf(&sb, `<title>%s: %s</title>`, label, msg)
	sb.WriteString(`<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`)
	fmt.Fprintf(&sb, `<clipPath id="r"><rect width="%d" height="20" rx="3" fill="#fff"/></clipPath>`, w)
	fmt.Fprintf(&sb, `<g clip-path="url(#r)"><rect width="%d" height="20" fill="#555"/><rect x="%d" width="%d" height="20" fill="%s"/><rect width="%d" height="20" fill="url(#s)"/></g>`,
		lw, lw, mw, fill, w)
	sb.WriteString(`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="11">`)
	for _, t := range []struct {
		x    float64
		text string
	}{{float64(lw) / 2, label}, {float64(lw) + float64(mw)/2, msg}} {
		fmt.Fprintf(&sb, `<text aria-hidden="true" x="%.1f" y="15" fill="#010101" fill-opacity=".3">%s</text>`, t.x, t.text)
		fmt.Fprintf(&sb, `<text x="%.1f" y="14">%s</text>`, t.x, t.text)
	}
	sb.WriteString(`</g></svg>`)
	return []byte(sb.String())
}

// textWidth estimates the width in pixels of s in 11px Verdana.
func textWidth(s string) int {
	var w float64
	for _, r := range s {
		switch {
		case strings.ContainsRune("ijl.,:;|!'·", r):
			w += 3.5
		case strings.ContainsRune("frt ", r):
			w += 4.5
		case strings.ContainsRune("mw", r):
			w += 10
		case 'A' <= r && r <= 'Z':
			w += 7.5
		default:
			w += 7
		}
	}
	return int(w + 0.5)
}
