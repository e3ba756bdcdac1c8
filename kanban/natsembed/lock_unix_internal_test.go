//go:build unix

package natsembed

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A lock the file system refuses (one without locks, as some network file
// systems are) is not another server's: the error says what failed and is
// not ErrStoreInUse, which would send the user looking for a server that
// does not run.
func TestStartOnAFileSystemWithoutLocks(t *testing.T) {
	dir := t.TempDir()
	srv, err := Start(context.Background(), Options{StoreDir: dir, InProcess: true})
	require.NoError(t, err)
	require.NoError(t, srv.Shutdown(context.Background()))
	// The PID of a server gone, as after kill -9.
	require.NoError(t, os.WriteFile(dir+"/"+LockFile, []byte("1\n"), 0o600))
	lock := lockFile
	lockFile = func(*os.File) error { return syscall.ENOLCK }
	t.Cleanup(func() { lockFile = lock })

	srv, err = Start(context.Background(), Options{StoreDir: dir, InProcess: true})
	if err == nil {
		_ = srv.Shutdown(context.Background())
	}
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrStoreInUse)
	require.ErrorIs(t, err, syscall.ENOLCK)
	require.ErrorContains(t, err, "natsembed: store directory: cannot lock "+dir)
	require.NotContains(t, err.Error(), "process")
}
