package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// sshTarget is what the end-to-end tests' configurations of one ssh target
// differ in.
type sshTarget struct {
	addr       string // ssh.address: the sshd's 127.0.0.1:PORT
	user       string // ssh.user
	keyFile    string // ssh.private_key_file
	knownHosts string // ssh.known_hosts_file
	lock       string // the deploy lock's path on the VM
	keys       string // the target's other keys: YAML lines indented 4 spaces
}

// writeSSHConfig writes a new configuration file into dir and returns its
// path: one target, production (acme/app, branch main), reached over ssh
// with a 20s timeout, waiting up to a minute for its lock, with c.keys.
// Steps' output shows on the job pages, where the tests read it; logs are
// text at debug level; no GitHub Deployments; the console asks no sign-in.
// Every call writes a file of its own, so that a test can restart deployhook
// on a changed configuration.
func writeSSHConfig(t *testing.T, dir string, c sshTarget) string {
	t.Helper()
	cfg := fmt.Sprintf(`public_url: https://deploy.example.com
show_output: true # the tests read steps' output and errors from the job pages
log: {format: text, level: debug}
github:
  deployments: false
ui: {auth: none}
targets:
  - name: production
    repo: acme/app
    branch: main
    transport: ssh
    ssh:
      address: %s
      user: %s
      private_key_file: %s
      known_hosts_file: %s
      timeout: 20s
    lock: %s
    lock_wait: 1m
`, c.addr, c.user, c.keyFile, c.knownHosts, c.lock) + c.keys
	p := filepath.Join(dir, fmt.Sprintf("deployhook-%d.yaml", time.Now().UnixNano()))
	writeFile(t, p, cfg, 0o600)
	return p
}
