package server

import (
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
// errors (404, 405) by their status text, anything else a bare 500. It does not
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
	if req.Method == http.MethodHead {
		err = c.NoContent(code)
	} else {
		err = c.JSON(code, errorBody{Error: msg})
	}
	if err != nil {
		s.lg.Warn("write error answer", "err", err)
	}
}
