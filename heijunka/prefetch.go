//go:build (amd64 || arm64) && !purego

package heijunka

import "unsafe"

// prefetch asks the CPU to start loading the cache line at addr and returns
// at once; it never faults and has no effect on what the program computes.
// Unlike a load, a prefetch is not waited for by the fence that precedes
// the clock read, so the lookup's cache miss overlaps the clock read.
//
//go:noescape
func prefetch(addr unsafe.Pointer)
