package jidoka

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// latencies is a histogram of recent call latencies, for a Hedge's
// quantile. Buckets are log-linear over microseconds: four per power of
// two, so a quantile is at most 25% above the true value, from 1 µs to
// about 25 days. Adding a latency is two atomic additions; every window
// additions the counts are halved, so old calls fade and the histogram
// follows the service as it speeds up or slows down. The counts are 64-bit:
// a Window may be as long as an int, and a bucket may count more than 2^32
// calls before it is halved.
type latencies struct {
	counts [latencyBuckets]atomic.Uint64
	added  atomic.Uint64
	window uint64
}

const (
	latencySub     = 4 // buckets per power of two
	latencyPowers  = 40
	latencyBuckets = latencySub * latencyPowers
)

// latencyBucket returns the bucket of d.
func latencyBucket(d time.Duration) int {
	us := uint64(max(d/time.Microsecond, 0))
	if us < latencySub {
		return int(us)
	}
	p := bits.Len64(us) - 1                  // us in [2^p, 2^(p+1))
	sub := int(us>>(p-2)) & (latencySub - 1) // the next two bits
	i := (p-1)*latencySub + sub              // p >= 2
	return min(i, latencyBuckets-1)
}

// latencyUpper returns the upper bound of bucket i.
func latencyUpper(i int) time.Duration {
	if i < latencySub {
		return time.Duration(i+1) * time.Microsecond
	}
	p := i/latencySub + 1
	sub := uint64(i % latencySub)
	lo := uint64(1)<<p | sub<<(p-2)
	return time.Duration(lo+uint64(1)<<(p-2)) * time.Microsecond
}

func (l *latencies) add(d time.Duration) {
	l.counts[latencyBucket(d)].Add(1)
	if n := l.added.Add(1); n%l.window == 0 {
		l.decay()
	}
}

// decay halves every count. An addition that races with it may be halved
// or not: the histogram is a guide, not a ledger.
func (l *latencies) decay() {
	for i := range l.counts {
		c := &l.counts[i]
		for {
			n := c.Load()
			if n == 0 || c.CompareAndSwap(n, n/2) {
				break
			}
		}
	}
}

// quantile returns the upper bound of the bucket holding the q-quantile,
// and false when fewer than minCount latencies are held. The q-quantile
// is the latency at rank ceil(q×total) (the nearest-rank definition, as
// kaizen's): at least a share q of the latencies held are at or below it,
// so a hedge after it doubles at most a share 1-q of the calls. A q×total
// within floating-point rounding of a whole number is that number: 0.07
// of 100 latencies is rank 7, though 0.07*100 is 7.000000000000001.
func (l *latencies) quantile(q float64, minCount uint64) (time.Duration, bool) {
	var snap [latencyBuckets]uint64
	var total uint64
	for i := range l.counts {
		snap[i] = l.counts[i].Load()
		total += snap[i]
	}
	if total == 0 || total < minCount {
		return 0, false
	}
	x := q * float64(total)
	r := math.Ceil(x)
	if w := math.Round(x); math.Abs(x-w) <= w*0x1p-50 {
		r = w
	}
	rank := min(max(uint64(r), 1), total)
	var seen uint64
	for i, n := range snap {
		seen += n
		if seen >= rank {
			return latencyUpper(i), true
		}
	}
	return latencyUpper(latencyBuckets - 1), true
}
