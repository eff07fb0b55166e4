// Package gcp is the transport of targets on Compute Engine VMs without an
// external address: it composes the Compute Engine API (package gce), the IAP
// TCP tunnel (package iap), optionally OS Login (package oslogin), and SSH
// (package remote) into one executor.Transport.
//
// # Why a package of its own
//
// The composition is not part of any of the packages it composes: iap speaks
// the tunnel protocol and knows nothing of instances or SSH, gce and oslogin
// are thin API clients, and remote runs commands over any byte stream. Putting
// it in executor/iap would make the tunnel package import SSH and two Google
// APIs; leaving it in package main left an adapter of 500 lines that only
// end-to-end tests could reach. Here it is one adapter with its own tests on
// the fakes of every API it calls (gcetest, oslogintest, iaptest) and a real
// sshd.
//
// # One connection
//
// Transport.Open, for every deploy:
//
//  1. looks the instance up once (instances.get): a VM that is not RUNNING
//     fails at once with its status, before any tunnel is opened;
//  2. selects the host keys to pin for its numeric ID with the strategy New
//     chose from Options: keys configured whatever the ID (ssh.host_keys),
//     keys pinned for compute.<id> in a known_hosts file, or those pins else
//     the keys the VM's guest agent published in its guest attributes. There
//     is never trust on first use: no key, no connection;
//  3. with Options.OSLogin, imports a new ed25519 key with a short expiry into
//     the deployer's OS Login profile and logs in as the user OS Login names;
//  4. dials SSH through a fresh IAP tunnel to the VM's interface and port.
//
// The OS Login key is deleted when the session closes (or at once when the
// connection fails), in the background so that a deploy's result never waits
// for it; Transport.Close waits for those deletions.
//
// # Google clients
//
// Google holds the clients all targets share, made from Application Default
// Credentials on first use, so that deployhook starts, and runs local and ssh
// targets, without Google credentials; no lock is held while credentials are
// found or the metadata server is asked. A Transport reaches them through the
// small interfaces Clients, Compute and OSLogin.
package gcp
