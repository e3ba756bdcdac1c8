package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMakeHelpListsEveryTarget runs make help: every target the Makefile
// documents with "## " is listed once, each name followed by at least two
// spaces and every description starting in one column, so that no name
// runs into its description.
func TestMakeHelpListsEveryTarget(t *testing.T) {
	mk := tool(t, "make", "make")
	out, ok := runTool(t, repoRoot(t), nil, mk, "-s", "help")
	require.True(t, ok, out)

	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	require.NoError(t, err)
	var documented []string
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):.*## `).FindAllStringSubmatch(string(b), -1) {
		documented = append(documented, m[1])
	}
	require.Contains(t, documented, "stress-deployment")

	line := regexp.MustCompile(`^  (\S+)( {2,})\S`)
	column := -1
	var listed []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		m := line.FindStringSubmatchIndex(l)
		if !assert.NotNil(t, m, "make help: %q is not a name, two spaces or more and a description", l) {
			continue
		}
		listed = append(listed, l[m[2]:m[3]])
		if column < 0 {
			column = m[5]
		}
		assert.Equal(t, column, m[5], "make help: %q starts its description in another column", l)
	}
	assert.Equal(t, documented, listed)
}

// TestMakeStackTargetsTakePathsWithSpaces runs make up, status, logs and
// down with the stack's directory and bin/ under names that hold a space,
// as a checkout under "My Projects" has. GO=true builds nothing, and a
// script in place of bin/stack prints the arguments it was given, one a
// line: each path arrives whole.
func TestMakeStackTargetsTakePathsWithSpaces(t *testing.T) {
	mk := tool(t, "make", "make")
	dir := filepath.Join(t.TempDir(), "my projects")
	bin, data := filepath.Join(dir, "bin"), filepath.Join(dir, "stack data")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "stack"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\n"), 0o755))
	for _, target := range []string{"status", "logs", "down"} {
		out, ok := runTool(t, repoRoot(t), nil, mk, "-s", target, "GO=true", "STACK_DIR="+data, "BIN="+bin)
		require.True(t, ok, "make %s: %s", target, out)
		assert.True(t, strings.HasPrefix(out, "-dir\n"+data+"\n-bin\n"+bin+"\n-repo\n"+repoRoot(t)+"\n"+target+"\n"), "make %s gave bin/stack:\n%s", target, out)
	}
}

// TestMakeUpBuildsSafelyTwiceAtOnce runs two make up at once on one bin/:
// each builds the binaries, and no build writes a file another is writing
// (nor one a running stack executes). A stand-in for go records a build
// that finds its output being written, and holds each build until the
// other make's build of the same binary has begun, so the two overlap.
func TestMakeUpBuildsSafelyTwiceAtOnce(t *testing.T) {
	mk := tool(t, "make", "make")
	dir := t.TempDir()
	bin, stubs, sync := filepath.Join(dir, "bin"), filepath.Join(dir, "stubs"), filepath.Join(dir, "sync")
	races := filepath.Join(dir, "races")
	for _, d := range []string{bin, stubs, sync} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	// The servers install looks for, and jaeger, are there already.
	for _, p := range []string{"nats-server", "redis-server", "prometheus", "prometheus-alertmanager"} {
		require.NoError(t, os.WriteFile(filepath.Join(stubs, p), []byte("#!/bin/sh\n"), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(bin, "jaeger"), []byte("#!/bin/sh\n"), 0o755))
	// go build -o OUT PACKAGE
	goStub := filepath.Join(stubs, "go")
	require.NoError(t, os.WriteFile(goStub, []byte(`#!/bin/sh
out=$3 name=${4##*/}
mkdir "$out.writing" 2>/dev/null || echo "$out" >>"$RACES"
: >"$SYNC/$name.$$"
i=0
while [ "$(ls "$SYNC" | grep -c "^$name\.")" -lt 2 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
printf '#!/bin/sh\necho built %s\n' "$name" >"$out"
chmod +x "$out"
rmdir "$out.writing" 2>/dev/null
exit 0
`), 0o755))
	env := []string{"PATH=" + stubs + string(filepath.ListSeparator) + os.Getenv("PATH"), "RACES=" + races, "SYNC=" + sync}
	type result struct {
		out string
		ok  bool
	}
	results := make(chan result, 2)
	for i := range 2 {
		go func() {
			// No require in this goroutine: runTool's own checks are the
			// test's, so each outcome is sent back.
			cmd := exec.Command(mk, "-s", "up", "GO="+goStub, "BIN="+bin, "STACK_DIR="+filepath.Join(dir, "stack"+strconv.Itoa(i)))
			cmd.Dir = repoRoot(t)
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			results <- result{string(out), err == nil}
		}()
	}
	for range 2 {
		r := <-results
		assert.True(t, r.ok, "make up: %s", r.out)
	}
	b, _ := os.ReadFile(races)
	assert.Empty(t, string(b), "builds that wrote a file another build was writing")
	for _, name := range []string{"payment", "deployment", "stack"} {
		out, err := exec.Command(filepath.Join(bin, name)).Output()
		require.NoError(t, err, name)
		assert.Equal(t, "built "+name+"\n", string(out))
	}
	entries, err := os.ReadDir(bin)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"jaeger", "payment", "deployment", "stack"}, names, "nothing else is left in bin/")
}

// TestMakeDeploySecretsTakesAPathWithSpaces runs make deploy-secrets with
// its directory under a name that holds a space, as the default
// (deploy/secrets of a checkout under "My Projects") has: the six files
// are written there, and nothing beside it.
func TestMakeDeploySecretsTakesAPathWithSpaces(t *testing.T) {
	mk := tool(t, "make", "make")
	dir := t.TempDir()
	secrets := filepath.Join(dir, "my projects", "secrets")
	out, ok := runTool(t, repoRoot(t), nil, mk, "-s", "deploy-secrets", "DEPLOY_SECRETS="+secrets)
	require.True(t, ok, "make deploy-secrets: %s", out)
	for _, f := range []string{"payment_api_token", "payment_admin_token", "payment_audit_key",
		"deployment_api_token", "deployment_admin_token", "deployment_audit_key"} {
		b, err := os.ReadFile(filepath.Join(secrets, f))
		if assert.NoError(t, err, out) {
			assert.Regexp(t, `^[0-9a-f]{64}$`, string(b), f)
		}
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"my projects"}, names, "what make deploy-secrets made beside the directory")
}

// TestMakeStressTargetsTakePathsWithSpaces runs make stress-payment and
// stress-deployment with bin/ and the temporary directory under names that
// hold a space. Stand-ins for go, curl and the programs built record what
// each was given: each binary is built and run at its whole path, and the
// service's data directory, given whole, is removed at the end, and only
// it.
func TestMakeStressTargetsTakePathsWithSpaces(t *testing.T) {
	mk := tool(t, "make", "make")
	dir := t.TempDir()
	bin, stubs, tmp := filepath.Join(dir, "my projects", "bin"), filepath.Join(dir, "stubs"), filepath.Join(dir, "my tmp")
	for _, d := range []string{bin, stubs, tmp} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	// The data directory's path holds a space too: its parent, "my", must
	// outlive the run, as rm -rf of the path split at the space would not.
	keep := filepath.Join(dir, "my")
	require.NoError(t, os.MkdirAll(keep, 0o755))
	log := filepath.Join(dir, "log")
	// go build -o OUT PACKAGE writes a program that logs its arguments,
	// one a line, and, for the service, the data directory's existence.
	require.NoError(t, os.WriteFile(filepath.Join(stubs, "go"), []byte(`#!/bin/sh
[ "$1 $2 $#" = "build -o 4" ] || { echo "go $*" >>"$LOG"; exit 1; }
printf '#!/bin/sh\nprintf "%%s\\n" "$0" "$@" >>"$LOG"\n' >"$3"
chmod +x "$3"
`), 0o755))
	// The service is healthy once it has run: a service stopped before
	// then would log nothing.
	require.NoError(t, os.WriteFile(filepath.Join(stubs, "curl"), []byte("#!/bin/sh\ngrep -q -- -data-dir \"$LOG\"\n"), 0o755))
	env := []string{"PATH=" + stubs + string(filepath.ListSeparator) + os.Getenv("PATH"), "LOG=" + log, "TMPDIR=" + tmp}
	for target, want := range map[string][]string{
		"stress-payment":    {filepath.Join(bin, "payment"), filepath.Join(bin, "loadgen")},
		"stress-deployment": {filepath.Join(bin, "deployment"), filepath.Join(bin, "stress-deployment")},
	} {
		require.NoError(t, os.RemoveAll(log))
		out, ok := runTool(t, repoRoot(t), env, mk, "-s", target, "GO=go", "BIN="+bin)
		b, _ := os.ReadFile(log)
		require.True(t, ok, "make %s: %s\nlog:\n%s", target, out, b)
		lines := strings.Split(string(b), "\n")
		for _, w := range want {
			assert.Contains(t, lines, w, "make %s ran %s", target, w)
		}
		// The service got -data-dir DIR: a fresh directory in TMPDIR, gone
		// once the target ends.
		data := ""
		for i, l := range lines {
			if l == "-data-dir" && i+1 < len(lines) {
				data = lines[i+1]
			}
		}
		assert.True(t, strings.HasPrefix(data, tmp+string(filepath.Separator)), "make %s gave -data-dir %q\nlog:\n%s", target, data, b)
		assert.NoDirExists(t, data, "make %s left the service's data", target)
		assert.DirExists(t, keep, "make %s removed what was not its", target)
		assert.DirExists(t, tmp, "make %s removed what was not its", target)
	}
}

// TestMakeStressTargetsRefuseAPortTaken runs make stress-payment and
// stress-deployment while another server answers on the service's port,
// as the local stack's payment-1 and deployment-1 do: the service started
// could not listen, and the load would go to that other server. The target
// fails, naming the address, and starts nothing.
func TestMakeStressTargetsRefuseAPortTaken(t *testing.T) {
	mk := tool(t, "make", "make")
	dir := t.TempDir()
	bin, stubs := filepath.Join(dir, "bin"), filepath.Join(dir, "stubs")
	for _, d := range []string{bin, stubs} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	log := filepath.Join(dir, "log")
	require.NoError(t, os.WriteFile(filepath.Join(stubs, "go"), []byte(`#!/bin/sh
printf '#!/bin/sh\necho "$0" >>"$LOG"\nexit 1\n' >"$3"
chmod +x "$3"
`), 0o755))
	// Another server answers every health check.
	require.NoError(t, os.WriteFile(filepath.Join(stubs, "curl"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	env := []string{"PATH=" + stubs + string(filepath.ListSeparator) + os.Getenv("PATH"), "LOG=" + log}
	for target, addr := range map[string]string{"stress-payment": "127.0.0.1:3001", "stress-deployment": "127.0.0.1:3002"} {
		require.NoError(t, os.RemoveAll(log))
		out, ok := runTool(t, repoRoot(t), env, mk, "-s", target, "GO=go", "BIN="+bin)
		assert.False(t, ok, "make %s drove another server: %s", target, out)
		assert.Contains(t, out, "another server answers on "+addr, "make %s", target)
		b, _ := os.ReadFile(log)
		assert.Empty(t, string(b), "make %s ran", target)
	}
}

// TestInstallTakesARelativeBin runs deploy/local/install with BIN given
// relative to the repository's root, as make up BIN=bin gives it: jaeger,
// built from deploy/tools, lands in that BIN beside the services, where
// the stack looks for it, and not in a BIN under deploy/tools. A stand-in
// for go writes each binary.
func TestInstallTakesARelativeBin(t *testing.T) {
	bash := tool(t, "bash", "bash")
	dir := t.TempDir()
	bin, stubs := filepath.Join(dir, "bin"), filepath.Join(dir, "stubs")
	require.NoError(t, os.MkdirAll(stubs, 0o755))
	// The servers install looks for are there already.
	for _, p := range []string{"nats-server", "redis-server", "prometheus", "prometheus-alertmanager"} {
		require.NoError(t, os.WriteFile(filepath.Join(stubs, p), []byte("#!/bin/sh\n"), 0o755))
	}
	// go build -o OUT PACKAGE
	goStub := filepath.Join(stubs, "go")
	require.NoError(t, os.WriteFile(goStub, []byte("#!/bin/sh\nprintf '#!/bin/sh\\necho built %s\\n' \"${4##*/}\" >\"$3\" && chmod +x \"$3\"\n"), 0o755))
	rel, err := filepath.Rel(repoRoot(t), bin)
	require.NoError(t, err)
	require.False(t, filepath.IsAbs(rel))
	env := []string{"PATH=" + stubs + string(filepath.ListSeparator) + os.Getenv("PATH"), "BIN=" + rel, "GO=" + goStub}
	out, ok := runTool(t, filepath.Join(repoRoot(t), "deploy"), env, bash, filepath.Join(repoRoot(t), "deploy", "local", "install"))
	require.True(t, ok, "install: %s", out)
	for _, name := range []string{"jaeger", "payment", "deployment", "stack"} {
		got, err := exec.Command(filepath.Join(bin, name)).Output()
		if assert.NoError(t, err, "%s in BIN=%s\n%s", name, rel, out) {
			assert.Equal(t, "built "+name+"\n", string(got))
		}
	}
	assert.NoDirExists(t, filepath.Join(repoRoot(t), "deploy", "tools", rel), "install wrote a BIN under deploy/tools")
}
