package heijunka

import (
	"math"
	"time"
)

// Decision is the answer of a limiter or a Store to a request for n events.
// It is a plain value: deciding allocates nothing.
type Decision struct {
	// Allowed reports whether the events may pass now. When it is false
	// nothing was recorded: a denied request costs the key nothing.
	Allowed bool
	// Limit is the Limit the decision was made under.
	Limit Limit
	// Remaining is how many more events could pass at once right after
	// this decision; math.MaxInt under an Unlimited Limit.
	Remaining int
	// RetryAfter is, for a denied request, how long until the same request
	// would pass if nothing else happened; InfDuration when it never can
	// (more events than the burst, or a closed Limit). During a Limiter's
	// warm-up, more events than the step's Burst but no more than the full
	// Burst can pass once the climb takes them: RetryAfter says when; and
	// for a request within the step's Burst it counts the higher rate of
	// the steps that begin before the request passes. It is 0 when
	// Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is full again; the key carries
	// no information after it, so stores forget it then.
	ResetAfter time.Duration
	// FailedOpen reports that the Store could not decide (Redis was
	// unreachable, say) and, configured to fail open, let the request
	// pass: Allowed is true but no limit was applied, and Remaining,
	// RetryAfter and ResetAfter are 0. Keyed reports the store's error to
	// KeyedOptions.OnStoreError.
	FailedOpen bool
}

// decide is the generic cell rate algorithm as a pure function. tat is the
// theoretical arrival time stored for the key (minTAT when there is none)
// and now the current time, both in nanoseconds since an epoch. It returns
// the state to store (tat unchanged when nothing is recorded) and the
// Decision. n must be at least 0.
//
// The state is one number: the time at which the key would be full again.
// n events advance it by n intervals from max(tat, now), and they pass if
// that lands no further than Burst intervals ahead of now.
func (p *params) decide(tat, now int64, n int) (int64, Decision) {
	var d Decision
	next := p.decideInto(tat, now, n, &d)
	return next, d
}

// decideInto is decide writing the Decision through d, which must be zero.
// The keyed path uses it so that the Decision is written once, where its
// caller returns it from: a struct handed back through several calls is
// copied at each, and a copy read right after it was written stalls.
func (p *params) decideInto(tat, now int64, n int, d *Decision) int64 {
	d.Limit = p.limit
	switch p.mode {
	case modeUnlimited:
		d.Allowed, d.Remaining = true, math.MaxInt
		return tat
	case modeClosed:
		d.Allowed = n == 0
		if !d.Allowed {
			d.RetryAfter = InfDuration
		}
		return tat
	}
	base := max(tat, now)
	d.ResetAfter = time.Duration(base - now)
	if n > p.burst {
		d.Remaining = p.remaining(base, now)
		d.RetryAfter = InfDuration
		return tat
	}
	next := base + int64(n)*p.interval
	if next-now > p.tolerance {
		d.Remaining = p.remaining(base, now)
		d.RetryAfter = time.Duration(next - now - p.tolerance)
		return tat
	}
	d.Allowed = true
	d.Remaining = p.remaining(next, now)
	d.ResetAfter = time.Duration(next - now)
	if n == 0 {
		return tat
	}
	return next
}

// remaining is how many events fit between a schedule at tat and the
// tolerance ahead of now.
func (p *params) remaining(tat, now int64) int {
	r := (now + p.tolerance - tat) / p.interval
	if r < 0 {
		return 0
	}
	return int(r)
}
