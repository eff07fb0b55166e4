package server

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
)

// Delivery is how deployhook answered one webhook delivery, as an Observer
// is told it.
type Delivery string

// The answers to a delivery. Each delivery is exactly one of them.
const (
	DeliveryDeployed     Delivery = "deployed"      // 202: at least one job was queued
	DeliveryDuplicate    Delivery = "duplicate"     // 200: the delivery or its SHA was known; nothing new
	DeliveryIgnored      Delivery = "ignored"       // 200: nothing deploys it, or the queue ignored it
	DeliveryPing         Delivery = "ping"          // 200: GitHub's ping
	DeliveryUnauthorized Delivery = "unauthorized"  // 401: no signature, or one that does not match
	DeliveryBadRequest   Delivery = "bad_request"   // another 4xx: malformed, missing headers, nothing to roll back to
	DeliveryTimeout      Delivery = "timeout"       // 408: the body did not arrive in time
	DeliveryTooLarge     Delivery = "too_large"     // 413: larger than max_body
	DeliveryBusy         Delivery = "busy"          // 503: the intake's bounds are exhausted
	DeliveryShuttingDown Delivery = "shutting_down" // 503: deployhook is shutting down
	DeliveryError        Delivery = "error"         // any other failure: the journal, GitHub, a panic
)

// Deliveries returns every Delivery, for metrics that start each at zero.
func Deliveries() []Delivery {
	return []Delivery{
		DeliveryDeployed, DeliveryDuplicate, DeliveryIgnored, DeliveryPing, DeliveryUnauthorized,
		DeliveryBadRequest, DeliveryTimeout, DeliveryTooLarge, DeliveryBusy, DeliveryShuttingDown, DeliveryError,
	}
}

// Observer is told how the server answered webhook deliveries, for metrics
// (internal/metrics implements it). Delivery is called once per request to
// POST /webhook, on the request's goroutine: it must be safe for concurrent
// use and return at once.
type Observer interface {
	Delivery(d Delivery)
}

// delivered tells the Observer, if any, how a delivery was answered.
func (s *Server) delivered(d Delivery) {
	if s.opts.Observer != nil {
		s.opts.Observer.Delivery(d)
	}
}

// observeFailure tells the Observer how handleWebhook answered when it did
// not answer itself (an error, or a panic that left nothing written); the
// answers it writes are told where it decides them (delivered).
func (s *Server) observeFailure(c echo.Context, err *error) {
	if c.Response().Committed {
		return
	}
	s.delivered(failedDelivery(*err))
}

// failedDelivery decides the Delivery of a webhook request that ended with
// err and no answer written: by the public error's status and message.
func failedDelivery(err error) Delivery {
	var pe *publicError
	if !errors.As(err, &pe) {
		return DeliveryError
	}
	switch {
	case pe.code == http.StatusUnauthorized:
		return DeliveryUnauthorized
	case pe.code == http.StatusRequestTimeout:
		return DeliveryTimeout
	case pe.code == http.StatusRequestEntityTooLarge:
		return DeliveryTooLarge
	case pe.code == http.StatusServiceUnavailable && pe.msg == busyReason:
		return DeliveryBusy
	case pe.code == http.StatusServiceUnavailable && pe.msg == msgShuttingDown:
		return DeliveryShuttingDown
	case pe.code >= 400 && pe.code < 500:
		return DeliveryBadRequest
	}
	return DeliveryError
}

// deliveryOf decides the Delivery of answers, one per route: deployed when a
// job was queued, else duplicate when one was known, else ignored.
func deliveryOf(answers []jobBody) Delivery {
	d := DeliveryIgnored
	for _, a := range answers {
		switch {
		case a.Job != "":
			return DeliveryDeployed
		case a.Duplicate != "":
			d = DeliveryDuplicate
		}
	}
	return d
}

// MetricsPath is where Options.Metrics is served.
const MetricsPath = "/metrics"

// metricsRoute serves Options.Metrics, if set, at MetricsPath.
func (s *Server) metricsRoute(e *echo.Echo) {
	if s.opts.Metrics != nil {
		e.GET(MetricsPath, echo.WrapHandler(s.opts.Metrics))
	}
}
