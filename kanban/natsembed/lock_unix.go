//go:build unix

package natsembed

import (
	"errors"
	"os"
	"syscall"
)

// noFollow makes opening the lock file fail on a symbolic link.
const noFollow = syscall.O_NOFOLLOW

// lockFile takes an exclusive lock on f without waiting; it fails while
// another open file holds one, in this process or another. A test makes
// it fail as a file system without locks does.
var lockFile = func(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// heldElsewhere reports whether err, lockFile's, says that another open
// file holds the lock.
func heldElsewhere(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }
