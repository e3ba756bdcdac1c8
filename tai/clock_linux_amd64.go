package tai

import (
	"bytes"
	"os"
)

// hasTSC says the platform has a time-stamp counter the pipeline may read
// (see clock.go); tscUsable says whether this machine's is.
const hasTSC = true

// ticks reads the processor's time-stamp counter.
func ticks() uint64

// tscUsable reports whether the kernel keeps time with the time-stamp
// counter: it does only when the counter runs at a constant rate and
// agrees across cores, and it checks that at boot.
func tscUsable() bool {
	b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	return err == nil && string(bytes.TrimSpace(b)) == "tsc"
}
