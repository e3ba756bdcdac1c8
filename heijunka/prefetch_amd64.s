//go:build !purego

#include "textflag.h"

// func prefetch(addr unsafe.Pointer)
//
// Prefetches the line of addr and the line 40 bytes on: a 24-byte slot and
// the slot after it, whichever lines they straddle.
TEXT ·prefetch(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ       addr+0(FP), AX
	PREFETCHT0 (AX)
	PREFETCHT0 40(AX)
	RET
