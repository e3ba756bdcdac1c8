//go:build unix

package natsembed_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/taipattern/taikit/kanban/natsembed"
)

// Start on a port in use fails at once, naming the address, instead of
// waiting out ReadyTimeout.
func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	began := time.Now()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{Port: port, StoreDir: dir, ReadyTimeout: 20 * time.Second})
	require.Error(t, err)
	assert.Nil(t, srv)
	assert.Less(t, time.Since(began), 10*time.Second, "no wait for ReadyTimeout")
	assert.ErrorContains(t, err, "natsembed: cannot listen on 127.0.0.1:"+strconv.Itoa(port))
	assert.ErrorContains(t, err, "address already in use")
	assert.ErrorIs(t, err, syscall.EADDRINUSE)

	// The failed start let go of the store: a server starts on it.
	srv, err = natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir})
	require.NoError(t, err)
	assert.NoError(t, srv.Shutdown(context.Background()))
}

// The lock is held for the whole life of the server, against any open of
// the lock file, as another process's would be.
func TestStoreLockFile(t *testing.T) {
	dir := t.TempDir()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, InProcess: true})
	require.NoError(t, err)
	f, err := os.Open(filepath.Join(dir, natsembed.LockFile))
	require.NoError(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(os.Getpid())+"\n", string(b), "the holder's process ID")
	assert.Error(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), "held while the server runs")
	require.NoError(t, srv.Shutdown(context.Background()))
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), "released by Shutdown")
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_UN))
}

// A LockFile that is a symbolic link is not followed: a link planted in a
// StoreDir others could write to would have had Start truncate the file it
// points at.
func TestLockFileSymlinkNotFollowed(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "precious")
	require.NoError(t, os.WriteFile(target, []byte("keep me"), 0o600))
	require.NoError(t, os.Symlink(target, filepath.Join(dir, natsembed.LockFile)))

	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, InProcess: true})
	if err == nil {
		_ = srv.Shutdown(context.Background())
	}
	require.Error(t, err)
	assert.ErrorContains(t, err, "natsembed: store directory")
	assert.NotErrorIs(t, err, natsembed.ErrStoreInUse)
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(b))
}
