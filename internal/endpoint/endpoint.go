// Package endpoint turns an endpoint override (DEPLOYHOOK_COMPUTE_URL,
// DEPLOYHOOK_OSLOGIN_URL) into a Google API client option, checked the same way
// for every API.
package endpoint

import (
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/api/option"
)

// Option returns opts with the override for endpoint appended last, so it wins
// over an option.WithEndpoint already in opts. An empty endpoint returns opts
// unchanged. The endpoint must be an absolute http(s) URL without a query or a
// fragment; example names the API's default in the error.
func Option(opts []option.ClientOption, endpoint, example string) ([]option.ClientOption, error) {
	out := append([]option.ClientOption(nil), opts...)
	if endpoint == "" {
		return out, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("endpoint %q is not an absolute http(s) URL without query (like %s)", endpoint, example)
	}
	// The clients append /compute/v1/... or /v1/...: a trailing slash would double it.
	return append(out, option.WithEndpoint(strings.TrimRight(endpoint, "/"))), nil
}
