package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkDocument walks the YAML document doc against the yaml tags of Config
// and returns every problem it finds, in the order of the file: keys that
// Config does not have (with the known key they most resemble), keys given
// twice, and values of the wrong kind. Each problem starts with its line and
// names the YAML key, never a Go type: yaml.v3's own errors ("field brnach
// not found in type config.Target") name Go types and stop at the first
// problem that is not a type mismatch.
func checkDocument(doc *yaml.Node) []error {
	var c checker
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	c.value(doc, reflect.TypeFor[Config](), "")
	return c.errs
}

// checker collects the problems of one document.
type checker struct{ errs []error }

func (c *checker) add(n *yaml.Node, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("line %d: %s", n.Line, fmt.Sprintf(format, args...)))
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// value checks n, the value at path, against t.
func (c *checker) value(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value is the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	custom := reflect.PointerTo(t).Implements(unmarshalerType)
	switch {
	case t.Kind() == reflect.Struct && !custom:
		if n.Kind != yaml.MappingNode {
			c.add(n, "%s: want a mapping (key: value), not %s", path, describe(n))
			return
		}
		c.mapping(n, t, path, map[string]int{})
	case t.Kind() == reflect.Slice && elemStruct(t):
		if n.Kind != yaml.SequenceNode {
			c.add(n, "%s: want a list (- item), not %s", path, describe(n))
			return
		}
		for i, item := range n.Content {
			c.value(item, t.Elem(), fmt.Sprintf("%s[%d]%s", path, i, itemName(item)))
		}
	default:
		c.leaf(n, t, path)
	}
}

// elemStruct reports whether t's elements are structs the checker walks.
func elemStruct(t reflect.Type) bool {
	e := t.Elem()
	return e.Kind() == reflect.Struct && !reflect.PointerTo(e).Implements(unmarshalerType)
}

// itemName is " (NAME)" for a list item with a name key, as Validate's
// problems name targets and steps.
func itemName(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Value == "name" && v.Kind == yaml.ScalarNode && v.Value != "" {
			return " (" + v.Value + ")"
		}
	}
	return ""
}

// mapping checks the keys and values of the mapping n against struct t.
// seen holds the keys already given at path (merged mappings share it).
func (c *checker) mapping(n *yaml.Node, t reflect.Type, path string, seen map[string]int) {
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			c.merge(v, t, path, seen)
			continue
		}
		ft, ok := fields[k.Value]
		if !ok {
			c.add(k, "unknown key %q %s%s", k.Value, where(path), suggest(k.Value, fields))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.add(k, "%s is given twice %s (first on line %d)", k.Value, where(path), first)
			continue
		}
		seen[k.Value] = k.Line
		c.value(v, ft, join(path, k.Value))
	}
}

// merge checks the mappings a merge key (<<: *anchor) brings into path.
func (c *checker) merge(v *yaml.Node, t reflect.Type, path string, seen map[string]int) {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.MappingNode:
		// Keys a merge brings may repeat the mapping's own: the mapping wins.
		c.mapping(v, t, path, map[string]int{})
	case yaml.SequenceNode:
		for _, m := range v.Content {
			c.merge(m, t, path, seen)
		}
	default:
		c.add(v, "<< %s: want a mapping to merge, not %s", where(path), describe(v))
	}
}

// leaf checks a value that is decoded as a whole: a scalar, a list of
// strings, a map of strings, or a type with its own UnmarshalYAML.
func (c *checker) leaf(n *yaml.Node, t reflect.Type, path string) {
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// UnmarshalYAML's own message: "line N: ..." with what to write.
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "line ") {
			msg = rest
		}
		c.add(n, "%s: %s", path, msg)
		return
	}
	c.add(n, "%s: %s is not %s", path, describe(n), kindName(t))
}

// kindName says in YAML's words what a value of t is.
func kindName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "a duration (write 90s, 10m, 1h or 90d)"
	case reflect.TypeFor[ByteSize]():
		return "a size (write 25MB, 512KB)"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(kindName(t.Elem()), "a ") + "s"
	case reflect.Map:
		return "a mapping of names to " + strings.TrimPrefix(kindName(t.Elem()), "a ") + "s"
	}
	return "a valid value"
}

// describe names the YAML value n for a message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// where says where path is, for a key problem.
func where(path string) string {
	if path == "" {
		return "at the top level"
	}
	return "in " + path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML keys of struct t to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
			continue
		case opts == "inline":
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		case name == "":
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// suggest is `; did you mean "KEY"?` for the known key closest to key, or ""
// when none is close: at most one edit (two for keys of five or more
// letters), a swap of neighbours counting as one, or the same key in another
// case or with dashes for underscores.
func suggest(key string, fields map[string]reflect.Type) string {
	norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	best, bestDist := "", 3
	for name := range fields {
		d := editDistance(norm, name)
		if d < bestDist || (d == bestDist && name < best) {
			best, bestDist = name, d
		}
	}
	limit := 1
	if len(key) >= 5 {
		limit = 2
	}
	if best == "" || bestDist > limit {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours, in bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
