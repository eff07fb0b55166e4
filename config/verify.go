package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// VerifyOptions are a target's probes (issue 13): application-level checks
// the default sequence runs on the VM after verify, each retried every
// second for up to verify_within.
type VerifyOptions struct {
	Verify []Probe `yaml:"verify"`
	// VerifyWithin is how long each probe may take to pass (default 1m).
	VerifyWithin Duration `yaml:"verify_within"`
}

// Probe is one entry of verify: exactly one of http, tcp, command and
// dagster_code_location.
type Probe struct {
	Name                string                    `yaml:"name"`
	HTTP                *HTTPProbe                `yaml:"http"`
	TCP                 string                    `yaml:"tcp"`
	Command             *CommandProbe             `yaml:"command"`
	DagsterCodeLocation *DagsterCodeLocationProbe `yaml:"dagster_code_location"`
}

// HTTPProbe is verify[].http.
type HTTPProbe struct {
	URL      string `yaml:"url"`
	Expect   int    `yaml:"expect"`
	Contains string `yaml:"contains"`
}

// CommandProbe is verify[].command.
type CommandProbe struct {
	Run  string `yaml:"run"`
	User string `yaml:"user"`
}

// DagsterCodeLocationProbe is verify[].dagster_code_location.
type DagsterCodeLocationProbe struct {
	Host      string `yaml:"host"`
	Port      int    `yaml:"port"`
	Location  string `yaml:"location"`
	Webserver string `yaml:"webserver"`
	Venv      string `yaml:"venv"`
}

// Bounds of verify_within.
const (
	MinVerifyWithin = time.Second
	MaxVerifyWithin = 30 * time.Minute
)

// Probes returns verify as the executor's probes.
func (v VerifyOptions) Probes() []executor.Probe {
	var out []executor.Probe
	for _, p := range v.Verify {
		ep := executor.Probe{Name: p.Name, TCP: p.TCP}
		if h := p.HTTP; h != nil {
			ep.HTTP = &executor.HTTPProbe{URL: h.URL, Expect: h.Expect, Contains: h.Contains}
		}
		if c := p.Command; c != nil {
			ep.Command = &executor.CommandProbe{Run: c.Run, User: c.User}
		}
		if d := p.DagsterCodeLocation; d != nil {
			ep.DagsterCodeLocation = &executor.DagsterCodeLocationProbe{Host: d.Host, Port: d.Port, Location: d.Location, Webserver: d.Webserver, Venv: d.Venv}
		}
		out = append(out, ep)
	}
	return out
}

// validateVerify checks target t's probes: only for the default sequence,
// each valid (executor.Probe.Validate: one kind, URLs without credentials),
// names unique, command users valid, verify_within in bounds.
func validateVerify(where string, t Target) []error {
	var p problems
	v := t.VerifyOptions
	if len(v.Verify) == 0 && v.VerifyWithin == 0 {
		return nil
	}
	if len(t.Steps) > 0 || t.AppDir == "" {
		p.add("%s: verify needs the default sequence (app_dir and app_user, no steps:): with steps:, check in a step of your own", where)
	}
	if w := time.Duration(v.VerifyWithin); w != 0 && (w < MinVerifyWithin || w > MaxVerifyWithin) {
		p.add("%s: verify_within %s: between 1s and 30m (default 1m)", where, w)
	}
	seen := map[string]int{}
	for i, probe := range v.Probes() {
		pw := fmt.Sprintf("%s verify[%d]", where, i)
		if err := probe.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				p.add("%s: %s", pw, line)
			}
			continue
		}
		name := probe.Name
		if name == "" {
			name = probe.DefaultName()
		}
		if j, dup := seen[name]; dup {
			p.add("%s: verify[%d] is also named %q: give each probe its own name", pw, j, name)
		}
		seen[name] = i
		if c := probe.Command; c != nil && c.User != "" && !userName.MatchString(c.User) {
			p.add("%s: command user %q is not a valid user name", pw, c.User)
		}
	}
	return p
}
