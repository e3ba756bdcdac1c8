//go:build aix || illumos || solaris

package main

import (
	"os"
	"os/exec"
)

// mkfifo makes a named pipe at path that only its owner may read and
// write, with the mkfifo command: package syscall has no Mkfifo here.
func mkfifo(path string) error {
	if err := exec.Command("mkfifo", path).Run(); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}
