//go:build !unix

package datadir

import (
	"errors"
	"os"
)

// noFollow is no flag: Acquire fails on these systems anyway.
const noFollow = 0

// Without flock the directory cannot be locked safely; refuse rather than
// risk two processes on one store.
func lockFile(*os.File) error {
	return errors.New("locking a data directory is supported on Unix systems only")
}

func unlockFile(*os.File) error { return nil }

// checkOwner checks nothing: lockFile refuses every directory here.
func checkOwner(string) error { return nil }

// checkLinks checks nothing, as checkOwner.
func checkLinks(string) error { return nil }

// heldElsewhere is false: no lock is held here, lockFile fails for want
// of one.
func heldElsewhere(error) bool { return false }
