package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/deployhook/deployhook/executor"
)

// heartbeatEvery is how often an idle event stream gets a comment line, so
// that proxies and load balancers (Cloud Run, Google's load balancers) do
// not close it as idle, and a dead browser is noticed.
const heartbeatEvery = 15 * time.Second

// reconnectMillis is the wait the stream asks a browser to make before it
// reconnects (the SSE retry field).
const reconnectMillis = 2000

// accessRecheckEvery is how often an open event stream asks Auth.Access
// again whether its person may still read the job: a stream lasts as long
// as the deploy (and its watch), far longer than the request that checked
// it. A minute is GitHub sign-in's default AccessTTL: each check after the
// first finds the cached decision expired, and the permission GitHub has
// now. After a sign-out, Access fails at once on the replica that served
// it (the session's token is forgotten there); on another replica, at the
// first check after GitHub revoked the token (best effort: if the revoke
// failed, the stream lasts until the session expires).
const accessRecheckEvery = time.Minute

// handleEvents is GET /jobs/:id/events: the job's live log as Server-Sent
// Events (https://html.spec.whatwg.org/multipage/server-sent-events.html).
// Each executor.LogEvent is one event: "id:" its ID, "event:" its kind,
// "data:" its JSON. It resumes after the Last-Event-ID header (a browser's
// reconnect), or ?after= (the page's first connect); a comment every
// heartbeatEvery keeps it open; it ends after the "end" event.
//
// Live.Follow is asked first, for a final job too: a job's live log goes on
// after the journal calls it final while the post-deploy watch runs (see
// afterEnd), and it ends with the "end" of that phase. A job that this
// process does not follow (Follow answers executor.ErrNotFound, or there is
// no Live) is tailed from the journal instead (see tailer) while it is not
// final or its watch runs: another replica runs it. Tailed events have IDs
// of their own ("j3.1024"); a stream given an ID of the other kind starts
// over with a "reset" event, on which the page clears the steps' output. A
// job that has ended gets one "end" event with the journal's state and
// description. "line" events, which carry step output, are left out for a
// person who may not see output (showOutput). Shutdown ends every stream.
//
// The person's access is checked again while the stream is open (see
// guardStream): every accessRecheckEvery, and at Person.Expires. When it no
// longer holds (signed out, access taken away, the session or IAP assertion
// expired, or Access cannot decide) the stream closes without an "end"
// event; the page reconnects, and its new request is the one that is
// answered 401 or 404 (or, with a fresh IAP assertion, streams on).
func (s *Server) handleEvents(c echo.Context) error {
	j, _, err := s.readJob(c, c.Param("id"), AccessRead)
	if err != nil {
		return err
	}
	from, err := lastEventID(c.Request())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	defer context.AfterFunc(s.streams, cancel)()
	defer s.guardStream(ctx, cancel, person(c), s.repoOf(j.Target, j.Trigger.Repo), j.ID)()

	var events <-chan executor.LogEvent
	if s.deps.Live != nil {
		events, err = s.deps.Live.Follow(ctx, j.ID, from.after)
		switch {
		case errors.Is(err, executor.ErrNotFound):
			events = nil
		case err != nil:
			return public(http.StatusServiceUnavailable, "cannot follow the job now: reload the page", err)
		}
	}

	w := &eventWriter{c: c, rc: http.NewResponseController(c.Response())}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx and others: do not buffer the stream
	h.Set("X-Content-Type-Options", "nosniff")
	c.Response().WriteHeader(http.StatusOK)
	w.raw(fmt.Appendf(nil, "retry: %d\n\n", reconnectMillis))

	show := s.showOutput(person(c))
	if events == nil {
		if j.State.Final() && !afterEnd(j) {
			return w.event(executor.LogEvent{Kind: executor.EventEnd, State: j.State, Description: j.Description, Time: s.deps.Now()})
		}
		s.tail(ctx, w, j, from, show)
		return nil
	}
	if from.tailed {
		// A tailed stream's ID: the live log starts over.
		if err := w.event(executor.LogEvent{Kind: eventReset, Time: s.deps.Now()}); err != nil {
			return nil
		}
	}
	heartbeat := time.NewTicker(heartbeatEvery)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-heartbeat.C:
			if err := w.raw([]byte(": heartbeat\n\n")); err != nil {
				return nil // the browser is gone
			}
		case ev, ok := <-events:
			if !ok {
				// Follow dropped a slow reader, or ctx ended: the browser
				// reconnects with its last id.
				return nil
			}
			if ev.Kind == executor.EventLine && !show {
				continue
			}
			if err := w.event(ev); err != nil {
				return nil
			}
			if ev.Kind == executor.EventEnd {
				return nil
			}
		}
	}
}

// guardStream watches, until ctx ends, that p may still read repo, and calls
// end when not: at p.Expires (measured from Deps.Now; zero: never), and when
// Auth.Access, asked every accessRecheckEvery, answers less than AccessRead
// or fails (fail closed: an undecided access ends the stream; the page's
// reconnect asks again). It returns a function that calls end and waits for
// the watch to stop; the caller defers it.
func (s *Server) guardStream(ctx context.Context, end context.CancelFunc, p Person, repo, job string) func() {
	var wg sync.WaitGroup
	wg.Go(func() {
		var expiry <-chan time.Time // nil: never
		if !p.Expires.IsZero() {
			t := time.NewTimer(p.Expires.Sub(s.deps.Now()))
			defer t.Stop()
			expiry = t.C
		}
		recheck := time.NewTicker(accessRecheckEvery)
		defer recheck.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-expiry:
				s.lg.Info("event stream ended: the session expired", "job", job, "login", p.Login)
				end()
				return
			case <-recheck.C:
				a, err := s.deps.Auth.Access(ctx, p, repo)
				if ctx.Err() != nil {
					return
				}
				if err != nil || a < AccessRead {
					s.lg.Info("event stream ended: access no longer holds", "job", job, "login", p.Login, "access", a, "err", err)
					end()
					return
				}
			}
		}
	})
	return func() {
		end()
		wg.Wait()
	}
}

// resumeFrom is where a stream resumes: after a live stream's event ID, or
// after a tailed stream's position.
type resumeFrom struct {
	after  int64   // a live stream's last event ID; 0: from the start
	tail   tailPos // a tailed stream's position; zero: from the start
	tailed bool    // the ID is a tailed stream's
}

// lastEventID is where a stream resumes: the Last-Event-ID header, else
// ?after=, else from the start.
func lastEventID(r *http.Request) (resumeFrom, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	if v == "" {
		return resumeFrom{}, nil
	}
	if p, ok := parseTailPos(v); ok {
		return resumeFrom{tail: p, tailed: true}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return resumeFrom{}, publicf(http.StatusBadRequest, "Last-Event-ID and after must be an event id of this stream")
	}
	return resumeFrom{after: n}, nil
}

// eventWriter writes one event stream, flushing each write, and pushing the
// connection's write deadline forward each time: the server's WriteTimeout
// bounds a write, not a stream that lasts as long as the deploy.
type eventWriter struct {
	c   echo.Context
	rc  *http.ResponseController
	buf bytes.Buffer
}

// event writes ev as one Server-Sent Event, with ev.ID as its ID when it
// has one.
func (w *eventWriter) event(ev executor.LogEvent) error {
	var id string
	if ev.ID > 0 {
		id = strconv.FormatInt(ev.ID, 10)
	}
	return w.send(id, ev)
}

// send writes ev as one Server-Sent Event with the ID id ("": none). The
// JSON is one line: data holds no newline.
func (w *eventWriter) send(id string, ev executor.LogEvent) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	w.buf.Reset()
	if id != "" {
		w.buf.WriteString("id: ")
		w.buf.WriteString(id)
		w.buf.WriteByte('\n')
	}
	w.buf.WriteString("event: ")
	w.buf.WriteString(ev.Kind)
	w.buf.WriteString("\ndata: ")
	w.buf.Write(data)
	w.buf.WriteString("\n\n")
	return w.raw(w.buf.Bytes())
}

// raw writes b and flushes it.
func (w *eventWriter) raw(b []byte) error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(writeTimeout)) // ErrNotSupported in tests: no deadline to move
	if _, err := w.c.Response().Write(b); err != nil {
		return err
	}
	return w.rc.Flush()
}

// afterEnd reports whether j, final in the journal, has a phase after its
// end that has not ended as far as the journal knows: the post-deploy watch
// (executor.Watch), which the executor records as a last step that starts
// once the job is final and keeps ExitCode -1 until the watch ends. A step
// that was killed also keeps -1, but it started before the job's end; a
// watch whose deployhook stopped keeps -1 too, with an Error
// (executor.ErrWatchStopped). The job's page follows the live log while
// afterEnd holds; whether the watch runs in this process is Live.Follow's
// to say.
func afterEnd(j executor.Job) bool {
	if !j.State.Final() || len(j.Steps) == 0 || j.Finished.IsZero() {
		return false
	}
	last := j.Steps[len(j.Steps)-1]
	return last.ExitCode == -1 && last.Skipped == "" && last.Error == "" &&
		!last.Started.IsZero() && !last.Started.Before(j.Finished)
}
