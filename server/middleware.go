package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/labstack/echo/v4"
)

// logRequests logs one line per request: method, path, status, duration, and the
// GitHub delivery and event headers. Never the signature header or the body. It
// settles the handler's error itself so that the logged status is the one sent.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		req := c.Request()
		status := c.Response().Status
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{
			slog.String("method", req.Method),
			slog.String("path", req.URL.Path),
			slog.Int("status", status),
			slog.Duration("duration", time.Since(start)),
		}
		if d := req.Header.Get(hdrDelivery); d != "" {
			attrs = append(attrs, slog.String("delivery", d))
		}
		if ev := req.Header.Get(hdrEvent); ev != "" {
			attrs = append(attrs, slog.String("event", ev))
		}
		s.lg.LogAttrs(req.Context(), level, "http request", attrs...)
		return nil
	}
}

// recoverPanics turns a handler's panic into a 500 and logs it with its stack.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			stack := make([]byte, 4<<10)
			stack = stack[:runtime.Stack(stack, false)]
			s.lg.Error("handler panicked", "path", c.Request().URL.Path, "panic", fmt.Sprint(r), "stack", string(stack))
			err = public(http.StatusInternalServerError, "internal error", fmt.Errorf("panic: %v", r))
		}()
		return next(c)
	}
}
