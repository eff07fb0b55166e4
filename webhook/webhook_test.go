package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// GitHub's documented test vector (validating-webhook-deliveries.md).
const (
	vectorSecret    = "It's a Secret to Everybody"
	vectorPayload   = "Hello, World!"
	vectorSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func TestSign(t *testing.T) {
	if got := Sign([]byte(vectorPayload), []byte(vectorSecret)); got != vectorSignature {
		t.Errorf("Sign(GitHub's vector) = %s, want %s", got, vectorSignature)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(vectorPayload)
	secret := []byte(vectorSecret)
	other := []byte("another secret")
	sha1Header := "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59" // X-Hub-Signature style
	tests := []struct {
		name    string
		body    []byte
		header  string
		secrets [][]byte
		want    error
	}{
		{name: "good", body: body, header: vectorSignature, secrets: [][]byte{secret}},
		{name: "second of two secrets matches", body: body, header: vectorSignature, secrets: [][]byte{other, secret}},
		{name: "first of two secrets matches", body: body, header: vectorSignature, secrets: [][]byte{secret, other}},
		{name: "empty body signed", body: []byte{}, header: Sign(nil, secret), secrets: [][]byte{secret}},
		{name: "wrong secret", body: body, header: vectorSignature, secrets: [][]byte{other}, want: ErrBadSignature},
		{name: "neither of two secrets", body: body, header: vectorSignature, secrets: [][]byte{other, []byte("x")}, want: ErrBadSignature},
		{name: "body changed", body: []byte("Hello, World?"), header: vectorSignature, secrets: [][]byte{secret}, want: ErrBadSignature},
		{name: "body with a trailing newline", body: []byte(vectorPayload + "\n"), header: vectorSignature, secrets: [][]byte{secret}, want: ErrBadSignature},
		{name: "missing header", body: body, header: "", secrets: [][]byte{secret}, want: ErrNoSignature},
		{name: "sha1 only", body: body, header: sha1Header, secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "no prefix", body: body, header: strings.TrimPrefix(vectorSignature, "sha256="), secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "prefix upper case", body: body, header: "SHA256=" + vectorSignature[7:], secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "hex upper case", body: body, header: "sha256=" + strings.ToUpper(vectorSignature[7:]), secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "non-hex digit", body: body, header: vectorSignature[:70] + "g", secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "too short", body: body, header: vectorSignature[:70], secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "too long", body: body, header: vectorSignature + "00", secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "prefix only", body: body, header: "sha256=", secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "trailing space", body: body, header: vectorSignature + " ", secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "two signatures", body: body, header: vectorSignature + "," + vectorSignature, secrets: [][]byte{secret}, want: ErrMalformedSignature},
		{name: "no secrets", body: body, header: vectorSignature, secrets: nil, want: ErrNoSecret},
		{name: "empty secret", body: body, header: Sign(body, nil), secrets: [][]byte{{}}, want: ErrNoSecret},
		{name: "empty secret beside a good one", body: body, header: vectorSignature, secrets: [][]byte{secret, {}}, want: ErrNoSecret},
		{name: "no secrets and no header", body: body, header: "", secrets: nil, want: ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.body, tt.header, tt.secrets...)
			if err != tt.want {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			for _, s := range tt.secrets {
				if err != nil && len(s) > 0 && strings.Contains(err.Error(), Sign(tt.body, s)[7:]) {
					t.Errorf("error %q holds the expected MAC", err)
				}
			}
		})
	}
}

func TestVerify_payloads(t *testing.T) {
	secret := []byte("s3cret")
	for _, name := range allPayloads(t) {
		body := readPayload(t, name)
		if err := Verify(body, Sign(body, secret), secret); err != nil {
			t.Errorf("%s: Verify = %v, want nil", name, err)
		}
		sig := Sign(body, secret)
		body[len(body)/2] ^= 1
		if err := Verify(body, sig, secret); err != ErrBadSignature {
			t.Errorf("%s with one bit flipped: Verify = %v, want ErrBadSignature", name, err)
		}
	}
}

func TestVerify_allocs(t *testing.T) {
	body := readPayload(t, "push/with-new-branch.payload.json")
	secret := []byte(vectorSecret)
	sig := Sign(body, secret)
	// One HMAC state (hmac.New: the struct, two SHA-256 digests and its pads) and
	// nothing else: the header is decoded into an array on the stack.
	plain := testing.AllocsPerRun(100, func() { hmac.New(sha256.New, secret).Sum(nil) })
	got := testing.AllocsPerRun(100, func() {
		if err := Verify(body, sig, secret); err != nil {
			t.Fatal(err)
		}
	})
	if got > plain {
		t.Errorf("Verify allocates %v times, want at most the %v of one HMAC", got, plain)
	}
}

// wantPayload is the expected outcome of parsing one example payload with its own
// event name: an Event, an ignore reason, or neither (an error).
type wantPayload struct {
	event  *Event
	reason string
}

func TestParse_payloads(t *testing.T) {
	newBranch := &Event{
		Name: "push", Delivery: "guid-1", Repo: "Codertocat/Hello-World", RepoID: 186853002, Branch: "master",
		SHA: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", Actor: "Codertocat",
	}
	ping := &Event{Name: "ping", Delivery: "guid-1"}
	dispatch := "workflow run triggered by repository_dispatch, not push"
	want := map[string]wantPayload{
		"push/1.payload.json":                                    {reason: "tag deleted: refs/tags/simple-tag"},
		"push/payload.json":                                      {reason: "tag deleted: refs/tags/simple-tag"},
		"push/with-installation.payload.json":                    {reason: "tag deleted: refs/tags/simple-tag"},
		"push/with-organization.payload.json":                    {reason: "tag deleted: refs/tags/simple-tag"},
		"push/with-new-branch.payload.json":                      {event: newBranch},
		"push/with-no-username-committer.payload.json":           {event: newBranch},
		"workflow_run/completed.payload.json":                    {reason: dispatch},
		"workflow_run/completed.with-pull-requests.payload.json": {reason: dispatch},
		"workflow_run/requested.payload.json":                    {reason: "workflow run requested"},
		"workflow_run/requested.with-conclusion.payload.json":    {reason: "workflow run requested"},
		"workflow_dispatch/payload.json": {event: &Event{
			Name: "workflow_dispatch", Delivery: "guid-1", Repo: "octo-org/octo-repo", RepoID: 17273051, Branch: "master",
			Workflow: ".github/workflows/hello-world-workflow.yml", Actor: "Codertocat",
			Inputs: map[string]string{"name": "Mona the Octocat"},
		}},
		"ping/payload.json":                   {event: ping},
		"ping/with-app_id.payload.json":       {event: ping},
		"ping/with-organization.payload.json": {event: ping},
	}
	for _, name := range allPayloads(t) {
		t.Run(name, func(t *testing.T) {
			event, _, _ := strings.Cut(name, "/")
			w, ok := want[name]
			if !ok {
				w.reason = "event " + event + " is not a deploy trigger"
			}
			for _, body := range [][]byte{readPayload(t, name), rawPayload(t, name)} {
				got, err := Parse(event, "guid-1", body)
				checkParse(t, got, err, w)
			}
		})
	}
}

func TestParse_pushVariants(t *testing.T) {
	base := readPayload(t, "push/with-new-branch.payload.json")
	sha := "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
	ev := func(branch, actor string) *Event {
		return &Event{Name: "push", Delivery: "d", Repo: "Codertocat/Hello-World", RepoID: 186853002, Branch: branch, SHA: sha, Actor: actor}
	}
	tests := []struct {
		name string
		sets []any
		want wantPayload
	}{
		{name: "branch main", sets: []any{"ref", "refs/heads/main"}, want: wantPayload{event: ev("main", "Codertocat")}},
		{name: "branch with slashes", sets: []any{"ref", "refs/heads/release/v1.2"}, want: wantPayload{event: ev("release/v1.2", "Codertocat")}},
		{name: "ref is a branch named like a tag", sets: []any{"ref", "refs/heads/refs/tags/x"}, want: wantPayload{event: ev("refs/tags/x", "Codertocat")}},
		{name: "no pusher name", sets: []any{"pusher", nil, "sender.login", "octocat"}, want: wantPayload{event: ev("master", "octocat")}},
		{name: "pusher name empty", sets: []any{"pusher.name", "", "sender.login", "octocat"}, want: wantPayload{event: ev("master", "octocat")}},
		{name: "no actor at all", sets: []any{"pusher-", nil, "sender-", nil}, want: wantPayload{event: ev("master", "")}},
		{name: "tag push", sets: []any{"ref", "refs/tags/v1.0.0"}, want: wantPayload{reason: "tag push: refs/tags/v1.0.0"}},
		{name: "tag deleted", sets: []any{"ref", "refs/tags/x", "deleted", true}, want: wantPayload{reason: "tag deleted: refs/tags/x"}},
		{name: "notes ref", sets: []any{"ref", "refs/notes/commits"}, want: wantPayload{reason: "not a branch: refs/notes/commits"}},
		{name: "pull ref", sets: []any{"ref", "refs/pull/1/head"}, want: wantPayload{reason: "not a branch: refs/pull/1/head"}},
		{name: "branch deleted", sets: []any{"deleted", true, "after", zeroSHA}, want: wantPayload{reason: "branch deleted"}},
		{name: "deleted flag only", sets: []any{"deleted", true}, want: wantPayload{reason: "branch deleted"}},
		{name: "zero after only", sets: []any{"after", zeroSHA}, want: wantPayload{reason: "branch deleted"}},
		{name: "deleted null is false", sets: []any{"deleted", nil}, want: wantPayload{event: ev("master", "Codertocat")}},
		{name: "after upper case", sets: []any{"after", strings.ToUpper(sha)}},
		{name: "after short", sets: []any{"after", sha[:7]}},
		{name: "after missing", sets: []any{"after-", nil}},
		{name: "after a number", sets: []any{"after", 5}},
		{name: "ref missing", sets: []any{"ref-", nil}},
		{name: "ref null", sets: []any{"ref", nil}},
		{name: "ref without a branch", sets: []any{"ref", "refs/heads/"}},
		{name: "ref an object", sets: []any{"ref", map[string]any{"name": "main"}}},
		{name: "repository missing", sets: []any{"repository-", nil}},
		{name: "repository null", sets: []any{"repository", nil}},
		{name: "repository a string", sets: []any{"repository", "Codertocat/Hello-World"}},
		{name: "full_name empty", sets: []any{"repository.full_name", ""}},
		{name: "deleted a string", sets: []any{"deleted", "false"}},
		{name: "pusher an array", sets: []any{"pusher", []any{}}},
		{name: "sender login a number", sets: []any{"sender.login", 1}},
		{name: "repository id null", sets: []any{"repository.id", nil}, want: wantPayload{event: noID(ev("master", "Codertocat"))}},
		{name: "repository id absent", sets: []any{"repository.id-", nil}, want: wantPayload{event: noID(ev("master", "Codertocat"))}},
		{name: "repository id large", sets: []any{"repository.id", json.Number("9007199254740993")}, want: wantPayload{event: withID(ev("master", "Codertocat"), 9007199254740993)}},
		{name: "repository id a string", sets: []any{"repository.id", "186853002"}},
		{name: "repository id fractional", sets: []any{"repository.id", 1.5}},
		{name: "repository id overflows", sets: []any{"repository.id", json.Number("9223372036854775808")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("push", "d", edit(t, base, tt.sets...))
			checkParse(t, got, err, tt.want)
		})
	}
}

func TestParse_workflowRunVariants(t *testing.T) {
	base := readPayload(t, "workflow_run/completed.payload.json")
	base = edit(t, base, "workflow_run.event", "push")
	run := func(mod func(*Event)) *Event {
		e := &Event{
			Name: "workflow_run", Delivery: "d", Repo: "octo-org/octo-repo", RepoID: 300029405, Branch: "master",
			SHA: "3484a3fb816e0859fd6e1cea078d76385ff50625", Actor: "Codertocat",
			Workflow: ".github/workflows/test.yml", RunID: 289782451, RunNumber: 163, RunAttempt: 1,
		}
		if mod != nil {
			mod(e)
		}
		return e
	}
	tests := []struct {
		name string
		sets []any
		want wantPayload
	}{
		{name: "push success", want: wantPayload{event: run(nil)}},
		{name: "branch main", sets: []any{"workflow_run.head_branch", "main"}, want: wantPayload{event: run(func(e *Event) { e.Branch = "main" })}},
		{name: "re-run", sets: []any{"workflow_run.run_attempt", 3}, want: wantPayload{event: run(func(e *Event) { e.RunAttempt = 3 })}},
		{name: "triggering actor differs", sets: []any{"workflow_run.triggering_actor.login", "hubot"}, want: wantPayload{event: run(func(e *Event) { e.Actor = "hubot" })}},
		{name: "no triggering actor", sets: []any{"workflow_run.triggering_actor", nil, "workflow_run.actor.login", "monalisa"}, want: wantPayload{event: run(func(e *Event) { e.Actor = "monalisa" })}},
		{name: "only sender", sets: []any{"workflow_run.triggering_actor-", nil, "workflow_run.actor", nil, "sender.login", "octocat"}, want: wantPayload{event: run(func(e *Event) { e.Actor = "octocat" })}},
		{name: "workflow path from the run", sets: []any{"workflow", nil, "workflow_run.path", ".github/workflows/ci.yml"}, want: wantPayload{event: run(func(e *Event) { e.Workflow = ".github/workflows/ci.yml" })}},
		{name: "workflow path preferred", sets: []any{"workflow.path", ".github/workflows/a.yml", "workflow_run.path", ".github/workflows/b.yml"}, want: wantPayload{event: run(func(e *Event) { e.Workflow = ".github/workflows/a.yml" })}},
		{name: "large run id", sets: []any{"workflow_run.id", json.Number("9007199254740993")}, want: wantPayload{event: run(func(e *Event) { e.RunID = 9007199254740993 })}},
		{name: "requested", sets: []any{"action", "requested"}, want: wantPayload{reason: "workflow run requested"}},
		{name: "in progress", sets: []any{"action", "in_progress"}, want: wantPayload{reason: "workflow run in_progress"}},
		{name: "failure", sets: []any{"workflow_run.conclusion", "failure"}, want: wantPayload{reason: "workflow run concluded failure, not success"}},
		{name: "cancelled", sets: []any{"workflow_run.conclusion", "cancelled"}, want: wantPayload{reason: "workflow run concluded cancelled, not success"}},
		{name: "unknown conclusion", sets: []any{"workflow_run.conclusion", "startup_failure"}, want: wantPayload{reason: "workflow run concluded startup_failure, not success"}},
		{name: "conclusion Success", sets: []any{"workflow_run.conclusion", "Success"}, want: wantPayload{reason: "workflow run concluded Success, not success"}},
		{name: "null conclusion", sets: []any{"workflow_run.conclusion", nil}, want: wantPayload{reason: "workflow run completed without a conclusion"}},
		{name: "absent conclusion", sets: []any{"workflow_run.conclusion-", nil}, want: wantPayload{reason: "workflow run completed without a conclusion"}},
		{name: "repository_dispatch", sets: []any{"workflow_run.event", "repository_dispatch"}, want: wantPayload{reason: "workflow run triggered by repository_dispatch, not push"}},
		{name: "pull_request", sets: []any{"workflow_run.event", "pull_request"}, want: wantPayload{reason: "workflow run triggered by pull_request, not push"}},
		{name: "fork head", sets: []any{"workflow_run.head_repository.full_name", "evil/octo-repo"}, want: wantPayload{reason: "workflow run from a fork"}},
		{name: "null head repository", sets: []any{"workflow_run.head_repository", nil}, want: wantPayload{reason: "workflow run from a fork"}},
		{name: "head repository in other case", sets: []any{"workflow_run.head_repository.full_name", "Octo-Org/octo-repo"}, want: wantPayload{reason: "workflow run from a fork"}},
		{name: "failure and fork names the conclusion", sets: []any{"workflow_run.conclusion", "failure", "workflow_run.head_repository", nil}, want: wantPayload{reason: "workflow run concluded failure, not success"}},
		{name: "missing action", sets: []any{"action-", nil}},
		{name: "missing workflow_run", sets: []any{"workflow_run-", nil}},
		{name: "null workflow_run", sets: []any{"workflow_run", nil}},
		{name: "missing event", sets: []any{"workflow_run.event-", nil}},
		{name: "missing head_branch", sets: []any{"workflow_run.head_branch", nil}},
		{name: "short head_sha", sets: []any{"workflow_run.head_sha", "3484a3f"}},
		{name: "no workflow path", sets: []any{"workflow.path", nil, "workflow_run.path", ""}},
		{name: "missing repository", sets: []any{"repository-", nil}},
		{name: "run id a string", sets: []any{"workflow_run.id", "289782451"}},
		{name: "run number fractional", sets: []any{"workflow_run.run_number", 1.5}},
		{name: "run attempt in exponent form", sets: []any{"workflow_run.run_attempt", json.Number("1e2")}},
		{name: "run id overflows", sets: []any{"workflow_run.id", json.Number("9223372036854775808")}},
		{name: "workflow_run an array", sets: []any{"workflow_run", []any{1}}},
		{name: "action a number, even if requested", sets: []any{"action", 1}},
		{name: "conclusion a bool", sets: []any{"workflow_run.conclusion", true}},
		{name: "repository id absent", sets: []any{"repository.id-", nil}, want: wantPayload{event: run(func(e *Event) { e.RepoID = 0 })}},
		{name: "repository id other", sets: []any{"repository.id", 7}, want: wantPayload{event: run(func(e *Event) { e.RepoID = 7 })}},
		{name: "repository id a string", sets: []any{"repository.id", "300029405"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("workflow_run", "d", edit(t, base, tt.sets...))
			checkParse(t, got, err, tt.want)
		})
	}
}

func TestParse_workflowDispatchVariants(t *testing.T) {
	base := readPayload(t, "workflow_dispatch/payload.json")
	dispatch := func(branch string, inputs map[string]string) *Event {
		return &Event{
			Name: "workflow_dispatch", Delivery: "d", Repo: "octo-org/octo-repo", RepoID: 17273051, Branch: branch,
			Workflow: ".github/workflows/hello-world-workflow.yml", Actor: "Codertocat", Inputs: inputs,
		}
	}
	tests := []struct {
		name string
		sets []any
		want wantPayload
	}{
		{name: "branch main", sets: []any{"ref", "refs/heads/main"}, want: wantPayload{event: dispatch("main", map[string]string{"name": "Mona the Octocat"})}},
		{name: "null inputs", sets: []any{"inputs", nil}, want: wantPayload{event: dispatch("master", map[string]string{})}},
		{name: "absent inputs", sets: []any{"inputs-", nil}, want: wantPayload{event: dispatch("master", map[string]string{})}},
		{name: "typed inputs", sets: []any{"inputs", map[string]any{
			"sha": "abc", "rollback": true, "count": json.Number("3"), "none": nil, "text": "a\"b\n", "list": []any{"x", 1},
		}}, want: wantPayload{event: dispatch("master", map[string]string{
			"sha": "abc", "rollback": "true", "count": "3", "none": "", "text": "a\"b\n", "list": `["x",1]`,
		})}},
		{name: "tag ref", sets: []any{"ref", "refs/tags/v1"}, want: wantPayload{reason: "workflow dispatch on refs/tags/v1, not a branch"}},
		{name: "inputs a string", sets: []any{"inputs", "name=x"}},
		{name: "missing workflow", sets: []any{"workflow-", nil}},
		{name: "missing ref", sets: []any{"ref-", nil}},
		{name: "missing repository", sets: []any{"repository", nil}},
		{name: "repository id absent", sets: []any{"repository.id-", nil, "ref", "refs/heads/main"},
			want: wantPayload{event: noID(dispatch("main", map[string]string{"name": "Mona the Octocat"}))}},
		{name: "repository id an object", sets: []any{"repository.id", map[string]any{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("workflow_dispatch", "d", edit(t, base, tt.sets...))
			checkParse(t, got, err, tt.want)
		})
	}
}

func TestParse_malformed(t *testing.T) {
	push := readPayload(t, "push/with-new-branch.payload.json")
	i := strings.Index(string(push), `"commits":[`) + len(`"commits":[`)
	bodies := []struct {
		name string
		body string
	}{
		{name: "empty", body: ""},
		{name: "white space", body: " \n"},
		{name: "null", body: "null"},
		{name: "array", body: "[]"},
		{name: "string", body: `"{}"`},
		{name: "truncated", body: string(push[:len(push)-1])},
		{name: "truncated in a skipped value", body: string(push[:i+10])},
		{name: "trailing comma", body: `{"ref":"refs/heads/main",}`},
		{name: "two objects", body: string(push) + "{}"},
		{name: "trailing garbage", body: string(push) + "x"},
		{name: "broken skipped value", body: string(push[:i]) + "{,}," + string(push[i:])},
		{name: "control character in a skipped string", body: string(push[:i]) + "\"a\x01b\"," + string(push[i:])},
		{name: "bad escape in a skipped string", body: string(push[:i]) + `"\x",` + string(push[i:])},
		{name: "bad number in a skipped value", body: string(push[:i]) + "01," + string(push[i:])},
		{name: "single quotes", body: `{'ref':'refs/heads/main'}`},
		{name: "byte order mark", body: "\ufeff" + string(push)},
	}
	for _, event := range []string{"push", "workflow_run", "workflow_dispatch", "ping"} {
		for _, tt := range bodies {
			t.Run(event+"/"+tt.name, func(t *testing.T) {
				got, err := Parse(event, "d", []byte(tt.body))
				checkParse(t, got, err, wantPayload{})
			})
		}
	}
}

func TestParse_headers(t *testing.T) {
	body := readPayload(t, "push/with-new-branch.payload.json")
	tests := []struct {
		name, event, delivery, want string
	}{
		{name: "no event", event: "", delivery: "d", want: "X-GitHub-Event"},
		{name: "no delivery", event: "push", delivery: "", want: "X-GitHub-Delivery"},
		{name: "neither", event: "", delivery: "", want: "X-GitHub-Event"},
		{name: "no delivery on an ignored event", event: "status", delivery: "", want: "X-GitHub-Delivery"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.event, tt.delivery, body)
			if _, ign := isIgnored(err); err == nil || ign || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %v, want a plain error naming %s", err, tt.want)
			}
		})
	}
}

func TestParse_otherEvents(t *testing.T) {
	for _, name := range []string{"status", "check_suite", "deployment", "deployment_status", "repository_dispatch", "create", "Push", "pull_request"} {
		// The body of an event that never deploys is not read.
		_, err := Parse(name, "d", []byte("not json"))
		want := "event " + name + " is not a deploy trigger"
		if r, ok := isIgnored(err); !ok || r != want {
			t.Errorf("Parse(%s) error = %v, want Ignored %q", name, err, want)
		}
	}
}

func TestIgnored_Error(t *testing.T) {
	if got := (&Ignored{Reason: "branch deleted"}).Error(); got != "ignored: branch deleted" {
		t.Errorf("Error() = %q", got)
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", 80) // 160 bytes
	got := clip(long)
	if !strings.HasSuffix(got, "...") || len(got) > 103 || !strings.HasPrefix(long, strings.TrimSuffix(got, "...")) {
		t.Errorf("clip = %q", got)
	}
	if got := clip("short"); got != "short" {
		t.Errorf("clip(short) = %q", got)
	}
}

// checkParse asserts the outcome of Parse: the Event of w, the ignore reason of w,
// or (neither set) a plain error with a zero Event.
func checkParse(t *testing.T, got Event, err error, w wantPayload) {
	t.Helper()
	reason, ignored := isIgnored(err)
	switch {
	case w.event != nil:
		if err != nil {
			t.Fatalf("Parse error = %v, want %+v", err, *w.event)
		}
		if !reflect.DeepEqual(got, *w.event) {
			t.Errorf("Parse = %+v\nwant    %+v", got, *w.event)
		}
	case w.reason != "":
		if !ignored || reason != w.reason {
			t.Errorf("Parse error = %v, want Ignored %q", err, w.reason)
		}
	default:
		if err == nil || ignored {
			t.Errorf("Parse = %+v, %v; want a plain error", got, err)
		}
	}
	if err != nil && !reflect.DeepEqual(got, Event{}) {
		t.Errorf("Parse returned %+v with error %v, want a zero Event", got, err)
	}
}

// rawPayload returns the payload file name unchanged (indented).
func rawPayload(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(payloadDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzVerify checks that Verify never panics, accepts exactly the signature Sign
// makes, and never puts the expected MAC in an error.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(vectorPayload), vectorSignature, []byte(vectorSecret))
	f.Add([]byte(vectorPayload), "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59", []byte(vectorSecret))
	f.Add([]byte{}, "", []byte{})
	for _, name := range []string{"push/with-new-branch.payload.json", "workflow_run/completed.payload.json"} {
		body := readPayload(f, name)
		f.Add(body, Sign(body, []byte("k")), []byte("k"))
	}
	f.Fuzz(func(t *testing.T, body []byte, header string, secret []byte) {
		err := Verify(body, header, secret)
		if len(secret) == 0 {
			if err != ErrNoSecret {
				t.Fatalf("Verify with an empty secret = %v, want ErrNoSecret", err)
			}
			return
		}
		good := Sign(body, secret)
		if (err == nil) != (header == good) {
			t.Fatalf("Verify(%q) = %v; the right signature is %s", header, err, good)
		}
		if err != nil && strings.Contains(err.Error(), good[len(SignaturePrefix):]) {
			t.Fatalf("error %q holds the expected MAC", err)
		}
		if err := Verify(body, good, []byte("other"), secret); err != nil {
			t.Fatalf("Verify(Sign(body)) with a rotated secret = %v", err)
		}
		mac, _ := hex.DecodeString(good[len(SignaturePrefix):])
		mac[0] ^= 0x80
		if err := Verify(body, SignaturePrefix+hex.EncodeToString(mac), secret); err != ErrBadSignature {
			t.Fatalf("Verify(one bit flipped) = %v, want ErrBadSignature", err)
		}
	})
}

// FuzzParse runs Parse and the same rules over encoding/json's decoding
// (refMembers) on every input, and checks that they agree: the same Event, the
// same ignore reason, or both a plain error. It also checks that an Event only
// ever comes from valid JSON, and that nothing panics.
func FuzzParse(f *testing.F) {
	names := []string{"push", "workflow_run", "workflow_dispatch", "ping"}
	for _, file := range allPayloads(f) {
		body := readPayload(f, file)
		event, _, _ := strings.Cut(file, "/")
		for k, n := range names {
			if n == event || event == "push" || event == "workflow_run" {
				f.Add(uint8(k), body)
			}
		}
	}
	f.Add(uint8(0), []byte(`{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","repository":{"full_name":"a/b"},"r\u0065f":"refs/tags/x"}`))
	f.Add(uint8(1), []byte(`{"action":"completed","repository":{"full_name":"a/b"},"workflow_run":{"conclusion":"success","event":"push","head_repository":{"full_name":"a/b"},"head_branch":"main","head_sha":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","path":"ci.yml","id":1,"run_number":2,"run_attempt":1}}`))
	f.Add(uint8(2), []byte(`{"ref":"refs/heads/main","workflow":"d.yml","inputs":{"a":1,"a":"2"},"repository":{"full_name":"a/b"}}`))
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		name := names[int(kind)%len(names)]
		got, gotErr := parse(name, "d", body, members)
		want, wantErr := parse(name, "d", body, refMembers)
		gotReason, gotIgn := isIgnored(gotErr)
		wantReason, wantIgn := isIgnored(wantErr)
		switch {
		case (gotErr == nil) != (wantErr == nil) || gotIgn != wantIgn:
			t.Fatalf("%s: scanner: %+v, %v\nencoding/json: %+v, %v", name, got, gotErr, want, wantErr)
		case gotIgn && gotReason != wantReason:
			t.Fatalf("%s: scanner ignores %q, encoding/json %q", name, gotReason, wantReason)
		case gotErr == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("%s: scanner: %+v\nencoding/json: %+v", name, got, want)
		}
		if gotErr == nil && !json.Valid(body) {
			t.Fatalf("%s: Event %+v from invalid JSON", name, got)
		}
	})
}

// withID returns e with RepoID id.
func withID(e *Event, id int64) *Event {
	e.RepoID = id
	return e
}

// noID returns e without a RepoID.
func noID(e *Event) *Event { return withID(e, 0) }
