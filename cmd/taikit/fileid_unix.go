//go:build unix

package main

import (
	"os"
	"syscall"
)

// fileID returns a comparable value that is the same for two results of
// os.Stat that os.SameFile reports are the same file: its device and
// inode.
func fileID(fi os.FileInfo) any {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	// Their types differ between systems.
	return [2]uint64{uint64(st.Dev), uint64(st.Ino)}
}
