package kaizen

import (
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestRingEpochOfDividedWindow: a window its slots divide takes the
// slot of a time by one division (width); that is the slot the 128-bit
// reckoning every other window takes gives, for any time, before 1970
// too.
func TestRingEpochOfDividedWindow(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 1000).Draw(t, "n")
		width := rapid.Int64Range(1, int64(72*time.Hour)/int64(n)).Draw(t, "width")
		fast := newRing(time.Duration(width*int64(n)), n)
		if fast.width != width {
			t.Fatalf("width %d, want %d", fast.width, width)
		}
		slow := fast
		slow.width = 0
		at := rapid.OneOf(rapid.Int64(), rapid.Int64Range(-3*width, 3*width),
			rapid.SampledFrom([]int64{math.MinInt64, math.MaxInt64, 0, -1})).Draw(t, "t")
		if got, want := fast.epochOf(at), slow.epochOf(at); got != want {
			t.Fatalf("epochOf(%d) = %d by the width, %d by 128 bits", at, got, want)
		}
	})
}
