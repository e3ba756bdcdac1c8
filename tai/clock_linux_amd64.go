package tai

import (
	"bytes"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// monotonic returns the time since epoch. It never goes back within a
// goroutine that stays on one core; across cores the counter may differ
// by a few cycles, so callers clamp a negative difference to zero.
func monotonic() time.Duration {
	if a := tsc.anchor.Load(); a != nil {
		// d wraps to a huge value when the counter reads behind the
		// anchor (on another core): the slow path handles it.
		if d := ticks() - a.ticks; d < a.limit {
			return time.Duration(a.mono + int64(d*a.mult>>32))
		}
	}
	return tscSlow()
}

// anchorSpan is how long an anchor converts ticks before it is measured
// again against the monotonic clock. It also bounds d*mult below 2^59,
// far from overflowing.
const anchorSpan = 100 * time.Millisecond

// calibrationSpan is how long the counter is measured before it is used.
const calibrationSpan = 10 * time.Millisecond

// tscAnchor maps the counter to the monotonic clock: at ticks the time
// was mono, and each tick is mult/2^32 ns. Anchors are never modified,
// only replaced.
type tscAnchor struct {
	ticks uint64
	mono  int64
	mult  uint64
	limit uint64 // ticks in anchorSpan: past them, measure again
}

var tsc struct {
	once   sync.Once
	usable atomic.Bool
	mu     sync.Mutex // held while measuring
	// start is the first measurement, until calibrated.
	start  tscAnchor
	anchor atomic.Pointer[tscAnchor] // nil until calibrated, or without a usable counter
}

// tscSlow is monotonic's path when no anchor applies: the first calls,
// the first call after anchorSpan, a counter read behind the anchor, or
// no usable counter. It reads the monotonic clock and, with a usable
// counter, measures the counter against it.
func tscSlow() time.Duration {
	tsc.once.Do(func() { tsc.usable.Store(tscUsable()) })
	if !tsc.usable.Load() || !tsc.mu.TryLock() {
		return time.Since(epoch) // another goroutine is measuring
	}
	defer tsc.mu.Unlock()
	// The two readings are taken back to back: any work between them
	// would count in the ratio as time the counter did not see.
	now := time.Since(epoch)
	t := ticks()
	a := tsc.anchor.Load()
	if a == nil {
		return calibrate(t, now)
	}
	d := t - a.ticks
	if d < a.limit {
		return time.Duration(a.mono + int64(d*a.mult>>32)) // another goroutine measured
	}
	if t < a.ticks {
		return time.Duration(a.mono) // read on a core a few cycles behind
	}
	mult, ok := ratio(d, int64(now)-a.mono)
	if !ok {
		tsc.usable.Store(false) // the counter misbehaves: use the monotonic clock
		tsc.anchor.Store(nil)
		return now
	}
	// Continue from where the last anchor got to, unless the monotonic
	// clock is ahead: the clock never goes back, and it comes back to the
	// system's time at once.
	mono := max(int64(now), a.mono+int64(mulTicks(d, a.mult)))
	tsc.anchor.Store(&tscAnchor{ticks: t, mono: mono, mult: mult, limit: limitFor(mult)})
	return time.Duration(mono)
}

// calibrate measures the counter from the first reading on, and installs
// the first anchor once calibrationSpan has passed. Called with tsc.mu
// held.
func calibrate(t uint64, now time.Duration) time.Duration {
	if tsc.start.ticks == 0 {
		tsc.start = tscAnchor{ticks: t, mono: int64(now)}
		return now
	}
	el := int64(now) - tsc.start.mono
	if el < int64(calibrationSpan) {
		return now
	}
	mult, ok := ratio(t-tsc.start.ticks, el)
	if !ok || t < tsc.start.ticks {
		tsc.usable.Store(false)
		return now
	}
	tsc.anchor.Store(&tscAnchor{ticks: t, mono: int64(now), mult: mult, limit: limitFor(mult)})
	return now
}

// ratio returns the nanoseconds per tick, times 2^32, of d ticks in ns
// nanoseconds, and false for a counter running below 10 MHz or above
// 100 GHz, which is not a time-stamp counter to trust.
func ratio(d uint64, ns int64) (uint64, bool) {
	if d == 0 || ns <= 0 {
		return 0, false
	}
	r := float64(ns) / float64(d)
	if r < 0.01 || r > 100 {
		return 0, false
	}
	return uint64(r * (1 << 32)), true
}

// limitFor returns the ticks in anchorSpan at mult.
func limitFor(mult uint64) uint64 {
	return uint64(float64(anchorSpan) / (float64(mult) / (1 << 32)))
}

// mulTicks converts d ticks at mult, for d past an anchor's limit too.
func mulTicks(d, mult uint64) uint64 {
	return uint64(float64(d) * (float64(mult) / (1 << 32)))
}

// ticks reads the processor's time-stamp counter.
func ticks() uint64

// tscUsable reports whether the kernel keeps time with the time-stamp
// counter: it does only when the counter runs at a constant rate and
// agrees across cores, and it checks that at boot.
func tscUsable() bool {
	b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	return err == nil && string(bytes.TrimSpace(b)) == "tsc"
}
