package localfleet

import (
	"math"
	"sync"
	"time"
)

// Latency histogram: bucket i holds durations in (bound(i-1), bound(i)],
// bound(i) = minLatency * latencyGrowth^i, so any reading is placed within
// a fifth of its value; the last bucket holds everything beyond.
const (
	minLatency     = 100 * time.Microsecond
	latencyGrowth  = 1.2
	latencyBuckets = 75 // bound(73) ≈ 60s; bucket 74 is the overflow
)

// latencyBucket returns the histogram bucket of d.
func latencyBucket(d time.Duration) int {
	if d <= minLatency {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(minLatency)) / math.Log(latencyGrowth)))
	i = min(i, latencyBuckets-1)
	// The logarithm may land a duration at a bound one bucket off;
	// latencyBound, which quantile interpolates between, decides.
	if i > 1 && d <= latencyBound(i-1) {
		i--
	} else if i < latencyBuckets-1 && d > latencyBound(i) {
		i++
	}
	return i
}

// latencyBound returns bucket i's upper bound.
func latencyBound(i int) time.Duration {
	return time.Duration(float64(minLatency) * math.Pow(latencyGrowth, float64(i)))
}

// second is what a window holds of one second.
type second struct {
	unix     int64 // which second; buckets of other seconds are stale
	requests uint64
	errors   uint64 // answered 5xx
	latency  [latencyBuckets]uint32
}

// window counts a version's requests in one-second buckets, a ring over
// the last span seconds. Times are passed in, so it does no clock reads of
// its own. It is safe for concurrent use.
type window struct {
	mu      sync.Mutex
	seconds []second
}

// newWindow returns a window that can answer for up to span.
func newWindow(span time.Duration) *window {
	n := int((span + time.Second - 1) / time.Second)
	return &window{seconds: make([]second, n+1)} // +1: the second in progress
}

// record counts a request answered at t with status code after d.
func (w *window) record(t time.Time, code int, d time.Duration) {
	unix := t.Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.seconds[unix%int64(len(w.seconds))]
	if s.unix != unix {
		*s = second{unix: unix}
	}
	s.requests++
	if code >= 500 && code <= 599 {
		s.errors++
	}
	s.latency[latencyBucket(d)]++
}

// reading is a window's sum over a span.
type reading struct {
	requests, errors uint64
	p99              time.Duration
}

// read sums the seconds in the span up to now: the second now is in and
// the whole seconds before it, span rounded up to whole seconds (at least
// one). span is at most the window's.
func (w *window) read(now time.Time, span time.Duration) reading {
	last := now.Unix()
	n := max(int64((span+time.Second-1)/time.Second), 1)
	first := last - n + 1
	var r reading
	var latency [latencyBuckets]uint64
	w.mu.Lock()
	for i := range w.seconds {
		s := &w.seconds[i]
		if s.unix < first || s.unix > last {
			continue
		}
		r.requests += s.requests
		r.errors += s.errors
		for b, c := range s.latency {
			latency[b] += uint64(c)
		}
	}
	w.mu.Unlock()
	r.p99 = quantile(0.99, latency[:], r.requests)
	return r
}

// quantile estimates the q-quantile of the count durations in the
// histogram, interpolating within the bucket it falls in as Prometheus'
// histogram_quantile does.
func quantile(q float64, histogram []uint64, count uint64) time.Duration {
	if count == 0 {
		return 0
	}
	rank := q * float64(count)
	var below uint64
	for i, c := range histogram {
		if c == 0 || float64(below+c) < rank {
			below += c
			continue
		}
		if i == len(histogram)-1 {
			return latencyBound(i - 1) // beyond the last bound: say the bound
		}
		lower := time.Duration(0)
		if i > 0 {
			lower = latencyBound(i - 1)
		}
		upper := latencyBound(i)
		return lower + time.Duration(float64(upper-lower)*(rank-float64(below))/float64(c))
	}
	return latencyBound(len(histogram) - 2)
}
