package ghstatus

import (
	"context"
	"errors"
	"net/http"
	"strconv"
)

// ErrorKind is what went wrong with one request to GitHub, as an Observer is
// told it.
type ErrorKind string

// The kinds of failed requests.
const (
	// ErrorRateLimited: 429, or 403 with X-RateLimit-Remaining 0 or a
	// Retry-After (a primary or secondary rate limit).
	ErrorRateLimited ErrorKind = "rate_limited"
	// ErrorClient: any other 4xx (no permission, not found, validation).
	ErrorClient ErrorKind = "client"
	// ErrorServer: a 5xx.
	ErrorServer ErrorKind = "server"
	// ErrorNetwork: no answer (connection refused or reset, a timeout).
	ErrorNetwork ErrorKind = "network"
)

// ErrorKinds returns every ErrorKind, for metrics that start each at zero.
func ErrorKinds() []ErrorKind {
	return []ErrorKind{ErrorRateLimited, ErrorClient, ErrorServer, ErrorNetwork}
}

// Observer is told about every HTTP request the Client sends to GitHub (each
// try of a retried call on its own), for metrics (internal/metrics implements
// it). Its methods are called on the request's goroutine: they must be safe
// for concurrent use and return at once.
type Observer interface {
	// APIError is called for each request that failed, with its kind.
	APIError(kind ErrorKind)
	// RateLimit is called with the X-RateLimit-Remaining and X-RateLimit-Limit
	// headers of each answer that carries both.
	RateLimit(remaining, limit int)
}

// observeClient returns a copy of hc (a new client when nil) whose transport
// tells o about each request, or hc itself when o is nil. It sits below the
// token and the origin pin, so it sees every answer as GitHub sent it.
func observeClient(hc *http.Client, o Observer) *http.Client {
	if o == nil {
		return hc
	}
	var c http.Client
	if hc != nil {
		c = *hc
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = observingTransport{base: base, o: o}
	return &c
}

// observingTransport tells an Observer about each round trip.
type observingTransport struct {
	base http.RoundTripper
	o    Observer
}

func (t observingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			t.o.APIError(ErrorNetwork)
		}
		return resp, err
	}
	if rem, lim, ok := rateLimit(resp.Header); ok {
		t.o.RateLimit(rem, lim)
	}
	if kind, failed := answerKind(resp.StatusCode, resp.Header); failed {
		t.o.APIError(kind)
	}
	return resp, nil
}

// answerKind decides whether an answer with status code and header h is a
// failure, and of which kind.
func answerKind(code int, h http.Header) (ErrorKind, bool) {
	switch {
	case code == http.StatusTooManyRequests:
		return ErrorRateLimited, true
	case code == http.StatusForbidden && (h.Get("X-RateLimit-Remaining") == "0" || h.Get("Retry-After") != ""):
		return ErrorRateLimited, true
	case code >= 500:
		return ErrorServer, true
	case code >= 400:
		return ErrorClient, true
	}
	return "", false
}

// rateLimit reads X-RateLimit-Remaining and X-RateLimit-Limit; ok is false
// unless both are there and are non-negative integers.
func rateLimit(h http.Header) (remaining, limit int, ok bool) {
	rem, err1 := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	lim, err2 := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	if err1 != nil || err2 != nil || rem < 0 || lim < 0 {
		return 0, 0, false
	}
	return rem, lim, true
}
