package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sample is a package of two functions and tests that tell their mutants
// apart to different degrees:
//
//   - "x > 0" has the schema mutants "x >= 0" and "x <= 0"; only the tests
//     and subtests named Boundary try x = 0, so only they kill ">=".
//   - "a + b" has the mutant "a - b", built on its own (arithmetic is not
//     in the schema); only TestSum and TestTable/loose check a sum.
var sample = map[string]string{
	"go.mod": "module example.com/sample\n\ngo 1.26\n",
	"sample.go": `package sample

// Positive reports whether x is above zero.
func Positive(x int) bool { return x > 0 }

// Sum adds.
func Sum(a, b int) int { return a + b }
`,
	"sample_test.go": `package sample

import "testing"

func TestPositiveBoundary(t *testing.T) {
	if Positive(0) || !Positive(1) {
		t.Fatal("wrong at the boundary")
	}
}

func TestPositiveLoose(t *testing.T) {
	if !Positive(5) || Positive(-5) {
		t.Fatal("wrong far from the boundary")
	}
}

func TestSum(t *testing.T) {
	if Sum(2, 3) != 5 {
		t.Fatal("wrong sum")
	}
}

func TestTable(t *testing.T) {
	t.Run("boundary", func(t *testing.T) {
		if Positive(0) {
			t.Fatal("wrong at the boundary")
		}
	})
	t.Run("loose", func(t *testing.T) {
		if !Positive(5) || Sum(2, 3) != 5 {
			t.Fatal("wrong far from the boundary")
		}
	})
}
`,
}

const (
	keyGEQ = `sample.go:Positive: "x > 0" → "x >= 0"`
	keyLEQ = `sample.go:Positive: "x > 0" → "x <= 0"`
	keySub = `sample.go:Sum: "a + b" → "a - b"`
)

func writeSample(t *testing.T) string {
	t.Helper()
	return writeModule(t, sample)
}

// writeModule writes the files of a module of its own, outside this
// workspace, and makes it the working directory.
func writeModule(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644))
	}
	// The sample is a module of its own, outside this workspace.
	t.Setenv("GOWORK", "off")
	t.Setenv("GOFLAGS", "-mod=mod")
	t.Chdir(dir)
	return dir
}

// mutate runs the command on the sample with the -run filter and returns
// its report.
func mutate(t *testing.T, dir, filter string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, log bytes.Buffer
	_, err := run(ctx, config{pkg: dir, timeout: time.Minute, jobs: 1, run: filter, stdout: &out, stderr: &log})
	t.Logf("progress:\n%s", log.String())
	return out.String(), err
}

func TestRunFilter(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs test binaries")
	}
	dir := writeSample(t)
	for _, tc := range []struct {
		name, filter string
		survivors    []string // in the report's order
		killed       []string
		table        string // the package's line of the table, spaces squeezed
	}{
		{"no filter: every test", "", nil, []string{keyGEQ, keyLEQ, keySub}, "3 3 0 0 0 0 100.0%"},
		{"loose tests only", "TestPositiveLoose", []string{keyGEQ, keySub + "  (no test reaches it)"}, []string{keyLEQ}, "3 1 1 1 0 0 33.3%"},
		{"alternation", "TestPositiveLoose|TestSum", []string{keyGEQ}, []string{keyLEQ, keySub}, "3 2 1 0 0 0 66.7%"},
		{"a subtest", "TestTable/loose", []string{keyGEQ}, []string{keyLEQ, keySub}, "3 2 1 0 0 0 66.7%"},
		{"the other subtest", "TestTable/boundary", []string{keySub + "  (no test reaches it)"}, []string{keyGEQ, keyLEQ}, "3 2 0 1 0 0 66.7%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := mutate(t, dir, tc.filter)
			require.NoError(t, err)
			if tc.filter != "" {
				assert.Contains(t, out, `# tests run: -run "`+tc.filter+`"`)
			} else {
				assert.NotContains(t, out, "# tests run")
			}
			for _, k := range tc.survivors {
				assert.Contains(t, out, "\n"+k+"\n", "survives")
			}
			for _, k := range tc.killed {
				assert.NotContains(t, out, k, "killed, so not listed")
			}
			assert.Contains(t, spaces.ReplaceAllString(out, " "), "example.com/sample "+tc.table, out)
		})
	}
}

func TestRunFilterRejected(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs test binaries")
	}
	dir := writeSample(t)
	_, err := mutate(t, dir, "Test(")
	require.ErrorContains(t, err, `-run "Test(": error parsing regexp`)
	_, err = mutate(t, dir, "TestNothingOfTheSort")
	require.ErrorContains(t, err, `no test of example.com/sample matching -run "TestNothingOfTheSort" reaches its code`)
}

// A mutant that drops the only use of a variable does not compile on its
// own ("declared and not used"), though its branch of the schema does,
// where the original beside it still uses the variable: it is not built,
// whatever the tests would say of it.
func TestMutantThatOnlyTheSchemaCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs test binaries")
	}
	dir := writeModule(t, map[string]string{
		"go.mod": "module example.com/sample\n\ngo 1.26\n",
		"sample.go": `package sample

import "strconv"

// Parse reads a number.
func Parse(s string) (int, error) {
	n, err := strconv.Atoi(s)
	return n, err
}
`,
		"sample_test.go": `package sample

import "testing"

func TestParse(t *testing.T) {
	if _, err := Parse("x"); err == nil {
		t.Fatal("no error")
	}
}
`,
	})
	out, err := mutate(t, dir, "")
	require.NoError(t, err)
	// mutants, killed, survived, uncovered, equivalent, not built, score
	assert.Contains(t, spaces.ReplaceAllString(out, " "), "example.com/sample 1 0 0 0 0 1 100.0%", out)
}
