package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestParse_Problems: Parse reports every problem of the file at once, each
// with its line and YAML key, never a Go type, and suggests the known key an
// unknown one resembles. Before issue 12 Parse returned yaml.v3's first
// error only: "field brnach not found in type config.Target".
func TestParse_Problems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // the problems, in order
	}{
		{
			name: "typo in a target",
			yaml: `targets:
  - name: prod
    repo: acme/app
    brnach: main
`,
			want: []string{`line 4: unknown key "brnach" in targets[0] (prod); did you mean "branch"?`},
		},
		{
			name: "every problem at once",
			yaml: `listen: 127.0.0.1:8080
lisen: 127.0.0.1:9090
log: {format: text, levle: debug}
github:
  report: maybe
targets:
  - name: prod
    repo: acme/app
    vm: {project: p, zone: z, instance: i, port: twenty-two}
    ssh:
      timout: 30s
    steps:
      - name: build
        run: make
        timeout: soon
        sudo: yes please
      - name: test
        run: make test
        timeout: 1m
        when-changed: [src/**]
  - repo: acme/other
    settle: [1, 2]
    units: restart
    env: [A=1]
`,
			want: []string{
				`line 2: unknown key "lisen" at the top level; did you mean "listen"?`,
				`line 3: unknown key "levle" in log; did you mean "level"?`,
				`line 5: github.report: "maybe" is not true or false`,
				`line 9: targets[0] (prod).vm.port: "twenty-two" is not a whole number`,
				`line 11: unknown key "timout" in targets[0] (prod).ssh; did you mean "timeout"?`,
				`line 15: targets[0] (prod).steps[0] (build).timeout: "soon" is not a duration (write 90s, 10m, 1h or 90d)`,
				`line 16: targets[0] (prod).steps[0] (build).sudo: "yes please" is not true or false`,
				`line 20: unknown key "when-changed" in targets[0] (prod).steps[1] (test); did you mean "when_changed"?`,
				`line 22: targets[1].settle: a list is not a duration (write 90s, 10m, 1h or 90d)`,
				`line 23: targets[1].units: "restart" is not a list of strings`,
				`line 24: targets[1].env: a list is not a mapping of names to strings`,
			},
		},
		{
			name: "no suggestion when nothing is close",
			yaml: "colour: blue\n",
			want: []string{`line 1: unknown key "colour" at the top level`},
		},
		{
			name: "a key given twice",
			yaml: "listen: a\ndata_dir: d\nlisten: b\n",
			want: []string{`line 3: listen is given twice at the top level (first on line 1)`},
		},
		{
			name: "wrong shapes",
			yaml: "github: yes\ntargets: {name: prod}\n",
			want: []string{
				`line 1: github: want a mapping (key: value), not "yes"`,
				`line 2: targets: want a list (- item), not a mapping`,
			},
		},
		{
			name: "anchors and merges are followed",
			yaml: `x-defaults: &d
  branch: main
  settel: 5s
targets:
  - <<: *d
    name: prod
`,
			want: []string{
				`line 1: unknown key "x-defaults" at the top level`,
				`line 3: unknown key "settel" in targets[0] (prod); did you mean "settle"?`,
			},
		},
		{
			name: "size",
			yaml: "max_body: lots\n",
			want: []string{`line 1: max_body: "LOTS" is not a size (write 25MB, 512KB)`},
		},
		{
			name: "syntax error",
			yaml: "targets:\n  - name: [\n",
			want: []string{`parse: line 2: did not find expected node content`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant\n%s", err, strings.Join(tc.want, "\n"))
			}
			if strings.Contains(err.Error(), "config.") {
				t.Errorf("the error names a Go type: %v", err)
			}
		})
	}
}

// TestParse_ValidKeys: the files deployhook ships parse without a problem,
// so the walk knows every key they use.
func TestParse_ValidKeys(t *testing.T) {
	for name, data := range map[string][]byte{"local.yaml": Local(), "example.yaml": Example()} {
		if _, err := Parse(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSuggest(t *testing.T) {
	fields := yamlFields(reflect.TypeFor[Target]())
	tests := []struct{ key, want string }{
		{"brnach", "branch"},
		{"Branch", "branch"},
		{"app-dir", "app_dir"},
		{"repos", "repo"},
		{"unit", "units"},
		{"nme", "name"},
		{"xyz", ""},
		{"colour", ""},
	}
	for _, tc := range tests {
		want := ""
		if tc.want != "" {
			want = `; did you mean "` + tc.want + `"?`
		}
		if got := suggest(tc.key, fields); got != want {
			t.Errorf("suggest(%q) = %q, want %q", tc.key, got, want)
		}
	}
}
