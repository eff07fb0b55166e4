package ghstatus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/deployhook/deployhook/executor"
)

// secondaryDefault is the wait after a secondary rate limit without
// Retry-After: GitHub asks to wait at least a minute ("Rate limits for the REST
// API", exceeding the secondary rate limit).
const secondaryDefault = time.Minute

// APIError is an error answer from GitHub: the request, the HTTP status and
// GitHub's message. It never holds a credential.
type APIError struct {
	Method  string // the request method
	Path    string // the request path, without host and query
	Status  int    // the HTTP status code
	Message string // GitHub's message and error details

	header http.Header // the answer's headers, for rate limits
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "(no message)"
	}
	return fmt.Sprintf("GitHub answered %s %s with %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), msg)
}

// verdict is what to do after a failed try.
type verdict struct {
	permanent bool          // do not retry
	wait      time.Duration // the wait GitHub asked for, when fixed
	fixed     bool          // wait is GitHub's, not a backoff
	err       error         // the error to show
}

// do runs f, one try at a time, until it succeeds, fails for good, or the tries,
// the allowed wait or ctx run out. op names the request in errors and logs.
func (c *Client) do(ctx context.Context, lg *slog.Logger, op string, f func(ctx context.Context) error) error {
	for try := 1; ; try++ {
		tctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		err := f(tctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", op, context.Cause(ctx))
		}
		v := classify(err, time.Now())
		if v.permanent {
			return fmt.Errorf("%s: %w: %w", op, executor.ErrPermanent, v.err)
		}
		if try >= c.opts.MaxTries {
			return fmt.Errorf("%s: gave up after %d tries: %w", op, try, v.err)
		}
		wait := v.wait
		if !v.fixed {
			wait = c.backoff(try)
		}
		if wait > c.opts.MaxWait {
			return fmt.Errorf("%s: GitHub asks to wait %v, more than %v: %w", op, wait.Round(time.Second), c.opts.MaxWait, v.err)
		}
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			return fmt.Errorf("%s: no time left to wait %v for a retry: %w", op, wait, v.err)
		}
		lg.Warn("GitHub request failed, retrying", "op", op, "try", try, "wait", wait, "err", v.err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last: %w)", op, context.Cause(ctx), v.err)
		case <-t.C:
		}
	}
}

// get GETs u, a path below the API base with its query, with the tries of
// do, and hands each answer's body to read, which must not keep it; an error
// from read counts as a failed try. op names the request in errors and logs.
// An error wraps executor.ErrNotFound when GitHub knows no such commit or ref
// (404, or 422 "No commit found"), and executor.ErrPermanent for that and any
// other refusal a retry will not change.
func (c *Client) get(ctx context.Context, lg *slog.Logger, op, u string, read func(io.Reader) error) error {
	err := c.do(ctx, lg, op, func(ctx context.Context) error {
		req, err := c.gh.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return fmt.Errorf("%w: %w", executor.ErrPermanent, err)
		}
		resp, err := c.gh.BareDo(ctx, req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return read(resp.Body)
	})
	var ae *APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusNotFound ||
		(ae.Status == http.StatusUnprocessableEntity && strings.Contains(ae.Message, "No commit found"))) {
		return fmt.Errorf("%w: %w", executor.ErrNotFound, err)
	}
	return err
}

// backoff returns the wait after failed try number try (from 1): Backoff
// doubled per try, capped at MaxWait, half of it random.
func (c *Client) backoff(try int) time.Duration {
	d := c.opts.Backoff
	for i := 1; i < try && d < c.opts.MaxWait; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxWait)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// classify says whether err, from one try at now, is worth another try and
// after what wait.
func classify(err error, now time.Time) verdict {
	var rle *github.RateLimitError
	var abuse *github.AbuseRateLimitError
	var er *github.ErrorResponse
	var accepted *github.AcceptedError
	switch {
	case errors.As(err, &rle):
		// X-RateLimit-Remaining: 0 on a 403, or go-github refusing to send
		// before the reset it saw.
		v := verdict{err: rateErr(rle.Response, rle.Message), fixed: true, wait: secondaryDefault}
		if !rle.Rate.Reset.IsZero() {
			v.wait = max(rle.Rate.Reset.Sub(now), 0)
		}
		return v
	case errors.As(err, &abuse):
		v := verdict{err: rateErr(abuse.Response, abuse.Message), fixed: true, wait: secondaryDefault}
		if abuse.RetryAfter != nil {
			v.wait = max(*abuse.RetryAfter, 0)
		}
		return v
	case errors.As(err, &er) && er.Response != nil:
		return classifyAPI(apiErr(er), now)
	case errors.As(err, &accepted):
		return verdict{err: errors.New("GitHub answered 202 Accepted: not done yet")}
	}
	var ae *APIError
	if errors.As(err, &ae) {
		// From the token source, inside the transport: keep the whole story.
		v := classifyAPI(ae, now)
		v.err = err
		return v
	}
	return verdict{err: err}
}

// classifyAPI classifies an error answer by its status and headers.
func classifyAPI(ae *APIError, now time.Time) verdict {
	code := ae.Status
	if code == http.StatusTooManyRequests || code == http.StatusForbidden {
		if wait, ok := rateWait(ae.header, now); ok {
			return verdict{err: ae, fixed: true, wait: wait}
		}
		if code == http.StatusTooManyRequests {
			return verdict{err: ae, fixed: true, wait: secondaryDefault}
		}
		return verdict{err: ae, permanent: true}
	}
	if code == http.StatusRequestTimeout || code >= 500 {
		return verdict{err: ae}
	}
	if code >= 400 {
		return verdict{err: ae, permanent: true}
	}
	return verdict{err: ae}
}

// rateWait reads the wait a rate-limit answer asks for: Retry-After seconds, or
// until X-RateLimit-Reset when X-RateLimit-Remaining is 0.
func rateWait(h http.Header, now time.Time) (time.Duration, bool) {
	if s := h.Get("Retry-After"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
			return time.Duration(n) * time.Second, true
		}
		if t, err := http.ParseTime(s); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	if h.Get("X-RateLimit-Remaining") == "0" {
		if n, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Unix(n, 0).Sub(now), 0), true
		}
	}
	return 0, false
}

// rateErr describes a rate-limit answer.
func rateErr(resp *http.Response, msg string) error {
	e := &APIError{Status: http.StatusForbidden, Message: msg}
	if resp != nil {
		e.Status = resp.StatusCode
		if resp.Request != nil && resp.Request.URL != nil {
			e.Method, e.Path = resp.Request.Method, resp.Request.URL.Path
		}
	}
	return e
}

// apiErr turns go-github's error into an APIError with GitHub's message and
// details.
func apiErr(er *github.ErrorResponse) *APIError {
	e := &APIError{Status: er.Response.StatusCode, header: er.Response.Header}
	if req := er.Response.Request; req != nil && req.URL != nil {
		e.Method, e.Path = req.Method, req.URL.Path
	}
	parts := []string{}
	if er.Message != "" {
		parts = append(parts, er.Message)
	}
	for _, d := range er.Errors {
		switch {
		case d.Message != "":
			parts = append(parts, d.Message)
		case d.Code != "":
			parts = append(parts, fmt.Sprintf("%s %s on %s", d.Code, d.Field, d.Resource))
		}
	}
	e.Message = strings.Join(parts, ": ")
	return e
}
