package bench

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/taipattern/taikit/heijunka"
)

// The heijunka Limiter follows golang.org/x/time/rate: the tests below run
// both on the same calls at the same times and compare what each admits.
// Where they differ on purpose (the Limiter's doc lists it), the difference
// is pinned, so that it stays a decision.

var rateT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func rateLimit(r float64) rate.Limit {
	if math.IsInf(r, 1) {
		return rate.Inf
	}
	return rate.Limit(r)
}

func newPair(t *testing.T, l heijunka.Limit) (*heijunka.Limiter, *rate.Limiter) {
	t.Helper()
	h, err := heijunka.NewLimiter(l, heijunka.LimiterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return h, rate.NewLimiter(rateLimit(l.Rate), l.Burst)
}

// TestLimiterDecidesAsRate drives both limiters through random AllowN,
// ReserveN and SetLimitAt calls at times moving forward, and requires the
// same answers: the same admissions, and reservations acting at the same
// time (to a microsecond or a millionth, for rate's floating point).
// Canceled reservations are left out: after several cancels each limiter
// returns less than it might, by rules of its own (heijunka's tests check
// that its own never let more than the limit pass).
func TestLimiterDecidesAsRate(t *testing.T) {
	for _, l := range []heijunka.Limit{
		{Rate: 1, Burst: 1}, {Rate: 10, Burst: 5}, {Rate: 4, Burst: 3}, {Rate: 3, Burst: 3},
		{Rate: 0.5, Burst: 2}, {Rate: 1000, Burst: 1}, {Rate: 1e-6, Burst: 1},
		{Rate: 1e9, Burst: 1 << 40}, {Rate: math.Inf(1), Burst: 0}, {Rate: math.Inf(1), Burst: 3},
	} {
		t.Run(l.String()+"/"+time.Duration(l.Burst).String(), func(t *testing.T) {
			h, x := newPair(t, l)
			rng := rand.New(rand.NewPCG(uint64(l.Burst), math.Float64bits(l.Rate)))
			// Steps of up to two intervals, so that the bucket is
			// sometimes full, sometimes empty; the 5000 calls stay within
			// a few years, which the Limiter takes as they are.
			span := int64(2 * time.Second)
			if l.Rate > 0 && !math.IsInf(l.Rate, 1) {
				span = min(max(int64(2e9/l.Rate), 2), int64(time.Hour))
			}
			now := rateT0
			for i := range 5000 {
				now = now.Add(time.Duration(rng.Int64N(span)))
				n := rng.IntN(min(l.Burst, 8) + 2) // 0 to one more than the burst
				switch k := rng.IntN(20); {
				case k == 0: // another rate, the same burst
					r := []float64{l.Rate, 1, 10, 0.25, math.Inf(1)}[rng.IntN(5)]
					if (heijunka.Limit{Rate: r, Burst: l.Burst}).Validate() != nil {
						continue
					}
					if err := h.SetLimitAt(now, heijunka.Limit{Rate: r, Burst: l.Burst}); err != nil {
						t.Fatal(err)
					}
					x.SetLimitAt(now, rateLimit(r))
				case k < 8:
					hr, xr := h.ReserveN(now, n), x.ReserveN(now, n)
					hd, xd := hr.DelayFrom(now), xr.DelayFrom(now)
					if hr.OK() != xr.OK() || (hr.OK() && (hd-xd).Abs() > max(time.Microsecond, hd/1e6)) {
						t.Fatalf("call %d at %v, limit %v: ReserveN(%d) is OK %v after %v; rate says OK %v after %v",
							i, now.Sub(rateT0), h.Limit(), n, hr.OK(), hd, xr.OK(), xd)
					}
				default:
					if a, b := h.AllowN(now, n), x.AllowN(now, n); a != b {
						t.Fatalf("call %d at %v, limit %v: AllowN(%d) is %v; rate says %v",
							i, now.Sub(rateT0), h.Limit(), n, a, b)
					}
				}
			}
		})
	}
}

// TestLimiterDiffersFromRate pins the documented differences.
func TestLimiterDiffersFromRate(t *testing.T) {
	t.Run("rate 0 admits nothing", func(t *testing.T) {
		h, x := newPair(t, heijunka.Limit{Rate: 0, Burst: 2})
		if h.AllowN(rateT0, 1) || !x.AllowN(rateT0, 1) {
			t.Error("heijunka admits nothing at Rate 0; rate spends its burst")
		}
	})
	t.Run("negative n", func(t *testing.T) {
		h, x := newPair(t, heijunka.Limit{Rate: 1, Burst: 1})
		if h.AllowN(rateT0, -1) || !x.AllowN(rateT0, -1) {
			t.Error("heijunka refuses n < 0; rate takes it as tokens given back")
		}
	})
	t.Run("raising the burst", func(t *testing.T) {
		h, x := newPair(t, heijunka.Limit{Rate: 1, Burst: 1})
		h.AllowN(rateT0, 1)
		x.AllowN(rateT0, 1)
		if err := h.SetLimitAt(rateT0, heijunka.Limit{Rate: 1, Burst: 3}); err != nil {
			t.Fatal(err)
		}
		x.SetBurstAt(rateT0, 3)
		if !h.AllowN(rateT0, 2) || x.AllowN(rateT0, 1) {
			t.Error("heijunka carries the one event used, so two are free; rate carries its zero tokens")
		}
	})
	t.Run("time going back", func(t *testing.T) {
		h, x := newPair(t, heijunka.Limit{Rate: 1, Burst: 1})
		at := func(s int) time.Time { return rateT0.Add(time.Duration(s) * time.Second) }
		for _, s := range []int{10, 5} {
			h.AllowN(at(s), 0)
			if s == 10 {
				h.AllowN(at(s), 1)
				x.AllowN(at(s), 1)
			} else {
				x.AllowN(at(s), 0) // moves rate's clock back to 5s
			}
		}
		if h.AllowN(at(6), 1) || !x.AllowN(at(6), 1) {
			t.Error("heijunka frees nothing for going back; rate refills from 5s again")
		}
	})
	t.Run("rate rounded to whole nanoseconds", func(t *testing.T) {
		h, x := newPair(t, heijunka.Limit{Rate: 7e8, Burst: 1})
		var hn, xn int
		for ns := range 1000 {
			now := rateT0.Add(time.Duration(ns))
			if h.AllowN(now, 1) {
				hn++
			}
			if x.AllowN(now, 1) {
				xn++
			}
		}
		if hn != 1000 || xn != 701 {
			t.Errorf("in 1µs at 7e8/s heijunka admits %d (one a nanosecond), rate %d", hn, xn)
		}
	})
}

// TestLimiterCancelsAsRate: a canceled reservation with a later one booked
// behind it returns only what the later one does not queue behind, in both.
func TestLimiterCancelsAsRate(t *testing.T) {
	h, x := newPair(t, heijunka.Limit{Rate: 10, Burst: 2})
	h.AllowN(rateT0, 2)
	x.AllowN(rateT0, 2)
	hr, xr := h.ReserveN(rateT0, 2), x.ReserveN(rateT0, 2) // act at 200ms
	h.ReserveN(rateT0, 1)                                  // at 300ms
	x.ReserveN(rateT0, 1)
	hr.CancelAt(rateT0)
	xr.CancelAt(rateT0)
	if hd, xd := h.ReserveN(rateT0, 1).DelayFrom(rateT0), x.ReserveN(rateT0, 1).DelayFrom(rateT0); hd != xd {
		t.Errorf("after the cancel a booking acts after %v; rate says %v", hd, xd)
	}
}
