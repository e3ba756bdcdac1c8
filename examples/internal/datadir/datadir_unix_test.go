//go:build unix

package datadir

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A lock file that is a symbolic link is not followed: in a directory
// another user could write to (the default one is under /tmp), a link
// planted there would have had Acquire truncate the file it points at.
func TestLockFileSymlinkNotFollowed(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "precious")
	require.NoError(t, os.WriteFile(target, []byte("keep me"), 0o600))
	require.NoError(t, os.Symlink(target, filepath.Join(dir, LockFile)))

	l, err := Acquire(dir)
	if err == nil {
		_ = l.Release()
	}
	require.Error(t, err)
	require.ErrorContains(t, err, "data directory")
	require.NotErrorIs(t, err, ErrInUse)
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(b))
}
