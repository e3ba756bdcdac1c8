//go:build race

package jidoka_test

// The race detector makes sync.Pool drop some of what is put in it, so
// tests of allocations skip under it.
func init() { raceEnabled = true }
