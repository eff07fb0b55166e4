package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/labstack/echo/v4"
)

// maxLogValue caps a header value in the log: headers come from anyone, before
// authentication, and are as long as the client likes (up to MaxHeaderBytes).
const maxLogValue = 100

// logContext is the echo.Context that logRequests hands down: it gathers what
// the handler notes for the request's log line. They are pooled (Server.logs).
type logContext struct {
	echo.Context
	attrs []slog.Attr
	buf   [8]slog.Attr
}

// note adds attrs to the request's one log line, written by logRequests.
func note(c echo.Context, attrs ...slog.Attr) {
	if lc, ok := c.(*logContext); ok {
		lc.attrs = append(lc.attrs, attrs...)
	}
}

// logRequests logs one line per request, and only one: method, path, status,
// duration, the GitHub delivery and event headers and the user agent (each cut to
// maxLogValue bytes), what the handler noted (the job, the ignore reason), and for
// a failure the internal error. Never the signature header or the body. It
// settles the handler's error itself so that the logged status is the one sent.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		lc := s.logs.Get().(*logContext)
		lc.Context, lc.attrs = c, lc.buf[:0]
		defer func() {
			clear(lc.buf[:])
			lc.Context, lc.attrs = nil, nil
			s.logs.Put(lc)
		}()
		err := next(lc)
		if err != nil {
			c.Error(err)
		}
		req := c.Request()
		status := c.Response().Status
		level := slog.LevelInfo
		switch {
		case status == http.StatusServiceUnavailable:
			level = slog.LevelWarn // busy, shutting down, journal faults: said to the client
		case status >= 500:
			level = slog.LevelError
		}
		attrs := make([]slog.Attr, 0, 12)
		attrs = append(attrs,
			slog.String("method", req.Method),
			slog.String("path", truncate(req.URL.Path, maxLogValue)),
			slog.Int("status", status),
			slog.Duration("duration", time.Since(start)),
		)
		for _, h := range [...]struct{ key, header string }{
			{"delivery", hdrDelivery}, {"event", hdrEvent}, {"user_agent", "User-Agent"},
		} {
			if v := req.Header.Get(h.header); v != "" {
				attrs = append(attrs, slog.String(h.key, truncate(v, maxLogValue)))
			}
		}
		attrs = append(attrs, lc.attrs...)
		if err != nil {
			attrs = append(attrs, slog.Any("err", err))
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
