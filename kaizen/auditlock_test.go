//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package kaizen_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

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
