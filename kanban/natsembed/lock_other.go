//go:build !unix && !windows

package natsembed

import "os"

// noFollow is no flag on these systems.
const noFollow = 0

// Systems other than Unix and Windows have no file lock: the store is not
// guarded against a second server.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }

// heldElsewhere is false: lockFile never fails here.
func heldElsewhere(error) bool { return false }
