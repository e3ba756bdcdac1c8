//go:build unix

package datadir

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// noFollow makes opening the lock file fail on a symbolic link.
const noFollow = syscall.O_NOFOLLOW

// lockFile takes f's lock without waiting for it; a test makes it fail
// as a file system without locks does.
var lockFile = func(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// heldElsewhere reports whether err, lockFile's, says that another open
// file holds the lock.
func heldElsewhere(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }

// checkOwner refuses dir when a user other than the process's own (or
// root) owns it: that user could plant or swap what the service keeps
// there, whatever the directory's mode, as they may change it at will.
func checkOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if owner, me := int(st.Uid), processUID(); owner != me && owner != 0 {
		return fmt.Errorf("data directory %s is owned by user %d, not by this process's user (%d) or root: that user could change what the service keeps there; choose another -data-dir, or one the service's user owns", dir, owner, me)
	}
	return nil
}

// processUID is the user the process acts as; a test makes it another.
var processUID = os.Geteuid
