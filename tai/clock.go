package tai

import "time"

// The pipeline reads the clock twice for each signal it times (when it
// has an observer): at the start and at the end. Read through time.Since,
// the monotonic clock costs about 25 ns on an x86-64 virtual machine (a
// vDSO call that switches stacks and fences the time-stamp counter it
// reads). Where the kernel
// itself keeps time with the processor's time-stamp counter, the pipeline
// reads the counter directly (about 10 ns) and converts it with a ratio
// measured against the monotonic clock, re-measured every tenth of a
// second, so it keeps to the system's time within microseconds (see
// clock_tsc.go). Anywhere else monotonic is time.Since (clock_other.go).

// epoch anchors the pipeline's clock: monotonic is the time since epoch,
// read on the monotonic clock.
var epoch = time.Now()

// epochWall is epoch in Unix nanoseconds: a Record's Start is built from
// it with time.Unix, a third of the cost of epoch.Add.
var epochWall = epoch.UnixNano()
