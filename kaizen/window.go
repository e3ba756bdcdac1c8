package kaizen

import (
	"math/bits"
	"time"

	"github.com/taipattern/taikit/tai"
)

// numOutcomes is the number of tai outcomes, Succeeded to Failed.
const numOutcomes = int(tai.Failed) + 1

// slot holds what happened to one kind in one time slot of a ring.
type slot struct {
	epoch    int64 // the slot's number, ring.epochOf its start; -1 when unused
	total    uint64
	outcomes [numOutcomes]uint64
	verdicts [tai.Deny + 1]uint64
	sum      sum128 // of the durations, which can pass what a time.Duration holds
	lo, hi   time.Duration
	hist     histogram
}

func (s *slot) reset(epoch int64) {
	s.epoch = epoch
	s.total = 0
	s.outcomes = [numOutcomes]uint64{}
	s.verdicts = [tai.Deny + 1]uint64{}
	s.sum, s.lo, s.hi = sum128{}, 0, 0
	s.hist.reset()
}

func (s *slot) add(o tai.Outcome, v tai.Verdict, d time.Duration, bin int) {
	if d < 0 {
		d = 0
	}
	if s.total == 0 || d < s.lo {
		s.lo = d
	}
	if d > s.hi {
		s.hi = d
	}
	s.total++
	if int(o) < len(s.outcomes) {
		s.outcomes[o]++
	}
	if int(v) < len(s.verdicts) {
		s.verdicts[v]++
	}
	s.sum.add(sum128{lo: uint64(d)})
	s.hist.add(bin)
}

// sum128 is a sum of non-negative durations in 128 bits: 2^64 signals
// of the longest time.Duration do not overflow it.
type sum128 struct{ hi, lo uint64 }

func (s *sum128) add(o sum128) {
	var carry uint64
	s.lo, carry = bits.Add64(s.lo, o.lo, 0)
	s.hi, _ = bits.Add64(s.hi, o.hi, carry)
}

// mean returns the sum divided by n, n > 0 and the count of the durations
// summed, rounded down. Each duration is below 2^63, so the quotient is
// too.
func (s sum128) mean(n uint64) time.Duration {
	q, _ := bits.Div64(s.hi, s.lo, n)
	return time.Duration(q)
}

// ring keeps the slots of one window: 2×n slots of width window/n, enough
// for the current window and the one before it. When n does not divide
// the window, slot k starts at k×window/n rounded up to a nanosecond:
// some slots are a nanosecond longer than others, n slots always make the
// window exactly, and a window ending now covers between window-window/n
// and window of history, as StatsOptions.Resolution says.
type ring struct {
	window time.Duration
	n      int64 // slots per window
	width  int64 // window/n in nanoseconds when n divides it, else 0
	slots  []slot
	// merge lists the histograms of the slots a period merges: scratch
	// space of period, kept to be reused, under the kind's mutex.
	merge []*histogram
}

func newRing(window time.Duration, n int) ring {
	r := ring{window: window, n: int64(n), slots: make([]slot, 2*n)}
	if window%time.Duration(n) == 0 {
		r.width = int64(window) / int64(n)
	}
	for i := range r.slots {
		r.slots[i].epoch = -1
	}
	return r
}

// epochOf returns the slot that holds time t (Unix nanoseconds):
// t×n/window rounded down, in 128 bits, which t×n can need — or, when n
// divides the window (width set), t/width rounded down, cheaper on the
// path of every record (slotAt).
func (r *ring) epochOf(t int64) int64 {
	if r.width > 0 {
		q := t / r.width
		if q*r.width > t { // t before 1970, between two slots' starts
			q--
		}
		return q
	}
	n, w := uint64(r.n), uint64(r.window)
	if t >= 0 {
		hi, lo := bits.Mul64(uint64(t), n)
		q, _ := bits.Div64(hi, lo, w) // hi < n ≤ 1000 < w: no overflow
		return int64(q)
	}
	// -t×n/window rounded up, negated. uint64(-t) holds -MinInt64 too.
	hi, lo := bits.Mul64(uint64(-t), n)
	var carry uint64
	lo, carry = bits.Add64(lo, w-1, 0)
	q, _ := bits.Div64(hi+carry, lo, w)
	return -int64(q)
}

// startOf returns when slot k starts (Unix nanoseconds): k×window/n
// rounded up. Slot k+n starts exactly a window after slot k.
func (r *ring) startOf(k int64) int64 {
	q, j := k/r.n, k%r.n
	if j < 0 {
		q, j = q-1, j+r.n
	}
	// j×window/n rounded up: below window, so the quotient fits.
	hi, lo := bits.Mul64(uint64(j), uint64(r.window))
	var carry uint64
	lo, carry = bits.Add64(lo, uint64(r.n-1), 0)
	f, _ := bits.Div64(hi+carry, lo, uint64(r.n))
	return q*int64(r.window) + int64(f)
}

// slotAt returns the slot for time t (Unix nanoseconds), reset if it held
// an older slot, or nil when t is too old for the ring: before the window
// that ends now and the one before it. A slot that holds t's epoch
// already is returned without reading the clock, even one too old: no
// window reads it, and it is reset when it is reused. A slot that holds a
// later time than t but one ahead of now is reset too: its records were
// stamped by a wall clock that has since been set back, and no window
// reads them until the clock catches up, while t's is read now. For the
// same reason a t more than a slot ahead of now does not take a slot that
// a window reads now (the current window or the one before it): it gets
// nil.
func (r *ring) slotAt(t int64) *slot {
	if t < 0 {
		return nil
	}
	var epoch int64
	if r.width > 0 { // epochOf, inline on the path of every record: t ≥ 0
		epoch = t / r.width
	} else {
		epoch = r.epochOf(t)
	}
	s := &r.slots[epoch%int64(len(r.slots))]
	if s.epoch == epoch {
		return s
	}
	nowNanos := time.Now().UnixNano()
	now := r.epochOf(nowNanos)
	if r.tooOld(t, nowNanos) {
		// No window ending now reads t: the slot would keep a record
		// nobody counts, and Stats would take its time for when the
		// statistics began.
		return nil
	}
	read := s.epoch >= 0 && s.epoch <= now && s.epoch > now-int64(len(r.slots)) // by the windows ending now
	// The next slot is let through: a record timed across a slot's end
	// while the wall clock ran a little slow (NTP slews it) lands there,
	// and costs only the oldest slot, which the next slot's start drops
	// anyway.
	if s.epoch > epoch && s.epoch <= now || epoch > now+1 && read {
		return nil
	}
	s.reset(epoch)
	return s
}

// tooOld reports whether time t is before the window that ends at now
// (Unix nanoseconds) and the one before it.
func (r *ring) tooOld(t, now int64) bool {
	return r.epochOf(t) <= r.epochOf(now)-int64(len(r.slots))
}

// period merges the n slots that end with the slot of epoch last. Its
// Throughput is per second of the time it covers up to now, from since on.
func (r *ring) period(last, now, since int64) Period {
	start, end := r.startOf(last-r.n+1), r.startOf(last+1)
	p := Period{Start: time.Unix(0, start).UTC(), End: time.Unix(0, end).UTC()}
	var sum sum128
	r.merge = r.merge[:0]
	for i := range r.slots {
		s := &r.slots[i]
		if s.total == 0 || s.epoch > last || s.epoch <= last-r.n {
			continue
		}
		if p.Total == 0 || s.lo < p.Min {
			p.Min = s.lo
		}
		p.Max = max(p.Max, s.hi)
		p.Total += s.total
		p.Outcomes.Succeeded += s.outcomes[tai.Succeeded]
		p.Outcomes.Denied += s.outcomes[tai.Denied]
		p.Outcomes.Rejected += s.outcomes[tai.Rejected]
		p.Outcomes.Failed += s.outcomes[tai.Failed]
		p.Verdicts.None += s.verdicts[0]
		p.Verdicts.Allow += s.verdicts[tai.Allow]
		p.Verdicts.Review += s.verdicts[tai.Review]
		p.Verdicts.Deny += s.verdicts[tai.Deny]
		sum.add(s.sum)
		r.merge = append(r.merge, &s.hist)
	}
	if p.Total > 0 {
		p.lat = mergeLatencies(r.merge)
		t := float64(p.Total)
		p.SuccessRate = float64(p.Outcomes.Succeeded) / t
		p.DenyRate = float64(p.Outcomes.Denied) / t
		p.RejectRate = float64(p.Outcomes.Rejected) / t
		p.ErrorRate = float64(p.Outcomes.Failed) / t
		p.Mean = sum.mean(p.Total)
		p.P50 = p.Quantile(0.5)
		p.P90 = p.Quantile(0.9)
		p.P99 = p.Quantile(0.99)
	}
	length := int64(r.window)
	covered := min(end, now) - max(start, since)
	// At least a second (or the whole period, if shorter): one signal in
	// the first millisecond is not a thousand a second.
	covered = max(covered, min(int64(time.Second), length))
	p.Throughput = float64(p.Total) / time.Duration(min(covered, length)).Seconds()
	return p
}

// stats returns the window ending at now and the one before it. since is
// when the statistics begin: a window's Throughput counts no time before
// it.
func (r *ring) stats(now, since int64, tol Tolerance) WindowStats {
	last := r.epochOf(now)
	cur, prev := r.period(last, now, since), r.period(last-r.n, now, since)
	return WindowStats{Window: r.window, Current: cur, Previous: prev, Trend: trendsOf(cur, prev, tol)}
}
