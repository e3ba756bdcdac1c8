//go:build unix

package kaizen

import "syscall"

// openNonblock opens a file without waiting: a FIFO is opened at once,
// whether a writer has it open or not. A regular file reads as without it.
const openNonblock = syscall.O_NONBLOCK
