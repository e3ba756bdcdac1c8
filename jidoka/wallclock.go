package jidoka

import (
	"sync/atomic"
	"time"
)

// wallDrift is how far the wall clock may move away from the monotonic
// clock before a wallClock reads it anew. The two run at one rate (NTP
// slews both); they part only when the wall clock is set or the machine
// sleeps, by far more than this.
const wallDrift = time.Millisecond

// wallClock turns instants kept as monotonic time since an epoch into
// times whose wall clock reads as today's. epoch.Add(d) would keep the
// wall clock as it read at the epoch: once it has been set (an NTP step)
// or the machine has slept (its monotonic clock stops, its wall clock does
// not), such a time's wall part is off by as much, and whatever reads it
// (Format, Unix, JSON, Round(0), a deadline sent on as a timestamp) sees
// another instant than the one meant. The times it makes keep the
// monotonic reading epoch.Add(d) has, so Sub, Until and Before are the
// same as before; only their wall part follows the wall clock.
//
// It keeps one reading of time.Now, taken anew only when the wall clock
// has moved more than wallDrift away from the monotonic since, so that one
// instant gives the same time from call to call. The zero wallClock takes
// its first reading when first asked.
type wallClock struct {
	ref atomic.Pointer[time.Time]
}

// at returns the instant d after epoch, as time.Now().Add would give it.
func (w *wallClock) at(epoch time.Time, d time.Duration) time.Time {
	now := time.Now()
	ref := w.ref.Load()
	if ref == nil || drift(*ref, now) > wallDrift {
		fresh := new(time.Time) // allocated only here: &now would escape on every call
		*fresh = now
		if w.ref.CompareAndSwap(ref, fresh) {
			ref = fresh
		} else {
			ref = w.ref.Load() // another caller's reading, as fresh: one answer for all
		}
	}
	return ref.Add(d - ref.Sub(epoch))
}

// drift returns how far the wall clock moved away from the monotonic
// clock between readings a and b, either way.
func drift(a, b time.Time) time.Duration {
	d := b.Round(0).Sub(a.Round(0)) - b.Sub(a)
	if d < 0 {
		d = -d
	}
	return d
}
