package localfleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestLatencyBuckets(t *testing.T) {
	assert.Equal(t, 0, latencyBucket(0))
	assert.Equal(t, 0, latencyBucket(minLatency))
	assert.Equal(t, 1, latencyBucket(minLatency+1))
	assert.Equal(t, latencyBuckets-1, latencyBucket(time.Hour))
	assert.Greater(t, latencyBound(latencyBuckets-2), time.Minute)
	for _, d := range []time.Duration{150 * time.Microsecond, time.Millisecond, 37 * time.Millisecond, time.Second, 42 * time.Second} {
		i := latencyBucket(d)
		assert.LessOrEqual(t, d, latencyBound(i), "%v", d)
		assert.Greater(t, d, latencyBound(i-1), "%v", d)
		assert.LessOrEqual(t, latencyBound(i), d*6/5+time.Nanosecond, "%v's bound is within a fifth", d)
	}
}

// TestLatencyBucketsAtTheirBounds: every bucket holds its own upper bound
// and not a nanosecond more, as latencyBound computes it.
func TestLatencyBucketsAtTheirBounds(t *testing.T) {
	for i := 1; i < latencyBuckets-1; i++ {
		bound := latencyBound(i)
		assert.Equal(t, i, latencyBucket(bound), "bound(%d) = %v", i, bound)
		assert.Equal(t, i+1, latencyBucket(bound+1), "bound(%d)+1ns = %v", i, bound+1)
	}
}

func TestWindowSums(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	w := newWindow(10 * time.Second)
	// One second: 100 requests, 20 of them 500s, one in a hundred slow.
	for i := range 100 {
		code, d := 200, 10*time.Millisecond
		if i%5 == 0 {
			code = 500
		}
		if i == 0 {
			d = 2 * time.Second
		}
		w.record(t0.Add(time.Duration(i)*time.Millisecond), code, d)
	}
	r := w.read(t0.Add(500*time.Millisecond), time.Second)
	assert.Equal(t, uint64(100), r.requests)
	assert.Equal(t, uint64(20), r.errors)
	assert.InDelta(t, float64(10*time.Millisecond), float64(r.p99), float64(2*time.Millisecond), "p99 %v", r.p99)

	// Two slow ones in a hundred move the p99 to the slow bucket.
	w.record(t0.Add(time.Second), 200, 2*time.Second)
	r = w.read(t0.Add(time.Second), 2*time.Second)
	assert.Equal(t, uint64(101), r.requests)
	assert.InDelta(t, float64(2*time.Second), float64(r.p99), float64(400*time.Millisecond), "p99 %v", r.p99)

	// A span of one second sees only the second now is in.
	r = w.read(t0.Add(time.Second), time.Second)
	assert.Equal(t, reading{requests: 1, p99: r.p99}, r)
	// Later seconds no longer see t0's.
	r = w.read(t0.Add(10*time.Second), 10*time.Second)
	assert.Equal(t, uint64(1), r.requests)
	r = w.read(t0.Add(11*time.Second), 10*time.Second)
	assert.Equal(t, reading{}, r)

	// A second reused by the ring starts from zero.
	w.record(t0.Add(11*time.Second), 503, time.Millisecond)
	r = w.read(t0.Add(11*time.Second), 10*time.Second)
	assert.Equal(t, uint64(1), r.requests)
	assert.Equal(t, uint64(1), r.errors)
}

func TestQuantile(t *testing.T) {
	var h [latencyBuckets]uint64
	assert.Equal(t, time.Duration(0), quantile(0.99, h[:], 0))
	h[latencyBuckets-1] = 10
	assert.Equal(t, latencyBound(latencyBuckets-2), quantile(0.99, h[:], 10), "beyond the last bound")
	h = [latencyBuckets]uint64{}
	h[0] = 100
	assert.LessOrEqual(t, quantile(0.99, h[:], 100), minLatency)
}
