//go:build unix

package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
// It refuses a path through another user's link too (checkLinks).
func checkOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if owner, me, ok := foreign(fi); ok {
		return fmt.Errorf("data directory %s is owned by user %d, not by this process's user (%d) or root: that user could change what the service keeps there; choose another -data-dir, or one the service's user owns", dir, owner, me)
	}
	return checkLinks(dir)
}

// foreign reports whether a user other than the process's own (or root)
// owns fi, and who.
func foreign(fi fs.FileInfo) (owner, me int, ok bool) {
	st, isStat := fi.Sys().(*syscall.Stat_t)
	if !isStat {
		return 0, 0, false
	}
	owner, me = int(st.Uid), processUID()
	return owner, me, owner != me && owner != 0
}

// checkLinks refuses a dir whose path goes through a symbolic link that a
// user other than the process's own (or root) owns: that user may point
// it elsewhere at any time, at a directory of theirs, whatever the one it
// points at when the service starts. The path is followed as the system
// follows it, through links within links, up to the first name that does
// not exist (Acquire makes the rest).
func checkLinks(dir string) error {
	path, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	resolved, rest := "/", path
	for links := 0; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
		switch name {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if owner, me, ok := foreign(fi); ok {
			return fmt.Errorf("data directory %s goes through the symbolic link %s, which user %d owns, not this process's user (%d) or root: that user could point it elsewhere while the service runs; give -data-dir without the link, or one the service's user owns", dir, next, owner, me)
		}
		if links++; links > maxLinks {
			return fmt.Errorf("data directory %s: more than %d symbolic links in its path", dir, maxLinks)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = target + "/" + rest
	}
	return nil
}

// maxLinks bounds the links checkLinks follows: a loop of them would
// never end.
const maxLinks = 255

// processUID is the user the process acts as; a test makes it another.
var processUID = os.Geteuid
