package jidoka

import (
	"testing"
	"unsafe"
)

// TestDeadlineCtxSize: the context a Timeout gives each call, its one
// allocation per call, stays within the 128-byte size class; a field more
// in the wrong place takes it to 144.
func TestDeadlineCtxSize(t *testing.T) {
	if n := unsafe.Sizeof(deadlineCtx{}); n > 128 {
		t.Fatalf("deadlineCtx is %d bytes, over the 128-byte size class", n)
	}
}
