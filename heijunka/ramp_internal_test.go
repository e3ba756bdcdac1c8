package heijunka

import (
	"math"
	"math/big"
	"testing"

	"pgregory.net/rapid"
)

// TestRampShareFollowsThePercent: the share of a percent p in (0, 100] —
// the points below it, out of rampPoints — is p% of the points to within
// one point and the rounding of p itself; it is below every point only
// at 100%, and a percent with at most four decimals admits whole
// millionths of the keys.
func TestRampShareFollowsThePercent(t *testing.T) {
	check := func(t interface{ Fatalf(string, ...any) }, p float64) {
		share := rampShare(p)
		// p% of the points, exactly: p·10^4·2^rampFine.
		want := new(big.Float).SetPrec(200).SetFloat64(p)
		want.Mul(want, big.NewFloat(1e4))
		want.SetMantExp(want, rampFine)
		// p·10^4 is rounded once before it is scaled (or p is taken for
		// the number of millionths it is nearest to): half a unit of the
		// one or the other, scaled, and half a point for rounding to a
		// whole point.
		slack := big.NewFloat(math.Max(ulp(p*1e4), 1e4*ulp(p))/2*(1<<rampFine) + 0.5)
		d := new(big.Float).SetPrec(200).SetUint64(share)
		d.Sub(d, want)
		if d.Abs(d).Cmp(slack) > 0 {
			t.Fatalf("share of %v%% is %d points, %v away from %v", p, share, d, want)
		}
		if p < 100 && share >= rampPoints {
			t.Fatalf("share of %v%% admits every key", p)
		}
		if p == 100 && share != rampPoints {
			t.Fatalf("share of 100%% is %d, want %d", share, uint64(rampPoints))
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		check(rt, rapid.Float64Range(0, 100).Filter(func(p float64) bool { return p > 0 }).Draw(rt, "p"))
	})
	rapid.Check(t, func(rt *rapid.T) {
		millionths := rapid.IntRange(1, 1_000_000).Draw(rt, "millionths")
		p := float64(millionths) / 1e4
		check(rt, p)
		if got, want := rampShare(p), uint64(millionths)<<rampFine; got != want {
			rt.Fatalf("share of %v%% is %d, want %d millionths of the keys", p, got, millionths)
		}
	})
	for _, p := range []float64{math.Nextafter(100, 0), 99.99996, 100, 4e-5, 1e-15, 1e-17} {
		check(t, p)
	}
}

// ulp returns the gap between x and the next float64 above it.
func ulp(x float64) float64 { return math.Nextafter(x, math.Inf(1)) - x }
