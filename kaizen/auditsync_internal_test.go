package kaizen

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// TestOpenAuditFileSyncsTheLinesItFinds: the lines a file holds at open
// may be in the operating system's cache alone (a process killed between
// its writes and its Flush), and Last reports the last of them as durable
// from the start, and still after a Flush with no line since: the open
// syncs the file, repaired or not.
func TestOpenAuditFileSyncsTheLinesItFinds(t *testing.T) {
	var trail bytes.Buffer
	w, err := NewAudit(&trail, AuditOptions{})
	require.NoError(t, err)
	for _, id := range []string{"1", "2"} {
		w.Observe(t.Context(), tai.Record{ID: id, Kind: "k"})
	}
	require.NoError(t, w.Shutdown(t.Context()))
	last, _ := w.Last()

	path := filepath.Join(t.TempDir(), "audit.jsonl")
	require.NoError(t, os.WriteFile(path, trail.Bytes(), 0o600))
	var synced []string
	fileSyncing = func(p string) { synced = append(synced, p) }
	t.Cleanup(func() { fileSyncing = nil })

	a, state, err := OpenAuditFile(path, AuditOptions{})
	require.NoError(t, err)
	assert.Zero(t, state.Cut)
	assert.False(t, state.NewlineAdded)
	assert.Equal(t, []string{path}, synced, "the lines found are synced before Last reports them durable")
	require.NoError(t, a.Flush(t.Context()))
	h, n := a.Last()
	assert.Equal(t, last, h)
	assert.Equal(t, uint64(2), n)
	require.NoError(t, a.Shutdown(t.Context()))
}
