package kanban

import (
	"math"
	"math/rand/v2"
	"time"
)

// A Backoff says how long to wait between attempts of a failing
// operation. The consumer spaces a message's deliveries with one
// (ConsumeOptions.Backoff); Backoff and Exponential are taikit's one
// back-off, so any retry loop — a notifier's, a client's — may use them
// too, together with Permanent to stop early (see the package's
// examples).
type Backoff interface {
	// Delay returns the wait before attempt number attempt+1, after
	// attempt number attempt (starting at 1) failed. It must be safe to
	// call from several goroutines at once.
	Delay(attempt int) time.Duration
}

// BackoffFunc adapts a function to a Backoff, as http.HandlerFunc adapts
// one to a Handler: a constant delay is BackoffFunc(func(int)
// time.Duration { return time.Second }).
type BackoffFunc func(attempt int) time.Duration

// Delay calls f(attempt).
func (f BackoffFunc) Delay(attempt int) time.Duration { return f(attempt) }

// Exponential is a Backoff that multiplies the delay after each failure,
// caps it, and spreads it with jitter so that messages failing together
// do not come back together:
//
//	delay(n) = min(Max, Initial × Multiplier^(n-1)) × (1 + Jitter × (2r − 1))
//
// with r uniform in [0, 1) from Rand; the result never exceeds Max. The
// zero value is usable: 100ms, doubling, capped at 30s, 20% jitter.
type Exponential struct {
	Initial    time.Duration // first delay; 0 means 100ms
	Max        time.Duration // cap; 0 means 30s
	Multiplier float64       // growth per attempt; 0 means 2; must be finite and ≥ 1
	// Jitter is the fraction of the delay spread either side; 0 means
	// 0.2, a negative value means none; at most 1.
	Jitter float64
	// Rand returns uniform numbers in [0, 1); nil means math/rand/v2's
	// Float64. Tests inject a fixed sequence. When set, it must be safe to
	// call from several goroutines at once.
	Rand func() float64
}

// Validate reports the first field out of range, naming it. Consumers
// validate their Backoff when it has a Validate method; a retry loop
// elsewhere should call it where it takes its configuration.
func (e Exponential) Validate() error {
	switch {
	case e.Initial < 0:
		return optionError("kanban", "Exponential.Initial", e.Initial, "must not be negative")
	case e.Max < 0:
		return optionError("kanban", "Exponential.Max", e.Max, "must not be negative")
	case e.Multiplier != 0 && (e.Multiplier < 1 || math.IsNaN(e.Multiplier) || math.IsInf(e.Multiplier, 0)):
		return optionError("kanban", "Exponential.Multiplier", e.Multiplier, "must be finite and at least 1")
	case e.Jitter > 1 || math.IsNaN(e.Jitter):
		return optionError("kanban", "Exponential.Jitter", e.Jitter, "must be a number at most 1")
	}
	if e.Initial > e.maxDelay() {
		return optionError("kanban", "Exponential.Initial", e.Initial, "must not exceed Max")
	}
	return nil
}

func (e Exponential) maxDelay() time.Duration {
	if e.Max == 0 {
		return 30 * time.Second
	}
	return e.Max
}

// Delay returns the wait after failed attempt number attempt: the
// formula above, with attempt below 1 read as 1. It is never negative:
// where a Rand, a Multiplier, Initial or Max out of range makes the
// formula negative, or not a number, it is 0.
func (e Exponential) Delay(attempt int) time.Duration {
	initial, mult, jitter := e.Initial, e.Multiplier, e.Jitter
	if initial == 0 {
		initial = 100 * time.Millisecond
	}
	if mult == 0 {
		mult = 2
	}
	if jitter == 0 {
		jitter = 0.2 // a negative Jitter stays negative: no spread below
	}
	limit := float64(e.maxDelay())
	if attempt < 1 {
		attempt = 1
	}
	d := math.Min(limit, float64(initial)*math.Pow(mult, float64(attempt-1)))
	if jitter > 0 {
		r := rand.Float64
		if e.Rand != nil {
			r = e.Rand
		}
		d *= 1 + jitter*(2*r()-1)
	}
	if d >= limit {
		// Not time.Duration(limit): a Max near math.MaxInt64 is rounded
		// up as a float64, past the largest Duration, and converts to a
		// negative one. A negative Max (which Validate refuses) gives 0.
		return max(0, e.maxDelay())
	}
	if !(d > 0) {
		// Below 0, or not a number (a Rand or Multiplier out of range):
		// math.Max keeps a NaN, which converts to no Duration in
		// particular (the most negative one, on amd64).
		return 0
	}
	return time.Duration(d)
}
