package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct{ cmd, args string }

// stages reads the Dockerfile into its stages' instructions.
func stages(t *testing.T) [][]instruction {
	t.Helper()
	f, err := os.Open(filepath.Join(moduleRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]instruction
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if cur == "" && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur += s + " "
			continue
		}
		cur += l
		cmd, args, _ := strings.Cut(cur, " ")
		cur = ""
		if strings.EqualFold(cmd, "FROM") {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
	}
	return out
}

// TestDockerfile checks what the image promises without a Docker engine
// (none here, so the image is not built by any test): it is built by
// tools/release, runs as nonroot, owns its journal directory, which serve is
// pointed at, and listens on $PORT (no --listen, which would override it).
func TestDockerfile(t *testing.T) {
	st := stages(t)
	if len(st) != 2 {
		t.Fatalf("%d stages, want build and final", len(st))
	}
	has := func(stage []instruction, cmd, args string) bool {
		for _, in := range stage {
			if in.cmd == cmd && in.args == args {
				return true
			}
		}
		return false
	}
	build, final := st[0], st[1]
	for _, want := range []instruction{
		{"RUN", `go run ./tools/release -out /out -platforms linux/${TARGETARCH} -version "${VERSION}" -commit "${COMMIT}" -date "${DATE}" && mv "/out/deployhook_${VERSION}_linux_${TARGETARCH}" /deployhook && mv "/out/deployhook_${VERSION}_linux_${TARGETARCH}.cdx.json" /deployhook.cdx.json`},
		{"RUN", "install -d -m 0700 /rootfs/deployhook"},
	} {
		if !has(build, want.cmd, want.args) {
			t.Errorf("build stage: no %s %s", want.cmd, want.args)
		}
	}
	for _, want := range []instruction{
		{"FROM", "gcr.io/distroless/static-debian12:nonroot"},
		{"COPY", "--from=build --chown=65532:65532 /rootfs/ /var/lib/"},
		{"USER", "65532:65532"},
		{"ENV", "PORT=8080"},
		{"ENTRYPOINT", `["/deployhook"]`},
		{"CMD", `["serve", "--config", "/etc/deployhook/config.yaml", "--data-dir", "/var/lib/deployhook"]`},
	} {
		if !has(final, want.cmd, want.args) {
			t.Errorf("final stage: no %s %s", want.cmd, want.args)
		}
	}
	for _, in := range final {
		if strings.Contains(in.args, "--listen") {
			t.Errorf("final stage: %s %s: --listen would override $PORT", in.cmd, in.args)
		}
	}
	if last := final[len(final)-1]; last.cmd != "CMD" {
		t.Errorf("the final stage ends with %s, want CMD", last.cmd)
	}
}
