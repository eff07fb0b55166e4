package ghstatus

import (
	"net/http"
	"testing"
)

// TestAnswerKind: which of GitHub's answers are failures, and of what kind.
func TestAnswerKind(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		code   int
		h      http.Header
		want   ErrorKind
		failed bool
	}{
		{"created", 201, hdr(), "", false},
		{"accepted (compare not ready)", 202, hdr(), "", false},
		{"not modified", 304, hdr(), "", false},
		{"429", 429, hdr(), ErrorRateLimited, true},
		{"403 primary limit", 403, hdr("X-RateLimit-Remaining", "0"), ErrorRateLimited, true},
		{"403 secondary limit", 403, hdr("Retry-After", "60"), ErrorRateLimited, true},
		{"403 no permission", 403, hdr("X-RateLimit-Remaining", "4000"), ErrorClient, true},
		{"401 bad token", 401, hdr(), ErrorClient, true},
		{"404", 404, hdr(), ErrorClient, true},
		{"422", 422, hdr(), ErrorClient, true},
		{"500", 500, hdr(), ErrorServer, true},
		{"502", 502, hdr(), ErrorServer, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, failed := answerKind(tc.code, tc.h)
			if got != tc.want || failed != tc.failed {
				t.Errorf("answerKind(%d) = %q, %v; want %q, %v", tc.code, got, failed, tc.want, tc.failed)
			}
		})
	}
}

// TestRateLimit: the rate limit is read only when both headers are there and
// are counts.
func TestRateLimit(t *testing.T) {
	tests := []struct {
		name     string
		rem, lim string
		want     [2]int
		ok       bool
	}{
		{"both", "4998", "5000", [2]int{4998, 5000}, true},
		{"zero left", "0", "5000", [2]int{0, 5000}, true},
		{"no limit", "4998", "", [2]int{}, false},
		{"none", "", "", [2]int{}, false},
		{"not a number", "lots", "5000", [2]int{}, false},
		{"negative", "-1", "5000", [2]int{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.rem != "" {
				h.Set("X-RateLimit-Remaining", tc.rem)
			}
			if tc.lim != "" {
				h.Set("X-RateLimit-Limit", tc.lim)
			}
			rem, lim, ok := rateLimit(h)
			if [2]int{rem, lim} != tc.want || ok != tc.ok {
				t.Errorf("rateLimit = %d, %d, %v; want %v, %v", rem, lim, ok, tc.want, tc.ok)
			}
		})
	}
}
