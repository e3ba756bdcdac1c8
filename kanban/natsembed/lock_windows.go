//go:build windows

package natsembed

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// noFollow is no flag: os.OpenFile on Windows has no O_NOFOLLOW.
const noFollow = 0

// lockRegion is the byte range locked: one byte at 4 GiB, past the
// file's content, which stays readable by the servers the lock turns
// away.
func lockRegion() *windows.Overlapped { return &windows.Overlapped{OffsetHigh: 1} }

// lockFile takes an exclusive lock on f without waiting; it fails while
// another open file holds one, in this process or another.
func lockFile(f *os.File) error {
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, lockRegion())
}

func unlockFile(f *os.File) error {
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, lockRegion())
}

// heldElsewhere reports whether err, lockFile's, says that another open
// file holds the lock.
func heldElsewhere(err error) bool { return errors.Is(err, windows.ERROR_LOCK_VIOLATION) }
