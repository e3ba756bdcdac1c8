//go:build !unix

package kaizen

// openNonblock is no flag on a system without FIFOs that an open waits on.
const openNonblock = 0
