package tai

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMonotonicKeepsToTheSystemClock reads the pipeline's clock against
// the monotonic clock for longer than several anchor spans: they agree
// within 100 µs, and the pipeline's never goes back.
func TestMonotonicKeepsToTheSystemClock(t *testing.T) {
	deadline := time.Now().Add(500 * time.Millisecond) // several anchor spans, where the counter is read
	var last, worst time.Duration
	n := 0
	for time.Now().Before(deadline) {
		before := time.Since(epoch)
		m := monotonic()
		after := time.Since(epoch)
		require.GreaterOrEqual(t, m, last, "read %d went back", n)
		last = m
		// m lies between before and after, give or take the error of
		// the counter's ratio.
		off := max(before-m, m-after, 0)
		worst = max(worst, off)
		n++
		if n%1000 == 0 {
			time.Sleep(time.Millisecond) // let anchors age, as between signals
		}
	}
	// The counter's ratio is measured to a few parts in a million, and the
	// monotonic clock itself may be slewed by up to 500 ppm: over an
	// anchor span that is at most 50 µs.
	assert.Less(t, worst, 100*time.Microsecond, "the pipeline's clock strayed from the monotonic clock")
	t.Logf("%d reads, worst offset %v", n, worst)
}

// TestMonotonicFromManyGoroutines: concurrent readers, some of them
// re-anchoring, each see their own reads never go back.
func TestMonotonicFromManyGoroutines(t *testing.T) {
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var last time.Duration
			for i := range 200_000 {
				m := monotonic()
				if m < last {
					t.Errorf("read %d went back by %v", i, last-m)
					return
				}
				last = m
			}
		})
	}
	wg.Wait()
}
