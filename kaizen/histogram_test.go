package kaizen

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// quantile reads the quantile of h alone, as a period of one slot does.
func (h *histogram) quantile(q float64, total uint64, lo, hi time.Duration) time.Duration {
	return mergeLatencies([]*histogram{h}).quantile(q, total, lo, hi)
}

func TestBinOfIsMonotoneAndTight(t *testing.T) {
	values := []time.Duration{0, 1, 2, 255, 256, 257, 511, 512, 1000, 123456, time.Millisecond, time.Second,
		time.Hour, 1<<62 + 12345, math.MaxInt64}
	for _, v := range values {
		b := binOf(v)
		require.Less(t, b>>subBits, numChunks, "value %d", v)
		mid := binValue(b)
		if v > 0 {
			assert.LessOrEqual(t, math.Abs(mid-float64(v))/float64(v), 1.0/256, "value %d bin %d mid %v", v, b, mid)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	prev := -1
	vs := make([]time.Duration, 10000)
	for i := range vs {
		vs[i] = time.Duration(r.Int64N(1 << uint(r.IntN(62))))
	}
	slices.Sort(vs)
	for _, v := range vs {
		b := binOf(v)
		require.GreaterOrEqual(t, b, prev, "bins must not decrease with the value")
		prev = b
	}
	assert.Equal(t, 0, binOf(-5), "negative durations count as zero")
}

// TestQuantileAccuracy compares histogram quantiles with exact
// nearest-rank quantiles on random data of several shapes.
func TestQuantileAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	shapes := map[string]func() time.Duration{
		"uniform 1-100ms": func() time.Duration { return time.Millisecond + time.Duration(r.Int64N(int64(99*time.Millisecond))) },
		"exponential 20ms": func() time.Duration {
			return time.Duration(r.ExpFloat64() * float64(20*time.Millisecond))
		},
		"log-normal": func() time.Duration {
			return time.Duration(math.Exp(r.NormFloat64()*1.5) * float64(5*time.Millisecond))
		},
		"log-uniform 1us-10s": func() time.Duration {
			return time.Duration(math.Exp(math.Log(1e3) + r.Float64()*(math.Log(1e10)-math.Log(1e3))))
		},
		"bimodal": func() time.Duration {
			if r.IntN(10) == 0 {
				return 2*time.Second + time.Duration(r.Int64N(int64(time.Second)))
			}
			return time.Duration(r.Int64N(int64(3 * time.Millisecond)))
		},
	}
	for name, gen := range shapes {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{1, 7, 100, 100000} {
				var h histogram
				vs := make([]time.Duration, n)
				for i := range vs {
					vs[i] = gen()
					h.add(binOf(vs[i]))
				}
				slices.Sort(vs)
				for _, q := range []float64{0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1} {
					rank := max(int(math.Ceil(q*float64(n))), 1)
					exact := vs[rank-1]
					got := h.quantile(q, uint64(n), vs[0], vs[n-1])
					if exact == 0 {
						assert.LessOrEqual(t, got, time.Duration(1), "n=%d q=%v", n, q)
						continue
					}
					relErr := math.Abs(float64(got-exact)) / float64(exact)
					assert.LessOrEqual(t, relErr, 0.01, "n=%d q=%v exact=%v got=%v", n, q, exact, got)
				}
			}
		})
	}
}

func TestHistogramMergeAndReset(t *testing.T) {
	var a, b, all histogram
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		d := time.Duration(r.Int64N(int64(time.Second)))
		all.add(binOf(d))
		if i%2 == 0 {
			a.add(binOf(d))
		} else {
			b.add(binOf(d))
		}
	}
	m := mergeLatencies([]*histogram{&a, &b})
	for _, q := range []float64{0.1, 0.5, 0.99} {
		assert.Equal(t, all.quantile(q, 5000, 0, time.Second), m.quantile(q, 5000, 0, time.Second))
	}
	for k := range 1001 {
		q := float64(k) / 1000
		require.Equal(t, all.quantile(q, 5000, 0, time.Second), m.quantile(q, 5000, 0, time.Second), "q=%v", q)
	}
	chunks := a.chunks
	a.reset()
	assert.Equal(t, chunks, a.chunks, "reset keeps the chunks")
	assert.Equal(t, time.Duration(0), a.quantile(0.5, 0, 0, 0))
	for _, c := range a.chunks {
		if c != nil {
			assert.Equal(t, [chunkBins]uint64{}, *c)
		}
	}
}

func TestQuantileEdgeCases(t *testing.T) {
	var h histogram
	assert.Equal(t, time.Duration(0), h.quantile(0.5, 0, 0, 0), "empty")
	h.add(binOf(10 * time.Millisecond))
	assert.Equal(t, 10*time.Millisecond, h.quantile(0.5, 1, 10*time.Millisecond, 10*time.Millisecond), "one value, clamped to min and max")
	assert.Equal(t, 10*time.Millisecond, h.quantile(7, 1, 10*time.Millisecond, 10*time.Millisecond), "q above 1 is clamped")
	assert.Equal(t, time.Duration(0), h.quantile(math.NaN(), 1, 0, time.Second))
}

// TestBinGeometry pins each bin down: below 256 ns a bin holds one value;
// above, bin b holds [lower, lower+width) with width a power of two and
// 128 bins per power of two, and binValue is its exact middle.
func TestBinGeometry(t *testing.T) {
	for v := range time.Duration(256) {
		assert.Equal(t, int(v), binOf(v))
		assert.Equal(t, float64(v), binValue(int(v)))
	}
	r := rand.New(rand.NewPCG(5, 6))
	values := []time.Duration{256, 257, 258, 511, 512, 513, 1023, 1024, 123456, math.MaxInt64}
	for range 2000 {
		values = append(values, time.Duration(r.Int64N(1<<uint(9+r.IntN(54)))))
	}
	for _, v := range values {
		if v < 256 {
			continue
		}
		b := binOf(v)
		e := bits.Len64(uint64(v)) - 8 // v is in [2^(e+7), 2^(e+8)): bins of width 2^e
		width := float64(uint64(1) << e)
		lower := float64(uint64(v) >> e << e)
		require.Equal(t, (e+1)*chunkBins+int(uint64(v)>>e)-chunkBins, b, "v=%d", v)
		assert.Equal(t, lower+width/2, binValue(b), "the middle of the bin of %d", v)
		assert.Equal(t, b, binOf(time.Duration(lower)), "the bin starts at %v", lower)
		if v < math.MaxInt64-time.Duration(width) {
			assert.Equal(t, b+1, binOf(time.Duration(lower+width)), "the next bin starts at %v", lower+width)
		}
	}
}

// TestQuantileNearestRank checks the rank a quantile reads on values that
// each have a bin of their own, so the answer is exact.
func TestQuantileNearestRank(t *testing.T) {
	var h histogram
	for v := 1; v <= 10; v++ {
		h.add(binOf(time.Duration(v * 10)))
	}
	for q, want := range map[float64]time.Duration{0: 10, 0.05: 10, 0.1: 10, 0.11: 20, 0.5: 50, 0.55: 60, 0.9: 90, 0.91: 100, 1: 100, -1: 10} {
		assert.Equal(t, want, h.quantile(q, 10, 10, 100), "q=%v", q)
	}
	assert.Equal(t, time.Duration(30), h.quantile(0.1, 10, 30, 40), "clamped to the smallest value seen")

	// Where bins are wide, the 0 quantile is the smallest value seen, not
	// its bin's middle.
	var wide histogram
	lo, hi := time.Duration(1_000_001), 5*time.Second
	wide.add(binOf(lo))
	wide.add(binOf(hi))
	require.NotEqual(t, lo, time.Duration(math.Round(binValue(binOf(lo)))), "the test needs a bin wider than 1ns")
	assert.Equal(t, lo, wide.quantile(0, 2, lo, hi))
	assert.Equal(t, time.Duration(40), h.quantile(0.9, 10, 30, 40), "clamped to the largest value seen")
}

// TestQuantileRankOfDecimalQ checks that a quantile written as a decimal
// reads the rank it names, though q×n lands a little above it in floating
// point: 0.07 of 100 values is the 7th (0.07*100 is 7.000000000000001).
func TestQuantileRankOfDecimalQ(t *testing.T) {
	for _, n := range []int{100, 200, 250} {
		var h histogram
		for v := 1; v <= n; v++ { // below 256 ns, each value has a bin of its own
			h.add(binOf(time.Duration(v)))
		}
		for k := 1; k <= n; k++ {
			q := float64(k) / float64(n)
			require.Equal(t, time.Duration(k), h.quantile(q, uint64(n), 1, time.Duration(n)), "n=%d q=%v", n, q)
		}
	}
	var h histogram
	for v := 1; v <= 100; v++ {
		h.add(binOf(time.Duration(v)))
	}
	assert.Equal(t, time.Duration(7), h.quantile(0.07, 100, 1, 100))
	assert.Equal(t, time.Duration(14), h.quantile(0.14, 100, 1, 100))
	assert.Equal(t, time.Duration(1), h.quantile(1e-300, 100, 1, 100), "a q above 0 reads at least the first value")

	var two histogram
	two.add(binOf(1))
	two.add(binOf(2))
	assert.Equal(t, time.Duration(1), two.quantile(0.5+0x1p-51, 2, 1, 2), "q*n = 1+2^-50 is within rounding of rank 1")
	assert.Equal(t, time.Duration(2), two.quantile(0.5+0x1p-49, 2, 1, 2), "q*n = 1+2^-48 is past rank 1")
}

// TestQuantileOfTheFirstAndLastRankIsExact: the value at rank 1 is the
// smallest value seen and the value at the last rank the largest, both
// known exactly, so a quantile reading either is that value, not the
// middle of its bin: Quantile(1) is Max, and so is the p99 of fewer than
// 100 values.
func TestQuantileOfTheFirstAndLastRankIsExact(t *testing.T) {
	// Two values at the edges of wide bins: lo at the bottom of its bin,
	// whose middle is above it, hi at the top of its bin, whose middle is
	// below it.
	lo := time.Duration(1 << 30)
	hi := time.Duration(5<<30 - 1)
	require.Greater(t, binValue(binOf(lo)), float64(lo), "the test needs lo below its bin's middle")
	require.Less(t, binValue(binOf(hi)), float64(hi), "the test needs hi above its bin's middle")
	var h histogram
	h.add(binOf(lo))
	h.add(binOf(hi))
	for _, q := range []float64{1, 0.99, 0.51} {
		assert.Equal(t, hi, h.quantile(q, 2, lo, hi), "q=%v reads rank 2 of 2: the largest value", q)
	}
	for _, q := range []float64{0, 1e-9, 0.5} {
		assert.Equal(t, lo, h.quantile(q, 2, lo, hi), "q=%v reads rank 1: the smallest value", q)
	}
}

// A slot's histogram allocates a chunk of 128 counters (1 KiB) for each
// power of two its latencies fall into: 57 chunks when they fall into
// every one a time.Duration holds (the last of the 58 would be for 2^63
// ns and up), and the slot takes about 59 KB, as StatsOptions documents;
// at the defaults (64 kinds, 3 windows of 2×12 slots) about 272 MB.
func TestSlotMemoryBound(t *testing.T) {
	chunkBytes := int(unsafe.Sizeof([chunkBins]uint64{}))
	require.Equal(t, 1024, chunkBytes)
	// TotalAlloc counts what every goroutine allocates: the least of a few
	// tries is what the observations took.
	var chunks int
	allocated := uint64(math.MaxUint64)
	for range 5 {
		s, err := NewStats(StatsOptions{Windows: []time.Duration{time.Hour}, Resolution: 1, MaxKinds: 1})
		require.NoError(t, err)
		now := time.Now()
		observe := func(d time.Duration) {
			s.Observe(t.Context(), tai.Record{Kind: "k", Start: now.Add(-d), Duration: d})
		}
		observe(0) // makes the kind and its first chunk

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for e := range 63 {
			observe(1 << e)
		}
		observe(math.MaxInt64)
		runtime.ReadMemStats(&after)
		allocated = min(allocated, after.TotalAlloc-before.TotalAlloc)

		k := (*s.kinds.Load())["k"]
		sl := &k.rings[0].slots[k.rings[0].epochOf(now.UnixNano())%2]
		chunks = 0
		for _, c := range sl.hist.chunks {
			if c != nil {
				chunks++
			}
		}
	}
	require.Equal(t, numChunks-1, chunks, "a chunk for each power of two")
	require.Equal(t, numChunks-2, binOf(math.MaxInt64)>>subBits, "the last chunk")
	t.Logf("measured: %d bytes for %d chunks", allocated, chunks-1)
	assert.Equal(t, uint64((chunks-1)*chunkBytes), allocated, "measured")

	slotBytes := int(unsafe.Sizeof(slot{})) + chunks*chunkBytes
	t.Logf("a slot takes up to %d bytes", slotBytes)
	assert.InDelta(t, 59_000, slotBytes, 500, "about 59 KB")
	defaults := 64 * 3 * 2 * 12 * slotBytes
	assert.InDelta(t, 272e6, float64(defaults), 1e6, "about 272 MB at the defaults")

	// Latencies from 1µs to 10s fall into 25 chunks.
	typical := (binOf(10*time.Second)>>subBits - binOf(time.Microsecond)>>subBits + 1)
	assert.Equal(t, 25, typical)
	typicalBytes := int(unsafe.Sizeof(slot{})) + typical*chunkBytes
	assert.InDelta(t, 26_000, typicalBytes, 500, "about 26 KB")
	assert.InDelta(t, 120e6, float64(64*3*2*12*typicalBytes), 1e6, "about 120 MB at the defaults")
}
