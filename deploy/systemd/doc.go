// Package systemd holds deployhook.service, the hardened systemd unit that runs
// deployhook on a VM, and the tests that keep it valid: systemd-analyze verify
// accepts it, systemd-analyze security rates its exposure low, its stop timeout
// outlasts deployhook's shutdown, and each credential it loads reaches
// deployhook under an environment variable deployhook reads.
//
// The unit is a file to install, not code: Unit returns its text for commands
// that print or write it.
package systemd

import _ "embed"

//go:embed deployhook.service
var unit []byte

// Unit returns the text of deployhook.service. The caller may modify the
// returned slice: each call returns a fresh copy.
func Unit() []byte {
	return append([]byte(nil), unit...)
}
