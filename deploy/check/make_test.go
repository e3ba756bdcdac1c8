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
