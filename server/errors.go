package server

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// publicError is an error with an HTTP status and a message chosen for the public,
// apart from the internal error that goes to the log (tailscale's vizerror idea).
type publicError struct {
	code int
	msg  string // public: sent as {"error": msg}
	err  error  // internal: logged, never sent
}

func (e *publicError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}

func (e *publicError) Unwrap() error { return e.err }

// public returns an error answered with code and msg; err (may be nil) is logged only.
func public(code int, msg string, err error) error {
	return &publicError{code: code, msg: msg, err: err}
}

// publicf is public with a formatted message and no internal error.
func publicf(code int, format string, args ...any) error {
	return &publicError{code: code, msg: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// handleError is the one HTTP error handler: a publicError's message, echo's own
// errors (404, 405) by their status text, anything else a bare 500. A browser
// (Accept: text/html, not JSON) gets the message on a page; anyone else JSON. It does not
// log: logRequests puts the internal error on the request's one log line.
func (s *Server) handleError(err error, c echo.Context) {
	code, msg := http.StatusInternalServerError, "internal error"
	var pe *publicError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &pe):
		code, msg = pe.code, pe.msg
	case errors.As(err, &he):
		code = he.Code
		msg = strings.ToLower(http.StatusText(code))
		if msg == "" {
			msg = "error"
		}
	}
	req := c.Request()
	if c.Response().Committed {
		return
	}
	switch {
	case req.Method == http.MethodHead:
		err = c.NoContent(code)
	case wantsPage(c):
		err = s.errorPage(c, code, msg)
	default:
		err = c.JSON(code, errorBody{Error: msg})
	}
	if err != nil {
		s.lg.Warn("write error answer", "err", err)
	}
}

// wantsPage reports whether the client is a browser showing pages: it
// accepts text/html and did not ask for JSON or an event stream.
func wantsPage(c echo.Context) bool {
	return !wantsMachine(c) && strings.Contains(c.Request().Header.Get(echo.HeaderAccept), echo.MIMETextHTML)
}

// errorPage answers code with msg (public) on an HTML page, or as JSON
// when the page cannot be rendered.
func (s *Server) errorPage(c echo.Context, code int, msg string) error {
	tmpl, err := s.tmpl()
	if err == nil {
		var b bytes.Buffer
		data := struct {
			Page   pageInfo
			Status string
			Msg    string
		}{s.pageInfo(c, http.StatusText(code)), fmt.Sprintf("%d %s", code, http.StatusText(code)), msg}
		if err = tmpl.ExecuteTemplate(&b, "error.html", data); err == nil {
			pageHeaders(c.Response().Header())
			return c.HTMLBlob(code, b.Bytes())
		}
	}
	s.lg.Warn("render error page", "err", err)
	return c.JSON(code, errorBody{Error: msg})
}
