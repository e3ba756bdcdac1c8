//go:build unix && !(aix || illumos || solaris)

package kaizen_test

import "syscall"

// mkfifo makes a named pipe at path that only its owner may read and
// write.
func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }
