package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Badges is the badges key: true (the default) serves /badge/TARGET.svg
// and .json to anyone, private serves them only to people signed in who may
// read the target's repository (like the pages), false serves none.
type Badges string

// The values of Badges, as written in the configuration. The zero value is
// BadgesPublic.
const (
	BadgesPublic  Badges = "true"
	BadgesOff     Badges = "false"
	BadgesPrivate Badges = "private"
)

// UnmarshalYAML takes true, false or private.
func (b *Badges) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch v := Badges(strings.ToLower(n.Value)); v {
		case BadgesPublic, BadgesOff, BadgesPrivate:
			*b = v
			return nil
		}
	}
	return fmt.Errorf("line %d: %s is not true (public), private (signed-in readers only) or false (off)", n.Line, describe(n))
}

// On reports whether the badges are served at all.
func (b Badges) On() bool { return b != BadgesOff }

// Private reports whether the badges need a signed-in reader.
func (b Badges) Private() bool { return b == BadgesPrivate }
