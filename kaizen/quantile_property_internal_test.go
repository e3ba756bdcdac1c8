package kaizen

import (
	"math"
	"math/big"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestQuantileMatchesExactNearestRank: for any samples (all equal, one,
// negative, tiny, huge) and any q, the quantile is within 0.4% of the
// value at rank ceil(q×n) of the sorted samples, or of the rank that q×n
// is within floating-point rounding of; q = 0 and rank 1 read the smallest
// value exactly, the last rank the largest.
func TestQuantileMatchesExactNearestRank(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		gen := rapid.OneOf(
			rapid.Int64Range(-1000, 1000),
			rapid.Int64Range(0, 1<<uint(rapid.IntRange(0, 62).Draw(rt, "bits"))),
			rapid.SampledFrom([]int64{0, 1, 255, 256, 257, math.MaxInt64, math.MinInt64}),
		)
		var vals []time.Duration
		if rapid.Bool().Draw(rt, "allEqual") {
			v := time.Duration(gen.Draw(rt, "v"))
			vals = slices.Repeat([]time.Duration{v}, rapid.IntRange(1, 50).Draw(rt, "n"))
		} else {
			for _, v := range rapid.SliceOfN(gen, 1, 200).Draw(rt, "vals") {
				vals = append(vals, time.Duration(v))
			}
		}
		var h histogram
		for i, v := range vals {
			h.add(binOf(v))
			vals[i] = max(v, 0)
		}
		slices.Sort(vals)
		n := uint64(len(vals))
		lo, hi := vals[0], vals[n-1]
		q := rapid.OneOf(rapid.Float64Range(0, 1), rapid.SampledFrom([]float64{0, 1e-300, 0.5, 0.9, 0.99, 0.999, 1})).Draw(rt, "q")
		got := h.quantile(q, n, lo, hi)

		exact := new(big.Rat).Mul(new(big.Rat).SetFloat64(q), new(big.Rat).SetInt(new(big.Int).SetUint64(n)))
		ceil := new(big.Int).Quo(exact.Num(), exact.Denom())
		if new(big.Rat).SetInt(ceil).Cmp(exact) < 0 {
			ceil.Add(ceil, big.NewInt(1))
		}
		ranks := []uint64{min(max(ceil.Uint64(), 1), n)}
		if x := q * float64(n); math.Abs(x-math.Round(x)) <= math.Round(x)*0x1p-50 {
			ranks = append(ranks, min(max(uint64(math.Round(x)), 1), n))
		}
		for _, r := range ranks {
			want := vals[r-1]
			if r == 1 && got == lo || r == n && got == hi {
				return
			}
			if r != 1 && r != n && math.Abs(float64(got)-float64(want)) <= 0.004*float64(want) {
				return
			}
		}
		rt.Fatalf("quantile %v of %d values is %d, want the value at rank %v of %v", q, n, got, ranks, vals)
	})
}
