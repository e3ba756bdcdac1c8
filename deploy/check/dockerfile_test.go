package check

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDockerfilesBuildFromTheRepository(t *testing.T) {
	root := repoRoot(t)
	files, err := filepath.Glob(deployPath(t, "docker", "*.Dockerfile"))
	require.NoError(t, err)
	require.Len(t, files, 3, "payment, deployment and demoapp")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			d, err := ParseDockerfile(filepath.Base(f), strings.NewReader(string(b)))
			require.NoError(t, err)
			require.NoError(t, d.Check(root))
			require.Len(t, d.Stages, 2)
			assert.Equal(t, "golang:1.26", d.Stages[0].Base)
			assert.Contains(t, d.Stages[1].Base, "distroless/static")
			assertOnePort(t, d.Stages[1])
		})
	}
}

// assertOnePort checks that the final stage listens (ENV ADDR), exposes
// and probes one port.
func assertOnePort(t *testing.T, st Stage) {
	t.Helper()
	var addr, expose, probe string
	for _, in := range st.Instructions {
		switch in.Cmd {
		case "ENV":
			if a, ok := envPairs(in.Args)["ADDR"]; ok {
				addr = strings.TrimPrefix(a, ":")
			}
		case "EXPOSE":
			expose = in.Args[0]
		case "HEALTHCHECK":
			probe = in.Args[len(in.Args)-1]
		case "ENTRYPOINT":
			// demoapp takes its address as a flag.
			if i := slices.Index(in.Args, "-addr"); i >= 0 && i+1 < len(in.Args) {
				addr = strings.TrimPrefix(in.Args[i+1], ":")
			}
		}
	}
	require.NotEmpty(t, addr, "the listen address")
	assert.Equal(t, addr, expose, "EXPOSE names the port the service listens on")
	assert.Contains(t, probe, "http://127.0.0.1:"+addr+"/healthz", "the HEALTHCHECK asks the port the service listens on")
}

// base is a Dockerfile that passes; the cases below break it one way each.
const base = `# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
ENV CGO_ENABLED=0 GOWORK=off
WORKDIR /src
COPY go.mod go.sum ./
COPY . .
WORKDIR /src/examples
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" \
    # a comment inside the continuation
    -o /out/payment ./payment
RUN cd /src/deploy/probe && go build -o /out/probe . && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/payment /payment
COPY --from=build /out/probe /out/data /bin/
USER 65532:65532
HEALTHCHECK --interval=10s CMD ["/bin/probe", "http://127.0.0.1:3001/healthz"]
ENTRYPOINT ["/payment"]
`

func TestDockerfileCheckFindsEachProblem(t *testing.T) {
	root := repoRoot(t)
	d, err := ParseDockerfile("base", strings.NewReader(base))
	require.NoError(t, err)
	require.NoError(t, d.Check(root), "the base case passes")
	require.Len(t, d.Stages[0].Instructions, 7)
	run := d.Stages[0].Instructions[5]
	assert.Equal(t, 8, run.Line)
	assert.Equal(t, []string{"--mount=type=cache,target=/root/.cache/go-build"}, run.Flags)
	assert.Equal(t, `go build -ldflags="-s -w" -o /out/payment ./payment`, strings.Join(strings.Fields(run.Args[0]), " "))

	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"a missing COPY source", "COPY go.mod go.sum ./", "COPY go.mod go.sum nothing.here ./", "base:5: COPY source nothing.here does not exist"},
		{"a glob that matches nothing", "COPY go.mod go.sum ./", "COPY go.mod *.nothing ./", "COPY source *.nothing does not exist"},
		{"a COPY source outside the context", "COPY go.mod go.sum ./", "COPY ../etc/passwd ./", "lies outside the build context"},
		{"a package that does not exist", "./payment", "./paymnet", "holds no package main"},
		{"a package that is a library", "./payment\n", "./internal/svc\n", "examples/internal/svc holds no package main"},
		{"a package of another module", "RUN cd /src/deploy/probe && go build -o /out/probe .", "RUN go build -o /out/probe ../deploy/probe", "is in the module at deploy/probe, but with GOWORK=off"},
		{"a module path", "./payment\n", "github.com/taipattern/taikit/examples/payment\n", "only ./ directory paths are checked"},
		{"go build before the sources", "COPY . .\n", "COPY go.mod ./\n", "which no COPY . from the build context fills"},
		{"an -o without its value", "-o /out/payment ./payment", "./payment -o", "go build -o without its value"},
		{"a replaced module's go.mod not copied before go mod download", "COPY . .\n", "COPY examples/go.mod examples/go.sum ./examples/\nRUN cd examples && go mod download\nCOPY . .\n", "go mod download in /src/examples: the module's replace points at /src/heijunka/redisgcra, where no COPY has put its go.mod"},
		{"go mod download without a go.mod", "COPY go.mod go.sum ./", "RUN cd /src/examples && go mod download\nCOPY go.mod go.sum ./", "go mod download runs in /src/examples, where no COPY has put a go.mod"},
		{"copying what was not built", "COPY --from=build /out/payment /payment", "COPY --from=build /out/paymnet /payment", "source /out/paymnet is not made in that stage"},
		{"copying from a stage that does not exist", "--from=build /out/payment", "--from=builder /out/payment", "COPY --from=builder names no earlier stage"},
		{"an entrypoint nothing put there", `ENTRYPOINT ["/payment"]`, `ENTRYPOINT ["/deployment"]`, "ENTRYPOINT runs /deployment, which no COPY --from puts in the final image"},
		{"an entrypoint that is a directory", `ENTRYPOINT ["/payment"]`, `ENTRYPOINT ["/bin/data"]`, "which is not a binary go build made"},
		{"a shell-form entrypoint", `ENTRYPOINT ["/payment"]`, `ENTRYPOINT /payment`, "in shell form needs /bin/sh"},
		{"a healthcheck of a missing binary", `CMD ["/bin/probe"`, `CMD ["/bin/curl"`, "HEALTHCHECK runs /bin/curl"},
		{"no healthcheck", "HEALTHCHECK --interval=10s CMD", "LABEL x=", "no HEALTHCHECK in the final stage"},
		{"root", "USER 65532:65532", "USER root", "runs as root"},
		{"root by a number with leading zeros", "USER 65532:65532", "USER 00:65532", "runs as root (USER 00:65532)"},
		{"no user", "USER 65532:65532\n", "", "sets no USER"},
		{"a RUN in the final stage", "USER 65532:65532", "RUN mkdir /x\nUSER 65532:65532", "RUN in the final stage"},
		{"no entrypoint", `ENTRYPOINT ["/payment"]`, "", "has no ENTRYPOINT or CMD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(base, tc.old, tc.new, 1)
			require.NotEqual(t, base, src, "the case changes the base")
			d, err := ParseDockerfile("base", strings.NewReader(src))
			require.NoError(t, err)
			err = d.Check(root)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseDockerfileRefuses(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"an unknown instruction", "FROM x\nCOPYY a b\n", `x:2: unknown instruction "COPYY"`},
		{"no FROM", "# nothing\n", "no FROM"},
		{"an instruction before FROM", "RUN true\nFROM x\n", "RUN before the first FROM"},
		{"a bad exec form", "FROM x\nENTRYPOINT [\"/a\", 1]\n", "is not a JSON array of strings"},
		{"an empty exec form", "FROM x\nCMD []\n", "an empty exec form"},
		{"a trailing backslash", "FROM x\nRUN true \\\n", "ends in a backslash"},
		{"a FROM with too much", "FROM x y z w\n", "FROM takes an image"},
		{"a heredoc", "FROM x\nRUN <<EOF\ntrue\nEOF\n", "heredocs"},
		{"a bad HEALTHCHECK", "FROM x\nHEALTHCHECK probe\n", "HEALTHCHECK takes CMD or NONE"},
		{"an empty HEALTHCHECK CMD", "FROM x\nHEALTHCHECK CMD\n", "HEALTHCHECK CMD without a command"},
		{"an instruction without arguments", "FROM x\nWORKDIR\n", "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDockerfile("x", strings.NewReader(tc.src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestShellWords(t *testing.T) {
	got, err := shellWords(`cd "a b" && go build -ldflags='-s -w' -o x\ y ./p; mkdir -p /o || true | cat`)
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"cd", "a b"}, {"go", "build", "-ldflags=-s -w", "-o", "x y", "./p"}, {"mkdir", "-p", "/o"}, {"true"}, {"cat"}}, got)
	for _, bad := range []string{`echo 'x`, `echo "x`, `sleep 1 & echo`} {
		_, err := shellWords(bad)
		assert.Error(t, err, bad)
	}
}

func TestLocalReplaces(t *testing.T) {
	gomod := `module example.com/m

go 1.25.0

replace example.com/a => ../a // a comment

replace (
	example.com/b => ./b
	example.com/c v1.0.0 => example.com/c v1.1.0
	// example.com/d => ../d
	example.com/e => /abs/e
)

replace example.com/f v1.2.3 => ..
require example.com/g v1.0.0 // replace example.com/g => ../g
`
	assert.Equal(t, []string{"../a", "./b", "/abs/e", ".."}, localReplaces([]byte(gomod)))
}

// dockerignored reports whether a .dockerignore's patterns (the lines of
// b) leave path, relative to the build context, out of it: the last
// pattern that matches it or a directory above it decides, a "!" pattern
// taking it back in. Patterns are matched as Docker does: "*" and "?"
// within one path element, "**" across any number of them.
func dockerignored(t *testing.T, b []byte, path string) bool {
	t.Helper()
	out := false
	for line := range strings.Lines(string(b)) {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		keep := strings.HasPrefix(p, "!")
		// Docker reads a pattern cleaned, relative to the context's root.
		p = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(strings.TrimPrefix(p, "!"))), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$")
		if regexp.MustCompile(re.String()).MatchString(path) {
			out = !keep
		}
	}
	return out
}

func TestDockerignored(t *testing.T) {
	b := []byte("# c\n.git\nbin\n**/*.test\n**/testdata/rapid\n/.stack/\n!bin/keep\n")
	for path, want := range map[string]bool{
		".git": true, ".git/HEAD": true, "bin/x": true, "bin/keep": false, ".stack/data/js": true,
		"a/b/c.test": true, "c.test": true, "x/testdata/rapid/f": true, "x/testdata/other": false,
		"binary": false, "deploy/bin2": false, "go.mod": false,
	} {
		assert.Equal(t, want, dockerignored(t, b, path), path)
	}
}

// TestDockerignoreLeavesOutWhatGitIgnores holds each image's .dockerignore
// to what the repository's .gitignore ignores at its root — the local
// stack's data (make up's .stack: JetStream stores, Prometheus's TSDB,
// Redis's append-only file, logs), bin/, binaries go build leaves in a
// package's folder, coverage files: none is source, and COPY . . would
// send them with the context (gigabytes of a stack's data) and rebuild
// the image whenever they change.
func TestDockerignoreLeavesOutWhatGitIgnores(t *testing.T) {
	gi, err := os.ReadFile(filepath.Join(repoRoot(t), ".gitignore"))
	require.NoError(t, err)
	var paths []string
	for line := range strings.Lines(string(gi)) {
		p := strings.TrimSpace(line)
		if !strings.HasPrefix(p, "/") {
			continue
		}
		// A path the entry ignores: "/coverage.*" ignores coverage.x.
		paths = append(paths, strings.ReplaceAll(strings.Trim(p, "/"), "*", "x"))
	}
	require.Contains(t, paths, ".stack")
	files, err := filepath.Glob(deployPath(t, "docker", "*.Dockerfile"))
	require.NoError(t, err)
	require.Len(t, files, 3)
	for _, f := range files {
		b, err := os.ReadFile(f + ".dockerignore")
		require.NoError(t, err)
		for _, p := range paths {
			assert.True(t, dockerignored(t, b, p), "%s.dockerignore sends %s with the build context", filepath.Base(f), p)
		}
		assert.False(t, dockerignored(t, b, "examples/payment/main.go"), "%s.dockerignore leaves out the sources", filepath.Base(f))
	}
}
