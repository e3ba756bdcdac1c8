//go:build unix

package datadir

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
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

// A process that opened LOCK just before its holder gave the directory
// back and removed the file (as svc.Listen does with a directory it made)
// locks the removed file. A third process then creates a new LOCK and
// locks that: two processes held the directory at once.
func TestLockOnARemovedFileIsNotHeld(t *testing.T) {
	dir := t.TempDir()
	a, err := Acquire(dir)
	require.NoError(t, err)
	var c *Lock
	var cErr error
	opened = func() {
		opened = func() {}
		require.NoError(t, a.Release())
		require.NoError(t, os.Remove(filepath.Join(dir, LockFile)))
		c, cErr = Acquire(dir)
	}
	t.Cleanup(func() { opened = func() {} })
	b, bErr := Acquire(dir)
	require.NoError(t, cErr)
	defer c.Release()
	if bErr == nil {
		_ = b.Release()
	}
	require.ErrorIs(t, bErr, ErrInUse, "the directory is held by the process that took it after it was given back")
}

// Discard removes LOCK while it still holds it: a process that opened the
// file meanwhile takes the new one, and holds the directory alone.
func TestDiscardRemovesTheLockFile(t *testing.T) {
	dir := t.TempDir()
	a, err := Acquire(dir)
	require.NoError(t, err)
	opened = func() {
		opened = func() {}
		require.NoError(t, a.Discard())
	}
	t.Cleanup(func() { opened = func() {} })
	b, err := Acquire(dir)
	require.NoError(t, err, "the directory given back is taken")
	_, err = Acquire(dir)
	require.ErrorIs(t, err, ErrInUse, "and held")
	require.NoError(t, b.Discard())
	require.NoError(t, b.Discard(), "a second Discard is harmless")
	require.NoFileExists(t, filepath.Join(dir, LockFile))
}

// A lock the file system refuses (one without locks, as some network
// file systems are) is not another process's: the error says what failed
// and is not ErrInUse, which would send the user looking for a process
// that does not exist.
func TestAcquireOnAFileSystemWithoutLocks(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir) // a holder's PID is left in LOCK, as after kill -9
	require.NoError(t, err)
	require.NoError(t, l.f.Close())
	lock := lockFile
	lockFile = func(*os.File) error { return syscall.ENOLCK }
	t.Cleanup(func() { lockFile = lock })

	_, err = Acquire(dir)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrInUse)
	require.ErrorIs(t, err, syscall.ENOLCK)
	require.NotContains(t, err.Error(), "process")
}

// A data directory another user owns is refused before anything is
// written in it: its owner, who may have made it first where anyone may
// (the default one is under /tmp), could plant or swap what the service
// keeps there — a store it would read, a link where the audit trail goes.
func TestAcquireRefusesADirectoryAnotherUserOwns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "made-by-another")
	require.NoError(t, os.Mkdir(dir, 0o777))
	owner := 65534
	actAsOwnUser := func() {}
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(dir, owner, owner))
	} else {
		owner = os.Geteuid()
		uid := processUID
		processUID = func() int { return owner + 1 }
		actAsOwnUser = func() { processUID = uid }
		t.Cleanup(actAsOwnUser)
	}

	l, err := Acquire(dir)
	if err == nil {
		_ = l.Release()
	}
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrInUse)
	require.ErrorContains(t, err, "is owned by user "+strconv.Itoa(owner))
	require.NoFileExists(t, filepath.Join(dir, LockFile), "nothing is written in it")

	actAsOwnUser()
	mine := filepath.Join(t.TempDir(), "mine", "data")
	l, err = Acquire(mine)
	require.NoError(t, err, "a directory the process makes is its own")
	require.NoError(t, l.Release())
}

// A data directory reached through a symbolic link another user owns is
// refused, whether the link is the directory's own name or one before it
// in the path, and nothing is written through it: the link's owner may
// point it elsewhere while the service runs (a link in /tmp, where the
// default directory is, is its maker's to replace), at a directory of
// theirs, where the service's next files would go — a new block of its
// store, the audit trail's next file. A link of the process's own user is
// followed.
func TestAcquireRefusesALinkAnotherUserOwns(t *testing.T) {
	mine := t.TempDir()
	link := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Symlink(mine, link))
	l, err := Acquire(link)
	require.NoError(t, err, "a link of the process's own user is followed")
	require.NoError(t, l.Discard())

	owner := 65534
	if os.Geteuid() == 0 {
		require.NoError(t, os.Lchown(link, owner, owner))
	} else {
		// The process acts as another user than the link's; the link
		// points at a directory root owns, which that user may use.
		owner = os.Geteuid()
		uid := processUID
		processUID = func() int { return owner + 1 }
		t.Cleanup(func() { processUID = uid })
		require.NoError(t, os.Remove(link))
		require.NoError(t, os.Symlink("/", link))
	}
	// The error names the link by its path without links (a temporary
	// directory may be reached through one, /var on macOS).
	parent, err := filepath.EvalSymlinks(filepath.Dir(link))
	require.NoError(t, err)
	t.Chdir(filepath.Dir(link)) // a relative path is followed as the absolute one
	for _, dir := range []string{link, filepath.Join(link, "sub"), "data", "./data/../data/sub"} {
		l, err := Acquire(dir)
		if err == nil {
			_ = l.Release()
		}
		require.Error(t, err, dir)
		require.NotErrorIs(t, err, ErrInUse)
		require.ErrorContains(t, err, "symbolic link "+filepath.Join(parent, "data"))
		require.ErrorContains(t, err, "user "+strconv.Itoa(owner))
	}
	require.NoFileExists(t, filepath.Join(mine, LockFile), "nothing is written through the link")
	require.NoDirExists(t, filepath.Join(mine, "sub"))
}

// A ".." after a symbolic link another user owns goes nowhere through the
// link: the directory is the one the path names once ".." has taken the
// link's name away, as filepath.Join reads it in every path the service
// makes under it, not the one beside the directory the link points at,
// which its owner may point elsewhere while the service runs.
func TestAcquireTakesNoDotDotThroughALinkAnotherUserOwns(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(t.TempDir(), "theirs", "pointed-at")
	require.NoError(t, os.MkdirAll(target, 0o700))
	link := filepath.Join(base, "link")
	require.NoError(t, os.Symlink(target, link))
	if os.Geteuid() == 0 {
		require.NoError(t, os.Lchown(link, 65534, 65534))
	} else {
		owner := os.Geteuid()
		uid := processUID
		processUID = func() int { return owner + 1 }
		t.Cleanup(func() { processUID = uid })
	}

	dir := link + "/../data" // as a person would write it; filepath.Join would clean it
	l, err := Acquire(dir)
	if err == nil {
		require.NoError(t, l.Release())
		assert.FileExists(t, filepath.Join(base, "data", LockFile))
	}
	assert.NoDirExists(t, filepath.Join(filepath.Dir(target), "data"), "nothing is made through the link")
}
