package heijunka_test

import (
	"fmt"
	"math"
	"math/big"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
)

// gcraModel is the generic cell rate algorithm in exact integer
// arithmetic, as the Limit and Decision docs state it: the schedule is
// the time the bucket is full again; n events move it n intervals on from
// the later of it and now, and pass when that lands no more than Burst
// intervals ahead of now.
type gcraModel struct {
	limit    heijunka.Limit
	interval int64 // nanoseconds, 1/Rate rounded to the nearest
	tat      int64
	fresh    bool  // nothing booked yet
	hi       int64 // the latest time a booking or a change of Limit was given
}

// setLimit is SetLimitAt as its doc states it: the debt, in events,
// carries over to the new Limit, rounded up to a whole nanosecond and
// capped at its Burst, but for events booked past the old Burst, which
// carry over whole; a change from or to a closed or Unlimited Limit
// starts full; and a change at a time before one used already counts
// the debt as a change at that later time would, if more.
func (m *gcraModel) setLimit(now int64, limit heijunka.Limit) {
	if limit == m.limit {
		return
	}
	finite := func(l heijunka.Limit) bool { return !l.IsClosed() && !l.IsUnlimited() }
	iv := int64(limit.Interval())
	conv := func(at int64) (int64, bool) {
		if m.fresh || !finite(m.limit) || !finite(limit) {
			return 0, false
		}
		if m.tat <= at {
			return m.tat, true
		}
		// ⌈x·iv/old iv⌉, exactly.
		convert := func(x int64) *big.Int {
			num := new(big.Int).Mul(big.NewInt(x), big.NewInt(iv))
			q, r := new(big.Int).QuoRem(num, big.NewInt(m.interval), new(big.Int))
			if r.Sign() > 0 {
				q.Add(q, big.NewInt(1))
			}
			return q
		}
		// Events booked past the old Burst carry over whole; the rest
		// is capped at the new Burst.
		debt, booked := m.tat-at, big.NewInt(0)
		if over := debt - m.interval*int64(m.limit.Burst); over > 0 {
			debt -= over
			booked = convert(over)
		}
		q := convert(debt)
		if tol := big.NewInt(iv * int64(limit.Burst)); q.Cmp(tol) > 0 {
			q = tol
		}
		return at + q.Int64() + booked.Int64(), true
	}
	tat, ok := conv(now)
	if ok && m.hi > now {
		tat2, _ := conv(m.hi)
		tat = max(tat, tat2)
	}
	m.limit, m.interval = limit, iv
	m.tat, m.fresh = tat, !ok
	m.hi = max(m.hi, now)
}

func (m *gcraModel) decide(now int64, n int) heijunka.Decision {
	d := heijunka.Decision{Limit: m.limit}
	switch {
	case m.limit.IsUnlimited():
		if n < 0 {
			return heijunka.Decision{Limit: m.limit, RetryAfter: heijunka.InfDuration}
		}
		d.Allowed, d.Remaining = true, math.MaxInt
		return d
	case m.limit.IsClosed() || n < 0:
		d.Allowed = n == 0
		if !d.Allowed {
			d.RetryAfter = heijunka.InfDuration
		}
		return d
	}
	tol := m.interval * int64(m.limit.Burst)
	base := now
	if !m.fresh && m.tat > now {
		base = m.tat
	}
	remaining := func(tat int64) int { return int(max(0, (now+tol-tat)/m.interval)) }
	d.ResetAfter = time.Duration(base - now)
	d.Remaining = remaining(base)
	if n > m.limit.Burst {
		d.RetryAfter = heijunka.InfDuration
		return d
	}
	next := base + int64(n)*m.interval
	if next-now > tol {
		d.RetryAfter = time.Duration(next - now - tol)
		return d
	}
	d.Allowed = true
	d.Remaining = remaining(next)
	d.ResetAfter = time.Duration(next - now)
	if n > 0 {
		m.tat, m.fresh = next, false
		m.hi = max(m.hi, now)
	}
	return d
}

// reserve is ReserveN: n events within the Burst are booked whether or
// not they may pass now, and act once the schedule they leave lies no
// more than Burst intervals ahead. It returns whether they were booked
// and their delay. A denied reservation is not modelled beyond OK.
func (m *gcraModel) reserve(now int64, n int) (bool, time.Duration) {
	switch {
	case n < 0:
		return false, heijunka.InfDuration
	case m.limit.IsUnlimited():
		return true, 0
	case m.limit.IsClosed():
		if n == 0 {
			return true, 0
		}
		return false, heijunka.InfDuration
	case n > m.limit.Burst:
		return false, heijunka.InfDuration
	}
	base := now
	if !m.fresh && m.tat > now {
		base = m.tat
	}
	next := base + int64(n)*m.interval
	act := max(next-m.interval*int64(m.limit.Burst), now)
	// The horizon: 2^62 ns ahead of now (about 146 years), and a
	// schedule that sums with any time and a tolerance in int64.
	if next-now > 1<<62 || next > math.MaxInt64-1<<61-int64(10*365*24*time.Hour) {
		return false, heijunka.InfDuration
	}
	if n > 0 {
		m.tat, m.fresh = next, false
		m.hi = max(m.hi, now)
	}
	return true, time.Duration(act - now)
}

// TestLimiterMatchesGCRAModel drives one Limiter with AllowN, DecideN,
// ReserveN and SetLimitAt at random times (forward, back, onto the
// nanosecond a denied request was told to retry at and either side of it,
// the zero time, a century ahead), with counts (0, the Burst and either
// side of it, negative, huge) and limits (intervals rounded to the
// nanosecond, a burst that takes ten years to refill, Unlimited, closed),
// against the model in exact arithmetic: every Decision, field by field,
// every AllowN and every reservation's delay is the model's.
func TestLimiterMatchesGCRAModel(t *testing.T) {
	limits := []heijunka.Limit{
		{Rate: 10, Burst: 3}, {Rate: 3, Burst: 1}, {Rate: 7e8, Burst: 4}, {Rate: 6e8, Burst: 2},
		{Rate: 1e9, Burst: 1}, {Rate: 1.0 / 60, Burst: 5}, {Rate: 3, Burst: 7},
		{Rate: 1e-7, Burst: 31}, // an interval of 1e16 ns: the burst refills in about ten years
		heijunka.Unlimited(), {Rate: 0, Burst: 3},
	}
	rapid.Check(t, func(rt *rapid.T) {
		limit := limits[rapid.IntRange(0, len(limits)-1).Draw(rt, "limit")]
		type op struct {
			kind  int // 0 AllowN, 1 DecideN, 2 SetLimitAt, 3 ReserveN
			limit int
			when  int // 0 step, 1 retry-after boundary, 2 zero time, 3 far ahead
			step  int64
			delta int64
			n     int
		}
		ops := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) op {
			return op{
				kind:  rapid.IntRange(0, 3).Draw(t, "kind"),
				limit: rapid.IntRange(0, len(limits)-1).Draw(t, "new limit"),
				when:  rapid.IntRange(0, 9).Draw(t, "when"),
				step:  rapid.Int64Range(-4, 6).Draw(t, "intervals"),
				delta: rapid.Int64Range(-1, 1).Draw(t, "ns"),
				n:     rapid.SampledFrom([]int{-1, 0, 1, 1, 2, 3, limit.Burst - 1, limit.Burst, limit.Burst + 1, math.MaxInt}).Draw(t, "n"),
			}
		}), 1, 60).Draw(rt, "ops")
		var failure string
		synctest.Test(t, func(t *testing.T) {
			lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
			if err != nil {
				failure = err.Error()
				return
			}
			epoch := time.Now()
			iv := int64(limit.Interval())
			unit := max(iv, int64(time.Millisecond))
			if unit == int64(heijunka.InfDuration) {
				unit = int64(time.Second)
			}
			m := &gcraModel{limit: limit, interval: iv, fresh: true, hi: math.MinInt64}
			var off, retry int64 // the time, and the latest RetryAfter's
			for i, o := range ops {
				at := epoch
				switch {
				case o.when == 1 && retry != 0:
					off = retry + o.delta
					at = epoch.Add(time.Duration(off))
				case o.when == 2:
					at = time.Time{}
				case o.when == 3:
					at = epoch.Add(100 * 365 * 24 * time.Hour)
				default:
					off += o.step*unit + o.delta
					at = epoch.Add(time.Duration(off))
				}
				now := int64(at.Sub(epoch))
				now = min(max(now, -1<<61), 1<<61)
				if o.kind == 2 {
					// A change at a time before one used already counts
					// the debt at least as one at that time would: not
					// modelled.
					if now >= m.hi {
						if err := lim.SetLimitAt(at, limits[o.limit]); err != nil {
							failure = err.Error()
							return
						}
						m.setLimit(now, limits[o.limit])
					}
					continue
				}
				if o.kind == 3 {
					r := lim.ReserveN(at, o.n)
					ok, delay := m.reserve(now, o.n)
					if r.OK() != ok || ok && r.DelayFrom(at) != delay {
						failure = fmt.Sprintf("step %d: ReserveN at %v, n %d: OK %v delay %v, model %v %v",
							i, time.Duration(now), o.n, r.OK(), r.DelayFrom(at), ok, delay)
						return
					}
					continue
				}
				want := m.decide(now, o.n)
				var got heijunka.Decision
				if o.kind == 0 {
					got.Allowed = lim.AllowN(at, o.n)
					if got.Allowed != want.Allowed {
						failure = formatGCRA(i, "AllowN", now, o.n, got, want)
						return
					}
				} else if got = lim.DecideN(at, o.n); got != want {
					failure = formatGCRA(i, "DecideN", now, o.n, got, want)
					return
				}
				if !want.Allowed && want.RetryAfter != heijunka.InfDuration && now+int64(want.RetryAfter) < 1<<61 {
					retry = now + int64(want.RetryAfter)
				}
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}

func formatGCRA(i int, call string, now int64, n int, got, want heijunka.Decision) string {
	return fmt.Sprintf("step %d: %s at %v, n %d: %+v, model %+v", i, call, time.Duration(now), n, got, want)
}
