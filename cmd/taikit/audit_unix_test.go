//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
)

// A FILE that is a device is refused at once, with exit status 1:
// /dev/zero reads NUL bytes without end, which were taken for the end of
// a line cut short for as long as they lasted. A FILE that is a symbolic link whose target does not
// exist (the last file of a rotated series, found by PATH*) is named as
// such, not only as a file that does not exist.
func TestAuditVerifyRefusesWhatIsNotATrailFile(t *testing.T) {
	f := newFixture(t)
	series := filepath.Join(f.dir, "series.jsonl")
	writeTrail(t, series, kaizen.AuditOptions{RotateBytes: 1}, 1) // one write, one rotation
	link := series + ".000002"
	target := filepath.Join(f.dir, "archive", "series.jsonl.000002")
	require.NoError(t, os.Symlink(target, link))
	files, err := filepath.Glob(series + "*")
	require.NoError(t, err)
	require.Equal(t, []string{series, series + ".000001", link}, files)

	for _, c := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"/dev/zero", []string{"/dev/zero"}, "/dev/zero: open /dev/zero: not a regular file but a character device: an audit trail is a regular file\n"},
		{"/dev/zero after a file", []string{f.plain, "/dev/zero"}, "/dev/zero: open /dev/zero: not a regular file but a character device: an audit trail is a regular file\n"},
		{"a dangling link ending a series", files, fmt.Sprintf("%s: open %s: no such file or directory: it is a symbolic link to %s, which does not exist\n", link, link, target)},
	} {
		t.Run(c.name, func(t *testing.T) {
			type result struct {
				code           int
				stdout, stderr string
			}
			done := make(chan result, 1)
			go func() {
				code, stdout, stderr := runCLI(append([]string{"audit", "verify"}, c.args...)...)
				done <- result{code, stdout, stderr}
			}()
			select {
			case r := <-done:
				assert.Equal(t, 1, r.code)
				assert.Empty(t, r.stdout)
				assert.Equal(t, c.stderr, r.stderr)
			case <-time.After(10 * time.Second):
				t.Fatal("audit verify reads on")
			}
		})
	}
}

// A FILE that is a pipe (here a FIFO; a shell's <(zcat FILE.gz) is one
// too) is read from its writer and verifies as the file written into it.
func TestAuditVerifyReadsAPipe(t *testing.T) {
	f := newFixture(t)
	trail, err := os.ReadFile(f.plain)
	require.NoError(t, err)
	fifo := filepath.Join(f.dir, "audit.fifo")
	require.NoError(t, mkfifo(fifo))
	wrote := make(chan error, 1)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			_, err = w.Write(trail)
			err = errors.Join(err, w.Close())
		}
		wrote <- err
	}()
	code, stdout, stderr := runCLI("audit", "verify", fifo)
	require.NoError(t, <-wrote)
	wantCode, wantOut, _ := runCLI("audit", "verify", f.plain)
	require.Equal(t, 0, wantCode)
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, strings.Replace(wantOut, f.plain, fifo, 1), stdout)
}

// The check that no trail file is given twice compares each file with
// the files given before it of the same identity only, not with every
// one: a rotated trail of tens of thousands of files (PATH*) was
// compared pair by pair, and took minutes before the first line was
// read.
func TestDistinctFilesComparesFewPairs(t *testing.T) {
	dir := t.TempDir()
	const n = 2000
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("audit.jsonl.%06d", i))
		require.NoError(t, os.WriteFile(paths[i], nil, 0o600))
	}
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(paths[n/2], link))

	calls := 0
	t.Cleanup(func() { sameFile = os.SameFile })
	sameFile = func(a, b os.FileInfo) bool {
		calls++
		return os.SameFile(a, b)
	}
	require.NoError(t, distinctFiles("", paths))
	assert.LessOrEqual(t, calls, n, "files compared")

	calls = 0
	err := distinctFiles("", append(slices.Clone(paths), link))
	assert.EqualError(t, err, link+" is the file "+paths[n/2]+" given before: each trail is read once")
	assert.LessOrEqual(t, calls, n+1, "files compared")
	assert.EqualError(t, distinctFiles("", append(slices.Clone(paths), paths[3])), paths[3]+" is given twice: each trail is read once")
}

// A -key-file that is a symbolic link whose target does not exist (a
// secret mounted as a link into a volume that is gone) is named as such,
// as a FILE is, not only as a file that does not exist.
func TestAuditVerifyKeyFileDanglingLink(t *testing.T) {
	f := newFixture(t)
	link := filepath.Join(f.dir, "key-link")
	target := filepath.Join(f.dir, "secrets", "..data", "audit-key")
	require.NoError(t, os.Symlink(target, link))
	runCLICases(t, []cliCase{
		{"dangling link", []string{"audit", "verify", "-key-file", link, f.one}, 2, "",
			"taikit audit verify: -key-file: open " + link + ": no such file or directory: it is a symbolic link to " + target + ", which does not exist\n"},
	})
}
