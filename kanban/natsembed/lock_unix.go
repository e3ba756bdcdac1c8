//go:build unix

package natsembed

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// noFollow makes opening the lock file fail on a symbolic link.
const noFollow = unix.O_NOFOLLOW

// lockFile takes an exclusive lock on f without waiting; it fails while
// another open file holds one, in this process or another. A test makes
// it fail as a file system without locks does. It is the x/sys flock, not
// the syscall package's, which Solaris lacks.
var lockFile = func(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}

func unlockFile(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}

// heldElsewhere reports whether err, lockFile's, says that another open
// file holds the lock.
func heldElsewhere(err error) bool { return errors.Is(err, unix.EWOULDBLOCK) }
