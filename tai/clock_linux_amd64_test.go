package tai

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCounterIsCalibrated: where the kernel keeps time with the counter,
// the pipeline's clock reads it once it has been measured.
func TestCounterIsCalibrated(t *testing.T) {
	if !tscUsable() {
		t.Skip("the kernel does not keep time with the time-stamp counter here: the pipeline reads the monotonic clock")
	}
	deadline := time.Now().Add(time.Second)
	for tsc.anchor.Load() == nil && time.Now().Before(deadline) {
		monotonic()
		time.Sleep(time.Millisecond)
	}
	assert.NotNil(t, tsc.anchor.Load(), "not calibrated within a second")
}

// TestReanchorContinues: past its span an anchor is replaced by one that
// starts no earlier than where the old one got to and keeps to the
// monotonic clock.
func TestReanchorContinues(t *testing.T) {
	if !tscUsable() {
		t.Skip("no time-stamp counter in use here: the pipeline reads the monotonic clock")
	}
	for tsc.anchor.Load() == nil { // calibrate
		monotonic()
		time.Sleep(time.Millisecond)
	}
	old := tsc.anchor.Load()
	// An anchor that has run out: the next read measures again.
	short := *old
	short.limit = 1
	tsc.anchor.Store(&short)
	time.Sleep(2 * time.Millisecond)
	m := monotonic()
	now := time.Since(epoch)
	a := tsc.anchor.Load()
	require.NotSame(t, &short, a, "a new anchor")
	assert.GreaterOrEqual(t, a.mono, short.mono)
	assert.InDelta(t, float64(now), float64(m), float64(time.Millisecond))
	assert.InEpsilon(t, float64(old.mult), float64(a.mult), 0.01, "the ratio measured again agrees")
}

func TestRatioRejectsImplausibleCounters(t *testing.T) {
	for _, tc := range []struct {
		ticks uint64
		ns    int64
		ok    bool
	}{
		{3_000_000, 1_000_000, true},   // 3 GHz
		{1_000, 1_000_000, false},      // 1 MHz
		{1 << 40, 1_000_000, false},    // far above 100 GHz
		{0, 1_000_000, false},          // a counter that stood still
		{3_000_000, 0, false},          // no time passed
		{3_000_000, -1_000_000, false}, // time went back
	} {
		mult, ok := ratio(tc.ticks, tc.ns)
		assert.Equal(t, tc.ok, ok, "%d ticks in %d ns", tc.ticks, tc.ns)
		if ok {
			perTick := float64(tc.ns) / float64(tc.ticks)
			assert.InEpsilon(t, perTick, float64(mult)/(1<<32), 1e-9)
			limit := limitFor(mult)
			assert.InEpsilon(t, float64(anchorSpan), float64(mulTicks(limit, mult)), 1e-6)
			assert.Less(t, float64(limit)*float64(mult), math.Ldexp(1, 63), "d*mult cannot overflow within an anchor")
		}
	}
}

// TestMonotonicWithoutTheCounter: where the counter is not used, the
// pipeline's clock is the monotonic clock.
func TestMonotonicWithoutTheCounter(t *testing.T) {
	monotonic() // the first read decides whether the counter is usable
	tsc.mu.Lock()
	anchor, usable := tsc.anchor.Load(), tsc.usable.Load()
	tsc.usable.Store(false)
	tsc.anchor.Store(nil)
	tsc.mu.Unlock()
	t.Cleanup(func() {
		tsc.mu.Lock()
		tsc.usable.Store(usable)
		tsc.anchor.Store(anchor)
		tsc.mu.Unlock()
	})
	for range 1000 {
		before := time.Since(epoch)
		m := monotonic()
		after := time.Since(epoch)
		require.True(t, before <= m && m <= after, "%v not within [%v, %v]", m, before, after)
	}
	assert.Nil(t, tsc.anchor.Load(), "nothing is measured")
}
