package jidoka

import (
	"testing"
	"time"
)

// Every latency falls in a bucket whose upper bound is above it and at
// most 25% (or 1 µs) higher, and buckets follow one another.
func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for us := int64(0); us < 1<<20; us += 1 + us/97 {
		d := time.Duration(us) * time.Microsecond
		i := latencyBucket(d)
		if i < prev {
			t.Fatalf("bucket of %v is %d, before %d", d, i, prev)
		}
		prev = i
		up := latencyUpper(i)
		if up <= d {
			t.Fatalf("upper bound %v of bucket %d is not above %v", up, i, d)
		}
		if up > d+d/4+time.Microsecond {
			t.Fatalf("upper bound %v of bucket %d is more than 25%% above %v", up, i, d)
		}
		if i > 0 && latencyUpper(i-1) > d {
			t.Fatalf("%v is in bucket %d, but bucket %d ends at %v", d, i, i-1, latencyUpper(i-1))
		}
	}
	if got := latencyBucket(-time.Second); got != 0 {
		t.Fatalf("a negative latency is in bucket %d", got)
	}
	if got := latencyBucket(100 * time.Hour * 24 * 365); got != latencyBuckets-1 {
		t.Fatalf("a huge latency is in bucket %d", got)
	}
}

func TestLatencyQuantile(t *testing.T) {
	l := &latencies{window: 1 << 40}
	if _, ok := l.quantile(0.5, 1); ok {
		t.Fatal("a quantile of nothing")
	}
	for i := 1; i <= 100; i++ {
		l.add(time.Duration(i) * time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}} {
		got, ok := l.quantile(tt.q, 100)
		if !ok || got < tt.want || got > tt.want+tt.want/4+time.Microsecond {
			t.Errorf("quantile(%v) = %v, %v; want %v to 25%% above", tt.q, got, ok, tt.want)
		}
	}
	if _, ok := l.quantile(0.5, 101); ok {
		t.Error("a quantile with fewer samples than asked for")
	}
	l.decay()
	if _, ok := l.quantile(0.5, 60); ok {
		t.Error("decay did not halve the counts")
	}
}

// A Window of more than 2^32 calls lets a bucket count past 2^32 before
// it is halved: the count must go on, not wrap around to nothing.
func TestLatencyCountsPastUint32(t *testing.T) {
	l := &latencies{window: 1 << 40}
	fast, slow := time.Millisecond, time.Second
	l.counts[latencyBucket(fast)].Store(1<<32 - 1)
	l.add(fast) // the 2^32-th fast call
	for range 10 {
		l.add(slow)
	}
	got, ok := l.quantile(0.5, 1)
	if !ok || got != latencyUpper(latencyBucket(fast)) {
		t.Fatalf("median of 2^32 calls of %v and 10 of %v is %v, %v", fast, slow, got, ok)
	}
}

// The quantile is the nearest rank, ceil(q×total): 0.95 of 32 latencies is
// the 31st, so that at most 5% of calls are slower than the hedge delay.
// Rounded to the nearest, 30.4 was the 30th, and 2 calls of 32 (6.25%)
// were slower. A q×total within floating-point rounding of a whole number
// is that number: 0.07 of 100 latencies is the 7th, though 0.07×100 is
// 7.000000000000001.
func TestLatencyQuantileIsTheNearestRank(t *testing.T) {
	fast, slow := time.Millisecond, 100*time.Millisecond
	for _, tt := range []struct {
		q          float64
		fast, slow int
		want       time.Duration
	}{
		{0.95, 30, 2, slow}, // rank 31 (30.4 rounded up)
		{0.95, 31, 1, fast}, // rank 31
		{0.5, 1, 2, slow},   // rank 2 (1.5)
		{0.9, 9, 1, fast},   // rank 9
		{0.07, 7, 93, fast}, // rank 7, not 8
		{0.07, 6, 94, slow},
		{0.01, 1, 1, fast}, // rank 1 (0.02)
	} {
		l := &latencies{window: 1 << 40}
		for range tt.fast {
			l.add(fast)
		}
		for range tt.slow {
			l.add(slow)
		}
		got, ok := l.quantile(tt.q, 1)
		if want := latencyUpper(latencyBucket(tt.want)); !ok || got != want {
			t.Errorf("quantile(%v) of %d × %v and %d × %v = %v, %v; want %v", tt.q, tt.fast, fast, tt.slow, slow, got, ok, want)
		}
	}
}
