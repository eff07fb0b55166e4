// Package gce reads what deployhook needs to know about a Compute Engine VM
// from the Compute Engine API (compute.googleapis.com, REST, v1): the instance's
// numeric ID, status, first network interface and internal IP, and the SSH host
// keys its guest agent published as guest attributes.
//
// # What it reads
//
//   - instances.get: GET /compute/v1/projects/P/zones/Z/instances/N, for
//     Instance (ID, name, status, networkInterfaces[0].name and .networkIP).
//     The IAP tunnel needs the interface name (normally nic0); the host-key pins
//     need the numeric ID.
//   - instances.getGuestAttributes with queryPath=hostkeys/: GET
//     /compute/v1/projects/P/zones/Z/instances/N/getGuestAttributes?queryPath=hostkeys%2F,
//     for HostKeys. The guest agent writes one attribute per host key type
//     (namespace "hostkeys", key "ssh-ed25519", "ecdsa-sha2-nistp256" or
//     "ssh-rsa", value the base64 key blob) when it generates the host keys on
//     the VM's first boot, and only if guest attributes were enabled then
//     (metadata enable-guest-attributes=TRUE on the instance or project).
//
// Nothing is ever written.
//
// # Permissions
//
// The deployer's identity needs compute.instances.get and
// compute.instances.getGuestAttributes on the instance; roles/compute.viewer has
// both. Errors for 403 and 404 answers name the missing permission or the names
// to check.
//
// # Host keys
//
// Host keys are pinned by instance ID, never trusted on first use: a VM that is
// deleted and recreated under the same name gets a new ID and new host keys, so
// pins are keyed by the alias "compute.<id>" (the HostKeyAlias gcloud uses in
// its known_hosts file). Pins.Select chooses the keys for one instance: keys
// configured for its alias win, otherwise the keys published in its guest
// attributes, otherwise it refuses with ErrNoHostKeys.
//
// The lookup a deploy needs (the instance, a check that it is RUNNING, its
// host keys) is composed by package gcp; gcetest is the fake of this API that
// every test uses.
package gce
