//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package kaizen

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenAuditFileRotatedRefusesAFIFOSwappedIn: the file before the
// last, regular when OpenAuditFile looks at it, is replaced by a FIFO as
// it is opened to read its last hash. The open neither waits for a
// writer of the FIFO nor reads it: it fails, naming the file.
func TestOpenAuditFileRotatedRefusesAFIFOSwappedIn(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	require.NoError(t, os.WriteFile(path+".000001", nil, 0o600))
	edgeOpening = func(p string) {
		edgeOpening = nil
		require.Equal(t, path, p)
		require.NoError(t, os.Remove(p))
		require.NoError(t, syscall.Mkfifo(p, 0o600))
	}
	t.Cleanup(func() { edgeOpening = nil })
	done := make(chan error, 1)
	go func() {
		_, _, err := OpenAuditFile(path, AuditOptions{RotateBytes: 1 << 20})
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		// Let the open that waits for a writer go on, and fail.
		w, werr := os.OpenFile(path, os.O_WRONLY, 0)
		require.NoError(t, werr)
		w.Close()
		<-done
		t.Fatal("OpenAuditFile waited for a writer of the FIFO")
	}
	require.Error(t, err)
	assert.ErrorContains(t, err, path+" is not a regular file")
}
