package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor/gce/gcetest"
	"github.com/deployhook/deployhook/executor/iap/iaptest"
	"github.com/deployhook/deployhook/internal/sshdtest"
)

// The TestFleet_ tests run the whole program against fleets of real sshd
// "VMs" on 127.0.0.1 (each its own home: its checkout file and its lock),
// through transport ssh with ssh.addresses, and through transport iap with
// a managed instance group served by the fake Compute API and a fake relay
// that routes each instance to its own sshd. They guard invariant 5: the
// statuses name VMs, never addresses.

// fleetSteps are custom steps: checkout records the SHA in $HOME/current;
// verify fails when $HOME/fail-SHA exists.
const fleetSteps = `    steps:
      - name: checkout
        run: echo "$DEPLOYHOOK_SHA" > "$HOME/current"
        timeout: 30s
        checkpoint: true
      - name: verify
        run: '[ ! -e "$HOME/fail-$DEPLOYHOOK_SHA" ] || { echo "verify failed"; exit 1; }'
        timeout: 30s
`

// writeFleetConfig writes a configuration whose target "fleet" is target
// (its transport and VMs, indented as a list item's keys) with fleetSteps.
func writeFleetConfig(t *testing.T, dir, target string) string {
	t.Helper()
	cfg := `public_url: https://deploy.example.com
show_output: true
log: {format: text, level: debug}
github:
  deployments: false
ui: {auth: none}
targets:
  - name: fleet
    repo: acme/app
    branch: main
` + target + fleetSteps
	p := filepath.Join(dir, "fleet.yaml")
	writeFile(t, p, cfg, 0o600)
	return p
}

func homeFile(t *testing.T, s *sshdtest.Server, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Home, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// progress returns the "deploying k/n" descriptions among ss, and checks
// that k only grows.
func progress(t *testing.T, ss []status) []string {
	t.Helper()
	var out []string
	last := 0
	for _, s := range ss {
		d := strings.TrimPrefix(s.Description, "deploying ")
		k, _, ok := strings.Cut(d, "/")
		n, err := strconv.Atoi(k)
		if !ok || err != nil || s.State != "pending" {
			continue
		}
		if n <= last {
			t.Errorf("progress went from %d to %d: %+v", last, n, ss)
		}
		last = n
		out = append(out, s.Description)
	}
	return out
}

// A fleet through ssh.addresses: canary, then one VM at a time. A push
// deploys all three, saying the progress; a VM that fails stops the
// rollout, the VMs moved go back, the VM after it runs no step (the steps
// start at the checkpoint: there is nothing to prepare), and the status
// names the VM, not its address.
func TestFleet_SSHAddresses(t *testing.T) {
	dir := t.TempDir()
	f := sshdtest.StartN(t, 3, sshdtest.Options{})
	key := filepath.Join(dir, "id_ed25519")
	writeFile(t, key, string(f.ClientPEM), 0o600)
	var addrs []string
	for i, s := range f.Servers {
		addrs = append(addrs, fmt.Sprintf("{name: dagster-%c, address: %q}", 'a'+i, s.Addr))
	}
	cfg := writeFleetConfig(t, dir, fmt.Sprintf(`    transport: ssh
    ssh:
      user: %s
      private_key_file: %s
      known_hosts_file: %s
      addresses: [%s]
    rollout: {canary: 1, batch: 1}
`, f.Servers[0].User, key, f.KnownHosts, strings.Join(addrs, ", ")))
	gh := newFakeGitHub(t)
	p := startProgram(t, cfg, filepath.Join(dir, "data"), testEnv(gh))

	c1 := fmt.Sprintf("c1c1c1c%033x", 1)
	push(t, p, c1)
	if s := final(t, gh, c1); s.State != "success" || s.Description != "deployed "+c1[:7]+" to 3 VMs" {
		t.Fatalf("status %s %q, want success deployed to 3 VMs", s.State, s.Description)
	}
	for i, s := range f.Servers {
		if got := homeFile(t, s, "current"); got != c1 {
			t.Errorf("dagster-%c runs %q, want %s", 'a'+i, got, c1[:7])
		}
	}
	if got := progress(t, gh.of(c1)); len(got) > 2 {
		t.Errorf("progress %q: more than one per VM but the last", got)
	}

	c2 := fmt.Sprintf("c2c2c2c%033x", 2) // newer than c1 for the fake compare API
	writeFile(t, filepath.Join(f.Servers[1].Home, "fail-"+c2), "", 0o644)
	job := push(t, p, c2)
	want := "1/3 deployed, rolled back; dagster-b: verify failed (exit 1)"
	if s := final(t, gh, c2); s.State != "failure" || s.Description != want {
		t.Fatalf("status %s %q, want failure %q", s.State, s.Description, want)
	}
	for i, s := range f.Servers {
		if got := homeFile(t, s, "current"); got != c1 {
			t.Errorf("dagster-%c runs %q, want the previous %s", 'a'+i, got, c1[:7])
		}
	}
	steps := getJob(t, p, job).stepNames()
	wantSteps := []string{"dagster-a: checkout", "dagster-a: verify", "dagster-b: checkout", "dagster-b: verify",
		"dagster-a: rollback: checkout", "dagster-a: rollback: verify", "dagster-b: rollback: checkout", "dagster-b: rollback: verify"}
	if !sameSet(steps, wantSteps) {
		t.Errorf("steps %q, want %q (in any order for the parallel rollback)", steps, wantSteps)
	}
	for _, s := range gh.of(c2) {
		if strings.Contains(s.Description, "127.0.0.1") {
			t.Errorf("status %q carries an address", s.Description)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// A fleet through IAP: the VMs are the managed instance group's RUNNING
// instances, each pinned by the host key its guest attributes publish, each
// reached through the relay by its instance name.
func TestFleet_IAPGroup(t *testing.T) {
	dir := t.TempDir()
	f := sshdtest.StartN(t, 3, sshdtest.Options{})
	key := filepath.Join(dir, "id_ed25519")
	writeFile(t, key, string(f.ClientPEM), 0o600)
	google := gcetest.NewServer(t, gcetest.Options{Tokens: []string{googleToken}})
	backends := map[string]string{}
	var members []gcetest.GroupMember
	for i, s := range f.Servers {
		name := fmt.Sprintf("dagster-mig-%c", 'a'+i)
		id := uint64(7000 + i)
		google.SetInstance(gcetest.Instance{Project: iapProject, Zone: iapZone, Name: name, ID: id,
			Attributes: gcetest.HostKeyAttributes(s.HostKey.PublicKey())})
		members = append(members, gcetest.GroupMember{Zone: iapZone, Name: name, ID: id})
		backends[name] = s.Addr
	}
	// Being deleted: not a member, never reached.
	members = append(members, gcetest.GroupMember{Zone: iapZone, Name: "dagster-mig-z", ID: 7999, Action: "DELETING"})
	google.SetGroup(iapProject, iapZone, "dagster-mig", members...)
	relay := iaptest.NewRelay(t, iaptest.RelayOptions{Tokens: []string{googleToken}, Project: iapProject, Zone: iapZone, Backends: backends})
	cfg := writeFleetConfig(t, dir, fmt.Sprintf(`    transport: iap
    vm: {project: %s, zone: %s}
    group: {name: dagster-mig, zone: %s}
    ssh:
      user: %s
      private_key_file: %s
    rollout: {batch: 2}
`, iapProject, iapZone, iapZone, f.Servers[0].User, key))
	gh := newFakeGitHub(t)
	env := map[string]string{
		"DEPLOYHOOK_WEBHOOK_SECRET":      testSecret,
		"DEPLOYHOOK_GITHUB_TOKEN":        testToken,
		"DEPLOYHOOK_GITHUB_API_URL":      gh.srv.URL + "/",
		"DEPLOYHOOK_IAP_URL":             relay.URL(),
		"DEPLOYHOOK_COMPUTE_URL":         google.URL(),
		"GOOGLE_APPLICATION_CREDENTIALS": google.ServiceAccountKey(t, dir, osLoginAccount),
	}
	p := startProgram(t, cfg, filepath.Join(dir, "data"), func(k string) string { return env[k] })

	c1 := fmt.Sprintf("d1d1d1d%033x", 1)
	job := push(t, p, c1)
	if s := final(t, gh, c1); s.State != "success" || s.Description != "deployed "+c1[:7]+" to 3 VMs" {
		t.Fatalf("status %s %q, want success deployed to 3 VMs; steps %q", s.State, s.Description, getJob(t, p, job).stepNames())
	}
	for i, s := range f.Servers {
		if got := homeFile(t, s, "current"); got != c1 {
			t.Errorf("dagster-mig-%c runs %q, want %s", 'a'+i, got, c1[:7])
		}
	}
	if got := google.Count(gcetest.OpListManagedInstances); got != 1 {
		t.Errorf("the group was listed %d times for one job, want once", got)
	}
	if got := google.Count(gcetest.OpGetGuestAttributes); got != 3 {
		t.Errorf("guest attributes read %d times, want once per VM", got)
	}
	if st := relay.Stats(); st.Connects != 3 {
		t.Errorf("the relay saw %d tunnels, want one per VM", st.Connects)
	}
}
