// Package terraform tests the Terraform module in modules/deployhook and the example
// that uses it, offline: no provider is downloaded and nothing is applied. The tests
// parse every .tf file with the HCL parser Terraform itself uses and check what a
// plan would otherwise be the first to find (a reference to nothing, a file not in
// `terraform fmt` style), and that the module grants exactly what deployhook asks for
// (the roles, the permissions, the firewall range and the VM metadata named by the
// program's own constants and messages and by the README). plan_test.go evaluates
// the module as a plan would for chosen variables (counts, dynamic blocks,
// preconditions), so each journal's resources are checked too: the SQLite bucket
// for one instance, or PostgreSQL and Cloud SQL for replicas.
package terraform

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/crypto/ssh"

	"github.com/deployhook/deployhook/config"
	"github.com/deployhook/deployhook/executor/gce/gcetest"
	"github.com/deployhook/deployhook/executor/iap"
)

// The two Terraform configurations in this directory.
const (
	moduleDir  = "modules/deployhook"
	exampleDir = "example"
)

// module is one directory of .tf files: its declarations and its parsed bodies.
type module struct {
	dir       string
	files     map[string][]byte // file name → source
	bodies    map[string]*hclsyntax.Body
	variables map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	outputs   map[string]*hclsyntax.Block
	resources map[string]*hclsyntax.Block // "TYPE.NAME"
	data      map[string]*hclsyntax.Block // "TYPE.NAME"
	modules   map[string]*hclsyntax.Block
}

// parseModule parses the .tf files of dir (given as file name → source).
func parseModule(dir string, files map[string][]byte) (*module, error) {
	m := &module{
		dir: dir, files: files,
		bodies:    map[string]*hclsyntax.Body{},
		variables: map[string]*hclsyntax.Block{},
		locals:    map[string]*hclsyntax.Attribute{},
		outputs:   map[string]*hclsyntax.Block{},
		resources: map[string]*hclsyntax.Block{},
		data:      map[string]*hclsyntax.Block{},
		modules:   map[string]*hclsyntax.Block{},
	}
	var errs []string
	declare := func(kind string, into map[string]*hclsyntax.Block, name string, b *hclsyntax.Block) {
		if _, dup := into[name]; dup {
			errs = append(errs, fmt.Sprintf("%s %s declared twice", kind, name))
		}
		into[name] = b
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f, diags := hclsyntax.ParseConfig(files[name], name, hcl.InitialPos)
		if diags.HasErrors() {
			errs = append(errs, diags.Error())
			continue
		}
		body := f.Body.(*hclsyntax.Body)
		m.bodies[name] = body
		for _, b := range body.Blocks {
			switch {
			case b.Type == "variable" && len(b.Labels) == 1:
				declare("variable", m.variables, b.Labels[0], b)
			case b.Type == "output" && len(b.Labels) == 1:
				declare("output", m.outputs, b.Labels[0], b)
			case b.Type == "resource" && len(b.Labels) == 2:
				declare("resource", m.resources, b.Labels[0]+"."+b.Labels[1], b)
			case b.Type == "data" && len(b.Labels) == 2:
				declare("data source", m.data, b.Labels[0]+"."+b.Labels[1], b)
			case b.Type == "module" && len(b.Labels) == 1:
				declare("module", m.modules, b.Labels[0], b)
			case b.Type == "locals":
				for n, a := range b.Body.Attributes {
					if _, dup := m.locals[n]; dup {
						errs = append(errs, fmt.Sprintf("local %s declared twice", n))
					}
					m.locals[n] = a
				}
			case b.Type == "terraform" || b.Type == "provider":
			default:
				errs = append(errs, fmt.Sprintf("%s: unexpected block %s %q", name, b.Type, b.Labels))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", dir, strings.Join(errs, "; "))
	}
	return m, nil
}

func mapsKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// readModule reads and parses the .tf files of dir.
func readModule(t *testing.T, dir string) *module {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files in %s (%v)", dir, err)
	}
	files := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(n)] = b
	}
	m, err := parseModule(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// builtins are the reference roots Terraform provides itself.
var builtins = map[string]bool{"each": true, "count": true, "path": true, "self": true, "terraform": true}

// unresolved returns every reference in m that names nothing declared, as
// "file:line: reference", and the variables and locals nothing refers to.
// outputsOf returns the outputs of a called module by its source, or nil when
// the module is not local.
func unresolved(m *module, outputsOf func(source string) map[string]*hclsyntax.Block) []string {
	var bad []string
	used := map[string]bool{}
	check := func(tr hcl.Traversal, scope map[string]bool) {
		root := tr.RootName()
		at := fmt.Sprintf("%s:%d: %s", tr.SourceRange().Filename, tr.SourceRange().Start.Line, traversalString(tr))
		attr := func(i int) (string, bool) {
			if len(tr) <= i {
				return "", false
			}
			a, ok := tr[i].(hcl.TraverseAttr)
			return a.Name, ok
		}
		switch {
		case builtins[root] || scope[root]:
		case root == "var" || root == "local":
			n, ok := attr(1)
			_, declared := m.variables[n]
			if root == "local" {
				_, declared = m.locals[n]
			}
			if !ok || !declared {
				bad = append(bad, at)
			}
			used[root+"."+n] = true
		case root == "module":
			n, ok := attr(1)
			b, declared := m.modules[n]
			if !ok || !declared {
				bad = append(bad, at)
				return
			}
			out, ok := attr(2)
			if outs := outputsOf(staticString(b.Body.Attributes["source"])); outs != nil {
				if _, declared := outs[out]; !ok || !declared {
					bad = append(bad, at+" (no such output)")
				}
			}
		case root == "data":
			typ, ok1 := attr(1)
			n, ok2 := attr(2)
			if _, declared := m.data[typ+"."+n]; !ok1 || !ok2 || !declared {
				bad = append(bad, at)
			}
		default:
			n, ok := attr(1)
			if _, declared := m.resources[root+"."+n]; !ok || !declared {
				bad = append(bad, at)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.bodies)) {
		walkBody(m.bodies[name], "", map[string]bool{}, check)
	}
	for _, n := range slices.Sorted(maps.Keys(m.variables)) {
		if !used["var."+n] {
			bad = append(bad, fmt.Sprintf("variable %s is never used", n))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(m.locals)) {
		if !used["local."+n] {
			bad = append(bad, fmt.Sprintf("local %s is never used", n))
		}
	}
	return bad
}

// walkBody calls check for every reference in body, with scope holding the
// names bound by enclosing dynamic blocks. A variable's type is a type
// expression, not references.
func walkBody(body *hclsyntax.Body, blockType string, scope map[string]bool, check func(hcl.Traversal, map[string]bool)) {
	for name, a := range body.Attributes {
		if name == "type" && blockType == "variable" {
			continue
		}
		for _, tr := range hclsyntax.Variables(a.Expr) {
			check(tr, scope)
		}
	}
	for _, b := range body.Blocks {
		inner := scope
		if b.Type == "dynamic" && len(b.Labels) == 1 {
			it := b.Labels[0]
			if a, ok := b.Body.Attributes["iterator"]; ok {
				it = hcl.ExprAsKeyword(a.Expr)
			}
			inner = map[string]bool{it: true}
			for k := range scope {
				inner[k] = true
			}
		}
		walkBody(b.Body, b.Type, inner, check)
	}
}

func traversalString(tr hcl.Traversal) string {
	var sb strings.Builder
	for _, s := range tr {
		switch s := s.(type) {
		case hcl.TraverseRoot:
			sb.WriteString(s.Name)
		case hcl.TraverseAttr:
			sb.WriteString("." + s.Name)
		default:
			sb.WriteString("[…]")
		}
	}
	return sb.String()
}

// staticString returns a's value when it is a constant string, else "".
func staticString(a *hclsyntax.Attribute) string {
	if a == nil {
		return ""
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || !v.Type().Equals(cty.String) || !v.IsKnown() || v.IsNull() {
		return ""
	}
	return v.AsString()
}

// unformatted returns the files of m whose text differs from hclwrite.Format's,
// the formatter `terraform fmt` is built on.
func unformatted(m *module) []string {
	var bad []string
	for _, name := range slices.Sorted(maps.Keys(m.files)) {
		if src := m.files[name]; !bytes.Equal(hclwrite.Format(src), src) {
			bad = append(bad, name)
		}
	}
	return bad
}

// TestCheckers shows that the checks below can fail: each case is a module with one
// mistake the check must name, and one without.
func TestCheckers(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{
			name: "resolved",
			src:  "variable \"a\" {\n  type = string\n}\n\nlocals {\n  b = var.a\n}\n\nresource \"x\" \"y\" {\n  v = local.b\n  dynamic \"e\" {\n    for_each = [1]\n    content {\n      w = e.value\n    }\n  }\n}\n\noutput \"o\" {\n  value = [for k in x.y.list : k]\n}\n",
			want: nil,
		},
		{
			name: "undeclared variable",
			src:  "resource \"x\" \"y\" {\n  v = var.missing\n}\n",
			want: []string{"main.tf:2: var.missing"},
		},
		{
			name: "undeclared resource",
			src:  "output \"o\" {\n  value = google_thing.nope.id\n}\n",
			want: []string{"main.tf:2: google_thing.nope.id"},
		},
		{
			name: "undeclared data source and local",
			src:  "output \"o\" {\n  value = [data.google_project.p.number, local.l]\n}\n",
			want: []string{"main.tf:2: data.google_project.p.number", "main.tf:2: local.l"},
		},
		{
			name: "missing module output",
			src:  "module \"m\" {\n  source = \"./m\"\n}\n\noutput \"o\" {\n  value = module.m.nope\n}\n",
			want: []string{"main.tf:6: module.m.nope (no such output)"},
		},
		{
			name: "unused variable",
			src:  "variable \"a\" {\n  type = string\n}\n",
			want: []string{"variable a is never used"},
		},
		{
			name: "dynamic iterator out of its block",
			src:  "resource \"x\" \"y\" {\n  dynamic \"e\" {\n    for_each = [1]\n    content {}\n  }\n  v = e.value\n}\n",
			want: []string{"main.tf:6: e.value"},
		},
		{
			name: "misaligned",
			src:  "locals {\n  a = 1\n  bb = 2\n}\n\noutput \"o\" {\n  value = local.a + local.bb\n}\n",
			want: []string{"main.tf (format)"},
		},
	}
	outputsOf := func(source string) map[string]*hclsyntax.Block {
		if source == "./m" {
			return map[string]*hclsyntax.Block{"ok": nil}
		}
		return nil
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseModule("test", map[string][]byte{"main.tf": []byte(tt.src)})
			if err != nil {
				t.Fatal(err)
			}
			got := unresolved(m, outputsOf)
			for _, f := range unformatted(m) {
				got = append(got, f+" (format)")
			}
			sort.Strings(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestConfigurations_Resolve checks, for the module and the example, that every
// reference names a declared variable, local, resource, data source, module or
// module output, that every variable and local is used, and that every variable
// and output is described.
func TestConfigurations_Resolve(t *testing.T) {
	mod := readModule(t, moduleDir)
	outputsOf := func(source string) map[string]*hclsyntax.Block {
		if source == "../modules/deployhook" {
			return mod.outputs
		}
		return nil
	}
	for _, m := range []*module{mod, readModule(t, exampleDir)} {
		for _, p := range unresolved(m, outputsOf) {
			t.Errorf("%s: %s", m.dir, p)
		}
		for kind, blocks := range map[string]map[string]*hclsyntax.Block{"variable": m.variables, "output": m.outputs} {
			for n, b := range blocks {
				if staticString(b.Body.Attributes["description"]) == "" {
					t.Errorf("%s: %s %s has no description", m.dir, kind, n)
				}
			}
		}
		for n, b := range m.variables {
			if b.Body.Attributes["type"] == nil {
				t.Errorf("%s: variable %s has no type", m.dir, n)
			}
		}
	}
	if src := readModule(t, exampleDir).modules["deployhook"]; src == nil ||
		staticString(src.Body.Attributes["source"]) != "../modules/deployhook" {
		t.Errorf("the example does not call the module as ../modules/deployhook")
	}
}

// TestConfigurations_Format checks that every .tf file is as `terraform fmt` writes it.
func TestConfigurations_Format(t *testing.T) {
	for _, dir := range []string{moduleDir, exampleDir} {
		m := readModule(t, dir)
		for _, f := range unformatted(m) {
			t.Errorf("%s/%s is not formatted: run terraform fmt -recursive deploy/terraform", dir, f)
		}
	}
}

// eval evaluates a with the module's constant locals (those that refer to nothing)
// bound, or fails the test.
func (m *module) eval(t *testing.T, what string, a *hclsyntax.Attribute) cty.Value {
	t.Helper()
	if a == nil {
		t.Fatalf("%s: not set", what)
	}
	locals := map[string]cty.Value{}
	for n, l := range m.locals {
		if len(hclsyntax.Variables(l.Expr)) == 0 {
			if v, diags := l.Expr.Value(nil); !diags.HasErrors() {
				locals[n] = v
			}
		}
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"local": cty.ObjectVal(locals)}}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", what, diags)
	}
	return v
}

// strings returns v (a string, or a list or tuple of strings) as a slice.
func stringsOf(t *testing.T, what string, v cty.Value) []string {
	t.Helper()
	if v.Type() == cty.String {
		return []string{v.AsString()}
	}
	if !v.CanIterateElements() {
		t.Fatalf("%s = %#v, want strings", what, v)
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		if e.Type() != cty.String {
			t.Fatalf("%s has %#v, want strings", what, e)
		}
		out = append(out, e.AsString())
	}
	return out
}

// resource returns the block of resource TYPE.NAME of m, or fails the test.
func (m *module) resource(t *testing.T, name string) *hclsyntax.Body {
	t.Helper()
	b, ok := m.resources[name]
	if !ok {
		t.Fatalf("%s: no resource %s", m.dir, name)
	}
	return b.Body
}

// block returns the first nested block of body of that type, or fails the test.
func block(t *testing.T, body *hclsyntax.Body, path ...string) *hclsyntax.Body {
	t.Helper()
	for _, typ := range path {
		i := slices.IndexFunc(body.Blocks, func(b *hclsyntax.Block) bool { return b.Type == typ })
		if i < 0 {
			t.Fatalf("no block %s", strings.Join(path, " > "))
		}
		body = body.Blocks[i].Body
	}
	return body
}

// literals returns every string literal in m (the roles it grants, the metadata keys
// it sets, ...).
func (m *module) literals() map[string]bool {
	lits := map[string]bool{}
	for _, body := range m.bodies {
		hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			if l, ok := n.(*hclsyntax.LiteralValueExpr); ok && l.Val.Type() == cty.String {
				lits[l.Val.AsString()] = true
			}
			return nil
		})
	}
	return lits
}

// readmeSection returns the text of the README section with that heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", heading)
	}
	s = s[i+len(heading)+2:]
	if j := strings.Index(s, "\n#"); j >= 0 {
		s = s[:j]
	}
	return s
}

// TestModule_Grants checks that the module grants what deployhook asks for, taking
// the names from the program (its constants and the advice it prints) and from the
// README's "Credentials and permissions", so a change on either side fails here.
func TestModule_Grants(t *testing.T) {
	m := readModule(t, moduleDir)

	t.Run("firewall", func(t *testing.T) {
		fw := m.resource(t, "google_compute_firewall.iap_ssh")
		if got := stringsOf(t, "source_ranges", m.eval(t, "source_ranges", fw.Attributes["source_ranges"])); !slices.Equal(got, []string{iap.IAPSourceRange}) {
			t.Errorf("firewall source_ranges = %q, want [%s] (iap.IAPSourceRange)", got, iap.IAPSourceRange)
		}
		allow := block(t, fw, "allow")
		if got := m.eval(t, "protocol", allow.Attributes["protocol"]).AsString(); got != "tcp" {
			t.Errorf("firewall protocol = %q, want tcp", got)
		}
		if got := stringsOf(t, "ports", m.eval(t, "ports", allow.Attributes["ports"])); !slices.Equal(got, []string{"22"}) {
			t.Errorf("firewall ports = %q, want [22]", got)
		}
		if got := m.eval(t, "direction", fw.Attributes["direction"]).AsString(); got != "INGRESS" {
			t.Errorf("firewall direction = %q, want INGRESS", got)
		}
		if fw.Attributes["target_tags"] == nil {
			t.Errorf("the firewall rule has no target_tags: it would open port 22 to IAP on every VM of the network")
		}
	})

	t.Run("tunnel role", func(t *testing.T) {
		// The role deployhook's advice for close code 4033 tells the user to grant.
		advice := (&iap.CloseError{Code: iap.CodeNotAuthorized}).Error()
		want := regexp.MustCompile(`roles/[A-Za-z.]+`).FindString(advice)
		if want == "" {
			t.Fatalf("no role in iap's 4033 advice %q", advice)
		}
		b := m.resource(t, "google_iap_tunnel_instance_iam_member.tunnel")
		if got := m.eval(t, "role", b.Attributes["role"]).AsString(); got != want {
			t.Errorf("tunnel role = %q, want %q", got, want)
		}
	})

	t.Run("instance reader", func(t *testing.T) {
		b := m.resource(t, "google_project_iam_custom_role.instance_reader")
		got := stringsOf(t, "permissions", m.eval(t, "permissions", b.Attributes["permissions"]))
		want := []string{gcetest.PermissionGet, gcetest.PermissionGetGuestAttributes}
		if !slices.Equal(got, want) {
			t.Errorf("custom role permissions = %q, want exactly %q", got, want)
		}
		// Granted on the instance, not the project.
		ib := m.resource(t, "google_compute_instance_iam_member.instance_reader")
		if ib.Attributes["instance_name"] == nil {
			t.Errorf("the custom role is not granted on the instance")
		}
	})

	t.Run("README roles and metadata", func(t *testing.T) {
		sec := readmeSection(t, "### Credentials and permissions")
		lits := m.literals()
		roles := regexp.MustCompile("`(roles/[A-Za-z.]+)`").FindAllStringSubmatch(sec, -1)
		if len(roles) < 4 {
			t.Fatalf("found %d roles in the README section, want at least 4: %q", len(roles), roles)
		}
		for _, r := range roles {
			if !lits[r[1]] {
				t.Errorf("README asks for %s, the module never grants it", r[1])
			}
		}
		meta := regexp.MustCompile("`(enable-[a-z-]+)=TRUE`").FindAllStringSubmatch(sec, -1)
		if len(meta) < 2 {
			t.Fatalf("found %d metadata keys in the README section, want 2: %q", len(meta), meta)
		}
		vm := m.locals["vm_metadata"]
		if vm == nil {
			t.Fatal("no local vm_metadata")
		}
		keys := map[string]bool{}
		hclsyntax.VisitAll(vm.Expr, func(n hclsyntax.Node) hcl.Diagnostics {
			if o, ok := n.(*hclsyntax.ObjectConsExpr); ok {
				for _, it := range o.Items {
					if k, diags := it.KeyExpr.Value(nil); !diags.HasErrors() && k.Type() == cty.String {
						if v, diags := it.ValueExpr.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
							keys[k.AsString()+"="+v.AsString()] = true
						}
					}
				}
			}
			return nil
		})
		for _, k := range meta {
			if !keys[k[1]+"=TRUE"] {
				t.Errorf("README asks for %s=TRUE, vm_metadata never sets it (it sets %q)", k[1], slices.Sorted(maps.Keys(keys)))
			}
		}
	})

	t.Run("OS Login", func(t *testing.T) {
		ol := m.locals["oslogin_role"]
		lits := map[string]bool{}
		hclsyntax.VisitAll(ol.Expr, func(n hclsyntax.Node) hcl.Diagnostics {
			if l, ok := n.(*hclsyntax.LiteralValueExpr); ok && l.Val.Type() == cty.String {
				lits[l.Val.AsString()] = true
			}
			return nil
		})
		if want := []string{"roles/compute.osAdminLogin", "roles/compute.osLogin"}; !slices.Equal(slices.Sorted(maps.Keys(lits)), want) {
			t.Errorf("oslogin_role chooses between %q, want %q", slices.Sorted(maps.Keys(lits)), want)
		}
		sa := m.resource(t, "google_service_account_iam_member.oslogin_vm_account")
		if got := m.eval(t, "role", sa.Attributes["role"]).AsString(); got != "roles/iam.serviceAccountUser" {
			t.Errorf("role on the VM's service account = %q, want roles/iam.serviceAccountUser", got)
		}
	})
}

// TestModule_Runtime checks the settings deployhook needs to work at all: on Cloud
// Run the CPU stays allocated after the 202 and every instance always runs, one
// with the SQLite journal on its bucket, replicas with the PostgreSQL journal;
// the webhook sends the events deployhook acts on, as JSON, signed.
func TestModule_Runtime(t *testing.T) {
	m := readModule(t, moduleDir)

	t.Run("cloud run", func(t *testing.T) {
		tests := []struct {
			name     string
			vars     map[string]cty.Value
			replicas int64
			dataDir  bool // --data-dir on the bucket's mount
		}{
			{"sqlite", nil, 1, true},
			{"postgres", postgresVars(3), 3, false},
			{"postgres, one instance", postgresVars(1), 1, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := m.plan(t, moduleVars(tt.vars))
				tmpl := s.resource(t, "google_cloud_run_v2_service.deployhook").one(t, "template")
				scaling := tmpl.one(t, "scaling")
				for _, a := range []string{"min_instance_count", "max_instance_count"} {
					if v := scaling.eval(t, a); !v.RawEquals(cty.NumberIntVal(tt.replicas)) {
						t.Errorf("%s = %#v, want %d", a, v, tt.replicas)
					}
				}
				c := tmpl.one(t, "containers")
				if v := c.one(t, "resources").eval(t, "cpu_idle"); !v.RawEquals(cty.False) {
					t.Errorf("cpu_idle = %#v, want false: the deploy runs after the 202", v)
				}
				args := stringsOf(t, "args", c.eval(t, "args"))
				flag := func(name string) (string, bool) {
					i := slices.Index(args, name)
					if i < 0 || i+1 >= len(args) {
						return "", false
					}
					return args[i+1], true
				}
				mounts := map[string]bool{}
				for _, b := range c.blocks(t, "volume_mounts") {
					mounts[b.str(t, "mount_path")] = true
				}
				switch d, ok := flag("--data-dir"); {
				case tt.dataDir && !ok:
					t.Errorf("args %q have no --data-dir", args)
				case tt.dataDir && !mounts[d]:
					t.Errorf("--data-dir %s is not a mounted volume (mounts %q): the journal would not survive", d, slices.Sorted(maps.Keys(mounts)))
				case !tt.dataDir && ok:
					t.Errorf("args %q have --data-dir %s: with a database there is no data volume", args, d)
				}
				if d, ok := flag("--config"); !ok || !mounts[filepath.Dir(d)] {
					t.Errorf("--config's directory %s is not a mounted volume (mounts %q)", filepath.Dir(d), slices.Sorted(maps.Keys(mounts)))
				}
				var env []string
				for _, b := range c.blocks(t, "env") {
					env = append(env, b.str(t, "name"))
				}
				for _, want := range []string{"DEPLOYHOOK_WEBHOOK_SECRET", "DEPLOYHOOK_SESSION_KEY"} {
					if !slices.Contains(env, want) {
						t.Errorf("container env %q has no %s", env, want)
					}
				}
			})
		}
	})

	t.Run("webhook", func(t *testing.T) {
		wh := m.resource(t, "github_repository_webhook.deployhook")
		if got, want := stringsOf(t, "events", m.eval(t, "events", wh.Attributes["events"])), []string{"push", "workflow_run", "workflow_dispatch"}; !slices.Equal(got, want) {
			t.Errorf("webhook events = %q, want %q", got, want)
		}
		conf := block(t, wh, "configuration")
		if got := m.eval(t, "content_type", conf.Attributes["content_type"]).AsString(); got != "json" {
			t.Errorf("content_type = %q, want json", got)
		}
		if v := m.eval(t, "insecure_ssl", conf.Attributes["insecure_ssl"]); !v.RawEquals(cty.False) {
			t.Errorf("insecure_ssl = %#v, want false", v)
		}
		refs := hclsyntax.Variables(conf.Attributes["secret"].Expr)
		if len(refs) != 1 || traversalString(refs[0]) != "random_password.webhook_secret.result" {
			t.Errorf("webhook secret is not the generated secret")
		}
		sv := m.resource(t, "google_secret_manager_secret_version.webhook_secret")
		refs = hclsyntax.Variables(sv.Attributes["secret_data"].Expr)
		if len(refs) != 1 || traversalString(refs[0]) != "random_password.webhook_secret.result" {
			t.Errorf("the secret in Secret Manager is not the webhook's secret")
		}
	})
}

// TestExample_README checks that the README's Terraform section names every variable
// of the example, and that terraform.tfvars.example sets every required one (those
// without a default) and nothing the example does not declare.
func TestExample_README(t *testing.T) {
	ex := readModule(t, exampleDir)
	sec := readmeSection(t, "## Set it up with Terraform")
	for n := range ex.variables {
		if !strings.Contains(sec, "`"+n+"`") {
			t.Errorf("README's Terraform section does not name the example's variable %s", n)
		}
	}
	src, err := os.ReadFile(filepath.Join(exampleDir, "terraform.tfvars.example"))
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, "terraform.tfvars.example", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	set := f.Body.(*hclsyntax.Body).Attributes
	for n := range set {
		if ex.variables[n] == nil {
			t.Errorf("terraform.tfvars.example sets %s, which the example does not declare", n)
		}
	}
	for n, b := range ex.variables {
		if b.Body.Attributes["default"] == nil && set[n] == nil {
			t.Errorf("terraform.tfvars.example does not set the required variable %s", n)
		}
	}
	if !bytes.Equal(hclwrite.Format(src), src) {
		t.Errorf("terraform.tfvars.example is not formatted")
	}
}

// TestExample_Template checks that the configuration template uses only the variables
// the example's templatefile call passes it, and uses all of them.
func TestExample_Template(t *testing.T) {
	ex := readModule(t, exampleDir)
	call, ok := ex.modules["deployhook"].Body.Attributes["config_yaml"].Expr.(*hclsyntax.FunctionCallExpr)
	if !ok || call.Name != "templatefile" || len(call.Args) != 2 {
		t.Fatal("config_yaml is not templatefile(PATH, VARS)")
	}
	passed := map[string]bool{}
	obj, ok := call.Args[1].(*hclsyntax.ObjectConsExpr)
	if !ok {
		t.Fatal("templatefile's variables are not an object")
	}
	for _, it := range obj.Items {
		passed[hcl.ExprAsKeyword(it.KeyExpr)] = true
	}
	src, err := os.ReadFile(filepath.Join(exampleDir, "config.yaml.tftpl"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, diags := hclsyntax.ParseTemplate(src, "config.yaml.tftpl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	used := map[string]bool{}
	for _, tr := range hclsyntax.Variables(tmpl) {
		used[tr.RootName()] = true
		if !passed[tr.RootName()] {
			t.Errorf("config.yaml.tftpl uses %s, which templatefile does not pass", tr.RootName())
		}
	}
	for n := range passed {
		if !used[n] {
			t.Errorf("templatefile passes %s, which config.yaml.tftpl never uses", n)
		}
	}
	if len(used) == 0 {
		t.Error("config.yaml.tftpl uses no variable")
	}

	// What the template renders, with the example's values, must be a configuration
	// deployhook accepts (with and without OS Login, with and without replicas on
	// the Cloud SQL instance's socket, the URL's form the README gives).
	const databaseURL = "postgres://deployhook:db-password-from-secret-manager@/deployhook?host=/cloudsql/my-project:us-central1:journal"
	for _, database := range []bool{false, true} {
		for _, oslogin := range []bool{true, false} {
			vars := map[string]cty.Value{
				"repository": cty.StringVal("acme/pipelines"), "branch": cty.StringVal("main"),
				"project_id": cty.StringVal("my-project"), "zone": cty.StringVal("us-central1-a"),
				"vm_name": cty.StringVal("dagster"), "app_dir": cty.StringVal("/opt/app"),
				"app_user": cty.StringVal("app"), "oslogin": cty.BoolVal(oslogin),
				"public_url": cty.StringVal("https://deployhook-123456789012.us-central1.run.app"),
				"client_id":  cty.StringVal("Iv1.0123456789abcdef"),
				"replicas":   cty.BoolVal(database),
			}
			v, diags := tmpl.Value(&hcl.EvalContext{Variables: vars})
			if diags.HasErrors() {
				t.Fatalf("render config.yaml.tftpl: %v", diags)
			}
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(v.AsString()), 0o600); err != nil {
				t.Fatal(err)
			}
			// The environment Cloud Run gives the container from Secret Manager.
			env := map[string]string{
				"DEPLOYHOOK_WEBHOOK_SECRET":      "from-secret-manager",
				"DEPLOYHOOK_OAUTH_CLIENT_SECRET": "oauth-secret-from-secret-manager",
				"DEPLOYHOOK_SESSION_KEY":         "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
			}
			if !oslogin {
				env["DEPLOYHOOK_SSH_KEY"] = newSSHKey(t)
			}
			if database {
				env["DEPLOYHOOK_DATABASE_URL"] = databaseURL
			}
			cfg, err := config.Load(path, func(k string) string { return env[k] })
			if err != nil {
				t.Errorf("database %v, oslogin %v: deployhook refuses the rendered configuration: %v\n%s", database, oslogin, err, v.AsString())
				continue
			}
			wantURL := ""
			if database {
				wantURL = databaseURL
			}
			if cfg.Replicas != database || cfg.JournalURL() != wantURL {
				t.Errorf("database %v, oslogin %v: replicas %v, journal URL %q; want %v, %q", database, oslogin, cfg.Replicas, cfg.JournalURL(), database, wantURL)
			}
		}
	}
}

// newSSHKey returns a new ed25519 private key in OpenSSH PEM form.
func newSSHKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}
