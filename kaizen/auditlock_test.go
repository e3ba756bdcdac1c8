//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package kaizen_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/kaizen"
)

// TestOpenAuditFileRefusesASecondWriter: while one Audit appends to a
// file, opening it again (directly or through a symlink) fails with
// ErrAuditFileInUse and leaves the file as it is; two writers forked the
// chain, and the second one could cut off a line the first was writing
// as if a crash had torn it. Once the first shuts down, the file opens.
func TestOpenAuditFileRefusesASecondWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	link := filepath.Join(dir, "link.jsonl")
	require.NoError(t, os.Symlink(path, link))
	ctx := context.Background()

	a, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{})
	require.NoError(t, err)
	a.Observe(ctx, record("1"))
	require.NoError(t, a.Flush(ctx))
	torn := []byte(`{"time":"2026-03-01T12:00:00Z","id":"half`)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write(torn) // as a write in progress looks to a reader
	require.NoError(t, err)
	require.NoError(t, f.Close())

	for _, p := range []string{path, link} {
		_, _, err = kaizen.OpenAuditFile(p, kaizen.AuditOptions{})
		require.ErrorIs(t, err, kaizen.ErrAuditFileInUse, p)
		assert.EqualError(t, err, "kaizen: audit trail file in use: "+p+" is appended to by another Audit, in this process or another")
	}
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.HasSuffix(raw, torn), "the file is left as it is")

	require.NoError(t, os.Truncate(path, int64(len(raw)-len(torn))))
	require.NoError(t, a.Shutdown(ctx))
	state, sum := appendTrail(t, link, kaizen.AuditOptions{}, "2")
	assert.Equal(t, uint64(1), state.Lines)
	assert.Equal(t, uint64(2), sum.Lines)
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
	require.NoError(t, err)
}

// TestOpenAuditFileReleasesTheLockOnFailure: an open that fails leaves
// no lock behind.
func TestOpenAuditFileReleasesTheLockOnFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	require.NoError(t, os.WriteFile(path, []byte("not a line\n"), 0o600))
	_, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{})
	require.ErrorIs(t, err, kaizen.ErrAuditTampered)
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	appendTrail(t, path, kaizen.AuditOptions{}, "1")
}

// lockChildEnv names the trail file the test binary, run again by
// TestOpenAuditFileRefusesAWriterInAnotherProcess, holds open.
const lockChildEnv = "KAIZEN_TEST_LOCK_CHILD"

// TestOpenAuditFileRefusesAWriterInAnotherProcess: while an Audit in
// another process appends to a file, OpenAuditFile fails with
// ErrAuditFileInUse and leaves the file as it is; once that process has
// shut its Audit down, the file opens and the chain goes on from its
// last line.
func TestOpenAuditFileRefusesAWriterInAnotherProcess(t *testing.T) {
	if path := os.Getenv(lockChildEnv); path != "" {
		holdUntilStdinEnds(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOpenAuditFileRefusesAWriterInAnotherProcess$")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	held, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "the child reports (or the deadline kills it)")
	require.Equal(t, "holding\n", held)
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	_, _, err = kaizen.OpenAuditFile(path, kaizen.AuditOptions{})
	require.ErrorIs(t, err, kaizen.ErrAuditFileInUse)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the file is left as it is")

	require.NoError(t, in.Close()) // the child shuts its Audit down
	_, err = io.Copy(io.Discard, out)
	require.NoError(t, err)
	require.NoError(t, cmd.Wait())
	state, sum := appendTrail(t, path, kaizen.AuditOptions{}, "parent")
	assert.Equal(t, uint64(2), state.Lines, "the child's lines")
	assert.Equal(t, uint64(3), sum.Lines)
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Expect: sum.Last}, path)
	require.NoError(t, err)
}

// holdUntilStdinEnds is the child of
// TestOpenAuditFileRefusesAWriterInAnotherProcess: it appends a line,
// says so on stdout, and holds the file until its stdin ends, then
// appends one more and shuts its Audit down.
func holdUntilStdinEnds(t *testing.T, path string) {
	ctx := context.Background()
	a, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{})
	require.NoError(t, err)
	a.Observe(ctx, record("child-1"))
	require.NoError(t, a.Flush(ctx))
	fmt.Println("holding")
	_, err = io.Copy(io.Discard, os.Stdin)
	require.NoError(t, err)
	a.Observe(ctx, record("child-2"))
	require.NoError(t, a.Shutdown(ctx))
}
