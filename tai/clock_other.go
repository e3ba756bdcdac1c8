//go:build !(linux && amd64)

package tai

// hasTSC is false: the pipeline reads the monotonic clock (see clock.go).
const hasTSC = false

// ticks is never called where hasTSC is false.
func ticks() uint64 { return 0 }

func tscUsable() bool { return false }
