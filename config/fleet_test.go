package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/deployhook/deployhook/executor"
)

// fleetLoad loads a configuration whose one target is target (YAML lines
// indented as a list item's keys), with a key in the environment.
func fleetLoad(t *testing.T, target string) (*Config, error) {
	t.Helper()
	y := "public_url: https://deploy.example.com\nui: {auth: none}\ngithub: {report: false}\ntargets:\n  - name: dagster\n    repo: acme/app\n    steps: [{name: x, run: \"true\", timeout: 1m}]\n" + target
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(p, env("DEPLOYHOOK_WEBHOOK_SECRET", secret16, "DEPLOYHOOK_SSH_KEY", "k"))
}

func TestValidate_Fleet(t *testing.T) {
	const iap = "    transport: iap\n    ssh: {user: deploy}\n    vm: {project: acme-prod, zone: us-central1-a}\n"
	const ssh = "    transport: ssh\n    ssh:\n      user: deploy\n      known_hosts_file: /etc/deployhook/known_hosts\n"
	tests := []struct {
		name string
		yaml string
		want string // the one problem; "" for valid
	}{
		{"vms by name", iap + "    vms: [dagster-1, dagster-2]\n", ""},
		{"vms with zones", iap + "    vms: [dagster-1, {instance: dagster-2, zone: us-central1-b}]\n", ""},
		{"zonal group", iap + "    group: {name: dagster-mig, zone: us-central1-a}\n    rollout: {canary: 1, batch: 25%}\n", ""},
		{"regional group", iap + "    group: {name: dagster-mig, region: us-central1}\n", ""},
		{"labels", iap + "    labels: {app: dagster, env: prod}\n", ""},
		{"ssh addresses", ssh + "      addresses: [10.0.0.5:22, {name: db-side, address: 10.0.0.6:22}]\n    rollout: {batch: 2, halt_on_failure: false}\n", ""},
		{"ssh address and addresses", ssh + "      address: 10.0.0.4:22\n      addresses: [10.0.0.5:22]\n", "set ssh.address (one VM) or ssh.addresses (a fleet), not both"},
		{"ssh without any address", ssh, "transport ssh needs ssh.address (host:port), or ssh.addresses for a fleet"},
		{"address not host:port", ssh + "      addresses: [10.0.0.5]\n", `ssh.addresses[0] (vm-1): "10.0.0.5" is not host:port`},
		{"two VMs named alike", ssh + "      addresses: [{name: vm-2, address: a:22}, b:22]\n", `VM name "vm-2" is listed twice`},
		{"a name that is not a name", ssh + "      addresses: [{name: VM_A, address: a:22}]\n", `name "VM_A": lower-case letters, digits and -`},
		{"vms with ssh", ssh + "      addresses: [a:22]\n    vms: [dagster-1]\n", "vms, group and labels name Compute Engine VMs: they need transport iap"},
		{"addresses with iap", "    transport: iap\n    vm: {project: acme-prod, zone: us-central1-a}\n    vms: [dagster-1]\n    ssh: {user: deploy, addresses: [a:22]}\n", "ssh.addresses needs transport ssh"},
		{"two ways", iap + "    vms: [dagster-1]\n    labels: {app: dagster}\n", "name the VMs one way: vm.instance, vms, group or labels"},
		{"a VM without zone", "    transport: iap\n    ssh: {user: deploy}\n    vm: {project: acme-prod}\n    vms: [dagster-1]\n", "vms[0] (dagster-1) has no zone: set vm.zone"},
		{"no project", "    transport: iap\n    ssh: {user: deploy}\n    vm: {zone: us-central1-a}\n    vms: [dagster-1]\n", "a fleet of Compute Engine VMs needs vm.project"},
		{"group with zone and region", iap + "    group: {name: mig, zone: us-central1-a, region: us-central1}\n", "set group.zone (a zonal group) or group.region (a regional one), one of them"},
		{"bad label", iap + "    labels: {App: \"dag ster\"}\n", `labels: App: "dag ster"`},
		{"one key for every VM", "    transport: iap\n    vm: {project: acme-prod, zone: us-central1-a}\n    vms: [dagster-1]\n    ssh: {user: deploy, host_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"]}\n", "ssh.host_keys would pin every VM of the fleet to the same keys"},
		{"rollout without a fleet", "    transport: local\n    rollout: {canary: 1}\n", "rollout is for a fleet"},
		{"negative canary", iap + "    vms: [a]\n    rollout: {canary: -1}\n", "rollout.canary -1"},
		{"batch of nothing", iap + "    vms: [a]\n    rollout: {batch: 0}\n", `batch "0": write a number of VMs (2) or a percentage of the fleet (25%)`},
		{"batch over 100%", iap + "    vms: [a]\n    rollout: {batch: 150%}\n", `batch "150%"`},
		{"unknown key in a vms item", iap + "    vms: [{instance: a, zonee: b}]\n", `unknown key "zonee" (use instance, zone)`},
		{"unknown key in rollout", iap + "    vms: [a]\n    rollout: {canry: 1}\n", `unknown key "canry" in targets[0] (dagster).rollout; did you mean "canary"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fleetLoad(t, tt.yaml)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "\n") != 0):
				t.Fatalf("error = %v\nwant exactly one problem containing %q", err, tt.want)
			}
		})
	}
}

// What main hands the executor and the transports: the rollout with its
// defaults (halt on failure), and the ssh VMs named by place or by name.
func TestTarget_ExecutorRollout(t *testing.T) {
	c, err := fleetLoad(t, "    transport: ssh\n    ssh:\n      user: deploy\n      known_hosts_file: /kh\n      addresses: [10.0.0.5:22, {name: side, address: 10.0.0.6:2222}]\n    rollout: {canary: 1, batch: 50%}\n")
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Targets[0]
	if got, want := *tg.ExecutorRollout(), (executor.Rollout{Canary: 1, BatchPercent: 50}); got != want {
		t.Errorf("rollout %+v, want %+v", got, want)
	}
	if got, want := tg.SSHMembers(), []SSHAddress{{"vm-1", "10.0.0.5:22"}, {"side", "10.0.0.6:2222"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("members %+v, want %+v", got, want)
	}
	c, err = fleetLoad(t, "    transport: iap\n    ssh: {user: deploy}\n    vm: {project: p, zone: z}\n    vms: [a]\n    rollout: {batch: 2, halt_on_failure: false}\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *c.Targets[0].ExecutorRollout(), (executor.Rollout{Batch: 2, KeepGoing: true}); got != want {
		t.Errorf("rollout %+v, want %+v", got, want)
	}
	c, err = fleetLoad(t, "    transport: local\n")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Targets[0].ExecutorRollout(); r != nil {
		t.Errorf("one VM has rollout %+v, want nil", r)
	}
}
