//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package kaizen

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on f without waiting, which its close
// releases. It reports held when another open file holds one, in this
// process or another; err when the file system cannot lock the file.
func lockFile(f *os.File) (held bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}
