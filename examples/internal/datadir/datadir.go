// Package datadir gives a service its data directory for its own: one
// process per directory. A second start on a directory in use fails at once
// with a clear error and changes nothing in it.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFile is the name of the lock file in a data directory.
const LockFile = "LOCK"

// ErrInUse is returned (wrapped) when another process holds the directory.
var ErrInUse = errors.New("data directory in use")

// Lock is a held data directory. The lock is the operating system's: it
// goes with the process, so a process killed with SIGKILL leaves no stale
// lock behind.
type Lock struct {
	dir string
	f   *os.File
}

// Acquire creates dir if needed and takes its lock file (dir/LOCK) for this
// process; a LOCK that is a symbolic link is refused. A dir that another
// user owns (root aside) is refused before anything is written in it:
// made first by that user where anyone may make one (the system's
// temporary directory), it would let them plant or swap what the service
// keeps there. So is a dir whose path goes through a symbolic link
// another user owns, which they could point at a directory of theirs
// while the service runs. If another process holds the lock, the error
// wraps ErrInUse and names that process's PID when it can; a lock the
// system refuses for another reason (a file system without locks) is an
// error that says so, not ErrInUse.
//
// dir is taken as filepath.Clean reads it, as filepath.Join reads it in
// every path made under it: a ".." takes away the name before it, and
// goes through no link of that name (a/link/../data is a/data).
func Acquire(dir string) (*Lock, error) {
	if dir == "" {
		// Clean would make it ".", the working directory.
		return nil, errors.New("data directory: no path given")
	}
	dir = filepath.Clean(dir)
	// Before anything is made through another user's link, and again
	// after (checkOwner), for one put where a name was missing.
	if err := checkLinks(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := checkOwner(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	for {
		f, err := lockOnce(dir, path)
		if err != nil {
			return nil, err
		}
		if f == nil {
			continue // the file locked had been removed: take the new one
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		return &Lock{dir: dir, f: f}, nil
	}
}

// lockOnce opens and locks path. It returns no file and no error when the
// file it locked is no longer the one at path: one removed after it was
// opened (a process giving back a directory it made removes it), whose
// lock would lock nothing, as the next process creates and locks a new
// LOCK. The caller tries again.
func lockOnce(dir, path string) (*os.File, error) {
	// A symbolic link is not followed: one planted in a directory others
	// may write to would have the file it points at truncated.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	opened()
	if err := lockFile(f); err != nil {
		if !heldElsewhere(err) {
			f.Close()
			return nil, fmt.Errorf("data directory: cannot lock %s: %w", path, err)
		}
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		holder := strings.TrimSpace(string(b[:n]))
		if _, perr := strconv.Atoi(holder); perr == nil {
			return nil, fmt.Errorf("%w: %s is used by process %s; stop it or choose another -data-dir", ErrInUse, dir, holder)
		}
		return nil, fmt.Errorf("%w: %s is locked by another process (%v); stop it or choose another -data-dir", ErrInUse, dir, err)
	}
	locked, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if now, err := os.Lstat(path); err == nil && os.SameFile(locked, now) {
		return f, nil
	}
	_ = unlockFile(f)
	f.Close()
	return nil, nil
}

// opened is called between the opening of the lock file and its locking;
// a test makes another process's moves there.
var opened = func() {}

// Dir is the locked directory.
func (l *Lock) Dir() string { return l.dir }

// Release gives the directory back. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := unlockFile(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// Discard removes the lock file and gives the directory back: for a
// process that took a directory and used nothing of it, to leave it as it
// found it. The file is removed while still locked, so that no process
// holds a lock on it once it is gone: one that opened it meanwhile finds,
// when it gets the lock, that the file is no longer LOCK, and takes the
// new one (Acquire). It is safe to call after Release, and then does
// nothing.
func (l *Lock) Discard() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(filepath.Join(l.dir, LockFile))
	if rerr := l.Release(); err == nil {
		err = rerr
	}
	return err
}
