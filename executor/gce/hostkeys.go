package gce

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"

	"cloud.google.com/go/compute/apiv1/computepb"
	"golang.org/x/crypto/ssh"
	"google.golang.org/api/googleapi"
)

// ErrNoHostKeys says no usable host key is known for an instance: none
// configured for its ID and none published in its guest attributes.
var ErrNoHostKeys = errors.New("no host keys")

// hostKeysNamespace and hostKeysPath are where the guest agent publishes the
// host keys (GoogleCloudPlatform/guest-agent, instance_setup.go).
const (
	hostKeysNamespace = "hostkeys"
	hostKeysPath      = hostKeysNamespace + "/"
)

// hostKeyTypes are the guest attribute keys read as host keys, in the order
// HostKeys returns them (the same set gcloud reads).
var hostKeyTypes = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSA}

// enableHint tells the user how to get host keys when there are none.
const enableHint = "enable guest attributes (metadata enable-guest-attributes=TRUE on the instance or project, " +
	"set before the VM first boots, when the guest agent publishes its host keys) " +
	"or pin the host keys in the target's ssh.known_hosts_file under the alias compute.<instance id>"

// HostKeys reads the SSH host keys the guest agent of instance name published
// in its guest attributes (instances.getGuestAttributes with queryPath
// hostkeys/, which needs compute.instances.getGuestAttributes).
//
// Only attributes in namespace "hostkeys" whose key is ssh-ed25519,
// ecdsa-sha2-nistp256 or ssh-rsa are read. A value is cut at its first
// whitespace, must be base64 that re-encodes to exactly the same text, must
// parse as an SSH public key, and the key's type must equal the attribute's
// key; values that fail are logged and skipped. The keys come back ordered
// ed25519, ECDSA, RSA.
//
// When the instance publishes no host keys (the API's "hostkeys/ not found"
// answer) or none is usable, HostKeys returns an empty list and an error
// wrapping ErrNoHostKeys that says how to publish or pin them. Callers must
// then refuse to connect: there is no trust on first use.
func (c *Client) HostKeys(ctx context.Context, project, zone, name string) ([]ssh.PublicKey, error) {
	if c.ic == nil {
		return nil, fmt.Errorf("get host keys: %w", ErrClosed)
	}
	if err := checkNames(project, zone, name); err != nil {
		return nil, fmt.Errorf("get host keys: %w", err)
	}
	ga, err := c.ic.GetGuestAttributes(ctx, &computepb.GetGuestAttributesInstanceRequest{
		Project:   project,
		Zone:      zone,
		Instance:  name,
		QueryPath: new(hostKeysPath),
	})
	if err != nil {
		if guestAttributeNotFound(err) {
			return []ssh.PublicKey{}, fmt.Errorf("get host keys of instance %q in project %q zone %q: the instance publishes no host keys in its guest attributes: %s: %w",
				name, project, zone, enableHint, ErrNoHostKeys)
		}
		return nil, fmt.Errorf("get host keys: %w", explain(err, "compute.instances.getGuestAttributes", project, zone, name))
	}
	items := ga.GetQueryValue().GetItems()
	keys := parseHostKeys(items, func(key, reason string) {
		c.lg.Warn("ignoring a host key from guest attributes",
			"project", project, "zone", zone, "instance", name, "key", key, "reason", reason)
	})
	if len(keys) == 0 {
		return []ssh.PublicKey{}, fmt.Errorf("get host keys of instance %q in project %q zone %q: none of its %d hostkeys/ guest attributes holds a usable key (see the log): %s: %w",
			name, project, zone, len(items), enableHint, ErrNoHostKeys)
	}
	return keys, nil
}

// guestAttributeNotFound reports whether err is the API's answer for a guest
// attribute path that holds nothing, a 404 with the message "The resource
// 'hostkeys/' of type 'Guest Attribute' was not found." (a 404 for the
// instance itself has another message).
func guestAttributeNotFound(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusNotFound &&
		strings.Contains(ge.Message, "of type 'Guest Attribute' was not found")
}

// parseHostKeys returns the valid host keys among items, ordered as
// hostKeyTypes, and calls skip with the attribute key and the reason for each
// hostkeys attribute it rejects.
func parseHostKeys(items []*computepb.GuestAttributesEntry, skip func(key, reason string)) []ssh.PublicKey {
	found := make(map[string]ssh.PublicKey)
	for _, it := range items {
		if it.GetNamespace() != hostKeysNamespace {
			continue
		}
		typ := it.GetKey()
		if !slices.Contains(hostKeyTypes, typ) {
			skip(typ, "unsupported key type")
			continue
		}
		if _, dup := found[typ]; dup {
			skip(typ, "a second attribute for this key type")
			continue
		}
		k, err := parseHostKey(typ, it.GetValue())
		if err != nil {
			skip(typ, err.Error())
			continue
		}
		found[typ] = k
	}
	keys := []ssh.PublicKey{}
	for _, typ := range hostKeyTypes {
		if k, ok := found[typ]; ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// parseHostKey parses one guest attribute value: the base64 blob of a public
// key of type typ, possibly followed by whitespace and anything else (which is
// dropped, so an injected second line cannot become a key).
func parseHostKey(typ, value string) (ssh.PublicKey, error) {
	if i := strings.IndexFunc(value, unicode.IsSpace); i >= 0 {
		value = value[:i]
	}
	if value == "" {
		return nil, errors.New("empty value")
	}
	blob, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("value is not base64: %w", err)
	}
	if base64.StdEncoding.EncodeToString(blob) != value {
		return nil, errors.New("value is not canonical base64 (it does not re-encode to the same text)")
	}
	k, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, fmt.Errorf("value is not an SSH public key: %w", err)
	}
	if k.Type() != typ {
		return nil, fmt.Errorf("value is a %s key, not %s", k.Type(), typ)
	}
	return k, nil
}
