package server

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"mime"
	"net/http"
	"path"

	"github.com/labstack/echo/v4"
)

// staticFS holds what the pages load: the script that follows a running
// job's live log, and the style sheet (served as files so that the
// Content-Security-Policy needs no 'unsafe-inline').
//
//go:embed static/*
var staticFS embed.FS

// handleStatic is GET /static/:file: an embedded asset, public, with an
// ETag of its content (it changes only with a new build).
func (s *Server) handleStatic(c echo.Context) error {
	name := c.Param("file")
	b, err := staticFS.ReadFile("static/" + path.Base(name))
	if err != nil || path.Base(name) != name {
		return publicf(http.StatusNotFound, "not found")
	}
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	h := c.Response().Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache") // revalidate: a new version must not wait for an expiry
	h.Set("X-Content-Type-Options", "nosniff")
	if c.Request().Header.Get("If-None-Match") == etag {
		return c.NoContent(http.StatusNotModified)
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	return c.Blob(http.StatusOK, ctype, b)
}
