//go:build unix

package kaizen

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenAuditFileSyncsTheDirectoryOfALinksTarget: a trail file opened
// through a symbolic link, which the open creates, has its name in the
// directory of the link's target: that directory is synced, so that a
// crash does not lose the file with its lines, not only the link's.
func TestOpenAuditFileSyncsTheDirectoryOfALinksTarget(t *testing.T) {
	dir := t.TempDir()
	linkDir, targetDir := filepath.Join(dir, "link"), filepath.Join(dir, "target")
	require.NoError(t, os.Mkdir(linkDir, 0o700))
	require.NoError(t, os.Mkdir(targetDir, 0o700))
	path := filepath.Join(linkDir, "audit.jsonl")
	require.NoError(t, os.Symlink(filepath.Join(targetDir, "audit.jsonl"), path))
	var synced []string
	dirSyncing = func(dir string) { synced = append(synced, dir) }
	t.Cleanup(func() { dirSyncing = nil })

	a, _, err := OpenAuditFile(path, AuditOptions{})
	require.NoError(t, err)
	require.NoError(t, a.Shutdown(t.Context()))
	assert.FileExists(t, filepath.Join(targetDir, "audit.jsonl"))
	real, err := filepath.EvalSymlinks(targetDir)
	require.NoError(t, err)
	assert.Contains(t, synced, real, "the directory that holds the file's name is synced")
}
