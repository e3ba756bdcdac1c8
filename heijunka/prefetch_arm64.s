//go:build !purego

#include "textflag.h"

// func prefetch(addr unsafe.Pointer)
//
// Prefetches the line of addr and the line 40 bytes on: a 24-byte slot and
// the slot after it, whichever lines they straddle.
TEXT ·prefetch(SB), NOSPLIT|NOFRAME, $0-8
	MOVD addr+0(FP), R0
	PRFM (R0), PLDL1KEEP
	PRFM 40(R0), PLDL1KEEP
	RET
