package terraform

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// functions are the Terraform functions the configurations call, from the
// libraries Terraform's own are built on. An expression calling another one
// fails to evaluate, which fails the test that evaluates it.
var functions = map[string]function.Function{
	"can":        tryfunc.CanFunc,
	"try":        tryfunc.TryFunc,
	"coalesce":   stdlib.CoalesceFunc,
	"concat":     stdlib.ConcatFunc,
	"contains":   stdlib.ContainsFunc,
	"floor":      stdlib.FloorFunc,
	"join":       stdlib.JoinFunc,
	"length":     stdlib.LengthFunc,
	"merge":      stdlib.MergeFunc,
	"regex":      stdlib.RegexFunc,
	"replace":    stdlib.ReplaceFunc,
	"split":      stdlib.SplitFunc,
	"toset":      stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
	"trimsuffix": stdlib.TrimSuffixFunc,
}

// scope evaluates a configuration's expressions as a plan would for one set
// of input variables: var.* are the given values over the declared defaults,
// local.* are computed from them, and what only exists after an apply (a
// resource's attributes, a data source, a called module's outputs) is unknown.
type scope struct {
	m   *module
	ctx *hcl.EvalContext
}

// instance is one block of a configuration as a plan expands it: a static
// block, or one element of a dynamic block with its iterator bound in ctx.
type instance struct {
	body *hclsyntax.Body
	ctx  *hcl.EvalContext
}

// plan returns the scope of m for the variables vals. It fails the test when a
// required variable is missing, vals names a variable m does not declare, or
// a local cannot be evaluated.
func (m *module) plan(t *testing.T, vals map[string]cty.Value) *scope {
	t.Helper()
	vars := map[string]cty.Value{}
	for n := range vals {
		if m.variables[n] == nil {
			t.Fatalf("%s: no variable %s", m.dir, n)
		}
	}
	for n, b := range m.variables {
		switch v, ok := vals[n]; {
		case ok:
			vars[n] = v
		case b.Body.Attributes["default"] != nil:
			d, diags := b.Body.Attributes["default"].Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatalf("%s: variable %s: default: %v", m.dir, n, diags)
			}
			vars[n] = d
		default:
			t.Fatalf("%s: the required variable %s is not given", m.dir, n)
		}
	}
	roots := map[string]cty.Value{
		"var":    cty.ObjectVal(vars),
		"data":   cty.DynamicVal,
		"module": cty.DynamicVal,
		"path":   cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(m.dir)}),
	}
	for r := range m.resources {
		roots[strings.SplitN(r, ".", 2)[0]] = cty.DynamicVal
	}
	ctx := &hcl.EvalContext{Variables: roots, Functions: functions}

	// Locals may refer to each other in any order: evaluate in rounds until
	// none is left or a round makes no progress.
	locals := map[string]cty.Value{}
	pending := maps.Clone(m.locals)
	for len(pending) > 0 {
		roots["local"] = cty.ObjectVal(locals)
		before := len(pending)
		var errs []string
		for _, n := range slices.Sorted(maps.Keys(pending)) {
			v, diags := pending[n].Expr.Value(ctx)
			if diags.HasErrors() {
				errs = append(errs, fmt.Sprintf("local %s: %v", n, diags))
				continue
			}
			locals[n] = v
			delete(pending, n)
		}
		if len(pending) == before {
			t.Fatalf("%s: %s", m.dir, strings.Join(errs, "; "))
		}
	}
	roots["local"] = cty.ObjectVal(locals)
	return &scope{m: m, ctx: ctx}
}

// local returns the value of local n.
func (s *scope) local(t *testing.T, n string) cty.Value {
	t.Helper()
	l := s.ctx.Variables["local"]
	if !l.Type().HasAttribute(n) {
		t.Fatalf("%s: no local %s", s.m.dir, n)
	}
	return l.GetAttr(n)
}

// resource returns the resource TYPE.NAME as an instance, or fails the test.
func (s *scope) resource(t *testing.T, name string) instance {
	t.Helper()
	return instance{s.m.resource(t, name), s.ctx}
}

// eval evaluates in's attribute name; it fails the test when the attribute is
// not set or does not evaluate.
func (in instance) eval(t *testing.T, name string) cty.Value {
	t.Helper()
	a := in.body.Attributes[name]
	if a == nil {
		t.Fatalf("%s: not set", name)
	}
	v, diags := a.Expr.Value(in.ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", name, diags)
	}
	return v
}

// str evaluates in's attribute name as a known string.
func (in instance) str(t *testing.T, name string) string {
	t.Helper()
	v := in.eval(t, name)
	if !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		t.Fatalf("%s = %#v, want a known string", name, v)
	}
	return v.AsString()
}

// blocks returns in's nested blocks of type typ as a plan expands them: the
// static ones, then one per element of each dynamic block's for_each.
func (in instance) blocks(t *testing.T, typ string) []instance {
	t.Helper()
	var out []instance
	for _, b := range in.body.Blocks {
		switch {
		case b.Type == typ:
			out = append(out, instance{b.Body, in.ctx})
		case b.Type == "dynamic" && len(b.Labels) == 1 && b.Labels[0] == typ:
			it := typ
			if a, ok := b.Body.Attributes["iterator"]; ok {
				it = hcl.ExprAsKeyword(a.Expr)
			}
			each := instance{b.Body, in.ctx}.eval(t, "for_each")
			content := block(t, b.Body, "content")
			for k, v := range each.Elements() {
				ctx := in.ctx.NewChild()
				ctx.Variables = map[string]cty.Value{it: cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})}
				out = append(out, instance{content, ctx})
			}
		}
	}
	return out
}

// one returns in's only nested block of type typ, or fails the test.
func (in instance) one(t *testing.T, typ string) instance {
	t.Helper()
	bs := in.blocks(t, typ)
	if len(bs) != 1 {
		t.Fatalf("%d blocks %s, want 1", len(bs), typ)
	}
	return bs[0]
}

// count returns how many instances of resource TYPE.NAME a plan makes: its
// count, the size of its for_each, or 1.
func (s *scope) count(t *testing.T, name string) int {
	t.Helper()
	r := s.resource(t, name)
	switch {
	case r.body.Attributes["count"] != nil:
		n, _ := r.eval(t, "count").AsBigFloat().Int64()
		return int(n)
	case r.body.Attributes["for_each"] != nil:
		return r.eval(t, "for_each").LengthInt()
	}
	return 1
}

// keys returns the keys of resource TYPE.NAME's for_each.
func (s *scope) keys(t *testing.T, name string) []string {
	t.Helper()
	var ks []string
	for k := range s.resource(t, name).eval(t, "for_each").Elements() {
		ks = append(ks, k.AsString())
	}
	return ks
}

// failedPreconditions returns the error messages of the preconditions of
// the named resources that do not hold, for the resources a plan makes.
func (s *scope) failedPreconditions(t *testing.T, names ...string) []string {
	t.Helper()
	var failed []string
	for _, name := range names {
		if s.count(t, name) == 0 {
			continue
		}
		for _, lc := range s.resource(t, name).blocks(t, "lifecycle") {
			for _, pc := range lc.blocks(t, "precondition") {
				if v := pc.eval(t, "condition"); !v.IsKnown() || v.IsNull() || v.False() {
					failed = append(failed, pc.str(t, "error_message"))
				}
			}
		}
	}
	return failed
}

// valid reports whether every validation of m's variable n holds for v.
func (m *module) valid(t *testing.T, n string, v cty.Value) bool {
	t.Helper()
	b := m.variables[n]
	if b == nil {
		t.Fatalf("%s: no variable %s", m.dir, n)
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{n: v})},
		Functions: functions,
	}
	ok := true
	for _, vb := range b.Body.Blocks {
		if vb.Type != "validation" {
			continue
		}
		c := instance{vb.Body, ctx}.eval(t, "condition")
		ok = ok && c.IsKnown() && !c.IsNull() && c.True()
	}
	return ok
}

func TestScope_Blocks(t *testing.T) {
	src := `variable "on" {
  type    = bool
  default = true
}

locals {
  b = local.a + 1
  a = 1
}

resource "x" "y" {
  count = var.on ? local.b : 0

  inner {
    n = "static"
  }
  dynamic "inner" {
    for_each = var.on ? ["one", "two"] : []
    content {
      n = inner.value
    }
  }
}
`
	m, err := parseModule("test", map[string][]byte{"main.tf": []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		on    bool
		count int
		inner []string
	}{
		{true, 2, []string{"static", "one", "two"}},
		{false, 0, []string{"static"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.on), func(t *testing.T) {
			s := m.plan(t, map[string]cty.Value{"on": cty.BoolVal(tt.on)})
			if got := s.count(t, "x.y"); got != tt.count {
				t.Errorf("count = %d, want %d", got, tt.count)
			}
			var got []string
			for _, in := range s.resource(t, "x.y").blocks(t, "inner") {
				got = append(got, in.str(t, "n"))
			}
			if !slices.Equal(got, tt.inner) {
				t.Errorf("inner blocks %q, want %q", got, tt.inner)
			}
		})
	}
}
