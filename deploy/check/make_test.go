package check

import (
	"os"
	"path/filepath"
	"regexp"
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
