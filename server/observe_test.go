package server

import (
	"errors"
	"net/http"
	"testing"
)

// TestFailedDelivery: every error answer of the webhook handler is counted
// under the one Delivery its status and public message mean.
func TestFailedDelivery(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Delivery
	}{
		{"no signature", public(http.StatusUnauthorized, "missing X-Hub-Signature-256", nil), DeliveryUnauthorized},
		{"body timeout", public(http.StatusRequestTimeout, "body not received", nil), DeliveryTimeout},
		{"too large", public(http.StatusRequestEntityTooLarge, "payload larger", nil), DeliveryTooLarge},
		{"busy", public(http.StatusServiceUnavailable, busyReason, errors.New("readers exhausted")), DeliveryBusy},
		{"shutting down", publicf(http.StatusServiceUnavailable, "%s", msgShuttingDown), DeliveryShuttingDown},
		{"journal", public(http.StatusServiceUnavailable, "deployhook cannot record deliveries right now", errors.New("disk full")), DeliveryError},
		{"malformed", public(http.StatusBadRequest, "malformed payload", nil), DeliveryBadRequest},
		{"form content type", publicf(http.StatusUnsupportedMediaType, "content type"), DeliveryBadRequest},
		{"nothing to roll back to", public(http.StatusConflict, "no previous deploy", nil), DeliveryBadRequest},
		{"unknown target", public(http.StatusInternalServerError, "unknown to the queue", nil), DeliveryError},
		{"not public", errors.New("boom"), DeliveryError},
		{"panic (no error, nothing written)", nil, DeliveryError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := failedDelivery(tc.err); got != tc.want {
				t.Errorf("failedDelivery = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestDeliveryOf: a delivery that queued any job deployed; else one that hit
// a known job is a duplicate; else it was ignored.
func TestDeliveryOf(t *testing.T) {
	tests := []struct {
		name    string
		answers []jobBody
		want    Delivery
	}{
		{"one job", []jobBody{{Job: "j1"}}, DeliveryDeployed},
		{"duplicate", []jobBody{{Duplicate: "j1"}}, DeliveryDuplicate},
		{"ignored", []jobBody{{Ignored: "deployed before"}}, DeliveryIgnored},
		{"duplicate and new", []jobBody{{Duplicate: "j1"}, {Job: "j2"}}, DeliveryDeployed},
		{"ignored and duplicate", []jobBody{{Ignored: "x"}, {Duplicate: "j1"}}, DeliveryDuplicate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := deliveryOf(tc.answers); got != tc.want {
				t.Errorf("deliveryOf = %s, want %s", got, tc.want)
			}
		})
	}
}
